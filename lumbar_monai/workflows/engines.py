"""Small additions to MONAI's Ignite engines that the bundle needs and MONAI lacks (each says why).

* :class:`ResumableEarlyStopHandler` - MONAI's ``EarlyStopHandler`` has no ``state_dict``, so its patience counter
  would restart from zero after a resume; this subclass saves and restores it with the checkpoint.
* :class:`EpochSeeder` - reseeds every random number generator at the start of each epoch from ``(seed, stage,
  epoch)``, so that a run resumed at an epoch boundary draws exactly what the uninterrupted run drew.
* :func:`resume_loader` - MONAI's ``CheckpointLoader`` for the newest *readable* epoch checkpoint (MONAI's loader needs
  a path, and the newest file may be one a kill cut short).
* :func:`run_stage` - run a stage's trainer once, with atomic epoch checkpoints and resume: a finished stage
  (early-stopped or at ``max_epochs``) leaves a marker, so restarting ``training`` in the same ``output_dir``
  continues with the next stage instead of re-running it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.handlers import CheckpointLoader, EarlyStopHandler
from torch import nn

from ..io.atomic import atomic_write_json
from .checkpoints import AtomicDiskSaver, latest_checkpoint, latest_readable_checkpoint, remove_partial_files

__all__ = [
    "ResumableEarlyStopHandler",
    "EpochSeeder",
    "epoch_seed",
    "seed_everything",
    "latest_checkpoint",
    "resume_loader",
    "run_stage",
    "stage_done",
]

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


def epoch_seed(seed: int, stage: str, epoch: int) -> int:
    """A 32-bit seed for ``epoch`` of ``stage``, independent for every (seed, stage, epoch)."""
    entropy = [int(seed) % 2**64, zlib.crc32(stage.encode()), int(epoch)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def seed_everything(seed: int, dataset: Any = None) -> None:
    """Seed Python's ``random``, NumPy, torch (CPU and every CUDA device) and, with ``dataset``, every MONAI
    randomizable transform in it (:func:`monai.data.utils.set_rnd`, what MONAI's ``DataLoader`` does once)."""
    from monai.data.utils import set_rnd
    from monai.utils import set_determinism

    set_determinism(seed=int(seed) % 2**32)
    if dataset is not None:
        set_rnd(dataset, seed=int(seed) % 2**32)


class EpochSeeder:
    """Reseed everything at ``EPOCH_STARTED`` from ``(seed, stage, epoch)``; its state (the seed) goes into the
    checkpoint, so a resumed run continues with the seed it started with.

    This is the whole of the random state a resume needs: nothing random is drawn between the end of an epoch (when
    the checkpoint is written) and the start of the next, and at ``EPOCH_STARTED`` Ignite has not yet built the
    epoch's data iterator, so the sampler's shuffle (drawn from torch's generator), the DataLoader workers' seeds
    and the transforms' random states all follow from the reseed. Mid-epoch state is never saved: a kill mid-epoch
    repeats that epoch from its start.
    """

    def __init__(self, seed: int, stage: str, dataset: Any = None) -> None:
        self.seed = int(seed)
        self.stage = str(stage)
        self.dataset = dataset

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine) -> None:
        seed_everything(epoch_seed(self.seed, self.stage, engine.state.epoch), self.dataset)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "stage": self.stage}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        seed = int(state["seed"])
        if seed != self.seed:
            logger.warning("%s: the checkpoint was trained with seed %d, not %d: continuing with %d",
                           self.stage, seed, self.seed, seed)
        self.seed = seed


def resume_loader(ckpt_dir: str | Path, prefix: str, load_dict: Mapping[str, Any], device=None) -> list:
    """``[CheckpointLoader]`` restoring the newest readable state of ``prefix`` when one exists, else ``[]``.

    Objects in ``load_dict`` that the checkpoint lacks (one written before they were saved) are left as they are,
    with a warning. Use it inside a handler list:
    ``"$@handlers_before + lumbar_monai.workflows.engines.resume_loader(...)"``.
    """
    found = latest_readable_checkpoint(ckpt_dir, prefix)
    if found is None:
        return []
    path, content = found
    missing = sorted(k for k in load_dict if k not in content)
    if missing:
        logger.warning("%s has no %s: those start afresh (a resumed run may then differ from an uninterrupted one)",
                       path.name, ", ".join(missing))
    loadable = {k: v for k, v in load_dict.items() if k in content}
    logger.info("resuming %s from %s", prefix, path.name)
    return [CheckpointLoader(load_path=str(path), load_dict=loadable, map_location=device, strict=True)]


def stage_done(output_dir: str | Path, stage: str) -> bool:
    return (Path(output_dir) / f"{stage}.done.json").is_file()


def run_stage(trainer, ckpt_dir: str | Path, stage: str, save_dict: Mapping[str, Any] | None = None, device=None,
              seed: int | None = None):
    """Run one stage's trainer with resume, unless the stage already finished in ``ckpt_dir``.

    Checkpointing is attached here rather than in the config because the trainer itself is part of the state to
    save (epoch, iteration), which a handler list passed to the trainer's constructor cannot reference. Each
    epoch, after validation, Ignite's ``Checkpoint`` writes ``<stage>_checkpoint_epoch=N.pt`` atomically (the two
    newest are kept) with ``save_dict`` + the trainer + the :class:`EpochSeeder` + the saver's own record; a restart
    loads the newest readable one with MONAI's ``CheckpointLoader`` and Ignite continues from the next epoch. A
    finished stage (``max_epochs`` reached or early-stopped) leaves ``<stage>.done.json`` and is skipped on restart.

    Args:
        seed: base seed of the per-epoch reseeding; by default the seed torch was last seeded with
            (``torch.initial_seed()``): the bundle's ``initialize`` calls ``set_determinism(seed=@seed)``, and every
            stage ends by reseeding with its base seed, so every stage of a run gets the same one.

    Whether the stage ran or was skipped, it ends by reseeding everything with the base seed, so the next stage's
    networks and data loaders are built from the same random state whether or not this stage ran in this process.
    """
    from ignite.handlers import Checkpoint

    if seed is None:
        seed = torch.initial_seed()
    if stage_done(ckpt_dir, stage):
        logger.info("stage %s already finished in %s: skipped", stage, ckpt_dir)
        seed_everything(seed)
        return
    import ignite.distributed as idist

    if idist.get_rank() == 0:
        remove_partial_files(ckpt_dir)
    state = dict(save_dict or {})
    state["trainer"] = trainer
    seeder = EpochSeeder(seed, stage, getattr(getattr(trainer, "data_loader", None), "dataset", None))
    state["rng"] = seeder
    saver = Checkpoint(state, AtomicDiskSaver(ckpt_dir), filename_prefix=stage, score_name="epoch",
                       score_function=lambda engine: engine.state.epoch, n_saved=2, include_self=True)
    loaders = resume_loader(ckpt_dir, stage, {**state, "checkpointer": saver}, device)
    for loader in loaders:
        loader.attach(trainer)
    seeder.attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    start = time.perf_counter()
    trainer.run()  # returns only when finished: max_epochs reached or early-stopped (a killed run never gets here)
    st = trainer.state
    # wall time of this (last) run, training + validation; a resumed stage counts only the part after the restart
    atomic_write_json(
        Path(ckpt_dir) / f"{stage}.done.json",
        {"stage": stage, "epochs": int(st.epoch), "early_stopped": bool(st.epoch < st.max_epochs),
         "wall_seconds": round(time.perf_counter() - start, 1), "resumed": bool(loaders)},
    )
    logger.info("stage %s finished after %d epochs", stage, st.epoch)
    seed_everything(seed)


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
