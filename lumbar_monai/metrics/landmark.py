"""Landmark metrics of An et al. 2022, Section 4.3: distance error D, relative distance error RD (Eq. 12-15),
landmark outliers; as functions and as a MONAI cumulative metric that Ignite engines attach through
``monai.handlers.IgniteMetricHandler``.

"Total" is the paper's: the mean of the per-vertebra means (Tables 5-7: the six per-vertebra RD of "w (CC, PAFs)"
average to its Total 5.87; the mean over the 22 landmarks would be 5.60, as four-corner vertebrae outweigh the
two-corner S1), with the sd of all values when every vertebra weighs the same (:func:`vertebra_total`). The plain
landmark mean is reported beside it, never in its place.

RD of a lumbar corner (Eq. 12-14): ``r_x = (pred_x - gt_x) / h``, ``r_y = (pred_y - gt_y) / v``,
``RD = 100 sqrt(r_x^2 + r_y^2)``, where ``h`` is the length of the *horizontal* edge through ``gt`` (the end plate:
``gt`` to the other corner of the same end plate) and ``v`` the length of the *vertical* edge through ``gt``
(``gt`` to the corner on the same side of the other end plate), both measured on the ground truth. RD of a sacrum
corner (Eq. 15): ``100 ||pred - gt|| / l`` with ``l`` the ground-truth S1 end-plate length. A vertebra is a
landmark outlier when the mean RD of its corners exceeds 20 %. Points are ``(..., N, 2)`` (x, y).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from ..anatomy import Layout, VertebraSpec, get_layout

__all__ = [
    "distance_error",
    "edge_partners",
    "relative_distance_components",
    "relative_distance_error_vertebra",
    "relative_distance_error",
    "vertebra_mean",
    "vertebra_total",
    "landmark_outliers",
    "LandmarkErrorMetric",
]

OUTLIER_RD = 20.0


def distance_error(pred, gt, spacing=None) -> np.ndarray:
    """``(..., N)`` Euclidean distance; in mm when ``spacing`` ``(sx, sy)`` (or ``(..., 2)``) is given."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)
    if spacing is not None:
        s = np.asarray(spacing, dtype=np.float64)
        d = d * (s[..., None, :] if s.ndim > 1 else s)
    return np.sqrt((d * d).sum(-1))


def edge_partners(spec: VertebraSpec) -> tuple[np.ndarray, np.ndarray]:
    """For a vertebra with two end plates, the corner across the horizontal edge (same end plate) and across the
    vertical edge (same position on the other end plate) of each corner, as ``(K,)`` index arrays."""
    if len(spec.end_plates) != 2:
        raise ValueError(f"{spec.name}: horizontal/vertical edges need two end plates")
    (a0, a1), (b0, b1) = spec.end_plates
    h = np.empty(spec.num_corners, dtype=int)
    v = np.empty(spec.num_corners, dtype=int)
    h[[a0, a1, b0, b1]] = [a1, a0, b1, b0]
    v[[a0, a1, b0, b1]] = [b0, b1, a0, a1]
    return h, v


def relative_distance_error_vertebra(pred, gt, spec: VertebraSpec) -> np.ndarray:
    """RD (%) of each corner of one vertebra: Eq. 12-14 (two end plates) or Eq. 15 (one end plate).

    Args:
        pred, gt: ``(..., K, 2)`` corners of this vertebra.
        spec: the vertebra's :class:`~lumbar_monai.anatomy.VertebraSpec`.
    """
    rx, ry = _components_vertebra(np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64), spec)
    return 100.0 * np.sqrt(rx * rx + ry * ry)  # with one end plate: ||pred - gt|| / l


def _components_vertebra(p: np.ndarray, g: np.ndarray, spec: VertebraSpec) -> tuple[np.ndarray, np.ndarray]:
    """Signed ``(r_x, r_y)`` (fractions) of one vertebra's corners: Eq. 12-13 (``h``, ``v``) or, with one end
    plate, both over the end-plate length ``l`` of Eq. 15."""
    if len(spec.end_plates) == 1:
        a, b = spec.end_plates[0]
        h = v = np.linalg.norm(g[..., a, :] - g[..., b, :], axis=-1)[..., None]
    else:
        hi, vi = edge_partners(spec)
        h = np.linalg.norm(g - g[..., hi, :], axis=-1)
        v = np.linalg.norm(g - g[..., vi, :], axis=-1)
    return (p[..., 0] - g[..., 0]) / h, (p[..., 1] - g[..., 1]) / v


def relative_distance_components(pred, gt, layout: Layout | str) -> tuple[np.ndarray, np.ndarray]:
    """The signed parts of RD, in %: ``(..., N)`` ``100 r_x`` and ``100 r_y`` of every landmark (Eq. 12-13; for a
    one-end-plate vertebra both over the end-plate length ``l`` of Eq. 15), so that
    ``RD = sqrt(rx^2 + ry^2)`` (Eq. 14). Positive: the prediction lies right of / below the label (image axes)."""
    layout = get_layout(layout)
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    rx, ry = np.empty(p.shape[:-1]), np.empty(p.shape[:-1])
    for spec, sl in zip(layout.vertebrae, layout.vertebra_slices, strict=False):
        rx[..., sl], ry[..., sl] = _components_vertebra(p[..., sl, :], g[..., sl, :], spec)
    return 100.0 * rx, 100.0 * ry


def relative_distance_error(pred, gt, layout: Layout | str) -> np.ndarray:
    """``(..., N)`` RD (%) of every landmark of a layout (Eq. 12-15)."""
    layout = get_layout(layout)
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    out = np.empty(p.shape[:-1])
    for spec, sl in zip(layout.vertebrae, layout.vertebra_slices, strict=False):
        out[..., sl] = relative_distance_error_vertebra(p[..., sl, :], g[..., sl, :], spec)
    return out


def vertebra_mean(values, layout: Layout | str) -> np.ndarray:
    """``(..., N)`` per-landmark values -> ``(..., V)`` mean over each vertebra's corners."""
    layout = get_layout(layout)
    x = np.asarray(values, dtype=np.float64)
    return np.stack([x[..., sl].mean(-1) for sl in layout.vertebra_slices], axis=-1)


def vertebra_total(values, layout: Layout | str) -> tuple[float, float]:
    """The paper's "Total" of ``(..., N)`` per-landmark values: ``(mean, sd)``.

    The mean is the mean of the per-vertebra means (each over all images and that vertebra's corners); the sd is
    that of all values with each vertebra weighing the same: ``sqrt(mean_v(var_v + (mean_v - total)^2))``. NaN
    values are left out; ``(nan, nan)`` when nothing is finite."""
    layout = get_layout(layout)
    x = np.asarray(values, dtype=np.float64)
    means, variances = [], []
    for sl in layout.vertebra_slices:
        v = x[..., sl]
        v = v[np.isfinite(v)]
        if v.size:
            means.append(v.mean())
            variances.append(v.var())
    if not means:
        return float("nan"), float("nan")
    m, var = np.asarray(means), np.asarray(variances)
    total = float(m.mean())
    return total, float(np.sqrt(np.mean(var + (m - total) ** 2)))


def landmark_outliers(rd, layout: Layout | str, threshold: float = OUTLIER_RD) -> np.ndarray:
    """``(..., V)`` bool: the vertebra's mean RD exceeds ``threshold`` % (Section 4.3)."""
    return vertebra_mean(rd, layout) > threshold


class LandmarkErrorMetric(CumulativeIterationMetric):
    """Cumulative D / RD of whole-layout predictions (MONAI metric; attach to Ignite with ``IgniteMetricHandler``).

    Each call takes batch-first ``y_pred`` and ``y`` of shape ``(B, N, 2)`` (original pixels) and optionally
    ``spacing`` ``(B, 2)`` (mm per pixel; NaN rows where unknown). :meth:`aggregate` returns the mean of
    ``metric`` over all landmarks (a scalar, for handlers and early stopping); :meth:`summary` returns the paper's
    table: mean and std per vertebra, lumbar, sacrum, the paper's ``total`` (mean of the per-vertebra means,
    :func:`vertebra_total`) and ``all`` (mean over landmarks), and the landmark outlier rate per vertebra.

    Args:
        layout: landmark layout.
        metric: ``"rd"`` (%), ``"d"`` (pixels) or ``"d_mm"``.
        outlier_threshold: RD (%) above which a vertebra is a landmark outlier.
    """

    _ROWS = {"d": 0, "d_mm": 1, "rd": 2}

    def __init__(self, layout: Layout | str, metric: str = "rd", outlier_threshold: float = OUTLIER_RD) -> None:
        super().__init__()
        if metric not in self._ROWS:
            raise ValueError(f"metric must be one of {sorted(self._ROWS)}, got {metric!r}")
        self.layout = get_layout(layout)
        self.metric = metric
        self.outlier_threshold = float(outlier_threshold)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("y (ground truth) is required")
        p = y_pred.detach().cpu().double().numpy()
        g = y.detach().cpu().double().numpy()
        if p.ndim == 2:
            p, g = p[None], g[None]
        d = distance_error(p, g)
        spacing = kwargs.get("spacing")
        if spacing is None:
            dmm = np.full_like(d, np.nan)
        else:
            s = np.asarray(spacing.detach().cpu() if isinstance(spacing, torch.Tensor) else spacing, np.float64)
            dmm = distance_error(p, g, np.broadcast_to(s, (len(p), 2)))
        rd = relative_distance_error(p, g, self.layout)
        return torch.as_tensor(np.stack([d, dmm, rd], axis=1))  # (B, 3, N)

    def _values(self) -> np.ndarray:
        buf = self.get_buffer()
        if buf is None or (isinstance(buf, torch.Tensor) and buf.numel() == 0):
            raise ValueError("no data: call the metric before aggregating")
        return buf.double().numpy()  # (M, 3, N)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        vals = self._values()[:, self._ROWS[self.metric]]
        return torch.tensor(float(np.nanmean(vals)))

    def summary(self) -> dict[str, Any]:
        """Paper-style table: ``{"rd": {"L1": (mean, std), ..., "lumbar": ..., "sacrum": ..., "total": ...,
        "all": ...},
        "d": {...}, "d_mm": {...}, "outlier_pct": {"L1": %, ...}, "images": M}``."""
        vals = self._values()
        lay = self.layout
        out: dict[str, Any] = {"images": int(vals.shape[0])}
        lumbar = np.concatenate([np.arange(lay.num_points)[lay.vertebra_slices[i]] for i in lay.lumbar_indices])
        for name, row in self._ROWS.items():
            x = vals[:, row]
            if np.all(np.isnan(x)):
                continue
            table = {}
            for spec, sl in zip(lay.vertebrae, lay.vertebra_slices, strict=False):
                table[spec.name] = (float(np.nanmean(x[:, sl])), float(np.nanstd(x[:, sl])))
            if lay.sacrum_index is not None:
                table["sacrum"] = table[lay.vertebrae[lay.sacrum_index].name]
            lumbar_only = dataclasses.replace(lay, vertebrae=tuple(lay.vertebrae[i] for i in lay.lumbar_indices))
            table["lumbar"] = vertebra_total(x[:, lumbar], lumbar_only)  # the paper's Table 11 "Total" (L1-L5)
            table["total"] = vertebra_total(x, lay)
            table["all"] = (float(np.nanmean(x)), float(np.nanstd(x)))
            out[name] = table
        outl = landmark_outliers(vals[:, 2], lay, self.outlier_threshold)
        out["outlier_pct"] = {spec.name: float(100.0 * outl[:, i].mean()) for i, spec in enumerate(lay.vertebrae)}
        return out
