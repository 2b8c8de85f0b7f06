"""The framed AP driver (``lumbar_monai.training.framed``) keeps its best weights by the landmark metric."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _lm_helpers as H  # noqa: E402

from lumbar_monai.training.framed import train_mnet, train_posenet  # noqa: E402

SCHEDULE = {
    "seed": 0,
    "framing": {"factor": 2.0, "passes": 2},
    "posenet": {"input_size": 64, "width": 4, "stage_channels": 8, "kernel_size": 5, "pre_convs": 1,
                "stage_convs": 1, "lr": 1e-3, "batch_size": 2, "max_epochs": 2, "patience": 5},
    "mnet_lumbar": {"crop_size": 32, "channels": [4, 8], "lr": 1e-3, "batch_size": 2, "max_epochs": 2,
                    "patience": 5, "translate": 0.2},
}


def _samples(n: int) -> list[dict]:
    out = []
    for i in range(n):
        pts = H.spine_points("ap", width=44.0 + 2 * i, height=26.0, disc=9.0, origin=(120.0 + 3 * i, 60.0))
        img = H.render_spine_image(pts, layout="ap", size_wh=(240, 260), seed=i)
        out.append({"image": (img / img.max() * 255).astype(np.uint8), "points": pts, "layout": "ap"})
    return out


@pytest.mark.parametrize("stage", ["posenet", "mnet"])
def test_best_weights_by_landmark_metric(stage):
    train, val = _samples(3), _samples(2)
    fn = train_posenet if stage == "posenet" else train_mnet
    res = fn(train, val, SCHEDULE, "ap")
    # val_history is the heatmap-peak distance in input pixels, the loss is kept beside it
    assert len(res["val_history"]) == len(res["val_loss_history"]) == 2
    assert all(0.0 <= v < 200.0 for v in res["val_history"])
    assert res["val_history"] != res["val_loss_history"]


def test_mnet_trains_on_the_crop_aspect_its_schedule_names():
    """``mnet_lumbar.crop_aspect`` replaces the layout's for the M-Net's crops, and the stage checkpoint's record
    (``crop_record``) says which crops those were; without the key the layout's own aspect (AP: 1.25)."""
    from lumbar_monai.anatomy import crop_record
    from lumbar_monai.training.framed import mnet_layout

    square = {**SCHEDULE, "mnet_lumbar": {**SCHEDULE["mnet_lumbar"], "crop_aspect": 1.0, "max_epochs": 1}}
    assert crop_record(mnet_layout(square, "ap"))["crop_aspect"] == 1.0
    assert crop_record(mnet_layout(SCHEDULE, "ap"))["crop_aspect"] == 1.25
    res = train_mnet(_samples(2), _samples(1), square, "ap")
    assert len(res["val_history"]) == 1 and np.isfinite(res["val_history"][0])


def test_select_by_loss_and_unknown_choice():
    train, val = _samples(2), _samples(1)
    res = train_mnet(train, val, {**SCHEDULE, "select_by": "loss"}, "ap")
    assert res["val_history"] == res["val_loss_history"]
    with pytest.raises(ValueError, match="select_by"):
        train_mnet(train, val, {**SCHEDULE, "select_by": "psnr"}, "ap")


def test_workers_train_the_same_schedule():
    # augmentation in a DataLoader worker process (MONAI seeds each worker's transforms): the schedule still runs
    train, val = _samples(3), _samples(1)
    res = train_posenet(train, val, SCHEDULE, "ap", workers=1)
    assert len(res["history"]) == 2 and np.isfinite(res["history"]).all()


def test_device_choice():
    import torch

    from lumbar_monai.training.framed import _amp, resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unsupported device|unknown device"):
        resolve_device("tpu")
    # mixed precision only where MONAI's engines autocast (CUDA), whatever the schedule says
    assert not _amp({"amp": True}, "cpu")
    assert not _amp({}, "cpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cli_refuses_cuda_without_one_line(tmp_path, capsys):
    import json

    from lumbar_monai.training.framed import main

    sched = tmp_path / "s.json"
    sched.write_text(json.dumps(SCHEDULE))
    rc = main(["posenet", "--datalist", str(tmp_path / "none.json"), "--schedule", str(sched),
               "--out", str(tmp_path / "run"), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--device" in err[0] and "CUDA" in err[0]
    rc = main(["posenet", "--datalist", str(tmp_path / "none.json"), "--schedule", str(sched),
               "--out", str(tmp_path / "run"), "--device", "cpu", "--workers", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--workers" in err[0]


def test_a_level_network_schedule_validates_on_whole_image_framings_only():
    train, val = _samples(2), _samples(1)
    pose = {**SCHEDULE["posenet"], "whole_prob": 1.0, "max_epochs": 1}
    whole = train_posenet(train, val, {**SCHEDULE, "posenet": {**pose, "val_framings": ["whole"]}}, "ap")
    both = train_posenet(train, val, {**SCHEDULE, "posenet": {**pose, "val_framings": ["whole", "lumbar"]}}, "ap")
    assert whole["history"] == both["history"]  # the same training (same seed)
    assert whole["val_loss_history"] != both["val_loss_history"]  # validated on the whole-image framing alone
    with pytest.raises(ValueError, match="val_framings"):
        train_posenet(train, val, {**SCHEDULE, "posenet": {**pose, "val_framings": ["side"]}}, "ap")


def test_learning_rate_decays_over_the_wall_time():
    """``"lr_decay": "time"``: the linear decay follows the wall time of a time-capped run, not its epochs."""
    import time

    import torch
    from ignite.engine import Engine

    from lumbar_monai.training.fit import _decay_over_time
    from lumbar_monai.training.framed import check_schedule

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    seen: list[float] = []
    engine = Engine(lambda e, b: (seen.append(opt.param_groups[0]["lr"]), time.sleep(0.01)))
    _decay_over_time(engine, opt, 1e-3, 0.01, seconds=0.3)
    engine.run(range(60), max_epochs=1)  # about 0.6 s: the second half runs at the end value
    assert seen[0] == pytest.approx(1e-3, rel=0.05)
    assert all(b <= a for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1] == pytest.approx(1e-5)
    check_schedule({"lr_decay": "time"})
    with pytest.raises(ValueError, match="lr_decay"):
        check_schedule({"lr_decay": "cosine"})


def test_resolve_device_none_is_auto_and_lives_in_one_place():
    from lumbar_monai.devices import resolve_device
    from lumbar_monai.training import framed

    assert framed.resolve_device is resolve_device  # the training driver and the commands share it
    assert resolve_device(None) == resolve_device("auto")


def test_cli_refuses_extra_windows_it_cannot_use(tmp_path, capsys):
    """``mnet_lumbar.extra_windows``: a name that starts no run above L1, or a layout other than AP, is a one-line
    error before any data is read."""
    import json

    from lumbar_monai.training.framed import main

    sched = tmp_path / "s.json"
    for windows, layout, expect in ((["T10"], "ap", "does not start a run"), (["T8"], "lateral", "layout ap")):
        sched.write_text(json.dumps({**SCHEDULE, "mnet_lumbar": {**SCHEDULE["mnet_lumbar"],
                                                                 "extra_windows": windows}}))
        rc = main(["mnet", "--datalist", str(tmp_path / "none.json"), "--schedule", str(sched), "--layout", layout,
                   "--out", str(tmp_path / "run"), "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and expect in err[0], err
