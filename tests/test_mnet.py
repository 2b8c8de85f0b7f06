from __future__ import annotations

import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.networks.blocks import PreActConv
from lumbar_monai.networks.coordconv import AddCoords, CoordPreActConv
from lumbar_monai.networks.mnet import MNet, mnet_kwargs_for

pytestmark = pytest.mark.compat


def test_add_coords_values():
    x = torch.zeros(2, 3, 3, 5)
    y = AddCoords()(x)
    assert y.shape == (2, 5, 3, 5)
    torch.testing.assert_close(y[1, 3, 2], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(y[0, 4, :, 4], torch.tensor([-1.0, 0.0, 1.0]))


def test_coordconv_breaks_translation_invariance():
    torch.manual_seed(0)
    x = torch.ones(1, 2, 9, 9)
    x[:, 1] = 2.0  # two constant channels: InstanceNorm keeps them constant
    plain = PreActConv(2, 4, 3)
    coord = CoordPreActConv(2, 4, 3)
    yp, yc = plain(x)[0, :, 2:-2, 2:-2], coord(x)[0, :, 2:-2, 2:-2]  # away from the zero padding
    assert torch.allclose(yp, yp[:, :1, :1].expand_as(yp))
    assert not torch.allclose(yc, yc[:, :1, :1].expand_as(yc))


@pytest.mark.parametrize("layout,kind,channels", [(LATERAL, "lumbar", 5), (LATERAL, "sacrum", 3), (AP, "lumbar", 5)])
def test_channel_counts_from_layout(layout, kind, channels):
    assert mnet_kwargs_for(layout, kind)["out_channels"] == channels
    assert mnet_kwargs_for(layout, kind, paf=False)["out_channels"] == channels - 1


@pytest.mark.parametrize("coordconv", [0, 1, 2])
def test_shapes_coordconv_count_and_deep_supervision(coordconv):
    net = MNet.for_layout(LATERAL, "sacrum", channels=(8, 16, 32), width=0.5, coordconv=coordconv)
    n_coord = sum(isinstance(m, CoordPreActConv) for m in net.modules())
    assert n_coord == coordconv
    # coord layers are the first convolutions of the encoder (full-resolution level)
    first = net.encoder[0]
    assert [isinstance(m, CoordPreActConv) for m in first] == [i < coordconv for i in range(2)]
    x = torch.randn(2, 1, 32, 32)
    net.train()
    outs = net(x)
    assert isinstance(outs, list) and len(outs) == 1 + 3
    assert all(o.shape == (2, 3, 32, 32) for o in outs)
    torch.testing.assert_close(outs[0], torch.stack(outs[1:]).mean(0))
    net.eval()
    with torch.inference_mode():
        y = net(x)
    assert y.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError):
        net(torch.randn(1, 1, 36, 36))


def test_width_scales_channels():
    net = MNet(channels=(32, 64), width=0.25, out_channels=5)
    assert net.encoder[0][0].conv.out_channels == 8 and net.encoder[1][0].conv.out_channels == 16
    assert net.bottleneck[0].conv.out_channels == 32


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("coordconv", [0, 2])
def test_torchscript_scripting_matches_eager(training, coordconv):
    """M-Net scripts (not only traces); eval gives the fused map, training the fused map and every side output."""
    torch.manual_seed(0)
    net = MNet(out_channels=5, channels=(4, 8, 8), coordconv=coordconv).train(training)
    scripted = torch.jit.script(net)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        eager, script = net(x), scripted(x)
    if training:
        assert isinstance(script, list) and len(script) == len(eager) == 4
        for a, b in zip(script, eager, strict=True):
            torch.testing.assert_close(a, b)
    else:
        torch.testing.assert_close(script, eager)
    with pytest.raises(torch.jit.Error, match="divisible by 8"):
        scripted(torch.rand(1, 1, 36, 36))
