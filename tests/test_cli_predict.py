"""``lumbar-monai predict`` end to end on a tiny predictor: good and bad files mixed, exit codes, no patient data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("highdicom")

from lumbar_monai.networks.mnet import MNet  # noqa: E402
from lumbar_monai.networks.posenet import PoseNet  # noqa: E402
from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs  # noqa: E402
from lumbar_monai.synthetic import SyntheticConfig, write_study_set  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    write_study_set(tmp / "studies", 2, seed=3, config=SyntheticConfig(max_side=256), progress=False)
    pred = LandmarkPredictor(
        layout="lateral",
        centre_net=with_init_kwargs(PoseNet, layout="lateral", width=4, kernel_size=7),
        lumbar_net=with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2),
        sacrum_net=with_init_kwargs(MNet, out_channels=3, channels=(4, 8), coordconv=2),
        crop_size=32, stage1={"input_size": 64, "heatmap_size": 8}, device="cpu",
    )
    model = pred.save(tmp / "model.pt")
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
