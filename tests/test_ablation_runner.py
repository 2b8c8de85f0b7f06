"""The ablation-table runner end to end with tiny settings: the three systems of issue 9 train, evaluate and land in
one table, a stage-1-only variant reuses the reference run's M-Nets, a row identical to the reference is the reference
run, and a second table in the same folder neither trains nor evaluates the reference again. Plumbing, not accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "synthetic#n": "8", "synthetic#max_side": "256",
    "posenet#input_size": "64", "posenet#heatmap_size": "8", "posenet#width": "4", "posenet#stage_channels": "8",
    "posenet#max_epochs": "1", "posenet#batch_size": "4",
    "mnet_lumbar#max_epochs": "1", "mnet_sacrum#max_epochs": "1",
    "mnet_lumbar#config#crop_size": "32", "mnet_sacrum#config#crop_size": "32",
    "mnet_lumbar#config#channels": "[4,8]", "mnet_sacrum#config#channels": "[4,8]",
    "one_stage#features": "[4,4,8,8,16,4]",
}


def _run(table: str, out: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "lumbar_monai.workflows.ablation", table, "--out", str(out)]
    for k, v in TINY.items():
        if k.startswith("one_stage") and table != "systems":
            continue
        args += ["--override", k, v]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """Table 2 ("kernel") and then the systems table run into one folder; the reference's stage markers' and
    evaluation summary's times between the two runs."""
    out = tmp_path_factory.mktemp("ablation")
    _run("kernel", out)
    markers = {m.name: m.stat().st_mtime for m in (out / "default" / "models").glob("*.done.json")}
    markers["summary.json"] = (out / "default" / "eval" / "summary.json").stat().st_mtime
    _run("systems", out)
    return out, markers


def test_systems_table_trains_and_evaluates_all_three(tables):
    tmp_path, markers = tables
    md = (tmp_path / "systems.md").read_text()
    for label in ("full method (ours)", "Kim-like ablation", "one-stage BasicUNet"):
        assert f"| {label} |" in md
    assert "#### Centre error" in md and "#### Landmark error" in md  # both per-vertebra tables
    assert "| S1 |" in md and "one-stage BasicUNet: RD_pct" in md
    rows = (tmp_path / "systems.csv").read_text().strip().splitlines()
    assert len(rows) == 4
    baseline = rows[-1].split(",")
    assert baseline[-2] == "one_stage"  # the baseline trained its own network and nothing else
    ckpt = tmp_path / "baselines-one_stage_basicunet" / "models" / "lumbar_landmarks.pt"
    import torch

    assert torch.load(ckpt, weights_only=True)["format"] == "lumbar-monai/one-stage-predictor"
    kim = json.loads((tmp_path / "kim_baseline" / "models" / "posenet.done.json").read_text())
    assert "reused_from" not in kim and kim["wall_seconds"] > 0
    # the full method is the reference run Table 2 trained and evaluated before: neither was run again
    summary = markers.pop("summary.json")
    assert markers and all((tmp_path / "default" / "models" / name).stat().st_mtime == t for name, t in markers.items())
    assert (tmp_path / "default" / "eval" / "summary.json").stat().st_mtime == summary


def test_stage1_variant_reuses_the_reference_mnets(tables):
    tmp_path, _ = tables
    marker = json.loads((tmp_path / "posenet_kernel7" / "models" / "mnet_lumbar.done.json").read_text())
    assert marker["reused_from"] == str(tmp_path / "default")
    assert (tmp_path / "posenet_kernel7" / "models" / "mnet_lumbar_best.pt").is_file()
    md = (tmp_path / "kernel.md").read_text()
    assert "#### Centre error" in md and "#### Landmark error" not in md  # Table 2 shows centres
    assert "Pose-Net 7x7: inlier_px" in md
    row = [r for r in (tmp_path / "kernel.csv").read_text().splitlines() if r.startswith("Pose-Net 7x7")][0]
    assert row.split(",")[-2] == "posenet"


def test_row_identical_to_the_reference_is_the_reference_run(tables):
    """Table 2's 13x13 row sets the bundle default: no run of its own, the reference's numbers in its row."""
    tmp_path, _ = tables
    assert not (tmp_path / "posenet_kernel13").exists()
    rows = {r.split(",")[0]: r.split(",")[1:] for r in (tmp_path / "kernel.csv").read_text().splitlines()[1:]}
    assert set(rows) == {"Pose-Net 7x7", "Pose-Net 13x13"}
    reference = json.loads((tmp_path / "default" / "eval" / "summary.json").read_text())
    assert float(rows["Pose-Net 13x13"][1]) == pytest.approx(reference["centre_detection_accuracy_pct"], abs=0.006)
    assert rows["Pose-Net 13x13"][-2] == "mnet_lumbar+mnet_sacrum+posenet"  # the reference trained every stage
    assert "reference run (their overrides equal its configuration): Pose-Net 13x13." in (tmp_path / "kernel.md").read_text()


def test_same_as_reference_reads_values_after_command_line_overrides():
    from lumbar_monai.workflows.ablation import BUNDLE, override_file, same_as_reference

    base = [BUNDLE / "configs" / "train.json"]
    files = {n: [override_file(n)] for n in ("posenet_kernel13", "posenet_kernel7", "rsc_06", "coordconv_2",
                                             "paf_width4", "cutout_none", "kim_baseline", "baselines/one_stage_basicunet")}
    same = {n: same_as_reference(base, f, []) for n, f in files.items()}
    assert same == {"posenet_kernel13": True, "posenet_kernel7": False, "rsc_06": True, "coordconv_2": True,
                    "paf_width4": True, "cutout_none": False, "kim_baseline": False,
                    "baselines/one_stage_basicunet": False}  # a merge key (+imports) is a change
    assert same_as_reference(base, [], [])
    assert same_as_reference(base, files["posenet_kernel13"] + files["coordconv_2"], ["--posenet#max_epochs", "2"])
    # the command line sets the kernel for every run: the 7x7 file then changes nothing either
    assert same_as_reference(base, files["posenet_kernel7"], ["--posenet#kernel_size", "13"])
    assert same_as_reference(base, files["rsc_06"], ["--posenet#cutout_ratio", "0.8"])
    # against another reference (a schedule or data config in the base) the same file is a change
    assert not same_as_reference(base + files["kim_baseline"], files["posenet_kernel13"], [])
