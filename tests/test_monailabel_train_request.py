"""MONAI Label train requests: only named, typed settings reach the bundle (issue 14, item 1).

MONAI evaluates every ``"$..."`` string of a bundle config as Python, so a request that copied its keys into
``overrides.json`` ran code as the server user. These tests send the hostile bodies of the report (and more)
through the request handling: the pure checks of :mod:`lumbar_monai.monailabel_support` here, the app's train
task (``apps/lumbar_monailabel/lib/trainers``) where MONAI Label is installed; the HTTP status through a real
server is in ``tests/test_monailabel_security.py``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from lumbar_monai.monailabel_support import (
    TRAIN_PARAMS,
    TrainRequestError,
    config_expressions,
    train_overrides,
    validate_train_request,
)

pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "lumbar_monailabel"
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
RCE = "$__import__('os').system('id > f')"

#: (request body, the key the refusal must name)
HOSTILE = [
    # the eight bodies of the report
    ({"initialize#0": RCE}, "initialize#0"),
    ({"+initialize": [RCE]}, "+initialize"),
    ({"imports#0": "$import os"}, "imports#0"),
    ({"training#0": RCE}, "training#0"),
    ({"posenet#max_epochs": RCE}, "posenet#max_epochs"),
    ({"posenet#lr": "@train#posenet#network"}, "posenet#lr"),
    ({"device": "cpu') or __import__('os').system('id') or ('"}, "device"),
    ({"output_dir": "/tmp/elsewhere"}, "output_dir"),
    # more: other keys the config or MONAI Label's runner would act on
    ({"bundle_path": "/tmp/evil"}, "bundle_path"),  # MONAI Label puts it on the training's PYTHONPATH
    ({"gpus": "0; id"}, "gpus"),  # MONAI Label puts it into CUDA_VISIBLE_DEVICES
    ({"dataset_dir": "/"}, "dataset_dir"),
    ({"posenet#network_def#_target_": "os.system"}, "posenet#network_def#_target_"),
    ({"posenet": {"lr": RCE}}, "posenet"),  # nested sections
    ({"mnet_lumbar#config": {"crop_size": 8}}, "mnet_lumbar#config"),
    ({"%train.json#imports": 1}, "%train.json#imports"),
    # right keys, wrong values
    ({"posenet#max_epochs": {"$x": 1}}, "posenet#max_epochs"),
    ({"posenet#max_epochs": [4]}, "posenet#max_epochs"),
    ({"posenet#max_epochs": 10**400}, "posenet#max_epochs"),
    ({"posenet#max_epochs": 1e308}, "posenet#max_epochs"),
    ({"posenet#max_epochs": -1}, "posenet#max_epochs"),
    ({"posenet#max_epochs": 0}, "posenet#max_epochs"),
    ({"posenet#max_epochs": 2.5}, "posenet#max_epochs"),
    ({"posenet#max_epochs": True}, "posenet#max_epochs"),
    ({"posenet#max_epochs": "4; id"}, "posenet#max_epochs"),
    ({"mnet_sacrum#batch_size": 10**6}, "mnet_sacrum#batch_size"),
    ({"posenet#lr": float("nan")}, "posenet#lr"),
    ({"posenet#lr": float("inf")}, "posenet#lr"),
    ({"posenet#lr": "nan"}, "posenet#lr"),
    ({"posenet#lr": "1e999"}, "posenet#lr"),
    ({"posenet#lr": -0.1}, "posenet#lr"),
    ({"mnet_lumbar#lr": "%configs/train.json#posenet#lr"}, "mnet_lumbar#lr"),
    ({"posenet#cutout": "$'rsc'"}, "posenet#cutout"),
    ({"posenet#cutout": "RSC"}, "posenet#cutout"),
    ({"posenet#cutout_ratio": 1.5}, "posenet#cutout_ratio"),
    ({"init_from_model": "$True"}, "init_from_model"),
    ({"init_from_model": 2}, "init_from_model"),
    ({"device": "cuda:0 "}, "device"),
    ({"device": "cuda:123"}, "device"),
    ({"device": "mps"}, "device"),
    ({"device": ["cuda"]}, "device"),
    ({"seed": -1}, "seed"),
]


@pytest.mark.parametrize("body,key", HOSTILE, ids=[k for _, k in HOSTILE])
def test_hostile_train_requests_are_refused_naming_the_key(body, key):
    with pytest.raises(TrainRequestError) as err:
        validate_train_request({"model": "lumbar_landmarks", **body}, model="lumbar_landmarks")
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 600, msg
    assert msg.startswith("train request: ") and repr(key) in msg, msg


def test_unknown_key_message_lists_the_accepted_settings():
    with pytest.raises(TrainRequestError, match="is not a setting this app accepts") as err:
        validate_train_request({"initialize#0": RCE})
    assert "posenet#max_epochs" in str(err.value) and "device" in str(err.value)
    with pytest.raises(TrainRequestError, match="expected a JSON object"):
        validate_train_request([("posenet#lr", 0.1)])  # type: ignore[arg-type]


def test_valid_settings_become_numbers_bools_and_the_apps_own_words():
    got = validate_train_request({
        "model": "lumbar_landmarks", "gpus": "all",  # added by MONAI Label itself, not settings
        "posenet#max_epochs": "4", "mnet_lumbar#max_epochs": 3, "mnet_sacrum#max_epochs": 2.0,
        "posenet#lr": "5e-5", "mnet_lumbar#lr": 0.001, "mnet_sacrum#lr": 1,
        "init_from_model": "false", "amp": True, "seed": "7", "posenet#cutout": "conventional",
        "posenet#cutout_ratio": "0.5", "device": "cuda:1",
    })
    assert got == {"posenet#max_epochs": 4, "mnet_lumbar#max_epochs": 3, "mnet_sacrum#max_epochs": 2,
                   "posenet#lr": 5e-5, "mnet_lumbar#lr": 0.001, "mnet_sacrum#lr": 1.0, "init_from_model": False,
                   "amp": True, "seed": 7, "posenet#cutout": "conventional", "posenet#cutout_ratio": 0.5,
                   "device": "cuda:1"}
    for key in ("posenet#max_epochs", "mnet_sacrum#max_epochs", "seed"):
        assert type(got[key]) is int, key
    for key in ("posenet#lr", "mnet_sacrum#lr", "posenet#cutout_ratio"):
        assert type(got[key]) is float and math.isfinite(got[key]), key
    out = train_overrides(got)
    assert "init_from_model" not in out  # the task's own switch, not a bundle setting
    assert out["device"] == "$torch.device('cuda:1')"
    assert config_expressions(out) == ["device"]  # the one expression: rebuilt from the checked name
    doc = json.loads(json.dumps(out))
    assert doc["posenet#max_epochs"] == 4 and doc["posenet#lr"] == 5e-5 and doc["amp"] is True
    # the deprecated POST /train/ also nests the model's own section under its name (already merged above it)
    assert validate_train_request({"lumbar_landmarks": {"posenet#lr": 0.1}, "posenet#lr": 0.1},
                                  model="lumbar_landmarks") == {"posenet#lr": 0.1}


@pytest.mark.parametrize("device,expr", [("cpu", "$torch.device('cpu')"), ("cuda", "$torch.device('cuda')"),
                                         ("cuda:07", "$torch.device('cuda:7')")])
def test_device_expression_is_built_from_the_parsed_name(device, expr):
    assert train_overrides(validate_train_request({"device": device})) == {"device": expr}


def test_train_overrides_refuses_unchecked_text():
    with pytest.raises(TrainRequestError):
        train_overrides({"posenet#max_epochs": RCE})
    with pytest.raises(TrainRequestError):
        train_overrides({"device": "cpu'); import os; ('"})
    assert train_overrides({"initialize#0": RCE}) == {}  # not a setting: dropped, never written


def test_config_expressions_finds_every_active_string():
    assert config_expressions({"a": 1, "b": "text", "c": [1, "x"], "d": {"e": False}}) == []
    assert config_expressions({"a": ["ok", "$x"], "b": {"c": "@y"}, "d": "%f.json#k", "$e": 1, "f": "a$b"}) == [
        "a", "b", "d", "$e"]


def test_every_setting_has_a_checked_kind():
    assert all(p.kind in ("int", "float", "bool", "enum", "device") for p in TRAIN_PARAMS.values())
    from lumbar_monai.transforms.cutout import CUTOUT_KINDS

    assert set(TRAIN_PARAMS["posenet#cutout"].choices) == set(CUTOUT_KINDS)
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    for key in TRAIN_PARAMS:  # every bundle setting exists in train.json (a typo would be a silent no-op)
        if key == "init_from_model":  # the task's own switch
            continue
        node = train
        for part in key.split("#"):
            assert isinstance(node, dict) and part in node, key
            node = node[part]


# ----- the app's train task (needs MONAI Label: runs in .venv-monailabel) -------------------------------------------
@pytest.fixture()
def train_task(tmp_path):
    pytest.importorskip("monailabel", reason="MONAI Label is not installed here (scripts/setup-monailabel.sh)")
    sys.path.insert(0, str(APP))
    try:
        from lib.trainers import LandmarkTrain
    finally:
        sys.path.remove(str(APP))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    return LandmarkTrain(model_dir / "lumbar_landmarks.pt", BUNDLE)


class _NoDatastore:
    def __getattr__(self, name):
        raise AssertionError(f"a refused request must not reach the datastore ({name})")


@pytest.mark.parametrize("body,key", HOSTILE[:8], ids=[k for _, k in HOSTILE[:8]])
def test_train_task_refuses_before_writing_anything(train_task, body, key):
    with pytest.raises(TrainRequestError, match=re.escape(repr(key))):
        train_task({"model": "lumbar_landmarks", **body}, _NoDatastore())
    assert not (train_task.model_path.parent / "train").exists()  # no run folder, no overrides.json


def test_train_task_writes_only_typed_values(train_task, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    settings = train_task.settings({"model": "lumbar_landmarks", "gpus": "all", "posenet#max_epochs": "2",
                                    "posenet#lr": "5e-5", "device": "cpu"})
    cmd, fine_tuned = train_task.command(run, tmp_path / "data", settings)
    assert fine_tuned is False  # no model yet
    overrides = json.loads((run / "overrides.json").read_text())
    assert overrides["posenet#max_epochs"] == 2 and overrides["posenet#lr"] == 5e-5
    assert overrides["mnet_lumbar#max_epochs"] == 4  # the task's default schedule
    assert overrides["device"] == "$torch.device('cpu')"
    assert config_expressions(overrides) == ["device"]
    assert set(overrides) <= set(TRAIN_PARAMS) | {"bundle_root", "output_dir", "dataset_dir"}
    assert str(run / "overrides.json") in cmd[-1]
