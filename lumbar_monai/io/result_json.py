"""Per-image JSON: the predictor's landmarks with confidences, QC flags and the clinical measurements.

Format ``"lumbar-monai/result@1"``::

    {
      "format": "lumbar-monai/result@1",
      "software": {"name": "lumbar-monai", "version": "0.1.0"},
      "source": {"sop_instance_uid": "...", "sha256": "...", "format": "dicom"},   # never patient data
      "result": {...},           # LandmarkResult.to_json_dict(): layout, image_size, pixel_spacing, landmarks, ...
      "measurements": {...}      # MeasurementSet.to_json_dict() + "spacing_plane", or null
    }

``spacing_plane`` (in ``result`` and ``measurements``) says where millimetres are measured: ``"patient"``,
``"detector"`` (DICOM ``ImagerPixelSpacing`` without a magnification factor: lengths include the geometric
magnification) or ``null`` (unknown, or no spacing).

Non-finite numbers (``nan``/``inf``) are written as ``null`` so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import get_layout
from ..errors import InputError
from ..result import LandmarkResult, spacing_plane
from .atomic import atomic_write_text

__all__ = ["RESULT_FORMAT", "software_version", "result_document", "write_result_json", "read_result_json"]

RESULT_FORMAT = "lumbar-monai/result@1"

#: keys of ``source`` that may be written (anything else is dropped: no patient names, IDs or paths).
SOURCE_KEYS = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "sha256", "format", "modality")


def software_version() -> str:
    """The installed lumbar-monai version (``0+unknown`` when running from an uninstalled tree)."""
    try:
        from importlib.metadata import version

        return version("lumbar-monai")
    except Exception:  # noqa: BLE001 - metadata missing in a bare checkout
        return "0+unknown"


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to ``None``."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def result_document(result: LandmarkResult, measurements=None, source: dict | None = None) -> dict[str, Any]:
    """The JSON document (a dict) for one image; ``source`` keys outside :data:`SOURCE_KEYS` are dropped."""
    src = {k: v for k, v in (source or {}).items() if k in SOURCE_KEYS and v is not None}
    return _clean(
        {
            "format": RESULT_FORMAT,
            "software": {"name": "lumbar-monai", "version": software_version()},
            "source": src,
            "result": result.to_json_dict(),
            "measurements": None if measurements is None else _measurements_dict(measurements),
        }
    )


def _measurements_dict(measurements) -> dict[str, Any]:
    out = dict(measurements.to_json_dict())
    out["spacing_plane"] = spacing_plane(measurements.spacing_source) if measurements.pixel_spacing is not None else None
    return out


def write_result_json(path: str | os.PathLike, result: LandmarkResult, measurements=None,
                      source: dict | None = None) -> Path:
    """Write :func:`result_document` atomically (strict JSON, ``allow_nan=False``)."""
    doc = result_document(result, measurements, source)
    return atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_result_json(path: str | os.PathLike) -> tuple[LandmarkResult, dict[str, Any]]:
    """Read a result JSON back: ``(LandmarkResult, document)``; problems raise :class:`InputError`."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(p, f"not valid JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(doc, dict) or doc.get("format") != RESULT_FORMAT:
        raise InputError(p, f"not a result file (expected \"format\": \"{RESULT_FORMAT}\")")
    try:
        r = doc["result"]
        layout = get_layout(r["layout"])
        by_name = {lm["name"]: lm for lm in r["landmarks"]}
        pts = np.array([[by_name[n]["x"], by_name[n]["y"]] for n in layout.point_names], dtype=np.float64)
        conf = np.array([np.nan if by_name[n]["confidence"] is None else by_name[n]["confidence"]
                         for n in layout.point_names], dtype=np.float64)
        cen = {c["name"]: c for c in r["centres"]}
        centres = np.array([[cen[v]["x"], cen[v]["y"]] for v in layout.vertebra_names], dtype=np.float64)
        ccon = np.array([cen[v]["confidence"] for v in layout.vertebra_names], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(p, f"malformed result: {type(e).__name__} {e}") from None
    res = LandmarkResult(
        layout=layout,
        points=pts,
        confidence=conf,
        centres=centres,
        centre_confidence=ccon,
        qc_flags=list(r.get("qc_flags") or []),
        pixel_spacing=None if r.get("pixel_spacing") is None else tuple(r["pixel_spacing"]),
        spacing_source=r.get("spacing_source"),
        image_size=None if r.get("image_size") is None else tuple(r["image_size"]),
        meta=dict(r.get("meta") or {}),
    )
    return res, doc
