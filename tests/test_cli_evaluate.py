"""``lumbar-monai evaluate`` end to end on a tiny predictor: an AASCE-format folder scored whole, the printed row
equal to the workflow's summary, no file names on the console, bad data and models refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lumbar_monai.result import QC_FLAGS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

from lumbar_monai.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    H.aasce_format_folder(tmp / "batch", n=3)
    return tmp, H.tiny_untrained_ap_model(tmp / "ap.pt"), H.tiny_untrained_model(tmp / "lateral.pt")


def _evaluate(*args):
    return subprocess.run([sys.executable, "-m", "lumbar_monai", "evaluate", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_an_aasce_folder_is_scored_and_the_row_is_the_summary(setup):
    tmp, ap, _ = setup
    out = tmp / "out"
    proc = _evaluate(tmp / "batch", "--out", out, "--model", ap, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("| data | n | failed | centre detection (%)")
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    s = json.loads((out / "summary.json").read_text())
    assert row[:3] == ["AASCE-format folder, subset batch2, 3 images", "3", "0"]
    assert row[3] == f"{s['centre_detection_accuracy_pct']:.1f}"
    for cell, key in zip(row[4:], ("landmark_rd_total_pct", "landmark_rd_median_image_pct", "landmark_outlier_pct"),
                         strict=True):
        assert cell == ("n/a" if s[key] is None else f"{s[key]:.2f}")
    # the median image is the median of per_case.csv's mean_RD over every image
    rows = (out / "per_case.csv").read_text().splitlines()[1:]
    assert len(rows) == 3
    mean_rd = [float(r.split(",")[2]) for r in rows]
    assert s["landmark_rd_median_image_pct"] == pytest.approx(float(np.median(mean_rd)), abs=1e-3)
    # the landmark outliers are landmark_error's "Total" outlier rate (detected images)
    total = next(r for r in (out / "landmark_error.csv").read_text().splitlines() if r.startswith("Total,"))
    assert (s["landmark_outlier_pct"] is None) == (s["n_detected"] == 0)  # n/a exactly when nothing was detected
    assert s["landmark_outlier_pct"] is None or total.endswith(f"{s['landmark_outlier_pct']:.2f}")
    for name in ("landmark_error.md", "centre_error.md", "per_case.csv", "scored_datalist.json"):
        assert (out / name).is_file()
    assert "case0" not in proc.stdout + proc.stderr  # no file name on the console


@pytest.mark.parametrize("case", ["missing data", "lateral model on AP labels", "unknown split", "no model",
                                  "bad max cases", "unknown device"])
def test_bad_data_or_model_is_one_line(setup, case, capsys):
    tmp, ap, lateral = setup
    out = tmp / f"bad_{case.replace(' ', '_')}"
    args = {
        "missing data": (tmp / "nowhere", "--model", ap),
        "lateral model on AP labels": (tmp / "batch", "--model", lateral),
        "unknown split": (tmp / "out" / "scored_datalist.json", "--model", ap, "--split", "nope"),
        "no model": (tmp / "batch", "--model", tmp / "missing.pt"),
        "bad max cases": (tmp / "batch", "--model", ap, "--max-cases", "0"),
        "unknown device": (tmp / "batch", "--model", ap, "--device", "tpu:7"),
    }[case]
    if case == "unknown split" and not (tmp / "out" / "scored_datalist.json").is_file():
        H.aasce_format_folder(tmp / "b2", n=1)
        assert _evaluate(tmp / "b2", "--out", tmp / "out", "--model", ap, "--device", "cpu").returncode == 0
    # in-process (the end-to-end test above runs the installed command): the same parser and exit codes
    device = [] if "--device" in args else ["--device", "cpu"]
    code = main(["evaluate", *map(str, args), "--out", str(out), *device])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("lumbar-monai evaluate: "), err
    assert not (out / "summary.json").exists()


@pytest.mark.skipif(not (H.SHARED / "data" / "aasce16").is_dir(), reason="needs ../shared/data/aasce16")
def test_the_shipped_model_on_real_aasce_images(tmp_path):
    """The shared AASCE copy as a folder, the shipped AP model, the first four images: the row's outlier rate is the
    landmark table's "Total" one and some image is detected (so the columns hold numbers, not n/a)."""
    shipped = Path(__file__).resolve().parents[1] / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"
    proc = _evaluate(H.SHARED / "data" / "aasce16", "--out", tmp_path, "--model", shipped, "--device", "cpu",
                     "--max-cases", "4")
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n_cases"] == 4 and s["n_detected"] >= 1
    total = next(r for r in (tmp_path / "landmark_error.csv").read_text().splitlines() if r.startswith("Total,"))
    assert total.endswith(f"{s['landmark_outlier_pct']:.2f}")
    assert "AASCE-format folder, subset training, 480 images, 1 left out with landmarks outside the image" in proc.stdout
    assert "sunhl" not in proc.stdout + proc.stderr  # the AASCE file names carry dates: never on the console
    # how the QC flags did: per image in per_case.csv, counted per flag in summary.json
    import csv

    rows = list(csv.DictReader((tmp_path / "per_case.csv").open()))
    flagged = [set(r["qc_flags"].split()) for r in rows]
    assert len(rows) == 4 and all(f <= set(QC_FLAGS) for f in flagged)
    counts = s["qc_flags"]
    assert counts["any_flag"]["images"] + counts["no_flag"]["images"] == 4
    assert counts["any_flag"]["centre_outliers"] + counts["no_flag"]["centre_outliers"] == 4 - s["n_detected"]
    for name in QC_FLAGS:
        assert counts[name]["images"] == sum(name in f for f in flagged)
        assert counts[name]["centre_outliers"] == sum(name in f and r["centre_outlier"] == "1"
                                                      for f, r in zip(flagged, rows, strict=True))


def test_an_image_that_cannot_be_read_is_reported_and_the_rest_scored(setup):
    tmp, ap, _ = setup
    H.aasce_format_folder(tmp / "src3", n=3)
    made = tmp / "made"
    assert _evaluate(tmp / "src3", "--out", made, "--model", ap, "--device", "cpu").returncode == 0
    next((tmp / "src3" / "images_batch2").iterdir()).write_bytes(b"\0" * 64)  # broken after the datalist was made
    out = tmp / "out_broken"
    proc = _evaluate(made / "scored_datalist.json", "--out", out, "--model", ap, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    row = [c.strip() for c in proc.stdout.strip().splitlines()[2].strip("|").split("|")]
    assert row[1:3] == ["2", "1"]
    assert "(1 image(s) could not be scored" in proc.stdout
    failures = json.loads((out / "summary.json").read_text())["failures"]
    assert len(failures) == 1 and failures[0]["image"].endswith(".jpg") and "\n" not in failures[0]["reason"]
