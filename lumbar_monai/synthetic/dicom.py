"""Write a synthetic radiograph as a DICOM DX image (Digital X-Ray Image Storage - For Presentation).

Plain pydicom (2.4 and 3.x), no highdicom, so that it also runs in the compatibility environment. Identifiers are
synthetic (``SYNTHETIC^CASE0001``); UIDs come from :func:`pydicom.uid.generate_uid` (deterministic when an
``entropy`` string is given).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from ..io.atomic import atomic_path

__all__ = ["DX_FOR_PRESENTATION", "write_dx"]

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
# SNOMED CT codes (the values pydicom's ``pydicom.sr.codedict.codes.SCT`` holds): CID 4031 / CID 4010
_LUMBAR_SPINE = ("122496007", "SCT", "Lumbar spine")
_VIEW = {"LL": ("399173006", "SCT", "left lateral"), "RL": ("399198007", "SCT", "right lateral")}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_dx(
    path: str | os.PathLike,
    image: np.ndarray,
    pixel_spacing: tuple[float, float],
    bits_stored: int,
    case_name: str,
    facing: str = "left",
    photometric: str = "MONOCHROME2",
    spacing_attribute: str = "PixelSpacing",
    entropy: str | None = None,
) -> Path:
    """Write ``image`` (MONOCHROME2 values, bone bright) as a DX For Presentation file, atomically.

    Args:
        path: output ``.dcm`` path.
        image: ``(H, W)`` uint16 in ``[0, 2**bits_stored - 1]``.
        pixel_spacing: ``(sx, sy)`` mm; stored as DICOM ``[row spacing, column spacing]`` = ``[sy, sx]``.
        bits_stored: 12..16.
        case_name: short synthetic identifier, e.g. ``"CASE0001"``.
        facing: image side the patient faces; sets ``PatientOrientation`` (``P\\F`` or ``A\\F``).
        photometric: ``"MONOCHROME2"`` or ``"MONOCHROME1"`` (values stored inverted: ``2**bits - 1 - v``).
        spacing_attribute: ``"PixelSpacing"`` (both PixelSpacing and ImagerPixelSpacing) or
            ``"ImagerPixelSpacing"`` (detector spacing only, as many DX devices write).
        entropy: seed text for deterministic UIDs.
    """
    if not 12 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be 12..16, got {bits_stored}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    img = np.asarray(image)
    maxval = (1 << bits_stored) - 1
    if img.ndim != 2 or img.dtype != np.uint16 or int(img.max(initial=0)) > maxval:
        raise ValueError(f"image must be 2-D uint16 within {bits_stored} bits")
    stored = (maxval - img).astype(np.uint16) if photometric == "MONOCHROME1" else img

    def uid(tag: str) -> str:
        return generate_uid(entropy_srcs=[entropy, tag]) if entropy else generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime(2024, 1, 1, 12, 0, 0)
    day, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    # patient / study / series (synthetic, non-identifying)
    ds.PatientName = f"SYNTHETIC^{case_name}"
    ds.PatientID = f"SYN-{case_name}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = day
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = case_name[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "DX"
    ds.Manufacturer = "lumbar-monai synthetic"
    ds.StudyDescription = "Synthetic lumbar spine lateral"
    ds.SeriesDescription = "L-spine lateral (synthetic)"
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = "LL" if facing == "left" else "RL"
    ds.ViewCodeSequence = [_code(*_VIEW[ds.ViewPosition])]
    ds.AnatomicRegionSequence = [_code(*_LUMBAR_SPINE)]
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    ds.PatientOrientation = ["P", "F"] if facing == "left" else ["A", "F"]
    ds.ImageLaterality = "U"
    # DX image module
    ds.ImageType = ["DERIVED", "PRIMARY", ""]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.DetectorType = "SCINTILLATOR"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LOG"
    # +1: lower values = less X-ray intensity (bone dark) - the MONOCHROME1 storage; MONOCHROME2 stores bone bright
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME1" else -1
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    row_col = [f"{pixel_spacing[1]:.6g}", f"{pixel_spacing[0]:.6g}"]
    ds.ImagerPixelSpacing = row_col
    if spacing_attribute == "PixelSpacing":
        ds.PixelSpacing = row_col
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "synthetic image: patient plane spacing known exactly"
    elif spacing_attribute != "ImagerPixelSpacing":
        raise ValueError(f"spacing_attribute must be PixelSpacing or ImagerPixelSpacing, got {spacing_attribute!r}")
    # VOI LUT: a window over the stored range
    ds.WindowCenter = f"{maxval / 2:.1f}"
    ds.WindowWidth = f"{maxval + 1:.1f}"
    # pixels
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = int(bits_stored)
    ds.HighBit = int(bits_stored) - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    with atomic_path(path) as tmp:
        _save(ds, tmp)
    return Path(path)


def _save(ds: FileDataset, path: Path) -> None:
    """``dcmwrite`` with a valid file meta header under pydicom 3 (``enforce_file_format``) and 2.4."""
    major = int(pydicom.__version__.split(".")[0])
    if major >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        pydicom.dcmwrite(path, ds, write_like_original=False)
