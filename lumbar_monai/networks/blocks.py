"""Building blocks shared by Pose-Net and M-Net."""

from __future__ import annotations

from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["PreActConv"]


class PreActConv(nn.Sequential):
    """Pre-activation convolution: InstanceNorm -> ReLU -> Conv (He et al. 2016; An et al. 2022, Sections 3.2-3.3).

    MONAI's :class:`~monai.networks.blocks.Convolution` orders norm/activation *after* the convolution, so the
    pre-activation order is built here as a sequence: ``norm``, ``act``, then MONAI's ``conv_only`` convolution
    (which computes "same" padding for odd kernels).

    Args:
        in_channels, out_channels: channels.
        kernel_size: square kernel (13 for the paper's widened Pose-Net, 7 for Kim et al.'s).
        strides: stride of the convolution.
        dilation: dilation of the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, strides: int = 1, dilation: int = 1):
        super().__init__()
        self.norm = nn.InstanceNorm2d(in_channels, affine=True)
        self.act = nn.ReLU()
        self.conv = Convolution(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            strides=strides,
            dilation=dilation,
            conv_only=True,
        )
