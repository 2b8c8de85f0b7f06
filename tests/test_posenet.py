"""Pose-Net: shapes from the layout, pre-activation blocks, the large kernel, L5 pre-prediction fed back."""

from __future__ import annotations

import pytest
import torch

from lumbar_monai.networks.blocks import PreActConv
from lumbar_monai.networks.posenet import PoseNet

pytestmark = pytest.mark.compat


@pytest.mark.parametrize("layout,channels", [("lateral", 6), ("ap", 5)])
def test_output_shapes_from_layout(layout, channels):
    net = PoseNet(layout, width=4, kernel_size=7).eval()
    with torch.no_grad():
        final, pre = net(torch.rand(2, 1, 64, 64))
    assert final.shape == (2, channels, 8, 8) and pre.shape == (2, 1, 8, 8)


def test_default_is_512_to_64_with_13x13_kernels():
    net = PoseNet()
    assert net.out_channels == 6 and net.kernel_size == 13
    big = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (13, 13)]
    assert len(big) == 3 + 5  # pre-prediction stage + final stage
    assert all(m.in_channels in (128, 129) and m.out_channels == 128 for m in big)
    # the final stage's first large conv sees the features plus the 1-channel L5 pre-prediction
    assert net.final_stage[0].conv.conv.in_channels == 129
    # every block but the stem is norm -> relu -> conv
    blocks = [m for m in net.modules() if isinstance(m, PreActConv)]
    assert all(isinstance(b[0], torch.nn.InstanceNorm2d) and isinstance(b[1], torch.nn.ReLU) for b in blocks)
    seven = PoseNet(kernel_size=7)
    assert sum(m.kernel_size == (7, 7) for m in seven.modules() if isinstance(m, torch.nn.Conv2d)) == 8


def test_pre_prediction_feeds_the_final_maps():
    torch.manual_seed(0)
    net = PoseNet(width=4, kernel_size=5).eval()
    x = torch.rand(1, 1, 32, 32)
    captured = {}

    def hook(module, inputs):
        captured["in"] = inputs[0]

    net.final_stage.register_forward_pre_hook(hook)
    with torch.no_grad():
        final, pre = net(x)
    assert captured["in"].shape[1] == 16 + 1
    torch.testing.assert_close(captured["in"][:, -1:], pre)


def test_gradients_flow_and_bad_input():
    net = PoseNet(width=2, stage_channels=8, kernel_size=3)
    final, pre = net(torch.rand(2, 1, 16, 16))
    (final.sum() + pre.sum()).backward()
    assert net.front[0].conv.weight.grad is not None and net.front[0].conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        net(torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError):
        PoseNet(kernel_size=6)


@pytest.mark.parametrize("training", [False, True])
def test_torchscript_scripting_matches_eager(training):
    """Both Pose-Net forms script (not only trace) and the scripted module computes what the eager one does."""
    from lumbar_monai.networks.posenet import PoseNetCentres

    torch.manual_seed(0)
    net = PoseNet(width=4, kernel_size=5, pre_convs=1, stage_convs=1).train(training)
    centres = PoseNetCentres(width=4, kernel_size=5, pre_convs=1, stage_convs=1)
    centres.load_state_dict(net.state_dict())  # same layers, same keys
    centres.train(training)
    x = torch.rand(2, 1, 32, 32)
    scripted, scripted_centres = torch.jit.script(net), torch.jit.script(centres)
    with torch.no_grad():
        final, pre = net(x)
        s_final, s_pre = scripted(x)
        torch.testing.assert_close(s_final, final)
        torch.testing.assert_close(s_pre, pre)
        torch.testing.assert_close(scripted_centres(x), final)
        torch.testing.assert_close(centres(x), final)
    with pytest.raises(torch.jit.Error, match="divisible by 8"):
        scripted(torch.rand(1, 1, 20, 20))
