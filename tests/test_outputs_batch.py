"""Batch outputs under hostile conditions (issue 14 items 5 and 7): a repeated SOP Instance UID, re-runs into the
same folder, an output folder that cannot be written, a late write failure, temporaries of a killed run, a
DICOMDIR whose references leave its folder, WindowWidth 0. Every input is built here (tiny DX files)."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
pytest.importorskip("highdicom")

from lumbar_monai.batch import discover_inputs, run_batch  # noqa: E402
from lumbar_monai.errors import InputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

W, HT = 64, 80
PTS = H.lateral_study_points(W, HT)


class FixedPredictor:
    """Test double: the same plausible spine for every image, with the image's own spacing."""

    def __init__(self):
        self.calls = 0

    def predict(self, radiograph):
        self.calls += 1
        return H.result_from_points(PTS, "lateral", radiograph.pixel_spacing, radiograph.spacing_source,
                                    radiograph.size_wh)


def _dx(path: Path, seed: int = 0, **attrs) -> Path:
    """A tiny DX file; ``attrs`` set (or, when None, delete) header attributes afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    H.write_dx(path, H.render_spine_image(PTS, size_wh=(W, HT), seed=seed), spacing=(0.2, 0.2))
    if attrs:
        ds = pydicom.dcmread(path)
        for k, v in attrs.items():
            if v is None:
                delattr(ds, k)
            else:
                setattr(ds, k, v)
        if "SOPInstanceUID" in attrs:
            ds.file_meta.MediaStorageSOPInstanceUID = attrs["SOPInstanceUID"]
        ds.save_as(path, enforce_file_format=True)
    return path


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def _files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def test_repeated_sop_instance_uid_keeps_both_output_sets_in_one_run_and_across_runs(tmp_path, caplog):
    uid = pydicom.uid.generate_uid()
    a = _dx(tmp_path / "in" / "a.dcm", seed=1, SOPInstanceUID=uid, PatientName="MARKER^ALPHA")
    b = _dx(tmp_path / "in" / "b.dcm", seed=2, SOPInstanceUID=uid, PatientName="MARKER^BRAVO")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        s = run_batch([a, b], out, FixedPredictor(), progress=False)
    assert (s.ok, s.failed) == (2, 0)
    assert [it.name for it in s.items] == [uid, f"{uid}-2"]
    for name, src in ((uid, a), (f"{uid}-2", b)):
        assert {f"{name}.json", f"{name}_overlay.png", f"{name}_sr.dcm", f"{name}_pr.dcm"} <= _files(out)
        assert json.loads((out / f"{name}.json").read_text())["source"]["sha256"] == _sha(src)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and f"{uid}-2" in warned[0] and "MARKER" not in caplog.text
    assert [r["name"] for r in csv.DictReader((out / "measurements.csv").open())] == [uid, f"{uid}-2"]

    # a third file with the same UID in a later run: neither earlier image's outputs are touched
    before = {n: (out / n).read_bytes() for n in _files(out) if n.startswith(uid)}
    c = _dx(tmp_path / "in2" / "c.dcm", seed=3, SOPInstanceUID=uid)
    s2 = run_batch([c], out, FixedPredictor(), progress=False)
    assert s2.items[0].name == f"{uid}-3"
    assert all((out / n).read_bytes() == data for n, data in before.items())
    # a re-run of the first image replaces its own outputs (same name, no new set)
    s3 = run_batch([a], out, FixedPredictor(), progress=False)
    assert s3.items[0].name == uid and s3.items[0].renamed_from is None
    assert not any(n.startswith(f"{uid}-4") for n in _files(out))
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert sorted(r["name"] for r in rows) == sorted([uid, f"{uid}-2", f"{uid}-3"])  # merged, not replaced


def test_reruns_merge_the_run_summaries(tmp_path):
    good = _dx(tmp_path / "in" / "good.dcm")
    bad = tmp_path / "in" / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 40)
    other = _dx(tmp_path / "in2" / "other.dcm", seed=5)
    out = tmp_path / "out"
    run_batch([good, bad], out, FixedPredictor(), progress=False)
    assert (out / "failures.txt").read_text().startswith(f"{bad}: ")
    run_batch([other], out, FixedPredictor(), progress=False)
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert len(rows) == 2  # the first run's row is still there
    assert (out / "failures.txt").read_text().startswith(f"{bad}: ")  # and so is its failure
    _dx(bad)  # the bad file repaired: its failure line goes, its row comes
    run_batch([bad], out, FixedPredictor(), progress=False)
    assert (out / "failures.txt").read_text() == ""
    assert len(list(csv.DictReader((out / "measurements.csv").open()))) == 3
    # a measurements.csv that is not ours is never overwritten: the run stops before reading any image
    (out / "measurements.csv").write_text("a,b\n1,2\n")
    pred = FixedPredictor()
    with pytest.raises(InputError, match="no 'name' column"):
        run_batch([good], out, pred, progress=False)
    assert pred.calls == 0 and (out / "measurements.csv").read_text() == "a,b\n1,2\n"


def test_output_folder_that_cannot_be_written_fails_before_any_image(tmp_path, capsys):
    good = _dx(tmp_path / "good.dcm")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    pred = FixedPredictor()
    for out, words in ((blocker, "not a folder"), (blocker / "sub", "not writable")):
        with pytest.raises(InputError, match=words):
            run_batch([good], out, pred, progress=False)
    assert pred.calls == 0
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(InputError, match="not writable"):
                run_batch([good], ro, pred, progress=False)
        finally:
            ro.chmod(0o755)
    # the command: one line on stderr, exit 2, before the model is even looked for
    from lumbar_monai.cli import main

    assert main(["predict", "--no-progress", str(good), "--out", str(blocker / "sub"), "--model",
                 str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not writable" in err and "Traceback" not in err


def test_late_write_failure_leaves_none_of_the_images_outputs(tmp_path, monkeypatch):
    import lumbar_monai.io.report as report

    a, b = _dx(tmp_path / "a.dcm", seed=1), _dx(tmp_path / "b.dcm", seed=2)
    uid_b = str(pydicom.dcmread(b, stop_before_pixels=True).SOPInstanceUID)
    real = report.write_sr

    def flaky(path, source, *args, **kwargs):
        if str(source.SOPInstanceUID) == uid_b:
            raise OSError(28, "No space left on device")
        return real(path, source, *args, **kwargs)

    monkeypatch.setattr(report, "write_sr", flaky)
    out = tmp_path / "out"
    s = run_batch([a, b], out, FixedPredictor(), progress=False)
    assert (s.ok, s.failed) == (1, 1) and "No space left" in s.items[1].reason
    assert not [n for n in _files(out) if n.startswith(uid_b)]  # no orphan JSON/PNG for the failed image
    assert not [n for n in _files(out) if n.startswith(".")]  # no staging folder or temporary left
    assert len(list(csv.DictReader((out / "measurements.csv").open()))) == 1


def test_temporaries_of_a_killed_run_are_swept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale_file = out / f".1.2.3.abc123.lmtmp{dead}.json"
    stale_file.write_text("{")
    stale_dir = out / f".staging.xyz.lmtmp{dead}"
    stale_dir.mkdir()
    (stale_dir / "1.2.3_sr.dcm").write_bytes(b"half")
    live = out / f".1.2.4.def456.lmtmp{os.getpid()}.png"  # a live writer's temporary stays
    live.write_bytes(b"")
    keep = out / ".notes.tmp"  # not a name the writers make
    keep.write_text("mine")
    run_batch([_dx(tmp_path / "a.dcm")], out, FixedPredictor(), progress=False)
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and keep.exists()


def test_dicomdir_references_outside_its_folder_are_not_followed(tmp_path):
    from pydicom.fileset import FileSet

    secret = _dx(tmp_path / "secret.dcm", seed=9)  # a readable image above the DICOMDIR's folder
    (tmp_path / "outside.dcm").symlink_to(secret)
    fs = FileSet()
    for i in range(4):
        fs.add(pydicom.dcmread(_dx(tmp_path / f"src{i}.dcm", seed=i)))
    media = tmp_path / "media"
    fs.write(media)
    dicomdir = pydicom.dcmread(media / "DICOMDIR")
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    (media / "link.dcm").symlink_to(secret)  # inside by name, outside once resolved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom: these are not valid CS values (that is the point)
        images[1].ReferencedFileID = ["..", "secret.dcm"]
        images[2].ReferencedFileID = [str(secret)]
        images[3].ReferencedFileID = ["link.dcm"]
        dicomdir.save_as(media / "DICOMDIR")

    files, _, errors = discover_inputs([media / "DICOMDIR"])
    assert len(files) == 1 and all(f.resolve().is_relative_to(media.resolve()) for f in files)
    assert len(errors) == 3 and all("leaves the DICOMDIR's folder" in e for _, e in errors)
    assert not any("secret" in e for _, e in errors)
    s = run_batch([media / "DICOMDIR"], tmp_path / "out", FixedPredictor(), progress=False)
    assert (s.ok, s.failed) == (1, 3)
    secret_uid = str(pydicom.dcmread(secret, stop_before_pixels=True).SOPInstanceUID)
    assert not any(n.startswith(secret_uid) for n in _files(tmp_path / "out"))


def test_window_width_zero(tmp_path):
    from lumbar_monai.io.dicom import read_dicom

    p = _dx(tmp_path / "ww0.dcm", WindowWidth="0")
    with pytest.raises(InputError, match=r"WindowWidth must be > 0"):
        read_dicom(p, voi=True)
    assert "window" not in read_dicom(p).meta
    # the batch reads without VOI: the image succeeds, its presentation state takes a window from the pixels
    s = run_batch([p], tmp_path / "out", FixedPredictor(), progress=False)
    assert s.ok == 1, s.items[0].reason
    gsps = pydicom.dcmread(tmp_path / "out" / f"{s.items[0].name}_pr.dcm")
    voi = gsps.SoftcopyVOILUTSequence[0]
    assert float(voi.WindowWidth) > 0 and np.isfinite(float(voi.WindowCenter))


def test_interrupted_run_keeps_the_rows_of_the_images_done(tmp_path):
    a, b = _dx(tmp_path / "a.dcm", seed=1), _dx(tmp_path / "b.dcm", seed=2)

    class Interrupted(FixedPredictor):
        def predict(self, radiograph):
            if self.calls == 1:
                raise KeyboardInterrupt
            return super().predict(radiograph)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch([a, b], out, Interrupted(), progress=False)
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert len(rows) == 1 and (out / f"{rows[0]['name']}.json").exists()
    assert not [n for n in _files(out) if n.startswith(".")]
