"""Pose-Net: centre confidence maps of L1-L5 and S1 (An et al. 2022, Section 3.2, Figure 3; after Kim et al. 2021).

The paper draws Pose-Net abstractly (Figure 3) and says the abstracted parts are Kim et al.'s (arXiv:1904.07624),
whose Pose-Net is of the Convolutional Pose Machines lineage (Wei et al. 2016). What the paper fixes:

* pre-activation blocks, InstanceNorm -> ReLU -> Conv (:class:`~lumbar_monai.networks.blocks.PreActConv`);
* the large 7x7 convolutions of the original widened to 13x13 (``kernel_size``; 7 for the ablation/baseline);
* an internal pre-prediction of the L5 centre map (1 channel), concatenated back into the features;
* output ``V`` confidence maps at 1/8 of the input (64x64 for 512x512): 6 lateral (L1-L5, S1), 5 AP.

Where neither paper fixes depth or widths, the choices (*ours*, in the CPM spirit) are:

* **Front end** (VGG-like, CPM's image-feature part): a plain 3x3 stem conv (no norm/ReLU on the raw image, as in
  pre-activation ResNets), then pre-activation 3x3 blocks with three 2x2 max-pools down to 1/8:
  ``[w] -> pool -> [2w, 2w] -> pool -> [4w, 4w, 4w] -> pool -> [8w, 8w]`` and a 3x3 reduction to ``c`` channels
  (``w = width`` = 32, ``c = stage_channels`` = 4w = 128 by default; CPM uses VGG-19's 64..512 and 128 in its
  stages).
* **Pre-prediction stage** (L5): ``pre_convs`` (3) ``k x k`` blocks at ``c`` channels, a 1x1 block at ``c`` and a 1x1
  block to 1 channel: ``C_bar_5``.
* **Final stage**: ``concat(features, C_bar_5)`` (``c + 1`` channels), ``stage_convs`` (5, as CPM's stages) ``k x k``
  blocks at ``c``, a 1x1 block at ``c`` and a 1x1 block to ``V`` channels: ``C_1..C_V``.
* Outputs are linear (no sigmoid), as in CPM: the Eq. 2-4 loss regresses the Gaussian maps directly.

``forward`` returns ``(final maps (B, V, S/8, S/8), L5 pre-prediction (B, 1, S/8, S/8))``. The input side must be
divisible by 8. ``width`` (and ``stage_channels``) let CPU tests use a narrow net.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ..anatomy import Layout, get_layout
from .blocks import PreActConv

__all__ = ["PoseNet", "PoseNetCentres"]


def _stage(in_ch: int, ch: int, out_ch: int, kernel: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = in_ch
    for _ in range(n_convs):
        layers.append(PreActConv(c_in, ch, kernel_size=kernel))
        c_in = ch
    layers.append(PreActConv(c_in, ch, kernel_size=1))
    layers.append(PreActConv(ch, out_ch, kernel_size=1))
    return nn.Sequential(*layers)


class PoseNet(nn.Module):
    """Pose-Net of An et al. 2022 (see the module docstring for every layer).

    Args:
        layout: landmark layout; the output channel count is ``layout.num_vertebrae`` and the L5 pre-prediction
            is of its last lumbar vertebra.
        in_channels: image channels (1 for radiographs).
        width: base width ``w`` of the VGG-like front end (32).
        stage_channels: channels ``c`` of the 1/8-resolution stages (default ``4 * width``).
        kernel_size: the large kernel of the stages (13 in the paper, 7 in Kim et al.'s original).
        pre_convs: ``k x k`` blocks in the L5 pre-prediction stage.
        stage_convs: ``k x k`` blocks in the final stage.
        out_channels: override the channel count from the layout.
    """

    #: output stride (input side / heatmap side), a TorchScript constant
    stride = 8
    __constants__ = ["stride"]

    def __init__(
        self,
        layout: str | Layout = "lateral",
        in_channels: int = 1,
        width: int = 32,
        stage_channels: int | None = None,
        kernel_size: int = 13,
        pre_convs: int = 3,
        stage_convs: int = 5,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.layout = get_layout(layout)
        self.out_channels = int(out_channels) if out_channels is not None else self.layout.num_vertebrae
        self.kernel_size = kernel_size
        w = int(width)
        c = int(stage_channels) if stage_channels is not None else 4 * w
        self.front = nn.Sequential(
            Convolution(2, in_channels, w, kernel_size=3, conv_only=True),
            PreActConv(w, w, 3),
            nn.MaxPool2d(2),
            PreActConv(w, 2 * w, 3),
            PreActConv(2 * w, 2 * w, 3),
            nn.MaxPool2d(2),
            PreActConv(2 * w, 4 * w, 3),
            PreActConv(4 * w, 4 * w, 3),
            PreActConv(4 * w, 4 * w, 3),
            nn.MaxPool2d(2),
            PreActConv(4 * w, 8 * w, 3),
            PreActConv(8 * w, 8 * w, 3),
            PreActConv(8 * w, c, 3),
        )
        self.pre_stage = _stage(c, c, 1, kernel_size, pre_convs)
        self.final_stage = _stage(c + 1, c, self.out_channels, kernel_size, stage_convs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C_in, S, S)`` -> ``(final (B, V, S/8, S/8), L5 pre-prediction (B, 1, S/8, S/8))``."""
        return self.maps(x)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass (a method of its own so that :class:`PoseNetCentres` can reuse it under TorchScript)."""
        h, w = x.shape[-2], x.shape[-1]
        if h % self.stride != 0 or w % self.stride != 0:
            raise ValueError(f"input side must be divisible by {self.stride}, got {h}x{w}")
        feats = self.front(x)
        pre = self.pre_stage(feats)
        final = self.final_stage(torch.cat([feats, pre], dim=1))
        return final, pre


class PoseNetCentres(PoseNet):
    """Pose-Net returning only the ``V`` centre maps ``(B, V, S/8, S/8)`` (no L5 pre-prediction).

    The same layers and state-dict keys as :class:`PoseNet` (a training checkpoint loads into either); the single
    tensor output is what ``verify_net_in_out``, TorchScript/ONNX runtimes and MONAI inferers expect. The bundle's
    ``inference.json`` ``network_def``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.maps(x)[0]
