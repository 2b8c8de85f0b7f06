"""The MONAI Label label image and Slicer markups lie on the radiograph in physical space (issue 17).

3D Slicer (through ITK) places a label image by its origin, spacing and direction. The label used to be written
with its own axes (a NIfTI ``diag(sx, sy, 1)`` affine, i.e. L and P flipped against what ITK reads from the
radiograph), so in Slicer the proposal appeared mirrored, off the image. Here the input is read with SimpleITK as
Slicer does, the label is resampled onto it in physical space (nearest neighbour) and must land on the right
pixels; the markups' LPS positions must map back to the landmarks' pixels. PNG and DICOM inputs (a DX with a
position, an oblique orientation and anisotropic spacing, and the project's real DX sample read in place).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _monailabel_helpers import check_markups, label_hits, write_oblique_dx
from _paths import SHARED

from lumbar_monai.errors import InputError
from lumbar_monai.io.nifti import read_label_map_points
from lumbar_monai.monailabel_support import (
    ImageGeometry,
    RequestError,
    disc_radius,
    image_geometry,
    parse_infer_request,
    slicer_markups,
    write_label_image,
)
from lumbar_monai.result import LandmarkResult

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def study():
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph

    return generate_radiograph(5, SyntheticConfig(max_side=160))


def _result(points, size_wh, spacing=None) -> LandmarkResult:
    from lumbar_monai.anatomy import LATERAL

    n = LATERAL.num_points
    return LandmarkResult(layout=LATERAL, points=np.asarray(points, dtype=np.float64), confidence=np.full(n, 0.9),
                          centres=LATERAL.centres(np.asarray(points)), centre_confidence=np.full(6, 0.9),
                          pixel_spacing=spacing, image_size=tuple(size_wh))


def _png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray((image >> 8).astype(np.uint8)).save(path)
    return path


def test_png_label_and_markups_lie_on_the_image(study, tmp_path):
    png = _png(tmp_path / "case.png", study.image)
    h, w = study.image.shape
    res = _result(study.points, (w, h), study.pixel_spacing)
    geo = image_geometry(png, (w, h))
    assert geo == ImageGeometry((w, h), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0, 0.0, 1.0))
    label = write_label_image(tmp_path / "label.nii.gz", res, geometry=geo)
    frac, n = label_hits(label, png, study.points)
    assert frac >= 0.95 and n > 0, frac
    doc = json.loads(json.dumps(slicer_markups(res, geo)))  # strict JSON, as the infer answer carries it
    check_markups(doc, png, study.points)
    # the label reads back to the landmarks (what a correction saved from Slicer goes through)
    pts, _ = read_label_map_points(label, num_points=res.layout.num_points)
    assert np.nanmax(np.hypot(*(pts - study.points).T)) < 1.0


def test_the_nifti_writer_label_lands_on_the_png(study, tmp_path):
    """The regression: the core NIfTI writer's label map (once RAS ``diag(sx, sy)``, which landed nowhere on the PNG)
    now has RAS ``diag(-sx, -sy)``, ITK's identity in LPS, and lands on the right pixels."""
    from lumbar_monai.io.nifti import write_label_map_nifti

    png = _png(tmp_path / "case.png", study.image)
    h, w = study.image.shape
    label = write_label_map_nifti(tmp_path / "label.nii.gz", study.points, (h, w), None,
                                  radius=disc_radius((w, h)))
    frac, _ = label_hits(label, png, study.points)
    assert frac == 1.0


def test_dicom_label_and_markups_lie_on_the_image(study, tmp_path):
    dcm = write_oblique_dx(tmp_path / "case.dcm", study.image)
    h, w = study.image.shape
    res = _result(study.points, (w, h), (0.2, 0.3))
    geo = image_geometry(dcm, (w, h))
    assert geo.dimension == 3 and geo.size == (w, h, 1)
    np.testing.assert_allclose(geo.origin, (-12.5, 40.0, 7.25))
    np.testing.assert_allclose(geo.spacing[:2], (0.2, 0.3))
    label = write_label_image(tmp_path / "label.nii.gz", res, geometry=geo)
    frac, _ = label_hits(label, dcm, study.points)
    assert frac >= 0.95, frac
    check_markups(slicer_markups(res, geo), dcm, study.points)


def test_real_dx_sample_in_place(tmp_path):
    dcm = SHARED / "dicom" / "highdicom_dx_image.dcm"
    if not dcm.is_file():
        pytest.skip(f"real DICOM sample not found at {dcm}")
    image = sitk.ReadImage(str(dcm))
    w, h = image.GetWidth(), image.GetHeight()
    rng = np.random.default_rng(0)
    from lumbar_monai.anatomy import LATERAL

    pts = np.column_stack([rng.uniform(5, w - 5, LATERAL.num_points), rng.uniform(5, h - 5, LATERAL.num_points)])
    res = _result(pts, (w, h))
    geo = image_geometry(dcm, (w, h))
    assert geo.spacing[:2] == image.GetSpacing()[:2] and geo.spacing[0] != geo.spacing[1]  # anisotropic
    label = write_label_image(tmp_path / "label.nii.gz", res, geometry=geo)
    frac, _ = label_hits(label, dcm, pts)
    assert frac >= 0.95, frac
    check_markups(slicer_markups(res, geo), dcm, pts)


def test_unreadable_geometry_falls_back_to_pixels_or_names_the_file(tmp_path, caplog):
    bad = tmp_path / "patient_name.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    geo = image_geometry(bad, (30, 20))
    assert geo == ImageGeometry.plain((30, 20))
    assert "patient_name" not in caplog.text  # file names may identify a patient: not logged
    with pytest.raises(InputError, match="patient_name.png: SimpleITK cannot read"):
        image_geometry(bad)
    png = _png(tmp_path / "small.png", np.zeros((20, 30), np.uint16))
    assert image_geometry(png, (31, 20)) == ImageGeometry.plain((31, 20))  # another size: pixel geometry


def test_markups_keep_a_missing_landmark_undefined(study):
    h, w = study.image.shape
    pts = study.points.copy()
    pts[3] = np.nan
    doc = slicer_markups(_result(pts, (w, h)))
    cp = doc["markups"][0]["controlPoints"][3]
    assert cp["positionStatus"] == "undefined" and "position" not in cp
    json.dumps(doc, allow_nan=False)


def test_parse_infer_request():
    assert parse_infer_request({}) == ("cpu", None)
    assert parse_infer_request({"device": ["cuda:01"], "label_radius": "2.5"}) == ("cuda:1", 2.5)
    assert parse_infer_request({"device": "cuda", "label_radius": 0}) == ("cuda", None)
    for bad in ({"device": "cpu'); import os"}, {"device": 3}, {"label_radius": "$1"}, {"label_radius": 1e9},
                {"label_radius": float("nan")}):
        with pytest.raises(RequestError, match="^infer request: '(device|label_radius)'"):
            parse_infer_request(bad)
