"""Geometric pre-processing that carries the landmarks and records itself (An et al. 2022, Section 3.2).

Every geometric step composes its 3x3 homogeneous ``(x, y)`` matrix into ``sample["geometry"]``, which maps
*original* pixels to *current* pixels. :func:`to_original` inverts it, so predictions made on the 512x512 network
input go back to the original pixel grid exactly.

Pixel-centre convention (the project's, see :mod:`lumbar_monai.points`): pixel ``(i, j)`` of a ``(C, H, W)`` array
is the unit cell centred at ``x = j, y = i``; an image of width ``W`` covers ``x`` in ``[-0.5, W - 0.5]``.

* Padding by ``b`` pixels before an axis is a translation by ``+b``.
* Resizing ``W -> W'`` uses MONAI's ``Resize`` with ``align_corners=False`` (PyTorch ``interpolate``), which maps
  cell *edges* to cell edges: ``x' = (x + 0.5) * W'/W - 0.5``. Anti-aliasing (a symmetric Gaussian pre-smoothing
  when shrinking) does not move pixel centres. ``tests/test_transforms_geometry.py`` checks both by drawing a dot.

Array transforms return only the image and expose ``matrix(spatial_shape)``; the dictionary versions (``...d``)
apply the image transform to ``keys``, move every array under ``point_keys`` (``(N, 2)`` (x, y), NaN rows stay NaN)
and update ``geometry_key``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import BorderPad, MapTransform, Resize, Transform
from monai.utils import convert_to_dst_type
from scipy import ndimage

from ..points import apply_affine_2d

__all__ = [
    "GEOMETRY_KEY",
    "get_geometry",
    "compose_geometry",
    "to_original",
    "to_current",
    "transform_points",
    "pad_to_square_widths",
    "PadToSquare",
    "PadToSquared",
    "ResizeSquare",
    "ResizeSquared",
]

GEOMETRY_KEY = "geometry"


def _spatial_shape(img) -> tuple[int, int]:
    shape = tuple(img.shape)
    if len(shape) != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {shape}")
    return int(shape[1]), int(shape[2])


def get_geometry(sample: Mapping, key: str = GEOMETRY_KEY) -> np.ndarray:
    """The ``original px -> current px`` 3x3 matrix of ``sample`` (identity when nothing was recorded)."""
    g = sample.get(key) if isinstance(sample, Mapping) else None
    if g is None:
        return np.eye(3)
    if isinstance(g, torch.Tensor):
        g = g.detach().cpu().numpy()
    return np.asarray(g, dtype=np.float64)


def compose_geometry(sample: dict, matrix: np.ndarray, key: str = GEOMETRY_KEY) -> np.ndarray:
    """Record one more step: ``sample[key] = matrix @ sample[key]`` (float64 3x3); returns the new matrix."""
    new = np.asarray(matrix, dtype=np.float64) @ get_geometry(sample, key)
    sample[key] = new
    return new


def transform_points(points, matrix: np.ndarray):
    """Apply a 3x3 (x, y) matrix to ``(N, 2)`` or ``(..., N, 2)`` points; keeps numpy/torch type, NaN stays NaN."""
    m = np.asarray(matrix, dtype=np.float64)
    if isinstance(points, torch.Tensor):
        mt = torch.as_tensor(m, dtype=torch.float64, device=points.device)
        out = points.to(torch.float64) @ mt[:2, :2].T + mt[:2, 2]
        return out.to(points.dtype if points.is_floating_point() else torch.float64)
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 2:
        return apply_affine_2d(m, arr)
    return arr @ m[:2, :2].T + m[:2, 2]


def to_original(points, sample_or_matrix, key: str = GEOMETRY_KEY):
    """Map current-image points back to the original pixel grid (inverse of the recorded geometry).

    Args:
        points: ``(N, 2)`` or ``(..., N, 2)`` (x, y) in current pixels.
        sample_or_matrix: a sample dict holding ``key``, or the 3x3 ``original -> current`` matrix itself.
    """
    m = get_geometry(sample_or_matrix, key) if isinstance(sample_or_matrix, Mapping) else sample_or_matrix
    return transform_points(points, np.linalg.inv(np.asarray(m, dtype=np.float64)))


def to_current(points, sample_or_matrix, key: str = GEOMETRY_KEY):
    """Map original-image points into the current image (the recorded geometry itself)."""
    m = get_geometry(sample_or_matrix, key) if isinstance(sample_or_matrix, Mapping) else sample_or_matrix
    return transform_points(points, np.asarray(m, dtype=np.float64))


def pad_to_square_widths(height: int, width: int, method: str = "symmetric") -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` zero-padding that makes ``(H, W)`` square.

    ``"symmetric"`` puts ``diff // 2`` before and the rest after (MONAI ``SpatialPad``'s rule); ``"end"`` pads only
    after (bottom/right), so the original pixels keep their coordinates.
    """
    side = max(height, width)
    dh, dw = side - height, side - width
    if method == "symmetric":
        return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2
    if method == "end":
        return 0, dh, 0, dw
    raise ValueError(f"method must be 'symmetric' or 'end', got {method!r}")


class PadToSquare(Transform):
    """Zero-pad a ``(C, H, W)`` image to ``(C, S, S)``, ``S = max(H, W)``, keeping the aspect ratio (Section 3.2).

    Args:
        method: ``"symmetric"`` (default) or ``"end"``; see :func:`pad_to_square_widths`.
        value: fill value (0: the paper's zero padding).
    """

    def __init__(self, method: str = "symmetric", value: float = 0.0) -> None:
        pad_to_square_widths(1, 2, method)  # validate
        self.method = method
        self.value = value

    def matrix(self, spatial_shape: Sequence[int]) -> np.ndarray:
        """The ``(x, y)`` 3x3 matrix this padding applies to points of an image of ``(H, W)``."""
        top, _, left, _ = pad_to_square_widths(int(spatial_shape[0]), int(spatial_shape[1]), self.method)
        return np.array([[1.0, 0.0, left], [0.0, 1.0, top], [0.0, 0.0, 1.0]])

    def __call__(self, img):
        h, w = _spatial_shape(img)
        top, bottom, left, right = pad_to_square_widths(h, w, self.method)
        if top == bottom == left == right == 0:
            return img
        out = BorderPad(spatial_border=[top, bottom, left, right], mode="constant", value=self.value)(img)
        return convert_to_dst_type(out, img)[0]


class ResizeSquare(Transform):
    """Resize a ``(C, H, W)`` image to ``(C, size, size)`` with MONAI's ``Resize`` (Section 3.2: 512x512).

    Call after :class:`PadToSquare` to keep the aspect ratio. ``align_corners=False`` semantics (see the module
    docstring): ``x' = (x + 0.5) * size / W - 0.5``.

    Args:
        size: output side (512 in the paper; tests use 128).
        mode: interpolation (``"bilinear"``, ``"area"``, ``"nearest"`` ...).
        anti_aliasing: Gaussian pre-smoothing when shrinking, sigma ``(factor - 1) / 2`` (MONAI's rule).
    """

    def __init__(self, size: int = 512, mode: str = "bilinear", anti_aliasing: bool = True) -> None:
        self.size = int(size)
        self.mode = mode
        self.anti_aliasing = anti_aliasing

    def matrix(self, spatial_shape: Sequence[int]) -> np.ndarray:
        h, w = int(spatial_shape[0]), int(spatial_shape[1])
        sx, sy = self.size / w, self.size / h
        return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])

    def __call__(self, img):
        h, w = _spatial_shape(img)
        if (h, w) == (self.size, self.size):
            return img
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        arr = arr.astype(np.float32, copy=False)
        if self.anti_aliasing and (h > self.size or w > self.size):
            # Same sigma rule as MONAI's / scikit-image's anti-aliasing, (factor - 1) / 2 per axis, but scipy's
            # separable filter: MONAI's GaussianSmooth takes ~4x longer on a 2600^2 CPU image. Symmetric, so pixel
            # centres do not move.
            sig = (0.0, max((h / self.size - 1) / 2, 0.0), max((w / self.size - 1) / 2, 0.0))
            arr = ndimage.gaussian_filter(arr, sigma=sig, mode="reflect", truncate=4.0)
        align = None if self.mode in ("nearest", "nearest-exact", "area") else False
        resize = Resize(spatial_size=(self.size, self.size), mode=self.mode, align_corners=align)
        out = resize(torch.as_tensor(np.ascontiguousarray(arr)))
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


class _Geometricd(MapTransform):
    """Shared dictionary logic: transform images under ``keys``, points under ``point_keys``, record geometry."""

    transform: PadToSquare | ResizeSquare

    def __init__(
        self,
        keys: KeysCollection,
        point_keys: KeysCollection = ("points",),
        geometry_key: str = GEOMETRY_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.point_keys = (point_keys,) if isinstance(point_keys, str) else tuple(point_keys)
        self.geometry_key = geometry_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        keys = [k for k in self.key_iterator(d)]
        if not keys:
            return d
        shape = _spatial_shape(d[keys[0]])
        for k in keys:
            if _spatial_shape(d[k]) != shape:
                raise ValueError(f"all keys must share one spatial shape; {k!r} has {_spatial_shape(d[k])}, not {shape}")
            d[k] = self.transform(d[k])
        m = self.transform.matrix(shape)
        for pk in self.point_keys:
            if pk in d and d[pk] is not None:
                d[pk] = transform_points(d[pk], m)
            elif not self.allow_missing_keys and pk not in d:
                raise KeyError(f"point key {pk!r} not in the sample")
        compose_geometry(d, m, self.geometry_key)
        return d


class PadToSquared(_Geometricd):
    """Dictionary :class:`PadToSquare`: pads ``keys``, shifts ``point_keys``, records the shift in ``geometry_key``."""

    def __init__(
        self,
        keys: KeysCollection,
        point_keys: KeysCollection = ("points",),
        method: str = "symmetric",
        value: float = 0.0,
        geometry_key: str = GEOMETRY_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, point_keys, geometry_key, allow_missing_keys)
        self.transform = PadToSquare(method=method, value=value)


class ResizeSquared(_Geometricd):
    """Dictionary :class:`ResizeSquare`: resizes ``keys``, scales ``point_keys``, records the scale."""

    def __init__(
        self,
        keys: KeysCollection,
        point_keys: KeysCollection = ("points",),
        size: int = 512,
        mode: str = "bilinear",
        anti_aliasing: bool = True,
        geometry_key: str = GEOMETRY_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, point_keys, geometry_key, allow_missing_keys)
        self.transform = ResizeSquare(size=size, mode=mode, anti_aliasing=anti_aliasing)
