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

Array transforms return only the image and expose ``matrix(spatial_shape)``; the dictionary versions (``...d``,
aliases ``...D`` / ``...Dict``) apply the image transform to ``keys``, move every array under ``point_keys``
(``(N, 2)`` (x, y), NaN rows stay NaN) and update ``geometry_key``.

All of them are MONAI invertible transforms (:class:`~monai.transforms.InvertibleTransform`): on a MetaTensor image
they push their step (its 3x3 ``matrix`` and the original spatial size) onto ``applied_operations`` and update the
image's ``affine``, so ``Compose(...).inverse(sample)`` crops/resizes the image back to the original grid (up to
interpolation) and the dictionary versions move the points back with the exact inverse matrix (and undo their step
in ``geometry_key``). Plain arrays and tensors are transformed as before and leave nothing to invert.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.data.utils import to_affine_nd
from monai.transforms import BorderPad, InvertibleTransform, MapTransform, Resize
from monai.utils import TraceKeys, convert_to_dst_type
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
    "index_affine",
    "GeometryTransform",
    "GeometryTransformd",
    "PadToSquare",
    "PadToSquared",
    "PadToSquareD",
    "PadToSquareDict",
    "ResizeSquare",
    "ResizeSquared",
    "ResizeSquareD",
    "ResizeSquareDict",
]

GEOMETRY_KEY = "geometry"

# swaps (y, x) <-> (x, y) in homogeneous 3x3 form
_SWAP = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


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


def index_affine(matrix: np.ndarray) -> np.ndarray:
    """The ``(y, x)`` index matrix MONAI composes into a MetaTensor's ``affine`` for a step whose ``(x, y)`` point
    matrix is ``matrix`` (input -> output): it takes *output* indices to *input* indices, ``S matrix^-1 S``."""
    return _SWAP @ np.linalg.inv(np.asarray(matrix, dtype=np.float64)) @ _SWAP


def _plain(img) -> torch.Tensor | np.ndarray:
    """The data of ``img`` without MONAI metadata (MetaTensor -> torch.Tensor; others unchanged)."""
    return img.as_tensor() if isinstance(img, MetaTensor) else img


def _update_affine(img: MetaTensor, yx: np.ndarray) -> None:
    """``img.affine = img.affine @ yx`` (``yx`` a 3x3 index matrix, embedded in the affine's rank)."""
    aff = torch.as_tensor(img.affine, dtype=torch.float64)
    img.affine = aff @ to_affine_nd(aff.shape[-1] - 1, torch.as_tensor(yx, dtype=torch.float64), dtype=torch.float64)


def _undo_scale_translate(img, matrix: np.ndarray, orig_size: Sequence[int], mode: str = "bilinear"):
    """Invert an axis-aligned scale + translation step on a ``(C, h, w)`` image: crop the original's footprint,
    resize it back to ``orig_size`` (``align_corners=False``; anti-aliased when shrinking)."""
    m = np.asarray(matrix, dtype=np.float64)
    if abs(m[0, 1]) > 1e-12 or abs(m[1, 0]) > 1e-12:
        raise ValueError("only axis-aligned scale + translation steps are inverted here")
    hh, ww = int(orig_size[0]), int(orig_size[1])
    t = torch.as_tensor(_plain(img)) if not isinstance(img, np.ndarray) else torch.as_tensor(np.ascontiguousarray(img))
    # the original covers [-0.5, W - 0.5] in x; its edges land at m @ edge in the current image
    x0, x1 = (int(round(m[0, 0] * e + m[0, 2] + 0.5)) for e in (-0.5, ww - 0.5))
    y0, y1 = (int(round(m[1, 1] * e + m[1, 2] + 0.5)) for e in (-0.5, hh - 0.5))
    h, w = t.shape[-2:]
    x0, x1, y0, y1 = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the original {hh}x{ww} grid lies outside the current {h}x{w} image")
    t = t[:, y0:y1, x0:x1]
    if (y1 - y0, x1 - x0) != (hh, ww):
        shrink = (y1 - y0) > hh or (x1 - x0) > ww
        align = None if mode in ("nearest", "nearest-exact", "area") else False
        t = F.interpolate(t[None].float(), size=(hh, ww), mode=mode, align_corners=align,
                          antialias=shrink and mode in ("bilinear", "bicubic"))[0]
    return t


class GeometryTransform(InvertibleTransform):
    """Base of the array geometry steps: ``matrix(spatial_shape)`` (points, ``(x, y)``), ``_apply(img)`` (the
    image), and MONAI's invertibility on MetaTensors (see the module docstring). ``inverse`` takes a MetaTensor
    that this instance transformed."""

    def matrix(self, spatial_shape: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def _apply(self, img):
        raise NotImplementedError

    def __call__(self, img):
        shape = _spatial_shape(img)
        out = self._apply(img)
        if not (isinstance(img, MetaTensor) and get_track_meta()):
            return out
        if out is img:
            out = img.clone()
        out = convert_to_dst_type(out, img)[0]
        m = self.matrix(shape)
        self.push_transform(out, orig_size=list(shape), extra_info={"matrix": m.tolist()},
                            affine=torch.as_tensor(index_affine(m)))
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Undo this step on a MetaTensor it produced (crop/resize back to the recorded original size)."""
        if not isinstance(data, MetaTensor):
            raise TypeError(f"{type(self).__name__}.inverse needs the MetaTensor it returned, got {type(data).__name__}")
        op = self.pop_transform(data)
        m = np.asarray(op[TraceKeys.EXTRA_INFO]["matrix"], dtype=np.float64)
        out = _undo_scale_translate(data, m, op[TraceKeys.ORIG_SIZE], getattr(self, "mode", "bilinear"))
        out = convert_to_dst_type(out, data, dtype=data.dtype)[0]
        _update_affine(out, _SWAP @ m @ _SWAP)
        return out

    @staticmethod
    def recorded_matrix(img) -> np.ndarray | None:
        """The ``matrix`` of the newest step recorded on ``img`` (a MetaTensor), or ``None``."""
        ops = getattr(img, "applied_operations", None)
        if not ops:
            return None
        info = ops[-1].get(TraceKeys.EXTRA_INFO) or {}
        return None if "matrix" not in info else np.asarray(info["matrix"], dtype=np.float64)


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


class PadToSquare(GeometryTransform):
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

    def _apply(self, img):
        h, w = _spatial_shape(img)
        top, bottom, left, right = pad_to_square_widths(h, w, self.method)
        if top == bottom == left == right == 0:
            return img
        out = BorderPad(spatial_border=[top, bottom, left, right], mode="constant", value=self.value)(_plain(img))
        return convert_to_dst_type(out, _plain(img))[0]


class ResizeSquare(GeometryTransform):
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

    def _apply(self, img):
        h, w = _spatial_shape(img)
        if (h, w) == (self.size, self.size):
            return img
        img = _plain(img)
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


class GeometryTransformd(MapTransform, InvertibleTransform):
    """Shared dictionary logic: transform images under ``keys``, points under ``point_keys``, record geometry;
    ``inverse`` undoes the step on MetaTensor images and moves the points back exactly."""

    transform: GeometryTransform

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

    def _move_points(self, d: dict, m: np.ndarray) -> None:
        for pk in self.point_keys:
            if pk in d and d[pk] is not None:
                d[pk] = transform_points(d[pk], m)
            elif not self.allow_missing_keys and pk not in d:
                raise KeyError(f"point key {pk!r} not in the sample")
        compose_geometry(d, m, self.geometry_key)

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
        self._move_points(d, self.transform.matrix(shape))
        return d

    def inverse(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        m = None
        for k in self.key_iterator(d):
            m = GeometryTransform.recorded_matrix(d[k]) if m is None else m
            d[k] = self.transform.inverse(d[k])
        if m is None:
            if not list(self.key_iterator(d)):
                return d
            raise TypeError(f"{type(self).__name__}.inverse needs MetaTensor images (EnsureTyped(track_meta=True))")
        self._move_points(d, np.linalg.inv(m))
        return d


_Geometricd = GeometryTransformd  # the former private name


class PadToSquared(GeometryTransformd):
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


class ResizeSquared(GeometryTransformd):
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


PadToSquareD = PadToSquareDict = PadToSquared
ResizeSquareD = ResizeSquareDict = ResizeSquared
