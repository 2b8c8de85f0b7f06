"""Eq. 2-4: un-squared L2 norms of whole map differences, per sample, channel mean, batch mean."""

from __future__ import annotations

import pytest
import torch

from lumbar_monai.losses.centre import PoseNetLoss, map_l2_norm

pytestmark = pytest.mark.compat


def test_known_value():
    target = torch.zeros(2, 6, 4, 4)
    final = torch.zeros(2, 6, 4, 4)
    pre = torch.zeros(2, 1, 4, 4)
    final[0, 0, :2, :2] = 1.5  # ||.||_2 = sqrt(4 * 2.25) = 3 on channel 0 of sample 0
    pre[1, 0, 0, :] = 2.0
    # L5 is channel 4 of the lateral layout: the pre-prediction is compared with it (and only with it)
    target[1, 4, 0, :3] = 2.0  # pre - L5 target: one entry of 2 left, norm 2; final vs target: sqrt(3 * 4) on ch 4
    target[1, 3, 1, 1] = 5.0  # another vertebra: in the final term only (norm 5)
    loss = PoseNetLoss("lateral", reduction="none")
    t = loss.terms(final, pre, target)
    final_1 = (12.0**0.5 + 5.0) / 6
    torch.testing.assert_close(t["final"], torch.tensor([3.0 / 6, final_1]))
    torch.testing.assert_close(t["pre"], torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(loss(final, pre, target), torch.tensor([0.5, final_1 + 2.0]))
    assert PoseNetLoss()(final, pre, target).item() == pytest.approx((0.5 + final_1 + 2.0) / 2)
    assert PoseNetLoss(reduction="sum")(final, pre, target).item() == pytest.approx(0.5 + final_1 + 2.0)


def test_pre_term_uses_the_l5_channel():
    target = torch.zeros(1, 5, 3, 3)
    target[0, 4] = 1.0  # AP layout: L5 = channel 4 too, but check via l5_channel override
    pre = torch.zeros(1, 1, 3, 3)
    assert PoseNetLoss("ap").terms(target, pre, target)["pre"].item() == pytest.approx(3.0)
    assert PoseNetLoss(l5_channel=0).terms(target, pre, target)["pre"].item() == pytest.approx(0.0)


def test_not_squared_and_shape_checks():
    d = torch.full((3, 3), 2.0)
    assert map_l2_norm(d).item() == pytest.approx(6.0)  # sqrt(9 * 4), not 36
    with pytest.raises(ValueError):
        PoseNetLoss()(torch.zeros(1, 6, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(1, 6, 5, 5))
    with pytest.raises(ValueError):
        PoseNetLoss()(torch.zeros(1, 6, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 6, 4, 4))


def test_map_norm_loss_is_the_mean_per_map_l2_norm():
    from lumbar_monai.losses.centre import MapNormLoss

    pred = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    target[0, 0, 1, 1] = 3.0
    target[0, 0, 2, 2] = 4.0  # norm 5 for this map, 0 for the other five
    assert float(MapNormLoss()(pred, target)) == pytest.approx(5.0 / 6)
    with pytest.raises(ValueError, match="differ in shape"):
        MapNormLoss()(pred[:, :2], target)
