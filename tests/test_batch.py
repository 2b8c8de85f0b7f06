"""Batch machinery on synthetic studies with a ground-truth predictor double, bad files mixed in."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
pytest.importorskip("highdicom")

from lumbar_monai.batch import discover_inputs, output_name, run_batch  # noqa: E402
from lumbar_monai.io.annotations import read_annotation_json  # noqa: E402
from lumbar_monai.io.report import read_sr_landmarks  # noqa: E402
from lumbar_monai.io.result_json import read_result_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

N = 4


class GroundTruthPredictor:
    """Test double: returns the synthetic study's ground truth (found by the image file's stem), confidence 1."""

    def __init__(self, root: Path, fail_on: str | None = None):
        self.root = root
        self.fail_on = fail_on
        self.calls = 0

    def predict(self, radiograph):
        self.calls += 1
        stem = Path(radiograph.path).stem
        if stem == self.fail_on:
            raise RuntimeError("model exploded")
        ann = read_annotation_json(self.root / "annotations" / f"{stem}.json")
        return H.result_from_points(ann.points, ann.layout, radiograph.pixel_spacing, radiograph.spacing_source,
                                    radiograph.size_wh)


@pytest.fixture(scope="module")
def study_set(tmp_path_factory):
    from lumbar_monai.synthetic.config import SyntheticConfig
    from lumbar_monai.synthetic.study import write_study_set

    root = tmp_path_factory.mktemp("set")
    write_study_set(root, N, seed=3, config=SyntheticConfig(max_side=192), formats=("png", "json", "dicom"),
                    progress=False)
    return root


@pytest.fixture()
def inputs_with_bad_files(study_set, tmp_path):
    """A copy of the images and DICOM files with bad files mixed in; returns (folder, names of the bad files)."""
    folder = tmp_path / "in"
    shutil.copytree(study_set / "images", folder / "images")
    shutil.copytree(study_set / "dicom", folder / "dicom")
    good = (folder / "dicom" / "case_0000.dcm").read_bytes()
    (folder / "dicom" / "truncated.dcm").write_bytes(good[: len(good) // 3])
    (folder / "images" / "empty.png").write_bytes(b"")
    (folder / "images" / "text.png").write_text("this is not a picture\n")
    (folder / "images" / "notes.json").write_text("{}")  # not an image by name: skipped, not failed
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.png").write_bytes(b"")  # hidden folders are not walked
    return folder, {"truncated.dcm", "empty.png", "text.png"}


def test_batch_outputs_measurements_and_failures(study_set, inputs_with_bad_files, tmp_path, caplog):
    folder, bad = inputs_with_bad_files
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        s = run_batch([folder, tmp_path / "missing.dcm"], out, GroundTruthPredictor(study_set), progress=False)
    assert (s.ok, s.failed, s.exit_code) == (2 * N, len(bad) + 1, 0)
    assert [Path(p).name for p in s.skipped] == ["notes.json"]
    # one line per failure, naming the file and the reason
    lines = s.failures_txt.read_text().splitlines()
    assert len(lines) == len(bad) + 1
    assert {Path(ln.split(": ", 1)[0]).name for ln in lines} == bad | {"missing.dcm"}
    assert all(len(ln.split(": ", 1)[1]) > 3 for ln in lines)
    # outputs: DICOM -> json, overlay, SR, GSPS named by SOP Instance UID; PNG -> json, overlay named by hash
    names = {p.name for p in out.iterdir()}
    for i in range(N):
        uid = str(pydicom.dcmread(study_set / "dicom" / f"case_{i:04d}.dcm", stop_before_pixels=True).SOPInstanceUID)
        assert {f"{uid}.json", f"{uid}_overlay.png", f"{uid}_sr.dcm", f"{uid}_pr.dcm"} <= names
    hashed = {n for n in names if n.startswith("sha256-")}
    assert len(hashed) == 2 * N and not any(n.endswith(".dcm") for n in hashed)
    assert not any("case" in n.lower() or n.startswith(".") for n in names)  # no input names, no temporaries
    # the measurements agree with the generator's own (independent) angles
    rows = list(csv.DictReader(s.measurements_csv.open()))
    assert len(rows) == 2 * N
    by_uid = {r["name"]: r for r in rows}
    for i in range(N):
        ann = read_annotation_json(study_set / "annotations" / f"case_{i:04d}.json")
        ds = pydicom.dcmread(study_set / "dicom" / f"case_{i:04d}.dcm", stop_before_pixels=True)
        row = by_uid[str(ds.SOPInstanceUID)]
        assert float(row["lumbar_lordosis"]) == pytest.approx(ann.meta["lordosis_deg"], abs=1e-3)
        # the generator reports the slope in the patient's frame; the image is rotated by rotation_deg
        assert float(row["sacral_slope"]) == pytest.approx(ann.meta["sacral_slope_deg"] - ann.meta["rotation_deg"],
                                                           abs=1e-3)
        assert row["spacing_source"] in ("PixelSpacing", "ImagerPixelSpacing") and row["length_unit"] == "mm"
        # SR (read back once: slow) and JSON hold the ground truth
        uid = str(ds.SOPInstanceUID)
        if i == 0:
            pts, _ = read_sr_landmarks(out / f"{uid}_sr.dcm")
            np.testing.assert_allclose(pts, ann.points, atol=1e-3)
        res, doc = read_result_json(out / f"{uid}.json")
        np.testing.assert_allclose(res.points, ann.points, atol=0)
        assert doc["source"]["sop_instance_uid"] == uid and doc["measurements"]["length_unit"] == "mm"
        # nothing identifying in logs or reports
        for text in (caplog.text, s.failures_txt.read_text(), s.measurements_csv.read_text()):
            assert str(ds.PatientName) not in text and str(ds.PatientID) not in text


def test_every_file_failing_gives_a_nonzero_exit(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 20)
    s = run_batch(tmp_path, tmp_path / "out", GroundTruthPredictor(tmp_path), progress=False)
    assert (s.ok, s.failed, s.exit_code) == (0, 2, 1)
    assert s.measurements_csv.read_text() == "\n"
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert run_batch(empty, tmp_path / "out2", GroundTruthPredictor(tmp_path), progress=False).exit_code == 2


def test_predictor_error_leaves_no_partial_outputs(study_set, tmp_path):
    pred = GroundTruthPredictor(study_set, fail_on="case_0001")
    s = run_batch(study_set / "dicom", tmp_path / "out", pred, progress=False)
    assert (s.ok, s.failed, s.exit_code) == (N - 1, 1, 0)
    assert s.failures_txt.read_text().strip().endswith("case_0001.dcm: RuntimeError: model exploded")
    uid = str(pydicom.dcmread(study_set / "dicom" / "case_0001.dcm", stop_before_pixels=True).SOPInstanceUID)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(uid)]


def test_dicomdir_and_secondary_capture(study_set, tmp_path):
    from pydicom.fileset import FileSet

    fs = FileSet()
    for i in range(2):
        fs.add(pydicom.dcmread(study_set / "dicom" / f"case_{i:04d}.dcm"))
    media = tmp_path / "media"
    fs.write(media)
    files, skipped, errors = discover_inputs([media / "DICOMDIR"])
    assert len(files) == 2 and not skipped and not errors

    class ByUID(GroundTruthPredictor):  # files in a DICOM file-set are renamed: find the case by its UID
        def predict(self, radiograph):
            uid = radiograph.meta["sop_instance_uid"]
            for i in range(N):
                p = study_set / "dicom" / f"case_{i:04d}.dcm"
                if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) == uid:
                    radiograph.path = str(p)
            return super().predict(radiograph)

    s = run_batch([media / "DICOMDIR"], tmp_path / "out", ByUID(study_set), secondary_capture=True, progress=False)
    assert (s.ok, s.failed) == (2, 0)
    sc = sorted((tmp_path / "out").glob("*_sc.dcm"))
    assert len(sc) == 2
    assert pydicom.dcmread(sc[0]).PhotometricInterpretation == "RGB"


def test_the_same_image_twice_keeps_both_results(study_set, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(study_set / "images" / "case_0002.png", folder / "case_0002.png")
    s = run_batch([folder / "case_0002.png", folder / "case_0002.png", folder], tmp_path / "out",
                  GroundTruthPredictor(study_set), progress=False)
    assert s.ok == 1  # the same path given three ways is read once
    shutil.copy(study_set / "images" / "case_0002.png", folder / "copy.png")
    (folder / "copy.png").rename(folder / "case_0002_copy.png")
    shutil.copy(study_set / "annotations" / "case_0002.json", study_set / "annotations" / "case_0002_copy.json")
    try:
        s = run_batch(folder, tmp_path / "out2", GroundTruthPredictor(study_set), progress=False)
    finally:
        (study_set / "annotations" / "case_0002_copy.json").unlink()
    assert sorted(i.name for i in s.items) == sorted([s.items[0].name, s.items[0].name + "-2"])


def test_output_name_rules():
    assert output_name({"sop_instance_uid": "1.2.840.10008.1"}, "ab" * 32) == "1.2.840.10008.1"
    assert output_name({"sop_instance_uid": "../../etc/passwd"}, "ab" * 32) == "sha256-" + "ab" * 8
    assert output_name({}, "0123456789abcdef" * 4) == "sha256-0123456789abcdef"
    assert json.dumps(output_name({"sop_instance_uid": None}, "f" * 64)) == '"sha256-ffffffffffffffff"'


def test_dicom_without_highdicom_still_gets_json_and_overlay(study_set, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "highdicom" else real(name, *a))
    s = run_batch(study_set / "dicom" / "case_0000.dcm", tmp_path / "out", GroundTruthPredictor(study_set),
                  progress=False)
    assert (s.ok, s.exit_code) == (1, 0)
    assert "highdicom is not installed" in s.items[0].note
    assert sorted(Path(p).suffix for p in s.items[0].outputs) == [".json", ".png"]


def test_a_stated_facing_reaches_the_predictor(study_set, tmp_path):
    """``predict --facing left|right`` hands the stated facing to every image; ``auto`` leaves the predictor's own
    default (and predictors without a facing argument keep working)."""
    from lumbar_monai.cli import main

    class Recording(GroundTruthPredictor):
        def __init__(self, root):
            super().__init__(root)
            self.facings = []

        def predict(self, radiograph, facing="auto"):
            self.facings.append(facing)
            return super().predict(radiograph)

    pred = Recording(study_set)
    run_batch(study_set / "images", tmp_path / "right", pred, progress=False, facing="right")
    assert pred.facings == ["right"] * N
    plain = GroundTruthPredictor(study_set)  # predict(radiograph) only
    assert run_batch(study_set / "images", tmp_path / "auto", plain, progress=False).ok == N
    with pytest.raises(SystemExit):
        main(["predict", str(study_set / "images"), "--out", str(tmp_path / "x"), "--facing", "up"])
