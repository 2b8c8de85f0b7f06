from __future__ import annotations

import pytest
import torch

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.losses.corner import CornerPAFLoss, corner_loss_for

pytestmark = pytest.mark.compat


def test_eq10_known_answer():
    target = torch.zeros(2, 5, 4, 4)
    pred = torch.zeros(2, 5, 4, 4)
    pred[0, 0] = 1.0  # ||.|| = 4
    pred[0, 3, 0, 0] = 3.0  # ||.|| = 3
    pred[0, 4] = 2.0  # PAF: ||.|| = 8
    pred[1, 1, 1, 1] = -2.0  # ||.|| = 2
    loss = CornerPAFLoss(4, paf_weight=0.5)(pred, target)
    expected = ((4 + 3) / 4 + 0.5 * 8 + 2 / 4) / 2
    assert loss.item() == pytest.approx(expected)


def test_paper_weights_and_no_paf():
    lumbar = corner_loss_for(LATERAL, "lumbar")
    sacrum = corner_loss_for(LATERAL, "sacrum")
    assert lumbar.num_corners == 4 and lumbar.paf_weight == 0.001
    assert sacrum.num_corners == 2 and sacrum.paf_weight == 0.01
    nopaf = corner_loss_for(LATERAL, "sacrum", paf=False)
    pred = torch.zeros(1, 2, 3, 3)
    pred[0, 1] = 1.0
    assert nopaf(pred, torch.zeros_like(pred)).item() == pytest.approx(3 / 2)
    with pytest.raises(ValueError):
        nopaf(torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 3, 3))


def test_deep_supervision_weights_and_gradient():
    loss = corner_loss_for(LATERAL, "sacrum", paf_weight=1.0, deep_supervision_levels=2)
    target = torch.zeros(1, 3, 2, 2)
    fused = torch.ones(1, 3, 2, 2, requires_grad=True)  # each channel norm 2: 2 + 1 * 2 = 4
    side = torch.full((1, 3, 2, 2), 0.5)  # each norm 1: 1 + 1 = 2
    value = loss([fused, side, side], target)
    assert value.item() == pytest.approx(4 + 0.5 * 2 + 0.5 * 2)
    value.backward()
    assert torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
