"""``generate_radiograph``: one synthetic lateral lumbar radiograph with exact landmarks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..anatomy import LATERAL, Layout
from .config import SyntheticConfig
from .model import sample_spine
from .render import form_image, place_on_detector, rasterise_labels, render_density, sample_imaging

__all__ = [
    "SyntheticRadiograph",
    "generate_radiograph",
    "GENERATOR_VERSION",
    "endplate_angle_deg",
    "lordosis_deg",
    "sacral_slope_deg",
]

GENERATOR_VERSION = "1"


@dataclass
class SyntheticRadiograph:
    """A generated study.

    Attributes:
        image: ``(H, W)`` uint16, values in ``[0, 2**bits_stored - 1]``, bone bright (MONOCHROME2).
        points: ``(N, 2)`` float64 (x, y) px in ``layout`` order, anatomical names (see ``facing``).
        pixel_spacing: ``(sx, sy)`` mm per px along x (columns) and y (rows).
        facing: image side the patient faces (``"left"`` or ``"right"``).
        layout: :data:`lumbar_monai.anatomy.LATERAL`.
        meta: generation parameters (lordosis, sacral slope, fractures, slip, bits stored, ...).
        body_mask: ``(H, W)`` uint8 label mask of the vertebral bodies (1..V in layout order) when requested.
    """

    image: np.ndarray
    points: np.ndarray
    pixel_spacing: tuple[float, float]
    facing: str
    layout: Layout = LATERAL
    meta: dict[str, Any] = field(default_factory=dict)
    body_mask: np.ndarray | None = None

    @property
    def centres(self) -> np.ndarray:
        """``(V, 2)`` vertebra centres: the mean of each vertebra's corners."""
        return self.layout.centres(self.points)

    @property
    def bits_stored(self) -> int:
        return int(self.meta["bits_stored"])


def endplate_angle_deg(points: np.ndarray, i_anterior: int, i_posterior: int) -> float:
    """Slope in degrees of the line posterior -> anterior corner against the image horizontal.

    Positive when the anterior corner is lower (larger y) than the posterior one, whichever way the patient faces.
    """
    d = np.asarray(points[i_anterior], float) - np.asarray(points[i_posterior], float)
    return math.degrees(math.atan2(d[1], abs(d[0])))


def lordosis_deg(points: np.ndarray, layout: Layout) -> float:
    """L1-S1 lordosis (Cobb) from landmarks: angle between the L1 superior and the S1 upper end plates."""
    first = layout.vertebrae[layout.lumbar_indices[0]]
    sl = layout.vertebra_slices[layout.lumbar_indices[0]]
    a, p = sl.start + first.corners.index("superior_anterior"), sl.start + first.corners.index("superior_posterior")
    return sacral_slope_deg(points, layout) - endplate_angle_deg(points, a, p)


def sacral_slope_deg(points: np.ndarray, layout: Layout) -> float:
    """Slope of the S1 upper end plate against the horizontal of ``points``' frame (degrees, anterior down > 0)."""
    s = layout.vertebra_slices[layout.sacrum_index]
    sv = layout.vertebrae[layout.sacrum_index]
    return endplate_angle_deg(points, s.start + sv.corners.index("anterior"), s.start + sv.corners.index("posterior"))


def generate_radiograph(seed: int, config: SyntheticConfig | None = None) -> SyntheticRadiograph:
    """Generate one lateral lumbar radiograph with its landmarks (:data:`LATERAL` order); deterministic per ``seed``.

    The anatomy (mm) and the imaging settings depend only on ``seed``: ``config.max_side`` changes the pixels,
    not the study.
    """
    cfg = config or SyntheticConfig()
    # independent streams (SeedSequence.spawn: identical under numpy 1.x and 2.x): the anatomy and every imaging
    # setting use a fixed number of draws, so ``max_side`` changes the pixels, not the study
    facing_rng, anatomy_rng, params_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    facing = "right" if facing_rng.random() < cfg.facing_right_prob else "left"
    model = sample_spine(anatomy_rng, cfg, LATERAL)
    placement = place_on_detector(params_rng, model, cfg)
    imaging = sample_imaging(params_rng, cfg)
    points = placement.to_px(model.points)
    rendered = render_density(noise_rng, model, placement, cfg, imaging, facing)
    centres_low = LATERAL.centres(model.points) @ rendered.lowm[:, :2].T + rendered.lowm[:, 2]
    tau = rendered.tau
    ci = np.clip(np.round(centres_low).astype(int), 0, np.array(tau.shape[::-1]) - 1)
    bone_ref = float(np.median(tau[ci[:, 1], ci[:, 0]]))
    image = form_image(noise_rng, rendered, placement, imaging, bone_ref)
    extras = dict(rendered.info)
    mask = rasterise_labels(model, placement) if cfg.body_mask else None
    w = placement.width
    if facing == "right":
        image = np.ascontiguousarray(image[:, ::-1])
        points = points.copy()
        points[:, 0] = (w - 1) - points[:, 0]
        if mask is not None:
            mask = np.ascontiguousarray(mask[:, ::-1])
        x0, y0, x1, y1 = extras["exposed_field_px"]
        extras["exposed_field_px"] = [round(w - 1 - x1, 2), y0, round(w - 1 - x0, 2), y1]
    meta = dict(model.meta)
    meta.update(
        generator="lumbar_monai.synthetic",
        generator_version=GENERATOR_VERSION,
        seed=int(seed),
        facing=facing,
        rotation_deg=round(placement.rotation_deg, 4),
        lordosis_deg=round(lordosis_deg(model.points, LATERAL), 4),
        sacral_slope_deg=round(sacral_slope_deg(model.points, LATERAL), 4),
        spacing_mm=round(placement.spacing, 6),
        **imaging.as_meta(),
        **extras,
    )
    return SyntheticRadiograph(
        image=image,
        points=points,
        pixel_spacing=(placement.spacing, placement.spacing),
        facing=facing,
        layout=LATERAL,
        meta=meta,
        body_mask=mask,
    )
