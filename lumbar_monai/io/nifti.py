"""NIfTI exports for 3D Slicer / MONAI Label: a landmark label map and the network's heatmaps.

Axis convention: NIfTI voxel ``(i, j)`` is pixel ``(x, y)`` = (column, row), i.e. the stored array is the image
transposed, ``(W, H[, 1, C])``. That is how MONAI's readers (``LoadImage`` with PIL/ITK/Nibabel) present a 2-D
image (first spatial axis = x), and how SimpleITK/ITK index it, so a file written here lines up with the
radiograph in those tools. The affine is ``diag(-sx, -sy, 1)`` in NIfTI's RAS (mm; 1 when the spacing is
unknown) with ``qform_code = sform_code = 2`` (aligned): that is ITK's identity direction in LPS, the geometry
SimpleITK (and so 3D Slicer) gives a PNG or a DX without a position, so the label map lands on the radiograph
when both are placed in physical space. Files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..points import as_points
from .atomic import atomic_path
from .limits import check_pixel_count
from .loader import check_readable_file

__all__ = [
    "landmark_label_map",
    "write_label_map_nifti",
    "write_heatmaps_nifti",
    "read_label_map_points",
    "spacing_affine",
]


def spacing_affine(pixel_spacing: tuple[float, float] | None) -> np.ndarray:
    """``4x4`` RAS affine of voxel ``(i=x, j=y, k)``: ``diag(-sx, -sy, 1, 1)``, i.e. LPS ``(+x sx, +y sy)`` as ITK
    places a radiograph's pixels (column to the patient's left, row to posterior) with an identity direction."""
    sx, sy = (1.0, 1.0) if pixel_spacing is None else (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if not (np.isfinite([sx, sy]).all() and sx > 0 and sy > 0):
        raise ValueError(f"pixel spacing must be two positive numbers, got {pixel_spacing!r}")
    return np.diag([-sx, -sy, 1.0, 1.0])


def landmark_label_map(points, shape_hw: tuple[int, int], radius: float = 3.0) -> np.ndarray:
    """``(H, W)`` uint16 map with a disc of label ``i + 1`` around landmark ``i`` (0 = background).

    A pixel belongs to the nearest landmark within ``radius`` px (so overlapping discs split down the middle);
    non-finite points draw nothing. Drawn per landmark in a bounding window (the loop runs over landmarks, the
    pixels of each window are vectorised).
    """
    pts = as_points(points)
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if len(pts) >= np.iinfo(np.uint16).max:
        raise ValueError(f"too many landmarks for a uint16 label map: {len(pts)}")
    labels = np.zeros((h, w), dtype=np.uint16)
    best = np.full((h, w), np.inf)
    r = float(radius)
    for i, (x, y) in enumerate(pts):
        if not np.isfinite([x, y]).all():
            continue
        x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)), w - 1)
        y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)), h - 1)
        if x0 > x1 or y0 > y1:
            continue
        yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        win_best = best[y0 : y1 + 1, x0 : x1 + 1]
        take = (d2 <= r * r) & (d2 < win_best)
        win_best[take] = d2[take]
        labels[y0 : y1 + 1, x0 : x1 + 1][take] = i + 1
    return labels


def _save(path: str | os.PathLike, data_whxx: np.ndarray, pixel_spacing, intent: str | None = None) -> Path:
    img = nib.Nifti1Image(data_whxx, spacing_affine(pixel_spacing))
    img.set_qform(img.affine, code=2)
    img.set_sform(img.affine, code=2)
    img.header.set_xyzt_units(xyz="mm")
    if intent:
        img.header.set_intent(intent)
    target = Path(path)
    if not target.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"NIfTI file names end in .nii or .nii.gz, got {target.name!r}")
    with atomic_path(target) as tmp:
        nib.save(img, str(tmp))
    return target


def write_label_map_nifti(
    path: str | os.PathLike,
    points,
    shape_hw: tuple[int, int],
    pixel_spacing: tuple[float, float] | None = None,
    radius: float = 3.0,
) -> Path:
    """Write :func:`landmark_label_map` as a NIfTI label volume ``(W, H)`` (see the module docstring)."""
    labels = landmark_label_map(points, shape_hw, radius)
    return _save(path, np.ascontiguousarray(labels.T), pixel_spacing, intent="label")


def write_heatmaps_nifti(path: str | os.PathLike, heatmaps, pixel_spacing: tuple[float, float] | None = None) -> Path:
    """Write ``(C, H, W)`` heatmaps as a float32 NIfTI of shape ``(W, H, 1, C)`` (one 4th-dimension entry per map)."""
    maps = heatmaps.detach().cpu().numpy() if hasattr(heatmaps, "detach") else np.asarray(heatmaps)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be (C, H, W), got shape {maps.shape}")
    data = np.ascontiguousarray(maps.astype(np.float32).transpose(2, 1, 0)[:, :, None, :])
    return _save(path, data, pixel_spacing)


def read_label_map_points(
    path: str | os.PathLike, num_points: int | None = None
) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a label map written by :func:`write_label_map_nifti` (or edited in Slicer / MONAI Label) back to points.

    Returns ``((N, 2) x, y centroids of labels 1..N in pixels, (sx, sy) from the affine)``; a label that is
    absent gives a NaN row. ``N`` is ``num_points`` or the largest label present. The shape in the header is
    checked against :func:`~lumbar_monai.io.limits.max_pixels` before the voxels are read (a client sends this
    file), and integer label maps are used without a copy.
    """
    p = check_readable_file(path)
    try:
        img = nib.load(str(p))
        shape = tuple(int(d) for d in img.shape)
    except Exception as e:  # nibabel raises many types on malformed files
        raise InputError(p, f"not a readable NIfTI file ({type(e).__name__}: {e})") from None
    check_pixel_count(p, shape or (0,), "label map")
    if len(shape) < 2 or any(d != 1 for d in shape[2:]):
        raise InputError(p, f"expected a 2-D label map, got shape {shape}")
    try:
        data = np.asarray(img.dataobj).reshape(shape[:2], order="A")
    except Exception as e:  # noqa: BLE001 - truncated or malformed voxel data
        raise InputError(p, f"not a readable NIfTI file ({type(e).__name__}: {e})") from None
    if data.dtype.kind in "iu":
        labels = data.T  # (H, W), no copy
    elif data.dtype.kind == "b":
        labels = data.T.astype(np.uint8)
    else:
        with np.errstate(invalid="ignore"):
            labels = np.nan_to_num(np.rint(data.T), nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
    n = int(num_points if num_points is not None else labels.max(initial=0))
    flat = labels.ravel()
    keep = (flat >= 1) & (flat <= n)
    yy, xx = np.divmod(np.nonzero(keep)[0], labels.shape[1])
    lab = flat[keep].astype(np.intp)
    counts = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.bincount(lab, weights=xx, minlength=n + 1)[1:] / counts
        cy = np.bincount(lab, weights=yy, minlength=n + 1)[1:] / counts
    zooms = img.header.get_zooms()
    return np.stack([cx, cy], axis=1), (float(zooms[0]), float(zooms[1]))
