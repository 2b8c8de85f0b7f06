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
from .decoder_output import quiet_decoders
from .limits import check_pixel_count
from .limits import max_pixels as default_max_pixels
from .radiograph import Radiograph, check_readable_file, sniff_format

__all__ = ["read_raster", "read_itk", "image_size", "GREY_TOLERANCE"]

#: Largest channel difference (grey levels of 8-bit data, 99.9th percentile) for which a 3-channel image counts as
#: grey; lossy JPEG chroma subsampling leaves a few levels of difference on grey images saved as RGB.
GREY_TOLERANCE = 3.0


#: Pixels converted per step when a colour image is made grey (bounds the float temporaries to a few MB).
_BLOCK_PIXELS = 1 << 18


def _colour_to_grey(p: Path, arr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``(H, W, C>=3)`` -> ``(H, W)`` float32 when the first three channels agree (alpha ignored), else InputError.

    "Agree": at most 0.1 % of the pixels differ between channels by more than :data:`GREY_TOLERANCE` (times
    ``scale``), i.e. the 99.9th percentile of the difference is within the tolerance. Done in row blocks, so the
    temporaries stay small whatever the image size.
    """
    h, w = int(arr.shape[0]), int(arr.shape[1])
    out = np.empty((h, w), dtype=np.float32)
    tol = GREY_TOLERANCE * scale
    over = 0
    step = max(1, _BLOCK_PIXELS // max(w, 1))
    for r0 in range(0, h, step):
        rgb = arr[r0 : r0 + step, :, :3].astype(np.float32)
        diff = np.maximum(np.abs(rgb[..., 1] - rgb[..., 0]), np.abs(rgb[..., 2] - rgb[..., 0]))
        over += int(np.count_nonzero(diff > tol))
        out[r0 : r0 + step] = rgb.mean(axis=-1)
    if over > 0.001 * (h * w - 1):  # same test as np.percentile(diff, 99.9) > tol (linear interpolation)
        raise InputError(p, "colour image; a greyscale radiograph is needed")
    return out


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(W, H)`` of a raster image from its header only (PIL's lazy open); DICOM and ITK formats read the header."""
    fmt = sniff_format(path)
    p = Path(path)
    if fmt in ("png", "jpeg", "bmp", "tiff"):
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DecompressionBombWarning: only the header is read here
                with Image.open(p) as im:
                    return int(im.size[0]), int(im.size[1])
        except Image.DecompressionBombError:
            raise InputError(p, f"{fmt.upper()} image declares over twice PIL's limit of {Image.MAX_IMAGE_PIXELS} "
                             "pixels") from None
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


def read_raster(path: str | os.PathLike, fmt: str | None = None, max_pixels: int | None = None) -> Radiograph:
    """Read PNG / JPEG / BMP / TIFF (8 or 16 bit, grey or grey-as-RGB) with PIL; TIFF falls back to SimpleITK.

    The size in the header (width x height x frames x bands) is checked against ``max_pixels`` (default
    :func:`~lumbar_monai.io.limits.max_pixels`) before any pixel is decoded; PIL's own decompression-bomb limit
    (``Image.MAX_IMAGE_PIXELS``) is set to the same value.
    """
    p = check_readable_file(path)
    fmt = fmt or sniff_format(p)
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = limit  # PIL warns above it (ignored: checked below) and refuses above twice it
    try:
        with warnings.catch_warnings(), quiet_decoders():
            warnings.simplefilter("ignore")  # e.g. DecompressionBombWarning: the size is checked below
            with Image.open(p) as im:
                frames = int(getattr(im, "n_frames", 1) or 1)
                check_pixel_count(p, (im.size[0], im.size[1], frames, len(im.getbands())), f"{fmt.upper()} image",
                                  limit)
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
    except Image.DecompressionBombError:
        raise InputError(
            p, f"{fmt.upper()} image declares over twice the limit of {limit / 1e6:g} megapixels "
            "(set LUMBAR_MAX_PIXELS to raise it)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        if fmt == "tiff":
            return read_itk(p, fmt="tiff", max_pixels=limit)
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


def _itk_error(p: Path, fmt: str, e: RuntimeError) -> InputError:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return InputError(p, f"cannot read {fmt} ({lines[-1] if lines else 'SimpleITK error'})")


def read_itk(path: str | os.PathLike, fmt: str | None = None, max_pixels: int | None = None) -> Radiograph:
    """Read MetaImage / NRRD / NIfTI / TIFF through SimpleITK.

    The header is read first (``ImageFileReader.ReadImageInformation``) and its size x components checked
    against ``max_pixels`` (default :func:`~lumbar_monai.io.limits.max_pixels`) before the pixels are read.
    The array is taken as stored (SimpleITK's ``(H, W)`` = ITK index ``(x, y)`` reversed); the direction matrix
    is ignored (a projection radiograph has no patient-space orientation to restore). Spacing comes from the
    header (never for TIFF, whose resolution tag is a print setting), except that exactly ``(1, 1)`` - the
    default every one of these formats writes when nothing is known - is reported as unknown (``None``).
    """
    p = check_readable_file(path)
    fmt = fmt or sniff_format(p)
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        with quiet_decoders():
            reader.ReadImageInformation()
    except RuntimeError as e:
        raise _itk_error(p, fmt, e) from None
    full_size = tuple(int(s) for s in reader.GetSize())
    ncomp = int(reader.GetNumberOfComponents())
    check_pixel_count(p, (*full_size, ncomp), f"{fmt} image", max_pixels)
    size = list(full_size)
    spacing = list(reader.GetSpacing())
    while len(size) > 2 and size[-1] == 1:
        size.pop()
        spacing.pop()
    if len(size) != 2:
        raise InputError(p, f"{len(size)}-D image of size {full_size}; a 2-D radiograph is needed")
    try:
        with quiet_decoders():
            img = reader.Execute()
    except RuntimeError as e:
        raise _itk_error(p, fmt, e) from None
    ncomp = img.GetNumberOfComponentsPerPixel()
    if tuple(img.GetSize()) != full_size:
        raise InputError(p, f"image size {tuple(img.GetSize())} differs from its header's {full_size}")
    view = sitk.GetArrayViewFromImage(img)  # no copy; every branch below copies before img is released
    src_dtype = str(view.dtype)
    if np.iscomplexobj(view):
        raise InputError(p, "complex-valued image")
    view = view.reshape(size[1], size[0], ncomp) if ncomp > 1 else view.reshape(size[1], size[0])
    if ncomp == 2:
        view = view[..., 0]
    if ncomp >= 3:
        image = _colour_to_grey(p, view, 257.0 if view.dtype == np.uint16 else 1.0)
    else:
        image = np.array(view, dtype=np.float32, order="C", copy=True)
    del view, img
    sx, sy = float(spacing[0]), float(spacing[1])
    known = fmt != "tiff" and np.isfinite([sx, sy]).all() and sx > 0 and sy > 0 and (sx, sy) != (1.0, 1.0)
    return Radiograph(
        image=image,
        pixel_spacing=(sx, sy) if known else None,
        spacing_source="header" if known else None,
        path=str(p),
        meta={"format": fmt, "dtype": src_dtype, "decoder": "SimpleITK", "components": int(ncomp)},
    )
