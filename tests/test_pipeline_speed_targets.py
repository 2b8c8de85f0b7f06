"""The faster training targets against the whole-grid formulas they replace, and stage 2's chain against its former
composition (blur inside VertebraCropsd, targets concatenated then cast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureTyped, ScaleIntensityd

from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.codecs.paf import PAFCodec, segment_distance
from lumbar_monai.crops import VertebraCropsd
from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph
from lumbar_monai.training.stage2 import CornerTargetsd, Stage2Config, _ChannelFirst, _codecs, stage2_transforms
from lumbar_monai.transforms.augment import RandBrightnessContrastd


def _paf_whole_grid(codec: PAFCodec, p: torch.Tensor) -> torch.Tensor:
    """The former PAFCodec.encode: distance to every segment on the whole grid, minimum, line profile."""
    ia = torch.tensor([s[0] for s in codec.segments])
    ib = torch.tensor([s[1] for s in codec.segments])
    d = segment_distance(p[..., ia, :], p[..., ib, :], *codec.size).amin(dim=-3, keepdim=True)
    half = 0.5 * codec.pixel_width
    return (d <= half).to(p.dtype) if codec.mode == "exact" else (half + 0.5 - d).clamp(0.0, 1.0)


@pytest.mark.parametrize("mode", ["exact", "antialiased"])
@pytest.mark.parametrize("width", [2.0, 4.0, 6.0])
def test_windowed_paf_equals_whole_grid(mode, width):
    codec = PAFCodec("lateral", "lumbar", size=64, width=width, reference_size=64, mode=mode)
    g = torch.Generator().manual_seed(int(width))
    pts = torch.rand(6, 4, 2, generator=g, dtype=torch.float64) * 90 - 13  # some corners off the map
    pts[0] = torch.tensor([[10.0, 12.0], [50.0, 12.0], [10.0, 50.0], [50.0, 50.0]])  # through pixel centres
    pts[1, 2] = torch.tensor([float("nan"), 3.0])  # a missing corner
    pts[2] = torch.tensor([[-40.0, -40.0], [-30.0, -45.0], [200.0, 1.0], [210.0, 5.0]])  # both plates off the map
    got = codec.encode(pts)
    ref = _paf_whole_grid(codec, pts)
    assert got.shape == ref.shape == (6, 1, 64, 64)
    assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(ref, nan=-1.0))
    assert got[0].sum() > 0  # something was drawn
    assert torch.equal(codec.encode(pts[3]), ref[3])  # one sample, no batch axis
    sac = PAFCodec("lateral", "sacrum", size=(48, 40), width=width, reference_size=40, mode=mode)
    two = pts[:, :2] * 0.5
    assert torch.equal(torch.nan_to_num(sac.encode(two), nan=-1.0), torch.nan_to_num(_paf_whole_grid(sac, two), nan=-1.0))


def test_render_gaussians_unchanged():
    pts = torch.tensor([[[3.3, 4.6], [float("nan"), 1.0], [10.0, 2.5]]], dtype=torch.float64)
    sig = torch.tensor([1.5, 2.0, 0.7], dtype=torch.float64)
    maps = render_gaussians(pts, sig, 9, 12)
    ys, xs = torch.meshgrid(torch.arange(9.0, dtype=torch.float64), torch.arange(12.0, dtype=torch.float64),
                            indexing="ij")
    for k in (0, 2):
        ref = torch.exp(-((xs - pts[0, k, 0]) ** 2 + (ys - pts[0, k, 1]) ** 2) / (2 * sig[k] ** 2))
        torch.testing.assert_close(maps[0, k], ref, atol=1e-12, rtol=0)
    assert torch.equal(maps[0, 1], torch.zeros(9, 12, dtype=torch.float64))


def _former_stage2_chain(cfg: Stage2Config) -> Compose:
    """stage2_transforms(cfg, train=True) as it was composed before the blur moved out of VertebraCropsd."""
    corner, paf = _codecs(cfg)

    class FormerTargets(CornerTargetsd):
        def __call__(self, data):
            d = dict(data)
            pts = torch.as_tensor(np.asarray(d["points"], dtype=np.float64))
            d["label"] = torch.cat([corner.encode(pts), paf.encode(pts)], dim=0).float()
            return d

    return Compose([
        EnsureTyped("image", data_type="tensor", dtype=torch.float32, track_meta=False),
        _ChannelFirst("image"),
        ScaleIntensityd("image", minv=0.0, maxv=1.0),
        VertebraCropsd("image", cfg.layout, points_key="points", vertebrae=cfg.kind, out_size=cfg.crop_size,
                       blur_sigma=cfg.crop_blur_sigma, translate=cfg.translate, rotate=cfg.rotate,
                       scale=tuple(cfg.scale), prob=cfg.augment_prob),
        RandBrightnessContrastd("image", prob=cfg.intensity_prob, brightness=cfg.brightness, contrast=cfg.contrast),
        FormerTargets("points", corner, paf),
    ])


def test_stage2_chain_equals_former_composition():
    cfg = Stage2Config(crop_size=48, channels=(8, 16))
    r = generate_radiograph(3, SyntheticConfig(max_side=256))
    sample = {"image": r.image.astype(np.float32), "points": np.asarray(r.points, np.float64)}
    new, old = stage2_transforms(cfg, train=True), _former_stage2_chain(cfg)
    new.set_random_state(seed=5)
    old.set_random_state(seed=5)
    for _ in range(2):  # two draws of the augmentation
        a, b = new(dict(sample)), old(dict(sample))
        assert len(a) == len(b) == 5
        for ca, cb in zip(a, b, strict=True):
            assert type(ca["image"]) is type(cb["image"]) and ca["image"].dtype == torch.float32
            torch.testing.assert_close(ca["image"], cb["image"], atol=2e-6, rtol=0)
            np.testing.assert_allclose(ca["points"], cb["points"], atol=1e-6)
            assert ca["label"].dtype == torch.float32
            torch.testing.assert_close(ca["label"], cb["label"], atol=1e-7, rtol=0)
