"""Intensity pre-processing of Section 3.2: CLAHE (scikit-image's), plus the MONAI pieces it is used with.

The paper blurs with a Gaussian and applies contrast limited adaptive histogram equalisation (CLAHE, Zuiderveld
1994) "to minimise noise and ensure the distinction between the spine and the background". Gaussian blur is the
output of MONAI's :class:`~monai.transforms.GaussianSmooth` (computed by scipy in one thread:
:class:`~lumbar_monai.transforms.blur.GaussianBlurd`) and min-max scaling MONAI's
:class:`~monai.transforms.ScaleIntensity`; MONAI has no CLAHE (its ``HistogramNormalize`` is global), so
:class:`CLAHE` runs scikit-image's algorithm (:func:`skimage.exposure.equalize_adapthist`), by default in the
faster re-write of :mod:`lumbar_monai.transforms.clahe`. The paper gives no CLAHE or blur parameters;
the defaults here (clip limit 0.01, tiles of 1/8 of the image side, as scikit-image) are *ours*.

The training augmentation's random brightness/contrast, ``img' = (img - mean) * (1 + f) + mean + b`` clipped to
[0, 1], is a composition of MONAI's own transforms (:class:`RandBrightnessContrast` / :class:`RandBrightnessContrastd`):
:class:`~monai.transforms.RandScaleIntensityFixedMean` (contrast about the image mean, ``f`` in
``[-contrast, contrast]``), :class:`~monai.transforms.RandShiftIntensity` (brightness ``b`` in
``[-brightness, brightness]``), then a clip (:class:`~monai.transforms.ScaleIntensityRange` with equal ranges and
``clip=True``). Each of the two draws is made with probability ``prob`` on its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    MapTransform,
    RandScaleIntensityFixedMean,
    RandScaleIntensityFixedMeand,
    RandShiftIntensity,
    RandShiftIntensityd,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    Transform,
)
from monai.utils import convert_to_dst_type
from skimage.exposure import equalize_adapthist

from .clahe import equalize_adapthist_fast, minmax_scale

__all__ = [
    "CLAHE",
    "CLAHEd",
    "CLAHED",
    "CLAHEDict",
    "RandBrightnessContrast",
    "RandBrightnessContrastd",
    "RandBrightnessContrastD",
    "RandBrightnessContrastDict",
    "minmax_scale",
]


class CLAHE(Transform):
    """Contrast limited adaptive histogram equalisation per channel of a ``(C, H, W)`` image (Section 3.2).

    Each channel is min-max scaled to [0, 1] first (scikit-image needs that range); the output is float32 in
    [0, 1], same array type as the input.

    Args:
        clip_limit: scikit-image's normalised clip limit (higher = more contrast).
        kernel_size: tile size in pixels (int or ``(h, w)``); ``None`` = 1/8 of each side (scikit-image's default).
        nbins: histogram bins.
        fast: use :func:`~lumbar_monai.transforms.clahe.equalize_adapthist_fast` (scikit-image's algorithm with
            whole-array steps, within one grey level of it and 2-3 times faster); ``False``: scikit-image itself.
    """

    def __init__(
        self, clip_limit: float = 0.01, kernel_size: int | Sequence[int] | None = None, nbins: int = 256,
        fast: bool = True,
    ) -> None:
        self.clip_limit = float(clip_limit)
        self.kernel_size = kernel_size
        self.nbins = int(nbins)
        self.fast = bool(fast)

    def __call__(self, img):
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if arr.ndim != 3:
            raise ValueError(f"expected a (C, H, W) image, got shape {arr.shape}")
        out = np.empty(arr.shape, dtype=np.float32)
        for c, ch in enumerate(arr):
            if self.fast:  # min-max scaling folded in, result in float32 (within float32 rounding of the below)
                out[c] = equalize_adapthist_fast(ch, kernel_size=self.kernel_size, clip_limit=self.clip_limit,
                                                 nbins=self.nbins, rescale=True, dtype=np.float32)
            else:
                out[c] = equalize_adapthist(minmax_scale(ch), kernel_size=self.kernel_size,
                                            clip_limit=self.clip_limit, nbins=self.nbins)
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
        fast: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clahe = CLAHE(clip_limit=clip_limit, kernel_size=kernel_size, nbins=nbins, fast=fast)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = self.clahe(d[k])
        return d


def _check_clip(clip: Sequence[float] | None) -> tuple[float, float] | None:
    if clip is None:
        return None
    lo, hi = (float(v) for v in clip)
    if not hi > lo:
        raise ValueError(f"clip must be (low, high) with high > low, got {clip!r}")
    return lo, hi


class RandBrightnessContrast(Compose):
    """Random contrast about the mean, then random brightness, then a clip (see the module docstring).

    Args:
        prob: probability of each of the two random steps.
        brightness: the shift ``b`` is drawn from ``[-brightness, brightness]`` (intensity units).
        contrast: the factor ``f`` is drawn from ``[-contrast, contrast]``; the image scales by ``1 + f``.
        clip: ``(low, high)`` the result is clipped to (``None``: no clip).
    """

    def __init__(self, prob: float = 0.5, brightness: float = 0.1, contrast: float = 0.2,
                 clip: Sequence[float] | None = (0.0, 1.0)) -> None:
        self.clip = _check_clip(clip)
        chain: list = [RandScaleIntensityFixedMean(prob=prob, factors=float(contrast), fixed_mean=True),
                       RandShiftIntensity(offsets=float(brightness), prob=prob)]
        if self.clip is not None:
            lo, hi = self.clip
            chain.append(ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True))
        super().__init__(chain)

    def inverse(self, data):
        """Intensity changes are not undone (as MONAI's intensity transforms): ``Compose.inverse`` passes through."""
        return data


class RandBrightnessContrastd(Compose):
    """Dictionary :class:`RandBrightnessContrast`: MONAI's ``RandScaleIntensityFixedMeand`` then
    ``RandShiftIntensityd`` then ``ScaleIntensityRanged(clip=True)``; one draw per step shared by all ``keys``."""

    def __init__(self, keys: KeysCollection = "image", prob: float = 0.5, brightness: float = 0.1,
                 contrast: float = 0.2, clip: Sequence[float] | None = (0.0, 1.0),
                 allow_missing_keys: bool = False) -> None:
        self.clip = _check_clip(clip)
        chain: list = [
            RandScaleIntensityFixedMeand(keys, prob=prob, factors=float(contrast), fixed_mean=True,
                                         allow_missing_keys=allow_missing_keys),
            RandShiftIntensityd(keys, offsets=float(brightness), prob=prob, allow_missing_keys=allow_missing_keys),
        ]
        if self.clip is not None:
            lo, hi = self.clip
            chain.append(ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True,
                                              allow_missing_keys=allow_missing_keys))
        super().__init__(chain)

    def inverse(self, data):
        """Intensity changes are not undone (as MONAI's intensity transforms): ``Compose.inverse`` passes through."""
        return data


CLAHED = CLAHEDict = CLAHEd
RandBrightnessContrastD = RandBrightnessContrastDict = RandBrightnessContrastd
