"""The bundle's ``inference``: the two-stage predictor over images, folders or DICOM studies.

Outputs per image come from :func:`lumbar_monai.batch.run_batch` (JSON with points, names, confidences, QC flags,
measurements and mm where the spacing is known; overlay PNG; for DICOM sources a Structured Report and a
presentation state), plus ``measurements.csv`` and ``failures.txt`` for the whole run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

__all__ = ["default_inputs", "run_inference"]

logger = logging.getLogger(__name__)


def default_inputs(datalist: str | Path, split: str = "test", prefer: str = "dicom") -> list[str]:
    """The images of ``split`` of a datalist; ``prefer="dicom"`` takes an item's ``dicom`` file when it has one."""
    from ..io.datalist import load_landmark_datalist

    items = load_landmark_datalist(datalist, split)
    return [str(it.get(prefer) or it["image"]) for it in items]


def run_inference(
    checkpoint: str | Path,
    inputs: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    device: str | None = None,
    secondary_capture: bool = False,
) -> int:
    """Predict every image in ``inputs`` (files, folders, DICOMDIRs); returns the number of images that failed.

    Raises ``RuntimeError`` when every image failed (the batch's non-zero exit condition).
    """
    from ..batch import run_batch
    from ..predictor import load_predictor

    predictor = load_predictor(checkpoint, device=device)
    summary = run_batch(inputs, output_dir, predictor, secondary_capture=secondary_capture)
    logger.info("inference: %d ok, %d failed -> %s", summary.ok, summary.failed, output_dir)
    if summary.exit_code != 0:
        raise RuntimeError(f"every input failed; reasons in {summary.failures_txt}")
    return summary.failed
