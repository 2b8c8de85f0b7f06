"""DICOM reader: every real file in ../shared/dicom, plus synthetic files for the Modality/VOI LUT paths.

``make_dicom`` (also used by ``test_bad_inputs.py``) writes small DICOM files with pydicom 2.4 or 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from _paths import SHARED
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from lumbar_monai.errors import InputError
from lumbar_monai.io import dicom as dicom_mod
from lumbar_monai.io.dicom import decoder_hint, dicom_pixel_spacing, read_dicom, read_dicom_header
from lumbar_monai.io.loader import load_radiograph, sniff_format

pytestmark = pytest.mark.compat

SHARED_DICOM = SHARED / "dicom"
PYDICOM3 = int(pydicom.__version__.split(".")[0]) >= 3
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

# file -> (rows, columns, photometric, (sx, sy) or None, spacing source), from ../shared/dicom/README.md and headers
EXPECTED = {
    # PixelSpacing repeats ImagerPixelSpacing without a calibration type: the detector spacing, copied
    "highdicom_dx_image.dcm": (169, 211, "MONOCHROME1", (1.2012, 1.2), "ImagerPixelSpacing"),
    "fodicom_CR-MONO1-10-chest.dcm": (440, 440, "MONOCHROME1", None, None),
    "pydicom_RG3_J2KR.dcm": (1760, 1760, "MONOCHROME1", None, None),
    "pylibjpeg_RG2_JPLL.dcm": (2140, 1760, "MONOCHROME2", (0.2, 0.2), "PixelSpacing"),
}


def make_dicom(
    path: Path,
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    sop_class: str = DX_PRESENTATION,
    modality: str = "DX",
    transfer_syntax: str = ExplicitVRLittleEndian,
    file_meta: bool = True,
    **attrs,
) -> Path:
    """Write ``pixels`` ((H, W), (H, W, 3) or (F, H, W); None = no pixel data) as a DICOM file.

    ``file_meta=False`` writes a legacy file: no preamble, no file meta, implicit VR little endian. ``attrs`` are
    extra data elements by keyword (e.g. ``PixelSpacing=[0.2, 0.1]``).
    """
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Do^Not^Log"
    ds.PatientID = "SECRET-ID-123"
    if pixels is not None:
        arr = np.asarray(pixels)
        frames = arr.shape[0] if arr.ndim == 3 and arr.shape[-1] != 3 else 1
        spp = 3 if arr.ndim == 3 and arr.shape[-1] == 3 else 1
        ds.Rows, ds.Columns = (arr.shape[1], arr.shape[2]) if frames > 1 else arr.shape[:2]
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.SamplesPerPixel = spp
        if spp == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = arr.dtype.itemsize * 8
        ds.BitsStored = bits_stored or ds.BitsAllocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
        ds.PixelData = arr.tobytes()
        if transfer_syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):  # compressed: encapsulate as-is
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([arr.tobytes()])
            ds["PixelData"].is_undefined_length = True
            ds["PixelData"].VR = "OB"
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if not file_meta else transfer_syntax
    if PYDICOM3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:
        ds.is_little_endian = True
        ds.is_implicit_VR = not file_meta or transfer_syntax == ImplicitVRLittleEndian
        ds.preamble = b"\x00" * 128
        ds.save_as(path, write_like_original=False)
    if not file_meta:  # strip preamble + file meta group -> a legacy file that only force=True reads
        raw = path.read_bytes()
        group_len = int.from_bytes(raw[140:144], "little")
        path.write_bytes(raw[144 + group_len :])
    return path


@pytest.fixture(scope="module")
def shared_dicom() -> Path:
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"real DICOM files not found at {SHARED_DICOM}")
    return SHARED_DICOM


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_files_shape_spacing_and_inversion(shared_dicom, name):
    rows, cols, photometric, spacing, source = EXPECTED[name]
    path = shared_dicom / name
    assert sniff_format(path) == "dicom"
    r = load_radiograph(path)
    assert r.image.shape == (rows, cols) and r.image.dtype == np.float32
    assert (r.height, r.width) == (rows, cols) and r.size_wh == (cols, rows)
    assert r.spacing_source == source
    if spacing is None:
        assert r.pixel_spacing is None
    else:
        np.testing.assert_allclose(r.pixel_spacing, spacing, atol=1e-4)
    assert r.meta["photometric_interpretation"] == photometric
    # the relation to the stored values: MONOCHROME1 is mirrored over the stored range, MONOCHROME2 is not
    ds = read_dicom_header(path)
    bits = int(ds.BitsStored)
    stored = dicom_mod._decode_with_sitk(path, ds).astype(np.float64)  # independent decoder (GDCM)
    if photometric == "MONOCHROME1":
        np.testing.assert_array_equal(r.image, (2**bits - 1) - stored)
        assert r.meta["inverted"] is True
    else:
        np.testing.assert_array_equal(r.image, stored)
        assert r.meta["inverted"] is False
    assert "patient" not in " ".join(r.meta).lower()


def test_real_chest_bone_is_bright(shared_dicom):
    """CR chest, MONOCHROME1: the mediastinum/spine column must come out brighter than both lungs."""
    im = load_radiograph(shared_dicom / "fodicom_CR-MONO1-10-chest.dcm").image
    h, w = im.shape
    centre = im[h // 4 : 3 * h // 4, int(0.45 * w) : int(0.55 * w)].mean()
    lungs = [im[h // 4 : h // 2, int(a * w) : int(b * w)].mean() for a, b in ((0.2, 0.3), (0.7, 0.8))]
    assert centre > 1.5 * max(lungs)


def test_real_dx_air_is_dark(shared_dicom):
    """DX (MONOCHROME1, 8 bit): the air below the body (bottom rows) must be dark, far below the image mean."""
    im = load_radiograph(shared_dicom / "highdicom_dx_image.dcm").image
    assert im[-im.shape[0] // 10 :].mean() < 0.3 * im.mean()


def test_legacy_file_without_file_meta(shared_dicom):
    path = shared_dicom / "fodicom_CR-MONO1-10-chest.dcm"
    assert path.read_bytes()[128:132] != b"DICM"
    r = read_dicom(path)
    assert r.meta["transfer_syntax_uid"] == ImplicitVRLittleEndian
    assert r.meta["modality"] == "CR"


@pytest.mark.parametrize("name", ["pydicom_RG3_J2KR.dcm", "pylibjpeg_RG2_JPLL.dcm"])
def test_gdcm_fallback_matches_pydicom_decoders(shared_dicom, name, monkeypatch):
    """Compressed files: pydicom's plugin (where installed) and the SimpleITK fallback give identical images."""
    path = shared_dicom / name
    direct = read_dicom(path)

    def no_plugin(ds):
        raise RuntimeError("decoder plugin disabled by the test")

    monkeypatch.setattr(dicom_mod, "_decode_with_pydicom", no_plugin)
    fallback = read_dicom(path)
    assert fallback.meta["decoder"] == "SimpleITK"
    np.testing.assert_array_equal(direct.image, fallback.image)


def test_missing_decoder_names_the_package(shared_dicom, monkeypatch):
    """No pydicom plugin and no GDCM: the error says what to install."""
    path = shared_dicom / "pylibjpeg_RG2_JPLL.dcm"
    if PYDICOM3:
        from pydicom.pixels import get_decoder

        monkeypatch.setattr(get_decoder(read_dicom_header(path).file_meta.TransferSyntaxUID), "_available", {})
    else:
        from pydicom import config
        from pydicom.pixel_data_handlers import numpy_handler

        monkeypatch.setattr(config, "pixel_data_handlers", [numpy_handler])

    def no_gdcm(p, ds):
        raise RuntimeError("GDCM disabled by the test")

    monkeypatch.setattr(dicom_mod, "_decode_with_sitk", no_gdcm)
    with pytest.raises(InputError) as info:
        read_dicom(path)
    msg = str(info.value)
    assert "install pylibjpeg-libjpeg" in msg and str(path) in msg and "\n" not in msg


def test_voi_window_and_inversion(tmp_path):
    """Window centre 100 / width 101 (LINEAR): 50 -> 0, 150 -> 1; MONOCHROME1 mirrors that."""
    pix = np.array([[0, 50, 100], [150, 200, 255]], dtype=np.uint8)
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        path = make_dicom(tmp_path / f"{photometric}.dcm", pix, photometric, WindowCenter=100, WindowWidth=101)
        r = read_dicom(path, voi=True)
        # pydicom LINEAR: y = ((x - (c - 0.5)) / (w - 1) + 0.5) clipped to [0, 255], then /255 here
        expect = np.clip(((pix - 99.5) / 100.0 + 0.5), 0, 1)
        if photometric == "MONOCHROME1":
            expect = 1.0 - expect
        np.testing.assert_allclose(r.image, expect, atol=1e-6)
        raw = read_dicom(path)
        np.testing.assert_array_equal(raw.image, pix if photometric == "MONOCHROME2" else 255 - pix.astype(np.float32))


def test_rescale_and_modality_lut_sequence(tmp_path):
    pix = np.array([[0, 1, 2], [3, 4, 1023]], dtype=np.uint16)
    r = read_dicom(make_dicom(tmp_path / "rescale.dcm", pix, bits_stored=10, RescaleSlope=2, RescaleIntercept=-5))
    np.testing.assert_array_equal(r.image, 2.0 * pix - 5)
    # Modality LUT Sequence: 8-entry LUT starting at stored value 0 (entries beyond clamp to the last one)
    lut = Dataset()
    lut.LUTDescriptor = [8, 0, 16]
    lut.add_new(0x00283006, "US", [10, 20, 40, 80, 160, 320, 640, 1280])  # LUT Data (VR US or OW)
    lut.ModalityLUTType = "US"
    pix = np.array([[0, 1, 2], [3, 7, 9]], dtype=np.uint16)
    r = read_dicom(make_dicom(tmp_path / "lut.dcm", pix, bits_stored=4, ModalityLUTSequence=[lut]))
    np.testing.assert_array_equal(r.image, [[10, 20, 40], [80, 1280, 1280]])


def test_spacing_order_and_imager_fallback(tmp_path):
    pix = np.zeros((4, 6), dtype=np.uint16)
    r = read_dicom(make_dicom(tmp_path / "ps.dcm", pix, PixelSpacing=[0.2, 0.1], ImagerPixelSpacing=[0.3, 0.3]))
    assert r.pixel_spacing == (0.1, 0.2) and r.spacing_source == "PixelSpacing"  # DICOM [row, col] = [sy, sx]
    r = read_dicom(make_dicom(tmp_path / "ips.dcm", pix, ImagerPixelSpacing=[0.15, 0.14]))
    assert r.pixel_spacing == (0.14, 0.15) and r.spacing_source == "ImagerPixelSpacing"
    r = read_dicom(make_dicom(tmp_path / "bad.dcm", pix, PixelSpacing=[0, 0], ImagerPixelSpacing=[0.15, 0.14]))
    assert r.spacing_source == "ImagerPixelSpacing"
    assert dicom_pixel_spacing(Dataset()) == (None, None)
    assert r.image.shape == (4, 6)


def test_secondary_capture_grey_as_rgb_and_legacy(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    r = read_dicom(make_dicom(tmp_path / "sc.dcm", rgb, "RGB", sop_class=SECONDARY_CAPTURE, modality="OT"))
    np.testing.assert_array_equal(r.image, grey)
    path = make_dicom(tmp_path / "legacy.dcm", grey, file_meta=False)
    assert path.read_bytes()[:2] == b"\x08\x00"
    assert sniff_format(path) == "dicom"
    np.testing.assert_array_equal(load_radiograph(path).image, grey)


def test_file_meta_without_preamble(tmp_path):
    grey = np.arange(20, dtype=np.uint16).reshape(4, 5)
    raw = make_dicom(tmp_path / "full.dcm", grey, PixelSpacing=[0.5, 0.25]).read_bytes()
    path = tmp_path / "nopreamble.dcm"
    path.write_bytes(raw[132:])  # starts with the (0002,0000) element, no 128-byte preamble, no "DICM"
    assert sniff_format(path) == "dicom"
    r = load_radiograph(path)
    np.testing.assert_array_equal(r.image, grey)
    assert r.pixel_spacing == (0.25, 0.5) and r.meta["transfer_syntax_uid"] == ExplicitVRLittleEndian


def test_meta_never_holds_patient_identifiers(tmp_path):
    r = read_dicom(make_dicom(tmp_path / "p.dcm", np.ones((2, 2), np.uint8)))
    text = repr(r.meta)
    assert "Do^Not^Log" not in text and "SECRET-ID-123" not in text
    assert r.meta["sop_class_uid"] == DX_PRESENTATION and r.meta["modality"] == "DX"


def test_decoder_hints():
    assert decoder_hint("1.2.840.10008.1.2.4.90") == "pylibjpeg-openjpeg"
    assert decoder_hint("1.2.840.10008.1.2.4.70") == "pylibjpeg-libjpeg"
