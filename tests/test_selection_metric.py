"""Model selection by the landmark metric: PeakDistance measures where the peaks land, in input pixels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ignite.exceptions import NotComputableError

from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.metrics.selection import LANDMARK_METRIC, PeakDistance

pytestmark = pytest.mark.compat


def _maps(points, size=32, sigma=1.5):
    return render_gaussians(torch.as_tensor(points, dtype=torch.float32), sigma, size, size)


def test_peak_distance_in_input_pixels_skips_the_paf_and_empty_targets():
    target = _maps([[[10.0, 12.0], [20.0, 5.0]]])  # (1, 2, 32, 32)
    pred = _maps([[[13.0, 16.0], [20.0, 5.0]]])  # first peak 5 map px off (3-4-5), second exact
    paf = torch.full((1, 1, 32, 32), 7.0)  # a PAF channel that must not count
    m = PeakDistance(num_channels=2, scale=8.0)
    m.update((torch.cat([pred, paf], 1), torch.cat([target, paf], 1)))
    assert m.compute() == pytest.approx(8.0 * 5.0 / 2, rel=1e-3)
    m.reset()
    empty = target.clone()
    empty[:, 1] = 0.0  # unannotated second landmark
    m.update(((pred, pred[:, :1]), empty))  # Pose-Net's (final, pre-prediction) tuple
    assert m.compute() == pytest.approx(8.0 * 5.0, rel=1e-3)
    m.reset()
    with pytest.raises(NotComputableError):
        m.compute()


def test_the_bundle_keeps_its_best_checkpoints_by_the_landmark_metric():
    cfg = json.loads((Path(__file__).resolve().parents[1] / "bundles/lumbar_landmarks/configs/train.json").read_text())
    v = cfg["validate"]
    evaluators = [v["key_metric"], v["mnet_lumbar"]["evaluator"]["key_val_metric"],
                  v["mnet_sacrum"]["evaluator"]["key_val_metric"]]
    assert all(list(k) == [LANDMARK_METRIC] for k in evaluators)
    savers = [h for st in (v["handlers"], v["mnet_lumbar"]["handlers"], v["mnet_sacrum"]["handlers"]) for h in st
              if isinstance(h, dict) and h.get("key_metric_filename")]
    assert len(savers) == 3 and all(h["key_metric_name"] == LANDMARK_METRIC for h in savers)
