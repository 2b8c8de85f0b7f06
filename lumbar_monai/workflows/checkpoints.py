"""Checkpoint files: written atomically, read back with a fallback to the newest readable one, and the three stages'
best checkpoints turned into one predictor checkpoint (``weights_only``-loadable).

Why not MONAI's ``CheckpointSaver`` as it is: it hard-codes Ignite's ``DiskSaver(atomic=False)`` and, with
``n_saved=1``, deletes the previous file before it writes the next, so a kill during the save leaves a truncated newest
checkpoint ("PytorchStreamReader failed") that blocks every restart. Here the same Ignite ``Checkpoint`` machinery
writes through Ignite's own ``DiskSaver(atomic=True)`` (a temporary file in the same folder, then ``os.replace``), and
a restart skips an unreadable file with a one-line warning (a file from before this change, or a damaged copy).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = [
    "AtomicDiskSaver",
    "ResumableCheckpointSaver",
    "read_checkpoint",
    "epoch_checkpoints",
    "latest_checkpoint",
    "latest_readable_checkpoint",
    "remove_partial_files",
    "load_state_dict_file",
    "stage_file",
    "export_predictor_checkpoint",
    "PREDICTOR_FILE",
]

logger = logging.getLogger(__name__)

PREDICTOR_FILE = "lumbar_landmarks.pt"
_EPOCH = re.compile(r"_checkpoint_epoch=(\d+)\.pt$")
# Ignite's atomic DiskSaver writes through tempfile.NamedTemporaryFile(dir=...): "tmp" + 8 characters, no suffix
_PARTIAL = re.compile(r"^tmp[a-z0-9_]{8}$")


class AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` with ``atomic=True`` and, like MONAI's private one, an optional fixed file name.

    With a fixed name, ``remove`` does nothing: Ignite's ``Checkpoint`` calls it just before it writes the same name
    again, and ``os.replace`` swaps the new file in atomically, so the old one must stay until then. A file already
    gone (removed before a kill, listed in a restored ``Checkpoint`` state) is not an error.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, create_dir=True, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            import ignite.distributed as idist

            if idist.get_rank() == self.save_on_rank:
                (self.dirname / filename).unlink(missing_ok=True)


class ResumableCheckpointSaver(CheckpointSaver):
    """MONAI's :class:`~monai.handlers.CheckpointSaver` writing through :class:`AtomicDiskSaver`, with a
    ``state_dict``: put it in the trainer's ``save_dict`` and its record of the best key metric resumes with the
    trainer (MONAI's saver can load that record but not give it, so after a restart it would take the first
    validation as the best).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                ckpt.save_handler = AtomicDiskSaver(self.save_dir, getattr(ckpt.save_handler, "filename", None))

    def state_dict(self) -> dict[str, Any]:
        ckpt = self._key_metric_checkpoint
        return dict(ckpt.state_dict()) if ckpt is not None else {"_saved": []}


def read_checkpoint(path: str | Path) -> tuple[Any, str | None]:
    """``(content, None)`` for a readable checkpoint, ``(None, one-line reason)`` for an unreadable one."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), None
    except Exception as e:  # truncated zip, not a zip, disallowed pickle, I/O error: all mean "cannot resume from it"
        reason = (str(e).strip().splitlines() or [""])[0].split(". ")[0]
        return None, f"{type(e).__name__}: {reason[:120]}" if reason else type(e).__name__


def epoch_checkpoints(ckpt_dir: str | Path, prefix: str) -> list[Path]:
    """``<prefix>_checkpoint_epoch=N.pt`` files in ``ckpt_dir``, newest epoch first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.glob(f"{prefix}_checkpoint_epoch=*.pt"):
        m = _EPOCH.search(p.name)
        if m and p.name == f"{prefix}_checkpoint_epoch={m.group(1)}.pt":
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(ckpt_dir: str | Path, prefix: str) -> Path | None:
    """Newest ``<prefix>_checkpoint_epoch=N.pt`` by its epoch number (readable or not), or ``None``."""
    found = epoch_checkpoints(ckpt_dir, prefix)
    return found[0] if found else None


def latest_readable_checkpoint(ckpt_dir: str | Path, prefix: str) -> tuple[Path, Any] | None:
    """The newest epoch checkpoint that loads, with its content; each newer unreadable one gets a one-line warning."""
    skipped: list[tuple[Path, str]] = []
    for path in epoch_checkpoints(ckpt_dir, prefix):
        content, why = read_checkpoint(path)
        if why is None and isinstance(content, Mapping):
            for bad, reason in skipped:
                logger.warning("checkpoint %s is unreadable (%s; a kill during the save?): resuming from %s",
                               bad.name, reason, path.name)
            return path, content
        skipped.append((path, why or "not a dictionary of states"))
    for bad, reason in skipped:
        logger.warning("checkpoint %s is unreadable (%s) and no older one is readable: %s starts afresh",
                       bad.name, reason, prefix)
    return None


def remove_partial_files(ckpt_dir: str | Path) -> list[str]:
    """Delete the temporary files an atomic save killed half-way left in ``ckpt_dir``; returns their names."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    gone = []
    for p in d.iterdir():
        if p.is_file() and _PARTIAL.match(p.name):
            p.unlink(missing_ok=True)
            gone.append(p.name)
    if gone:
        logger.info("removed %d partial checkpoint file(s) left by an interrupted save in %s", len(gone), d)
    return gone


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A network's state dict from a MONAI ``CheckpointSaver`` file (``{"network": sd}`` or a bare ``sd``)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "network" in obj and isinstance(obj["network"], Mapping):
        return dict(obj["network"])
    return dict(obj)


def stage_file(ckpt_dir: Path, stage: str) -> Path:
    """A stage's best checkpoint (``<stage>_best.pt``), else (missing or unreadable) its newest readable one."""
    best = Path(ckpt_dir) / f"{stage}_best.pt"
    if best.is_file():
        _, why = read_checkpoint(best)
        if why is None:
            return best
        logger.warning("checkpoint %s is unreadable (%s): using the newest readable epoch checkpoint", best.name, why)
    latest = latest_readable_checkpoint(ckpt_dir, stage)
    if latest is None:
        raise FileNotFoundError(f"no readable checkpoint for stage {stage} in {ckpt_dir}")
    return latest[0]


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
    from ..checkpoint import with_init_kwargs
    from ..networks.mnet import MNet
    from ..networks.posenet import PoseNet
    from ..predictor import LandmarkPredictor
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
        crop_antialias=lumbar_cfg.crop_antialias,
        stage1={"input_size": int(posenet["input_size"]), "heatmap_size": int(posenet["heatmap_size"]),
                # Algorithm 1 settings (lumbar_monai.postprocess.repair_missing_centre); False switches it off
                "repair": dict(posenet.get("repair") or {}) if posenet.get("repair", {}) is not False else False},
        device="cpu",
        meta={"trained_on": trained_on, "bundle": "lumbar_landmarks"},
    )
    out = predictor.save(d / filename)
    logger.info("predictor checkpoint written to %s", out)
    return out
