"""Stage-2 loss, Eq. 10 (lumbar) and Eq. 11 (sacrum) of An et al. 2022.

``L = 1/K sum_k ||C_hat_k - C_k||_2 + w ||P_hat - P||_2`` per sample, with ``||.||_2`` the (unsquared) L2 norm of a
whole map, ``K`` the corner channels (4 lumbar, 2 sacrum), ``w = alpha = 0.001`` (lumbar) or ``beta = 0.01``
(sacrum); averaged over the batch (*ours*: the paper does not say how a batch is reduced). Without a PAF channel
the second term is absent.
"""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

from ..anatomy import Layout
from ..codecs.corner import vertebra_template

__all__ = ["CornerPAFLoss", "corner_loss_for", "PAPER_PAF_WEIGHTS"]

#: Eq. 10-11 weights of the PAF term: alpha (lumbar) and beta (sacrum).
PAPER_PAF_WEIGHTS = {"lumbar": 0.001, "sacrum": 0.01}


class CornerPAFLoss(_Loss):
    """Eq. 10-11: mean over corner channels of the L2 norms plus the weighted L2 norm of the PAF difference.

    Args:
        num_corners: ``K``; channels ``0..K-1`` are corner maps, channel ``K`` (if present) the PAF.
        paf_weight: alpha / beta.
        paf: whether the maps carry a PAF channel (``False``: the ablation without PAFs).
    """

    def __init__(self, num_corners: int, paf_weight: float = 0.001, paf: bool = True) -> None:
        super().__init__()
        self.num_corners = int(num_corners)
        self.paf_weight = float(paf_weight)
        self.paf = bool(paf)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        expected = self.num_corners + (1 if self.paf else 0)
        if input.shape != target.shape or input.shape[1] != expected:
            raise ValueError(f"expected (B, {expected}, H, W) input and target, got {tuple(input.shape)} and "
                             f"{tuple(target.shape)}")
        diff = (input - target).flatten(2)  # (B, C, H*W)
        norms = torch.linalg.vector_norm(diff, dim=-1)  # (B, C)
        loss = norms[:, : self.num_corners].mean(dim=1)
        if self.paf:
            loss = loss + self.paf_weight * norms[:, self.num_corners]
        return loss.mean()


def corner_loss_for(
    layout: Layout | str,
    kind: str,
    paf: bool = True,
    paf_weight: float | None = None,
    deep_supervision_levels: int = 0,
) -> _Loss:
    """The Eq. 10 / Eq. 11 loss for a layout's lumbar or sacrum M-Net.

    Args:
        layout, kind: which M-Net (``"lumbar"`` or ``"sacrum"``); ``K`` is read from the layout.
        paf: PAF channel present.
        paf_weight: overrides alpha / beta of :data:`PAPER_PAF_WEIGHTS`.
        deep_supervision_levels: number ``L`` of M-Net side outputs; when > 0 the loss is MONAI's
            ``DeepSupervisionLoss`` over ``[fused, side_0, ..., side_{L-1}]`` with weights ``1`` for the fused map and
            ``1 / L`` for each side output (*ours*: the side outputs together weigh as much as the fused map).
    """
    spec = vertebra_template(layout, kind)
    w = PAPER_PAF_WEIGHTS.get(kind, 0.001) if paf_weight is None else paf_weight
    base = CornerPAFLoss(spec.num_corners, paf_weight=w, paf=paf)
    if deep_supervision_levels > 0:
        lv = int(deep_supervision_levels)
        return DeepSupervisionLoss(base, weights=[1.0] + [1.0 / lv] * lv)
    return base
