"""NIfTI label-map and heatmap writers, read back with nibabel and SimpleITK."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.errors import InputError
from lumbar_monai.io.nifti import (
    landmark_label_map,
    read_label_map_points,
    write_heatmaps_nifti,
    write_label_map_nifti,
)

pytestmark = pytest.mark.compat


def _points(n: int) -> np.ndarray:
    """``n`` landmarks on a grid 10 px apart, half of them at half-pixel x (disc centroids stay exact)."""
    k = np.arange(n)
    return np.stack([8.0 + 10 * (k % 4) + 0.5 * (k % 2), 6.0 + 10 * (k // 4)], axis=1)


def test_label_map_discs():
    lab = landmark_label_map([[5.0, 4.0], [7.0, 4.0], [np.nan, 1.0]], (10, 12), radius=2.0)
    assert lab.dtype == np.uint16 and lab.shape == (10, 12)
    assert lab[4, 5] == 1 and lab[4, 7] == 2 and lab[4, 4] == 1 and lab[4, 8] == 2
    assert lab[4, 6] == 1  # equidistant pixel: the first landmark keeps it
    assert lab[0, 0] == 0 and lab[4, 10] == 0  # outside both discs
    assert set(np.unique(lab)) == {0, 1, 2}  # the NaN landmark draws nothing
    # disc of radius 2 around (5, 4) has 13 pixels; only (7, 4) is nearer to landmark 2 (ties at x = 6 stay with 1)
    assert (lab == 1).sum() == 12 and (lab == 2).sum() == 13 - 4  # landmark 2 loses (5, 4) and the x = 6 ties


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nii"])
def test_label_map_round_trip(tmp_path, name):
    pts = _points(LATERAL.num_points)
    h, w = 70, 50
    path = write_label_map_nifti(tmp_path / name, pts, (h, w), pixel_spacing=(0.2, 0.3), radius=3.0)
    assert sorted(f.name for f in tmp_path.iterdir()) == [name]  # atomic: no temporary left behind
    back, spacing = read_label_map_points(path, LATERAL.num_points)
    np.testing.assert_allclose(back, pts, atol=1e-9)
    assert spacing == pytest.approx((0.2, 0.3))
    img = nib.load(str(path))
    assert img.shape == (w, h) and img.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(img.affine, np.diag([-0.2, -0.3, 1.0, 1.0]))  # RAS of ITK's LPS identity
    # SimpleITK (as MONAI Label / Slicer read it): (H, W) array equal to the label map, spacing (sx, sy)
    s = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s), landmark_label_map(pts, (h, w), 3.0))
    assert s.GetSpacing() == pytest.approx((0.2, 0.3))


def test_label_map_lands_on_its_radiograph_in_physical_space(tmp_path):
    """Resampled onto the radiograph as SimpleITK reads it (what 3D Slicer does), every label voxel keeps its pixel:
    the label map is neither mirrored nor off the image."""
    from PIL import Image

    pts = _points(LATERAL.num_points)
    h, w = 70, 50
    Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / "radiograph.png")
    radiograph = sitk.ReadImage(str(tmp_path / "radiograph.png"))
    label = sitk.ReadImage(str(write_label_map_nifti(tmp_path / "lab.nii.gz", pts, (h, w), radius=3.0)))
    if label.GetDimension() == 3:
        label = label[:, :, 0]
    on_image = sitk.GetArrayFromImage(sitk.Resample(label, radiograph, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    expected = landmark_label_map(pts, (h, w), 3.0)
    assert (expected > 0).sum() > 100
    assert np.array_equal(on_image, expected)


def test_heatmaps_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    maps = rng.random((3, 5, 7)).astype(np.float32)
    path = write_heatmaps_nifti(tmp_path / "maps.nii.gz", maps, pixel_spacing=(0.5, 0.25))
    img = nib.load(str(path))
    assert img.shape == (7, 5, 1, 3)
    data = np.asarray(img.dataobj)
    np.testing.assert_array_equal(data[:, :, 0, :].transpose(2, 1, 0), maps)
    assert img.header.get_zooms()[:2] == pytest.approx((0.5, 0.25))


def test_bad_label_map_file(tmp_path):
    (tmp_path / "x.nii").write_text("not nifti")
    with pytest.raises(InputError, match="x.nii: not a readable NIfTI"):
        read_label_map_points(tmp_path / "x.nii")
    with pytest.raises(ValueError, match=".nii"):
        write_label_map_nifti(tmp_path / "x.png", [[1.0, 1.0]], (4, 4))


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_label_map_of_any_voxel_type_reads(tmp_path, dtype):
    """Slicer and MONAI Label may save the edited label map as float or another integer type."""
    pts = _points(6)
    labels = landmark_label_map(pts, (50, 60), 3.0).astype(dtype)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labels.T), np.eye(4)), str(tmp_path / "l.nii"))
    back, _ = read_label_map_points(tmp_path / "l.nii", 6)
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_label_map_header_over_the_pixel_limit_is_refused_unread(tmp_path):
    """A 450-byte NIfTI claiming 30000 x 30000 voxels fails from its header, before any voxel is read."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint16)
    hdr.set_data_shape((30000, 30000))
    (tmp_path / "lie.nii").write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 100)
    with pytest.raises(InputError, match=r"lie\.nii: label map declares 30000 x 30000 = 900\.0 megapixels"):
        read_label_map_points(tmp_path / "lie.nii")
