"""Intensity pre-processing of Section 3.2: CLAHE (scikit-image's), plus the MONAI pieces it is used with.

The paper blurs with a Gaussian and applies contrast limited adaptive histogram equalisation (CLAHE, Zuiderveld
1994) "to minimise noise and ensure the distinction between the spine and the background". Gaussian blur is
MONAI's :class:`~monai.transforms.GaussianSmooth` and min-max scaling MONAI's
:class:`~monai.transforms.ScaleIntensity`; MONAI has no CLAHE (its ``HistogramNormalize`` is global), so
:class:`CLAHE` wraps :func:`skimage.exposure.equalize_adapthist`. The paper gives no CLAHE or blur parameters;
the defaults here (clip limit 0.01, tiles of 1/8 of the image side, as scikit-image) are *ours*.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type
from skimage.exposure import equalize_adapthist

__all__ = ["CLAHE", "CLAHEd", "minmax_scale"]


def minmax_scale(arr: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (a constant image becomes all zeros)."""
    a = np.asarray(arr, dtype=np.float64)
    lo, hi = float(np.min(a)), float(np.max(a))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


class CLAHE(Transform):
    """Contrast limited adaptive histogram equalisation per channel of a ``(C, H, W)`` image (Section 3.2).

    Each channel is min-max scaled to [0, 1] first (scikit-image needs that range); the output is float32 in
    [0, 1], same array type as the input.

    Args:
        clip_limit: scikit-image's normalised clip limit (higher = more contrast).
        kernel_size: tile size in pixels (int or ``(h, w)``); ``None`` = 1/8 of each side (scikit-image's default).
        nbins: histogram bins.
    """

    def __init__(
        self, clip_limit: float = 0.01, kernel_size: int | Sequence[int] | None = None, nbins: int = 256
    ) -> None:
        self.clip_limit = float(clip_limit)
        self.kernel_size = kernel_size
        self.nbins = int(nbins)

    def __call__(self, img):
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if arr.ndim != 3:
            raise ValueError(f"expected a (C, H, W) image, got shape {arr.shape}")
        out = np.stack(
            [
                equalize_adapthist(
                    minmax_scale(ch), kernel_size=self.kernel_size, clip_limit=self.clip_limit, nbins=self.nbins
                )
                for ch in arr
            ]
        ).astype(np.float32)
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


class CLAHEd(MapTransform):
    """Dictionary :class:`CLAHE`."""

    def __init__(
        self,
        keys: KeysCollection,
        clip_limit: float = 0.01,
        kernel_size: int | Sequence[int] | None = None,
        nbins: int = 256,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clahe = CLAHE(clip_limit=clip_limit, kernel_size=kernel_size, nbins=nbins)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = self.clahe(d[k])
        return d
