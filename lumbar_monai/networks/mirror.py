"""Mirror test-time augmentation: a network's maps averaged over the image and its left-right mirror (*ours*).

An AP radiograph mirrored left-right shows the same anatomy with the patient's sides swapped, so a map network's
answer on the mirror, flipped back and with its left/right channels swapped, is a second opinion on the same
image. :class:`MirrorEnsemble` runs both in one batch and averages them. The predictor wraps its corner M-Nets in it
(``LandmarkPredictor(tta="mirror")``) and not Pose-Net: mirrored, Pose-Net found all centres on fewer AASCE
validation images (see the predictor's ``tta``); its window holds asymmetric anatomy (liver, stomach, heart), a likely
cue to the levels, where a vertebra crop is close to symmetric. (MONAI's ``TestTimeAugmentation`` inverts
random transforms on a dictionary pipeline and returns the spread of the outputs; here one deterministic flip of a
network's input and output is all that is needed, so the wrapper is a few lines of tensor code.)

The flip is exact on the map grids used here: an input pixel ``x`` and map cell ``j`` with
``x_map = (x_in + 0.5) / s - 0.5`` both mirror to ``W - 1 - x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..anatomy import side_swap_order

__all__ = ["mirror_channel_order", "MirrorEnsemble"]


def mirror_channel_order(names: Sequence[str]) -> list[int]:
    """Channel order of the mirror image: channel ``i`` of the result is channel ``order[i]`` of the mirror's
    maps (:func:`~lumbar_monai.anatomy.side_swap_order` of the channel names)."""
    return side_swap_order(names)


class MirrorEnsemble(torch.nn.Module):
    """``net``'s first output averaged over the input and its mirror (one batch of twice the size).

    Args:
        net: a map network ``(B, C, H, W) -> (B, K, h, w)`` (or a tuple/list whose first item is that).
        channel_order: :func:`mirror_channel_order` of the first ``len(channel_order)`` output channels; the
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
