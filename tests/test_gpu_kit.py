"""The GPU kit (``scripts/gpu``): the shrunk AASCE copy keeps its labels, the GPU schedules are valid and within the
shipped-model size, a stage continues from a predictor checkpoint, and the device script runs end to end on the CPU
(its dry run: the real continue and level schedules, the continue entry from the shipped model, a few seconds of
training on three AASCE images)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paths import REPO, SHARED  # noqa: E402

from lumbar_monai.errors import InputError  # noqa: E402
from lumbar_monai.io.aasce import read_aasce, shrink_aasce_copy  # noqa: E402
from lumbar_monai.training.framed import check_schedule, init_weights, load_init, posenet_kwargs  # noqa: E402

AASCE = SHARED / "data" / "aasce16"
SHIPPED = REPO / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"


def _mini_aasce(tmp_path: Path, rows: list[int]) -> Path:
    """An AASCE copy of the given rows of the shared one (images linked, label CSVs cut)."""
    if not (AASCE / "labels_training" / "landmarks.csv").is_file():
        pytest.skip("AASCE copy not found")
    root = tmp_path / "aasce_mini"
    (root / "labels_training").mkdir(parents=True)
    (root / "images_training").mkdir()
    names = (AASCE / "labels_training" / "filenames.csv").read_text().splitlines()
    marks = (AASCE / "labels_training" / "landmarks.csv").read_text().splitlines()
    (root / "labels_training" / "filenames.csv").write_text("\n".join(names[i] for i in rows) + "\n")
    (root / "labels_training" / "landmarks.csv").write_text("\n".join(marks[i] for i in rows) + "\n")
    for i in rows:
        (root / "images_training" / names[i].strip()).symlink_to(AASCE / "images_training" / names[i].strip())
    return root


def test_shrunk_copy_keeps_the_labels(tmp_path):
    src = _mini_aasce(tmp_path, [0, 1])
    info = shrink_aasce_copy(src, tmp_path / "small", long_side=512)
    assert info["images"] == 2 and info["bytes"] > 0
    big, small = read_aasce(src, lumbar_only=False), read_aasce(tmp_path / "small", lumbar_only=False)
    for (p0, a0), (p1, a1) in zip(big, small, strict=True):
        assert p0.name == p1.name and max(a1.image_size) == 512
        k = np.asarray(a1.image_size, float) / np.asarray(a0.image_size, float)
        # normalised CSV coordinates: the same points at the new size (the original ones are snapped to whole pixels)
        assert np.allclose(np.asarray(a1.points), np.asarray(a0.points) * k, atol=0.1)
    assert not list((tmp_path / "small" / "labels_training").glob("*.mat"))


def test_shrunk_copy_refuses_bad_sources(tmp_path):
    src = _mini_aasce(tmp_path, [0])
    with pytest.raises(InputError, match="overwrite its source"):
        shrink_aasce_copy(src, src)
    (src / "labels_training" / "filenames.csv").write_text("no such image.jpg\n")
    with pytest.raises(InputError, match="not found"):
        shrink_aasce_copy(src, tmp_path / "out")
    (src / "labels_training" / "landmarks.csv").unlink()
    with pytest.raises(InputError, match="landmarks.csv.*missing"):
        shrink_aasce_copy(src, tmp_path / "out2")


@pytest.mark.parametrize("name,limit_mib", [("aasce_ap_gpu", 10.0), ("aasce_ap_continue", 10.0),
                                            ("aasce_ap_paper", None), ("aasce_ap_level", None)])
def test_gpu_schedules_are_valid(name, limit_mib):
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet

    schedule = json.loads((REPO / "configs" / "framed" / f"{name}.json").read_text())
    check_schedule(schedule)
    assert schedule["amp"] is True and schedule["lr_decay"] == "time"
    assert schedule["posenet"]["aux_vertebrae"][:2] == ["T11", "T12"]  # the window's renaming reads these two
    if name == "aasce_ap_level":  # whole-image framings only, T1-T12 as auxiliary maps; the compact stages beside it
        assert schedule["posenet"]["whole_prob"] == 1.0 and schedule["posenet"]["val_framings"] == ["whole"]
        assert len(schedule["posenet"]["aux_vertebrae"]) == 12
        compact = json.loads((REPO / "configs" / "framed" / "aasce_ap_continue.json").read_text())
        nets = [PoseNet(**posenet_kwargs(schedule["posenet"], "ap")), PoseNet(**posenet_kwargs(compact["posenet"], "ap")),
                MNet(in_channels=1, out_channels=4, channels=compact["mnet_lumbar"]["channels"])]
        assert sum(p.numel() for net in nets for p in net.parameters()) * 4 / 2**20 < 10.0
    if limit_mib is not None:  # a model the project can ship: both networks within 10 MB in float32
        pose = PoseNet(**posenet_kwargs(schedule["posenet"], "ap"))
        mnet = MNet(in_channels=1, out_channels=4, channels=schedule["mnet_lumbar"]["channels"])
        n = sum(p.numel() for net in (pose, mnet) for p in net.parameters())
        assert n * 4 / 2**20 < limit_mib


def test_a_stage_continues_from_a_predictor_checkpoint(tmp_path):
    from lumbar_monai.networks.posenet import PoseNet

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    entry = init_weights(ckpt, "posenet", SHIPPED)
    schedule = json.loads((REPO / "configs" / "framed" / "aasce_ap_continue.json").read_text())
    net = PoseNet(**posenet_kwargs(schedule["posenet"], "ap"))
    load_init(net, entry["state_dict"])
    assert torch.equal(net.state_dict()[next(iter(entry["state_dict"]))], next(iter(entry["state_dict"].values())))
    assert init_weights(entry, "posenet") is entry  # a stage checkpoint is taken as it is
    assert "state_dict" in init_weights(ckpt, "mnet", SHIPPED)
    with pytest.raises(ValueError, match="neither a stage checkpoint"):
        init_weights({"format": "x", "stage1": None}, "posenet", "m.pt")
    # the command line: one line, no traceback
    torch.save({"weights": 1}, tmp_path / "odd.pt")
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.framed", "posenet", "--datalist", "none.json",
                           "--schedule", str(REPO / "configs" / "framed" / "aasce_ap_continue.json"), "--out",
                           str(tmp_path / "run"), "--init", str(tmp_path / "odd.pt"), "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: --init:") and len(proc.stderr.strip().splitlines()) == 1


def test_device_script_dry_run_on_the_cpu(tmp_path):
    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    root = _mini_aasce(tmp_path, [0, 1, 2, 3, 4])
    from lumbar_monai.io.annotations import write_annotation_json

    pairs = read_aasce(root, outside="skip")
    items = [{"image": str(p), "label": str(write_annotation_json(tmp_path / "labels" / f"{i}.json", a)),
              "aasce_order": "anatomical"} for i, (p, a) in enumerate(pairs)]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": items[:3], "validation": items[3:4], "test": items[4:5]}))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PY": sys.executable, "DEVICE": "cpu", "WORKERS": "0",
           "TRAIN_SECONDS": "4", "DATALIST": str(datalist), "RUN": str(tmp_path / "run"), "OUT": str(out),
           "PLAN": f"configs/framed/aasce_ap_continue.json:{SHIPPED}", "LEVEL": "configs/framed/aasce_ap_level.json",
           "PRIOR_MODES": "2"}
    proc = subprocess.run(["bash", "scripts/gpu/train_aasce_ap.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    # as trained, with the level network (LEVEL) and with the shipped model's vertebra counter (COUNTER's default)
    for variant in ("", "_level", "_count"):
        for split in ("validation", "test"):
            assert f"aasce_ap_continue_continued{variant} {split}: | 3 |" in proc.stdout, proc.stdout
        model = out / f"aasce_ap_continue_continued{variant}.pt"
        assert model.is_file() and model.stat().st_size < 10_000_000
        prior = torch.load(model, map_location="cpu", weights_only=True)["shape_prior"]  # fitted on the 3 labels
        assert prior["n_shapes"] == 3 and len(prior["variances"]) == 2
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    assert "./run.log" in names and "./aasce_ap_continue_continued/posenet.done.json" in names
    assert "./level/posenet.done.json" in names
    assert "./aasce_ap_continue_continued/eval_test/passes3/landmark_error.md" in names
    assert "./aasce_ap_continue_continued/eval_level_test/passes3/landmark_error.md" in names
    assert "./aasce_ap_continue_continued/eval_count_test/passes3/landmark_error.md" in names
    counted = torch.load(out / "aasce_ap_continue_continued_count.pt", map_location="cpu", weights_only=True)
    assert counted["stage1_counter"] is not None and counted["stage1"]["count"]["input_size"] == [512, 208]
    shipped_count = torch.load(SHIPPED, map_location="cpu", weights_only=True)["stage1"]["count"]
    assert counted["stage1"]["count"]["median_target"] == shipped_count["median_target"]  # read as it was trained
    assert not [n for n in names if n.endswith((".npz", ".pt", ".png"))]


def test_environment_script_says_what_is_missing(tmp_path):
    """scripts/gpu/env.sh on a machine without MONAI and without carried wheels: one line, non-zero."""
    fake = tmp_path / "python-without-monai"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    proc = subprocess.run(["bash", "-c", f"source {REPO / 'scripts' / 'gpu' / 'env.sh'}"], cwd=tmp_path,
                          env={**os.environ, "PY": str(fake)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: monai/ignite/pydicom are missing and there is no .whl/ folder (run scripts/gpu/pack_aasce_ap.sh)"]
