"""model-zoo's bundle checks on a copy of the bundle laid out as ``models/lumbar_landmarks``, offline.

Re-implements, with MONAI's own APIs, what Project-MONAI/model-zoo's ``ci/verify_bundle.py`` does in full mode
and what its unit tests check through ``ConfigWorkflow``:

1. ``directory``   the necessary (``configs/metadata.json``, ``LICENSE``) and preferred (``models/model.pt``,
                   ``configs/inference.json``) files; fake weights made from ``inference.json``'s ``network_def``
                   when no ``models/model.pt`` is given (as model-zoo's CI does);
2. ``version``     ``version`` is a key of ``changelog``;
3. ``metadata``    ``monai.bundle.verify_metadata`` against ``bundles/meta_schema.json`` (derived from MONAI's
                   bundle specification: the published schema cannot be downloaded here) placed where the
                   download would go, so nothing is fetched;
4. ``infer_properties`` / 5. ``train_properties``  ``ConfigWorkflow(...).check_properties()`` for
                   ``inference.json`` (InferProperties) and ``train.json`` (TrainProperties), both empty;
6. ``data_shape``  ``monai.bundle.verify_net_in_out`` of ``network_def`` (the primary format) and of both M-Nets
                   (their ``*_data_format``);
7. ``torchscript`` ``monai.bundle.ckpt_export`` of ``network_def`` with ``models/model.pt`` by *scripting*, the
                   TorchScript file loaded back and compared with the eager network;
8. ``inference``   ``inference.json``'s ``evaluator`` (preprocessing, network, inferer, postprocessing) run on
                   synthetic radiographs with those weights: one ``centres.json`` case per image.

Usage: ``python scripts/verify_bundle.py [--bundle bundles/lumbar_landmarks] [--weights MODEL_PT] [--workdir DIR]``.
Prints one line per check and ``N/8 checks passed``; exit status 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
SCHEMA = REPO / "bundles" / "meta_schema.json"
NAME = "lumbar_landmarks"


def copy_bundle(bundle: Path, models_path: Path, weights: Path | None = None) -> Path:
    """``<models_path>/lumbar_landmarks``: the bundle's files (no ``runs/``), its ``models/model.pt`` from
    ``weights`` or, without, fake weights from ``inference.json``'s ``network_def``."""
    dest = models_path / NAME
    shutil.copytree(bundle, dest, ignore=shutil.ignore_patterns("runs", "__pycache__", "*.ts", "eval"))
    model = dest / "models" / "model.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        shutil.copy(weights, model)
    elif not model.is_file():
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(dest / "configs" / "inference.json"))
        parser.read_meta(str(dest / "configs" / "metadata.json"))
        parser["bundle_root"] = str(dest)
        torch.save(parser.get_parsed_content("network_def").state_dict(), model)
    return dest


def synthetic_data(folder: Path, n: int = 3) -> Path:
    """A tiny synthetic data set (``datalist.json`` + images) for the workflows that read data."""
    from lumbar_monai.synthetic import SyntheticConfig, write_study_set

    write_study_set(folder, n, seed=0, config=SyntheticConfig(max_side=256))
    return folder


def check_directory(b: Path, _: Path) -> str:
    for rel in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        if not (b / rel).is_file():
            raise ValueError(f"necessary file {rel} is missing")
    return "metadata.json, LICENSE, models/model.pt, inference.json"


def check_version(b: Path, _: Path) -> str:
    meta = json.loads((b / "configs" / "metadata.json").read_text())
    if meta.get("version") not in meta.get("changelog", {}):
        raise ValueError(f"version {meta.get('version')!r} is not in the changelog")
    return f"version {meta['version']}"


def check_metadata(b: Path, _: Path) -> str:
    from monai.bundle import verify_metadata

    target = b / "eval" / "schema.json"  # where model-zoo's CI puts the downloaded schema
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEMA, target)
    verify_metadata(meta_file=str(b / "configs" / "metadata.json"), filepath=str(target))
    return "schema-valid (bundles/meta_schema.json)"


def _workflow(b: Path, data: Path, config: str, workflow_type: str, **override):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=str(b / "configs" / config), meta_file=str(b / "configs" / "metadata.json"),
                        logging_file=False, workflow_type=workflow_type, bundle_root=str(b), dataset_dir=str(data),
                        **override)
    wf.initialize()
    return wf


def check_infer_properties(b: Path, data: Path) -> str:
    wf = _workflow(b, data, "inference.json", "inference", output_dir=str(b / "runs" / "check"),
                   input=str(data / "images"))
    missing = wf.check_properties()
    if missing:
        raise ValueError(f"missing or wrong inference properties: {missing}")
    return f"{len(wf.properties)} InferProperties/MetaProperties"


def check_train_properties(b: Path, data: Path) -> str:
    wf = _workflow(b, data, "train.json", "train", output_dir=str(b / "runs" / "check"))
    missing = wf.check_properties()
    if missing:
        raise ValueError(f"missing or wrong training properties: {missing}")
    return f"{len(wf.properties)} TrainProperties/MetaProperties"


def check_data_shape(b: Path, _: Path) -> str:
    from monai.bundle import verify_net_in_out

    meta_file = str(b / "configs" / "metadata.json")
    verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=str(b / "configs" / "inference.json"),
                      bundle_root=str(b))
    meta = json.loads(Path(meta_file).read_text())
    for net in ("mnet_lumbar", "mnet_sacrum"):
        verify_net_in_out(net_id=f"{net}#network_def", meta_file=meta_file,
                          config_file=str(b / "configs" / "train.json"), bundle_root=str(b),
                          **{"_meta_#network_data_format": meta[f"{net}_data_format"]})
    return "network_def (Pose-Net), mnet_lumbar, mnet_sacrum"


def check_torchscript(b: Path, _: Path) -> str:
    from monai.bundle import ConfigParser, ckpt_export

    ts_file = b / "models" / "verify_model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts_file), ckpt_file=str(b / "models" / "model.pt"),
                meta_file=str(b / "configs" / "metadata.json"), config_file=str(b / "configs" / "inference.json"),
                bundle_root=str(b))
    parser = ConfigParser()
    parser.read_config(str(b / "configs" / "inference.json"))
    parser["bundle_root"] = str(b)
    net = parser.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(b / "models" / "model.pt", map_location="cpu", weights_only=True))
    scripted = torch.jit.load(str(ts_file)).eval()
    size = int(parser.get_parsed_content("posenet#input_size"))
    x = torch.rand(1, 1, size, size)
    with torch.no_grad():
        diff = float((scripted(x) - net(x)).abs().max())
    if diff > 1e-4:
        raise ValueError(f"the scripted network differs from the eager one by {diff:.3g}")
    return f"scripted (not traced), max |scripted - eager| = {diff:.1e}"


def check_inference(b: Path, data: Path) -> str:
    out = b / "runs" / "check"
    wf = _workflow(b, data, "inference.json", "inference", output_dir=str(out), input=str(data / "images"),
                   ckpt_dir=str(b / "models"), run_id="centres")
    wf.run()
    cases = json.loads((out / "predictions" / "centres.json").read_text())["cases"]
    n_images = len(list((data / "images").iterdir()))
    if len(cases) != n_images or any(len(c["centres"]) != 6 for c in cases):
        raise ValueError(f"expected {n_images} cases of 6 centres, got {[len(c['centres']) for c in cases]}")
    return f"{len(cases)} images -> centres.json"


CHECKS: list[tuple[str, Callable[[Path, Path], str]]] = [
    ("directory", check_directory),
    ("version", check_version),
    ("metadata", check_metadata),
    ("infer_properties", check_infer_properties),
    ("train_properties", check_train_properties),
    ("data_shape", check_data_shape),
    ("torchscript", check_torchscript),
    ("inference", check_inference),
]


def verify(bundle: Path = BUNDLE, workdir: Path | None = None, weights: Path | None = None,
           verbose: bool = False) -> dict[str, str | None]:
    """Run every check on a fresh copy; ``{check: None if passed else the reason}``."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="verify_bundle_")
        workdir = Path(tmp.name)
    try:
        b = copy_bundle(Path(bundle), Path(workdir) / "models", weights)
        data = synthetic_data(Path(workdir) / "data")
        results: dict[str, str | None] = {}
        for name, check in CHECKS:
            try:
                detail = check(b, data)
                results[name] = None
                print(f"ok      {name}: {detail}")
            except Exception as e:  # every failure is reported, the remaining checks still run
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                results[name] = reason
                print(f"FAILED  {name}: {reason}")
                if verbose:
                    traceback.print_exc()
        print(f"{sum(r is None for r in results.values())}/{len(CHECKS)} checks passed")
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=BUNDLE, help="the bundle folder (default: %(default)s)")
    ap.add_argument("--weights", type=Path, default=None,
                    help="a trained models/model.pt (default: fake weights from inference.json's network_def)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the copy here (default: a temporary folder)")
    ap.add_argument("--verbose", action="store_true", help="tracebacks of failed checks")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for path, what in ((args.bundle / "configs" / "inference.json", "--bundle"), (args.weights, "--weights")):
        if path is not None and not Path(path).is_file():
            print(f"error: {what}: {path} not found", file=sys.stderr)
            return 2
    if args.workdir is not None and (args.workdir / "models" / NAME).exists():
        print(f"error: --workdir: {args.workdir / 'models' / NAME} already exists", file=sys.stderr)
        return 2
    results = verify(args.bundle, args.workdir, args.weights, args.verbose)
    return 0 if all(r is None for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
