"""Task config of the landmark model (MONAI Label's ``TaskConfig``): where the model and the bundle are.

App conf options (``monailabel start_server ... --conf KEY VALUE``):

* ``model_path``: the predictor checkpoint (``lumbar_landmarks.pt`` as the bundle's training writes it to
  ``<output_dir>/models/``); else the environment variable ``LUMBAR_MONAI_MODEL``; else
  ``<app>/model/lumbar_landmarks.pt`` (where the train task puts its result).
* ``bundle_dir``: the MONAI Bundle (else ``LUMBAR_MONAI_BUNDLE``, else ``bundles/lumbar_landmarks`` of the
  checkout the app lives in).
* ``device``: ``cpu`` / ``cuda`` (default: CUDA when available).
* ``layout``: ``lateral`` (default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monailabel.interfaces.config import TaskConfig

from lib.infers import LandmarkInfer
from lib.trainers import LandmarkTrain

APP_DIR = Path(__file__).resolve().parents[2]
MODEL_FILE = "lumbar_landmarks.pt"


class LumbarLandmarks(TaskConfig):
    """One model, ``lumbar_landmarks``: the two-stage predictor and its bundle training."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        self.path = conf.get("model_path") or os.environ.get("LUMBAR_MONAI_MODEL") or str(Path(model_dir) / MODEL_FILE)
        self.bundle_path = (conf.get("bundle_dir") or os.environ.get("LUMBAR_MONAI_BUNDLE")
                            or str(APP_DIR.parents[1] / "bundles" / "lumbar_landmarks"))
        self.device = conf.get("device") or None
        self.layout = conf.get("layout", "lateral")

    def infer(self) -> dict[str, LandmarkInfer]:
        return {self.name: LandmarkInfer(self.path, name=self.name, layout=self.layout, device=self.device)}

    def trainer(self) -> LandmarkTrain:
        return LandmarkTrain(self.path, self.bundle_path, layout=self.layout)
