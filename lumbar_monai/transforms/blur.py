"""Gaussian blur with MONAI's kernel, computed by scipy's separable 1-D correlation (one thread, no torch).

:class:`GaussianBlur` / :class:`GaussianBlurd` give the output of MONAI's
:class:`~monai.transforms.GaussianSmooth` (the same ``erf`` kernel, ``gaussian_1d(sigma, truncated=4)``, not
normalised, zeros outside the image) to float32 rounding, but filter each spatial axis with
:func:`scipy.ndimage.correlate1d` instead of padded ``conv2d`` calls. Per-sample training transforms run one sample at
a time (in DataLoader workers with one thread each, or in the main process next to the model), where the small
convolutions gain nothing from torch's thread pool and lose much when the CPU is shared; scipy's filter is
single-threaded and reads the image in place. Leading (channel / batch) axes are filtered independently, so a
``(V, C, N, N)`` batch of crops blurs exactly as each crop on its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.networks.layers.convutils import gaussian_1d
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type
from scipy.ndimage import correlate1d

__all__ = ["gaussian_kernel", "gaussian_blur", "GaussianBlur", "GaussianBlurd", "GaussianBlurD", "GaussianBlurDict"]


def gaussian_kernel(sigma: float, truncated: float = 4.0) -> np.ndarray:
    """MONAI's discrete Gaussian (``erf`` approximation, not normalised) as a float64 numpy kernel."""
    return gaussian_1d(torch.as_tensor(float(sigma)), truncated=truncated, approx="erf").double().numpy()


def gaussian_blur(img, sigma: float, spatial_dims: int = 2, truncated: float = 4.0, kernel: np.ndarray | None = None):
    """Blur the last ``spatial_dims`` axes of ``img`` (numpy array or tensor, any leading axes) with
    :func:`gaussian_kernel` (or the given ``kernel`` of it); zeros outside the image. Returns float32 of the input's
    array type (tensors keep their device and, for MetaTensors, their metadata); ``sigma <= 0`` returns the input
    as float32."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    arr = np.asarray(arr, dtype=np.float32)
    if sigma is not None and sigma > 0:
        k = gaussian_kernel(sigma, truncated) if kernel is None else kernel
        for axis in range(arr.ndim - spatial_dims, arr.ndim):
            arr = correlate1d(arr, k, axis=axis, mode="constant", cval=0.0)
    return convert_to_dst_type(arr, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


class GaussianBlur(Transform):
    """Gaussian blur of a ``(C, *spatial)`` image; the output of MONAI's ``GaussianSmooth(sigma)`` (see the module
    docstring). ``sigma`` is in pixels, one value for all spatial axes."""

    backend = [torch.Tensor.__name__, np.ndarray.__name__]

    def __init__(self, sigma: float = 1.0, spatial_dims: int = 2, truncated: float = 4.0) -> None:
        self.sigma = float(sigma)
        self.spatial_dims = int(spatial_dims)
        self.truncated = float(truncated)
        self.kernel = gaussian_kernel(self.sigma, self.truncated) if self.sigma > 0 else None

    def __call__(self, img):
        return gaussian_blur(img, self.sigma, self.spatial_dims, self.truncated, kernel=self.kernel)


class GaussianBlurd(MapTransform):
    """Dictionary :class:`GaussianBlur`."""

    backend = GaussianBlur.backend

    def __init__(self, keys: KeysCollection, sigma: float = 1.0, spatial_dims: int = 2, truncated: float = 4.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.blur = GaussianBlur(sigma, spatial_dims, truncated)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = self.blur(d[k])
        return d


GaussianBlurD = GaussianBlurDict = GaussianBlurd
