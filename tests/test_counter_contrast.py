"""The contrast of the count: the counter's letterbox can bring each image's median intensity to a target, which
undoes a film's tone curve (gamma) exactly where the percentiles are the image's black and white; the target is
fitted on a split's images and travels in the model; a model without a counter or a bad target is refused in one
line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paths import REPO  # noqa: E402

from lumbar_monai.counting import letterbox, median_target, standardise_median  # noqa: E402


def _film(seed: int = 0) -> np.ndarray:
    """A (300, 120) image in [0, 1] with black and white margins (so that its 1st/99th percentiles are 0 and 1)."""
    yy, xx = np.mgrid[0:300, 0:120].astype(np.float32)
    img = 0.05 + 0.55 * (0.5 + 0.5 * np.sin(yy / (12.0 + seed)) * np.cos(xx / 9.0))  # smooth, as a film's
    img[:10] = 0.0
    img[-10:] = 1.0
    return img


def test_standardise_median_reaches_the_target_and_leaves_flat_images():
    x = torch.as_tensor(_film())
    out = standardise_median(x, 0.5)
    assert float(out.median()) == pytest.approx(0.5, abs=1e-3)
    assert torch.equal(standardise_median(torch.zeros(4, 4), 0.5), torch.zeros(4, 4))  # median 0: unchanged
    assert torch.equal(standardise_median(torch.ones(4, 4), 0.5), torch.ones(4, 4))
    dark = torch.full((4, 4), 0.01)
    assert float(standardise_median(dark, 0.9).max()) == pytest.approx(0.01 ** 0.4, rel=1e-5)  # power clipped at 0.4


@pytest.mark.parametrize("gamma", [0.6, 1.6])
def test_a_tone_curve_is_undone(gamma):
    img = _film()
    plain, _, _ = letterbox(img, (192, 80), median_target=0.35)  # powers within the clip for both gammas
    toned, _, _ = letterbox(img ** gamma, (192, 80), median_target=0.35)
    diff = np.abs(toned - plain)  # resampling before the power blurs the black and white margins' edges only
    assert np.median(diff) < 1e-3 and np.percentile(diff, 95) < 0.02
    without, _, _ = letterbox(img ** gamma, (192, 80))
    assert np.abs(without - letterbox(img, (192, 80))[0]).max() > 0.1  # what the standardisation removes


def test_median_target_is_the_median_of_the_images_medians():
    imgs = [_film(0), _film(1) ** 2.0, _film(2) ** 0.5]
    meds = []
    for img in imgs:
        x, scale, offset = letterbox(img, (192, 80))
        region = x[:, (80 - round(120 * scale)) // 2:][:, :round(120 * scale)]
        meds.append(float(np.median(region)))
    assert median_target(imgs, (192, 80)) == pytest.approx(float(np.median(meds)), abs=1e-6)
    with pytest.raises(ValueError, match="at least one image"):
        median_target([])


def test_standardise_cli_sets_the_target_and_keeps_the_weights(tmp_path):
    from test_gpu_kit import SHIPPED, _mini_aasce

    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json
    from lumbar_monai.predictor import LandmarkPredictor

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    root = _mini_aasce(tmp_path, [0, 1])
    pairs = read_aasce(root, outside="skip")
    items = [{"image": str(p), "label": str(write_annotation_json(tmp_path / "labels" / f"{i}.json", a)),
              "aasce_order": "anatomical"} for i, (p, a) in enumerate(pairs)]
    items.append({"image": str(tmp_path / "missing.png"), "label": items[0]["label"]})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": items, "validation": [], "test": []}))
    out = tmp_path / "std.pt"
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.counter", "standardise", "--model",
                           str(SHIPPED), "--datalist", str(datalist), "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "training item 2 skipped" in proc.stderr and "missing" not in proc.stderr  # an index, never a name
    old = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    new = torch.load(out, map_location="cpu", weights_only=True)
    target = new["stage1"]["count"]["median_target"]
    assert 0.0 < target < 1.0 and f"{target:.4f}" in proc.stdout
    assert new["meta"]["counter_median_target_fit"] == {"split": "training", "n_images": 2}
    for entry in ("stage1", "stage1_counter", "lumbar"):  # weights byte for byte (float16 ones stay float16)
        for k, v in old[entry]["state_dict"].items():
            assert torch.equal(new[entry]["state_dict"][k], v) and new[entry]["state_dict"][k].dtype == v.dtype
    assert LandmarkPredictor.load(out, device="cpu").level_pass().median_target == pytest.approx(target)
    # refusals: one line each, no traceback
    no_counter = tmp_path / "no_counter.pt"
    torch.save({**old, "stage1_counter": None, "stage1": {k: v for k, v in old["stage1"].items() if k != "count"}},
               no_counter)
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.counter", "standardise", "--model",
                           str(no_counter), "--datalist", str(datalist), "--out", str(tmp_path / "x.pt")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("the model has no vertebra counter (counter attach adds one)")
    from PIL import Image  # films that are all black give no target

    width, height = Image.open(pairs[0][0]).size  # the size its label was made for
    Image.fromarray(np.zeros((height, width), np.uint8)).save(tmp_path / "black.png")
    black = tmp_path / "black.json"
    black.write_text(json.dumps({"training": [{"image": str(tmp_path / "black.png"), "label": items[0]["label"]}]}))
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.counter", "standardise", "--model",
                           str(SHIPPED), "--datalist", str(black), "--out", str(tmp_path / "y.pt")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and not (tmp_path / "y.pt").exists()
    assert "median_target must be a number between 0 and 1" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, "0.5", True])
def test_a_bad_median_target_is_refused(value):
    from lumbar_monai.counting import check_median_target

    with pytest.raises(ValueError, match="median_target must be a number between 0 and 1"):
        check_median_target(value)
    assert check_median_target(None) is None and check_median_target(0.5) == 0.5


def _boxed(film: np.ndarray, size=(192, 80)):
    """A counter sample of ``film``: the letterbox canvas, its box and 17 centres down the middle."""
    from lumbar_monai.counting import letterbox_box

    canvas, scale, offset = letterbox(film, size)
    _, nh, nw, x0, y0 = letterbox_box(film.shape, size)
    centres = np.stack([np.full(17, 60.0), np.linspace(20.0, 280.0, 17)], 1) * scale + offset
    return {"image": canvas, "centres": centres, "box": np.array([x0, y0, nw, nh])}


def test_training_views_standardise_the_image_part_after_their_gamma():
    """A counter trained on standardised contrast sees what the letterbox gives it at inference: the image part
    (not the black padding) brought to the target, whatever gamma the view drew; the geometry is unchanged."""
    from lumbar_monai.training.counter import RandCountViewd

    sample = _boxed(_film())
    x0, y0, w, h = sample["box"]
    plain = RandCountViewd(jitter=False, median_target=0.3)(sample)["image"][0].numpy()
    assert np.median(plain[y0:y0 + h, x0:x0 + w]) == pytest.approx(0.3, abs=0.01)
    assert plain[:, :x0].max() == 0.0 and plain[:, x0 + w:].max() == 0.0  # the padding stays black
    inference = letterbox(_film(), (192, 80), median_target=0.3)[0]
    np.testing.assert_allclose(plain, inference, atol=1e-5)  # training and inference agree
    still = dict(zoom=(1.0, 1.0), rotate=0.0, shift=(0.0, 0.0))
    views = []
    for gamma in (0.6, 1.6):
        view = RandCountViewd(gamma=(gamma, gamma), median_target=0.3, **still)
        view.set_random_state(0)
        views.append(view(sample))
    a, b = (v["image"][0].numpy() for v in views)
    assert np.median(a[y0:y0 + h, x0:x0 + w]) == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(a, b, atol=2e-3)  # the drawn tone curve is undone
    plain_view = RandCountViewd(gamma=(1.6, 1.6), **still)  # without a target the gamma stays in
    plain_view.set_random_state(0)
    assert abs(float(np.median(plain_view(sample)["image"][0].numpy()[y0:y0 + h, x0:x0 + w])) - 0.3) > 0.05
    np.testing.assert_allclose(views[0]["centres"].numpy(), views[1]["centres"].numpy())
    with pytest.raises(ValueError, match="needs the image's box in 'box'"):
        RandCountViewd(jitter=False, median_target=0.3)({k: v for k, v in sample.items() if k != "box"})
    with pytest.raises(ValueError, match="median_target must be a number between 0 and 1"):
        RandCountViewd(median_target=1.5)


def test_training_target_and_the_train_command(monkeypatch, tmp_path):
    """``counter train --median-target training`` fits the target on the training samples (the median of their
    image parts' medians); a number passes as is; anything else is refused in one line; ``attach`` carries a
    counter file's target into the model."""
    from test_gpu_kit import SHIPPED

    import lumbar_monai.training.counter as counter
    from lumbar_monai.predictor import LandmarkPredictor

    samples = [_boxed(_film(seed)) for seed in range(3)]
    meds = [np.median(s["image"][s["box"][1]:s["box"][1] + s["box"][3], s["box"][0]:s["box"][0] + s["box"][2]])
            for s in samples]
    assert counter.training_median_target(samples) == pytest.approx(float(np.median(meds)))
    with pytest.raises(ValueError, match="no training image"):
        counter.training_median_target([])
    black = {**samples[0], "image": np.zeros_like(samples[0]["image"])}
    with pytest.raises(ValueError, match="median_target must be a number between 0 and 1"):
        counter.training_median_target([black])  # all-black films give no target
    seen = {}
    monkeypatch.setattr(counter, "train_counter",
                        lambda *a, **k: seen.update(k) or {"epochs": 0, "count_error": 0.0, "path": "x"})
    for arg, want in (("training", "training"), ("0.42", 0.42)):
        counter.main(["train", "--datalist", "d.json", "--out", "o", "--median-target", arg])
        assert seen["median_target"] == want
    counter.main(["train", "--datalist", "d.json", "--out", "o"])
    assert seen["median_target"] is None
    with pytest.raises(SystemExit, match="--median-target is a number in \\(0, 1\\) or 'training'"):
        counter.main(["train", "--datalist", "d.json", "--out", "o", "--median-target", "bright"])
    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    entry = dict(counter.counter_entry(SHIPPED))
    shipped = torch.load(SHIPPED, map_location="cpu", weights_only=True)["stage1"]["count"]
    assert entry["median_target"] == shipped["median_target"]  # a model's counter brings its own target along
    torch.save({**entry, "median_target": 0.42}, tmp_path / "counter.pt")
    model = counter.attach_counter(SHIPPED, tmp_path / "counter.pt", tmp_path / "model.pt")
    assert LandmarkPredictor.load(model, device="cpu").level_pass().median_target == pytest.approx(0.42)


def test_a_counter_starts_from_a_counter_file_or_a_model_holding_one(tmp_path):
    """``counter train --init`` takes the shipped model itself (its float16 counter copied into the new network), a
    counter file or a bare state dict; a file none of whose tensors fit is refused instead of training from scratch."""
    from test_gpu_kit import SHIPPED

    from lumbar_monai.training.counter import counter_entry, initial_counter

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    shipped = counter_entry(SHIPPED)["state_dict"]
    net = initial_counter(SHIPPED)
    for k, v in net.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, shipped[k].float())
    torch.save({"state_dict": net.state_dict()}, tmp_path / "counter.pt")
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    for path in ("counter.pt", "bare.pt"):
        assert all(torch.equal(a, b) for a, b in zip(initial_counter(tmp_path / path).state_dict().values(),
                                                     net.state_dict().values(), strict=True))
    torch.save({"state_dict": {"other.weight": torch.zeros(3)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor of it fits the counter"):
        initial_counter(tmp_path / "other.pt")
