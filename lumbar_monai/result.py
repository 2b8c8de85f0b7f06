"""The predictor's answer for one image: what writers (JSON, SR, presentation state, overlay) and metrics read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .anatomy import Layout

__all__ = ["LandmarkResult", "CentreAnswer", "QC_FLAGS", "SPACING_PLANES", "spacing_plane"]

#: QC flags a result may carry, with their meaning.
QC_FLAGS = {
    "centre_repaired": "Algorithm 1 fired: a missed centre was recovered and the top-most centre (likely T12) dropped",
    "low_confidence": "at least one landmark's peak height is below the confidence threshold",
    "order_violation": "landmarks are in an anatomically impossible order (e.g. a vertebra above the one before it)",
    "facing_uncertain": "lateral view: the image and its mirror read almost equally well, so the side the patient "
    "faces (and with it anterior/posterior) is uncertain",
    "display_uncertain": "AP view: the display network could not tell a standard display from a mirrored one",
    "level_unconfirmed": "framed stage 1 with a vertebra counter (or level network): it did not confirm the window "
    "Pose-Net's L1-L5 names; it renamed them, disputed them or found no count (meta['level_check']['status']), and "
    "such images had all centres right far less often than confirmed ones (README, 'The level check')",
    "shape_outlier": "a corner lay at least half a vertebra height from the model's shape prior fitted to all the "
    "corners, and was replaced by the prior's position (names in meta['shape_prior']['outliers'])",
    "centre_ambiguous": "a Pose-Net centre map has a second peak at least half as high as its highest "
    "(meta['centre_second_peak']): that vertebra may be on the other peak, and a change of the maps as small as 1e-6 can move it there "
    "(README, 'Ambiguous centre maps')",
}


class CentreAnswer(tuple):
    """Stage 1's answer for one image, the triple ``(centres (V, 2) original px, confidence (V,), repaired)`` that
    ``detect_centres`` has always returned (so ``c, conf, repaired = answer`` still works), with
    :attr:`level_check` beside it: the level check of a framed stage 1 with a counter or level network
    (``{"source", "status", "shift"}``, :data:`~lumbar_monai.levels.LEVEL_STATUSES`; ``None`` without one), and
    :attr:`second_peak`: the largest :func:`~lumbar_monai.postprocess.second_peak_ratio` of the maps the centres
    were decoded from (``None``: not measured)."""

    level_check: dict[str, Any] | None
    second_peak: float | None

    def __new__(cls, centres, confidence, repaired, level_check: dict[str, Any] | None = None,
                second_peak: float | None = None) -> CentreAnswer:
        answer = super().__new__(cls, (centres, confidence, repaired))
        answer.level_check = level_check
        answer.second_peak = second_peak
        return answer

    def __getnewargs__(self) -> tuple:  # pickling (worker processes)
        return (*self, self.level_check, self.second_peak)

    @property
    def centres(self) -> np.ndarray:
        return self[0]

    @property
    def confidence(self) -> np.ndarray:
        return self[1]

    @property
    def repaired(self) -> bool:
        return self[2]

#: The plane a pixel spacing measures in, by :attr:`LandmarkResult.spacing_source`. ``"patient"``: calibrated to
#: the patient (DICOM ``PixelSpacing``, or ``ImagerPixelSpacing`` divided by ``EstimatedRadiographicMagnificationFactor``);
#: ``"detector"``: at the detector face (``ImagerPixelSpacing`` alone), so lengths include the geometric
#: magnification (typically 10-20 % on a lumbar lateral). Other sources (file headers, annotations, arguments)
#: do not say.
SPACING_PLANES = {
    "PixelSpacing": "patient",
    "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor": "patient",
    "ImagerPixelSpacing": "detector",
    "synthetic": "patient",
}


def spacing_plane(spacing_source: str | None) -> str | None:
    """``"patient"``, ``"detector"`` or ``None`` (unknown) for a spacing source (see :data:`SPACING_PLANES`)."""
    return SPACING_PLANES.get(spacing_source) if spacing_source else None


@dataclass
class LandmarkResult:
    """Landmarks of one image in original pixels (x, y), pixel centres at integer coordinates.

    Attributes:
        layout: the landmark layout.
        points: ``(N, 2)`` corners, rows as ``layout.point_names``.
        confidence: ``(N,)`` peak heights of the corner maps (0..1).
        centres: ``(V, 2)`` stage-1 centres (after Algorithm 1).
        centre_confidence: ``(V,)`` peak heights of the centre maps.
        qc_flags: keys of :data:`QC_FLAGS` that apply.
        pixel_spacing: ``(sx, sy)`` mm per pixel, or ``None``.
        spacing_source: ``"PixelSpacing"``, ``"ImagerPixelSpacing"``, ``"annotation"``, ... or ``None``; its
            plane is :attr:`spacing_plane`.
        image_size: ``(W, H)`` of the original image.
        meta: free-form (model versions, timings); never patient identifiers.
    """

    layout: Layout
    points: np.ndarray
    confidence: np.ndarray
    centres: np.ndarray
    centre_confidence: np.ndarray
    qc_flags: list[str] = field(default_factory=list)
    pixel_spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    image_size: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing_plane(self) -> str | None:
        """``"patient"`` / ``"detector"`` / ``None``: where :attr:`pixel_spacing` measures (:func:`spacing_plane`)."""
        return spacing_plane(self.spacing_source) if self.pixel_spacing is not None else None

    def points_mm(self) -> np.ndarray | None:
        """Corners in millimetres from the image origin, or ``None`` without a pixel spacing."""
        if self.pixel_spacing is None:
            return None
        return np.asarray(self.points, dtype=np.float64) * np.asarray(self.pixel_spacing, dtype=np.float64)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every landmark with its name, (x, y) px, mm where known, and confidence."""
        mm = self.points_mm()
        landmarks = []
        for i, name in enumerate(self.layout.point_names):
            item = {
                "name": name,
                "vertebra": self.layout.vertebrae[int(self.layout.point_vertebra[i])].name,
                "x": float(self.points[i, 0]),
                "y": float(self.points[i, 1]),
                "confidence": float(self.confidence[i]),
            }
            if mm is not None:
                item["x_mm"], item["y_mm"] = float(mm[i, 0]), float(mm[i, 1])
            landmarks.append(item)
        centres = [
            {"name": v.name, "x": float(c[0]), "y": float(c[1]), "confidence": float(p)}
            for v, c, p in zip(self.layout.vertebrae, self.centres, self.centre_confidence, strict=True)
        ]
        return {
            "layout": self.layout.name,
            "image_size": None if self.image_size is None else [int(v) for v in self.image_size],
            "pixel_spacing": None if self.pixel_spacing is None else [float(v) for v in self.pixel_spacing],
            "spacing_source": self.spacing_source,
            "spacing_plane": self.spacing_plane,
            "landmarks": landmarks,
            "centres": centres,
            "qc_flags": list(self.qc_flags),
            "meta": self.meta,
        }
