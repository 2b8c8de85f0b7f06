"""``lumbar-monai predict`` end to end on a tiny predictor: good and bad files mixed, exit codes, no patient data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highdicom")

from lumbar_monai.synthetic import SyntheticConfig, write_study_set  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    write_study_set(tmp / "studies", 2, seed=3, config=SyntheticConfig(max_side=256), progress=False)
    model = H.tiny_untrained_model(tmp / "model.pt")
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "not_an_image.dcm").write_bytes(b"\0" * 300)
    return tmp, model


def _predict(*args):
    return subprocess.run([sys.executable, "-m", "lumbar_monai", "predict", "--no-progress", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_predict_folder_with_a_bad_file(setup):
    tmp, model = setup
    out = tmp / "out"
    proc = _predict(tmp / "studies" / "dicom", tmp / "bad", "--out", out, "--model", model)
    assert proc.returncode == 0, proc.stderr
    docs = sorted(out.glob("*.json"))
    assert len(docs) == 2 and len(list(out.glob("*_sr.dcm"))) == 2 and len(list(out.glob("*_pr.dcm"))) == 2
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and "not_an_image.dcm" in failures[0]
    assert "SYNTHETIC" not in proc.stdout + proc.stderr  # synthetic patient names never reach the log
    assert all("SYNTHETIC" not in p.name for p in out.iterdir())
    doc = json.loads(docs[0].read_text())["result"]
    assert np.isfinite([lm["x"] for lm in doc["landmarks"]]).all()


def test_predict_exit_codes(setup, tmp_path):
    tmp, model = setup
    assert _predict(tmp / "bad", "--out", tmp_path / "o1", "--model", model).returncode == 1  # every file failed
    proc = _predict(tmp / "bad", "--out", tmp_path / "o2", "--model", tmp_path / "missing.pt")
    assert proc.returncode == 2 and "checkpoint file not found" in proc.stderr


@pytest.fixture(scope="module")
def real_run(setup, shared_dir, tmp_path_factory):
    """One ``predict`` over the real CR/DX files (MONOCHROME1, no file meta, JPEG lossless, JPEG 2000), files with
    marker names in every person-name field and the bad-input corpus: (process, out folder, real files, names)."""
    import pydicom

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_bad_inputs import build_corpus
    from test_outputs_privacy import MARKER, _marked_dx

    _, model = setup
    tmp = tmp_path_factory.mktemp("real_run")
    (tmp / "bad").mkdir()
    (tmp / "marked").mkdir()
    build_corpus(tmp / "bad")
    _marked_dx(tmp / "marked" / "caret.dcm", caret=True)
    _marked_dx(tmp / "marked" / "single.dcm", caret=False, seed=1)
    real = sorted((shared_dir / "dicom").glob("*.dcm"))
    names = {MARKER}
    for f in real:  # the real files' own patient names ("Anonymized", "Dog^AVeryGood", ...)
        pn = str(pydicom.dcmread(f, force=True, stop_before_pixels=True).get("PatientName", "") or "")
        names |= {x for x in pn.replace("^", " ").split() if len(x) >= 4}
    out = tmp / "out"
    proc = _predict(shared_dir / "dicom", tmp / "marked", tmp / "bad", "--out", out, "--model", model)
    return proc, out, real, names, tmp / "bad"


def test_predict_over_real_bad_and_marked_files_prints_no_traceback_and_no_name(real_run):
    proc, out, _, names, bad = real_run
    assert proc.returncode == 0, proc.stderr
    console = proc.stdout + proc.stderr
    assert "Traceback" not in console
    failed = (out / "failures.txt").read_text().splitlines()
    assert failed and all(line.startswith(str(bad)) for line in failed)  # every real and marked file succeeded
    text = console + (out / "failures.txt").read_text() + (out / "measurements.csv").read_text()
    text += "".join(p.read_text() for p in out.glob("*.json")) + " ".join(p.name for p in out.iterdir())
    assert not [n for n in names if n.lower() in text.lower()]


def test_predict_on_the_real_dicom_fixtures_writes_valid_dicom(real_run):
    """An SR and a presentation state per real (and marked) file that dcmtk and dicom3tools accept. (A tiny
    untrained model: the points are meaningless, the files must be valid all the same.)"""
    from test_dicom_report import dciodvfy_problems, dsrdump, dsrdump_problems

    proc, out, real, _, _ = real_run
    assert proc.returncode == 0, proc.stderr
    srs, prs = sorted(out.glob("*_sr.dcm")), sorted(out.glob("*_pr.dcm"))
    assert len(srs) == len(prs) == len(real) + 2
    for sr in srs:
        assert dsrdump_problems(dsrdump(sr)) == [], sr.name
        assert dciodvfy_problems(sr) == [], sr.name
    for pr in prs:
        assert dciodvfy_problems(pr) == [], pr.name


def test_a_device_that_is_not_there_is_one_line_before_anything_loads(setup, tmp_path, capsys):
    """``--device cuda`` on a machine without CUDA (or a name torch does not know) used to end in a traceback when the
    first network moved there; now the command refuses it first (lumbar_monai.devices.resolve_device)."""
    import torch

    from lumbar_monai.cli import main

    tmp, model = setup
    for device in ["tpu:7", *([] if torch.cuda.is_available() else ["cuda"])]:
        code = main(["predict", str(tmp / "studies" / "dicom"), "--out", str(tmp_path / device), "--model",
                     str(model), "--device", device, "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("lumbar-monai predict: ") and device in err[0]
        assert not (tmp_path / device / "measurements.csv").exists()
