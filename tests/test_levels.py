"""Level anchoring (issue 15): a level network's whole-image L1-L5 chain, counted from the top of the spine, renames
the window Pose-Net's chain by whole levels; the predictor carries the level network in its checkpoint."""

import numpy as np
import pytest
import torch

from lumbar_monai.codecs.centre import CentreHeatmapCodec
from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.framing import LevelPass, detect_centres_framed, lumbar_window, window_affine
from lumbar_monai.levels import anchor_chain, centre_spacing, chain_shift, level_costs, level_decision, shifted_chain

# a straight spine, centres 30 px apart: T11, T12, L1 .. L5, S1 (x, y)
SPINE = np.stack([np.full(8, 100.0), 100.0 + 30.0 * np.arange(8)], axis=1)
T11, T12, L1, L5, S1 = 0, 1, 2, 6, 7


def test_centre_spacing_is_robust_to_one_misplaced_centre():
    c = SPINE[L1:L5 + 1].copy()
    assert centre_spacing(c) == pytest.approx(30.0)
    c[2] += [0.0, 20.0]
    assert centre_spacing(c) == pytest.approx(30.0, rel=0.1)
    c[1:] = np.nan
    with pytest.raises(ValueError, match="two finite"):
        centre_spacing(c)


def test_shifted_chain_reads_up_and_extends_down():
    seq = SPINE[T11:L5 + 1]  # T11, T12, L1 .. L5
    np.testing.assert_allclose(shifted_chain(seq, 2, 0, 5), SPINE[L1:L5 + 1])
    np.testing.assert_allclose(shifted_chain(seq, 2, -1, 5), SPINE[T12:L5])
    np.testing.assert_allclose(shifted_chain(seq, 2, 1, 5), SPINE[L1 + 1:S1 + 1])  # one step past L5
    with pytest.raises(ValueError, match="above"):
        shifted_chain(seq, 2, -3, 5)


@pytest.mark.parametrize("window_offset", [-1, 0, 1])
def test_anchor_renames_a_chain_a_level_off(window_offset):
    """The window names the chain ``window_offset`` levels low (+1: its "L1" is the true L2); a coarse reference
    (a quarter spacing off) names the true L1-L5."""
    rng = np.random.default_rng(0)
    truth = SPINE[L1:L5 + 1]
    reference = truth + rng.uniform(-7.5, 7.5, truth.shape)
    full = np.concatenate([SPINE[:1] - [0, 30.0], SPINE, SPINE[-1:] + [0, 30.0]])  # T10 .. L6 for the shifts
    start = 1 + window_offset  # T11 of the window's names in `full`
    sequence = full[start:start + 7]
    conf = np.linspace(0.9, 0.3, 7)
    chain, c, shift, status = anchor_chain(reference, sequence, conf, above=2)
    assert shift == -window_offset
    assert status == ("confirmed" if window_offset == 0 else "renamed")
    np.testing.assert_allclose(chain, truth, atol=1e-9)
    assert len(c) == 5 and np.isfinite(c).all()


def test_anchor_keeps_the_window_names_within_the_margin():
    truth = SPINE[L1:L5 + 1]
    halfway = truth - [0.0, 16.0]  # a reference just over half a level high: no clear answer
    chain, _, shift, status = anchor_chain(halfway, SPINE[T11:L5 + 1], np.ones(7), above=2, margin=0.25)
    assert shift == 0 and np.allclose(chain, truth)
    assert status == "disputed"  # a reference half a level off neither confirms the names nor renames them
    costs = level_costs(halfway, SPINE[T11:L5 + 1], above=2)
    assert set(costs) == {-2, -1, 0, 1} and costs[-1] < costs[0]  # closer, but not by the margin
    assert level_decision(costs, margin=0.25) == (0, "disputed")
    assert level_decision(costs, margin=0.0) == (-1, "renamed")
    assert level_decision(costs, margin=0.0, agreement=0.1) == (0, "disputed")  # the best is too far
    assert level_decision({-1: 0.9, 0: 0.05, 1: 1.1}, agreement=0.5) == (0, "confirmed")
    nan_above = SPINE[T11:L5 + 1].copy()
    nan_above[:2] = np.nan
    assert level_costs(truth - [0, 30.0], nan_above, above=2)[-1] == np.inf
    with pytest.raises(ValueError, match="7 rows"):
        anchor_chain(truth, SPINE[:6], np.ones(6), above=2)


class _FixedMaps(torch.nn.Module):
    """A stand-in Pose-Net: Gaussian maps at given heatmap positions, whatever the input; records input sides."""

    def __init__(self, heatmap_xy: np.ndarray, size: int) -> None:
        super().__init__()
        self.maps = render_gaussians(torch.as_tensor(heatmap_xy, dtype=torch.float64), torch.tensor(1.0),
                                     size // 8, size // 8).float()[None]
        self.sides: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sides.append(int(x.shape[-1]))
        return self.maps


def test_framed_detection_with_a_level_pass_renames_the_window_chain():
    """Pass 1 is the level network at its own input side; the window pass names the chain one level low (its
    L1-L5 on the true L2-S1, its T11/T12 on the true T12/L1); the result is the true L1-L5."""
    image = np.zeros((400, 200), np.float32)
    level_codec = CentreHeatmapCodec("ap", input_size=128, heatmap_size=16)
    whole = window_affine(*((99.5, 199.5), 400.0), 128)  # the whole image's window (pad to square)
    truth = SPINE[L1:L5 + 1]
    to_level = np.linalg.inv(whole)
    level_hm = level_codec.input_to_heatmap(truth @ to_level[:2, :2].T + to_level[:2, 2])
    level_net = _FixedMaps(level_hm, 128)
    # the window the level chain leads to, and the window net's maps in it (channels L1..L5, T11, T12)
    codec = CentreHeatmapCodec("ap", input_size=64, heatmap_size=8)
    centre, side = lumbar_window(truth, 2.0)
    a = window_affine(centre, side, 64)
    names = np.concatenate([SPINE[L1 + 1:S1 + 1], SPINE[[T11 + 1, T12 + 1]]])  # one level low
    inv = np.linalg.inv(a)
    window_net = _FixedMaps(codec.input_to_heatmap(names @ inv[:2, :2].T + inv[:2, 2]), 64)
    level = LevelPass(net=level_net, codec=level_codec, above_channels=(5, 6))
    out = detect_centres_framed(window_net, image, codec, passes=2, repair=False, level=level)
    assert level_net.sides == [128] and window_net.sides == [64]
    assert out["level_shift"] == -1
    np.testing.assert_allclose(out["original"], truth, atol=1.5)
    plain = detect_centres_framed(window_net, image, codec, passes=2, repair=False,
                                  level=LevelPass(net=level_net, codec=level_codec))  # no channels over L1
    assert plain["level_shift"] == 0 and np.allclose(plain["original"], names[:5], atol=1.5)


def test_export_carries_the_level_network_and_the_predictor_checks_it(tmp_path):
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs
    from lumbar_monai.training.framed import _save_stage, export, vertebrae_above_l1

    assert vertebrae_above_l1(["T11", "T12"]) == ["T11", "T12"]
    assert vertebrae_above_l1(["T12", "T11", "T1", "T9"]) == ["T11", "T12"]  # T10 missing: the run stops at T11
    assert vertebrae_above_l1(["T11"]) == []
    pose = with_init_kwargs(PoseNet, layout="ap", width=4, kernel_size=5, pre_convs=1, stage_convs=1, out_channels=7)
    _save_stage(tmp_path / "posenet.pt", pose, {"aux_vertebrae": ["T11", "T12"], "input_size": 64})
    mnet = with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2)
    _save_stage(tmp_path / "mnet_lumbar.pt", mnet, {"crop_size": 32, "crop_blur_sigma": 0.0})
    lv = with_init_kwargs(PoseNet, layout="ap", width=4, kernel_size=5, pre_convs=1, stage_convs=1, out_channels=9)
    _save_stage(tmp_path / "level.pt", lv, {"aux_vertebrae": ["T9", "T10", "T11", "T12"]})
    schedule = {"framing": {"factor": 2.0, "passes": 2}, "posenet": {"input_size": 64}}
    with pytest.raises(ValueError, match="input size"):
        export(tmp_path, schedule, "ap", tmp_path / "model.pt", {}, level=tmp_path / "level.pt")
    path = export(tmp_path, schedule, "ap", tmp_path / "model.pt", {"trained_on": "test"}, level=tmp_path / "level.pt",
                  level_input_size=96, level_margin=0.3)
    pred = LandmarkPredictor.load(path, device="cpu")
    assert pred.stage1["level"] == {"input_size": 96, "above": ["T11", "T12"], "margin": 0.3}
    assert pred.level_net.out_channels == 9 and pred.level_pass().above_channels == (5, 6)
    res = pred.predict(np.random.default_rng(1).random((300, 120)).astype(np.float32))
    assert res.centres.shape == (5, 2)
    again = LandmarkPredictor.from_checkpoint(pred.checkpoint(), device="cpu")
    assert again.stage1["level"] == pred.stage1["level"]
    ck = pred.checkpoint()
    ck["stage1"]["level"]["above"] = ["T10"]
    with pytest.raises(ValueError, match="not among"):
        LandmarkPredictor.from_checkpoint(ck, device="cpu")
    ck["stage1"]["level"]["above"] = []
    ck["stage1"].pop("framing")
    with pytest.raises(ValueError, match="framed stage 1"):
        LandmarkPredictor.from_checkpoint(ck, device="cpu")


LABELLED = np.stack([np.full(5, 50.0), 100.0 + 20.0 * np.arange(5)], axis=1)


def test_chain_shift_is_in_labelled_spacings_and_positive_downwards():
    assert chain_shift(LABELLED, LABELLED) == 0.0
    assert chain_shift(LABELLED + [3.0, 20.0], LABELLED) == pytest.approx(1.0)  # a level low (caudal)
    assert chain_shift(LABELLED - [0.0, 10.0], LABELLED) == pytest.approx(-0.5)
    assert np.isnan(chain_shift(None, LABELLED))
