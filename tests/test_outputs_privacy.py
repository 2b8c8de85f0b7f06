"""No patient data on the console, in the logs or in file names (issue 14 item 4).

Marker names go into every person-name field of tiny DX files built here (one with single-component names,
which highdicom warns about, quoting them); ``lumbar-monai -v predict`` runs in a subprocess on them and on a
truncated copy; the markers must appear nowhere but inside the DICOM outputs (an SR or presentation state
carries its patient's name by design).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
pytest.importorskip("highdicom")

from lumbar_monai.batch import run_batch, scrub  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

MARKER = "MARKER"
PN_FIELDS = ("PatientName", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
             "NameOfPhysiciansReadingStudy", "RequestingPhysician", "PatientMotherBirthName")


def _marked_dx(path: Path, caret: bool, seed: int = 0) -> Path:
    pts = H.lateral_study_points(96, 128)
    H.write_dx(path, H.render_spine_image(pts, size_wh=(96, 128), seed=seed), spacing=(0.3, 0.3))
    ds = pydicom.dcmread(path)
    for i, keyword in enumerate(PN_FIELDS):
        setattr(ds, keyword, f"{MARKER}^NAME{i}" if caret else f"{MARKER}NAME{i}")
    ds.PatientID = f"{MARKER}ID"
    ds.InstitutionName = f"{MARKER} HOSPITAL"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("privacy")
    model = H.tiny_untrained_model(tmp / "model.pt")
    inp = tmp / "in"
    inp.mkdir()
    _marked_dx(inp / "caret.dcm", caret=True, seed=1)
    _marked_dx(inp / "single.dcm", caret=False, seed=2)
    full = _marked_dx(tmp / "full.dcm", caret=True, seed=3).read_bytes()
    (inp / "cut.dcm").write_bytes(full[: len(full) - 5000])  # header with the names, pixel data truncated
    return tmp, model


def test_predict_prints_and_names_nothing_identifying(setup):
    tmp, model = setup
    out = tmp / "out"
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai", "-v", "predict", "--no-progress", str(tmp / "in"),
                           "--out", str(out), "--model", str(model)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = proc.stdout + proc.stderr
    assert "2 ok, 1 failed" in console
    assert MARKER.lower() not in console.lower()
    assert "Traceback" not in console
    for p in out.rglob("*"):
        assert MARKER.lower() not in p.name.lower()
        if p.suffix in (".json", ".csv", ".txt"):
            assert MARKER.lower() not in p.read_text().lower(), p.name
    # the DICOM outputs do carry the patient's name (a derived object belongs to its patient)
    sr = next(out.glob("*_sr.dcm"))
    assert str(pydicom.dcmread(sr).PatientName).startswith(MARKER)


class _Leaky:
    """A predictor whose error quotes the patient's name and ID, as a careless library might."""

    def predict(self, radiograph):
        ds = pydicom.dcmread(radiograph.path, stop_before_pixels=True)
        raise RuntimeError(f"cannot handle {ds.PatientName} ({ds.PatientID}) from {ds.InstitutionName}")


def test_failure_reasons_are_scrubbed(setup, tmp_path, caplog):
    tmp, _ = setup
    with caplog.at_level(logging.DEBUG):
        s = run_batch([tmp / "in" / "caret.dcm", tmp / "in" / "single.dcm"], tmp_path / "out", _Leaky(),
                      progress=False)
    assert s.failed == 2
    text = (tmp_path / "out" / "failures.txt").read_text()
    assert text.count("[redacted]") >= 4 and MARKER not in text and "cannot handle" in text
    assert MARKER not in caplog.text


def test_scrub():
    assert scrub("Doe^Jane and JANE, id 12345", ["Doe^Jane", "Jane", "12345"]) == (
        "[redacted] and [redacted], id [redacted]")
    assert scrub("nothing to hide", []) == "nothing to hide"
    assert scrub("cannot read: not an image", ["not"]) == "cannot read: [redacted] an image"  # words, not parts
