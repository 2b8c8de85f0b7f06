"""Whatever a caller hands the predictors, as one ``(H, W)`` float32 image with its pixel spacing.

:func:`read_input` takes an array, a tensor, a file path, a :class:`~lumbar_monai.io.loader.Radiograph` or an
in-memory pydicom ``Dataset``. It sits below :mod:`lumbar_monai.predictor` and :mod:`lumbar_monai.batched` (whose
workers read their inputs with it), so neither imports the other for it.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .loader import Radiograph, load_radiograph

__all__ = ["read_input", "is_pydicom_dataset", "read_dataset"]


def read_input(image) -> tuple[np.ndarray, tuple[float, float] | None, str | None]:
    """``(H, W)`` float32 image, pixel spacing and its source from an array, tensor, path, Radiograph or
    pydicom ``Dataset``."""
    if isinstance(image, (str, os.PathLike)):
        image = load_radiograph(image)
    elif is_pydicom_dataset(image):
        image = read_dataset(image)
    if isinstance(image, Radiograph):
        return np.asarray(image.image, dtype=np.float32), image.pixel_spacing, image.spacing_source
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected a single-channel (H, W) or (1, H, W) image, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32), None, None


def is_pydicom_dataset(obj) -> bool:
    try:
        from pydicom.dataset import Dataset
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return False
    return isinstance(obj, Dataset)


def read_dataset(ds) -> Radiograph:
    """Read an in-memory pydicom Dataset through the project's DICOM reader (which reads files): write it to a
    temporary file first, so that every rule of :func:`~lumbar_monai.io.dicom.read_dicom` applies unchanged."""
    import pydicom

    from .dicom import read_dicom

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.dcm"
        if int(pydicom.__version__.split(".")[0]) >= 3:
            pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
        else:  # pydicom 2.x writes with the dataset's own encoding flags: derive them from the transfer syntax
            ds = copy.copy(ds)
            tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if tsyntax is not None and (ds.is_little_endian is None or ds.is_implicit_VR is None):
                ds.is_little_endian = tsyntax.is_little_endian
                ds.is_implicit_VR = tsyntax.is_implicit_VR
            ds.save_as(str(path), write_like_original=False)
        rg = read_dicom(path)
        rg.path = None
        return rg
