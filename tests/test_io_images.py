"""Raster (PIL) and ITK (SimpleITK) readers behind ``load_radiograph``."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from _paths import SHARED
from PIL import Image

from lumbar_monai.errors import InputError
from lumbar_monai.io.images import image_size, read_itk
from lumbar_monai.io.loader import load_radiograph, sniff_format

pytestmark = pytest.mark.compat



def _ramp16(h=6, w=9) -> np.ndarray:
    return (np.arange(h * w, dtype=np.uint32).reshape(h, w) * 1201 % 65536).astype(np.uint16)


def test_png_8_and_16_bit(tmp_path):
    a8 = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(a8).save(tmp_path / "a8.png")
    r = load_radiograph(tmp_path / "a8.png")
    np.testing.assert_array_equal(r.image, a8)
    assert r.image.dtype == np.float32 and r.pixel_spacing is None and r.spacing_source is None
    a16 = _ramp16()
    Image.fromarray(a16).save(tmp_path / "a16.png")
    r = load_radiograph(tmp_path / "a16.png")
    np.testing.assert_array_equal(r.image, a16)  # no rescaling: 16-bit values kept
    assert image_size(tmp_path / "a16.png") == (9, 6)


def test_tiff_16_bit_and_float(tmp_path):
    a16 = _ramp16()
    Image.fromarray(a16).save(tmp_path / "a16.tif")
    np.testing.assert_array_equal(load_radiograph(tmp_path / "a16.tif").image, a16)
    f = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    sitk.WriteImage(sitk.GetImageFromArray(f), str(tmp_path / "f.tiff"))
    r = load_radiograph(tmp_path / "f.tiff")
    np.testing.assert_array_equal(r.image, f)
    assert r.pixel_spacing is None  # TIFF resolution is a print setting, never a spacing


def test_grey_stored_as_rgb_jpeg_becomes_grey(tmp_path):
    grey = np.tile(np.arange(0, 240, 15, dtype=np.uint8), (16, 1))
    Image.fromarray(grey).convert("RGB").save(tmp_path / "g.jpg", quality=95)
    r = load_radiograph(tmp_path / "g.jpg")
    assert r.image.shape == (16, 16) and r.meta["mode"] == "RGB"
    assert np.abs(r.image - grey).max() <= 4


def test_real_buu_sample_stored_as_rgb():
    path = SHARED / "data" / "buu_lspine_ap_samples" / "0001-F-037Y0.jpg"
    if not path.exists():
        pytest.skip("BUU-LSPINE samples not found")
    r = load_radiograph(path)
    assert r.meta["mode"] == "RGB" and r.image.shape == (2147, 1823)
    assert image_size(path) == (1823, 2147)
    assert r.image.min() >= 0 and r.image.max() <= 255


@pytest.mark.parametrize(
    "suffix,fmt", [(".mha", "metaimage"), (".nrrd", "nrrd"), (".nii", "nifti"), (".nii.gz", "nifti")]
)
def test_itk_formats_with_spacing(tmp_path, suffix, fmt):
    a = _ramp16(5, 7)
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((0.15, 0.25))  # (sx, sy)
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(img, str(path))
    assert sniff_format(path) == fmt
    r = load_radiograph(path)
    np.testing.assert_array_equal(r.image, a)
    np.testing.assert_allclose(r.pixel_spacing, (0.15, 0.25), rtol=1e-6)
    assert r.spacing_source == "header"
    assert image_size(path) == (7, 5)


def test_itk_unit_spacing_is_unknown_and_3d_fails(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(_ramp16()), str(tmp_path / "u.mha"))
    r = read_itk(tmp_path / "u.mha")
    assert r.pixel_spacing is None and r.spacing_source is None
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8)), str(tmp_path / "v.nrrd"))
    with pytest.raises(InputError, match="3-D image"):
        load_radiograph(tmp_path / "v.nrrd")


def test_image_size_of_a_decompression_bomb_is_one_line(tmp_path):
    """``image_size`` reads the header only, but PIL refuses to open one that claims over twice its pixel limit."""
    from test_bad_inputs import big_png

    assert image_size(big_png(tmp_path / "a.png", 13000, 13000)) == (13000, 13000)
    with pytest.raises(InputError, match=r"b\.png: PNG image declares over twice PIL's limit") as info:
        image_size(big_png(tmp_path / "b.png", 20000, 20000))
    assert "\n" not in str(info.value)
