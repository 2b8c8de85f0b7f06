"""Load whichever predictor a checkpoint file holds: the two-stage one or the one-stage baseline.

It sits above both :mod:`lumbar_monai.predictor` and :mod:`lumbar_monai.baselines.one_stage` (which builds on the
predictor's checkpoint helpers), so that neither has to import the other's importer: ``predictor`` imports no
baseline, and the module graph stays acyclic (``tests/test_import_cycles.py``).
"""

from __future__ import annotations

import os

import torch

from .baselines.one_stage import CHECKPOINT_FORMAT as ONE_STAGE_FORMAT
from .baselines.one_stage import OneStagePredictor
from .checkpoint import predictor_from_file, read_checkpoint
from .predictor import LandmarkPredictor

__all__ = ["load_predictor"]


def load_predictor(path: str | os.PathLike, device: str | torch.device | None = None):
    """The predictor stored in ``path``: the two-stage :class:`~lumbar_monai.predictor.LandmarkPredictor` or the
    one-stage baseline (:class:`~lumbar_monai.baselines.one_stage.OneStagePredictor`), chosen by the checkpoint's
    ``format``; the file is read with ``torch.load(weights_only=True)``. Bad files raise
    :class:`~lumbar_monai.errors.InputError`."""
    ckpt = read_checkpoint(path)
    cls = OneStagePredictor if ckpt.get("format") == ONE_STAGE_FORMAT else LandmarkPredictor
    return predictor_from_file(cls, path, device, ckpt)
