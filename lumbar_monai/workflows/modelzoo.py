"""The bundle's model-zoo file: ``models/model.pt``, the primary network's (Pose-Net's) bare state dict.

model-zoo tools (``ckpt_export``, ``verify_net_in_out``, MONAI Label's ``BundleInferTask``) load ``models/model.pt``
into ``inference.json``'s ``network_def`` (:class:`~lumbar_monai.networks.posenet.PoseNetCentres`, the same keys as
the trained :class:`~lumbar_monai.networks.posenet.PoseNet`). The full two-stage model stays in
``lumbar_landmarks.pt`` (the predictor checkpoint).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

__all__ = ["MODEL_FILE", "export_primary_model"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


def export_primary_model(ckpt_dir: str | Path, stage: str = "posenet", filename: str = MODEL_FILE) -> Path:
    """Write ``<ckpt_dir>/<filename>``: the best (else latest) ``stage`` network as a bare state dict."""
    from ..io.atomic import atomic_write_bytes
    from .checkpoints import load_state_dict_file, stage_file

    d = Path(ckpt_dir)
    state = load_state_dict_file(stage_file(d, stage))
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    out = atomic_write_bytes(d / filename, buf.getvalue())
    logger.info("model-zoo weights (%s) written to %s", stage, out)
    return Path(out)
