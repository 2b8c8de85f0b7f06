"""MONAI Label app: lumbar spine and sacrum landmarks on lateral radiographs (lumbar-monai).

Start (see README.md)::

    .venv-monailabel/bin/monailabel start_server --app apps/lumbar_monailabel --studies STUDIES \\
        --conf models lumbar_landmarks --host 127.0.0.1 --port 8000

MONAI Label 0.8.5 is used through its task interfaces only (``InferTask``, ``TrainTask``, ``TaskConfig``, the
local datastore). MONAI Label has no authentication by default: bind it to 127.0.0.1 (README, Security). The app
checks what a client sends: train settings against an allow-list (HTTP 422, before any task starts), infer images
against the datastore (HTTP 404).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Any

from fastapi import HTTPException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `lib` (monailabel adds it for subprocesses only)

from lib.configs import LumbarLandmarks  # noqa: E402
from lib.infers import NoModelError  # noqa: E402
from monailabel.config import settings  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferTask  # noqa: E402
from monailabel.interfaces.tasks.train import TrainTask  # noqa: E402
from monailabel.utils.async_tasks.task import AsyncTask  # noqa: E402

from lumbar_monai.errors import InputError  # noqa: E402
from lumbar_monai.monailabel_support import RequestError, TrainRequestError, validate_train_request  # noqa: E402

logger = logging.getLogger(__name__)

#: task configs by model name (``--conf models <name>[,<name>]`` or ``all``)
CONFIGS = {"lumbar_landmarks": LumbarLandmarks}
#: image files the datastore lists besides MONAI Label's defaults (radiographs come as DICOM and JPEG too)
EXTRA_EXTENSIONS = ("*.dcm", "*.jpeg", "*.tiff")


def _check_train_requests() -> None:
    """Check every train request in the server process, before MONAI Label starts it.

    MONAI Label answers ``POST /train/<model>`` (without ``run_sync``) with a task id and runs the request in a
    background process, so a refusal there would come too late for an HTTP status, and the runner acts on some
    request keys before any app code sees them (``bundle_path`` goes onto the background process's
    ``PYTHONPATH``, ``gpus`` into ``CUDA_VISIBLE_DEVICES``). 0.8.5 offers no hook for this, so the app wraps
    :meth:`AsyncTask.run` (the one entry of both train endpoints, sync and background): a request that
    :func:`validate_train_request` refuses gets HTTP 422 and never starts. Installed once per process.
    """
    if getattr(AsyncTask.run, "_lumbar_checked", False):
        return
    original = AsyncTask.run

    def run(method: str, request=None, params=None, *args, **kwargs):
        if method == "train":
            body = {**dict(request or {}), **dict(params or {})}
            try:
                validate_train_request(body, model=body.get("model"))
            except TrainRequestError as e:
                raise HTTPException(status_code=422, detail=str(e)) from None
        return original(method, request, params, *args, **kwargs)

    run._lumbar_checked = True  # type: ignore[attr-defined]
    AsyncTask.run = staticmethod(run)


class LumbarLandmarkApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = os.path.join(app_dir, "model")
        wanted = [m.strip() for m in conf.get("models", "all").split(",") if m.strip()]
        if wanted in ([], ["all"]):
            wanted = list(CONFIGS)
        unknown = [m for m in wanted if m not in CONFIGS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; this app has {sorted(CONFIGS)} (or 'all')")
        self.planner = None
        self.models: dict[str, Any] = {}
        for name in wanted:
            cfg = CONFIGS[name]()
            cfg.init(name, self.model_dir, conf, self.planner)
            self.models[name] = cfg
            logger.info("model %s: checkpoint %s (%s)", name, cfg.path,
                        "present" if os.path.isfile(cfg.path) else "not trained yet")
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="lumbar-monai landmarks",
                         description="Lumbar spine and sacrum landmarks on lateral radiographs (An et al. 2022)",
                         version="0.1.0")
        _check_train_requests()

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        exts = list(settings.MONAI_LABEL_DATASTORE_FILE_EXT)
        exts += [e for e in EXTRA_EXTENSIONS if e not in exts]
        return LocalDatastore(self.studies, extensions=exts, auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                              read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for cfg in self.models.values():
            infers.update(cfg.infer())
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {name: cfg.trainer() for name, cfg in self.models.items()}

    @staticmethod
    def _check_image(request: dict[str, Any], datastore: Datastore) -> None:
        """HTTP 404 unless the request's image is a datastore id or a file MONAI Label received with the request
        (it saves uploads under the temporary folder); MONAI Label itself reads any server path it is given."""
        image = request.get("image")
        if not isinstance(image, str) or request.get("session"):
            return
        if image and os.path.isfile(datastore.get_image_uri(image) or ""):
            return
        tmp = os.path.realpath(tempfile.gettempdir())
        real = os.path.realpath(image) if image else ""
        if real and os.path.dirname(real) == tmp and os.path.isfile(real):
            return
        # the id is not repeated: ids may carry patient identifiers, and error details can end up in logs
        raise HTTPException(status_code=404, detail="no image with this id in the datastore "
                                                    "(GET /datastore/?output=all lists the image ids)")

    # clear answers instead of a bare HTTP 500: no model yet (503), a bad image or label file (422, naming the
    # file and, for labels, the landmark)
    def infer(self, request, datastore=None):
        self._check_image(request, datastore or self.datastore())
        try:
            return super().infer(request, datastore)
        except NoModelError as e:
            raise HTTPException(status_code=503, detail=str(e)) from None
        except (InputError, RequestError) as e:
            raise HTTPException(status_code=422, detail=str(e)) from None

    def train(self, request):
        try:
            return super().train(request)
        except RequestError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        except InputError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
