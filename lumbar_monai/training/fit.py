"""One supervised fit on MONAI's Ignite engines, shared by the stage-1 and stage-2 training helpers.

Section 4.1 of An et al. 2022: Adam, linear learning-rate decay, validation loss every epoch, early stopping after
``patience`` epochs without improvement, the best weights restored at the end. (The bundle builds the same engines
from its JSON configs, with checkpointing and resume; this function is the programmatic, in-memory variant used by
tests, notebooks and the MONAI Label app.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["fit"]


def fit(
    net: torch.nn.Module,
    train_loader,
    loss: torch.nn.Module,
    lr: float,
    max_epochs: int,
    val_loader=None,
    val_loss: torch.nn.Module | None = None,
    patience: int = 30,
    linear_lr_decay: bool = True,
    device: str | torch.device = "cpu",
    prepare_batch: Callable | None = None,
    max_seconds: float | None = None,
    select_metric=None,
    amp: bool = False,
    decay_in_time: bool = False,
) -> dict[str, Any]:
    """Train ``net`` in place; returns ``{"history": [mean train loss per epoch], "val_history": [...]}``.

    Args:
        net: the network (already on ``device``).
        train_loader, val_loader: data loaders yielding batches with ``image`` and ``label`` (or whatever
            ``prepare_batch`` reads).
        loss: training loss ``loss(pred, label)``; ``val_loss`` (default ``loss``) is the validation metric.
        lr, max_epochs, patience, linear_lr_decay: the schedule.
        prepare_batch: MONAI ``prepare_batch`` callable (default: ``image``/``label`` keys).
        max_seconds: stop training after this wall time (Ignite's ``TimeLimit``; the best weights so far are kept).
        select_metric: an Ignite metric built with ``output_transform=from_engine(["pred", "label"])`` (lower is
            better, e.g.
            :class:`~lumbar_monai.metrics.selection.PeakDistance`) that picks the best weights and drives early
            stopping instead of the validation loss; ``val_history`` then holds it, ``val_loss_history`` the loss.
        amp: mixed precision in MONAI's trainer and evaluator (``torch.autocast`` and a gradient scaler; CUDA only).
        decay_in_time: with ``max_seconds``, the linear decay runs over the wall time instead of the epochs (*ours*):
            the learning rate falls from ``lr`` to ``lr / max_epochs`` as the time limit nears, so a run capped in
            time whose epoch speed is not known beforehand (a GPU lent for minutes) still ends annealed.
    """
    from ignite.engine import Events
    from ignite.handlers import EarlyStopping
    from ignite.metrics import Loss
    from monai.engines import SupervisedEvaluator, SupervisedTrainer
    from monai.engines.utils import default_prepare_batch
    from monai.handlers import LrScheduleHandler, ValidationHandler, from_engine

    prepare_batch = prepare_batch or default_prepare_batch
    device = torch.device(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    handlers: list = []
    timed = bool(decay_in_time) and max_seconds is not None
    if linear_lr_decay and not timed:
        epochs = max(int(max_epochs), 1)
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=1.0 / epochs, total_iters=epochs)
        handlers.append(LrScheduleHandler(sched, print_lr=False))
    trainer = SupervisedTrainer(
        device=device, max_epochs=int(max_epochs), train_data_loader=train_loader, network=net, optimizer=opt,
        loss_function=loss, train_handlers=handlers, prepare_batch=prepare_batch, decollate=False, amp=amp,
    )
    if max_seconds is not None:
        from ignite.handlers import TimeLimit

        trainer.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(int(max_seconds)))
    if linear_lr_decay and timed:
        _decay_over_time(trainer, opt, lr, 1.0 / max(int(max_epochs), 1), float(max_seconds))
    history: list[float] = []
    running: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: running.append(float(torch.as_tensor(e.state.output["loss"]).detach())))

    def _epoch_mean(engine) -> None:
        history.append(float(np.mean(running)))
        running.clear()

    trainer.add_event_handler(Events.EPOCH_COMPLETED, _epoch_mean)
    val_history: list[float] = []
    val_loss_history: list[float] = []
    best: dict[str, Any] = {"loss": float("inf"), "state": None}
    if val_loader is not None:
        from ..metrics.selection import LANDMARK_METRIC

        loss_metric = Loss(val_loss or loss, output_transform=from_engine(["pred", "label"]))
        if select_metric is None:
            key, metrics = "val_loss", {"val_loss": loss_metric}
        else:
            key, metrics = LANDMARK_METRIC, {LANDMARK_METRIC: select_metric}
        evaluator = SupervisedEvaluator(
            device=device, val_data_loader=val_loader, network=net, prepare_batch=prepare_batch,
            key_val_metric=metrics,
            additional_metrics=None if select_metric is None else {"val_loss": loss_metric},
            metric_cmp_fn=lambda current, prev: prev < 0 or current < prev, decollate=False, amp=amp,
        )

        def _record(engine) -> None:
            v = float(engine.state.metrics[key])
            val_history.append(v)
            val_loss_history.append(float(engine.state.metrics["val_loss"]))
            if v < best["loss"]:
                best["loss"] = v
                best["state"] = {k: t.detach().clone() for k, t in net.state_dict().items()}

        evaluator.add_event_handler(Events.COMPLETED, _record)
        evaluator.add_event_handler(
            Events.COMPLETED,
            EarlyStopping(patience=patience, score_function=lambda e: -e.state.metrics[key], trainer=trainer),
        )
        ValidationHandler(validator=evaluator, interval=1, epoch_level=True).attach(trainer)
    trainer.run()
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    net.eval()
    return {"history": history, "val_history": val_history, "val_loss_history": val_loss_history}


def _decay_over_time(trainer, opt: torch.optim.Optimizer, lr: float, end_factor: float, seconds: float) -> None:
    """Linear decay of ``opt``'s learning rate from ``lr`` to ``lr * end_factor`` over ``seconds`` of the trainer's
    wall time, set before every iteration. (Neither torch's schedulers nor Ignite's param schedulers step on time.)"""
    import time

    from ignite.engine import Events

    start: list[float] = []

    @trainer.on(Events.STARTED)
    def _start(engine) -> None:
        start[:] = [time.monotonic()]

    @trainer.on(Events.ITERATION_STARTED)
    def _set(engine) -> None:
        frac = min((time.monotonic() - start[0]) / max(seconds, 1e-9), 1.0)
        for group in opt.param_groups:
            group["lr"] = lr * (1.0 - (1.0 - end_factor) * frac)
