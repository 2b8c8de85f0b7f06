"""CLAHE wraps scikit-image's equalize_adapthist per channel after min-max scaling; keeps the array type."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.exposure import equalize_adapthist

from lumbar_monai.transforms.intensity import CLAHE, CLAHEd, minmax_scale

pytestmark = pytest.mark.compat


def test_minmax_scale():
    np.testing.assert_allclose(minmax_scale(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(minmax_scale(np.full((3, 3), 7.0)), np.zeros((3, 3)))


def test_clahe_matches_skimage_per_channel():
    rng = np.random.default_rng(0)
    img = np.stack([rng.uniform(100, 4000, (48, 40)), rng.uniform(0, 1, (48, 40)) ** 3]).astype(np.float32)
    out = CLAHE(clip_limit=0.02, kernel_size=16)(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    for c in range(2):
        ref = equalize_adapthist((img[c] - img[c].min()) / (img[c].max() - img[c].min()), kernel_size=16,
                                 clip_limit=0.02)
        np.testing.assert_allclose(out[c], ref, atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1


def test_clahe_dict_torch_and_constant():
    t = torch.full((1, 32, 32), 5.0)
    out = CLAHEd("image")({"image": t})["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert torch.all(out == out.flatten()[0])  # a flat image stays flat
    with pytest.raises(ValueError):
        CLAHE()(np.zeros((8, 8)))
