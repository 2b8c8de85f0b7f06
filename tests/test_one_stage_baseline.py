"""The one-stage MONAI BasicUNet baseline: targets, back-mapping to the original image, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from lumbar_monai.anatomy import get_layout
from lumbar_monai.baselines.one_stage import (
    CHECKPOINT_FORMAT,
    LandmarkHeatmapd,
    OneStagePredictor,
    build_network,
    one_stage_transforms,
)
from lumbar_monai.codecs.gaussian import decode_peaks
from lumbar_monai.loading import load_predictor
from lumbar_monai.predictor import LandmarkPredictor
from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph
from lumbar_monai.transforms.augment import stage1_preprocessing


def test_landmark_maps_decode_to_their_points():
    pts = np.array([[10.3, 20.7], [40.0, 5.25], [31.9, 60.1]])
    maps = LandmarkHeatmapd(size=64, sigma=2.0)({"points": pts})["label"]
    assert maps.shape == (3, 64, 64)
    xy, conf = decode_peaks(maps)
    np.testing.assert_allclose(xy.numpy(), pts, atol=0.02)
    assert float(conf.min()) > 0.9


class _Oracle(torch.nn.Module):
    """Returns fixed maps whatever the input (the ground truth drawn in input pixels)."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps = maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps[None].to(x.device)


def _study(seed: int, layout: str, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic radiograph; for the AP layout its 20 lumbar corners stand in for AP landmarks (geometry only)."""
    r = generate_radiograph(seed, SyntheticConfig(max_side=max_side))
    pts = np.asarray(r.points, np.float64)[: get_layout(layout).num_points]
    return np.asarray(r.image, np.float32), pts


@pytest.mark.parametrize("layout", ["lateral", "ap"])
def test_predictor_maps_peaks_back_to_original_pixels(layout):
    img, pts = _study(3, layout, 400)
    size = 128
    sample = Compose(stage1_preprocessing(size=size))({"image": img[None], "points": pts})
    maps = LandmarkHeatmapd(size=size, sigma=2.0)(sample)["label"]
    pred = OneStagePredictor(layout, _Oracle(maps), input_size=size, device="cpu")
    res = pred(img)
    scale = max(img.shape) / size  # one input pixel in original pixels
    assert np.abs(res.points - pts).max() < 0.05 * scale
    np.testing.assert_allclose(res.centres, get_layout(layout).centres(res.points))
    assert res.image_size == (img.shape[1], img.shape[0])
    with pytest.raises(ValueError, match="centres"):
        pred(img, centres=np.zeros((get_layout(layout).num_vertebrae, 2)))


def test_checkpoint_round_trip_through_load_predictor(tmp_path):
    torch.manual_seed(0)
    net = build_network("ap", features=(4, 4, 8, 8, 16, 4), zero_init_head=False)  # non-zero maps to compare
    pred = OneStagePredictor("ap", net, input_size=64, network_kwargs={"features": [4, 4, 8, 8, 16, 4]},
                             device="cpu", meta={"trained_on": "synthetic"})
    path = pred.save(tmp_path / "one_stage.pt")
    assert torch.load(path, weights_only=True)["format"] == CHECKPOINT_FORMAT
    back = load_predictor(path, device="cpu")
    assert isinstance(back, OneStagePredictor) and back.layout.name == "ap"
    img, _ = _study(1, "ap", 300)
    np.testing.assert_allclose(back(img).points, pred(img).points)
    with pytest.raises(Exception, match="one_stage.pt.*invalid checkpoint"):
        LandmarkPredictor.load(path)  # the two-stage loader refuses it with the file's name


def test_training_transforms_give_image_and_maps(tmp_path):
    from lumbar_monai.io.datalist import load_landmark_datalist
    from lumbar_monai.workflows.data import prepare_datalist

    datalist = prepare_datalist(None, tmp_path, 4, 0, 300)
    item = load_landmark_datalist(datalist, "training")[0]
    hp = {"input_size": 64, "sigma": 1.5, "cutout": "none"}
    for train in (False, True):
        out = one_stage_transforms(train, hp, "lateral")(item)
        assert set(out) == {"image", "label"}
        assert tuple(out["image"].shape) == (1, 64, 64) and tuple(out["label"].shape) == (22, 64, 64)


def test_zero_initialised_head_starts_at_the_all_zero_solution():
    x = torch.rand(1, 1, 32, 32)
    torch.manual_seed(0)
    maps = build_network("lateral", features=(4, 4, 8, 8, 16, 4))(x)
    assert maps.shape == (1, get_layout("lateral").num_points, 32, 32) and torch.count_nonzero(maps) == 0
    torch.manual_seed(0)
    assert torch.count_nonzero(build_network("lateral", features=(4, 4, 8, 8, 16, 4), zero_init_head=False)(x)) > 0


def test_command_line_refuses_two_stage_options_for_a_one_stage_model(tmp_path, capsys):
    from PIL import Image

    from lumbar_monai.cli import main

    net = build_network("ap", features=(4, 4, 8, 8, 16, 4))
    path = OneStagePredictor("ap", net, input_size=64, network_kwargs={"features": [4, 4, 8, 8, 16, 4]},
                             device="cpu").save(tmp_path / "one_stage.pt")
    img, _ = _study(1, "ap", 120)
    Image.fromarray((img / img.max() * 255).astype("uint8")).save(tmp_path / "ap.png")
    for option in (["--tta", "mirror"], ["--centre-refinement", "1"]):
        capsys.readouterr()
        rc = main(["predict", str(tmp_path / "ap.png"), "--out", str(tmp_path / option[0].strip("-")),
                   "--model", str(path), "--no-progress", *option])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "two-stage model" in err[0]
