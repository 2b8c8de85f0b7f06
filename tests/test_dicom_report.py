"""DICOM SR of landmarks and measurements: content, read-back with highdicom, dcmtk dsrdump and dicom3tools dciodvfy.

dciodvfy warnings accepted (documented): ``Unrecognized defined term <99LUMBARMONAI>`` - our private coding scheme
(PS3.16 allows "99"-prefixed private schemes; dciodvfy only knows the standard designators), and, for the legacy CR
source without file meta, warnings about the empty Patient ID / Study Date / Study Time / Study ID and the
single-component Patient's Name that the SR copies from that source as it is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
hd = pytest.importorskip("highdicom")

from lumbar_monai.anatomy import LATERAL  # noqa: E402
from lumbar_monai.io.report import (  # noqa: E402
    PRIVATE_SCHEME,
    build_sr,
    evidence_uids,
    read_sr_landmarks,
    read_sr_measurements,
    sr_quantity_lookup,
    write_sr,
)
from lumbar_monai.measures import compute_measurements  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

#: dciodvfy warnings we accept, see the module docstring.
ACCEPTED_WARNINGS = (
    f"Unrecognized defined term <{PRIVATE_SCHEME}>",
    "Missing attribute or value that would be needed to build DICOMDIR",
    "Retired Person Name form",
)


def dciodvfy_problems(path) -> list[str]:
    """Error and warning lines of dciodvfy that are not in :data:`ACCEPTED_WARNINGS`."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) not installed: apt-get install dicom3tools")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith(("Error", "Warning")) and not any(a in ln for a in ACCEPTED_WARNINGS)]


def dsrdump(path) -> subprocess.CompletedProcess:
    """dcmtk's dsrdump in its default (strict) mode."""
    exe = shutil.which("dsrdump")
    if exe is None:
        pytest.skip("dsrdump (dcmtk) not installed: apt-get install dcmtk")
    return subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)


def dsrdump_problems(out: subprocess.CompletedProcess) -> list[str]:
    """dcmtk's warning / error / fatal lines (``W:``, ``E:``, ``F:``), plus a line for a non-zero exit status."""
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith(("W:", "E:", "F:"))]
    return lines + ([f"exit status {out.returncode}"] if out.returncode else [])


@pytest.fixture(scope="module")
def dx_study(tmp_path_factory):
    """A synthetic lateral DX (MONOCHROME2, PixelSpacing 0.25 mm) with its ground truth as a LandmarkResult."""
    tmp = tmp_path_factory.mktemp("dx")
    pts = H.lateral_study_points(256, 320)
    path = H.write_dx(tmp / "dx.dcm", H.render_spine_image(pts, size_wh=(256, 320)), spacing=(0.25, 0.25))
    ds = pydicom.dcmread(path)
    res = H.result_from_points(pts, spacing=(0.25, 0.25), source="PixelSpacing", size=(256, 320))
    ms = compute_measurements(pts, LATERAL, res.pixel_spacing, res.spacing_source)
    return path, ds, res, ms


@pytest.fixture(scope="module")
def sr_file(dx_study, tmp_path_factory):
    """The SR of :func:`dx_study`, written once for the module."""
    _, ds, res, ms = dx_study
    return write_sr(tmp_path_factory.mktemp("sr") / "sr.dcm", ds, res, ms)


def test_sr_round_trip_points_sites_and_references(dx_study, sr_file):
    path, ds, res, ms = dx_study
    sr_path = sr_file
    pts, info = read_sr_landmarks(sr_path)
    np.testing.assert_allclose(pts, res.points, atol=1e-3)
    np.testing.assert_allclose(info["confidence"], 1.0)
    assert info["referenced_sop_instance_uids"] == [ds.SOPInstanceUID]
    # SNOMED CT finding sites: L1 (from pydicom's dictionary) ... S1 (65985001)
    sites = dict(zip(LATERAL.point_names, info["finding_sites"], strict=True))
    assert sites["L1_superior_anterior"] == "66794005" and sites["L5_inferior_posterior"] == "49668003"
    assert sites["S1_anterior"] == "65985001"
    sr = pydicom.dcmread(sr_path)
    assert evidence_uids(sr) == [ds.SOPInstanceUID]
    assert sr.Modality == "SR" and sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage


def test_sr_copies_patient_and_study_with_new_uids(dx_study, sr_file):
    _, ds, res, ms = dx_study
    sr = pydicom.dcmread(sr_file)
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "AccessionNumber"):
        assert sr[key].value == ds[key].value, key
    assert sr.SeriesInstanceUID != ds.SeriesInstanceUID and sr.SOPInstanceUID != ds.SOPInstanceUID
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME


def test_sr_measurements_with_ucum_units(dx_study, sr_file):
    _, ds, res, ms = dx_study
    m = read_sr_measurements(sr_file)
    q = {v: k for k, v in sr_quantity_lookup().items()}
    assert m[("spine measurements", q["lumbar_lordosis"])] == (pytest.approx(ms.value("lumbar_lordosis")), "deg")
    assert m[("spine measurements", q["sacral_slope"])][1] == "deg"
    assert m[("L3 measurements", q["anterior_height"])] == (pytest.approx(ms.value("L3.anterior_height")), "mm")
    assert m[("L5-S1 measurements", q["slip_percent"])] == (pytest.approx(ms.value("L5-S1.slip_percent")), "%")
    assert m[("L2 measurements", q["wedge_ratio"])][1] == "1"
    assert m[("L2 measurements", q["genant_grade"])][1] == "{grade}"
    finite = sum(np.isfinite(x.value) for x in ms)
    assert len(m) == finite  # every finite measurement is in the SR, once


def test_sr_lengths_in_pixels_without_spacing(dx_study):
    _, ds, res, _ = dx_study
    ms = compute_measurements(res.points, LATERAL)
    m = read_sr_measurements(build_sr(ds, res, ms))
    q = {v: k for k, v in sr_quantity_lookup().items()}
    assert m[("L3 measurements", q["anterior_height"])][1] == "{px}"


def test_sr_names_the_algorithm(sr_file):
    sr = pydicom.dcmread(sr_file)
    texts = set()

    def walk(items):
        for it in items:
            if "TextValue" in it:
                texts.add((it.ConceptNameCodeSequence[0].CodeMeaning, it.TextValue))
            walk(it.get("ContentSequence", []))

    walk(sr.ContentSequence)
    assert ("Algorithm Name", "lumbar-monai") in texts
    assert ("Device Observer Name", "lumbar-monai") in texts
    assert any(k == "Algorithm Version" and v for k, v in texts)


def test_sr_passes_dsrdump_and_dciodvfy(sr_file):
    sr_path = sr_file
    out = dsrdump(sr_path)
    assert dsrdump_problems(out) == []
    assert 'Tracking Identifier")="L1_superior_anterior"' in out.stdout
    assert '(66794005,SCT,"L1 vertebra")' in out.stdout
    assert "(POINT," in out.stdout
    assert dciodvfy_problems(sr_path) == []


def test_the_validators_catch_a_broken_sr(sr_file, tmp_path):
    """The checks above can fail: an invalid relationship type is reported by both tools."""
    ds = pydicom.dcmread(sr_file)
    ds.ContentSequence[0].RelationshipType = "BOGUS"
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    assert any(ln.startswith("E:") for ln in dsrdump_problems(dsrdump(bad)))
    assert any("BOGUS" in ln for ln in dciodvfy_problems(bad))
    ds.CompletionFlag = "MAYBE"
    ds.save_as(bad)
    assert any(ln.startswith("Error") and "Completion Flag" in ln for ln in dciodvfy_problems(bad))


@pytest.mark.parametrize("photometric, spacing_attr", [("MONOCHROME1", "ImagerPixelSpacing"),
                                                       ("MONOCHROME2", "PixelSpacing")])
def test_synthetic_dx_variants_are_valid(tmp_path, photometric, spacing_attr):
    pts = H.lateral_study_points(96, 128)
    path = H.write_dx(tmp_path / "dx.dcm", H.render_spine_image(pts, size_wh=(96, 128)), spacing=(0.3, 0.3),
                      photometric=photometric, spacing_attr=spacing_attr)
    assert dciodvfy_problems(path) == []  # the test input itself is a valid DX
    ds = pydicom.dcmread(path)
    res = H.result_from_points(pts, spacing=(0.3, 0.3), source=spacing_attr, size=(96, 128))
    sr_path = write_sr(tmp_path / "sr.dcm", ds, res, compute_measurements(pts, LATERAL, (0.3, 0.3), spacing_attr))
    assert dciodvfy_problems(sr_path) == []
    np.testing.assert_allclose(read_sr_landmarks(sr_path)[0], pts, atol=1e-3)


@pytest.mark.parametrize("key", sorted(H.REAL_DICOM))
def test_sr_on_real_files(tmp_path, key):
    f = H.SHARED / "dicom" / H.REAL_DICOM[key]
    if not f.exists():
        pytest.skip(f"real test file {f} not found")
    ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)
    had_pid = "PatientID" in ds
    w, h = int(ds.Columns), int(ds.Rows)
    pts = H.lateral_study_points(w, h)
    res = H.result_from_points(pts, size=(w, h))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom: single-component patient name of the legacy file
        sr_path = write_sr(tmp_path / "sr.dcm", ds, res, compute_measurements(pts, LATERAL))
    assert ("PatientID" in ds) == had_pid  # the source dataset is not modified
    back, info = read_sr_landmarks(sr_path)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    assert info["referenced_sop_instance_uids"] == [ds.SOPInstanceUID]
    assert dsrdump_problems(dsrdump(sr_path)) == []
    assert dciodvfy_problems(sr_path) == []


def test_sr_needs_a_referenceable_source():
    from pydicom.dataset import Dataset

    res = H.result_from_points(H.lateral_study_points())
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        build_sr(Dataset(), res)


def test_read_sr_reports_missing_landmarks(sr_file):
    with pytest.raises(ValueError, match="lacks landmarks"):
        read_sr_landmarks(sr_file, layout="ap")


def test_sr_and_measurements_of_an_ap_layout(tmp_path):
    from lumbar_monai.anatomy import AP

    pts = H.spine_points("ap", tilts={("L1", "superior"): 10.0, ("L4", "inferior"): -6.0}, facing="right",
                         origin=(60.0, 20.0), width=30.0, height=20.0, disc=6.0)
    path = H.write_dx(tmp_path / "ap.dcm", np.full((160, 120), 1000, np.uint16), spacing=(0.5, 0.5))
    ds = pydicom.dcmread(path)
    res = H.result_from_points(pts, "ap", (0.5, 0.5), "PixelSpacing", (120, 160))
    res.meta["shape_prior"] = {"outliers": ["L3_superior_left"], "max_residual_heights": 0.7}  # one corner placed
    ms = compute_measurements(pts, AP, (0.5, 0.5), "PixelSpacing")
    sr_path = write_sr(tmp_path / "sr.dcm", ds, res, ms)
    back, info = read_sr_landmarks(sr_path, layout="ap")
    np.testing.assert_allclose(back, pts, atol=1e-3)
    assert info["shape_prior_replaced"] == ["L3_superior_left"]
    m = read_sr_measurements(sr_path)
    q = {v: k for k, v in sr_quantity_lookup().items()}
    assert m[("spine measurements", q["max_cobb_angle"])] == (pytest.approx(16.0), "deg")
    assert m[("L3 measurements", q["right_height"])] == (pytest.approx(10.0), "mm")
    assert dciodvfy_problems(sr_path) == []
