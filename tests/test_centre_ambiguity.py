"""The QC flag ``centre_ambiguous``: a second peak in a Pose-Net centre map reaches the result (flag and
``meta["centre_second_peak"]``), the JSON, the batch's summary and pickled answers, on both stage-1 paths (framed AP,
plain lateral); and the benchmark that tabulates QC flags counts what each flag adds."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paths import REPO  # noqa: E402

from lumbar_monai.postprocess import SECOND_PEAK_FLAG  # noqa: E402
from lumbar_monai.result import QC_FLAGS, CentreAnswer  # noqa: E402

SHIPPED = REPO / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"


def _spine_image() -> np.ndarray:
    image = np.zeros((500, 200), np.float32)
    image[100:400, 80:120] = 1.0
    return image


@pytest.mark.parametrize("second_peak", [0.2, SECOND_PEAK_FLAG, 0.9])
def test_framed_answer_sets_the_flag_and_reaches_the_json(second_peak, tmp_path, monkeypatch):
    import lumbar_monai.framing as framing
    from lumbar_monai.io.result_json import read_result_json, write_result_json
    from lumbar_monai.predictor import LandmarkPredictor

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    centres = np.stack([np.full(5, 100.0), 150.0 + 50.0 * np.arange(5)], axis=1)
    check = {"source": "vertebra_counter", "status": "confirmed", "shift": 0}

    def fixed(*args, **kwargs):
        return {"original": centres, "confidence": np.ones(5), "centre_repaired": False, "windows": [],
                "level_shift": 0, "level_check": dict(check), "second_peak": second_peak}

    monkeypatch.setattr(framing, "detect_centres_framed", fixed)
    res = LandmarkPredictor.load(SHIPPED, device="cpu").predict(_spine_image(), facing="standard")
    assert ("centre_ambiguous" in res.qc_flags) == (second_peak >= SECOND_PEAK_FLAG)
    assert res.meta["centre_second_peak"] == pytest.approx(second_peak) and "centre_ambiguous" in QC_FLAGS
    write_result_json(tmp_path / "r.json", res)
    back, _ = read_result_json(tmp_path / "r.json")
    assert back.qc_flags == res.qc_flags and back.meta["centre_second_peak"] == pytest.approx(second_peak)


def test_plain_stage1_measures_the_second_peak_too(monkeypatch):
    """A pad-and-resize model (the lateral demo's kind): a Pose-Net whose L3 map has a second peak 0.8 as high."""
    from lumbar_monai.anatomy import get_layout
    from lumbar_monai.codecs.gaussian import render_gaussians
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor

    lay = get_layout("lateral")
    pose = PoseNet(layout=lay, width=4, stage_channels=8)
    pred = LandmarkPredictor(layout=lay, centre_net=pose, lumbar_net=MNet(in_channels=1, out_channels=4,
                                                                          channels=(4, 8)),
                             sacrum_net=MNet(in_channels=1, out_channels=2, channels=(4, 8)),
                             stage1={"input_size": 64, "heatmap_size": 8}, crop_size=32, device="cpu")
    size = 8
    maps = torch.zeros(1, lay.num_vertebrae, size, size)
    for v in range(lay.num_vertebrae):
        maps[0, v] = render_gaussians(torch.tensor([[4.0, 1.0 + v]], dtype=torch.float64), 0.8, size, size)[0]
    maps[0, 2] += 0.8 * render_gaussians(torch.tensor([[0.0, 7.0]], dtype=torch.float64), 0.8, size, size)[0].float()
    network = pred._net  # the Pose-Net answers the constructed maps; the M-Nets run as they are
    monkeypatch.setattr(pred, "_net", lambda net, x: maps.expand(len(x), -1, -1, -1) if net is pose else network(net, x))
    res = pred.predict(np.random.default_rng(0).random((80, 60)).astype(np.float32), facing="left")
    assert res.meta["centre_second_peak"] == pytest.approx(0.8, abs=0.05)
    assert "centre_ambiguous" in res.qc_flags


def test_centre_answer_keeps_the_second_peak_when_pickled():
    answer = CentreAnswer(np.zeros((5, 2)), np.ones(5), False, None, 0.7)
    centres, confidence, repaired = answer
    back = pickle.loads(pickle.dumps(answer))
    assert back.second_peak == 0.7 and back.level_check is None and len(back) == 3
    assert CentreAnswer(centres, confidence, repaired).second_peak is None


def test_flag_table_counts_what_each_flag_adds():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from qc_flags import flag_rows

    flags = [{"centre_ambiguous"}, {"centre_ambiguous", "level_unconfirmed"}, set(), {"level_unconfirmed"}, set()]
    failed = [True, True, False, False, True]
    rows = {r[0]: r[1:] for r in flag_rows(flags, failed)}
    assert rows["`centre_ambiguous`"] == (2, 0, 2, 1)  # two images, both failed, one with no other flag
    assert rows["`level_unconfirmed`"] == (2, 1, 1, 0)
    assert rows["any flag"] == (3, 1, 2, 0) and rows["no flag"] == (2, 1, 1, 0)
    assert set(rows) == {f"`{k}`" for k in QC_FLAGS} | {"any flag", "no flag"}


def test_flag_table_script_on_two_aasce_images(tmp_path):
    """benchmarks/qc_flags.py end to end: both tables, one row per flag, counts that add up, no file name printed."""
    import json
    import subprocess

    from test_gpu_kit import _mini_aasce

    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    pairs = read_aasce(_mini_aasce(tmp_path, [0, 1]), outside="skip")
    items = [{"image": str(p), "label": str(write_annotation_json(tmp_path / "labels" / f"{i}.json", a)),
              "aasce_order": "anatomical"} for i, (p, a) in enumerate(pairs)]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [], "validation": items, "test": []}))
    proc = subprocess.run([sys.executable, "benchmarks/qc_flags.py", "--model", str(SHIPPED), "--datalist",
                           str(datalist)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("validation: 2 images, ")
    rows = {r.split(" | ")[0].strip("| "): r for r in lines if r.startswith("| `") or r.startswith("| any") or
            r.startswith("| no flag")}
    assert set(rows) == {f"`{k}`" for k in QC_FLAGS} | {"any flag", "no flag"}
    n_any, n_none = (int(rows[k].split(" | ")[1]) for k in ("any flag", "no flag"))
    assert n_any + n_none == 2
    bands = [r for r in lines if r.startswith("| 0.") or r.startswith("| 1.")]
    assert len(bands) == 4 and sum(int(r.split(" | ")[1]) for r in bands) == 2
    assert not any(Path(i["image"]).stem in proc.stdout + proc.stderr for i in items)
