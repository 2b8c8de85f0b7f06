"""The bundle in model-zoo form: scripts/verify_bundle.py's checks (model-zoo's verify_bundle.py full mode and its
ConfigWorkflow property tests, offline) pass on a copy, and each check fails on the defect it is there to catch."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
CONFIGS = BUNDLE / "configs"


def _load_verify():
    spec = importlib.util.spec_from_file_location("verify_bundle", REPO / "scripts" / "verify_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


verify_bundle = _load_verify()


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """A model-zoo layout copy (``models/lumbar_landmarks``) with fake weights, and a tiny synthetic data set."""
    root = tmp_path_factory.mktemp("modelzoo")
    b = verify_bundle.copy_bundle(BUNDLE, root / "models")
    return b, verify_bundle.synthetic_data(root / "data")


def test_every_check_passes(copy):
    b, data = copy
    failed = {}
    for name, check in verify_bundle.CHECKS:
        try:
            check(b, data)
        except Exception as e:  # collect all, report together
            failed[name] = f"{type(e).__name__}: {e}"
    assert not failed, failed
    assert len(verify_bundle.CHECKS) == 8


def test_fake_weights_come_from_inference_network_def(copy):
    b, _ = copy
    sd = torch.load(b / "models" / "model.pt", map_location="cpu", weights_only=True)
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == "PoseNetCentres" and sd.keys() == net.state_dict().keys()


def test_schema_rejects_the_old_metadata_form(tmp_path):
    """Points as a network output (no spatial_shape) and secondary networks nested in network_data_format fail."""
    schema = tmp_path / "schema.json"
    shutil.copy(REPO / "bundles" / "meta_schema.json", schema)
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(schema))
    bad = json.loads(json.dumps(meta))
    bad["network_data_format"]["outputs"]["points"] = dict(bad["network_data_format"]["post_processed_outputs"]["points"])
    (tmp_path / "points.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="'spatial_shape' is a required property"):
        verify_metadata(meta_file=str(tmp_path / "points.json"), filepath=str(schema))
    bad = json.loads(json.dumps(meta))
    bad["network_data_format"]["secondary_formats"] = {"mnet_lumbar": bad.pop("mnet_lumbar_data_format")}
    (tmp_path / "nested.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="Additional properties are not allowed"):
        verify_metadata(meta_file=str(tmp_path / "nested.json"), filepath=str(schema))
    bad = {k: v for k, v in meta.items() if k != "numpy_version"}
    (tmp_path / "version.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="'numpy_version' is a required property"):
        verify_metadata(meta_file=str(tmp_path / "version.json"), filepath=str(schema))


def _workflow(b: Path, data: Path, tmp_path: Path, config: str, workflow_type: str, edits: dict):
    """ConfigWorkflow of the copy's ``config`` with ``edits`` applied (``None`` deletes the key)."""
    parser = ConfigParser()
    parser.read_config(str(b / "configs" / config))
    for key, value in edits.items():
        if value is None:
            parent, _, leaf = key.rpartition("#")
            del (parser[parent] if parent else parser.config)[leaf]
        else:
            parser[key] = value
    edited = tmp_path / config
    ConfigParser.export_config_file(parser.config, str(edited))
    wf = ConfigWorkflow(config_file=str(edited), meta_file=str(b / "configs" / "metadata.json"), logging_file=False,
                        workflow_type=workflow_type, bundle_root=str(b), dataset_dir=str(data),
                        output_dir=str(tmp_path / "out"), input=str(data / "images"))
    wf.initialize()
    return wf


def test_property_check_catches_a_wrong_reference(copy, tmp_path):
    """An optional property whose engine argument bypasses its id is reported (model-zoo fails on it)."""
    b, data = copy
    wf = _workflow(b, data, tmp_path, "train.json", "train",
                   {"train#trainer#train_handlers": "@train#posenet#handlers"})
    assert wf.check_properties() == ["train_handlers"]
    wf = _workflow(b, data, tmp_path, "inference.json", "inference",
                   {"other_handlers": [], "evaluator#val_handlers": "@other_handlers"})
    assert wf.check_properties() == ["handlers"]


def test_property_check_catches_a_missing_required_property(copy, tmp_path):
    b, data = copy
    wf = _workflow(b, data, tmp_path, "inference.json", "inference",
                   {"inferer": None, "evaluator#inferer": {"_target_": "SimpleInferer"}})
    with pytest.raises(KeyError, match="Property 'inferer'"):
        wf.check_properties()


def test_train_validation_handler_uses_the_property_ids():
    """The optional properties model-zoo checks by reference (evaluator, val_interval, handlers, datasets) are
    wired through their ids, so a setting applied to the property reaches the engine."""
    cfg = json.loads((CONFIGS / "train.json").read_text())
    vh = [h for h in cfg["train"]["handlers"] if h["_target_"] == "ValidationHandler"]
    assert vh == [{"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True,
                   "interval": "@val_interval"}]
    assert cfg["train"]["trainer"]["train_handlers"] == "@train#handlers"
    assert cfg["train"]["dataset"]["transform"] == "@train#preprocessing"
    assert cfg["validate"]["dataloader"]["dataset"] == "@validate#dataset"
    assert cfg["validate"]["evaluator"]["key_val_metric"] == "@validate#key_metric"
    # the three stages keep their own sections; Pose-Net's are aliases of the model-zoo ids
    assert cfg["train"]["posenet"]["trainer"] == "@train#trainer"
    assert cfg["validate"]["posenet"]["early_stop"] == "@validate#early_stop"


def test_inference_posenet_matches_training():
    """inference.json repeats the Pose-Net architecture (model-zoo bundles are self-contained per config): it must
    be the one train.json trains, or models/model.pt would not load."""
    train = ConfigParser()
    train.read_config(str(CONFIGS / "train.json"))
    infer = ConfigParser()
    infer.read_config(str(CONFIGS / "inference.json"))
    for key, value in infer["posenet"].items():
        assert train["posenet"][key] == value, key
    a, b = train.get_parsed_content("posenet#network_def"), infer.get_parsed_content("network_def")
    assert a.state_dict().keys() == b.state_dict().keys()


def _run_centres(b: Path, data: Path, image, out: Path, **extra) -> tuple[ConfigWorkflow, list]:
    """Run ``inference.json``'s ``centres`` mode through MONAI's ``ConfigWorkflow`` (as model-zoo's CI and MONAI
    Label drive it) on one image; returns the workflow and the cases of ``predictions/centres.json``."""
    extra.setdefault("ckpt_dir", str(b / "models"))
    wf = ConfigWorkflow(config_file=str(b / "configs" / "inference.json"),
                        meta_file=str(b / "configs" / "metadata.json"), logging_file=False, workflow_type="infer",
                        bundle_root=str(b), dataset_dir=str(data), output_dir=str(out), input=str(image),
                        run_id="centres", device="cpu", **extra)
    wf.initialize()
    assert not wf.check_properties()
    wf.run()
    return wf, json.loads((out / "predictions" / "centres.json").read_text())["cases"]


def test_inference_workflow_centres_equal_the_predictor(copy, tmp_path):
    """inference.json's evaluator (preprocessing, network, inferer, postprocessing) gives the centres that the
    two-stage predictor's stage 1 gives with the same weights."""
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor

    b, data = copy
    image = sorted((data / "images").iterdir())[0]
    _, case = _run_centres(b, data, image, tmp_path)
    assert len(case) == 1
    got = np.array([[c["x"], c["y"]] for c in case[0]["centres"]])

    hp = ConfigParser.load_config_file(str(CONFIGS / "inference.json"))["posenet"]
    pose = PoseNet(width=hp["width"], stage_channels=hp["stage_channels"], kernel_size=hp["kernel_size"],
                   pre_convs=hp["pre_convs"], stage_convs=hp["stage_convs"])
    pose.load_state_dict(torch.load(b / "models" / "model.pt", map_location="cpu", weights_only=True))
    predictor = LandmarkPredictor("lateral", lumbar_net=MNet.for_layout("lateral", "lumbar", channels=(4,)),
                                  sacrum_net=MNet.for_layout("lateral", "sacrum", channels=(4,)), centre_net=pose,
                                  stage1={"input_size": hp["input_size"], "heatmap_size": hp["heatmap_size"],
                                          "repair": hp["repair"]}, device="cpu")
    img, _, _ = predictor.read_input(str(image))
    expected, _, _ = predictor.detect_centres(img)
    np.testing.assert_allclose(got, expected, atol=0.01)


def test_large_files_lists_the_shipped_weights():
    """Both weight files are listed with the keys model-zoo's downloader passes to ``download_url`` (the project has
    no YAML parser installed: the flat file is read line by line)."""
    import re

    entries: list[dict[str, str]] = []
    for line in (BUNDLE / "large_files.yml").read_text().splitlines():
        m = re.match(r"^\s*(-\s+)?(\w+):\s*\"?([^\"]*)\"?\s*$", line)
        if not m or line.lstrip().startswith("#") or m.group(2) == "large_files":
            continue
        if m.group(1):
            entries.append({})
        entries[-1][m.group(2)] = m.group(3)
    assert [e["path"] for e in entries] == ["models/model.pt", "models/lumbar_landmarks.pt"]
    assert all(set(e) == {"path", "url", "hash_type", "hash_val"} and e["hash_type"] == "sha256" for e in entries)


def test_onnx_export_of_network_def(copy, tmp_path):
    """With the ``export`` extra installed: ``onnx_export`` of inference.json's network_def gives a valid model."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from monai.bundle import onnx_export

    b, _ = copy
    out = tmp_path / "model.onnx"
    onnx_export(net_id="network_def", filepath=str(out), ckpt_file=str(b / "models" / "model.pt"),
                meta_file=str(b / "configs" / "metadata.json"), config_file=str(b / "configs" / "inference.json"),
                bundle_root=str(b), input_shape=[1, 1, 256, 256])
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] and model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1


def test_overlay_marks_true_and_predicted_peaks():
    from lumbar_monai.workflows.tensorboard import overlay_image

    image = torch.zeros(1, 64, 64)
    label = torch.zeros(2, 8, 8)
    pred = torch.zeros(2, 8, 8)
    label[0, 1, 2] = label[1, 6, 6] = 1.0  # (x=2, y=1), (x=6, y=6) on the 8x8 map
    pred[0, 5, 1] = pred[1, 6, 6] = 1.0
    rgb = overlay_image(image, pred, label, point_channels=1, mark=0)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    # map pixel (x, y) -> image pixel ((x + 0.5) * 8, (y + 0.5) * 8)
    assert tuple(rgb[12, 20]) == (0, 255, 0) and tuple(rgb[44, 12]) == (255, 0, 0)
    assert tuple(rgb[52, 52]) == (0, 0, 0), "channel 1 (a PAF, beyond point_channels) is not drawn"


def test_stage_epoch_writer_prefixes_metrics_and_adds_lr():
    from types import SimpleNamespace

    from lumbar_monai.workflows.tensorboard import StageEpochWriter

    written = {}

    class Writer:
        def add_scalar(self, tag, value, step):
            written[tag] = (value, step)

        def flush(self):
            pass

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    engine = SimpleNamespace(state=SimpleNamespace(epoch=3, metrics={"val_loss": 0.5, "per_class": [1, 2]}))
    StageEpochWriter("mnet_sacrum", opt)(engine, Writer())
    assert written == {"mnet_sacrum/val_loss": (0.5, 3), "mnet_sacrum/lr": (0.002, 3)}


def test_inference_workflow_drives_a_torchscript_model(copy, tmp_path):
    """``--torchscript_file models/model.ts`` (``ckpt_export``'s output) replaces network_def + model.pt and gives
    the same centres."""
    from monai.bundle import ckpt_export

    b, data = copy
    ts = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(b / "models" / "model.pt"),
                meta_file=str(b / "configs" / "metadata.json"), config_file=str(b / "configs" / "inference.json"),
                bundle_root=str(b))
    image = str(sorted((data / "images").iterdir())[0])
    cases = []
    for name, extra in (("eager", {}),
                        ("script", {"torchscript_file": str(ts), "model_file": str(tmp_path / "absent.pt")})):
        wf, found = _run_centres(b, data, image, tmp_path / name, **extra)
        cases.append(found)
    assert isinstance(wf.parser.get_parsed_content("network"), torch.jit.ScriptModule)
    assert cases[0] == cases[1] and len(cases[0]) == 1


_MONAILABEL_DRIVER = """
import json, sys, torch
from monailabel.tasks.infer.bundle import BundleInferTask
bundle, image = sys.argv[1], sys.argv[2]
task = BundleInferTask(bundle, {}, add_post_restore=False)
assert task.is_valid()
data = {"image": image}
for t in task.pre_transforms({"device": "cpu"}):
    data = t(data)
net = task._get_network("cpu", {"model_filename": "model.pt"})
with torch.no_grad():
    data["pred"] = task.inferer({})(data["image"][None].float(), net)[0]
for t in task.post_transforms({"device": "cpu"}):
    data = t(data)
print(json.dumps({"labels": task.labels, "points": data["points"].tolist()}))
"""


def test_monailabel_bundle_infer_task_drives_inference_json(copy, tmp_path):
    """MONAI Label's own ``BundleInferTask`` (in ``.venv-monailabel``) loads the copy's inference.json and
    model.pt and computes the centres that the bundle's evaluator writes."""
    import os
    import subprocess

    py = REPO / ".venv-monailabel" / "bin" / "python"
    if not py.is_file():
        pytest.skip("no .venv-monailabel (scripts/setup-monailabel.sh)")
    b, data = copy
    image = sorted((data / "images").iterdir())[0]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([str(py), "-c", _MONAILABEL_DRIVER, str(b), str(image)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["labels"] == {"l1": 0, "l2": 1, "l3": 2, "l4": 3, "l5": 4, "s1": 5}
    case = _run_centres(b, data, image, tmp_path)[1][0]
    np.testing.assert_allclose(got["points"], [[c["x"], c["y"]] for c in case["centres"]], atol=0.01)


def test_wrong_weights_fail_the_torchscript_check(tmp_path, capsys):
    """Weights that are not inference.json's network_def's (here an M-Net's) fail the export with a one-line reason;
    the command line refuses a missing bundle or weights file with one line and status 2."""
    from lumbar_monai.networks.mnet import MNet

    bad = tmp_path / "mnet.pt"
    torch.save(MNet(channels=(4,)).state_dict(), bad)
    b = verify_bundle.copy_bundle(BUNDLE, tmp_path / "models", weights=bad)
    with pytest.raises(Exception, match="state_dict|Missing key|size mismatch|Unexpected key"):
        verify_bundle.check_torchscript(b, tmp_path)
    assert verify_bundle.main(["--weights", str(tmp_path / "absent.pt")]) == 2
    assert verify_bundle.main(["--bundle", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --weights: {tmp_path / 'absent.pt'} not found",
                   f"error: --bundle: {tmp_path / 'nowhere' / 'configs' / 'inference.json'} not found"]
