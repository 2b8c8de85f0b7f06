"""The MONAI Bundle driven through its CLI with tiny overrides: train, resume after a kill, evaluate, infer, export,
multi-process (gloo) training. Synthetic data, a few epochs: these tests check the plumbing, not accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
CONFIGS = BUNDLE / "configs"

TINY = [
    "--synthetic#n", "10", "--synthetic#max_side", "320",
    "--posenet#input_size", "128", "--posenet#heatmap_size", "16", "--posenet#width", "8",
    "--posenet#max_epochs", "2", "--posenet#batch_size", "4",
    "--mnet_lumbar#max_epochs", "1", "--mnet_sacrum#max_epochs", "1",
    "--mnet_lumbar#config#crop_size", "64", "--mnet_sacrum#config#crop_size", "64",
    "--mnet_lumbar#config#channels", "[8,16,32]", "--mnet_sacrum#config#channels", "[8,16,32]",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def bundle(args: list[str], *, cmd: list[str] | None = None, check: bool = True, timeout: int = 300):
    full = (cmd or [sys.executable, "-m", "monai.bundle"]) + args
    proc = subprocess.run(full, cwd=BUNDLE, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle_run")
    bundle(["run", "training", "--config_file", str(CONFIGS / "train.json"), "--output_dir", str(out), *TINY])
    return out


def test_training_writes_stages_and_predictor(trained):
    models = trained / "models"
    for stage, epochs in (("posenet", 2), ("mnet_lumbar", 1), ("mnet_sacrum", 1)):
        done = json.loads((models / f"{stage}.done.json").read_text())
        assert done["epochs"] == epochs
        assert (models / f"{stage}_best.pt").is_file()
    ckpt = torch.load(models / "lumbar_landmarks.pt", map_location="cpu", weights_only=True)
    assert ckpt["layout"] == "lateral" and "synthetic" in ckpt["meta"]["trained_on"]
    datalist = json.loads((trained / "synthetic" / "datalist.json").read_text())
    assert {"training", "validation", "test"} <= set(datalist)
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))


def test_restart_after_finish_skips_finished_stages(trained):
    before = (trained / "models" / "posenet_best.pt").stat().st_mtime_ns
    proc = bundle(["run", "training", "--config_file", str(CONFIGS / "train.json"), "--output_dir", str(trained), *TINY])
    assert "stage posenet already finished" in proc.stdout + proc.stderr
    assert (trained / "models" / "posenet_best.pt").stat().st_mtime_ns == before


def test_evaluate_writes_tables_and_figures(trained):
    bundle(["run", "evaluate", "--config_file", str(CONFIGS / "evaluate.json"), "--output_dir", str(trained)])
    ev = trained / "eval"
    for name in ("centre_error", "landmark_error", "landmark_error_all"):
        md = (ev / f"{name}.md").read_text()
        assert "| L1 |" in md and "| S1 |" in md and "| Total |" in md
        assert "not clinical performance" in md
    summary = json.loads((ev / "summary.json").read_text())
    assert summary["n_cases"] >= 1 and 0 <= summary["centre_detection_accuracy_pct"] <= 100
    for png in ("rd_boxplot.png", "case_median.png", "case_worst.png"):
        assert (ev / png).read_bytes()[:4] == b"\x89PNG"
    rows = (ev / "per_case.csv").read_text().splitlines()
    assert len(rows) == summary["n_cases"] + 1
    head = rows[0].split(",")
    assert head[:4] == ["image", "centre_outlier", "mean_RD", "RD_L1"] and "D_S1" in head and head[-2:] == ["centre_err_S1", "qc_flags"]
    table = [dict(zip(head, r.split(","), strict=True)) for r in rows[1:]]
    rd_all = [float(r["mean_RD"]) for r in table]
    assert abs(sum(rd_all) / len(rd_all) - summary["landmark_rd_all_pct"]) < 1e-3 * max(1.0, summary["landmark_rd_all_pct"])
    corners = (4, 4, 4, 4, 4, 2)  # RD_<v> is a mean over the vertebra's corners: weighted back, it gives mean_RD
    for r in table:
        weighted = sum(float(r[f"RD_{v}"]) * c for v, c in zip(("L1", "L2", "L3", "L4", "L5", "S1"), corners, strict=True))
        assert abs(weighted / 22 - float(r["mean_RD"])) < 1e-3 * max(1.0, float(r["mean_RD"]))


def test_inference_writes_per_image_outputs(trained):
    bundle(["run", "inference", "--config_file", str(CONFIGS / "inference.json"), "--output_dir", str(trained)])
    pred = trained / "predictions"
    docs = sorted(pred.glob("*.json"))
    assert docs, "no per-image JSON written"
    doc = json.loads(docs[0].read_text())["result"]
    assert len(doc["landmarks"]) == 22 and {"name", "x", "y", "confidence"} <= set(doc["landmarks"][0])
    assert list(pred.glob("*_sr.dcm")) and list(pred.glob("*_pr.dcm")), "DICOM inputs get an SR and a GSPS"
    assert (pred / "measurements.csv").is_file() and (pred / "failures.txt").is_file()


def test_evaluate_without_training_says_so(tmp_path):
    proc = bundle(["run", "evaluate", "--config_file", str(CONFIGS / "evaluate.json"), "--output_dir", str(tmp_path)],
                  check=False)
    assert proc.returncode != 0 and "run the bundle's training with this output_dir first" in proc.stderr


def test_export_and_verify_networks(trained, tmp_path):
    from monai.bundle import ckpt_export, verify_net_in_out

    meta = str(CONFIGS / "metadata.json")
    cfg = str(CONFIGS / "train.json")
    fmt = json.loads((CONFIGS / "metadata.json").read_text())
    verify_net_in_out(net_id="posenet#single_output_def", meta_file=meta, config_file=cfg)  # the primary format
    verify_net_in_out(net_id="mnet_lumbar#network_def", meta_file=meta, config_file=cfg,
                      **{"_meta_#network_data_format": fmt["mnet_lumbar_data_format"]})
    verify_net_in_out(net_id="mnet_sacrum#network_def", meta_file=meta, config_file=cfg,
                      **{"_meta_#network_data_format": fmt["mnet_sacrum_data_format"]})
    small = {"posenet#width": 8, "mnet_lumbar#config#crop_size": 64, "mnet_lumbar#config#channels": [8, 16, 32]}
    models = trained / "models"
    # scripted (no --use_trace): both networks script
    ckpt_export(net_id="mnet_lumbar#network_def", filepath=str(tmp_path / "mnet_lumbar.ts"),
                ckpt_file=str(models / "mnet_lumbar_best.pt"), key_in_ckpt="network", meta_file=meta, config_file=cfg,
                **small)
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "posenet.ts"),
                ckpt_file=str(models / "posenet_best.pt"), key_in_ckpt="network", meta_file=meta, config_file=cfg,
                **small)
    ts = torch.jit.load(str(tmp_path / "posenet.ts"))
    final, pre = ts(torch.rand(1, 1, 128, 128))
    assert final.shape == (1, 6, 16, 16) and pre.shape == (1, 1, 16, 16)
    assert torch.jit.load(str(tmp_path / "mnet_lumbar.ts"))(torch.rand(2, 1, 64, 64)).shape == (2, 5, 64, 64)
    # models/model.pt (the model-zoo file) is the Pose-Net's best state dict, loadable into inference.json's net
    from lumbar_monai.networks.posenet import PoseNetCentres
    from lumbar_monai.workflows.checkpoints import load_state_dict_file

    sd = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    best = load_state_dict_file(models / "posenet_best.pt")
    assert sd.keys() == best.keys() and all(torch.equal(sd[k], best[k]) for k in sd)
    PoseNetCentres(width=8, stage_channels=32, pre_convs=1, stage_convs=2).load_state_dict(sd)


def test_tensorboard_tags_per_stage(trained):
    """Each stage logs its own val_loss, learning rate and overlays (no shared tag across stages)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars, images = set(), set()
    for f in (trained / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        images |= set(acc.Tags()["images"])
    for stage in ("posenet", "mnet_lumbar", "mnet_sacrum"):
        assert {f"{stage}/val_loss", f"{stage}/lr", f"{stage}/train_loss"} <= scalars, scalars
        assert {f"{stage}/overlay_0", f"{stage}/overlay_1"} <= images, images
    assert "val_loss" not in scalars


def test_resume_after_kill_mid_epoch(tmp_path):
    """Kill the process (SIGKILL) in the middle of epoch 3 of 4; the restart finishes epochs 3 and 4 only."""
    log = tmp_path / "epochs.txt"
    extra = tmp_path / "inject.json"
    # components, not expressions: MONAI parses any expression containing the word "import" as an import statement,
    # and a second config file's "imports" key would replace the bundle's
    inject = {
        "extra_handlers": [
            {"_target_": "_bundle_helpers.RecordEpochs", "path": str(log), "stage": "posenet"},
            {"_target_": "_bundle_helpers.KillAt", "epoch": "$3 if @kill else 0", "iteration": 1},
        ],
        "train#trainer#train_handlers": "$@train#handlers + @extra_handlers",
        "kill": True,
    }
    extra.write_text(json.dumps(inject))
    args = ["run", "training", "--config_file", f"['{CONFIGS / 'train.json'}','{extra}']", "--output_dir",
            str(tmp_path / "run"), *TINY, "--posenet#max_epochs", "4", "--synthetic#n", "12"]
    first = bundle(args, check=False)
    assert first.returncode != 0, "the injected kill did not stop the first run"
    assert log.read_text().split() == ["posenet", "1", "posenet", "2"]
    assert not (tmp_path / "run" / "models" / "posenet.done.json").exists()
    bundle([*args, "--kill", "False"])
    epochs = [int(e) for s, e in zip(*[iter(log.read_text().split())] * 2, strict=True) if s == "posenet"]
    assert epochs == [1, 2, 3, 4], f"epochs lost or repeated: {epochs}"
    done = json.loads((tmp_path / "run" / "models" / "posenet.done.json").read_text())
    assert done["epochs"] == 4


def test_multi_process_training_gloo(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", "29533"]
    files = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    bundle(["-m", "monai.bundle", "run", "training", "--config_file", files, "--backend", "gloo",
            "--output_dir", str(tmp_path), *TINY], cmd=torchrun)
    assert (tmp_path / "models" / "lumbar_landmarks.pt").is_file() and (tmp_path / "models" / "model.pt").is_file()
    assert json.loads((tmp_path / "models" / "mnet_sacrum.done.json").read_text())["epochs"] == 1
