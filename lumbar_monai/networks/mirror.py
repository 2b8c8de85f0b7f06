"""Mirror test-time augmentation: a network's maps averaged over its input and the input's left-right mirror (*ours*).

A vertebra crop of an AP radiograph mirrored left-right shows a vertebra with the patient's sides swapped, so a
corner network's answer on the mirror, flipped back and with its left/right channels swapped, is a second opinion on
the same crop. :class:`MirrorEnsemble` runs both in one batch and averages them. The predictor wraps its corner
M-Nets in it (``LandmarkPredictor(tta="mirror")``), not Pose-Net: mirrored, Pose-Net found all centres on fewer
AASCE validation images (see the predictor's ``tta``); its window holds asymmetric anatomy (liver, stomach, heart),
a likely cue to the levels. (MONAI's ``TestTimeAugmentation`` inverts random transforms on a dictionary pipeline
and returns the spread of the outputs; one deterministic flip of a network's input and output needs only the few
lines of tensor code below.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["MirrorEnsemble"]


class MirrorEnsemble(torch.nn.Module):
    """``net``'s first output averaged over the input and its mirror (one batch of twice the size).

    Args:
        net: a map network ``(B, C, H, W) -> (B, K, h, w)`` (or a tuple/list whose first item is that).
        channel_order: :func:`~lumbar_monai.anatomy.side_swap_order` of the names of the first ``len(channel_order)`` output channels; the
            output is cut to those channels (further channels, e.g. a part-affinity head whose x components would
            change sign, are dropped). ``None``: every channel maps to itself.
    """

    def __init__(self, net: torch.nn.Module, channel_order: Sequence[int] | None = None) -> None:
        super().__init__()
        self.net = net
        self.channel_order = None if channel_order is None else list(channel_order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        out = self.net(torch.cat([x, x.flip(-1)]))
        out = out[0] if isinstance(out, (tuple, list)) else out
        plain, mirror = out[:b], out[b:].flip(-1)
        if self.channel_order is not None:
            k = len(self.channel_order)
            plain, mirror = plain[:, :k], mirror[:, self.channel_order]
        return (plain + mirror) / 2.0
