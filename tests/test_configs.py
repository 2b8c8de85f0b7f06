"""Every override in configs/ names keys that exist in the bundle, and the ablation table runner knows every file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "bundles" / "lumbar_landmarks" / "configs" / "train.json"
OVERRIDES = sorted((REPO / "configs").rglob("*.json"))


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_override_keys_exist_in_the_bundle(path):
    base = ConfigParser()
    base.read_config(str(TRAIN))
    for key in json.loads(path.read_text()):
        assert key in base, f"{path.name}: {key!r} is not a key of train.json (a typo would be silently added)"


def test_ablation_tables_reference_existing_files():
    from lumbar_monai.workflows.ablation import ABLATIONS, TABLES

    for table, (_, variants) in TABLES.items():
        for _, names in variants:
            for name in names:
                assert (ABLATIONS / f"{name}.json").is_file(), (table, name)


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
