"""scikit-image's CLAHE (:func:`skimage.exposure.equalize_adapthist`, 2-D) re-written with whole-array numpy steps.

The same algorithm, step for step and in the same floating-point order (14-bit grey levels, reflect-padded
contextual regions, clipped histograms with scikit-image's redistribution, bilinear blending of the four
neighbouring regions' mappings, truncation to integers, min-max rescale), so that the output equals
scikit-image's to two of its 16383 grey levels (``tests/test_pipeline_speed_clahe.py``). Written by hand because
scikit-image loops over the contextual regions in Python (a cost paid per training sample); what
changes is how it is computed: one ``bincount`` for all region histograms instead of one per region, the clip of all histograms at once (only the
final one-by-one redistribution of a few left-over counts loops, as in scikit-image), and the blending on the
unpadded pixels only, in float32, with flat look-ups instead of four ``take_along_axis`` over the padded image
(scikit-image sums float64 products rounded to float32, then truncates to integers: a pixel whose sum lies within
float32 rounding of an integer can land a grey level lower or higher; after the final rescale the test bounds
the difference by two levels, 1.2e-4). Single-threaded numpy, like scikit-image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["equalize_adapthist_fast", "minmax_scale"]

NR_OF_GRAY = 2**14  # scikit-image's grey levels


def _clip_histograms(hist: np.ndarray, clip_limit: int) -> np.ndarray:
    """scikit-image's ``clip_histogram`` on every row of ``(R, nbins)`` int64 ``hist`` (in place)."""
    nbins = hist.shape[1]
    over = np.maximum(hist - clip_limit, 0)
    n_excess = over.sum(axis=1)
    np.minimum(hist, clip_limit, out=hist)
    bin_incr = n_excess // nbins
    upper = (clip_limit - bin_incr)[:, None]
    low = hist < upper
    n_excess = n_excess - low.sum(axis=1) * bin_incr
    hist += low * bin_incr[:, None]
    mid = (hist >= upper) & (hist < clip_limit)
    n_excess = n_excess + np.where(mid, hist - clip_limit, 0).sum(axis=1)
    hist[mid] = clip_limit
    for r in np.flatnonzero(n_excess > 0):  # scikit-image's redistribution of what is left, row by row
        h = hist[r]
        left = int(n_excess[r])
        while left > 0:
            prev = left
            for index in range(nbins):
                under = h < clip_limit
                step = max(1, int(np.count_nonzero(under)) // left)
                under = under[index::step]
                view = h[index::step]
                view[under] += 1
                left -= int(np.count_nonzero(under))
                if left <= 0:
                    break
            if prev == left:
                break
    return hist


def minmax_scale(arr: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] in float64 (a constant image becomes all zeros)."""
    a = np.array(arr, dtype=np.float64)  # a copy, scaled in place
    lo, hi = float(np.min(a)), float(np.max(a))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(a)
    a -= lo
    a /= hi - lo
    return a


def equalize_adapthist_fast(
    image: np.ndarray,
    kernel_size: int | Sequence[int] | None = None,
    clip_limit: float = 0.01,
    nbins: int = 256,
    rescale: bool = False,
    dtype=np.float64,
) -> np.ndarray:
    """CLAHE of a 2-D float image with values in [0, 1], as
    ``skimage.exposure.equalize_adapthist(image, kernel_size, clip_limit, nbins)`` (values in [0, 1]).

    ``rescale``: :func:`minmax_scale` ``image`` (any range) to [0, 1] first (no range check then).
    ``dtype``: of the result (the final min-max rescale is computed in it; scikit-image's is float64)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    if rescale:
        img = minmax_scale(img)
    else:
        img = np.asarray(img, dtype=np.float64)
        if img.size and (img.min() < 0.0 or img.max() > 1.0):
            raise ValueError("expected values in [0, 1]")
    # img_as_uint (values already in [0, 1], so no clip), then the 14-bit rescale of scikit-image, in place
    t = img * 65535.0
    np.rint(t, out=t)
    lo, hi = float(t.min()), float(t.max())
    if lo == hi:  # constant image: scikit-image's own path (a rare edge case)
        from skimage.exposure import equalize_adapthist

        return equalize_adapthist(img, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins).astype(dtype)
    t -= lo
    t /= hi - lo
    t *= float(NR_OF_GRAY - 1)
    np.round(t, out=t)
    grey = t.astype(np.uint16)
    height, width = grey.shape
    if kernel_size is None:
        ks = (max(height // 8, 1), max(width // 8, 1))
    elif isinstance(kernel_size, (int, np.integer, float)):
        ks = (int(kernel_size),) * 2
    else:
        if len(kernel_size) != 2:
            raise ValueError(f"Incorrect value of `kernel_size`: {kernel_size}")
        ks = (int(kernel_size[0]), int(kernel_size[1]))
    k0, k1 = ks
    pad0 = (k0 // 2, (k0 - height % k0) % k0 + int(math.ceil(k0 / 2.0)))
    pad1 = (k1 // 2, (k1 - width % k1) % k1 + int(math.ceil(k1 / 2.0)))
    bin_size = 1 + NR_OF_GRAY // nbins
    # bins of the reflect-padded image == reflect-padded bins
    bins = np.pad(grey // np.uint16(bin_size), [pad0, pad1], mode="reflect")
    hp, wp = bins.shape
    # histograms of the contextual regions (all in one bincount)
    n0, n1 = hp // k0 - 1, wp // k1 - 1
    rb = np.repeat(np.arange(n0, dtype=np.intp) * (n1 * nbins), k0)
    cb = np.repeat(np.arange(n1, dtype=np.intp) * nbins, k1)
    idx = rb[:, None] + cb[None, :]
    idx += bins[k0 // 2 : k0 // 2 + n0 * k0, k1 // 2 : k1 // 2 + n1 * k1]
    hist = np.bincount(idx.ravel(), minlength=n0 * n1 * nbins).reshape(n0 * n1, nbins)
    kernel_elements = k0 * k1
    clim = int(np.clip(clip_limit * kernel_elements, 1, None)) if clip_limit > 0.0 else kernel_elements
    hist = _clip_histograms(hist, clim)
    # scikit-image's map_histogram
    lut = np.cumsum(hist, axis=-1).astype(float)
    lut *= (NR_OF_GRAY - 1) / kernel_elements
    np.clip(lut, a_min=None, a_max=NR_OF_GRAY - 1, out=lut)
    lut = lut.astype(int).reshape(n0, n1, nbins)
    maps = np.pad(lut, [[1, 1], [1, 1], [0, 0]], mode="edge").astype(np.float32)  # (n0 + 2, n1 + 2, nbins)
    m1 = maps.shape[1]
    flat = maps.ravel()
    # bilinear blend of the four neighbouring mappings, on the unpadded pixels only, in float32 (scikit-image sums
    # four float32-rounded float64 products: the truncated sums can differ by one grey level in 16383)
    rows = np.arange(pad0[0], pad0[0] + height)
    cols = np.arange(pad1[0], pad1[0] + width)
    rfrac = ((rows % k0) / k0).astype(np.float32)[:, None]
    cfrac = ((cols % k1) / k1).astype(np.float32)[None, :]
    base = (rows // k0 * (m1 * nbins)).astype(np.int32)[:, None] + (cols // k1 * nbins).astype(np.int32)[None, :]
    base += bins[pad0[0] : pad0[0] + height, pad1[0] : pad1[0] + width]
    top = flat.take(base)
    right = flat.take(base + nbins)
    right -= top
    right *= cfrac
    top += right  # (1 - c) M00 + c M01
    base += m1 * nbins
    bottom = flat.take(base)
    right = flat.take(base + nbins)
    right -= bottom
    right *= cfrac
    bottom += right  # (1 - c) M10 + c M11
    bottom -= top
    bottom *= rfrac
    result = top
    result += bottom
    out = result.astype(np.uint16).astype(dtype)
    lo, hi = float(out.min()), float(out.max())
    if lo == hi:
        return np.clip(out, 0.0, 1.0)
    out -= lo
    out /= hi - lo
    return out
