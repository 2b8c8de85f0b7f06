"""Point conventions and the one place that converts between them.

Inside the project a landmark set is a float ``(N, 2)`` array of ``(x, y)`` pixels of the current image, pixel
centres at integer coordinates (x = column, y = row of a ``(C, H, W)`` array). MONAI's point-aware transforms
(``ApplyTransformToPoints``, ``GenerateHeatmap``) order coordinates by array axes, i.e. ``(y, x)`` for a
``(C, H, W)`` image, with points shaped ``(C, N, 2)``. Convert at that boundary with :func:`xy_to_monai` and
:func:`monai_to_xy` only.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["xy_to_monai", "monai_to_xy", "as_points", "homogeneous", "apply_affine_2d"]


def as_points(points, dtype=np.float64) -> np.ndarray:
    """``(N, 2)`` float array from anything array-like (torch tensors included)."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=dtype)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (x, y), got {arr.shape}")
    return arr


def xy_to_monai(points, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(N, 2)`` (x, y) -> ``(1, N, 2)`` (y, x) tensor, MONAI's channel-first point layout for 2-D images."""
    arr = as_points(points)
    return torch.as_tensor(arr[:, ::-1].copy(), dtype=dtype).unsqueeze(0)


def monai_to_xy(points) -> np.ndarray:
    """Inverse of :func:`xy_to_monai`: ``(1, N, 2)`` or ``(N, 2)`` (y, x) -> ``(N, 2)`` (x, y) float64 array."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise ValueError(f"expected a single point channel, got shape {arr.shape}")
        arr = arr[0]
    return arr[:, ::-1].copy()


def homogeneous(points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` -> ``(N, 3)`` with a column of ones."""
    arr = as_points(points)
    return np.concatenate([arr, np.ones((len(arr), 1))], axis=1)


def apply_affine_2d(matrix: np.ndarray, points) -> np.ndarray:
    """Apply a 3x3 homogeneous matrix acting on (x, y) column vectors to ``(N, 2)`` points."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"expected a 3x3 matrix, got {m.shape}")
    return homogeneous(points) @ m[:2].T
