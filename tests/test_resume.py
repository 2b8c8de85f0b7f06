"""Resume (lumbar_monai.workflows.engines.run_stage): a killed-and-resumed run ends with the same weights as an
uninterrupted one, a checkpoint cut short by a kill during the save falls back to the previous one, and a finished
stage is not redone. Tiny network and data: each run takes well under a second."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import LrScheduleHandler, ValidationHandler, from_engine
from monai.transforms import Compose, RandFlipd, RandGaussianNoised

from lumbar_monai.workflows.checkpoints import ResumableCheckpointSaver, epoch_checkpoints, load_state_dict_file
from lumbar_monai.workflows.engines import ResumableEarlyStopHandler, negative_val_loss, run_stage, seed_everything

SEED = 7


class Killed(RuntimeError):
    """Stands in for SIGKILL inside one test process (the bundle tests use a real SIGKILL)."""


def _data(n: int, offset: int) -> list[dict]:
    rng = np.random.default_rng(offset)
    return [{"image": rng.random((1, 8, 8), dtype=np.float32), "label": rng.random((1, 8, 8), dtype=np.float32)}
            for _ in range(n)]


def _build(ckpt_dir, stage: str, max_epochs: int = 5, kill_at: tuple[int, int] | None = None):
    """One stage like the bundle's: random transforms, shuffling, dropout, Adam + LR decay, validation, early
    stopping, best-metric saver. ``kill_at=(epoch, iteration)`` raises :class:`Killed` at that iteration."""
    keys = ("image", "label")
    train_tf = Compose([RandFlipd(keys, prob=0.5, spatial_axis=1), RandGaussianNoised("image", prob=1.0, std=0.2)])
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Dropout(0.3), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.2, total_iters=max_epochs)
    train_loader = DataLoader(CacheDataset(_data(16, 0), train_tf, progress=False), batch_size=4, shuffle=True)
    val_loader = DataLoader(CacheDataset(_data(4, 1), None, progress=False), batch_size=4)
    loss = torch.nn.MSELoss()
    early = ResumableEarlyStopHandler(patience=50, score_function=negative_val_loss, epoch_level=True)
    best = ResumableCheckpointSaver(save_dir=str(ckpt_dir), save_dict={"network": net}, save_key_metric=True,
                                    key_metric_name="val_loss", key_metric_negative_sign=True,
                                    key_metric_filename=f"{stage}_best.pt")
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=val_loader, network=net, decollate=False,
        key_val_metric={"val_loss": _loss_metric(loss)}, val_handlers=[best, early],
        metric_cmp_fn=lambda cur, prev: prev < 0 or cur < prev)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=train_loader, network=net, optimizer=opt,
        loss_function=loss, decollate=False,
        train_handlers=[LrScheduleHandler(sched, print_lr=False),
                        ValidationHandler(validator=evaluator, interval=1, epoch_level=True)])
    early.set_trainer(trainer)
    if kill_at is not None:
        def _kill(engine) -> None:
            it = (engine.state.iteration - 1) % engine.state.epoch_length + 1
            if (engine.state.epoch, it) == kill_at:
                raise Killed(f"killed at epoch {engine.state.epoch}, iteration {it}")

        trainer.add_event_handler(Events.ITERATION_COMPLETED, _kill)
    save_dict = {"network": net, "optimizer": opt, "lr_scheduler": sched, "early_stop": early, "best_saver": best}
    return trainer, net, save_dict


def _loss_metric(loss):
    from ignite.metrics import Loss

    return Loss(loss, output_transform=from_engine(["pred", "label"]))


def _run(ckpt_dir, stage: str = "toy", seed: int = SEED, **kwargs):
    """A fresh "process": the bundle's ``initialize`` (seed everything), build the stage, run it."""
    seed_everything(seed)
    trainer, net, save_dict = _build(ckpt_dir, stage, **kwargs)
    run_stage(trainer, ckpt_dir, stage, save_dict, seed=seed)
    return net


def _scramble() -> None:
    """What a new process would have: global generators in some other state."""
    seed_everything(12345)
    torch.rand(17)
    np.random.rand(5)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _weights(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("uninterrupted")
    net = _run(d)
    return d, _weights(net)


def test_a_different_seed_gives_different_weights(uninterrupted, tmp_path):
    # the comparisons below are sensitive: a run that draws differently does not end with the same weights
    other = _weights(_run(tmp_path, seed=SEED + 1))
    assert not _same(other, uninterrupted[1])


def test_killed_mid_epoch_and_resumed_gives_identical_weights(uninterrupted, tmp_path):
    with pytest.raises(Killed):
        _run(tmp_path, kill_at=(3, 2))
    assert [p.name for p in epoch_checkpoints(tmp_path, "toy")] == ["toy_checkpoint_epoch=2.pt",
                                                                    "toy_checkpoint_epoch=1.pt"]
    _scramble()
    resumed = _run(tmp_path)
    ref_dir, ref = uninterrupted
    assert _same(_weights(resumed), ref)
    # the best-metric record resumed too: the same epoch's weights are the best in both runs
    assert _same(load_state_dict_file(tmp_path / "toy_best.pt"), load_state_dict_file(ref_dir / "toy_best.pt"))
    assert [p.name for p in epoch_checkpoints(tmp_path, "toy")] == ["toy_checkpoint_epoch=5.pt",
                                                                    "toy_checkpoint_epoch=4.pt"]


def test_checkpoint_cut_short_during_the_save_falls_back_to_the_previous_one(uninterrupted, tmp_path, caplog):
    with pytest.raises(Killed):
        _run(tmp_path, kill_at=(4, 1))
    newest = tmp_path / "toy_checkpoint_epoch=3.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # what a kill during a non-atomic torch.save leaves
    (tmp_path / "tmpk1ll3d_x").write_bytes(data[:100])  # and what one during an atomic save leaves
    _scramble()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lumbar_monai"):
        resumed = _run(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "toy_checkpoint_epoch=3.pt is unreadable" in warnings[0]
    assert "resuming from toy_checkpoint_epoch=2.pt" in warnings[0]
    assert not (tmp_path / "tmpk1ll3d_x").exists()
    assert _same(_weights(resumed), uninterrupted[1])


def test_no_readable_checkpoint_starts_afresh(uninterrupted, tmp_path, caplog):
    (tmp_path / "toy_checkpoint_epoch=2.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="lumbar_monai"):
        net = _run(tmp_path)
    assert any("no older one is readable" in r.getMessage() for r in caplog.records)
    assert _same(_weights(net), uninterrupted[1])


def test_killed_between_stages_does_not_redo_the_first(tmp_path):
    """Two stages in sequence, the second built after the first ran (as the bundle's ``training`` list does)."""
    def two_stages(d, kill_second: bool = False):
        seed_everything(SEED)
        first, net1, sd1 = _build(d, "first", max_epochs=2)
        epochs: list[int] = []
        first.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.epoch))
        run_stage(first, d, "first", sd1, seed=SEED)
        second, net2, sd2 = _build(d, "second", max_epochs=3, kill_at=(1, 1) if kill_second else None)
        run_stage(second, d, "second", sd2)  # default seed: the one the first stage ended with
        return epochs, _weights(net2)

    _, ref = two_stages(tmp_path / "ref")
    with pytest.raises(Killed):
        two_stages(tmp_path / "run", kill_second=True)
    assert (tmp_path / "run" / "first.done.json").is_file()
    before = (tmp_path / "run" / "first_best.pt").stat().st_mtime_ns
    _scramble()
    epochs, resumed = two_stages(tmp_path / "run")
    assert epochs == [], "the finished first stage ran again"
    assert (tmp_path / "run" / "first_best.pt").stat().st_mtime_ns == before
    assert _same(resumed, ref)
