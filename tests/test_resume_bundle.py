"""Resume through the bundle's own ``training`` with a real SIGKILL: one run killed in the middle of the second
stage's second epoch (the first stage finished), restarted, ends with the same weights, bit for bit, as a run that
was never interrupted; the finished first stage is not redone. Tiny synthetic set and networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _bundle_helpers import run_bundle

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "bundles" / "lumbar_landmarks" / "configs" / "train.json"
TINY = [
    "--synthetic#n", "8", "--synthetic#max_side", "256",
    "--posenet#input_size", "64", "--posenet#heatmap_size", "8", "--posenet#width", "4",
    "--posenet#kernel_size", "3", "--posenet#max_epochs", "2", "--posenet#batch_size", "4",
    "--mnet_lumbar#max_epochs", "3", "--mnet_sacrum#max_epochs", "1",
    "--mnet_lumbar#config#crop_size", "32", "--mnet_sacrum#config#crop_size", "32",
    "--mnet_lumbar#config#channels", "[4,8]", "--mnet_sacrum#config#channels", "[4,8]",
    "--mnet_lumbar#batch_size", "4",
]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint, by its path of keys."""
    out: dict[str, torch.Tensor] = {}

    def walk(obj, prefix: str) -> None:
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}/{k}")

    walk(torch.load(path, map_location="cpu", weights_only=True), "")
    return out


def test_killed_in_the_second_stage_resumes_to_the_uninterrupted_weights(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_bundle(["run", "training", "--config_file", str(CONFIG), "--output_dir", str(ref), *TINY])

    log = tmp_path / "epochs.txt"
    extra = tmp_path / "inject.json"
    extra.write_text(json.dumps({
        "extra_handlers": [
            {"_target_": "_bundle_helpers.RecordEpochs", "path": str(log), "stage": "mnet_lumbar"},
            {"_target_": "_bundle_helpers.KillAt", "epoch": "$2 if @kill else 0", "iteration": 2},
        ],
        "train#mnet_lumbar#trainer#train_handlers": "$@train#mnet_lumbar#handlers + @extra_handlers",
        "kill": True,
    }))
    args = ["run", "training", "--config_file", f"['{CONFIG}','{extra}']", "--output_dir", str(run), *TINY]
    first = run_bundle(args, check=False)
    assert first.returncode != 0, "the injected kill did not stop the first run"
    models = run / "models"
    assert (models / "posenet.done.json").is_file() and not (models / "mnet_lumbar.done.json").exists()
    assert log.read_text().split() == ["mnet_lumbar", "1"]
    posenet_files = {p.name: p.stat().st_mtime_ns for p in models.glob("posenet*")}

    second = run_bundle([*args, "--kill", "False"])
    assert "stage posenet already finished" in second.stdout + second.stderr
    assert {p.name: p.stat().st_mtime_ns for p in models.glob("posenet*")} == posenet_files, "posenet was redone"
    assert log.read_text().split() == ["mnet_lumbar", "1", "mnet_lumbar", "2", "mnet_lumbar", "3"]
    for name in ("lumbar_landmarks.pt", "mnet_lumbar_best.pt", "mnet_sacrum_best.pt"):
        a, b = _tensors(ref / "models" / name), _tensors(models / name)
        assert a.keys() == b.keys() and a, name
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{name}: {len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
