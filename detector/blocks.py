"""Given building blocks of RetinaFace: conv+BN units, the FPN and the SSH context module.

Module and parameter names follow the public Pytorch_Retinaface code, so its checkpoints load with
``strict=True``. Feature maps are ``[B, C, H, W]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL_NET_CHANNELS = 64   # nets this narrow use LeakyReLU(0.1) instead of ReLU, as published
SMALL_NET_LEAKY = 0.1


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """3x3 conv (padding 1) + BatchNorm + LeakyReLU(leaky) (plain ReLU when leaky = 0)."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True))


def conv_bn_no_relu(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (padding 1) + BatchNorm, no activation."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """1x1 conv + BatchNorm + LeakyReLU(leaky)."""
    return nn.Sequential(nn.Conv2d(inp, oup, 1, stride, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True))


def conv_dw(inp: int, oup: int, stride: int, leaky: float = SMALL_NET_LEAKY) -> nn.Sequential:
    """MobileNet's depthwise-separable unit: 3x3 depthwise + BN + act, then 1x1 + BN + act."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True))


def _leaky_for(channels: int) -> float:
    return SMALL_NET_LEAKY if channels <= SMALL_NET_CHANNELS else 0.0


class SSH(nn.Module):
    """Single Stage Headless context module: 3x3, 5x5 and 7x7 receptive fields (the larger ones as
    stacked 3x3 convs) concatenated. ``[B, in_channel, H, W] -> [B, out_channel, H, W]``."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        if out_channel % 4:
            raise ValueError(f"SSH out_channel must be a multiple of 4, got {out_channel}")
        leaky = _leaky_for(out_channel)
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(out_channel // 4, out_channel // 4)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(out_channel // 4, out_channel // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(x)
        shared = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))


class FPN(nn.Module):
    """Feature pyramid over three backbone levels (strides 8, 16, 32).

    forward(features): the backbone's outputs (a dict or list, finest level first) with
    ``in_channels_list`` channels; returns three ``[B, out_channels, H_k, W_k]`` maps, finest first,
    each coarser level upsampled (nearest) and added into the next finer one.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int) -> None:
        super().__init__()
        leaky = _leaky_for(out_channels)
        self.output1 = conv_bn1x1(in_channels_list[0], out_channels, leaky=leaky)
        self.output2 = conv_bn1x1(in_channels_list[1], out_channels, leaky=leaky)
        self.output3 = conv_bn1x1(in_channels_list[2], out_channels, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, features) -> list[torch.Tensor]:
        c3, c4, c5 = list(features.values()) if isinstance(features, dict) else list(features)
        p5 = self.output3(c5)
        p4 = self.output2(c4)
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.output1(c3)
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]
