"""Synthetic lateral lumbar radiographs with exact landmarks: the project's embedded default data.

``generate_radiograph(seed, config)`` draws one study (image, 22 lateral landmarks, spacing, meta);
``write_study_set`` writes a study set (PNG/TIFF, JSON, BUU CSV, DICOM DX, MONAI datalist);
``render_overview`` draws studies with their landmarks.
"""

from __future__ import annotations

from .config import SyntheticConfig
from .generator import GENERATOR_VERSION, SyntheticRadiograph, generate_radiograph
from .study import case_seed, write_study_set

__all__ = [
    "SyntheticConfig",
    "SyntheticRadiograph",
    "generate_radiograph",
    "GENERATOR_VERSION",
    "write_study_set",
    "case_seed",
    "render_overview",
]


def __getattr__(name: str):
    # lazy: ``python -m lumbar_monai.synthetic.overview`` must not find the module imported already
    if name == "render_overview":
        from .overview import render_overview

        return render_overview
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
