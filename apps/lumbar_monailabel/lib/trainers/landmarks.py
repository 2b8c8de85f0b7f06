"""Train task: fine-tune the landmark model on the datastore's corrected labels with the bundle's training.

Steps (one run = one folder ``<model dir>/train/<UTC time>``):

1. the labelled images: MONAI Label's datalist (label tag ``final``: what ``PUT /datastore/label`` stored), plus any
   ``<image id>.json`` landmark file placed by hand in the datastore's ``labels/final`` folder;
2. ``data/datalist.json`` with every label re-written as the project's landmark JSON
   (:func:`lumbar_monai.monailabel_support.write_finetune_datalist`, which checks each label against its image);
3. the bundle's training (``python -m monai.bundle run training``, ``bundles/lumbar_landmarks/configs/train.json``)
   in a subprocess, with ``--dataset_dir`` the folder of step 2. When the app already has a model and
   ``init_from_model`` is on, the config merged after ``train.json`` (``overrides.json`` of the run) rebuilds the
   networks with the checkpoint's settings and loads its weights before training (fine-tuning,
   :func:`~lumbar_monai.monailabel_support.init_from_predictor`);
4. the run's ``models/lumbar_landmarks.pt`` replaces the app's model atomically (the previous one is kept as
   ``lumbar_landmarks.previous.pt``); the infer task reloads it on its next call.

Request keys (MONAI Label's train config, editable in the viewers): only the typed settings of
:data:`lumbar_monai.monailabel_support.TRAIN_PARAMS` (``init_from_model``, ``device`` as ``cpu``/``cuda[:N]``,
``posenet#max_epochs``, ``mnet_lumbar#lr``, ...; numbers within limits). Anything else, or a bad value, is refused
before anything runs (:class:`~lumbar_monai.monailabel_support.TrainRequestError`, HTTP 422 through the app): the
bundle config evaluates ``"$..."`` strings as Python, so no text of a request is ever written into it; the
run's ``overrides.json`` holds the parsed numbers, bools and the app's own words.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from lumbar_monai.errors import InputError
from lumbar_monai.io.atomic import atomic_write_json
from lumbar_monai.monailabel_support import config_expressions, train_overrides, validate_train_request

logger = logging.getLogger(__name__)

#: default schedule shown to viewers: short, for fine-tuning on a few corrected images (the bundle's own
#: defaults train the demonstration model from scratch)
DEFAULT_CONFIG: dict[str, Any] = {
    "init_from_model": True,
    "posenet#max_epochs": 4,
    "mnet_lumbar#max_epochs": 4,
    "mnet_sacrum#max_epochs": 4,
}


class LandmarkTrain(TrainTask):
    """Fine-tune (or train from scratch) with the bundle's training on the datastore's final labels.

    Args:
        model_path: the app's predictor checkpoint (read to initialise, replaced by the result).
        bundle_dir: the MONAI Bundle ``bundles/lumbar_landmarks``.
        layout: the landmark layout.
        config: defaults of the request keys (see the module docstring).
    """

    def __init__(self, model_path: str | os.PathLike, bundle_dir: str | os.PathLike, layout: str = "lateral",
                 config: dict[str, Any] | None = None) -> None:
        super().__init__("Fine-tune the landmark model on the corrected labels with the bundle's training")
        self.model_path = Path(model_path)
        self.bundle_dir = Path(bundle_dir)
        self.layout = layout
        self._config = validate_train_request({**DEFAULT_CONFIG, **(config or {})})

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def stats_file(self) -> Path:
        return self.model_path.parent / "train_stats.json"

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    # ----- steps ------------------------------------------------------------------------------------------------
    @staticmethod
    def labelled_items(datastore: Datastore) -> list[dict[str, str]]:
        """``[{"image", "label"}]``: the datastore's final labels, plus ``labels/final/<id>.json`` files."""
        items = {Path(d["image"]).resolve(): d["label"] for d in datastore.datalist()}
        for image_id in datastore.list_images():
            uri = Path(datastore.get_image_uri(image_id)).resolve()
            if uri in items or not uri.is_file():
                continue
            candidate = uri.parent / "labels" / "final" / f"{image_id}.json"
            if candidate.is_file():
                items[uri] = str(candidate)
        return [{"image": str(k), "label": str(v)} for k, v in sorted(items.items())]

    def settings(self, request: dict[str, Any]) -> dict[str, Any]:
        """The task's defaults updated with a request's settings, checked and parsed
        (:func:`~lumbar_monai.monailabel_support.validate_train_request`; ``TrainRequestError`` when refused)."""
        return {**self._config, **validate_train_request(request, model=request.get("model"))}

    def command(self, run_dir: Path, dataset_dir: Path, settings: dict[str, Any]) -> tuple[list[str], bool]:
        """``(bundle command line, fine-tuning?)`` for checked ``settings`` (:meth:`settings`).

        The settings go into ``<run>/overrides.json``, merged after ``train.json`` by the bundle (``"a#b"`` keys
        reach into nested sections), not onto the command line: JSON keeps ``false``, ``null`` and lists typed.
        """
        train_json = self.bundle_dir / "configs" / "train.json"
        overrides: dict[str, Any] = {}
        fine_tune = bool(settings.get("init_from_model", True)) and self.model_path.is_file()
        if fine_tune:
            import torch

            from lumbar_monai.monailabel_support import finetune_overrides

            ckpt = torch.load(self.model_path, map_location="cpu", weights_only=True)
            from_ckpt = finetune_overrides(ckpt)
            if config_expressions(from_ckpt):  # a checkpoint's words are data too
                raise InputError(self.model_path, "its settings hold config expressions "
                                                  f"({', '.join(config_expressions(from_ckpt))})")
            overrides.update(from_ckpt)
            overrides.update({  # "+key": appended to the bundle's list (MONAI's merge_kv)
                "+imports": ["$import lumbar_monai.monailabel_support"],
                "init_checkpoint": str(self.model_path.resolve()),
                "+initialize": [
                    "$lumbar_monai.monailabel_support.init_from_predictor(@init_checkpoint, "
                    "@train#posenet#network, @train#mnet_lumbar#network, @train#mnet_sacrum#network)"
                ],
            })
        overrides.update(train_overrides(settings))
        overrides.update({"bundle_root": str(self.bundle_dir), "output_dir": str(run_dir),
                          "dataset_dir": str(dataset_dir)})
        extra = atomic_write_json(run_dir / "overrides.json", overrides)
        cmd = [sys.executable, "-m", "monai.bundle", "run", "training",
               "--config_file", json.dumps([str(train_json), str(extra)])]
        return cmd, fine_tune

    def __call__(self, request, datastore: Datastore) -> dict[str, Any]:
        from lumbar_monai.monailabel_support import write_finetune_datalist

        settings = self.settings(dict(request))  # refused before anything is written
        t0 = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        run_dir = self.model_path.parent / "train" / stamp
        run_dir.mkdir(parents=True, exist_ok=True)
        items = self.labelled_items(datastore)
        logger.info("training on %d labelled image(s); run folder %s", len(items), run_dir)
        dataset_dir = run_dir / "data"
        try:
            write_finetune_datalist(items, dataset_dir, self.layout)
        except Exception:  # a bad label (InputError naming it) or none: nothing was trained, leave no run folder
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        cmd, fine_tuned = self.command(run_dir, dataset_dir, settings)
        logger.info("bundle command: %s", " ".join(cmd))
        env = dict(os.environ)
        log_file = run_dir / "train.log"
        with open(log_file, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        if proc.returncode != 0:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-20:]
            raise RuntimeError(f"bundle training failed (exit {proc.returncode}); see {log_file}:\n" + "\n".join(tail))
        produced = run_dir / "models" / "lumbar_landmarks.pt"
        if not produced.is_file():
            raise RuntimeError(f"bundle training finished without {produced}")
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        if self.model_path.is_file():
            shutil.copy2(self.model_path, self.model_path.with_name("lumbar_landmarks.previous.pt"))
        tmp = self.model_path.with_name(f".{self.model_path.name}.{os.getpid()}.tmp")
        shutil.copy2(produced, tmp)
        os.replace(tmp, self.model_path)
        stats = {
            "status": "DONE", "run_dir": str(run_dir), "images": len(items),
            "fine_tuned": fine_tuned,
            "total_time": round(time.time() - t0, 1), "model": str(self.model_path),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_json(self.stats_file, stats)
        logger.info("model updated: %s (%.1f s)", self.model_path, stats["total_time"])
        return stats
