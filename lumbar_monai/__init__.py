"""lumbar-monai: landmarks of the lumbar spine and sacrum on X-rays (An et al. 2022, Sensors 22:8628) in MONAI.

Submodules are imported on demand so that the light core (schema, readers) loads without the heavy parts.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .anatomy import AP, LATERAL, LAYOUTS, Layout, get_layout  # noqa: E402

__all__ = ["__version__", "AP", "LATERAL", "LAYOUTS", "Layout", "get_layout"]
