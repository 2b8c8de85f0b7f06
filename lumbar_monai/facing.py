"""Which image side the patient faces on a lateral radiograph, and running the networks in the facing they learned.

A lateral image can show the patient facing image-left (the usual display, the paper's figures, the synthetic
data) or image-right (the same study mirrored). The networks learn one *canonical* facing
(:data:`CANONICAL_FACING`, image-left); a model that never saw the other facing reads a mirrored image badly and,
worse, names the corners by image side instead of anatomy. This module keeps the names anatomical whichever way the
patient faces:

* :func:`mirror_image` / :func:`mirror_points` - a horizontal mirror; points keep their rows, i.e. their
  anatomical names (``anterior`` stays ``anterior``, it just moves to the other image side).
* :func:`facing_from_points` - the facing that anatomically named points claim: every end plate's anterior
  corner lies on the side the patient faces (readers use it to check a file's ``facing``).
* :func:`facing_from_shape` - the facing that the *shape* of the spine shows, whatever the names say: the S1
  upper end plate slopes down anteriorly (sacral slope 20-60 degrees in adults) and the lumbar column bulges
  anteriorly (lordosis). This is what tells a right-facing image from a left-facing one.
* :func:`mirror_sample` / :class:`CanonicalFacingd` - the same mirror on a training sample (image, points,
  ``facing``, geometry); :class:`CanonicalFacingd` brings every training sample to :data:`CANONICAL_FACING`, so
  that the networks learn the one facing the predictor shows them.
* :func:`predict_any_facing` - the predictor's stages run on the image *and* on its mirror, each brought to the
  canonical facing and mapped back; the facing whose answer agrees best (network confidence plus anatomical
  plausibility, :func:`facing_score`) wins. A DICOM ``PatientOrientation`` is only a hint (:func:`facing_hint`):
  it decides when the image evidence is too close to call, and is recorded either way.

The decision is *ours* (the paper only shows left-facing images). It costs a second pass through both networks
(the time doubles); ``facing="left"``/``"right"`` skips it when the facing is known. AP layouts have no facing.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from .anatomy import Layout

__all__ = [
    "CANONICAL_FACING",
    "FACINGS",
    "UNCERTAIN_MARGIN",
    "CLEAR_AGREEMENT",
    "other_facing",
    "mirror_image",
    "mirror_points",
    "facing_from_points",
    "facing_from_shape",
    "infer_facing",
    "orientation_row",
    "facing_hint",
    "mirror_sample",
    "CanonicalFacingd",
    "StageOutput",
    "FacingDecision",
    "facing_score",
    "run_in_facing",
    "predict_any_facing",
]

#: the facing the networks are trained on: image-left (the synthetic data, BUU-LSPINE, the paper's figures)
CANONICAL_FACING = "left"
FACINGS = ("left", "right")
#: fraction of end plates that must agree before anatomically named points are said to face a side (*ours*)
CLEAR_AGREEMENT = 0.8
#: score margin (:func:`facing_score` units) below which the decision is flagged ``facing_uncertain`` (*ours*)
UNCERTAIN_MARGIN = 0.25


def other_facing(facing: str) -> str:
    """``"left"`` <-> ``"right"``."""
    _check(facing)
    return "right" if facing == "left" else "left"


def _check(facing: str) -> None:
    if facing not in FACINGS:
        raise ValueError(f"facing must be 'left' or 'right', got {facing!r}")


def mirror_image(image: np.ndarray) -> np.ndarray:
    """The image mirrored left-right (last axis), as a contiguous copy."""
    return np.ascontiguousarray(np.asarray(image)[..., ::-1])


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """``(..., 2)`` (x, y) points of an image ``width`` pixels wide, mirrored with it: ``x -> width - 1 - x``.

    Rows are not reordered: a point keeps its anatomical name. (Pixel centres at integer x, see
    :mod:`lumbar_monai.points`.)"""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (int(width) - 1) - out[..., 0]
    return out


def mirror_sample(d: dict, image_keys: Sequence[Hashable], point_keys: Sequence[Hashable] = ("points",),
                  facing_key: str = "facing", geometry_key: str = "geometry") -> dict:
    """Mirror a sample dict in place (and return it): ``(C, H, W)`` images, ``(N, 2)`` points with names kept, the
    ``facing`` entry (when ``"left"``/``"right"``) and the ``original -> current`` geometry."""
    from .transforms.geometry import compose_geometry

    width = None
    for k in image_keys:
        img = d[k]
        width = int(img.shape[-1])
        d[k] = torch.flip(img, dims=(-1,)) if isinstance(img, torch.Tensor) else mirror_image(img)
    if width is None:
        return d
    for k in point_keys:
        if d.get(k) is not None:
            pts = d[k]
            moved = mirror_points(pts.detach().cpu().numpy() if isinstance(pts, torch.Tensor) else pts, width)
            d[k] = torch.as_tensor(moved, dtype=pts.dtype) if isinstance(pts, torch.Tensor) else moved
    if d.get(facing_key) in FACINGS:
        d[facing_key] = other_facing(d[facing_key])
    compose_geometry(d, np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), geometry_key)
    return d


class CanonicalFacingd(MapTransform):
    """Mirror every lateral sample whose ``facing`` is not ``canonical`` (deterministic; names kept).

    The sample's ``facing`` comes from its annotation (:class:`~lumbar_monai.io.datalist.LoadLandmarkSampled`,
    whose readers infer it from the points); samples without one, or with an AP layout, pass unchanged.
    """

    def __init__(self, keys: KeysCollection = "image", point_keys: KeysCollection = ("points",),
                 canonical: str = CANONICAL_FACING, facing_key: str = "facing", layout_key: str = "layout",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        _check(canonical)
        self.point_keys = (point_keys,) if isinstance(point_keys, str) else tuple(point_keys)
        self.canonical, self.facing_key, self.layout_key = canonical, facing_key, layout_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if d.get(self.layout_key) == "ap" or d.get(self.facing_key) not in FACINGS:
            return d
        if d[self.facing_key] == self.canonical:
            return d
        return mirror_sample(d, list(self.key_iterator(d)), self.point_keys, self.facing_key)


def _plates(layout: Layout) -> list[tuple[int, int]]:
    """Every end plate as ``(anterior point index, posterior point index)`` (first corner = anterior)."""
    return list(layout.end_plate_segments)


def facing_from_points(points: np.ndarray, layout: Layout) -> tuple[str | None, float]:
    """The facing that anatomically named points claim, and the fraction of end plates that agree with it.

    Each end plate votes for the side its anterior corner lies on. Returns ``(None, 0.0)`` for AP layouts or
    when no end plate has a usable x-offset.
    """
    if layout.view != "lateral":
        return None, 0.0
    p = layout.check_points(points)
    dx = np.array([p[b, 0] - p[a, 0] for a, b in _plates(layout)])  # > 0: anterior left of posterior
    dx = dx[np.isfinite(dx) & (np.abs(dx) > 1e-6)]
    if dx.size == 0:
        return None, 0.0
    left = float(np.mean(dx > 0))
    return ("left", left) if left >= 0.5 else ("right", 1.0 - left)


def _shape_cues(points: np.ndarray, layout: Layout, facing: str) -> dict[str, float]:
    """Signed anatomical cues of ``points`` read as facing ``facing``, each positive when plausible.

    ``sacral_slope_deg``: angle of the S1 end plate, positive when its anterior corner is lower (the anterior end
    named by the rows, placed on side ``facing``). ``lordosis_bulge``: offset of the mid-lumbar centre from the
    L1-L5 centre chord towards side ``facing``, as a fraction of the chord length.
    """
    p = np.asarray(points, dtype=np.float64)
    s = 1.0 if facing == "left" else -1.0  # image x towards posterior, in units of the facing side
    cues: dict[str, float] = {}
    if layout.has_sacrum:
        a, b = layout.end_plate_segments[-1]
        ant, post = p[a], p[b]
        cues["sacral_slope_deg"] = math.degrees(math.atan2(ant[1] - post[1], s * (post[0] - ant[0])))
    c = layout.centres(p)[list(layout.lumbar_indices)]
    top, bottom, mid = c[0], c[-1], c[len(c) // 2]
    chord = bottom - top
    length = float(np.hypot(*chord))
    if length > 1e-9:
        t = float(np.dot(mid - top, chord) / length**2)
        off = mid - (top + t * chord)
        cues["lordosis_bulge"] = float(-s * off[0] / length)  # towards the facing side = plausible
    return cues


def facing_from_shape(points: np.ndarray, layout: Layout) -> tuple[str | None, float]:
    """The facing that the spine's shape shows, whatever the point names say: ``(facing, strength 0..1)``.

    ``points`` may be named by anatomy or by image side (as if facing left): the cues (S1 end-plate slope, lumbar
    lordosis) compare the two readings, so the naming cancels out. Strength is ``|tanh|`` of the combined cue;
    ``(None, 0.0)`` for AP layouts and for points that are no upright spine (centres not strictly cranio-caudal).
    """
    if layout.view != "lateral":
        return None, 0.0
    p = layout.check_points(points)
    cy = layout.centres(p)[:, 1]
    if not (np.isfinite(p).all() and np.all(np.diff(cy) > 0)):
        return None, 0.0
    named, _ = facing_from_points(p, layout)
    # read the points in the frame their names imply, then ask whether the shape agrees with that frame
    frame = named or CANONICAL_FACING
    v = _shape_value(_shape_cues(p, layout, frame))
    facing = frame if v >= 0 else other_facing(frame)
    return facing, abs(math.tanh(v))


def infer_facing(points: np.ndarray, layout: Layout) -> str:
    """Which image side the patient faces on a lateral image, from the *shape* of the landmarks.

    ``points`` may be in image-side order (as if facing left, e.g. a BUU-LSPINE CSV) or anatomically named: the
    rule (*ours*, :func:`facing_from_shape`) reads the S1 upper end plate, which slopes down
    anteriorly (sacral slope 20-60 degrees in adults), and the lordotic bulge of the lumbar centres, which points
    anteriorly. Returns ``"left"`` or ``"right"``; AP layouts (and shapes with no cue at all) return ``"left"``.
    """
    facing, _ = facing_from_shape(points, layout)
    return facing or "left"


def _shape_value(cues: Mapping[str, float]) -> float:
    """One number from the cues, > 0 when plausible: slope / 10 deg + bulge / 3 % (each saturating, *ours*)."""
    v = 0.0
    if "sacral_slope_deg" in cues:
        v += math.tanh(cues["sacral_slope_deg"] / 10.0)
    if "lordosis_bulge" in cues:
        v += math.tanh(cues["lordosis_bulge"] / 0.03)
    return v


def orientation_row(meta: Mapping[str, Any] | None) -> str | None:
    """The first value of ``meta["orientation"]`` (DICOM PatientOrientation, 0020,0020: the patient direction of
    increasing column), upper case, or ``None`` when missing or malformed; shared by the lateral facing hint and the
    AP display hint (:func:`lumbar_monai.display.display_hint`)."""
    po = (meta or {}).get("orientation")
    if isinstance(po, str):
        po = po.replace("\\", " ").replace(",", " ").split()
    if not isinstance(po, (list, tuple)) or not po:
        return None
    return str(po[0]).strip().upper()


def facing_hint(meta: Mapping[str, Any] | None) -> str | None:
    """The facing a DICOM header suggests, from ``meta["orientation"]`` (DICOM PatientOrientation, 0020,0020).

    Its first value is the patient direction of the image rows (increasing column): ``P`` means the image right is
    posterior, so the patient faces left; ``A`` faces right. Anything else (missing, ``L``/``R``: an AP view,
    malformed) gives ``None``. Only a hint: headers are often copied from a template or wrong after a flip.
    """
    row = orientation_row(meta)
    if row is None:
        return None
    has_a, has_p = "A" in row, "P" in row
    if has_a == has_p:
        return None
    return "right" if has_a else "left"


@dataclass
class StageOutput:
    """Both stages' answer for one image in its original pixels (rows = anatomical names)."""

    centres: np.ndarray
    centre_confidence: np.ndarray
    repaired: bool
    points: np.ndarray
    confidence: np.ndarray
    level_check: dict[str, Any] | None = None
    second_peak: float | None = None

    def mirrored(self, width: int) -> StageOutput:
        """The same answer for the mirrored image (names kept)."""
        return replace(self, centres=mirror_points(self.centres, width), points=mirror_points(self.points, width))


@dataclass
class FacingDecision:
    """How the facing of one image was decided.

    Attributes:
        facing: image side the patient faces (``"left"``/``"right"``), or ``None`` for AP layouts.
        confidence: 0.5 (a coin toss) .. 1 (certain): a logistic of the score margin (*ours*).
        uncertain: the margin is below :data:`UNCERTAIN_MARGIN` (QC flag ``facing_uncertain``).
        source: ``"image"`` (decided from the pixels), ``"hint"`` (too close to call, the DICOM hint decided),
            ``"given"`` (the caller said), ``"none"`` (AP).
        scores: :func:`facing_score` of each facing tried.
        hint: the DICOM hint, if any.
    """

    facing: str | None
    confidence: float = 1.0
    uncertain: bool = False
    source: str = "given"
    scores: dict[str, float] = field(default_factory=dict)
    hint: str | None = None

    def as_meta(self) -> dict[str, Any]:
        """JSON-ready summary for ``LandmarkResult.meta["facing"]``."""
        out: dict[str, Any] = {"facing": self.facing, "confidence": round(float(self.confidence), 4),
                               "source": self.source}
        if self.scores:
            out["scores"] = {k: round(float(v), 4) for k, v in self.scores.items()}
        if self.hint is not None:
            out["hint"] = self.hint
        return out


def facing_score(out: StageOutput, layout: Layout, facing: str) -> float:
    """How well one facing's answer agrees with the image (higher is better, *ours*).

    The mean corner peak height and the mean centre peak height (0..1 each, the networks' own agreement) plus the
    anatomical plausibility of the points read in that facing (:func:`_shape_value`, -2..2: the S1 end plate must
    slope down anteriorly, the lumbar column must bulge anteriorly). A model run on the wrong facing still puts
    its ``anterior`` channel on the canonical side, so after mapping back the shape cues turn negative.
    """
    conf = float(np.nanmean(out.confidence)) if np.isfinite(out.confidence).any() else 0.0
    cconf = float(np.nanmean(out.centre_confidence)) if np.isfinite(out.centre_confidence).any() else 0.0
    return conf + cconf + _shape_value(_shape_cues(out.points, layout, facing))


def _run_stages(predictor, image: np.ndarray, centres, timings) -> StageOutput:
    level_check = second_peak = None
    if centres is None:  # a CentreAnswer (a stand-in may answer a plain triple: no level check, no second peak)
        answer = predictor.detect_centres(image, timings)
        c, c_conf, repaired = answer
        level_check = getattr(answer, "level_check", None)
        second_peak = getattr(answer, "second_peak", None)
    else:
        c = np.asarray(centres, dtype=np.float64).reshape(predictor.layout.num_vertebrae, 2)
        c_conf, repaired = np.full(predictor.layout.num_vertebrae, np.nan), False
    pts, conf = predictor.detect_corners(image, c, timings)
    if centres is None:  # optional refinement of the Pose-Net centres from the corners (predictor docstring)
        for _ in range(int(getattr(predictor, "centre_refinement", 0))):
            c = predictor.refined_centres(c, pts)
            pts, conf = predictor.detect_corners(image, c, timings)
    return StageOutput(np.asarray(c, dtype=np.float64), np.asarray(c_conf, dtype=np.float64), bool(repaired),
                       np.asarray(pts, dtype=np.float64), np.asarray(conf, dtype=np.float64), level_check,
                       second_peak)


def run_in_facing(predictor, image: np.ndarray, facing: str, centres=None,
                  timings: dict[str, float] | None = None, canonical: str = CANONICAL_FACING) -> StageOutput:
    """Run the predictor's stages on ``image`` taken to face ``canonical``, answer mapped back to ``image``.

    ``facing`` is the side the patient faces on ``image``; when it differs from ``canonical`` the image (and any
    given ``centres``) are mirrored first and the points mirrored back, names unchanged.
    """
    _check(facing)
    if facing == canonical:
        return _run_stages(predictor, image, centres, timings)
    w = int(np.asarray(image).shape[-1])
    given = None if centres is None else mirror_points(np.asarray(centres, dtype=np.float64), w)
    return _run_stages(predictor, mirror_image(image), given, timings).mirrored(w)


def _confidence(margin: float) -> float:
    # logistic in the margin: 0.5 at 0, ~0.92 at the uncertainty threshold x 2 (*ours*)
    return 1.0 / (1.0 + math.exp(-5.0 * margin))


def predict_any_facing(predictor, image: np.ndarray, centres=None, facing: str | None = "auto",
                       hint: str | None = None, timings: dict[str, float] | None = None,
                       canonical: str = CANONICAL_FACING) -> tuple[StageOutput, FacingDecision]:
    """Both stages on a lateral ``image`` whichever way the patient faces: ``(answer, decision)``.

    Args:
        predictor: a :class:`~lumbar_monai.predictor.LandmarkPredictor` (``detect_centres``, ``detect_corners``).
        image: ``(H, W)`` float image.
        centres: optional ``(V, 2)`` centres (original pixels) to skip stage 1.
        facing: ``"auto"`` (decide from the image: two passes), ``"left"``/``"right"`` (known: one pass).
        hint: a facing suggested by the file (:func:`facing_hint`); decides only when the image is too close
            to call.
        timings: accumulated stage timings (both passes).
        canonical: the facing the networks were trained on.
    """
    if predictor.layout.view != "lateral":
        return _run_stages(predictor, image, centres, timings), FacingDecision(None, source="none", hint=hint)
    if facing in FACINGS:
        out = run_in_facing(predictor, image, facing, centres, timings, canonical)
        return out, FacingDecision(facing, source="given", hint=hint)
    if facing not in (None, "auto"):
        raise ValueError(f"facing must be 'auto', 'left' or 'right', got {facing!r}")
    outs = {f: run_in_facing(predictor, image, f, centres, timings, canonical) for f in FACINGS}
    scores = {f: facing_score(outs[f], predictor.layout, f) for f in FACINGS}
    best = max(FACINGS, key=lambda f: scores[f])
    margin = abs(scores["left"] - scores["right"])
    uncertain = margin < UNCERTAIN_MARGIN
    source = "image"
    if uncertain and hint in FACINGS:
        best, source = hint, "hint"
    decision = FacingDecision(best, confidence=_confidence(margin), uncertain=uncertain, source=source,
                              scores=scores, hint=hint)
    return outs[best], decision
