"""AP display side (lumbar_monai.display): the decision, the predictor running mirrored images the way the networks
learned, checkpoints, and the display network's training (lumbar_monai.training.display)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lumbar_monai.display import (
    UNCERTAIN_BAND,
    build_display_net,
    decide_display,
    display_hint,
    display_input,
    mirrored_probability,
)
from lumbar_monai.facing import mirror_points
from lumbar_monai.predictor import LandmarkPredictor
from lumbar_monai.training.display import RandDisplayViewd

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"


class BrightSideNet(torch.nn.Module):
    """Stand-in display network: 'mirrored' when the input's right half is brighter than its left half."""

    gain = 4.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        d = self.gain * (x[..., w // 2:].mean(dim=(1, 2, 3)) - x[..., : w // 2].mean(dim=(1, 2, 3)))
        return torch.stack([-d, d], dim=1)


def _asymmetric(h: int = 360, w: int = 140) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 0.4, (h, w)).astype(np.float32)
    img[:, : w // 3] += 0.4  # bright on the image left: "standard" for the stand-in
    yy, xx = np.mgrid[0:h, 0:w]
    for cy in range(60, h - 40, 45):  # vertebra-like blobs down the middle
        img += 0.5 * np.exp(-(((yy - cy) / 12.0) ** 2 + ((xx - w / 2) / 20.0) ** 2)).astype(np.float32)
    return img


def test_display_hint_reads_patient_orientation():
    assert display_hint({"orientation": "L\\F"}) == "standard"
    assert display_hint({"orientation": ["R", "F"]}) == "mirrored"
    assert display_hint({"orientation": "A\\F"}) is None  # a lateral view
    assert display_hint({"orientation": "RL"}) is None and display_hint(None) is None and display_hint({}) is None


def test_decision_is_mirror_consistent_and_the_hint_breaks_ties():
    net, img = BrightSideNet(), _asymmetric()
    p, q = mirrored_probability(net, img), mirrored_probability(net, img[:, ::-1])
    assert p < 0.5 - UNCERTAIN_BAND and q == pytest.approx(1.0 - p)  # image and mirror: complementary answers
    d = decide_display(net, img, hint="mirrored")
    assert (d.display, d.source, d.uncertain) == ("standard", "image", False)  # a clear image overrules the hint
    assert decide_display(net, img[:, ::-1]).display == "mirrored"
    flat = np.full((200, 80), 0.5, dtype=np.float32)
    tie = decide_display(net, flat, hint="mirrored")
    assert tie.uncertain and (tie.display, tie.source) == ("mirrored", "hint")
    net.gain = 0.05  # a network that barely leans to "mirrored" on an image brighter on the right
    plain = decide_display(net, flat + np.linspace(0, 0.05, 80, dtype=np.float32))
    assert 0.5 < plain.probability < 0.5 + UNCERTAIN_BAND
    assert plain.uncertain and (plain.display, plain.source) == ("standard", "default")
    meta = tie.as_meta()
    assert meta["display"] == "mirrored" and meta["hint"] == "mirrored" and 0.0 <= meta["mirrored_probability"] <= 1.0


def test_display_input_is_standardised_at_the_network_size():
    x = display_input(_asymmetric()[:, ::-1])  # negative strides are fine
    assert x.shape == (1, 256, 96) and abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, abs=1e-2)


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    return LandmarkPredictor.load(SHIPPED, device="cpu")


def test_a_mirrored_image_gets_the_mirrored_landmarks_with_the_same_names(shipped):
    img = _asymmetric()
    shipped.display_net = BrightSideNet()
    try:
        plain = shipped.predict(img)
        mirrored = shipped.predict(np.ascontiguousarray(img[:, ::-1]))
        given = shipped.predict(np.ascontiguousarray(img[:, ::-1]), facing="mirrored")
    finally:
        shipped.display_net = None
    assert plain.meta["display"]["display"] == "standard" and mirrored.meta["display"]["display"] == "mirrored"
    assert given.meta["display"] == {"display": "mirrored", "source": "given", "uncertain": False}
    w = img.shape[1]
    # the networks saw the same standard image: the same landmarks, mirrored, rows (anatomical names) unchanged
    np.testing.assert_allclose(mirrored.points, mirror_points(plain.points, w), atol=1e-3)
    np.testing.assert_allclose(mirrored.centres, mirror_points(plain.centres, w), atol=1e-3)
    np.testing.assert_allclose(given.points, mirrored.points, atol=1e-3)
    # without a display network the AP path is unchanged and records no display; a stated display still works
    assert "display" not in shipped.predict(img).meta
    stated = shipped.predict(np.ascontiguousarray(img[:, ::-1]), facing="mirrored")
    np.testing.assert_allclose(stated.points, mirrored.points, atol=1e-3)
    with pytest.raises(ValueError, match="facing of an AP image must be"):
        shipped.predict(img, facing="left")


def test_checkpoint_round_trip_and_lateral_refusal(shipped, tmp_path):
    net = build_display_net()
    shipped.display_net = net.eval()
    try:
        path = shipped.save(tmp_path / "m.pt")
    finally:
        shipped.display_net = None
    back = LandmarkPredictor.load(path, device="cpu")
    assert type(back.display_net).__name__ == "Classifier"
    for k, v in net.state_dict().items():
        assert torch.equal(back.display_net.state_dict()[k], v)
    ckpt = torch.load(path, weights_only=True)
    ckpt["display"]["network"] = "PoseNet"
    with pytest.raises(ValueError, match="must be a Classifier"):
        LandmarkPredictor.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(ValueError, match="for AP layouts"):
        LandmarkPredictor(layout="lateral", lumbar_net=shipped.lumbar_net, sacrum_net=shipped.lumbar_net,
                          display_net=net, device="cpu")


def test_training_views_carry_the_mirror_label():
    img = _asymmetric()
    plain = RandDisplayViewd(jitter=False)
    d = plain({"image": img, "mirror": True})
    assert int(d["label"]) == 1 and torch.allclose(d["image"], display_input(img[:, ::-1]))
    rand = RandDisplayViewd()
    rand.set_random_state(3)
    labels = []
    for _ in range(12):
        s = rand({"image": img})
        x, lab = s["image"][0], int(s["label"])
        labels.append(lab)
        left, right = float(x[:, :32].mean()), float(x[:, -32:].mean())
        assert (left > right) == (lab == 0)  # the bright side follows the label through zoom, shift, rotation
    assert 0 < sum(labels) < 12


def test_train_and_attach_from_the_command_line(tmp_path):
    from _paths import SHARED

    aasce = SHARED / "data" / "aasce16"
    if not (aasce / "labels_training" / "landmarks.csv").is_file() or not SHIPPED.is_file():
        pytest.skip("AASCE copy or shipped AP model not found")
    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json

    items = []
    for i, (image, ann) in enumerate(read_aasce(aasce, outside="skip")[:3]):
        items.append({"image": str(image), "label": str(write_annotation_json(tmp_path / f"{i}.json", ann))})
    (tmp_path / "d.json").write_text(json.dumps({"training": items[:2], "validation": items[2:]}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "lumbar_monai.training.display"]
    proc = subprocess.run([*run, "train", "--datalist", str(tmp_path / "d.json"), "--out", str(tmp_path / "o"),
                           "--epochs", "1", "--samples-per-epoch", "4", "--long-side", "128", "--device", "cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation accuracy" in proc.stdout and (tmp_path / "o" / "display.pt").is_file()
    proc = subprocess.run([*run, "attach", "--model", str(SHIPPED), "--display", str(tmp_path / "o" / "display.pt"),
                           "--out", str(tmp_path / "m.pt")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    back = LandmarkPredictor.load(tmp_path / "m.pt", device="cpu")
    assert back.display_net is not None and "val_accuracy" in back.meta["display_net"]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    bad = subprocess.run([*run, "attach", "--model", str(SHIPPED), "--display", str(tmp_path / "bad.pt"),
                          "--out", str(tmp_path / "m2.pt")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and bad.stderr.startswith("error:")


def test_batched_prediction_decides_the_display_per_image(shipped):
    img = _asymmetric()
    flipped = np.ascontiguousarray(img[:, ::-1])
    shipped.display_net = BrightSideNet()
    try:
        single = [shipped.predict(x) for x in (img, flipped)]
        batch = shipped.predict_batch([img, flipped], batch_size=2)
    finally:
        shipped.display_net = None
    for a, b in zip(single, batch, strict=True):
        assert a.meta["display"]["display"] == b.meta["display"]["display"]
        np.testing.assert_allclose(a.points, b.points, atol=1e-3)
    assert [b.meta["display"]["display"] for b in batch] == ["standard", "mirrored"]


def test_the_display_reaches_the_sr_and_the_measurements_csv(shipped, tmp_path):
    """The AP display decision is recorded where the lateral facing is: a column of measurements.csv and a
    qualitative evaluation of every SR landmark group (with "uncertain" when flagged), read back by the SR reader."""
    import csv

    import pydicom

    sys.path.insert(0, str(Path(__file__).parent))
    import _lm_helpers as helpers

    pytest.importorskip("highdicom")
    from lumbar_monai.batch import run_batch
    from lumbar_monai.io.report import read_sr_landmarks, write_sr

    pts = helpers.spine_points("ap", width=44.0, height=26.0, disc=9.0, origin=(120.0, 60.0))
    dx = helpers.write_dx(tmp_path / "dx.dcm", helpers.render_spine_image(pts, layout="ap", size_wh=(240, 260)))
    res = helpers.result_from_points(pts, layout="ap", size=(240, 260))
    res.meta["display"] = {"display": "mirrored", "mirrored_probability": 0.62, "source": "image"}
    res.qc_flags.append("display_uncertain")
    back, info = read_sr_landmarks(write_sr(tmp_path / "sr.dcm", pydicom.dcmread(dx), res), layout="ap")
    np.testing.assert_allclose(back, pts, atol=1e-3)
    assert info["display"] == "mirrored uncertain" and info["facing"] is None and info["level_check"] is None
    res.meta["level_check"] = {"source": "vertebra_counter", "status": "renamed", "shift": -1}
    assert read_sr_landmarks(write_sr(tmp_path / "sr1.dcm", pydicom.dcmread(dx), res),
                             layout="ap")[1]["level_check"] == "renamed"
    res.meta["shape_prior"] = {"outliers": ["L2_inferior_left", "L5_superior_right"], "max_residual_heights": 0.8}
    back, info = read_sr_landmarks(write_sr(tmp_path / "sr3.dcm", pydicom.dcmread(dx), res), layout="ap")
    assert info["shape_prior_replaced"] == ["L2_inferior_left", "L5_superior_right"]  # only those two groups say so
    res.qc_flags.clear()
    res.meta.pop("display")
    assert read_sr_landmarks(write_sr(tmp_path / "sr2.dcm", pydicom.dcmread(dx), res), layout="ap")[1]["display"] is None

    (tmp_path / "in").mkdir()
    img = (_asymmetric() * 20000).astype(np.uint16)
    helpers.write_dx(tmp_path / "in" / "a.dcm", img)
    helpers.write_dx(tmp_path / "in" / "b.dcm", np.ascontiguousarray(img[:, ::-1]))
    net = BrightSideNet()
    net.gain = 400.0  # after the DICOM reader (VOI window, standardisation) the left/right contrast is small
    shipped.display_net = net
    try:
        s = run_batch(tmp_path / "in", tmp_path / "out", shipped, progress=False)
    finally:
        shipped.display_net = None
    rows = list(csv.DictReader(s.measurements_csv.open()))
    assert sorted(r["display"] for r in rows) == ["mirrored", "standard"]
    srs = sorted((tmp_path / "out").glob("*_sr.dcm"))
    assert sorted(read_sr_landmarks(p, layout="ap")[1]["display"].split()[0] for p in srs) == ["mirrored", "standard"]
