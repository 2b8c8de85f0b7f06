r"""Pose-Net loss, Eq. 2-4 of An et al. 2022 (Section 3.2).

.. math::

    L_{pre} = \lVert \hat C_5 - \bar C_5 \rVert_2 \quad (2) \qquad
    L_{final} = \frac{1}{V} \sum_{i=1}^{V} \lVert \hat C_i - C_i \rVert_2 \quad (3) \qquad
    L_{Pose} = L_{pre} + L_{final} \quad (4)

``||.||_2`` is the L2 norm of the whole map difference (square root of the sum of squares over the H x W pixels),
*not* its square and not a mean. It is computed per sample and per channel; ``L_Pose`` is formed per sample and the
batch loss is the mean over samples (*ours*: the paper does not say how a batch is reduced). ``V`` = 6 in the paper
(its ``1/6``); here the channel count of the target. ``hat C_5`` is the target map of L5 (the last lumbar vertebra
of the layout), ``bar C_5`` the network's internal pre-prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..anatomy import Layout, get_layout

__all__ = ["PoseNetLoss", "MapNormLoss", "map_l2_norm"]


def map_l2_norm(diff: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` -> ``(...)``: the L2 norm of each map (not squared)."""
    return torch.linalg.vector_norm(diff.flatten(-2), ord=2, dim=-1)


class PoseNetLoss(nn.Module):
    """Eq. 2-4: ``||hat C_5 - bar C_5||_2 + mean_i ||hat C_i - C_i||_2``, per sample, then the batch mean.

    Args:
        layout: gives the L5 channel (last lumbar vertebra); or pass ``l5_channel``.
        l5_channel: index of L5 in the target channels (overrides ``layout``).
        pre_weight: weight of ``L_pre`` (1 in Eq. 4).
        reduction: ``"mean"`` (batch mean), ``"sum"`` or ``"none"`` (per-sample ``(B,)``).
    """

    def __init__(
        self,
        layout: str | Layout = "lateral",
        l5_channel: int | None = None,
        pre_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.l5_channel = int(l5_channel) if l5_channel is not None else get_layout(layout).lumbar_indices[-1]
        self.pre_weight = float(pre_weight)
        self.reduction = reduction

    def terms(self, final: torch.Tensor, pre: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample ``(B,)`` tensors ``"pre"`` (Eq. 2), ``"final"`` (Eq. 3) and ``"total"`` (Eq. 4).

        Args:
            final: ``(B, V, H, W)`` network output ``C``.
            pre: ``(B, 1, H, W)`` L5 pre-prediction ``bar C_5``.
            target: ``(B, V, H, W)`` ground-truth maps ``hat C``.
        """
        if final.shape != target.shape:
            raise ValueError(f"final {tuple(final.shape)} and target {tuple(target.shape)} differ in shape")
        if pre.shape[1] != 1 or pre.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"pre-prediction must be (B, 1, H, W) like the target, got {tuple(pre.shape)}")
        l_pre = map_l2_norm(target[:, self.l5_channel] - pre[:, 0])
        l_final = map_l2_norm(target - final).mean(dim=1)
        return {"pre": l_pre, "final": l_final, "total": self.pre_weight * l_pre + l_final}

    def forward(self, final: torch.Tensor, pre: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = self.terms(final, pre, target)["total"]
        if self.reduction == "mean":
            return total.mean()
        if self.reduction == "sum":
            return total.sum()
        return total


class MapNormLoss(nn.Module):
    """Eq. 3 alone: the mean over channels and samples of each map's L2 norm ``||hat C_i - C_i||_2``.

    For networks without the L5 pre-prediction (the one-stage baseline). Unlike a mean squared error, whose
    per-pixel average over a whole image is tiny for sparse Gaussian targets, the norm's gradient keeps unit size
    per map however small the peak.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        return map_l2_norm(target - pred).mean()
