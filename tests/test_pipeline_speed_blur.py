"""GaussianBlur(d) (scipy, one thread) against MONAI's GaussianSmooth and the crops' blur_crops it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import GaussianSmooth

from lumbar_monai.crops import blur_crops
from lumbar_monai.transforms.blur import GaussianBlur, GaussianBlurd


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_blur_equals_monai_gaussian_smooth(sigma):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 40, 33, generator=g)
    ref = GaussianSmooth(sigma)(img)
    got = GaussianBlur(sigma)(img)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == img.shape
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    # numpy in, numpy out
    got_np = GaussianBlur(sigma)(img.numpy())
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float32
    np.testing.assert_allclose(got_np, ref.numpy(), atol=1e-6)


def test_gaussian_blur_keeps_metatensor_and_blurs_crops_like_blur_crops():
    img = MetaTensor(torch.rand(1, 24, 24), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
    out = GaussianBlurd("image", sigma=1.0)({"image": img})["image"]
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, img.affine)
    crops = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(GaussianBlur(1.0)(crops), blur_crops(crops, 1.0), atol=1e-6, rtol=0)
    # each crop on its own equals the batch (what the per-crop transform in stage2_transforms does)
    torch.testing.assert_close(GaussianBlur(1.0)(crops[1]), blur_crops(crops, 1.0)[1], atol=1e-6, rtol=0)
    assert torch.equal(GaussianBlur(0.0)(crops), crops)
