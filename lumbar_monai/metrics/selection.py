"""Model selection by the landmark metric (issue: keep the best checkpoint by landmark error, not by the loss).

:class:`PeakDistance` is an Ignite metric over a validation evaluator's ``(pred, label)``: the mean Euclidean
distance between the decoded peak of each predicted map and the peak of its target map, in input pixels. For
Pose-Net it is the centre distance error of Section 4.2 measured at the heatmap's peaks (the Gaussian targets
peak at the true centres); for M-Net the corner error on the crop. The loss weights every pixel of every map; this
metric weights only where the peaks land, which is what the tables report. Written here because neither MONAI nor
Ignite has a heatmap-peak distance metric; decoding is the project's :func:`~lumbar_monai.codecs.gaussian.decode_peaks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from ..codecs.gaussian import decode_peaks

__all__ = ["PeakDistance", "LANDMARK_METRIC", "negative_landmark_error"]

#: The key metric's name in the bundle's evaluators (and in their best checkpoints' records).
LANDMARK_METRIC = "val_landmark_error"


def _maps(x: Any) -> torch.Tensor:
    """The first ``(B, C, H, W)`` tensor of a network output (Pose-Net returns ``(final, L5 pre-prediction)``)."""
    while isinstance(x, (list, tuple)):
        x = x[0]
    return x


class PeakDistance(Metric):
    """Mean distance between predicted and target heatmap peaks, times ``scale`` (map pixels -> input pixels).

    Args:
        num_channels: the first ``num_channels`` maps are landmarks (the rest, e.g. M-Net's PAF, are skipped);
            ``None`` uses all.
        scale: input pixels per map pixel (Pose-Net: input size / heatmap size).
        output_transform: engine output -> ``(pred, label)``.
    Channels whose target is empty (an unannotated landmark) are not counted.
    """

    def __init__(self, num_channels: int | None = None, scale: float = 1.0,
                 output_transform: Callable = lambda x: x, device: str | torch.device = "cpu") -> None:
        self.num_channels = None if num_channels is None else int(num_channels)
        self.scale = float(scale)
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._count = torch.tensor(0, dtype=torch.long, device=self._device)

    @reinit__is_reduced
    def update(self, output: tuple[Any, Any]) -> None:
        pred, label = (_maps(v).detach().float() for v in output)
        k = self.num_channels or pred.shape[1]
        pred, label = pred[:, :k], label[:, :k]
        if pred.shape[-2:] != label.shape[-2:]:
            raise ValueError(f"prediction maps {tuple(pred.shape)} and targets {tuple(label.shape)} differ in size")
        p, _ = decode_peaks(pred)
        t, height = decode_peaks(label)
        d = torch.linalg.vector_norm(p - t, dim=-1)[height > 0]
        self._sum += d.double().sum().to(self._device)
        self._count += int(d.numel())

    @sync_all_reduce("_sum", "_count")
    def compute(self) -> float:
        if int(self._count) == 0:
            raise NotComputableError("PeakDistance needs at least one annotated landmark")
        return float(self._sum / self._count) * self.scale


def negative_landmark_error(engine) -> float:
    """Early-stopping score (higher is better) from the evaluator's :data:`LANDMARK_METRIC`."""
    return -float(engine.state.metrics[LANDMARK_METRIC])
