"""The fast CLAHE (lumbar_monai.transforms.clahe) against scikit-image's equalize_adapthist, which it re-writes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.exposure import equalize_adapthist

from lumbar_monai.transforms.clahe import equalize_adapthist_fast
from lumbar_monai.transforms.intensity import CLAHE


def _radiograph_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth structures + noise + a zero-padded band, min-max scaled (what CLAHE sees in stage 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = 0.5 + 0.3 * np.sin(9 * xx) * np.cos(5 * yy) + 0.05 * rng.standard_normal((h, w))
    img[:, : w // 6] = 0.0
    img = img - img.min()
    return img / img.max()


@pytest.mark.parametrize(
    ("shape", "kernel_size", "clip"),
    [((96, 96), None, 0.01), ((100, 77), 16, 0.03), ((33, 64), (10, 7), 0.0), ((128, 120), None, 0.5)],
)
def test_fast_clahe_within_one_grey_level_of_skimage(shape, kernel_size, clip):
    img = _radiograph_like(*shape, seed=sum(shape))
    ref = equalize_adapthist(img, kernel_size=kernel_size, clip_limit=clip)
    got = equalize_adapthist_fast(img, kernel_size=kernel_size, clip_limit=clip)
    assert got.shape == ref.shape and got.dtype == np.float64
    # a pixel can land one of scikit-image's 16384 grey levels away; when that pixel is the minimum or the maximum,
    # the final min-max rescale moves the others by up to one level as well
    assert np.abs(got - ref).max() <= 2.0 / 16383
    assert np.abs(got - ref).mean() < 1.0 / 16383


def test_fast_clahe_edge_cases():
    flat = np.full((20, 30), 0.25)
    np.testing.assert_allclose(equalize_adapthist_fast(flat), equalize_adapthist(flat))
    with pytest.raises(ValueError):
        equalize_adapthist_fast(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError):
        equalize_adapthist_fast(np.full((8, 8), 2.0))


def test_clahe_transform_fast_and_skimage_paths_agree():
    img = (_radiograph_like(64, 80)[None] * 3000.0).astype(np.float32)  # CLAHE min-max scales first
    fast, slow = CLAHE(fast=True)(img), CLAHE(fast=False)(img)
    assert fast.dtype == slow.dtype == np.float32
    assert np.abs(fast - slow).max() <= 2.0 / 16383
