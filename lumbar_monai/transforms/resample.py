"""Stage-1 geometry at network resolution: fit the longest side to ``size``, then zero-pad to a square.

Today's path (:class:`~lumbar_monai.transforms.geometry.PadToSquared` then
:class:`~lumbar_monai.transforms.geometry.ResizeSquared`) pads and anti-alias-filters at the *original*
resolution: its time and memory grow with the original's size (a 100-megapixel image is padded to a 400 MB+
square and Gaussian-filtered in full). :class:`FitToSquare` resizes the unpadded image straight to the network
grid with PyTorch's anti-aliased bilinear interpolation (a separable triangle filter as wide as the reduction
factor, the same as PIL's; its buffers are output-sized) and pads afterwards, at network resolution. It runs on
the tensor's device (CPU or CUDA). MONAI's ``Resize(anti_aliasing=True)`` filters at the input resolution first,
which is exactly the cost avoided here, hence this transform.

Geometry (pixel centres as in :mod:`lumbar_monai.transforms.geometry`): an ``(H, W)`` image with
``S = max(H, W)`` becomes ``(h, w) = (round(H N / S), round(W N / S))`` (the longest side exactly ``N``), placed at
``(top, left)`` of the ``N x N`` canvas (:func:`~lumbar_monai.transforms.geometry.pad_to_square_widths` of
``(h, w)``); a point moves by ``x' = (x + 0.5) w / W - 0.5 + left`` (``align_corners=False``), recorded in
``sample["geometry"]`` like every other geometric step. Compared with padding at full resolution first, the
content lands at most one network pixel away (the padding is rounded on the network grid, not the original's);
the recorded matrix is exact either way, so points map back exactly. Like the other geometry steps it is a MONAI
invertible transform on MetaTensors (``Compose.inverse`` crops the content and resizes it back to ``(H, W)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.utils import convert_to_dst_type

from .geometry import GEOMETRY_KEY, GeometryTransform, GeometryTransformd, _plain, pad_to_square_widths

__all__ = ["FitToSquare", "FitToSquared", "FitToSquareD", "FitToSquareDict", "fit_to_square_shape"]


def fit_to_square_shape(height: int, width: int, size: int, method: str = "symmetric") -> tuple[int, int, int, int]:
    """``(h, w, top, left)``: the resized content's shape and its offset in the ``size x size`` canvas."""
    side = max(int(height), int(width))
    h = min(size, max(1, int(round(height * size / side))))
    w = min(size, max(1, int(round(width * size / side))))
    if max(h, w) != size:  # rounding never shortens the longest side, but be exact about it
        h, w = (size, w) if height >= width else (h, size)
    top, _, left, _ = pad_to_square_widths(h, w, method)
    return h, w, top, left


class FitToSquare(GeometryTransform):
    """Resize a ``(C, H, W)`` image so that its longest side is ``size`` and zero-pad it to ``(C, size, size)``.

    Args:
        size: network input side (512 in the paper).
        method: where the padding goes, ``"symmetric"`` or ``"end"`` (see
            :func:`~lumbar_monai.transforms.geometry.pad_to_square_widths`).
        antialias: anti-aliased (triangle-filter) bilinear when shrinking; plain bilinear when enlarging.
    """

    def __init__(self, size: int = 512, method: str = "symmetric", antialias: bool = True) -> None:
        pad_to_square_widths(1, 2, method)  # validate
        self.size = int(size)
        self.method = method
        self.antialias = bool(antialias)

    def matrix(self, spatial_shape: Sequence[int]) -> np.ndarray:
        """The ``(x, y)`` 3x3 matrix this step applies to points of an ``(H, W)`` image."""
        hh, ww = int(spatial_shape[0]), int(spatial_shape[1])
        h, w, top, left = fit_to_square_shape(hh, ww, self.size, self.method)
        sx, sy = w / ww, h / hh
        return np.array([[sx, 0.0, 0.5 * sx - 0.5 + left], [0.0, sy, 0.5 * sy - 0.5 + top], [0.0, 0.0, 1.0]])

    def _apply(self, img):
        img = _plain(img)
        t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(img))
        t = t.float()
        c, hh, ww = t.shape
        h, w, top, left = fit_to_square_shape(hh, ww, self.size, self.method)
        if (h, w) != (hh, ww):
            shrink = h < hh or w < ww
            t = F.interpolate(t[None], size=(h, w), mode="bilinear", align_corners=False,
                              antialias=self.antialias and shrink)[0]
        out = t.new_zeros((c, self.size, self.size))
        out[:, top : top + h, left : left + w] = t
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


class FitToSquared(GeometryTransformd):
    """Dictionary :class:`FitToSquare`: resizes and pads ``keys``, moves ``point_keys``, records the step in
    ``geometry_key``; invertible like :class:`~lumbar_monai.transforms.geometry.GeometryTransformd`."""

    def __init__(
        self,
        keys: KeysCollection,
        point_keys: KeysCollection = ("points",),
        size: int = 512,
        method: str = "symmetric",
        antialias: bool = True,
        geometry_key: str = GEOMETRY_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, point_keys, geometry_key, allow_missing_keys)
        self.transform = FitToSquare(size=size, method=method, antialias=antialias)


FitToSquareD = FitToSquareDict = FitToSquared
