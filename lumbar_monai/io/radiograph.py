"""The radiograph record and the file checks every reader shares: :class:`Radiograph`, :func:`check_readable_file`,
:func:`sniff_format` (the format from the file's first bytes).

The bottom of the ``io`` readers: :mod:`lumbar_monai.io.dicom` and :mod:`lumbar_monai.io.images` import it, and
:mod:`lumbar_monai.io.loader` (which dispatches to both) re-exports it, so that no reader imports the loader.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .limits import check_file_size

__all__ = ["Radiograph", "SPACING_SOURCES", "sniff_format", "check_readable_file"]

#: Values of :attr:`Radiograph.spacing_source`: the DICOM attribute(s) the spacing came from (their plane:
#: :func:`lumbar_monai.result.spacing_plane`), ``"header"`` for the
#: spacing field of a MetaImage/NRRD/NIfTI header, ``"annotation"`` for an annotation file's ``pixel_spacing``.
SPACING_SOURCES = ("PixelSpacing", "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor", "ImagerPixelSpacing",
                   "header", "annotation", None)


@dataclass
class Radiograph:
    """A single-frame greyscale radiograph, bone bright.

    Args:
        image: ``(H, W)`` float32; rows = H (y), columns = W (x). DICOM: the Modality LUT output (MONOCHROME1
            inverted), or display values in [0, 1] after the VOI LUT when read with ``voi=True``.
        pixel_spacing: ``(sx, sy)`` mm per pixel along x (columns) and y (rows), or ``None`` when unknown.
        spacing_source: one of :data:`SPACING_SOURCES`.
        path: the file read.
        meta: non-identifying facts about the file (format, modality, photometric interpretation, bits,
            transfer syntax, SOP class/instance UID, decoder); never patient names or IDs.
    """

    image: np.ndarray
    pixel_spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def size_wh(self) -> tuple[int, int]:
        """``(W, H)`` in pixels, the order annotation files use."""
        return self.width, self.height

    def channel_first(self) -> np.ndarray:
        """The image as ``(1, H, W)`` float32, the project's image layout."""
        return self.image[None]


def check_readable_file(path: str | os.PathLike) -> Path:
    """Return ``Path(path)`` if it is an existing, non-empty regular file within the file size limit
    (:func:`~lumbar_monai.io.limits.max_file_bytes`), else raise :class:`InputError`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a directory, expected an image file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(p, f"cannot read ({e.strerror or type(e).__name__})") from None
    if size == 0:
        raise InputError(p, "empty file")
    check_file_size(p, size)
    return p


def _read_head(p: Path, n: int = 512) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise InputError(p, f"cannot read ({e.strerror or type(e).__name__})") from None


def _looks_like_dicom(head: bytes) -> bool:
    if head[128:132] == b"DICM" or head[:4] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # No preamble: the data set starts with a tag of the file meta (0002) or identifying (0008) group, little
    # endian; explicit VR shows two upper-case letters after the tag, implicit VR a 4-byte length.
    group, elem = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or elem > 0x0100:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    (length,) = struct.unpack("<I", head[4:8])
    return length < 0x10000


def sniff_format(path: str | os.PathLike) -> str:
    """Name the format of ``path`` from its first bytes.

    Returns one of ``"dicom"``, ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"nifti"``, ``"nrrd"``,
    ``"metaimage"``; raises :class:`InputError` for anything else (missing, empty or unrecognised files).
    """
    p = check_readable_file(path)
    head = _read_head(p)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"NRRD"):
        return "nrrd"
    if head.startswith(b"\x1f\x8b"):
        if p.name.lower().endswith(".nii.gz"):
            return "nifti"
        raise InputError(p, "gzip-compressed file: only .nii.gz (NIfTI) is read compressed")
    if len(head) >= 348:
        le, be = struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]
        if 348 in (le, be) and head[344:348] in (b"n+1\x00", b"ni1\x00"):
            return "nifti"
        if 540 in (le, be) and head[4:8] == b"n+2\x00":
            return "nifti"
    if head.lstrip().startswith((b"ObjectType", b"NDims")) or b"\nNDims" in head:
        return "metaimage"
    if _looks_like_dicom(head):
        return "dicom"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    raise InputError(
        p, "not a recognised image (expected DICOM, PNG, JPEG, TIFF, BMP, NIfTI, NRRD or MetaImage content)"
    )
