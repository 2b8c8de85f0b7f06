"""CoordConv (Liu et al. 2018) in the pre-activation form used by M-Net (An et al. 2022, Section 3.3, Figure 8).

MONAI has no CoordConv layer: ``monai.transforms.AddCoordinateChannels`` is a data transform that appends
coordinates in ``[-0.5, 0.5]`` to an input image, not a layer inside a network, so the layer is written here
(as in predict-idlab/landmarker's ``CoordConvLayer``).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["AddCoords", "CoordPreActConv"]


class AddCoords(nn.Module):
    """Concatenate two channels, x then y, normalised to ``[-1, 1]`` from the first to the last pixel centre.

    ``(B, C, H, W) -> (B, C + 2, H, W)``; x varies along W (columns), y along H (rows).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        return torch.cat([x, xs, ys], dim=1)


class CoordPreActConv(nn.Sequential):
    """InstanceNorm -> ReLU -> AddCoords -> Conv: a :class:`~lumbar_monai.networks.blocks.PreActConv` whose
    convolution also sees the coordinate channels.

    The coordinates are appended after the activation and right before the convolution (*ours*): normalising or
    rectifying them would destroy the ``[-1, 1]`` ramps (ReLU would zero their negative half).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, strides: int = 1, dilation: int = 1):
        super().__init__()
        self.norm = nn.InstanceNorm2d(in_channels, affine=True)
        self.act = nn.ReLU()
        self.coords = AddCoords()
        self.conv = Convolution(
            spatial_dims=2,
            in_channels=in_channels + 2,
            out_channels=out_channels,
            kernel_size=kernel_size,
            strides=strides,
            dilation=dilation,
            conv_only=True,
        )
