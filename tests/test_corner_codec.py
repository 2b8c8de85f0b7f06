from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.codecs.corner import CornerCodec

pytestmark = pytest.mark.compat

# a 30 x 40 rectangle: diagonals 50 -> lumbar sigma 5
RECT = torch.tensor([[10.0, 20.0], [50.0, 20.0], [10.0, 50.0], [50.0, 50.0]], dtype=torch.float64)


def test_lumbar_sigma_is_a_tenth_of_the_mean_diagonal():
    codec = CornerCodec(LATERAL, "lumbar", size=64)
    assert codec.num_corners == 4
    assert float(codec.sigma(RECT)) == pytest.approx(5.0)
    # skewed: diagonals |(0,0)-(40,40)| and |(40,0)-(0,30)| = 56.57 and 50
    skew = torch.tensor([[0.0, 0.0], [40.0, 0.0], [0.0, 30.0], [40.0, 40.0]])
    assert float(codec.sigma(skew)) == pytest.approx(0.1 * 0.5 * (40 * 2**0.5 + 50.0), rel=1e-6)


def test_sacrum_sigma_is_a_sixth_of_the_end_plate():
    codec = CornerCodec(LATERAL, "sacrum", size=64)
    assert codec.num_corners == 2
    assert float(codec.sigma(torch.tensor([[10.0, 10.0], [40.0, 50.0]]))) == pytest.approx(50.0 / 6)
    with pytest.raises(ValueError):
        CornerCodec(AP, "sacrum")


def test_encode_is_eq6_and_decode_recovers_subpixel_corners():
    codec = CornerCodec(LATERAL, "lumbar", size=(64, 72))
    pts = RECT + torch.tensor([0.3, -0.41], dtype=torch.float64)
    maps = codec.encode(pts)
    assert maps.shape == (4, 64, 72)
    y, x = 22, 13
    expected = np.exp(-((x - pts[0, 0].item()) ** 2 + (y - pts[0, 1].item()) ** 2) / (2 * 25.0))
    assert maps[0, y, x].item() == pytest.approx(expected, rel=1e-9)
    got, conf = codec.decode(maps)
    torch.testing.assert_close(got, pts, atol=1e-6, rtol=0)
    assert torch.all(conf > 0.98)


def test_batched_encode_uses_per_sample_sigma():
    codec = CornerCodec(LATERAL, "lumbar", size=80)
    batch = torch.stack([RECT, RECT * 1.5])
    maps = codec.encode(batch)
    assert maps.shape == (2, 4, 80, 80)
    # one pixel right of the corner: exp(-1 / (2 sigma^2)) with sigma 5 and 7.5
    assert maps[0, 0, 20, 11].item() == pytest.approx(np.exp(-1 / 50.0), rel=1e-6)
    assert maps[1, 0, 30, 16].item() == pytest.approx(np.exp(-1 / (2 * 7.5**2)), rel=1e-6)
    with pytest.raises(ValueError):
        codec.encode(batch[:, :2])
