"""Non-DICOM radiographs: PNG / JPEG / BMP / TIFF through PIL, MetaImage / NRRD / NIfTI (and TIFF that PIL cannot
read, e.g. float or multi-sample 16-bit) through SimpleITK.

Every reader returns a :class:`~lumbar_monai.io.loader.Radiograph` with a ``(H, W)`` float32 image holding the
file's grey values unchanged (no rescaling: 8-bit stays 0..255, 16-bit 0..65535). A 3-channel file whose
channels agree (a grey radiograph saved as RGB, e.g. a BUU-LSPINE JPEG) becomes grey; a genuinely colour image
raises :class:`~lumbar_monai.errors.InputError`. Raster formats carry no trustworthy pixel spacing (a dpi tag is
a print setting), so ``pixel_spacing`` is ``None``; spacing then comes from the annotation (see
:mod:`lumbar_monai.io.datalist`). EXIF orientation tags are *not* applied: annotations refer to stored pixels.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from .loader import Radiograph, check_readable_file, sniff_format

__all__ = ["read_raster", "read_itk", "image_size", "GREY_TOLERANCE"]

#: Largest channel difference (grey levels of 8-bit data, 99.9th percentile) for which a 3-channel image counts as
#: grey; lossy JPEG chroma subsampling leaves a few levels of difference on grey images saved as RGB.
GREY_TOLERANCE = 3.0


def _colour_to_grey(p: Path, arr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``(H, W, C>=3)`` -> ``(H, W)`` when the first three channels agree (alpha ignored), else InputError."""
    rgb = arr[..., :3].astype(np.float32)
    diff = np.maximum(np.abs(rgb[..., 1] - rgb[..., 0]), np.abs(rgb[..., 2] - rgb[..., 0]))
    if diff.size and float(np.percentile(diff, 99.9)) > GREY_TOLERANCE * scale:
        raise InputError(p, "colour image; a greyscale radiograph is needed")
    return rgb.mean(axis=-1)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(W, H)`` of a raster image from its header only (PIL's lazy open); DICOM and ITK formats read the header."""
    fmt = sniff_format(path)
    p = Path(path)
    if fmt in ("png", "jpeg", "bmp", "tiff"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                return int(im.size[0]), int(im.size[1])
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(p, f"cannot read {fmt.upper()} header ({e})") from None
    if fmt == "dicom":
        from .dicom import read_dicom_header

        ds = read_dicom_header(p)
        if "Rows" not in ds or "Columns" not in ds:
            raise InputError(p, "DICOM without Rows/Columns")
        return int(ds.Columns), int(ds.Rows)
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(p, f"cannot read {fmt} header ({str(e).strip().splitlines()[-1]})") from None
    size = reader.GetSize()
    return int(size[0]), int(size[1])


def read_raster(path: str | os.PathLike, fmt: str | None = None) -> Radiograph:
    """Read PNG / JPEG / BMP / TIFF (8 or 16 bit, grey or grey-as-RGB) with PIL; TIFF falls back to SimpleITK."""
    p = check_readable_file(path)
    fmt = fmt or sniff_format(p)
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. DecompressionBombWarning on large radiographs
            with Image.open(p) as im:
                frames = int(getattr(im, "n_frames", 1) or 1)
                if frames > 1:
                    raise InputError(p, f"multi-frame image ({frames} frames); a single 2-D radiograph is needed")
                mode = im.mode
                orientation = im.getexif().get(274) if fmt in ("jpeg", "tiff") else None
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                arr = np.asarray(im)
                src_dtype = str(arr.dtype)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        if fmt == "tiff":
            return read_itk(p, fmt="tiff")
        raise InputError(p, f"cannot decode {fmt.upper()} ({type(e).__name__}: {e})") from None
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        if arr.shape[-1] == 2:  # grey + alpha
            arr = arr[..., 0]
        elif arr.shape[-1] >= 3:
            scale = 257.0 if arr.dtype == np.uint16 else 1.0
            arr = _colour_to_grey(p, arr, scale)
    if arr.ndim != 2:
        raise InputError(p, f"expected a 2-D greyscale image, got array shape {arr.shape}")
    meta = {"format": fmt, "mode": mode, "dtype": src_dtype, "decoder": "PIL"}
    if orientation not in (None, 1):
        meta["exif_orientation_ignored"] = int(orientation)
    return Radiograph(image=np.ascontiguousarray(arr, dtype=np.float32), path=str(p), meta=meta)


def read_itk(path: str | os.PathLike, fmt: str | None = None) -> Radiograph:
    """Read MetaImage / NRRD / NIfTI / TIFF through SimpleITK.

    The array is taken as stored (SimpleITK's ``(H, W)`` = ITK index ``(x, y)`` reversed); the direction matrix
    is ignored (a projection radiograph has no patient-space orientation to restore). Spacing comes from the
    header (never for TIFF, whose resolution tag is a print setting), except that exactly ``(1, 1)`` - the default every one of these formats writes when nothing is known -
    is reported as unknown (``None``).
    """
    p = check_readable_file(path)
    fmt = fmt or sniff_format(p)
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise InputError(p, f"cannot read {fmt} ({lines[-1] if lines else 'SimpleITK error'})") from None
    size = list(img.GetSize())
    spacing = list(img.GetSpacing())
    while len(size) > 2 and size[-1] == 1:
        size.pop()
        spacing.pop()
    if len(size) != 2:
        raise InputError(p, f"{len(size)}-D image of size {tuple(img.GetSize())}; a 2-D radiograph is needed")
    arr = sitk.GetArrayFromImage(img)
    src_dtype = str(arr.dtype)
    ncomp = img.GetNumberOfComponentsPerPixel()
    arr = arr.reshape(size[1], size[0], ncomp) if ncomp > 1 else arr.reshape(size[1], size[0])
    if ncomp == 2:
        arr = arr[..., 0]
    elif ncomp >= 3:
        arr = _colour_to_grey(p, arr, 257.0 if arr.dtype == np.uint16 else 1.0)
    if np.iscomplexobj(arr):
        raise InputError(p, "complex-valued image")
    sx, sy = float(spacing[0]), float(spacing[1])
    known = fmt != "tiff" and np.isfinite([sx, sy]).all() and sx > 0 and sy > 0 and (sx, sy) != (1.0, 1.0)
    return Radiograph(
        image=np.ascontiguousarray(arr, dtype=np.float32),
        pixel_spacing=(sx, sy) if known else None,
        spacing_source="header" if known else None,
        path=str(p),
        meta={"format": fmt, "dtype": src_dtype, "decoder": "SimpleITK", "components": int(ncomp)},
    )
