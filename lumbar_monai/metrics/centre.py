"""Stage-1 (centre) metrics of An et al. 2022, Section 4.2 (Tables 2-4): centre distance error, centre outliers,
centre detection accuracy; as functions and as a MONAI cumulative metric for Ignite engines
(``monai.handlers.IgniteMetricHandler``).

* Centre distance error: Euclidean distance between predicted and ground-truth centres in pixels of the
  512x512 network input ("512-space"), per vertebra and over all, mean (std); also in mm where the pixel spacing
  and the sample's geometry (original -> input) are known (*ours*: the distance is measured in original pixels
  scaled by ``(sx, sy)``).
* Centre outlier (Section 4.2): an image in which some ground-truth landmark falls outside the crop that the
  predicted centres make - each vertebra's square crop of Eq. 5 (:func:`lumbar_monai.crops.crop_boxes_eq5`,
  side ``H`` centred on the predicted centre, covering ``[c - H/2, c + H/2]`` on both axes) must contain all of
  that vertebra's ground-truth corners. "Inlier" statistics leave outlier images out; "All" keep them.
* Centre detection accuracy = 100 - outlier %.

Shapes: predicted centres ``(B, V, 2)``, ground-truth landmarks ``(B, N, 2)`` (x, y), all in 512-space pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from ..anatomy import Layout, get_layout
from ..crops import crop_boxes_eq5

__all__ = ["centre_distance", "landmarks_outside_crops", "centre_outliers", "CentreErrorMetric"]


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def centre_distance(pred, gt, spacing=None) -> np.ndarray:
    """``(..., V)`` Euclidean distance between centres; in mm when ``spacing`` ``(sx, sy)`` or ``(..., 2)`` is given."""
    d = _np(pred) - _np(gt)
    if spacing is not None:
        s = _np(spacing)
        d = d * (s[..., None, :] if s.ndim > 1 else s)
    return np.sqrt((d * d).sum(-1))


def landmarks_outside_crops(pred_centres, gt_points, layout: Layout | str) -> np.ndarray:
    """``(..., V)`` bool: some ground-truth corner of vertebra ``i`` lies outside its Eq. 5 crop.

    The crop of vertebra ``i`` is centred on the *predicted* centre ``c_i`` with the side (height)
    :func:`~lumbar_monai.crops.crop_boxes_eq5` computes from the predicted centres and ``layout.crop_aspect`` times
    that as its width. NaN (unannotated) corners
    are not counted.
    """
    lay = get_layout(layout)
    c = _np(pred_centres)
    p = _np(gt_points)
    sides = crop_boxes_eq5(c, lay)  # (..., V) crop heights
    halves = sides[..., None] / 2.0 * np.array([lay.crop_aspect, 1.0])  # (..., V, 2): half width, half height
    out = np.zeros(c.shape[:-1], dtype=bool)
    with np.errstate(invalid="ignore"):
        for i, sl in enumerate(lay.vertebra_slices):
            delta = np.abs(p[..., sl, :] - c[..., i, None, :])  # (..., K, 2)
            outside = (delta > halves[..., i, None, :]).any(-1)  # NaN compares False
            out[..., i] = outside.any(-1)
    return out


def centre_outliers(pred_centres, gt_points, layout: Layout | str) -> np.ndarray:
    """``(...)`` bool: the image is a centre outlier (some landmark outside the crops, Section 4.2)."""
    return landmarks_outside_crops(pred_centres, gt_points, layout).any(-1)


class CentreErrorMetric(CumulativeIterationMetric):
    """Cumulative centre error and outliers (MONAI metric; Ignite via ``IgniteMetricHandler``).

    Each call takes ``y_pred`` ``(B, V, 2)`` predicted centres and ``y`` ``(B, N, 2)`` ground-truth *landmarks*
    (the centres are their means; outliers need the corners), both in 512-space pixels, and optionally
    ``geometry`` ``(B, 3, 3)`` (original -> 512-space) with ``spacing`` ``(B, 2)`` mm per original pixel (NaN rows
    where unknown) for the mm error. :meth:`aggregate` returns the mean centre error over all images ("All", px)
    as a scalar for handlers; :meth:`summary` returns the paper's table.

    Args:
        layout: landmark layout.
    """

    def __init__(self, layout: Layout | str = "lateral") -> None:
        super().__init__()
        self.layout = get_layout(layout)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("y (ground-truth landmarks) is required")
        c = _np(y_pred)
        p = _np(y)
        if c.ndim == 2:
            c, p = c[None], p[None]
        gt_c = self.layout.centres(p)
        d = centre_distance(c, gt_c)
        d_mm = np.full_like(d, np.nan)
        geometry, spacing = kwargs.get("geometry"), kwargs.get("spacing")
        if geometry is not None and spacing is not None:
            inv = np.linalg.inv(np.broadcast_to(_np(geometry), (len(c), 3, 3)))
            c_o = np.einsum("bij,bkj->bki", inv[:, :2, :2], c) + inv[:, None, :2, 2]
            g_o = np.einsum("bij,bkj->bki", inv[:, :2, :2], gt_c) + inv[:, None, :2, 2]
            d_mm = centre_distance(c_o, g_o, np.broadcast_to(_np(spacing), (len(c), 2)))
        miss = landmarks_outside_crops(c, p, self.layout).astype(np.float64)
        return torch.as_tensor(np.stack([d, d_mm, miss], axis=1))  # (B, 3, V)

    def _values(self) -> np.ndarray:
        buf = self.get_buffer()
        if buf is None or (isinstance(buf, torch.Tensor) and buf.numel() == 0):
            raise ValueError("no data: call the metric before aggregating")
        return buf.double().numpy()  # (M, 3, V)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        return torch.tensor(float(np.nanmean(self._values()[:, 0])))

    def summary(self) -> dict[str, Any]:
        """``{"px": {"all": {"L1": (mean, std), ..., "total": ...}, "inlier": {...}}, "mm": {...} (if known),
        "outlier_pct", "accuracy_pct", "outliers", "images"}``."""
        vals = self._values()
        outlier = vals[:, 2].max(axis=1) > 0
        out: dict[str, Any] = {
            "images": int(len(vals)),
            "outliers": int(outlier.sum()),
            "outlier_pct": float(100.0 * outlier.mean()),
            "accuracy_pct": float(100.0 - 100.0 * outlier.mean()),
        }
        for unit, row in (("px", 0), ("mm", 1)):
            x = vals[:, row]
            if np.all(np.isnan(x)):
                continue
            table = {}
            for subset, rows in (("all", np.ones(len(x), bool)), ("inlier", ~outlier)):
                xs = x[rows]
                if xs.size == 0 or np.all(np.isnan(xs)):
                    table[subset] = None
                    continue
                t = {spec.name: (float(np.nanmean(xs[:, i])), float(np.nanstd(xs[:, i])))
                     for i, spec in enumerate(self.layout.vertebrae)}
                t["total"] = (float(np.nanmean(xs)), float(np.nanstd(xs)))
                table[subset] = t
            out[unit] = table
        return out
