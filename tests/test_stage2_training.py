from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.codecs.corner import CornerCodec
from lumbar_monai.codecs.paf import PAFCodec
from lumbar_monai.crops import crop_to_image
from lumbar_monai.training.stage2 import (
    CornerTargetsd,
    Stage2Config,
    evaluate_crops,
    mean_crop_shape,
    stage2_transforms,
    train_stage2,
)


def _sample(seed: int):
    """A synthetic radiograph at most 256 px a side, patient facing left (one corner template to learn)."""
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph

    r = generate_radiograph(seed, SyntheticConfig(max_side=256, facing_right_prob=0.0))
    return {"image": r.image.astype(np.float32), "points": r.points}


def test_corner_targets_channels():
    corner = CornerCodec(LATERAL, "lumbar", size=32)
    paf = PAFCodec(LATERAL, "lumbar", size=32, width=2.0, reference_size=32)
    pts = np.array([[8.0, 8.0], [24.0, 8.0], [8.0, 20.0], [24.0, 20.0]])
    out = CornerTargetsd("points", corner, paf)({"points": pts})
    assert out["label"].shape == (5, 32, 32) and out["label"].dtype == torch.float32
    assert out["label"][0, 8, 8] == 1.0 and out["label"][3, 20, 24] == 1.0
    assert out["label"][4, 8, 16] == 1.0 and out["label"][4, 14, 16] == 0.0
    assert CornerTargetsd("points", corner, None)({"points": pts})["label"].shape == (4, 32, 32)


def test_stage2_transforms_make_one_crop_sample_per_vertebra():
    cfg = Stage2Config(kind="sacrum", crop_size=32)
    s = _sample(0)
    items = stage2_transforms(cfg, train=True)(s)
    assert len(items) == 1
    item = items[0]
    assert item["image"].shape == (1, 32, 32) and item["label"].shape == (3, 32, 32)
    back = crop_to_image(np.asarray(item["points"], float)[None], item["affine"][None])[0]
    np.testing.assert_allclose(back, s["points"][LATERAL.vertebra_slices[LATERAL.sacrum_index]], atol=1e-3)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0


def test_gamma_and_noise_change_only_the_intensities():
    """The optional intensity augmentations (off by default) alter the crop pixels, never the geometry or targets."""
    from monai.transforms import RandAdjustContrastd, RandGaussianNoised

    s = _sample(1)
    plain = Stage2Config(kind="lumbar", crop_size=32, translate=0.0, rotate=0.0, scale=(1.0, 1.0), intensity_prob=1.0,
                         brightness=0.0, contrast=0.0)
    heavy = Stage2Config(**{**plain.__dict__, "gamma": 0.5, "noise_std": 0.05})
    assert not any(isinstance(t, (RandAdjustContrastd, RandGaussianNoised))
                   for t in stage2_transforms(plain, train=True).transforms)
    chain = stage2_transforms(heavy, train=True)
    assert sum(isinstance(t, (RandAdjustContrastd, RandGaussianNoised)) for t in chain.transforms) == 2
    chain.set_random_state(seed=3)
    a, b = stage2_transforms(plain, train=True)(dict(s)), chain(dict(s))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["label"], y["label"]) and np.allclose(x["points"], y["points"])
        assert not torch.allclose(x["image"], y["image"], atol=1e-3)
    assert not any(isinstance(t, (RandAdjustContrastd, RandGaussianNoised))
                   for t in stage2_transforms(heavy, train=True, augment=False).transforms)


def test_schedules_set_the_crops_through_one_list():
    """``framed.train_mnet`` passes a schedule's crop keys on by :func:`schedule_settings`: each of
    :data:`SCHEDULE_FIELDS` is a field of :class:`Stage2Config` and arrives as that field's type, so a new setting
    is added in one place."""
    from dataclasses import fields

    from lumbar_monai.training.stage2 import SCHEDULE_FIELDS, schedule_settings

    assert set(SCHEDULE_FIELDS) <= {f.name for f in fields(Stage2Config)}
    got = schedule_settings({"crop_antialias": True, "scale": [0.8, 1.2], "gamma": 1, "lr": 5.0, "channels": [4]})
    assert got == {"crop_antialias": True, "scale": (0.8, 1.2), "gamma": 1.0}  # the network and the run are not its
    assert isinstance(got["gamma"], float)
    with pytest.raises(ValueError, match="'crop_antialias' is true or false"):
        schedule_settings({"crop_antialias": "false"})
    cfg = Stage2Config(layout="ap", crop_size=32, **got)
    assert [t.antialias for t in stage2_transforms(cfg, train=False).transforms if hasattr(t, "antialias")] == [True]


@pytest.mark.slow
def test_short_cpu_training_beats_the_mean_shape_baseline():
    # about a minute on one busy core: 32 synthetic images, 48 px crops, a narrow M-Net, 30 epochs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # oversubscribed OpenMP threads are many times slower on a shared machine
    try:
        train = [_sample(i) for i in range(32)]
        test = [_sample(1000 + i) for i in range(10)]
        cfg = Stage2Config(crop_size=48, channels=(8, 16, 32), batch_size=16, max_epochs=30, lr=5e-3,
                           linear_lr_decay=False, seed=0)
        out = train_stage2(train, cfg, val_samples=test[:2])
    finally:
        torch.set_num_threads(threads)
    assert out["history"][-1] < 0.5 * out["history"][0]
    assert len(out["val_history"]) == cfg.max_epochs
    baseline = mean_crop_shape(train, cfg)
    # jittered crops stand in for stage-1 centre errors: the mean shape cannot follow them, the M-Net must
    net_rd = evaluate_crops(out["network"], test, cfg, augment=True)["mean_rd"]
    base_rd = evaluate_crops(None, test, cfg, augment=True, mean_shape=baseline)["mean_rd"]
    assert net_rd < 0.5 * base_rd, (net_rd, base_rd)
    assert net_rd < 10.0
    # on crops centred on the ground truth too
    assert evaluate_crops(out["network"], test, cfg)["mean_rd"] < evaluate_crops(
        None, test, cfg, mean_shape=baseline)["mean_rd"]


@pytest.mark.parametrize("kind,paf,coordconv", [("sacrum", True, 1), ("lumbar", False, 0)])
def test_training_variants_run_and_feed_the_predictor(kind, paf, coordconv):
    from lumbar_monai.predictor import LandmarkPredictor

    cfg = Stage2Config(kind=kind, paf=paf, coordconv=coordconv, crop_size=32, channels=(4, 8), batch_size=8,
                       max_epochs=2, lr=1e-3, seed=1)
    out = train_stage2([_sample(i) for i in range(3)], cfg)
    net = out["network"]
    expected = {"lumbar": 4, "sacrum": 2}[kind] + (1 if paf else 0)
    assert out["network_kwargs"]["out_channels"] == expected and net.init_kwargs["coordconv"] == coordconv
    assert len(out["history"]) == 2 and all(np.isfinite(out["history"]))
    other = Stage2Config(kind="lumbar" if kind == "sacrum" else "sacrum", crop_size=32, channels=(4, 8))
    from lumbar_monai.training.stage2 import build_network

    nets = {kind: net, other.kind: build_network(other)}
    s = _sample(5)
    p = LandmarkPredictor(LATERAL, nets["lumbar"], nets["sacrum"], crop_size=32, device="cpu")
    res = p(s["image"], centres=LATERAL.centres(s["points"]))
    assert res.points.shape == (22, 2) and np.isfinite(res.points).all()


def test_early_stopping_after_patience_without_improvement():
    # lr 0: the validation loss never improves, so training stops after 1 + patience epochs
    cfg = Stage2Config(crop_size=32, channels=(4, 8), batch_size=8, max_epochs=10, patience=2, lr=0.0,
                       linear_lr_decay=False, seed=2)
    samples = [_sample(i) for i in range(2)]
    out = train_stage2(samples, cfg, val_samples=samples[:1])
    assert len(out["history"]) == 3 and len(out["val_history"]) == 3
    assert out["val_history"][0] == pytest.approx(out["val_history"][2])
