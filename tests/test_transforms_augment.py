"""Augmentations: points move with the image (a drawn dot lands on its moved point), seeded, brightness/contrast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.transforms.augment import (
    RandAffinePointsd,
    RandBrightnessContrastd,
    monai_affine_to_xy,
    stage1_preprocessing,
    stage1_transforms,
)
from lumbar_monai.transforms.geometry import get_geometry, to_original

pytestmark = pytest.mark.compat


def _dots(h, w, pts, sigma=2.0):
    maps = render_gaussians(torch.as_tensor(pts, dtype=torch.float64), sigma, h, w)  # (K, H, W)
    return maps.numpy().astype(np.float32)


def _centroids(img):
    a = np.asarray(img, dtype=np.float64)
    a = np.where(a > 0.05 * a.max(axis=(-2, -1), keepdims=True), a, 0.0)
    ys, xs = np.mgrid[: a.shape[-2], : a.shape[-1]]
    tot = a.sum(axis=(-2, -1))
    return np.stack([(a * xs).sum(axis=(-2, -1)) / tot, (a * ys).sum(axis=(-2, -1)) / tot], axis=-1)


def test_monai_matrix_conversion_pure_translation():
    # MONAI's grid matrix maps output (y, x) -> input (y, x); a grid shift of (+2, +3) moves points by (-3, -2) in xy
    grid = np.array([[1.0, 0, 2], [0, 1, 3], [0, 0, 1]])
    np.testing.assert_allclose(monai_affine_to_xy(grid), [[1, 0, -3], [0, 1, -2], [0, 0, 1]])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("hw", [(64, 64), (61, 75)])
def test_dots_land_on_moved_points(seed, hw):
    h, w = hw
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(0.3 * w, 0.7 * w, 3), rng.uniform(0.3 * h, 0.7 * h, 3)])
    t = RandAffinePointsd("image", prob=1.0, rotate_range=0.6, scale_range=0.2, translate_range=0.1)
    t.set_random_state(seed)
    out = t({"image": _dots(h, w, pts), "points": pts.copy()})
    assert out["image"].shape == (3, h, w) and isinstance(out["image"], np.ndarray)
    moved = out["points"]
    assert np.abs(moved - pts).max() > 0.5  # it did move
    np.testing.assert_allclose(_centroids(out["image"]), moved, atol=0.08)
    # recorded in the geometry: original -> current, and back
    np.testing.assert_allclose(to_original(moved, out), pts, atol=1e-6)


def test_seeded_and_prob_zero():
    pts = np.array([[10.0, 20.0], [30.0, 5.0]])
    sample = {"image": torch.rand(1, 40, 40), "points": pts}
    a = RandAffinePointsd(prob=1.0).set_random_state(7)(sample)
    b = RandAffinePointsd(prob=1.0).set_random_state(7)(sample)
    np.testing.assert_array_equal(a["points"], b["points"])
    assert torch.equal(torch.as_tensor(a["image"]), torch.as_tensor(b["image"]))
    assert isinstance(a["image"], torch.Tensor)
    c = RandAffinePointsd(prob=0.0).set_random_state(7)(sample)
    assert c["points"] is pts and "geometry" not in c


def test_geometry_composes_with_earlier_steps():
    pre = np.array([[2.0, 0, 1], [0, 2, 3], [0, 0, 1]])
    pts = np.array([[11.0, 7.0]])
    t = RandAffinePointsd(prob=1.0).set_random_state(3)
    out = t({"image": np.zeros((1, 32, 32), np.float32), "points": pts @ pre[:2, :2].T + pre[:2, 2], "geometry": pre})
    np.testing.assert_allclose(to_original(out["points"], out), pts, atol=1e-9)
    assert not np.allclose(get_geometry(out), pre)


def test_brightness_contrast_is_monai_fixed_mean_scale_then_shift():
    from monai.transforms import RandScaleIntensityFixedMeand, RandShiftIntensityd

    img = np.linspace(0.2, 0.8, 100, dtype=np.float32).reshape(1, 10, 10)
    t = RandBrightnessContrastd("image", prob=1.0, brightness=0.1, contrast=0.3, clip=None).set_random_state(5)
    assert [type(x) for x in t.transforms] == [RandScaleIntensityFixedMeand, RandShiftIntensityd]
    out = t({"image": img})["image"]
    f, b = t.transforms[0].scaler.factor, t.transforms[1].shifter._offset
    assert -0.3 <= f <= 0.3 and -0.1 <= b <= 0.1 and abs(f) > 1e-3 and abs(b) > 1e-3
    np.testing.assert_allclose(np.asarray(out), (img - img.mean()) * (1 + f) + img.mean() + b, rtol=1e-5)
    again = RandBrightnessContrastd("image", prob=1.0, brightness=0.1, contrast=0.3, clip=None).set_random_state(5)
    np.testing.assert_array_equal(np.asarray(again({"image": img})["image"]), np.asarray(out))
    clipped = RandBrightnessContrastd("image", prob=1.0, brightness=0.0, contrast=5.0).set_random_state(1)(
        {"image": torch.as_tensor(img)})["image"]
    assert clipped.min() >= 0 and clipped.max() <= 1
    off = RandBrightnessContrastd("image", prob=0.0, brightness=0.5, contrast=0.5)({"image": img})["image"]
    np.testing.assert_allclose(np.asarray(off), img, atol=1e-6)
    with pytest.raises(ValueError, match="clip"):
        RandBrightnessContrastd("image", clip=(1.0, 0.0))


def test_preprocessing_chain_and_training_chain():
    h, w = 150, 90
    rng = np.random.default_rng(0)
    img = rng.uniform(100, 3000, (1, h, w)).astype(np.float32)
    pts = np.column_stack([rng.uniform(10, 80, 22), rng.uniform(10, 140, 22)])
    out = Compose(stage1_preprocessing(size=64))({"image": img, "points": pts})
    assert tuple(out["image"].shape) == (1, 64, 64)
    assert float(out["image"].min()) >= 0 and float(out["image"].max()) <= 1
    np.testing.assert_allclose(to_original(out["points"], out), pts, atol=1e-4)
    # the whole training chain with target
    from test_centre_codec import spine_points

    sp = spine_points("lateral", top=(45.0, 20.0), spacing=18.0, width=15.0, height=12.0)
    chain = stage1_transforms(train=True, size=64, heatmap_size=16)
    chain.set_random_state(0)
    s = chain({"image": img, "points": sp, "layout": "lateral"})
    assert tuple(s["centre_heatmap"].shape) == (6, 16, 16)
    assert tuple(s["image"].shape) == (1, 64, 64)
