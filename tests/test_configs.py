"""Every override in configs/ names keys that exist in the bundle, and the ablation table runner knows every file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "bundles" / "lumbar_landmarks" / "configs" / "train.json"
EVALUATE = REPO / "bundles" / "lumbar_landmarks" / "configs" / "evaluate.json"
# configs/framed/ holds schedules of the framed AP driver (lumbar_monai.training.framed), not bundle overrides
OVERRIDES = sorted(p for p in (REPO / "configs").rglob("*.json") if p.parent.name not in ("baselines", "framed"))
BASELINES = sorted((REPO / "configs" / "baselines").glob("*.json"))
DATASETS = sorted((REPO / "configs" / "datasets").glob("*.json"))


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_override_keys_exist_in_the_bundle(path):
    base = ConfigParser()
    base.read_config(str(TRAIN))
    for key in json.loads(path.read_text()):
        assert key in base, f"{path.name}: {key!r} is not a key of train.json (a typo would be silently added)"


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_baseline_configs_add_a_stage_under_existing_sections(path):
    """A baseline adds its own sections; the parents of its nested keys exist and its network builds."""
    base = ConfigParser()
    base.read_config(str(TRAIN))
    for key in json.loads(path.read_text()):
        key = key.lstrip("+")
        parent = key.rsplit("#", 1)[0] if "#" in key else None
        assert parent is None or parent in base, f"{path.name}: parent of {key!r} missing in train.json"
    parser = ConfigParser()
    parser.read_config([str(TRAIN), str(path)])
    net = parser.get_parsed_content("one_stage#network_def")
    assert net.final_conv.out_channels == 22
    assert parser.get_parsed_content("one_stage#input_size") == parser.get_parsed_content("posenet#input_size")


@pytest.mark.parametrize("path", DATASETS, ids=lambda p: p.name)
def test_dataset_configs_merge_into_evaluate(path):
    """The ablation runner evaluates with evaluate.json + the dataset config: it must merge and set the layout."""
    parser = ConfigParser()
    parser.read_config([str(EVALUATE), str(path)])
    assert parser["layout"] in ("lateral", "ap")


def test_ablation_tables_reference_existing_files():
    from lumbar_monai.workflows.ablation import TABLES, override_file

    for table, (_, variants) in TABLES.items():
        for _, names in variants:
            for name in names:
                assert override_file(name).is_file(), (table, name)


def test_stages_touched_classifies_overrides():
    from lumbar_monai.workflows.ablation import override_file, stages_touched

    assert stages_touched([override_file("posenet_kernel7")]) == {"stage1"}
    assert stages_touched([override_file("coordconv_0"), override_file("paf_none")]) == {"stage2"}
    assert stages_touched([override_file("kim_baseline")]) == {"stage1", "stage2"}
    assert "all" in stages_touched([override_file("baselines/one_stage_basicunet")])


def test_paper_schedule_restores_the_paper_sizes():
    parser = ConfigParser()
    parser.read_config([str(TRAIN), str(REPO / "configs" / "schedules" / "paper.json")])
    assert (parser["posenet"]["input_size"], parser["posenet"]["heatmap_size"], parser["posenet"]["kernel_size"]) == (
        512, 64, 13)
    assert (parser["posenet"]["batch_size"], parser["posenet"]["max_epochs"], parser["posenet"]["patience"]) == (
        16, 200, 30)
    for stage in ("mnet_lumbar", "mnet_sacrum"):
        assert parser[stage]["config"]["crop_size"] == 256 and parser[stage]["config"]["coordconv"] == 2
        assert (parser[stage]["batch_size"], parser[stage]["max_epochs"], parser[stage]["patience"]) == (32, 250, 25)
        assert parser[stage]["lr"] == parser["posenet"]["lr"] == 1e-4


@pytest.mark.parametrize("path", [TRAIN, *sorted(p for p in (REPO / "configs").rglob("*.json")
                                           if "training" in json.loads(p.read_text()))],
                         ids=lambda p: p.name)
def test_every_training_list_writes_the_model_zoo_weights(path):
    """models/model.pt (the primary network's weights, model-zoo's file) is written by every training run, also by
    the configs that replace the bundle's ``training`` list."""
    steps = " ".join(json.loads(path.read_text())["training"])
    if "run_stage(@train#posenet#trainer" not in steps and "run_stage(@train#trainer" not in steps:
        pytest.skip(f"{path.name} trains no Pose-Net (model.pt is Pose-Net's)")
    assert "export_primary_model(@ckpt_dir)" in steps, f"{path.name}: no models/model.pt"
