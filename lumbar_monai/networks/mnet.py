"""M-Net (Fu et al. 2018) with pre-activation blocks and CoordConv: the stage-2 corner detector (Section 3.3).

The paper gives the idea (U-Net with a multi-scale input pyramid and side outputs, pre-activation blocks as its
Pose-Net, CoordConv in the first encoder layers, a last layer of 4 + 1 or 2 + 1 channels) and refers to Figure 8
and Kim et al. 2021 for the rest. The choices left open are made here, all *ours*:

* Depth: ``len(channels)`` encoder levels (default 4: 256 -> 128 -> 64 -> 32) plus a bottleneck at 1/16
  (16 x 16 for a 256 crop) with ``2 * channels[-1]`` features; widths 32-64-128-256-512 as in Fu et al.'s M-Net.
  ``width`` scales every width (narrow nets for CPU tests).
* Multi-scale input: level ``l`` gets the image average-pooled by ``2^l``, passed through a plain 3x3 convolution
  to ``channels[l]`` features and concatenated with the max-pooled features of level ``l - 1``.
* Blocks: every level is two :class:`~lumbar_monai.networks.blocks.PreActConv` 3x3 (InstanceNorm -> ReLU -> Conv).
  The stem that reads the raw image (and the pyramid convolutions) are plain convolutions: a pre-activation on a
  one-channel image would normalise it and cut off everything below its mean.
* CoordConv: the first ``coordconv`` (0, 1 or 2; default 2) pre-activation convolutions of the encoder, in order
  (with the default, both convolutions of the full-resolution level), are
  :class:`~lumbar_monai.networks.coordconv.CoordPreActConv`.
* Decoder: 2x2 transposed convolution up, concatenation with the encoder level (skip), two PreActConv.
* Side outputs: after every decoder level, InstanceNorm -> ReLU -> 1x1 conv to ``out_channels``, bilinearly upsampled
  to the input size. The output is their mean (Fu et al.'s averaging of side outputs). With
  ``deep_supervision=True`` the training-mode forward returns ``[fused, side_0, ..., side_{L-1}]`` (full
  resolution, finest first) for ``monai.losses.DeepSupervisionLoss``; evaluation always returns the fused map.
* Output: linear (no activation), as the targets are Gaussians / a PAF trained with the L2 loss of Eq. 10-11.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..anatomy import Layout, get_layout
from ..codecs.corner import vertebra_template
from .blocks import PreActConv
from .coordconv import CoordPreActConv

__all__ = ["MNet", "mnet_kwargs_for"]


def mnet_kwargs_for(layout: Layout | str, kind: str, paf: bool = True, **kwargs) -> dict:
    """Constructor kwargs of the M-Net for a layout's ``kind`` (``"lumbar"`` / ``"sacrum"``): channel count read
    from the layout (corners, plus one PAF channel unless ``paf=False``)."""
    spec = vertebra_template(layout, kind)
    return {"in_channels": 1, "out_channels": spec.num_corners + (1 if paf else 0), **kwargs}


class MNet(nn.Module):
    """M-Net for corner maps and a PAF (An et al. 2022, Figure 8). See the module docstring for the design.

    Args:
        in_channels: image channels (1).
        out_channels: corner maps + PAF (lumbar 4 + 1, sacrum 2 + 1; see :func:`mnet_kwargs_for`).
        channels: encoder widths per level, finest first; the bottleneck has twice the last.
        width: multiplier applied to ``channels`` (rounded, at least 1).
        coordconv: how many of the first encoder convolutions are CoordConv (0, 1, 2, ...).
        deep_supervision: training-mode forward returns the fused map and every side output.
        kernel_size: kernel of the pre-activation convolutions.

    Input ``(B, in_channels, H, W)`` with ``H`` and ``W`` divisible by ``2 ** len(channels)``;
    output ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 5,
        channels: Sequence[int] = (32, 64, 128, 256),
        width: float = 1.0,
        coordconv: int = 2,
        deep_supervision: bool = True,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        #: constructor arguments, stored in checkpoints (see :mod:`lumbar_monai.predictor`)
        self.init_kwargs = {"in_channels": in_channels, "out_channels": out_channels, "channels": list(channels),
                            "width": width, "coordconv": coordconv, "deep_supervision": deep_supervision,
                            "kernel_size": kernel_size}
        ch = [max(1, int(round(c * width))) for c in channels]
        if len(ch) < 1:
            raise ValueError("M-Net needs at least one level")
        if coordconv < 0 or coordconv > 2 * len(ch):
            raise ValueError(f"coordconv must be in [0, {2 * len(ch)}], got {coordconv}")
        self.levels = len(ch)
        self.deep_supervision = deep_supervision
        self.out_channels = out_channels
        k = kernel_size
        n_coord = [coordconv]  # countdown shared by the encoder blocks, in order

        def enc_conv(cin: int, cout: int) -> nn.Module:
            if n_coord[0] > 0:
                n_coord[0] -= 1
                return CoordPreActConv(cin, cout, k)
            return PreActConv(cin, cout, k)

        self.stem = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        self.pyramid = nn.ModuleList([nn.Conv2d(in_channels, ch[lv], 3, padding=1) for lv in range(1, len(ch))])
        enc = []
        for lv, c in enumerate(ch):
            cin = ch[0] if lv == 0 else ch[lv - 1] + c
            enc.append(nn.Sequential(enc_conv(cin, c), enc_conv(c, c)))
        self.encoder = nn.ModuleList(enc)
        cb = 2 * ch[-1]
        self.bottleneck = nn.Sequential(PreActConv(ch[-1], cb, k), PreActConv(cb, cb, k))
        ups, dec, sides = [], [], []
        prev = cb
        for lv in reversed(range(len(ch))):
            c = ch[lv]
            ups.append(nn.ConvTranspose2d(prev, c, 2, stride=2))
            dec.append(nn.Sequential(PreActConv(2 * c, c, k), PreActConv(c, c, k)))
            sides.append(PreActConv(c, out_channels, 1))
            prev = c
        self.ups = nn.ModuleList(ups)
        self.decoder = nn.ModuleList(dec)
        self.sides = nn.ModuleList(sides)

    @classmethod
    def for_layout(cls, layout: Layout | str, kind: str, paf: bool = True, **kwargs) -> MNet:
        """The lumbar or sacrum M-Net of a layout (channel counts from the layout)."""
        return cls(**mnet_kwargs_for(get_layout(layout), kind, paf=paf, **kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        h, w = x.shape[-2], x.shape[-1]
        f = 1 << self.levels
        if h % f != 0 or w % f != 0:
            raise ValueError(f"M-Net input size must be divisible by {f}, got {h}x{w}")
        # written for TorchScript: module lists are iterated (never indexed by a variable), pool sizes are ints
        skips: list[torch.Tensor] = []
        feat = x
        for lv, enc in enumerate(self.encoder):
            if lv == 0:
                feat = enc(self.stem(x))
            else:
                feat = F.max_pool2d(feat, 2)
                for j, pyr in enumerate(self.pyramid):
                    if j == lv - 1:
                        feat = torch.cat([feat, pyr(F.avg_pool2d(x, 1 << lv))], dim=1)
                feat = enc(feat)
            skips.append(feat)
        feat = self.bottleneck(F.max_pool2d(feat, 2))
        side_maps: list[torch.Tensor] = []
        for i, (up, dec, side) in enumerate(zip(self.ups, self.decoder, self.sides)):  # noqa: B905 (TorchScript)
            lv = self.levels - 1 - i
            feat = dec(torch.cat([up(feat), skips[lv]], dim=1))
            s = side(feat)
            if lv > 0:
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
            side_maps.append(s)
        side_maps = side_maps[::-1]  # finest first
        fused = torch.stack(side_maps, dim=0).mean(dim=0)
        if self.training and self.deep_supervision:
            return [fused] + side_maps
        return fused
