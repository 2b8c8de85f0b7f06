"""One entry point for radiographs: :func:`load_radiograph` sniffs the file's content and calls the right reader.

The format is decided by magic bytes, not by the extension (a JPEG named ``.png`` reads fine, a text file named
``.png`` fails with an :class:`~lumbar_monai.errors.InputError`):

========================  ==========================================  ===========================================
format                    recognised by                               reader
========================  ==========================================  ===========================================
DICOM                     ``DICM`` at byte 128 (or 0); legacy files   :func:`lumbar_monai.io.dicom.read_dicom`
                          without preamble/file meta by their first
                          tag (group 0002/0008)
PNG, JPEG, BMP            ``\\x89PNG``, ``\\xff\\xd8\\xff``, ``BM``    :func:`lumbar_monai.io.images.read_raster` (PIL)
TIFF (8/16-bit, float)    ``II*\\0`` / ``MM\\0*``                     :func:`lumbar_monai.io.images.read_raster`
                                                                      (PIL, SimpleITK when PIL cannot)
NIfTI (.nii, .nii.gz)     ``sizeof_hdr`` 348/540 + magic; gzip         :func:`lumbar_monai.io.images.read_itk`
NRRD, MetaImage           ``NRRD``; ``ObjectType``/``NDims`` header    :func:`lumbar_monai.io.images.read_itk`
========================  ==========================================  ===========================================
"""

from __future__ import annotations

import os

from ..errors import InputError
from .radiograph import SPACING_SOURCES, Radiograph, check_readable_file, sniff_format

__all__ = ["Radiograph", "SPACING_SOURCES", "sniff_format", "load_radiograph", "check_readable_file"]


def load_radiograph(path: str | os.PathLike, voi: bool = False, max_pixels: int | None = None) -> Radiograph:
    """Read a single-frame greyscale radiograph from any supported file (see the module docstring).

    Every reader checks the size the file declares before decoding it (:mod:`lumbar_monai.io.limits`).

    Args:
        path: the image file; its content decides the reader, not its extension.
        voi: DICOM only: apply the VOI LUT / window of the header and return display values in [0, 1].
        max_pixels: refuse images of more pixel values than this (default
            :func:`~lumbar_monai.io.limits.max_pixels`: ``$LUMBAR_MAX_PIXELS`` or 100 megapixels).

    Returns:
        :class:`Radiograph` with a ``(H, W)`` float32 image, bone bright.

    Raises:
        InputError: one line naming the file and the problem, for every kind of bad input.
    """
    fmt = sniff_format(path)
    try:
        # readers are imported here so that importing this module stays light (and free of import cycles)
        if fmt == "dicom":
            from .dicom import read_dicom

            return read_dicom(path, voi=voi, max_pixels=max_pixels)
        if fmt in ("png", "jpeg", "bmp", "tiff"):
            from .images import read_raster

            return read_raster(path, fmt=fmt, max_pixels=max_pixels)
        from .images import read_itk

        return read_itk(path, fmt=fmt, max_pixels=max_pixels)
    except (InputError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - whatever a decoder throws, the caller gets one InputError
        raise InputError(path, f"cannot read {fmt} image ({type(e).__name__}: {e})") from e
