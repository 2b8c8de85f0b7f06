"""Vertebra counting (issue 15): a whole-image counter finds every vertebra from T1 down, the 13th to 17th are L1-L5,
and that chain renames the window Pose-Net's chain by whole levels; the counter trains on MONAI's engines and travels
in the predictor's checkpoint."""

import numpy as np
import pytest
import torch

from lumbar_monai.codecs.centre import CentreHeatmapCodec
from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.counting import (
    COUNT_INPUT,
    CountPass,
    build_counter_net,
    chain_from_maps,
    count_reference,
    counted_chain,
    letterbox,
    t1_peak,
    vertebra_peaks,
)
from lumbar_monai.framing import detect_centres_framed, whole_image_window, window_affine
from lumbar_monai.training.counter import (
    BOTTOM_CUT,
    CountError,
    RandCountViewd,
    centre_heatmap,
    counter_target,
    load_matching,
)

# C7 (partly in view), then T1 .. L5: 18 centres, the gaps growing slowly down the spine (counter input pixels)
GAPS = np.linspace(13.0, 24.0, 17)
SPINE = np.stack([np.full(18, 80.0), 6.0 + np.concatenate([[0.0], np.cumsum(GAPS)])], axis=1)
C7, T1, L1, L5 = 0, 1, 13, 17


def _peaks(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points, np.ones((len(points), 1))], axis=1)


def test_letterbox_keeps_the_aspect_and_maps_pixels():
    img = np.zeros((1000, 300), np.float32)
    img[500:510, 100:110] = 1.0
    x, scale, offset = letterbox(img)
    assert x.shape == COUNT_INPUT and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert scale == pytest.approx(min(384 / 1000, 160 / 300))
    yy, xx = np.nonzero(x > 0.5)
    np.testing.assert_allclose([xx.mean(), yy.mean()], np.array([104.5, 504.5]) * scale + offset, atol=0.5)
    wide = letterbox(np.ones((100, 400), np.float32))[0]
    assert wide[0].max() == 0.0 and wide[COUNT_INPUT[0] // 2].max() > 0.0  # zero rows above a wide image
    with pytest.raises(ValueError, match="shape"):
        letterbox(np.zeros((3, 4, 5)))


def test_vertebra_peaks_are_sorted_and_merged():
    pts = SPINE[T1:L5 + 1]
    prob = centre_heatmap(pts, COUNT_INPUT)
    prob[int(pts[3, 1]), int(pts[3, 0]) + 4] = 0.9  # a second, weaker maximum within one vertebra
    prob[int(pts[3, 1]), int(pts[3, 0])] = 1.0
    found = vertebra_peaks(prob, threshold=0.5, min_distance=8.0)
    assert len(found) == 17 and np.all(np.diff(found[:, 1]) > 0)
    np.testing.assert_allclose(found[:, :2], pts, atol=0.5)
    assert len(vertebra_peaks(prob * 0.4, threshold=0.5)) == 0


def test_counting_starts_at_t1_not_at_the_top_peak():
    peaks = _peaks(SPINE)  # C7 found too
    np.testing.assert_allclose(counted_chain(peaks, SPINE[T1] + 2.0), SPINE[L1:L5 + 1])
    # starting at C7 would give T12-L4: the T1 map decides
    np.testing.assert_allclose(counted_chain(peaks, SPINE[C7]), SPINE[L1 - 1:L5])


@pytest.mark.parametrize("case", ["no_t1", "t1_far", "missed_vertebra", "spurious_peak", "too_short"])
def test_counting_refuses_an_irregular_or_unanchored_chain(case):
    peaks, t1 = _peaks(SPINE), SPINE[T1]
    if case == "no_t1":
        t1 = None
    elif case == "t1_far":
        t1 = SPINE[T1] + [30.0, 0.0]
    elif case == "missed_vertebra":
        peaks = np.delete(peaks, 8, axis=0)  # a gap twice the others: the count would run one level low
    elif case == "spurious_peak":
        peaks = np.insert(peaks, 8, (peaks[7] + peaks[8]) / 2, axis=0)
    else:
        peaks = peaks[:-1]
    assert counted_chain(peaks, t1) is None


def test_t1_map_and_both_maps():
    t1 = centre_heatmap(SPINE[T1:T1 + 1], COUNT_INPUT)
    np.testing.assert_allclose(t1_peak(t1), SPINE[T1], atol=0.5)
    assert t1_peak(t1 * 0.2) is None
    maps = np.stack([centre_heatmap(SPINE, COUNT_INPUT), t1])
    np.testing.assert_allclose(chain_from_maps(maps), SPINE[L1:L5 + 1], atol=0.5)


class _FixedCounter(torch.nn.Module):
    """A stand-in counter: fixed logits whatever the input."""

    def __init__(self, maps: np.ndarray) -> None:
        super().__init__()
        p = np.clip(maps, 1e-4, 1 - 1e-4)
        self.logits = torch.as_tensor(np.log(p / (1 - p)), dtype=torch.float32)[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[-2:]) == tuple(self.logits.shape[-2:])  # the letterbox the maps were drawn for
        return self.logits.expand(x.shape[0], -1, -1, -1)


def test_counter_input_size_is_checked_and_used():
    from lumbar_monai.counting import check_input_size

    assert check_input_size([512, "208"]) == (512, 208)
    for bad in ((500, 208), (0, 16), (512,), "big"):
        with pytest.raises(ValueError, match="counter input size"):
            check_input_size(bad)
    # a counter trained on a 192 x 80 letterbox: the same spine at half the default scale
    small = (192, 80)
    image = np.zeros((960, 400), np.float32)  # letterboxed at scale 0.2
    half = SPINE * 0.5
    maps = np.stack([centre_heatmap(half, small), centre_heatmap(half[T1:T1 + 1], small)])
    count = CountPass(net=_FixedCounter(maps), input_size=small, min_distance=4.0)
    _, scale, offset = letterbox(image, small)
    assert scale == pytest.approx(0.2)
    np.testing.assert_allclose(count.reference(image), (half[L1:L5 + 1] - offset) / scale, atol=2.6)


def test_count_reference_is_in_image_pixels():
    image = np.zeros((960, 400), np.float32)  # letterboxed at scale 0.4, no offset
    maps = np.stack([centre_heatmap(SPINE, COUNT_INPUT), centre_heatmap(SPINE[T1:T1 + 1], COUNT_INPUT)])
    ref = count_reference(_FixedCounter(maps), image)
    _, scale, offset = letterbox(image)
    assert scale == pytest.approx(0.4)
    # the peaks are whole input pixels: within half of one, 1.25 image pixels
    np.testing.assert_allclose(ref, (SPINE[L1:L5 + 1] - offset) / scale, atol=1.3)
    assert count_reference(_FixedCounter(maps * [[[1.0]], [[0.1]]]), image) is None  # no T1
    # the stand-in gives the same maps for the mirror: the symmetric spine (x = 80 of 160) agrees with itself,
    # a spine off the middle does not
    np.testing.assert_allclose(count_reference(_FixedCounter(maps), image, mirror_check=True), ref)
    aside = np.stack([centre_heatmap(SPINE - [40.0, 0.0], COUNT_INPUT),
                      centre_heatmap(SPINE[T1:T1 + 1] - [40.0, 0.0], COUNT_INPUT)])
    assert count_reference(_FixedCounter(aside), image) is not None
    assert count_reference(_FixedCounter(aside), image, mirror_check=True) is None


class _FixedMaps(torch.nn.Module):
    """A stand-in Pose-Net: Gaussian maps at given heatmap positions, whatever the input."""

    def __init__(self, heatmap_xy: np.ndarray, size: int) -> None:
        super().__init__()
        self.maps = render_gaussians(torch.as_tensor(heatmap_xy, dtype=torch.float64), torch.tensor(1.0),
                                     size // 8, size // 8).float()[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps


@pytest.mark.parametrize("window_offset", [1, -1])
def test_framed_detection_with_a_count_renames_the_window_chain(window_offset):
    """The window Pose-Net names the chain a level off (low: +1, high: -1); the counter's L1-L5 brings it back."""
    image = np.zeros((480, 200), np.float32)  # letterboxed at scale 0.8, no offset
    spine = SPINE / 0.8  # image pixels
    truth = spine[L1:L5 + 1]
    below = spine[L5] * 2 - spine[L5 - 1]  # one step under L5
    seq = np.concatenate([spine, below[None]])
    # its T11, T12, L1 .. L5, one level off; channels L1..L5, T11, T12
    named = seq[L1 - 2 + window_offset:L5 + 1 + window_offset]
    names = np.concatenate([named[2:], named[:2]])
    codec = CentreHeatmapCodec("ap", input_size=256, heatmap_size=32)
    inv = np.linalg.inv(window_affine(*whole_image_window(image.shape), 256))
    window_net = _FixedMaps(codec.input_to_heatmap(names @ inv[:2, :2].T + inv[:2, 2]), 256)
    maps = np.stack([centre_heatmap(SPINE, COUNT_INPUT), centre_heatmap(SPINE[T1:T1 + 1], COUNT_INPUT)])
    counter = CountPass(net=_FixedCounter(maps), above_channels=(5, 6))
    out = detect_centres_framed(window_net, image, codec, passes=1, repair=False, level=counter)
    assert out["level_shift"] == -window_offset
    assert out["level_check"] == {"source": "vertebra_counter", "status": "renamed", "shift": -window_offset}
    np.testing.assert_allclose(out["original"], truth, atol=6.0)
    no_t1 = CountPass(net=_FixedCounter(maps * [[[1.0]], [[0.1]]]), above_channels=(5, 6))
    plain = detect_centres_framed(window_net, image, codec, passes=1, repair=False, level=no_t1)
    assert plain["level_shift"] == 0
    assert plain["level_check"] == {"source": "vertebra_counter", "status": "not_counted", "shift": 0}
    np.testing.assert_allclose(plain["original"], named[2:], atol=6.0)
    assert detect_centres_framed(window_net, image, codec, passes=1, repair=False)["level_check"] is None


def test_training_view_moves_the_centres_with_the_image():
    image = np.zeros(COUNT_INPUT, np.float32)
    for x, y in SPINE[T1:]:
        image[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 1.0
    view = RandCountViewd(zoom=(0.8, 0.8), rotate=8.0, gamma=(1.0, 1.0))
    view.set_random_state(3)
    d = view({"image": image, "centres": SPINE[T1:] + 0.0})
    assert d["image"].shape == (1, *COUNT_INPUT) and d["label"].shape == (2, *COUNT_INPUT)
    img = d["image"][0].numpy()
    for x, y in d["centres"].numpy():
        if 2 <= x < COUNT_INPUT[1] - 2 and 2 <= y < COUNT_INPUT[0] - 2:
            assert img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2].max() > 0.3
    np.testing.assert_allclose(t1_peak(d["label"][1].numpy()), d["centres"][0].numpy(), atol=1.0)
    plain = RandCountViewd(jitter=False)({"image": image, "centres": SPINE[T1:] + 0.0})
    np.testing.assert_array_equal(plain["image"][0].numpy(), image)


def test_count_error_metric():
    target = torch.as_tensor(counter_target(SPINE[T1:]))[None]
    logit = torch.logit(target.clamp(1e-4, 1 - 1e-4))
    metric = CountError()
    metric.update((logit, target))
    assert metric.compute() == 0.0
    low = torch.as_tensor(counter_target(SPINE[T1:] + [0.0, 20.0]))[None]  # a level low, about
    metric.update((torch.logit(low.clamp(1e-4, 1 - 1e-4)), target))
    assert metric.compute() == 50.0
    no_t1 = target.clone()
    no_t1[:, 1] = 0.0
    metric.update((torch.logit(no_t1.clamp(1e-4, 1 - 1e-4)), target))  # refused: a quarter of a wrong count
    assert metric.compute() == pytest.approx(100.0 * 1.25 / 3)


def test_load_matching_grows_the_output_layer():
    small = build_counter_net((4, 4, 8, 8, 8, 4))
    wide = build_counter_net((4, 4, 8, 8, 8, 4))
    state = {k: v.clone() for k, v in small.state_dict().items()}
    state["final_conv.weight"] = state["final_conv.weight"][:1]
    state["final_conv.bias"] = state["final_conv.bias"][:1]
    assert load_matching(wide, state) == len(state)
    torch.testing.assert_close(wide.state_dict()["final_conv.weight"][:1], state["final_conv.weight"])


def test_train_attach_and_predict_with_a_counter(tmp_path):
    """Train the counter for one epoch on three AASCE images, attach it to the shipped model, predict; the settings
    travel in the checkpoint and are checked when read."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _paths import REPO
    from test_gpu_kit import SHIPPED, _mini_aasce

    from lumbar_monai.errors import InputError
    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json
    from lumbar_monai.predictor import LandmarkPredictor
    from lumbar_monai.training.counter import attach_counter, train_counter

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    root = _mini_aasce(tmp_path, [0, 1, 2])
    pairs = read_aasce(root, outside="skip")
    items = [{"image": str(p), "label": str(write_annotation_json(tmp_path / "labels" / f"{i}.json", a)),
              "aasce_order": "anatomical"} for i, (p, a) in enumerate(pairs)]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": items[:2], "validation": items[2:], "test": []}))
    r = train_counter(datalist, tmp_path / "counter", epochs=1, long_side=512, batch_size=2, input_size=(192, 80),
                      median_target="training")  # on standardised contrast, as the shipped counter
    assert r["epochs"] == 1 and 0.0 <= r["count_error"] <= 100.0
    target = torch.load(r["path"], map_location="cpu", weights_only=True)["median_target"]
    assert 0.0 < target < 1.0  # fitted on the two training images, kept with the weights
    # the window networks alone, their auxiliary channels unnamed (as the round-4 Pose-Net's checkpoint was)
    legacy = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    shipped_size = legacy["stage1"]["count"]["input_size"]
    legacy["stage1_counter"] = None
    for key in ("count", "aux_vertebrae"):
        legacy["stage1"].pop(key, None)
    torch.save(legacy, tmp_path / "legacy.pt")
    with pytest.raises(InputError, match="2 auxiliary channels, not 1"):
        attach_counter(tmp_path / "legacy.pt", r["path"], tmp_path / "model.pt", aux_vertebrae=["T12"])
    assert "count" not in LandmarkPredictor.load(tmp_path / "legacy.pt", device="cpu").stage1
    # a model's counter can be attached to other window networks: the shipped one's, with its letterbox
    reused = LandmarkPredictor.load(attach_counter(tmp_path / "legacy.pt", SHIPPED, tmp_path / "reused.pt",
                                                   aux_vertebrae=["T11", "T12"]), device="cpu")
    assert reused.stage1["count"]["input_size"] == shipped_size and reused.counter_net is not None
    with pytest.raises(InputError, match="holds no vertebra counter"):
        attach_counter(SHIPPED, tmp_path / "legacy.pt", tmp_path / "x.pt")
    model = attach_counter(tmp_path / "legacy.pt", r["path"], tmp_path / "model.pt", margin=0.3,
                           aux_vertebrae=["T11", "T12"])
    pred = LandmarkPredictor.load(model, device="cpu")
    assert pred.stage1["count"] == {"above": ["T11", "T12"], "margin": 0.3, "agreement": 0.5, "threshold": 0.5,
                                  "min_distance": 8.0, "mirror_check": False, "input_size": [192, 80],
                                  "median_target": target}  # the counter's own, as it was trained
    assert isinstance(pred.level_pass(), CountPass) and pred.level_pass().above_channels == (5, 6)
    assert pred.level_pass().input_size == (192, 80)  # the counter's own letterbox, from its checkpoint
    res = pred.predict(pairs[0][0])
    assert res.centres.shape == (5, 2) and np.isfinite(res.centres).all()
    small = pred.save(tmp_path / "half.pt", half=["lumbar", "stage1_counter"])
    raw = torch.load(small, map_location="cpu", weights_only=True)
    for name in ("lumbar", "stage1_counter"):
        assert all(v.dtype != torch.float32 for v in raw[name]["state_dict"].values())
    assert any(v.dtype == torch.float32 for v in raw["stage1"]["state_dict"].values())  # the Pose-Net stays
    assert small.stat().st_size < model.stat().st_size
    halved = LandmarkPredictor.load(small, device="cpu")
    assert next(halved.counter_net.parameters()).dtype == torch.float32
    np.testing.assert_allclose(halved.predict(pairs[0][0]).centres, res.centres, atol=2.0)
    with pytest.raises(ValueError, match="no network 'sacrum'"):
        pred.save(tmp_path / "x.pt", half=["sacrum"])
    check = subprocess.run([sys.executable, "benchmarks/count_check.py", "--model", str(model), "--datalist",
                            str(datalist), "--split", "training", "--mirror-check", "on"], cwd=REPO,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "split training, 2 images; mirror check on" in check.stdout
    row = next(line for line in check.stdout.splitlines() if line.startswith("| images |"))
    assert sum(int(v) for v in row.strip("|").split("|")[1:]) == 2  # every image in one class
    assert "| window Pose-Net alone |" in check.stdout and "| renamed by the count |" in check.stdout
    refused = subprocess.run([sys.executable, "benchmarks/count_check.py", "--model", str(tmp_path / "legacy.pt"), "--datalist",
                              str(datalist)], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode != 0 and "no vertebra counter" in refused.stderr
    ck = pred.checkpoint()
    ck["stage1"]["count"]["above"] = ["T10"]
    with pytest.raises(ValueError, match="not among"):
        LandmarkPredictor.from_checkpoint(ck, device="cpu")
    ck["stage1"]["count"]["above"] = []
    ck["stage1"]["count"]["input_size"] = [200, 80]
    with pytest.raises(ValueError, match="multiples of 16"):
        LandmarkPredictor.from_checkpoint(ck, device="cpu")
    ck["stage1"]["count"].pop("input_size")  # a checkpoint written before the setting: the default letterbox
    assert LandmarkPredictor.from_checkpoint(ck, device="cpu").stage1["count"]["input_size"] == list(COUNT_INPUT)
    ck["stage1"].pop("framing")
    with pytest.raises(ValueError, match="framed stage 1"):
        LandmarkPredictor.from_checkpoint(ck, device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.counter", "attach", "--model", str(SHIPPED),
                           "--counter", str(bad), "--out", str(tmp_path / "x.pt")], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "bad.pt" in proc.stderr


def test_a_count_that_no_renaming_matches_renames_nothing():
    """A count five levels off (e.g. started on a cervical vertebra) is beyond the shifts the window's names allow:
    with the agreement check the window's own names stand."""
    from lumbar_monai.levels import anchor_chain

    spine = SPINE[T1:] * 3.0  # T1 .. L5
    l1, l5 = L1 - 1, L5 - 1
    window = spine[l1 - 3:l5]  # the window's T11, T12, L1-L5, one level high: T10 .. L4
    off = spine[l1 - 5:l5 - 4]  # the count five levels high: T8 .. T12
    _, _, free, _ = anchor_chain(off, window, np.ones(7), above=2)
    assert free == -2  # without the check the chain is dragged up as far as it goes
    _, _, shift, status = anchor_chain(off, window, np.ones(7), above=2, agreement=0.5)
    assert shift == 0 and status == "disputed"
    _, _, right, _ = anchor_chain(spine[l1:l5 + 1], window, np.ones(7), above=2, agreement=0.5)
    assert right == 1


def test_a_view_cut_below_t1_has_no_t1_target():
    image = np.ones(COUNT_INPUT, np.float32)
    view = RandCountViewd(zoom=(1.0, 1.0), rotate=0.0, shift=(0.0, 0.0), gamma=(1.0, 1.0), top_cut_prob=1.0)
    view.set_random_state(0)
    d = view({"image": image, "centres": SPINE[T1:] + 0.0})
    label, img, c = d["label"].numpy(), d["image"][0].numpy(), d["centres"].numpy()
    assert label[1].max() < 1e-6  # T1 map empty
    row = int(np.argmax(img.max(axis=1) > 0))  # first row shown
    assert c[0, 1] <= row <= c[3, 1] + 1
    peaks = vertebra_peaks(label[0], threshold=0.5)
    assert len(peaks) == int((c[1:, 1] >= row - 1).sum()) and peaks[0, 1] >= row - 1


def test_a_view_cut_below_l5_keeps_every_target(monkeypatch):
    """A film that ends just below L5: the image is blank from a row BOTTOM_CUT L4-L5 distances under L5, every target
    stays; without the cut (the default) nothing is blanked; ``counter train --bottom-cut-prob`` reaches training."""
    image = np.ones(COUNT_INPUT, np.float32)
    plain = dict(zoom=(1.0, 1.0), rotate=0.0, shift=(0.0, 0.0), gamma=(1.0, 1.0))
    for seed in range(4):
        view = RandCountViewd(bottom_cut_prob=1.0, **plain)
        view.set_random_state(seed)
        d = view({"image": image, "centres": SPINE[T1:] + 0.0})
        img, c, label = d["image"][0].numpy(), d["centres"].numpy(), d["label"].numpy()
        gap = float(np.linalg.norm(c[-1] - c[-2]))
        row = int(np.argmax(img.max(axis=1) == 0))  # first blank row
        assert img[row:].max() == 0.0 and img[:row].min() > 0.0
        assert c[-1, 1] + BOTTOM_CUT[0] * gap <= row <= c[-1, 1] + BOTTOM_CUT[1] * gap + 1
        assert len(vertebra_peaks(label[0], threshold=0.5)) == len(c)
    uncut = RandCountViewd(**plain)
    uncut.set_random_state(0)
    assert uncut({"image": image, "centres": SPINE[T1:] + 0.0})["image"].min() > 0.0
    import lumbar_monai.training.counter as counter

    seen = {}

    def fake_train(*args, **kwargs):
        seen.update(kwargs)
        return {"epochs": 0, "count_error": 0.0, "path": "x"}

    monkeypatch.setattr(counter, "train_counter", fake_train)
    counter.main(["train", "--datalist", "d.json", "--out", "o", "--bottom-cut-prob", "0.3"])
    assert seen["bottom_cut_prob"] == 0.3 and seen["top_cut_prob"] == 0.0


@pytest.mark.parametrize("status", ["renamed", "disputed", "confirmed", "not_counted"])
def test_predictor_reports_the_level_check(status, tmp_path, monkeypatch):
    """The predictor carries stage 1's level check into the result's meta and QC flags, and both reach the JSON."""
    from pathlib import Path

    import lumbar_monai.framing as framing
    from lumbar_monai.io.result_json import read_result_json, write_result_json
    from lumbar_monai.predictor import LandmarkPredictor
    from lumbar_monai.result import QC_FLAGS

    shipped = Path(__file__).resolve().parents[1] / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"
    if not shipped.is_file():
        pytest.skip("shipped AP model not found")
    image = np.zeros((500, 200), np.float32)
    image[100:400, 80:120] = 1.0
    centres = np.stack([np.full(5, 100.0), 150.0 + 50.0 * np.arange(5)], axis=1)
    check = {"source": "vertebra_counter", "status": status, "shift": 1 if status == "renamed" else 0}

    def fixed(*args, **kwargs):
        assert isinstance(kwargs["level"], CountPass)
        return {"original": centres, "confidence": np.ones(5), "centre_repaired": False, "windows": [],
                "level_shift": check["shift"], "level_check": dict(check), "second_peak": 0.0}

    monkeypatch.setattr(framing, "detect_centres_framed", fixed)
    res = LandmarkPredictor.load(shipped, device="cpu").predict(image, facing="standard")
    np.testing.assert_allclose(res.centres, centres)
    assert res.meta["level_check"] == check
    flags = {f for f in res.qc_flags if f.startswith("level_")}
    assert flags == (set() if status == "confirmed" else {"level_unconfirmed"})
    assert flags <= set(QC_FLAGS)
    write_result_json(tmp_path / "r.json", res)
    back, _ = read_result_json(tmp_path / "r.json")
    assert back.meta["level_check"] == check and back.qc_flags == res.qc_flags
    if status == "renamed":  # the batch's measurements.csv has a column for it
        import csv

        from PIL import Image

        from lumbar_monai.batch import run_batch

        (tmp_path / "in").mkdir()
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "in" / "a.png")
        pred = LandmarkPredictor.load(shipped, device="cpu")
        rows = list(csv.DictReader(run_batch(tmp_path / "in", tmp_path / "out", pred,
                                             progress=False).measurements_csv.open()))
        assert [r["level_check"] for r in rows] == ["renamed"] and "level_unconfirmed" in rows[0]["qc_flags"]


def test_centre_answer_is_still_the_triple():
    """``detect_centres`` keeps answering ``(centres, confidence, repaired)``; the level check rides beside it."""
    import pickle

    from lumbar_monai.result import CentreAnswer

    check = {"source": "vertebra_counter", "status": "confirmed", "shift": 0}
    answer = CentreAnswer(np.zeros((5, 2)), np.ones(5), False, check)
    centres, confidence, repaired = answer
    assert centres is answer.centres and confidence is answer.confidence and repaired is False
    assert answer.level_check == check and CentreAnswer(centres, confidence, True).level_check is None
    back = pickle.loads(pickle.dumps(answer))
    assert back.level_check == check and len(back) == 3
