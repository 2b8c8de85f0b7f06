"""M-Nets of single lumbar vertebrae (round 27): the predictor reads a named vertebra with its own network and the
others with the shared one, the checkpoint keeps it (float16 too), stage-2 training crops only the named vertebrae,
and the attach command refuses a network trained on other crops with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL, crop_record
from lumbar_monai.crops import crop_affines, crop_boxes_eq5, crop_to_image
from lumbar_monai.networks.mnet import MNet
from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs
from lumbar_monai.training.stage2 import Stage2Config, crop_vertebrae, schedule_settings, stage2_transforms
from lumbar_monai.training.vertebra_mnet import main

REPO = Path(__file__).resolve().parents[1]
CROP = 32
CENTRES = np.array([[100.0, 60.0], [104.0, 100.0], [106.5, 142.0], [105.0, 185.0], [101.0, 226.0]])


def _mnet(seed: int) -> MNet:
    torch.manual_seed(seed)
    return with_init_kwargs(MNet, in_channels=1, out_channels=5, channels=(4, 8), coordconv=2)


def _predictor(lumbar: MNet, **kw) -> LandmarkPredictor:
    return LandmarkPredictor(AP, lumbar, crop_size=CROP, device="cpu", **kw)


def _image() -> np.ndarray:
    return np.random.default_rng(0).random((300, 200)).astype(np.float32)


def test_a_vertebra_net_reads_its_vertebra_and_only_it():
    shared, own = _mnet(0), _mnet(1)
    with_own = _predictor(shared, vertebra_nets={"L5": own}).detect_corners(_image(), CENTRES)[0]
    plain = _predictor(shared).detect_corners(_image(), CENTRES)[0]
    all_own = _predictor(own).detect_corners(_image(), CENTRES)[0]
    np.testing.assert_allclose(with_own[:16], plain[:16], atol=1e-5)  # L1-L4: the shared M-Net
    np.testing.assert_allclose(with_own[16:], all_own[16:], atol=1e-5)  # L5: its own
    assert np.abs(with_own[16:] - plain[16:]).max() > 1e-3  # ... which answers otherwise
    # a model with a network for every vertebra never calls the shared one
    every = {f"L{i}": own for i in range(1, 6)}
    np.testing.assert_allclose(_predictor(shared, vertebra_nets=every).detect_corners(_image(), CENTRES)[0], all_own,
                               atol=1e-5)


def test_vertebra_nets_names_are_the_layouts_lumbar_vertebrae():
    with pytest.raises(ValueError, match=r"\['S1'\] are not lumbar vertebrae of layout 'ap'"):
        _predictor(_mnet(0), vertebra_nets={"S1": _mnet(1)})
    with pytest.raises(ValueError, match="not lumbar vertebrae of layout 'lateral'"):
        LandmarkPredictor(LATERAL, _mnet(0), _mnet(2), crop_size=CROP, device="cpu", vertebra_nets={"S1": _mnet(1)})


def test_checkpoint_keeps_the_vertebra_net_in_float16_too(tmp_path):
    pred = _predictor(_mnet(0), vertebra_nets={"L5": _mnet(1)})
    expected = pred.detect_corners(_image(), CENTRES)[0]
    path = pred.save(tmp_path / "m.pt", half=["lumbar_vertebrae"])
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["lumbar_vertebrae"]) == {"L5"}
    assert {v.dtype for v in ckpt["lumbar_vertebrae"]["L5"]["state_dict"].values()} == {torch.float16}
    loaded = LandmarkPredictor.load(path, device="cpu")
    assert list(loaded.vertebra_nets) == ["L5"]
    np.testing.assert_allclose(loaded.detect_corners(_image(), CENTRES)[0], expected, atol=0.05)
    assert torch.load(_predictor(_mnet(0)).save(tmp_path / "plain.pt"), weights_only=True)["lumbar_vertebrae"] is None


def test_stage2_training_crops_only_the_named_vertebrae():
    assert schedule_settings({"vertebrae": ["L5"]}) == {"vertebrae": ("L5",)}
    with pytest.raises(ValueError, match="'vertebrae' is a list, got 'L5'"):
        schedule_settings({"vertebrae": "L5"})
    with pytest.raises(ValueError, match="'scale' is a list"):
        schedule_settings({"scale": 0.9})
    cfg = Stage2Config(layout="ap", crop_size=CROP, vertebrae=("L5",), channels=(4, 8))
    assert crop_vertebrae(cfg) == [4] and crop_vertebrae(Stage2Config(layout="ap")) == "lumbar"
    with pytest.raises(ValueError, match=r"\['S1'\] are not lumbar vertebrae of layout 'ap'"):
        crop_vertebrae(Stage2Config(layout="ap", vertebrae=("S1",)))
    # the crop samples: one per image, L5's corners in crop pixels (no augmentation)
    corners = np.concatenate([np.array([[-8.0, -6.0], [8.0, -6.0], [-8.0, 6.0], [8.0, 6.0]]) + c for c in CENTRES])
    out = stage2_transforms(cfg, train=True, augment=False)({"image": _image(), "points": corners})
    assert len(out) == 1
    aff = crop_affines(CENTRES, crop_boxes_eq5(CENTRES, AP), CROP, aspect=AP.crop_aspect)[4:]
    back = crop_to_image(np.asarray(out[0]["points"], dtype=np.float64)[None], aff)[0]
    np.testing.assert_allclose(back, corners[16:], atol=1e-4)


def _stage_file(path: Path, net: MNet, **extra) -> Path:
    record = {"crop_size": CROP, "crop_blur_sigma": 1.0, "crop_antialias": False, **crop_record(AP), **extra}
    torch.save({"kwargs": dict(net.init_kwargs), "state_dict": net.state_dict(), **record}, path)
    return path


def test_attach_command_adds_the_network_and_refuses_other_crops(tmp_path, capsys):
    model = _predictor(_mnet(0)).save(tmp_path / "model.pt")
    good = _stage_file(tmp_path / "l5.pt", _mnet(1))
    out = tmp_path / "with_l5.pt"
    args = ["--model", str(model), "--vertebra", "L5"]
    assert main([*args, "--mnet", str(good), "--out", str(out), "--half", "lumbar_vertebrae"]) == 0
    loaded = LandmarkPredictor.load(out, device="cpu")
    assert list(loaded.vertebra_nets) == ["L5"]
    capsys.readouterr()
    assert main(["--model", str(model), "--vertebra", "S1", "--mnet", str(good), "--out", str(tmp_path / "s1.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "['S1'] are not lumbar vertebrae of layout 'ap'" in err
    assert not (tmp_path / "s1.pt").exists()
    square = _stage_file(tmp_path / "square.pt", _mnet(1), crop_aspect=1.0)  # the model's crops: AP's 1.25
    run = [sys.executable, "-m", "lumbar_monai.training.vertebra_mnet", *args]
    bad = subprocess.run([*run, "--mnet", str(square), "--out", str(tmp_path / "x.pt")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "trained on other crops than the model's: crop_aspect 1.0 (the model's: 1.25)" in bad.stderr
    assert not (tmp_path / "x.pt").exists()
