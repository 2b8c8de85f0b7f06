"""Test helpers for the measurement / DICOM-output tests: constructed spines with known geometry, small DX files.

Import from a test with ``sys.path.insert(0, str(Path(__file__).parent)); import _lm_helpers``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
from _paths import SHARED as SHARED  # re-exported: tests read H.SHARED

from lumbar_monai.anatomy import Layout, get_layout
from lumbar_monai.result import LandmarkResult

REAL_DICOM = {
    "cr_mono1_legacy": "fodicom_CR-MONO1-10-chest.dcm",
    "dx_mono1": "highdicom_dx_image.dcm",
    "jpeg2000": "pydicom_RG3_J2KR.dcm",
    "jpeg_lossless": "pylibjpeg_RG2_JPLL.dcm",
}


def spine_points(
    layout: str | Layout = "lateral",
    tilts: dict | None = None,
    facing: str = "left",
    width: float = 40.0,
    height: float = 30.0,
    disc: float = 10.0,
    origin: tuple[float, float] = (100.0, 40.0),
    shifts: dict | None = None,
    scale_heights: dict | None = None,
) -> np.ndarray:
    """Points of a constructed spine in image pixels, known geometry.

    In a canonical frame (first corner of each end plate towards +x, y down) every vertebra is a body of end-plate
    length ``width`` and height ``height``; bodies are ``disc`` apart. ``tilts[(name, "superior"|"inferior")]`` is
    the tilt in degrees of that end plate about its own midpoint (positive = first corner higher).
    ``shifts[name] = dx`` moves a whole vertebra towards its first side (anterior). ``scale_heights[name]`` scales
    that vertebra's height about its centre. ``facing="left"`` mirrors x so anterior points to image-left.
    """
    layout = get_layout(layout)
    tilts = tilts or {}
    shifts = shifts or {}
    scale_heights = scale_heights or {}
    pts = np.zeros((layout.num_points, 2))
    y = 0.0
    for spec, sl in zip(layout.vertebrae, layout.vertebra_slices, strict=True):
        cx = shifts.get(spec.name, 0.0)
        h = height * scale_heights.get(spec.name, 1.0)
        plates = ["superior", "inferior"][: len(spec.end_plates)]
        mids = [np.array([cx, y]), np.array([cx, y + h])] if len(plates) == 2 else [np.array([cx, y])]
        for (a, b), which, mid in zip(spec.end_plates, plates, mids, strict=True):
            t = np.radians(tilts.get((spec.name, which), 0.0))
            d = np.array([np.cos(t), -np.sin(t)]) * width / 2
            pts[sl.start + a] = mid + d
            pts[sl.start + b] = mid - d
        y += h + disc
    if facing == "left":
        pts[:, 0] = -pts[:, 0]
    pts += np.asarray(origin)
    return pts


def result_from_points(points, layout="lateral", spacing=None, source=None, size=None) -> LandmarkResult:
    """Ground truth wrapped as a predictor answer (confidence 1)."""
    layout = get_layout(layout)
    pts = np.asarray(points, dtype=np.float64)
    return LandmarkResult(
        layout=layout,
        points=pts,
        confidence=np.ones(layout.num_points),
        centres=layout.centres(pts),
        centre_confidence=np.ones(layout.num_vertebrae),
        pixel_spacing=spacing,
        spacing_source=source,
        image_size=size,
        meta={"model": "ground-truth"},
    )


def lateral_study_points(width_px: int = 256, height_px: int = 320) -> np.ndarray:
    """A plausible lordotic lateral spine (facing left) scaled into a ``width_px`` x ``height_px`` image."""
    tilts = {
        ("L1", "superior"): 12.0, ("L1", "inferior"): 10.0, ("L2", "superior"): 8.0, ("L2", "inferior"): 6.0,
        ("L3", "superior"): 3.0, ("L3", "inferior"): 0.0, ("L4", "superior"): -4.0, ("L4", "inferior"): -8.0,
        ("L5", "superior"): -14.0, ("L5", "inferior"): -22.0, ("S1", "superior"): -38.0,
    }
    pts = spine_points("lateral", tilts=tilts, facing="left", width=1.0, height=0.7, disc=0.22, origin=(0, 0),
                       shifts={"L1": -0.25, "L2": -0.1, "L3": 0.0, "L4": -0.05, "L5": -0.2, "S1": -0.45})
    lo, hi = pts.min(0), pts.max(0)
    scale = min((width_px * 0.6) / (hi - lo)[0], (height_px * 0.8) / (hi - lo)[1])
    return (pts - (lo + hi) / 2) * scale + np.array([width_px / 2, height_px / 2])


def render_spine_image(points, layout="lateral", size_wh=(256, 320), seed=0) -> np.ndarray:
    """A crude radiograph (uint16, bone bright) of the vertebral bodies drawn as filled quadrilaterals."""
    from skimage.draw import polygon
    from skimage.filters import gaussian

    layout = get_layout(layout)
    w, h = size_wh
    img = np.full((h, w), 0.15)
    yy, xx = np.mgrid[0:h, 0:w]
    img += 0.1 * np.exp(-(((xx - w / 2) / (0.35 * w)) ** 2))  # soft tissue
    pts = np.asarray(points)
    for spec, sl in zip(layout.vertebrae, layout.vertebra_slices, strict=True):
        p = pts[sl]
        if len(spec.end_plates) == 2:
            (a0, b0), (a1, b1) = spec.end_plates
            quad = p[[a0, b0, b1, a1]]
        else:  # sacrum: a wedge below its end plate
            a, b = spec.end_plates[0]
            down = np.array([0.0, 0.6 * np.linalg.norm(p[a] - p[b])])
            quad = np.stack([p[a], p[b], p[b] + down, p[a] + down * 1.4])
        rr, cc = polygon(quad[:, 1], quad[:, 0], shape=(h, w))
        img[rr, cc] += 0.55
    img = gaussian(img, sigma=1.2)
    img += np.random.default_rng(seed).normal(0, 0.02, img.shape)
    return np.clip(img * 4095 / img.max(), 0, 4095).astype(np.uint16)


def write_dx(path, pixels: np.ndarray, spacing=(0.25, 0.25), photometric="MONOCHROME2", spacing_attr="PixelSpacing",
             patient_name="Doe^Jane", patient_id="PID-TEST-0001") -> Path:
    """A small DX For Presentation file written with pydicom (explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    arr = np.asarray(pixels, dtype=np.uint16)
    if photometric == "MONOCHROME1":
        arr = (4095 - arr).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    now = datetime.datetime(2024, 5, 6, 7, 8, 9)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = "ACC0001"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "lumbar-monai tests"
    ds.PatientOrientation = ["A", "F"]
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = "LL"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "U"
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME2" else -1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.LossyImageCompression = "00"
    ds.PositionReferenceIndicator = ""
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "122496007", "SCT", "Lumbar spine"
    ds.AnatomicRegionSequence = [region]
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.DetectorType = "DIRECT"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    view = Dataset()
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = "399067008", "SCT", "Lateral projection"
    ds.ViewCodeSequence = [view]
    # DX needs ImagerPixelSpacing (Type 1); PixelSpacing (calibrated) is optional. DICOM order: row, column.
    sp = spacing if spacing is not None else (0.1, 0.1)
    ds.ImagerPixelSpacing = [f"{sp[1]:g}", f"{sp[0]:g}"]
    if spacing is not None and spacing_attr == "PixelSpacing":
        ds.PixelSpacing = [f"{sp[1]:g}", f"{sp[0]:g}"]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "synthetic test image: magnification corrected"
    ds.PixelData = arr.tobytes()
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:  # pydicom 2.4 (the MONAI Label environment)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return Path(path)


def tiny_untrained_model(path: Path, seed: int = 0) -> Path:
    """Save a tiny, untrained lateral predictor (seeded: its meaningless points do not depend on earlier tests) for
    tests of the command-line tools, where what is checked is the plumbing, not the landmarks."""
    import torch

    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs

    torch.manual_seed(seed)
    return LandmarkPredictor(
        layout="lateral",
        centre_net=with_init_kwargs(PoseNet, layout="lateral", width=4, kernel_size=7),
        lumbar_net=with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2),
        sacrum_net=with_init_kwargs(MNet, out_channels=3, channels=(4, 8), coordconv=2),
        crop_size=32, stage1={"input_size": 64, "heatmap_size": 8}, device="cpu",
    ).save(path)


def tiny_untrained_ap_model(path: Path, seed: int = 0) -> Path:
    """:func:`tiny_untrained_model` of the AP layout (L1-L5 centres and corners, no sacrum network)."""
    import torch

    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs

    torch.manual_seed(seed)
    return LandmarkPredictor(
        layout="ap", centre_net=with_init_kwargs(PoseNet, layout="ap", width=4, kernel_size=7),
        lumbar_net=with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2),
        crop_size=32, stage1={"input_size": 64, "heatmap_size": 8}, device="cpu",
    ).save(path)


def aasce_format_folder(root: Path, subset: str = "batch2", n: int = 3, size: tuple[int, int] = (120, 400),
                        release_layout: bool = False) -> list:
    """An AASCE-format folder: ``n`` images with 17 boxes down the middle (T1-L5), the labels normalised; returns
    each image's L1-L5 corners (20, 2) in the files' corner order (top-left, top-right, bottom-left, bottom-right).
    ``images_<subset>/`` + ``labels_<subset>/``, or the challenge release's ``data/<subset>/`` + ``labels/<subset>/``."""
    from PIL import Image

    w, h = size
    images, labels = ((root / "data" / subset, root / "labels" / subset) if release_layout
                      else (root / f"images_{subset}", root / f"labels_{subset}"))
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    names, rows, lumbar = [], [], []
    for k in range(n):
        name = f"case{k} A AP.jpg"
        y = 12.0 + 22.0 * np.arange(17) + k
        xy = np.stack([np.tile([w / 2 - 20, w / 2 + 20, w / 2 - 20, w / 2 + 20], 17),
                       np.repeat(y, 4) + np.tile([-7.0, -7.0, 7.0, 7.0], 17)], axis=1)
        img = np.full((h, w), 40, np.uint8)
        for v in range(17):
            img[int(y[v] - 7): int(y[v] + 7), int(w / 2 - 20): int(w / 2 + 20)] = 200
        Image.fromarray(img).save(images / name, format="JPEG")
        names.append(name)
        rows.append(",".join(f"{v:.5f}" for v in np.concatenate([xy[:, 0] / w, xy[:, 1] / h])))
        lumbar.append(xy[48:])
    (labels / "filenames.csv").write_text("\n".join(names) + "\n")
    (labels / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return lumbar
