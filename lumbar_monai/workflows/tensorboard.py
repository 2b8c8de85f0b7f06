"""TensorBoard for the bundle's three stages: per-stage tags, the learning rate, predicted-vs-true overlays.

MONAI's ``TensorBoardStatsHandler`` writes an evaluator's metrics under their own names, so three stages that all
report ``val_loss`` draw one colliding curve; :class:`StageEpochWriter` (its ``epoch_event_writer``) writes them as
``<stage>/<metric>`` and adds ``<stage>/lr`` from an optimizer. :class:`OverlayHandler` adds a few images per
validation epoch, ``<stage>/overlay_<i>``: the input with the true (green) and predicted (red) peak of every
point channel.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

__all__ = ["StageEpochWriter", "OverlayHandler", "overlay_image"]

logger = logging.getLogger(__name__)


class StageEpochWriter:
    """``epoch_event_writer`` for ``TensorBoardStatsHandler``: ``<stage>/<metric>`` scalars and ``<stage>/lr``.

    Args:
        stage: tag prefix (``posenet``, ``mnet_lumbar``, ``mnet_sacrum``).
        optimizer: when given, its first parameter group's learning rate is written as ``<stage>/lr``.
    """

    def __init__(self, stage: str, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.stage = str(stage)
        self.optimizer = optimizer

    def __call__(self, engine, writer) -> None:
        epoch = int(engine.state.epoch)
        for name, value in engine.state.metrics.items():
            if isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
                writer.add_scalar(f"{self.stage}/{name}", float(value), epoch)
        if self.optimizer is not None:
            writer.add_scalar(f"{self.stage}/lr", float(self.optimizer.param_groups[0]["lr"]), epoch)
        writer.flush()


def _peaks(maps: torch.Tensor) -> np.ndarray:
    """``(C, h, w)`` -> ``(C, 2)`` (x, y) argmax of every channel."""
    c, _, w = maps.shape
    idx = maps.reshape(c, -1).argmax(dim=1).cpu().numpy()
    return np.stack([idx % w, idx // w], axis=1).astype(np.float64)


def overlay_image(image: torch.Tensor, pred: torch.Tensor, label: torch.Tensor, point_channels: int | None = None,
                  mark: int = 2) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``image`` ``(1, H, W)`` in grey with the per-channel peaks of ``label`` (green) and
    ``pred`` (red) as small squares; maps of any size are scaled to the image. ``point_channels`` limits the
    channels to the first ones (M-Net's PAF channel is not a point)."""
    img = image.detach().float().cpu()[0]
    lo, hi = float(img.min()), float(img.max())
    grey = ((img - lo) / (hi - lo if hi > lo else 1.0) * 255).numpy().astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    h, w = grey.shape
    n = point_channels or pred.shape[0]
    for maps, colour in ((label, (0, 255, 0)), (pred, (255, 0, 0))):
        m = maps.detach().float()[:n]
        sx, sy = w / m.shape[-1], h / m.shape[-2]
        for x, y in _peaks(m):
            cx, cy = int((x + 0.5) * sx), int((y + 0.5) * sy)
            rgb[max(0, cy - mark):cy + mark + 1, max(0, cx - mark):cx + mark + 1] = colour
    return rgb


class OverlayHandler:
    """Evaluator handler: at the end of each validation run, ``n_images`` overlays of the last batch to TensorBoard.

    Needs a non-decollated evaluator (``decollate=False``, as in the bundle) so that ``engine.state.output`` holds
    the batch's ``image``, ``pred`` and ``label``; a tuple/list ``pred`` (Pose-Net, deep supervision) uses its first
    element.

    Args:
        log_dir: TensorBoard folder.
        stage: tag prefix.
        n_images: overlays per epoch.
        point_channels: point channels of the maps (``None``: all).
    """

    def __init__(self, log_dir: str, stage: str, n_images: int = 2, point_channels: int | None = None) -> None:
        self.log_dir = str(log_dir)
        self.stage = str(stage)
        self.n_images = int(n_images)
        self.point_channels = point_channels
        self._writer = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        out: Any = engine.state.output
        if isinstance(out, (list, tuple)):  # decollated: a list of item dicts
            if not out:
                return
            out = {k: torch.stack([torch.as_tensor(o[k]) for o in out]) for k in ("image", "label")} | {
                "pred": [o["pred"] for o in out]}
        if not isinstance(out, dict) or not {"image", "pred", "label"} <= set(out):
            return
        pred = out["pred"]
        if isinstance(pred, (list, tuple)) and isinstance(pred[0], torch.Tensor) and pred[0].ndim == 4:
            pred = pred[0]
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
        epoch = int(engine.state.epoch)
        for i in range(min(self.n_images, len(out["image"]))):
            rgb = overlay_image(out["image"][i], pred[i], out["label"][i], self.point_channels)
            self._writer.add_image(f"{self.stage}/overlay_{i}", rgb, epoch, dataformats="HWC")
        self._writer.flush()
