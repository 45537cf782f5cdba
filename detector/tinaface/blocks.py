"""Conv blocks named as vedadet's ``ConvModule`` (``.conv``, ``.gn``), so its checkpoints' names fit."""
from __future__ import annotations

import torch
from torch import nn


class ConvGN(nn.Module):
    """conv (no bias) -> GroupNorm -> optional ReLU. x [B, in, H, W] -> [B, out, H', W']."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 num_groups: int = 32, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.gn = nn.GroupNorm(num_groups, out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.conv(x))
        return torch.relu(x) if self.relu else x


class SeparableConvGN(nn.Module):
    """depthwise 3x3 (no bias) -> pointwise 1x1 (bias) -> GroupNorm, as EfficientDet's BiFPN node
    (GroupNorm in place of its BatchNorm). x [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, channels: int, num_groups: int = 32) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.gn = nn.GroupNorm(num_groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gn(self.pointwise(self.depthwise(x)))
