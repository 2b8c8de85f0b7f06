"""CentreHeatmapCodec: Eq. 1 targets with the L5 sigma rule, sub-pixel exact, and decoding to every grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL, get_layout
from lumbar_monai.codecs.centre import CentreHeatmapCodec, CentreHeatmapd
from lumbar_monai.transforms.geometry import PadToSquared, ResizeSquared, to_original

pytestmark = pytest.mark.compat


def spine_points(layout, top=(250.0, 90.0), spacing=60.0, width=50.0, height=40.0, angle=0.0) -> np.ndarray:
    """Rectangular vertebrae stacked along a line tilted by ``angle`` (radians); S1 = an end plate."""
    layout = get_layout(layout)
    down = np.array([np.sin(angle), np.cos(angle)])
    right = np.array([np.cos(angle), -np.sin(angle)])
    pts = []
    for i, v in enumerate(layout.vertebrae):
        c = np.asarray(top) + i * spacing * down
        if v.kind == "lumbar":
            for sv, sh in [(-1, -1), (-1, 1), (1, -1), (1, 1)]:  # sup-ant, sup-post, inf-ant, inf-post
                pts.append(c + sv * height / 2 * down + sh * width / 2 * right)
        else:
            c = c - 0.5 * spacing * down
            pts += [c - width / 2 * right, c + width / 2 * right]
    return np.array(pts)


def test_l5_height_and_sigma_rule():
    codec = CentreHeatmapCodec("lateral", input_size=512, heatmap_size=64)
    pts = spine_points("lateral", height=40.0)
    # make L5 a wedge: anterior 44, posterior 36 -> L5 height 40 (mean of the two)
    sl = LATERAL.vertebra_slices[4]
    p = pts.copy()
    p[sl.start + 2, 1] += 4.0
    p[sl.start + 3, 1] -= 4.0
    assert codec.l5_height(p) == pytest.approx(40.0)
    assert codec.sigma(p) == pytest.approx(0.5 * 40.0 / 8.0)
    # batched; a missing L5 falls back to the mean lumbar height
    q = spine_points("lateral", height=24.0)
    q[sl] = np.nan
    np.testing.assert_allclose(codec.l5_height(np.stack([p, q])), [40.0, 24.0])
    assert codec.sigma(spine_points("lateral", height=1.0)) == 0.5  # min_sigma


def test_encode_is_eq1_subpixel_and_channels():
    codec = CentreHeatmapCodec("lateral", input_size=512, heatmap_size=64)
    pts = spine_points("lateral", top=(251.3, 93.7))
    maps = codec.encode(pts)
    assert maps.shape == (6, 64, 64) and maps.dtype == torch.float32
    c = codec.input_to_heatmap(LATERAL.centres(pts))
    sigma = codec.sigma(pts)
    # Eq. 1 at a few pixels, by hand
    for ch, (yy, xx) in [(0, (10, 31)), (2, (27, 30)), (5, (48, 33))]:
        expect = np.exp(-((xx - c[ch, 0]) ** 2 + (yy - c[ch, 1]) ** 2) / (2 * sigma**2))
        assert maps[ch, yy, xx].item() == pytest.approx(expect, rel=1e-5, abs=1e-7)
    # sub-pixel: not rounded, so the on-grid maximum is below 1 when the centre is between pixels
    assert maps.amax(dim=(-2, -1)).max() < 1.0
    # AP layout: 5 channels
    assert CentreHeatmapCodec("ap", 256, 32).encode(spine_points(AP)).shape == (5, 32, 32)


def test_grid_mapping_known_values():
    codec = CentreHeatmapCodec("lateral", input_size=512, heatmap_size=64)
    # input pixels 0..7 form map pixel 0, whose centre is input x = 3.5
    assert codec.input_to_heatmap(np.array(3.5)) == pytest.approx(0.0)
    assert codec.heatmap_to_input(np.array(63.0)) == pytest.approx(507.5)
    assert codec.input_to_heatmap(np.array(-0.5)) == pytest.approx(-0.5)


@pytest.mark.parametrize("size,hm", [(512, 64), (128, 16)])
def test_decode_roundtrip_subpixel(size, hm):
    codec = CentreHeatmapCodec("lateral", input_size=size, heatmap_size=hm)
    rng = np.random.default_rng(1)
    scale = size / 512
    batch = np.stack([spine_points("lateral", top=(rng.uniform(200, 300) * scale, rng.uniform(60, 120) * scale),
                                   spacing=60 * scale, width=50 * scale, height=40 * scale, angle=rng.uniform(-0.2, 0.2))
                      for _ in range(3)])
    maps = codec.encode(batch)
    dec = codec.decode(maps)
    assert dec.input.shape == (3, 6, 2) and dec.confidence.shape == (3, 6)
    np.testing.assert_allclose(dec.input.numpy(), LATERAL.centres(batch), atol=0.02 * codec.stride)
    # the on-grid peak is at most half a pixel off in x and y
    floor = np.exp(-0.5 / (2 * codec.sigma(batch) ** 2))[:, None]
    assert (dec.confidence.numpy() >= floor - 1e-6).all() and (dec.confidence <= 1).all()


def test_decode_to_original_through_recorded_geometry():
    h, w = 700, 430
    pts = spine_points("lateral", top=(200.0, 120.0), spacing=90.0, width=70.0, height=60.0)
    s = {"image": np.zeros((1, h, w), np.float32), "points": pts, "layout": "lateral"}
    s = ResizeSquared("image", size=512)(PadToSquared("image")(s))
    s = CentreHeatmapd(input_size=512, heatmap_size=64)(s)
    assert s["centre_heatmap"].shape == (6, 64, 64)
    np.testing.assert_allclose(s["centres"].numpy(), LATERAL.centres(s["points"]), atol=1e-4)
    codec = CentreHeatmapCodec("lateral")
    dec = codec.decode(s["centre_heatmap"], geometry=s["geometry"])
    np.testing.assert_allclose(dec.original.numpy(), LATERAL.centres(pts), atol=0.05)
    np.testing.assert_allclose(dec.original.numpy(), to_original(dec.input.numpy(), s), atol=1e-9)
    # batched geometry
    dec_b = codec.decode(s["centre_heatmap"][None].repeat(2, 1, 1, 1), geometry=np.stack([s["geometry"]] * 2))
    np.testing.assert_allclose(dec_b.original[1].numpy(), LATERAL.centres(pts), atol=0.05)


def test_dict_transform_uses_sample_layout():
    out = CentreHeatmapd(input_size=256, heatmap_size=32)({"points": spine_points(AP), "layout": "ap"})
    assert out["centre_heatmap"].shape == (5, 32, 32) and out["centres"].shape == (5, 2)
    with pytest.raises(ValueError):
        CentreHeatmapCodec("lateral").decode(torch.zeros(5, 64, 64))
