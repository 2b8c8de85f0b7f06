"""Small additions to MONAI's Ignite engines that the bundle needs and MONAI lacks (each says why).

* :class:`ResumableEarlyStopHandler` - MONAI's ``EarlyStopHandler`` has no ``state_dict``, so its patience counter
  would restart from zero after a resume; this subclass saves and restores it with the checkpoint.
* :func:`latest_checkpoint` / :func:`resume_loader` - find the newest "latest state" checkpoint that MONAI's
  ``CheckpointSaver`` wrote and build the ``CheckpointLoader`` that restores it (MONAI's loader needs a path).
* :func:`run_stage` - run a stage's trainer once: a finished stage (early-stopped or at ``max_epochs``) leaves a
  marker, so restarting ``training`` in the same ``output_dir`` continues with the next stage instead of re-running it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointLoader, EarlyStopHandler
from torch import nn

from ..io.atomic import atomic_write_json

__all__ = ["ResumableEarlyStopHandler", "latest_checkpoint", "resume_loader", "run_stage", "stage_done"]

logger = logging.getLogger(__name__)


class ResumableEarlyStopHandler(EarlyStopHandler):
    """MONAI's :class:`~monai.handlers.EarlyStopHandler` whose patience counter and best score survive a resume."""

    def state_dict(self) -> dict[str, Any]:
        h = self._handler
        if h is None:
            return {"counter": 0, "best_score": None}
        return {"counter": int(h.counter), "best_score": None if h.best_score is None else float(h.best_score)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending = dict(state)
        self._apply_pending()

    def set_trainer(self, trainer) -> None:
        super().set_trainer(trainer)
        self._apply_pending()

    def _apply_pending(self) -> None:
        state = getattr(self, "_pending", None)
        if state is None or self._handler is None:
            return
        self._handler.counter = int(state.get("counter", 0))
        self._handler.best_score = state.get("best_score")
        self._pending = None


_EPOCH = re.compile(r"epoch=(\d+)")


def latest_checkpoint(ckpt_dir: str | Path, prefix: str) -> Path | None:
    """Newest ``<prefix>_checkpoint_epoch=N.pt`` written by ``CheckpointSaver(save_interval=...)``, or ``None``."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.glob(f"{prefix}_checkpoint_epoch=*.pt") if (m := _EPOCH.search(p.name))]
    return max(found)[1] if found else None


def resume_loader(ckpt_dir: str | Path, prefix: str, load_dict: Mapping[str, Any], device=None) -> list:
    """``[CheckpointLoader]`` restoring the latest state of ``prefix`` when one exists, else ``[]``.

    Use it inside a handler list: ``"$@handlers_before + lumbar_monai.workflows.engines.resume_loader(...)"``.
    """
    path = latest_checkpoint(ckpt_dir, prefix)
    if path is None:
        return []
    logger.info("resuming %s from %s", prefix, path.name)
    return [CheckpointLoader(load_path=str(path), load_dict=dict(load_dict), map_location=device, strict=True)]


def stage_done(output_dir: str | Path, stage: str) -> bool:
    return (Path(output_dir) / f"{stage}.done.json").is_file()


def run_stage(trainer, ckpt_dir: str | Path, stage: str, save_dict: Mapping[str, Any] | None = None, device=None):
    """Run one stage's trainer with resume, unless the stage already finished in ``ckpt_dir``.

    Checkpointing is attached here rather than in the config because the trainer itself is part of the state to
    save (epoch, iteration), which a handler list passed to the trainer's constructor cannot reference. Each
    epoch, after validation, MONAI's ``CheckpointSaver`` writes ``<stage>_checkpoint_epoch=N.pt`` (the latest only)
    with ``save_dict`` + the trainer; a restart loads it with MONAI's ``CheckpointLoader`` and Ignite continues
    from the next epoch. A finished stage (``max_epochs`` reached or early-stopped) leaves
    ``<stage>.done.json`` and is skipped on restart.
    """
    from monai.handlers import CheckpointSaver

    if stage_done(ckpt_dir, stage):
        logger.info("stage %s already finished in %s: skipped", stage, ckpt_dir)
        return
    state = dict(save_dict or {})
    state["trainer"] = trainer
    resumed = False
    for loader in resume_loader(ckpt_dir, stage, state, device):
        loader.attach(trainer)
        resumed = True
    CheckpointSaver(save_dir=str(ckpt_dir), save_dict=state, file_prefix=stage, save_interval=1, n_saved=1,
                    epoch_level=True).attach(trainer)
    start = time.perf_counter()
    trainer.run()  # returns only when finished: max_epochs reached or early-stopped (a killed run never gets here)
    st = trainer.state
    # wall time of this (last) run, training + validation; a resumed stage counts only the part after the restart
    atomic_write_json(
        Path(ckpt_dir) / f"{stage}.done.json",
        {"stage": stage, "epochs": int(st.epoch), "early_stopped": bool(st.epoch < st.max_epochs),
         "wall_seconds": round(time.perf_counter() - start, 1), "resumed": resumed},
    )
    logger.info("stage %s finished after %d epochs", stage, st.epoch)


def negative_val_loss(engine) -> float:
    """Early-stopping score (higher is better) from the evaluator's ``val_loss`` metric."""
    return -float(engine.state.metrics["val_loss"])


def lower_is_better(current: float, best: float) -> bool:
    """``metric_cmp_fn`` for a loss; MONAI starts ``best_metric`` at -1, which counts as "no best yet"."""
    return best < 0 or current < best


def loss_of(output: Any) -> float:
    """The scalar training loss of a (non-decollated) ``SupervisedTrainer`` output, for Stats/TensorBoard handlers."""
    if isinstance(output, (list, tuple)):
        output = output[0]
    return float(output["loss"])


class FirstOutput(nn.Module):
    """Wrap a network that returns a tuple (Pose-Net: final maps, L5 pre-prediction) so it returns the first only.

    ``verify_net_in_out`` and deployment runtimes expect one output tensor.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]
