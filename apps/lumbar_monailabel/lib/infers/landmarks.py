"""Infer task: the two-stage landmark predictor on one datastore image (PNG, JPEG, TIFF, DICOM, NIfTI).

A custom :class:`monailabel.interfaces.tasks.infer_v2.InferTask` rather than ``BasicInferTask``: the predictor
brings its own pre-processing, both networks and the mapping back to original pixels
(:class:`lumbar_monai.predictor.LandmarkPredictor`), so MONAI Label's transform/inferer/writer chain has nothing
to add. The task returns what ``BasicInferTask`` returns: ``(label file, result JSON)``; the JSON is
:func:`lumbar_monai.monailabel_support.monailabel_result` (landmarks, centres, ``centroids``, measurements, QC
flags) plus MONAI Label's ``label_names`` and ``latencies``, and ``slicer_markups``: the landmarks as a 3D Slicer
markups point list (``.mrk.json`` content, LPS). The label image and the markups are in the radiograph's own
geometry as SimpleITK reads the file (origin, spacing, direction; :func:`~lumbar_monai.monailabel_support.
image_geometry`), so that Slicer overlays them on the radiograph in physical space.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lumbar_monai.anatomy import get_layout
from lumbar_monai.monailabel_support import (
    image_geometry,
    label_values,
    monailabel_result,
    parse_infer_request,
    slicer_markups,
    write_label_image,
)

logger = logging.getLogger(__name__)


class NoModelError(RuntimeError):
    """No predictor checkpoint at the configured path."""


def no_model_message(model_path: str | os.PathLike, model_name: str) -> str:
    return (f"no model is available: train one (POST /train/{model_name}, or "
            f"`python -m monai.bundle run training --config_file bundles/lumbar_landmarks/configs/train.json "
            f"--output_dir DIR` and copy DIR/models/lumbar_landmarks.pt) or set --conf model_path PATH "
            f"(or LUMBAR_MONAI_MODEL) to a lumbar_landmarks.pt; looked for {model_path}")


class LandmarkInfer(InferTask):
    """Landmarks of one radiograph with :class:`~lumbar_monai.predictor.LandmarkPredictor`.

    Args:
        model_path: the predictor checkpoint (``lumbar_landmarks.pt`` as the bundle's training writes it). It is
            (re)loaded on first use and whenever the file changes (e.g. after the train task replaced it).
        name: the model's name in MONAI Label (``/infer/<name>``), quoted in the no-model message.
        layout: the landmark layout the checkpoint must have.
        device: default device (``"cuda"`` when available, else ``"cpu"``); a request's ``device`` overrides it.
    """

    def __init__(self, model_path: str | os.PathLike, name: str = "lumbar_landmarks", layout: str = "lateral",
                 device: str | None = None) -> None:
        lay = get_layout(layout)
        super().__init__(
            type=InferType.SEGMENTATION,  # viewers list segmentation models and show their label image
            labels=label_values(lay),
            dimension=2,
            description=(f"Landmarks of the lumbar spine and sacrum ({lay.num_points} end-plate corners, "
                         f"{lay.num_vertebrae} centres) on a {lay.view} radiograph: two-stage Pose-Net + M-Net "
                         "(An et al. 2022). Label image: one small disc per landmark."),
            config={"device": device or ("cuda" if torch.cuda.is_available() else "cpu"), "label_radius": 0.0},
        )
        self.model_path = Path(model_path)
        self.name = name
        self.layout = lay
        self._lock = threading.Lock()
        self._loaded: tuple[Any, ...] | None = None  # (stamp, device, predictor)

    # MONAI Label lists only valid models in /info/: keep the task listed before any training, so that annotators
    # see it and infer answers with the no-model message instead of "no model 'x' available"
    def is_valid(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["model_path"] = str(self.model_path)
        out["model_available"] = self.model_path.is_file()
        return out

    def predictor(self, device: str):
        """The cached predictor, reloaded when the checkpoint file changed; :class:`NoModelError` without one."""
        from lumbar_monai.predictor import LandmarkPredictor

        try:
            st = self.model_path.stat()
        except FileNotFoundError:
            raise NoModelError(no_model_message(self.model_path, self.name)) from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._loaded is None or self._loaded[:2] != (stamp, device):
                pred = LandmarkPredictor.load(self.model_path, device=device)
                if pred.layout.name != self.layout.name:
                    raise NoModelError(f"{self.model_path}: the model's layout is {pred.layout.name!r}, "
                                       f"the app's {self.layout.name!r}")
                logger.info("loaded landmark model %s on %s (meta %s)", self.model_path, device, pred.meta)
                self._loaded = (stamp, device, pred)
            return self._loaded[2]

    def __call__(self, request) -> tuple[str | None, dict[str, Any]]:
        t0 = time.time()
        req = dict(self._config)
        req.update(request)
        device, radius = parse_infer_request(req)  # RequestError (HTTP 422) on a bad value
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        image = req.get("image")
        if not isinstance(image, (str, os.PathLike)):
            raise ValueError("the landmark task needs an image file (datastore id or uploaded file)")
        predictor = self.predictor(device)
        t1 = time.time()
        result = predictor.predict(str(image))
        t2 = time.time()
        doc = monailabel_result(result)
        fd, label_file = tempfile.mkstemp(suffix=".nii.gz", prefix="lumbar_landmarks_")
        os.close(fd)
        # the label and the markups in the radiograph's own geometry (as SimpleITK / 3D Slicer read the file), so
        # that a viewer places them on the image in physical space
        geometry = image_geometry(str(image), result.image_size)
        write_label_image(label_file, result, radius=radius, geometry=geometry)
        doc["slicer_markups"] = slicer_markups(result, geometry, name=self.name)
        t3 = time.time()
        doc["label_names"] = self.labels
        doc["latencies"] = {"load": round(t1 - t0, 3), "infer": round(t2 - t1, 3), "write": round(t3 - t2, 3),
                            "total": round(t3 - t0, 3)}
        # no file name in the log: datastore names may carry patient identifiers
        logger.info("landmarks in %.2f s; QC flags: %s", t3 - t0, ", ".join(result.qc_flags) or "none")
        return label_file, doc
