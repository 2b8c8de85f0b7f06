"""The bundle's own ``training`` (``monai.bundle run training``, the path the demo and the README use) learns: a tiny
synthetic run whose held-out centre error beats the trivial predictor (each image's centres at the mean training
position). ``tests/test_stage1_training.py`` checks the same for the programmatic ``training.fit`` path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _bundle_helpers import run_bundle
from PIL import Image

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.io.annotations import read_annotation_json

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "bundles" / "lumbar_landmarks" / "configs" / "train.json"
# 40 synthetic studies (28 train / 6 validation / 6 test), Pose-Net at 128 px without augmentation (it learns the
# faster), 20 epochs; the M-Nets run one tiny epoch (the predictor checkpoint needs them) and play no part here
LEARN = [
    "--synthetic#n", "40", "--synthetic#max_side", "256",
    "--posenet#input_size", "128", "--posenet#heatmap_size", "16", "--posenet#width", "8",
    "--posenet#kernel_size", "7", "--posenet#max_epochs", "20", "--posenet#batch_size", "4",
    "--posenet#augmentation", "{'cutout_prob': 0, 'affine_prob': 0, 'intensity_prob': 0}",
    "--mnet_lumbar#max_epochs", "1", "--mnet_sacrum#max_epochs", "1",
    "--mnet_lumbar#config#crop_size", "32", "--mnet_sacrum#config#crop_size", "32",
    "--mnet_lumbar#config#channels", "[4,8]", "--mnet_sacrum#config#channels", "[4,8]",
]


def _centres(item: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth centres ``(6, 2)`` in pixels and the image size ``(W, H)``."""
    with Image.open(item["image"]) as im:
        size = np.asarray(im.size, dtype=np.float64)
    return LATERAL.centres(read_annotation_json(item["label"]).points), size


def test_bundle_training_beats_the_mean_position(tmp_path):
    from lumbar_monai.io.datalist import load_landmark_datalist
    from lumbar_monai.predictor import LandmarkPredictor

    run_bundle(["run", "training", "--config_file", str(CONFIG), "--output_dir", str(tmp_path), *LEARN])
    datalist = tmp_path / "synthetic" / "datalist.json"
    train = [_centres(it) for it in load_landmark_datalist(datalist, "training")]
    mean_rel = np.mean([c / size for c, size in train], axis=0)  # (6, 2) as a fraction of width and height
    predictor = LandmarkPredictor.load(tmp_path / "models" / "lumbar_landmarks.pt", device="cpu")
    net_err, const_err = [], []
    for item in load_landmark_datalist(datalist, "test"):
        truth, size = _centres(item)
        # the predictor's stage 1 (pre-processing, Pose-Net, decoding, Algorithm 1) told the facing: with "auto" the
        # one-epoch M-Nets, which take part in that choice, would only add noise
        facing = read_annotation_json(item["label"]).facing
        pred = predictor.predict(item["image"], facing=facing).centres
        net_err.append(np.linalg.norm(pred - truth, axis=1).mean())
        const_err.append(np.linalg.norm(mean_rel * size - truth, axis=1).mean())
    errors = (float(np.mean(net_err)), float(np.mean(const_err)))
    print(f"held-out centre error: bundle Pose-Net {errors[0]:.1f} px, mean training position {errors[1]:.1f} px")
    assert len(net_err) >= 4
    assert errors[1] > 5.0, errors  # the spine moves around: the constant guess is poor
    assert errors[0] < 0.6 * errors[1], errors  # 10.1 vs 28.8 px when this test was written
    done = json.loads((tmp_path / "models" / "posenet.done.json").read_text())
    assert done["epochs"] >= 5, done  # not stopped early after an epoch or two
