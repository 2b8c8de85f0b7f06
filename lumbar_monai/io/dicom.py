"""DICOM projection radiographs (CR, DX for presentation/processing, secondary capture) -> :class:`Radiograph`.

Why pydicom directly and not MONAI's ``PydicomReader`` (read in MONAI 1.6.1, ``monai/data/image_reader.py``):
for a single radiograph that reader only calls ``pixel_array`` and applies ``RescaleSlope/Intercept``; everything
a projection radiograph needs is missing - it ignores the Modality LUT Sequence, does not invert MONOCHROME1,
takes spacing only from ``PixelSpacing`` (``[1, 1]`` when only ``ImagerPixelSpacing`` is present), warns and
falls back to an identity affine without ``ImagePositionPatient`` (which CR/DX lack), swaps rows and columns by
default, and has no decoder fallback or error reporting. Wrapping it would mean undoing half of what it does, so
this module uses pydicom's own pixel pipeline (``apply_modality_lut``, ``apply_voi_lut``) directly, and
SimpleITK (GDCM inside) as the fallback decoder.

Pipeline: stored values -> Modality LUT (rescale or Modality LUT Sequence) -> [VOI LUT / window, ``voi=True``]
-> MONOCHROME1 inverted so that bone is bright, in row blocks (float64 only per block, float32 out). Works with
pydicom 2.4 and 3.

Bounds: the header is read without pixel data first and Rows x Columns x frames x samples checked against
:func:`~lumbar_monai.io.limits.max_pixels`; native pixel data must be as long as that says, compressed pixel data
must declare the same size in its codestream (JPEG / JPEG-LS ``SOF``, JPEG 2000 ``SIZ``) before a decoder runs.
Decoders run inside :func:`~lumbar_monai.io.decoder_output.quiet_decoders` (no raw decoder lines or plugin
tracebacks on the console). A JPEG 2000 codestream that no decoder reads is tried once more cut to its declared
tile-parts (:func:`~lumbar_monai.io.codestream.trim_j2k`: e.g. a ``COM`` segment of padding before ``EOC``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import InputError
from .codestream import codestream_size, trim_j2k
from .decoder_output import quiet_decoders
from .limits import check_pixel_count
from .radiograph import Radiograph, check_readable_file

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pydicom 2.4
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

__all__ = ["read_dicom", "read_dicom_header", "decode_pixels", "dicom_pixel_spacing", "decoder_hint", "is_dicom_file"]

_PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])

# Transfer syntax -> the pydicom decoder plugin to install (pydicom's own pixel-data handler docs).
_DECODER_HINTS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (or pillow)",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (or pillow)",  # JPEG Extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG Lossless P14
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE Lossless (pydicom also decodes it natively)
}
_UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, "1.2.840.10008.1.2.1.99"}
_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203"}
_PIXEL_DATA = 0x7FE00010
#: Pixels per block of the LUT pipeline (bounds the float64 temporaries to a few MB whatever the image size).
_BLOCK_PIXELS = 1 << 18
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # Structured Report storage SOP classes


def decoder_hint(transfer_syntax: str) -> str:
    """The package to install for pixel data in ``transfer_syntax`` (e.g. ``"pylibjpeg-openjpeg"``)."""
    return _DECODER_HINTS.get(str(transfer_syntax), "pylibjpeg with its libjpeg and openjpeg plugins")


def is_dicom_file(path: str | os.PathLike) -> bool:
    """``True`` if the file's first bytes look like DICOM (with or without preamble / file meta)."""
    from .radiograph import sniff_format

    try:
        return sniff_format(path) == "dicom"
    except InputError:
        return False


def read_dicom_header(path: str | os.PathLike) -> Dataset:
    """Read a DICOM data set without its pixel data (fast); legacy files without file meta are accepted.

    The returned data set always has ``file_meta.TransferSyntaxUID`` (guessed from the encoding for legacy files).
    """
    return _dcmread(check_readable_file(path), stop_before_pixels=True)


def _dcmread(p: Path, stop_before_pixels: bool = False) -> Dataset:
    try:
        with warnings.catch_warnings(), quiet_decoders():  # pydicom's log records may quote header values
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p, force=True, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, IndexError, OverflowError) as e:
        raise InputError(p, f"not a readable DICOM file ({type(e).__name__}: {e})") from None
    except Exception as e:  # pydicom raises assorted errors on garbage; never let one escape untranslated
        raise InputError(p, f"not a readable DICOM file ({type(e).__name__}: {e})") from None
    if len(ds) == 0 or not any(tag.group >= 0x0008 for tag in ds.keys()):
        raise InputError(p, "not DICOM (no data elements)")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # legacy file without a file meta header: record the encoding pydicom detected
        if meta is None:
            ds.file_meta = FileMetaDataset()
        implicit, little = _encoding(ds)
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds


def _encoding(ds: Dataset) -> tuple[bool, bool]:
    enc = getattr(ds, "original_encoding", None)  # pydicom 3
    if enc is not None and enc[0] is not None:
        return bool(enc[0]), bool(enc[1])
    return bool(getattr(ds, "is_implicit_VR", True)), bool(getattr(ds, "is_little_endian", True))


def _spacing_pair(ds: Dataset, keyword: str) -> tuple[float, float] | None:
    """``(sx, sy)`` of a DICOM ``[row spacing, column spacing]`` attribute, or ``None`` when absent or unusable."""
    try:
        sy, sx = (float(v) for v in list(ds.get(keyword) or [])[:2])
    except (TypeError, ValueError):
        return None
    return (sx, sy) if np.isfinite([sx, sy]).all() and sx > 0 and sy > 0 else None


def dicom_pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """``((sx, sy), source)`` in the patient plane where the header allows, else at the detector.

    DICOM stores both spacings as ``[row spacing, column spacing]`` = ``[sy, sx]``. In order:

    * ``PixelSpacing`` (calibrated to the patient): source ``"PixelSpacing"``; unless it merely repeats
      ``ImagerPixelSpacing`` without a ``PixelSpacingCalibrationType``, i.e. is the detector spacing copied;
    * ``ImagerPixelSpacing`` divided by ``EstimatedRadiographicMagnificationFactor`` (a factor in [1, 10)):
      source ``"ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"``, patient plane;
    * ``ImagerPixelSpacing`` alone: source ``"ImagerPixelSpacing"``, at the detector face, so lengths include the
      geometric magnification (:func:`lumbar_monai.result.spacing_plane` says ``"detector"``);
    * ``(None, None)`` when neither is usable.
    """
    pixel, imager = _spacing_pair(ds, "PixelSpacing"), _spacing_pair(ds, "ImagerPixelSpacing")
    if pixel is not None:
        copied = imager is not None and np.allclose(pixel, imager, rtol=1e-6, atol=0) and not ds.get(
            "PixelSpacingCalibrationType")
        if not copied:
            return pixel, "PixelSpacing"
    if imager is None:
        return None, None
    try:
        factor = float(ds.get("EstimatedRadiographicMagnificationFactor"))
    except (TypeError, ValueError):
        factor = float("nan")
    if np.isfinite(factor) and 1.0 <= factor < 10.0:
        return (imager[0] / factor, imager[1] / factor), "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"
    return imager, "ImagerPixelSpacing"


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _value_domain(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """All values the stored pixels can take (every level up to 16 bits, else the extremes and the image's own)."""
    lo, hi = _stored_range(ds)
    if hi - lo < 2**16:
        return np.arange(lo, hi + 1, dtype=np.int64 if lo < 0 else np.uint32).astype(stored.dtype, copy=False)
    return np.array([lo, hi, stored.min(), stored.max()]).astype(stored.dtype)


def _to_grey(p: Path, arr: np.ndarray, photometric: str) -> np.ndarray:
    """``(H, W, 3)`` colour-encoded pixels -> ``(H, W)`` when they hold a grey image, else InputError."""
    if _max_channel_spread(arr, [(1, 0), (2, 0)]) <= 1:
        return arr[..., 0]
    if photometric.startswith("YBR"):  # pydicom 2.4 hands YBR through unconverted: grey = constant chroma
        mid = int(arr[..., 1].flat[0])
        if _max_channel_spread(arr, [(1, None), (2, None)], mid) <= 1:
            return arr[..., 0]
    raise InputError(p, f"colour image ({photometric}), a greyscale radiograph is needed")


def _max_channel_spread(arr: np.ndarray, pairs: list[tuple[int, int | None]], const: int = 0) -> int:
    """Largest ``|arr[..., a] - arr[..., b]|`` (``b`` None: ``const``) over ``pairs``, in row blocks of int64."""
    step = max(1, _BLOCK_PIXELS // max(int(arr.shape[1]), 1))
    worst = 0
    for r0 in range(0, int(arr.shape[0]), step):
        blk = arr[r0 : r0 + step].astype(np.int64)
        for a, b in pairs:
            other = const if b is None else blk[..., b]
            worst = max(worst, int(np.abs(blk[..., a] - other).max(initial=0)))
    return worst


def _pydicom_has_decoder(tsyntax: str) -> bool:
    """Whether the installed pydicom has a usable decoder for ``tsyntax`` (pydicom 3 plugins / 2.4 handlers)."""
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3

        try:
            return bool(get_decoder(UID(tsyntax)).is_available)
        except NotImplementedError:
            return False
    except ImportError:
        from pydicom import config

        return any(h.supports_transfer_syntax(UID(tsyntax)) and h.is_available() for h in config.pixel_data_handlers)


def _decode_with_pydicom(ds: Dataset) -> np.ndarray:
    with warnings.catch_warnings(), quiet_decoders():
        warnings.simplefilter("ignore")
        return ds.pixel_array


def _single_frame(ds: Dataset) -> bytes | None:
    """The compressed bytes of the (single) frame of encapsulated pixel data; None if they cannot be parsed."""
    try:
        try:  # pydicom >= 3
            from pydicom.encaps import generate_frames

            return next(generate_frames(ds.PixelData, number_of_frames=1))
        except ImportError:  # pydicom 2.4
            from pydicom.encaps import generate_pixel_data_frame

            return next(generate_pixel_data_frame(ds.PixelData, 1))
    except Exception:  # noqa: BLE001 - malformed items: the decoders will say so
        return None


def _decode_trimmed_j2k(ds: Dataset) -> tuple[np.ndarray, int]:
    """Decode a JPEG 2000 frame cut to its declared tile-parts; returns ``(stored, bytes dropped)``."""
    from pydicom.encaps import encapsulate

    frame = _single_frame(ds)
    trimmed = trim_j2k(frame) if frame else None
    if trimmed is None:
        raise ValueError("no trailing bytes to drop from the JPEG 2000 codestream")
    fixed = Dataset(dict(ds.items()))  # a new mapping (Dataset(ds) would share ds's): ds is left as it was
    fixed.file_meta = ds.file_meta
    fixed[_PIXEL_DATA] = DataElement(_PIXEL_DATA, "OB", encapsulate([trimmed]), is_undefined_length=True)
    return _decode_with_pydicom(fixed), len(frame) - len(trimmed)


def decode_pixels(ds: Dataset, path: str | os.PathLike | None = None) -> tuple[np.ndarray, str, str | None]:
    """The stored pixel values of a single-frame data set, decoded quietly (:func:`quiet_decoders`).

    pydicom's plugins first; a JPEG 2000 codestream they reject is tried again cut to its declared tile-parts
    (:func:`~lumbar_monai.io.codestream.trim_j2k`); with ``path``, SimpleITK (GDCM) last. ``ds`` needs
    ``file_meta.TransferSyntaxUID`` and is not modified.

    Returns:
        ``(stored, decoder, repaired)``: ``decoder`` is ``"pydicom"`` or ``"SimpleITK"``, ``repaired`` says what
        was cut from the codestream (else ``None``).

    Raises:
        the first decoder's exception when none succeeds.
    """
    try:
        return _decode_with_pydicom(ds), "pydicom", None
    except Exception as first:  # noqa: BLE001 - any decoder failure: a trimmed J2K, then GDCM, before giving up
        if str(ds.file_meta.TransferSyntaxUID) in _J2K:
            try:
                stored, dropped = _decode_trimmed_j2k(ds)
                return stored, "pydicom", f"{dropped} bytes after the last JPEG 2000 tile-part dropped"
            except Exception:  # noqa: BLE001
                pass
        if path is not None:
            try:
                return _decode_with_sitk(Path(path), ds), "SimpleITK", None
            except Exception:  # noqa: BLE001
                pass
        raise first


def _decode_with_sitk(p: Path, ds: Dataset) -> np.ndarray:
    """Decode with SimpleITK (GDCM) and return the *stored* values, so the rest of the pipeline is shared.

    Measured with SimpleITK 2.5 (see ``tests/test_io_dicom.py``, which checks this against pydicom on every
    compressed and uncompressed test file): GDCM applies Rescale Slope/Intercept and inverts MONOCHROME1 as
    ``2**BitsStored - 1 - stored``; both are undone here.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(p))
    with quiet_decoders():
        img = reader.Execute()
    view = sitk.GetArrayViewFromImage(img)
    if view.ndim == 3 and view.shape[0] == 1:
        view = view[0]
    values = np.array(view, dtype=np.float64)  # a copy: img can go
    del view, img
    slope, intercept = float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if "ModalityLUTSequence" not in ds and (slope != 1.0 or intercept != 0.0):
        values -= intercept
        values /= slope
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        if int(ds.get("PixelRepresentation", 0) or 0) == 1:
            raise ValueError("signed MONOCHROME1 pixel data cannot be recovered exactly from GDCM's output")
        np.subtract(2 ** int(ds.BitsStored) - 1, values, out=values)
    np.rint(values, out=values)
    return values.astype(np.int32 if int(ds.get("PixelRepresentation", 0) or 0) else np.uint32)


def _truncation(ds: Dataset) -> str | None:
    """For native (uncompressed) pixel data, a message if ``PixelData`` is shorter than the header says."""
    tsyntax = str(ds.file_meta.TransferSyntaxUID)
    if tsyntax not in _UNCOMPRESSED or "PixelData" not in ds:
        return None
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    expected = (rows * cols * spp * frames * bits + 7) // 8
    have = len(ds.PixelData or b"")
    if have < expected:
        return f"truncated pixel data ({have} of {expected} bytes)"
    return None


def read_dicom(path: str | os.PathLike, voi: bool = False, max_pixels: int | None = None) -> Radiograph:
    """Read a single-frame greyscale DICOM image as a :class:`Radiograph`, bone bright.

    Args:
        path: a DICOM file; with or without the 128-byte preamble and file meta header.
        voi: apply the VOI LUT Sequence or Window Center/Width (first one) and return display values in [0, 1].
            Without it the image holds Modality LUT output values (e.g. stored values for CR/DX).
        max_pixels: refuse images whose Rows x Columns x frames x samples exceed it (default
            :func:`~lumbar_monai.io.limits.max_pixels`), before the pixel data is read.

    Raises:
        InputError: not DICOM, no pixel data (e.g. an SR document), multi-frame / 3-D, colour, over the size
            limit, truncated pixel data, a codestream whose size differs from Rows/Columns, or a compressed
            transfer syntax no installed decoder can read (the message names the package).
    """
    p = check_readable_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on odd values; the result or the InputError says enough
            return _read_dicom(p, voi, max_pixels)
    except (InputError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a malformed header can fail anywhere in pydicom; keep the promise
        raise InputError(p, f"malformed DICOM ({type(e).__name__}: {e})") from e


def _check_declared_size(p: Path, ds: Dataset, max_pixels: int | None) -> None:
    """Rows x Columns x frames x samples within the limit (a header without Rows/Columns is judged later)."""
    if "Rows" in ds and "Columns" in ds:
        dims = (
            int(ds.Rows or 0),
            int(ds.Columns or 0),
            int(ds.get("NumberOfFrames", 1) or 1),
            int(ds.get("SamplesPerPixel", 1) or 1),
        )
        check_pixel_count(p, dims, "DICOM image (rows x columns [x frames x samples])", max_pixels)


def _check_codestream_size(p: Path, ds: Dataset, tsyntax: str) -> None:
    """Compressed pixel data: the codestream's own rows/columns must be the header's (checked before decoding)."""
    if tsyntax in _UNCOMPRESSED or "PixelData" not in ds:
        return
    frame = _single_frame(ds)
    size = codestream_size(frame) if frame else None
    if size is None or 0 in size[:2]:  # not a JPEG family codestream (e.g. RLE), or height set later (DNL)
        return
    rows, cols = int(ds.Rows), int(ds.Columns)
    if size[:2] != (rows, cols):
        raise InputError(
            p, f"Rows x Columns {rows} x {cols} in the header, {size[0]} x {size[1]} in the compressed pixel data"
        )


def _read_dicom(p: Path, voi: bool, max_pixels: int | None = None) -> Radiograph:
    _check_declared_size(p, _dcmread(p, stop_before_pixels=True), max_pixels)
    ds = _dcmread(p)
    _check_declared_size(p, ds, max_pixels)  # the same header unless the file changed in between
    sop_class = str(ds.get("SOPClassUID", ""))
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        what = "a Structured Report" if sop_class.startswith(_SR_PREFIX) else f"modality {ds.get('Modality', '?')}"
        raise InputError(p, f"no pixel data ({what}), not an image")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(p, f"multi-frame image ({frames} frames); a single-frame 2-D radiograph is needed")
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(p, "image without Rows/Columns")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp not in (1, 3) or photometric in ("PALETTE COLOR",):
        raise InputError(p, f"colour image ({photometric}, {spp} samples per pixel), a greyscale radiograph is needed")
    trunc = _truncation(ds)
    if trunc:
        raise InputError(p, trunc)

    tsyntax = UID(str(ds.file_meta.TransferSyntaxUID))
    _check_codestream_size(p, ds, tsyntax)
    try:
        stored, decoder, repaired = decode_pixels(ds, p)
    except Exception as e:  # noqa: BLE001 - every decoder failed
        first = f"{type(e).__name__}: {e}"
        name = getattr(tsyntax, "name", str(tsyntax))
        if tsyntax in _UNCOMPRESSED:
            raise InputError(p, f"cannot read pixel data ({first})") from None
        if not _pydicom_has_decoder(tsyntax):
            raise InputError(
                p, f"no decoder for {name} pixel data: install {decoder_hint(tsyntax)} (or SimpleITK with GDCM)"
            ) from None
        raise InputError(p, f"cannot decode {name} pixel data (truncated or corrupt?): {first}") from None

    stored = np.asarray(stored)
    if stored.ndim == 3 and stored.shape[-1] == 3 and spp == 3:
        stored = _to_grey(p, stored, photometric)
        photometric = "MONOCHROME2"
    if stored.ndim != 2:
        raise InputError(p, f"expected a 2-D image, decoded pixel data has shape {stored.shape}")
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise InputError(p, f"decoded shape {stored.shape} differs from Rows x Columns {(ds.Rows, ds.Columns)}")

    if voi and spp == 1:
        _check_window_width(p, ds)
    invert = photometric == "MONOCHROME1"
    image = _display_values(ds, stored, spp == 3, voi, invert)
    spacing, source = dicom_pixel_spacing(ds)
    meta = _meta(ds, tsyntax, decoder, invert, voi, photometric)
    if repaired:
        meta["repaired"] = repaired
    return Radiograph(
        image=image,
        pixel_spacing=spacing,
        spacing_source=source,
        path=str(p),
        meta=meta,
    )


def _check_window_width(p: Path, ds: Dataset) -> None:
    """InputError when the window pydicom would apply (no VOI LUT Sequence) has a width that is not > 0."""
    if "VOILUTSequence" in ds or "WindowWidth" not in ds:
        return
    ww = ds.WindowWidth
    try:
        width = float(ww[0] if isinstance(ww, MultiValue) else ww)
    except (TypeError, ValueError):
        raise InputError(p, "WindowWidth is not a number") from None
    if not width > 0:
        raise InputError(p, f"WindowWidth must be > 0 (the header says {width:g})")


def _display_values(ds: Dataset, stored: np.ndarray, raw: bool, voi: bool, invert: bool) -> np.ndarray:
    """Stored values -> Modality LUT -> [VOI] -> [MONOCHROME1 mirrored] -> [0, 1] with ``voi``; float32 ``(H, W)``.

    ``raw``: a grey image stored as colour, whose LUT modules refer to the colour samples: values used as stored
    (and no VOI). Each block of rows goes through the same float64 steps a whole image would; only the output is
    full size.
    """

    def lut(x: np.ndarray) -> np.ndarray:
        if raw:
            return x.astype(np.float64)
        out = np.asarray(apply_modality_lut(x, ds), dtype=np.float64)
        return np.asarray(apply_voi_lut(out, ds), dtype=np.float64) if voi else out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        domain = lut(_value_domain(ds, stored))
        lo, hi = float(domain.min()), float(domain.max())
        h, w = stored.shape
        image = np.empty((h, w), dtype=np.float32)
        step = max(1, _BLOCK_PIXELS // max(w, 1))
        for r0 in range(0, h, step):
            values = lut(stored[r0 : r0 + step])
            # MONOCHROME1: the minimum value is displayed white; mirror the value range so that bone is bright.
            # (DX "Presentation LUT Shape" INVERSE accompanies MONOCHROME1 by definition; not a second inversion.)
            if invert:
                values = (lo + hi) - values
            if voi:
                values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
            image[r0 : r0 + step] = values
    return image


def _meta(ds: Dataset, tsyntax: UID, decoder: str, inverted: bool, voi: bool, photometric: str) -> dict[str, Any]:
    """Non-identifying facts only (no patient, physician, institution or date attributes)."""
    meta: dict[str, Any] = {
        "format": "dicom",
        "modality": str(ds.get("Modality", "")) or None,
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")).strip() or None,
        "bits_stored": int(ds.get("BitsStored", 0) or 0) or None,
        "bits_allocated": int(ds.get("BitsAllocated", 0) or 0) or None,
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "transfer_syntax_uid": str(tsyntax),
        "transfer_syntax": getattr(tsyntax, "name", str(tsyntax)),
        "sop_class_uid": str(ds.get("SOPClassUID", "")) or None,
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")) or None,
        "decoder": decoder,
        "inverted": inverted,
        "voi_applied": voi,
    }
    if photometric != (meta["photometric_interpretation"] or "").upper():
        meta["converted_to"] = photometric
    for keyword, key in (("ViewPosition", "view_position"), ("PresentationIntentType", "presentation_intent")):
        if ds.get(keyword):
            meta[key] = str(ds.get(keyword))
    po = ds.get("PatientOrientation")  # directions of the rows and columns (A/P/L/R/H/F): a facing hint only
    if po:
        meta["orientation"] = [str(v)[:16] for v in (po if isinstance(po, MultiValue) else [po])][:2]
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            wc, ww = ds.WindowCenter, ds.WindowWidth
            window = [float(wc[0] if isinstance(wc, MultiValue) else wc),
                      float(ww[0] if isinstance(ww, MultiValue) else ww)]
            if window[1] > 0:  # a width of 0 or less is no window (WindowWidth must be > 0)
                meta["window"] = window
        except (TypeError, ValueError):
            pass
    return meta
