"""Presentation state (GSPS) and secondary-capture overlay: content, dciodvfy, and rendering the GSPS back.

dciodvfy warnings accepted: as in ``test_dicom_report.py`` (only those the legacy CR source passes on).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
hd = pytest.importorskip("highdicom")

from lumbar_monai.anatomy import LATERAL  # noqa: E402
from lumbar_monai.io.gsps import (  # noqa: E402
    LAYERS,
    annotations_from_presentation_state,
    build_gsps,
    build_sc_overlay,
    display_image,
    main,
    render_presentation_state,
    write_gsps,
)
from lumbar_monai.measures import compute_measurements  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402
from test_dicom_report import dciodvfy_problems  # noqa: E402


@pytest.fixture(scope="module")
def mono1_study(tmp_path_factory):
    """A synthetic lateral DX stored MONOCHROME1 (bone = low stored values) with its ground truth."""
    tmp = tmp_path_factory.mktemp("dx1")
    pts = H.lateral_study_points(128, 160)
    path = H.write_dx(tmp / "dx.dcm", H.render_spine_image(pts, size_wh=(128, 160)), spacing=(0.5, 0.5),
                      photometric="MONOCHROME1")
    ds = pydicom.dcmread(path)
    res = H.result_from_points(pts, spacing=(0.5, 0.5), source="PixelSpacing", size=(128, 160))
    return path, ds, res, compute_measurements(pts, LATERAL, (0.5, 0.5), "PixelSpacing")


def test_gsps_content_and_point_round_trip(mono1_study, tmp_path):
    _, ds, res, ms = mono1_study
    path = write_gsps(tmp_path / "pr.dcm", ds, res, ms)
    g = pydicom.dcmread(path)
    assert g.Modality == "PR" and g.SOPClassUID == pydicom.uid.GrayscaleSoftcopyPresentationStateStorage
    assert g.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert g.PatientID == ds.PatientID and g.StudyInstanceUID == ds.StudyInstanceUID
    assert g.SeriesInstanceUID != ds.SeriesInstanceUID
    assert [layer.GraphicLayer for layer in g.GraphicLayerSequence] == list(LAYERS)
    assert g.PresentationLUTShape == "INVERSE"  # MONOCHROME1 source: bone stays bright
    # every landmark is a POINT (tracked by its name) and a CIRCLE; every end plate a POLYLINE
    objs = [o for a in g.GraphicAnnotationSequence for o in a.get("GraphicObjectSequence", [])]
    point_objs = [o for o in objs if o.GraphicType == "POINT"]
    assert [o.TrackingID for o in point_objs] == list(LATERAL.point_names)
    assert sum(o.GraphicType == "CIRCLE" for o in objs) == LATERAL.num_points
    assert sum(o.GraphicType == "POLYLINE" for o in objs) == len(LATERAL.end_plate_segments)
    ann = annotations_from_presentation_state(g)
    np.testing.assert_allclose(np.array([p for p, _ in ann.points]), res.points, atol=1e-3)
    texts = [t for _, t, _ in ann.texts]
    assert texts[: LATERAL.num_vertebrae] == list(LATERAL.vertebra_names)
    assert texts[-1] == f"LL {ms.value('lumbar_lordosis'):.1f} deg  SS {ms.value('sacral_slope'):.1f} deg"
    # the display window is the source's own
    voi = g.SoftcopyVOILUTSequence[0]
    assert float(voi.WindowCenter) == pytest.approx(float(ds.WindowCenter))
    assert dciodvfy_problems(path) == []


def test_gsps_leaves_out_graphics_outside_the_image(mono1_study, tmp_path):
    """An (untrained or failed) prediction outside the image must not break the GSPS: its graphics are left out."""
    import copy

    _, ds, res, _ = mono1_study
    bad = copy.deepcopy(res)
    bad.points = bad.points.copy()
    bad.points[0] = (-40.0, 10.0)  # L1 superior anterior, left of the image
    bad.points[21] = (10.0, 10_000.0)  # S1 posterior, below the image
    path = write_gsps(tmp_path / "pr.dcm", ds, bad)
    g = pydicom.dcmread(path)
    objs = [o for a in g.GraphicAnnotationSequence for o in a.get("GraphicObjectSequence", [])]
    names = [o.TrackingID for o in objs if o.GraphicType == "POINT"]
    assert names == [n for n in LATERAL.point_names if n not in ("L1_superior_anterior", "S1_posterior")]
    # the two end plates through the outside points are left out too
    assert sum(o.GraphicType == "POLYLINE" for o in objs) == len(LATERAL.end_plate_segments) - 2
    assert dciodvfy_problems(path) == []


def test_gsps_window_from_pixels_when_source_has_none(mono1_study):
    _, ds, res, _ = mono1_study
    src = pydicom.dcmread(mono1_study[0])
    del src.WindowCenter, src.WindowWidth
    g = build_gsps(src, res)
    lo, hi = np.percentile(src.pixel_array.astype(float), [0.5, 99.5])
    assert float(g.SoftcopyVOILUTSequence[0].WindowCenter) == pytest.approx((lo + hi) / 2)
    assert float(g.SoftcopyVOILUTSequence[0].WindowWidth) == pytest.approx(hi - lo)


def test_rendered_gsps_shows_bone_bright_and_the_graphics(mono1_study):
    _, ds, res, ms = mono1_study
    g = build_gsps(ds, res, ms)
    rgb = render_presentation_state(g, ds)
    assert rgb.shape == (160, 128, 3)
    centre = np.round(LATERAL.centres(res.points)[2]).astype(int)  # L3 body centre
    assert rgb[centre[1], centre[0]].mean() > rgb[5, 64].mean() + 60  # bone brighter than the background
    yellow = np.array([255, 220, 0])  # LANDMARKS layer colour (CIELab 90/-5/85)
    x, y = np.round(res.points[0]).astype(int)
    assert np.abs(rgb[y, x].astype(int) - yellow).max() < 60
    img = display_image(ds)
    assert img.min() >= 0 and img.max() <= 1 and img[centre[1], centre[0]] > 0.5


def test_secondary_capture_overlay(mono1_study, tmp_path):
    _, ds, res, ms = mono1_study
    sc = build_sc_overlay(ds, res, ms)
    assert sc.PhotometricInterpretation == "RGB" and sc.SamplesPerPixel == 3
    assert (sc.Rows, sc.Columns) == (ds.Rows, ds.Columns)
    assert sc.BurnedInAnnotation == "YES" and sc.PatientID == ds.PatientID
    assert list(sc.PatientOrientation) == list(ds.PatientOrientation)
    arr = sc.pixel_array
    x, y = np.round(res.points[5]).astype(int)
    assert np.ptp(arr[y, x].astype(int)) > 40  # a landmark pixel is coloured
    p = tmp_path / "sc.dcm"
    sc.save_as(p, enforce_file_format=True)
    assert dciodvfy_problems(p) == []


@pytest.mark.parametrize("key", sorted(H.REAL_DICOM))
def test_gsps_on_real_files(tmp_path, key):
    f = H.SHARED / "dicom" / H.REAL_DICOM[key]
    if not f.exists():
        pytest.skip(f"real test file {f} not found")
    ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)
    w, h = int(ds.Columns), int(ds.Rows)
    pts = H.lateral_study_points(w, h)
    res = H.result_from_points(pts, size=(w, h))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        path = write_gsps(tmp_path / "pr.dcm", ds, res, compute_measurements(pts, LATERAL))
    g = pydicom.dcmread(path)
    expected = "INVERSE" if ds.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
    assert g.PresentationLUTShape == expected
    np.testing.assert_allclose(np.array([p for p, _ in annotations_from_presentation_state(g).points]), pts,
                               atol=1e-3)
    assert dciodvfy_problems(path) == []


def test_secondary_capture_of_a_legacy_file_without_file_meta(tmp_path):
    f = H.SHARED / "dicom" / H.REAL_DICOM["cr_mono1_legacy"]
    if not f.exists():
        pytest.skip(f"real test file {f} not found")
    ds = pydicom.dcmread(f, force=True)
    pts = H.lateral_study_points(int(ds.Columns), int(ds.Rows))
    res = H.result_from_points(pts, size=(int(ds.Columns), int(ds.Rows)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sc = build_sc_overlay(ds, res)
    assert list(sc.PatientOrientation) == ["P", "F"]  # derived: facing left, upright (the source has none)
    p = tmp_path / "sc.dcm"
    sc.save_as(p, enforce_file_format=True)
    assert dciodvfy_problems(p) == []


def test_render_command_writes_png(mono1_study, tmp_path):
    path, ds, res, ms = mono1_study
    pr = write_gsps(tmp_path / "pr.dcm", ds, res, ms)
    out = tmp_path / "render.png"
    assert main([str(pr), str(path), str(out)]) == 0
    from PIL import Image

    assert np.asarray(Image.open(out)).shape == (160, 128, 3)
