"""Pad-to-square and resize carry points exactly; forward-then-back is the identity; a drawn dot lands on its point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.transforms.geometry import (
    PadToSquare,
    PadToSquared,
    ResizeSquare,
    ResizeSquared,
    get_geometry,
    pad_to_square_widths,
    to_current,
    to_original,
)

pytestmark = pytest.mark.compat


def _dot_image(h: int, w: int, xy, sigma: float = 2.5) -> np.ndarray:
    pts = torch.tensor([xy], dtype=torch.float64)
    return render_gaussians(pts, sigma, h, w).numpy().astype(np.float32)  # (1, H, W)


def _centroid(img) -> np.ndarray:
    a = np.asarray(img[0], dtype=np.float64)
    a = np.where(a > 0.05 * a.max(), a, 0.0)
    ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
    return np.array([(a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()])


@pytest.mark.parametrize("method", ["symmetric", "end"])
@pytest.mark.parametrize("hw", [(7, 12), (12, 7), (9, 9), (1, 4)])
def test_pad_to_square_shape_and_content(hw, method):
    h, w = hw
    img = np.arange(h * w, dtype=np.float32).reshape(1, h, w) + 1
    out = PadToSquare(method)(img)
    s = max(h, w)
    assert out.shape == (1, s, s) and isinstance(out, np.ndarray)
    top, bottom, left, right = pad_to_square_widths(h, w, method)
    assert top + bottom + h == s and left + right + w == s
    np.testing.assert_array_equal(out[0, top : top + h, left : left + w], img[0])
    assert out.sum() == img.sum()  # the rest is zero
    # pixel (0, 0) moved by (left, top)
    m = PadToSquare(method).matrix((h, w))
    np.testing.assert_allclose(m @ [0, 0, 1], [left, top, 1])


def test_pad_symmetric_known_widths():
    assert pad_to_square_widths(7, 12) == (2, 3, 0, 0)
    assert pad_to_square_widths(12, 7, "end") == (0, 0, 0, 5)


def test_resize_matrix_maps_cell_edges():
    m = ResizeSquare(size=4).matrix((8, 8))
    # the left edge -0.5 stays -0.5, the right edge 7.5 goes to 3.5, pixel centres 0.5 -> 0 (mean of 0 and 1)
    np.testing.assert_allclose(m @ [-0.5, 7.5, 1], [-0.5, 3.5, 1])
    np.testing.assert_allclose(m @ [0.5, 0.5, 1], [0.0, 0.0, 1])


@pytest.mark.parametrize("hw,size", [((101, 67), 64), ((64, 90), 128), ((33, 33), 17), ((250, 181), 128)])
def test_resize_dot_lands_on_point(hw, size):
    """Draw a Gaussian dot at a sub-pixel point, resize, the dot's centroid is the transformed point."""
    h, w = hw
    rng = np.random.default_rng(0)
    xy = (rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.3 * h, 0.7 * h))
    # sigma large enough in both grids that the centroid is a faithful peak estimate
    sigma = 3.0 * max(w / size, h / size, 1.0)
    img = _dot_image(h, w, xy, sigma)
    t = ResizeSquare(size=size)
    out = t(img)
    assert out.shape == (1, size, size)
    expected = to_current(np.array([xy]), t.matrix((h, w)))[0]
    np.testing.assert_allclose(_centroid(out), expected, atol=0.05)


def test_pad_then_resize_dot_and_roundtrip_dict():
    h, w = 90, 57
    xy = (20.3, 61.7)
    sample = {"image": _dot_image(h, w, xy, 3.0), "points": np.array([xy, [0.0, 0.0], [w - 1.0, h - 1.0]])}
    out = ResizeSquared("image", size=60)(PadToSquared("image", method="symmetric")(sample))
    assert out["image"].shape == (1, 60, 60)
    np.testing.assert_allclose(_centroid(out["image"]), out["points"][0], atol=0.05)
    # geometry composes both steps: scale 60/90, x shifted by the 16 px left padding first
    s = 60 / 90
    np.testing.assert_allclose(out["points"][0], [(xy[0] + 16 + 0.5) * s - 0.5, (xy[1] + 0.5) * s - 0.5], atol=1e-9)
    np.testing.assert_allclose(to_original(out["points"], out), sample["points"], atol=1e-9)
    np.testing.assert_allclose(get_geometry(out)[2], [0, 0, 1])


@pytest.mark.parametrize("seed", range(6))
def test_roundtrip_identity_random_shapes(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 400, size=2))
    size = int(rng.choice([17, 64, 128, 512]))
    pts = np.column_stack([rng.uniform(-0.5, w - 0.5, 22), rng.uniform(-0.5, h - 0.5, 22)])
    pts[3] = np.nan  # a missing landmark stays missing
    sample = {"image": np.zeros((1, h, w), np.float32), "points": pts.copy()}
    out = ResizeSquared("image", size=size)(PadToSquared("image", method=str(rng.choice(["symmetric", "end"])))(sample))
    assert out["image"].shape == (1, size, size)
    back = to_original(out["points"], out)
    assert np.isnan(back[3]).all()
    np.testing.assert_allclose(np.delete(back, 3, 0), np.delete(pts, 3, 0), atol=1e-4)
    # batched, torch
    tb = to_original(torch.as_tensor(out["points"][None].repeat(2, 0)), out)
    np.testing.assert_allclose(tb[1].numpy()[:3], pts[:3], atol=1e-4)


def test_torch_image_keeps_type_and_missing_keys():
    img = torch.rand(1, 10, 6)
    out = PadToSquared(["image", "label"], allow_missing_keys=True, point_keys=("points", "other"))(
        {"image": img, "points": np.array([[1.0, 2.0]])}
    )
    assert isinstance(out["image"], torch.Tensor) and out["image"].shape == (1, 10, 10)
    np.testing.assert_allclose(out["points"], [[3.0, 2.0]])
    with pytest.raises(KeyError):
        PadToSquared("image")({"image": img})
