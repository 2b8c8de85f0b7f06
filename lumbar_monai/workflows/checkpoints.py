"""Turn the three stages' best checkpoints into one predictor checkpoint (``weights_only``-loadable)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_state_dict_file", "stage_file", "export_predictor_checkpoint", "PREDICTOR_FILE"]

logger = logging.getLogger(__name__)

PREDICTOR_FILE = "lumbar_landmarks.pt"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A network's state dict from a MONAI ``CheckpointSaver`` file (``{"network": sd}`` or a bare ``sd``)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "network" in obj and isinstance(obj["network"], Mapping):
        return dict(obj["network"])
    return dict(obj)


def stage_file(ckpt_dir: Path, stage: str) -> Path:
    """A stage's best checkpoint (``<stage>_best.pt``), else its latest epoch checkpoint."""
    best = ckpt_dir / f"{stage}_best.pt"
    if best.is_file():
        return best
    from .engines import latest_checkpoint

    latest = latest_checkpoint(ckpt_dir, stage)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint for stage {stage} in {ckpt_dir}")
    return latest


def export_predictor_checkpoint(
    ckpt_dir: str | Path,
    layout: str,
    posenet: Mapping[str, Any],
    mnet_lumbar: Mapping[str, Any],
    mnet_sacrum: Mapping[str, Any] | None = None,
    filename: str = PREDICTOR_FILE,
    trained_on: str = "synthetic",
) -> Path:
    """Write ``<ckpt_dir>/<filename>``: the Pose-Net and M-Nets (best validation loss) with their settings.

    Args:
        ckpt_dir: where the stages' ``<stage>_best.pt`` (or latest) checkpoints are.
        layout: layout name.
        posenet, mnet_lumbar, mnet_sacrum: the bundle's sections of the same names (``mnet_sacrum`` unused for a
            layout without sacrum).
    """
    from ..anatomy import get_layout
    from ..networks.mnet import MNet
    from ..networks.posenet import PoseNet
    from ..predictor import LandmarkPredictor, with_init_kwargs
    from ..training.stage2 import Stage2Config

    d = Path(ckpt_dir)
    lay = get_layout(layout)
    pose_kwargs = {"layout": lay.name, "width": int(posenet["width"]), "kernel_size": int(posenet["kernel_size"])}
    for key in ("stage_channels", "pre_convs", "stage_convs"):
        if posenet.get(key) is not None:
            pose_kwargs[key] = int(posenet[key])
    centre_net = with_init_kwargs(PoseNet, **pose_kwargs)
    centre_net.load_state_dict(load_state_dict_file(stage_file(d, "posenet")))

    def mnet(section: Mapping[str, Any], stage: str) -> torch.nn.Module:
        cfg = Stage2Config(**dict(section["config"]))
        net = with_init_kwargs(MNet, **cfg.network_kwargs())
        net.load_state_dict(load_state_dict_file(stage_file(d, stage)))
        return net

    lumbar_cfg = Stage2Config(**dict(mnet_lumbar["config"]))
    predictor = LandmarkPredictor(
        layout=lay,
        lumbar_net=mnet(mnet_lumbar, "mnet_lumbar"),
        sacrum_net=mnet(mnet_sacrum, "mnet_sacrum") if lay.has_sacrum and mnet_sacrum is not None else None,
        centre_net=centre_net,
        crop_size=lumbar_cfg.crop_size,
        crop_blur_sigma=lumbar_cfg.crop_blur_sigma,
        stage1={"input_size": int(posenet["input_size"]), "heatmap_size": int(posenet["heatmap_size"]),
                # Algorithm 1 settings (lumbar_monai.postprocess.repair_missing_centre); False switches it off
                "repair": dict(posenet.get("repair") or {}) if posenet.get("repair", {}) is not False else False},
        device="cpu",
        meta={"trained_on": trained_on, "bundle": "lumbar_landmarks"},
    )
    out = predictor.save(d / filename)
    logger.info("predictor checkpoint written to %s", out)
    return out
