"""Handlers the bundle tests inject through an extra config file (importable from the test subprocesses)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ignite.engine import Events


class RecordEpochs:
    """Append ``<stage> <epoch>`` to a file each time an epoch completes."""

    def __init__(self, path: str, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        with self.path.open("a") as f:
            f.write(f"{self.stage} {engine.state.epoch}\n")


class KillAt:
    """SIGKILL the process at ``iteration`` of ``epoch`` (a real crash mid-epoch, nothing gets to clean up)."""

    def __init__(self, epoch: int, iteration: int = 1) -> None:
        self.epoch = int(epoch)
        self.iteration = int(iteration)

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        per_epoch = engine.state.epoch_length
        it_in_epoch = (engine.state.iteration - 1) % per_epoch + 1
        if engine.state.epoch == self.epoch and it_in_epoch == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


def run_bundle(args: list[str], *, check: bool = True, timeout: int = 600):
    """``python -m monai.bundle <args>`` in the bundle folder, with ``tests/`` importable (for the handlers above)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "tests"), str(repo), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    proc = subprocess.run(cmd, cwd=repo / "bundles" / "lumbar_landmarks", env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
