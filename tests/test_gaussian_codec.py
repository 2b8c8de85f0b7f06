from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.codecs.gaussian import decode_peaks, render_gaussians
from lumbar_monai.networks.blocks import PreActConv

pytestmark = pytest.mark.compat


def test_render_is_eq1_at_subpixel_position():
    pts = torch.tensor([[10.3, 20.7]], dtype=torch.float64)
    m = render_gaussians(pts, 2.0, 32, 40)
    assert m.shape == (1, 32, 40)
    yy, xx = np.mgrid[0:32, 0:40]
    ref = np.exp(-((xx - 10.3) ** 2 + (yy - 20.7) ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(m[0].numpy(), ref, rtol=1e-12)


def test_render_batched_sigma_and_invalid_points():
    pts = torch.tensor([[[5.0, 5.0], [float("nan"), 1.0]], [[2.0, 3.0], [7.0, 7.0]]])
    m = render_gaussians(pts, torch.tensor([[1.0], [2.0]]), 16, 16)
    assert m.shape == (2, 2, 16, 16)
    assert m[0, 1].abs().max() == 0
    assert m[1, 0, 3, 2] == pytest.approx(1.0)
    assert m[1, 0, 3, 4] == pytest.approx(np.exp(-4 / 8), rel=1e-6)


@pytest.mark.parametrize("refine,tol", [("quadratic", 1e-9), ("none", 0.5 + 1e-9)])
def test_decode_recovers_subpixel_centres(refine, tol):
    rng = np.random.default_rng(0)
    pts = torch.as_tensor(rng.uniform(3, 60, size=(4, 6, 2)), dtype=torch.float64)
    maps = render_gaussians(pts, 3.0, 64, 64)
    out, conf = decode_peaks(maps, refine=refine)
    assert out.shape == (4, 6, 2) and conf.shape == (4, 6)
    assert (out - pts).abs().max() <= tol
    assert torch.all(conf <= 1) and torch.all(conf > 0.9)


def test_decode_at_border_stays_in_map():
    maps = torch.zeros(1, 8, 8)
    maps[0, 0, 7] = 1.0
    out, conf = decode_peaks(maps)
    assert out[0].tolist() == [7.0, 0.0] and conf.item() == 1.0


def test_preact_block_order_and_shape():
    b = PreActConv(3, 8, kernel_size=13, strides=2)
    assert [type(m).__name__ for m in b.children()] == ["InstanceNorm2d", "ReLU", "Convolution"]
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 8, 16, 16)
    assert b.conv.conv.kernel_size == (13, 13)
