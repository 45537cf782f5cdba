"""The given classification head. (The box and landmark heads are yours to write in the homework.)"""
from __future__ import annotations

import torch
from torch import nn

ANCHORS_PER_CELL = 2  # one anchor per min_size of the level


class ClassHead(nn.Module):
    """Face/background logits for every anchor of one FPN level.

    ``[B, inchannels, H, W] -> [B, H * W * num_anchors, 2]``, anchors ordered row by row (y, then
    x), then by anchor size — the order the prior-box generator produces.
    """

    def __init__(self, inchannels: int = 512, num_anchors: int = ANCHORS_PER_CELL) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.conv1x1 = nn.Conv2d(inchannels, num_anchors * 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()  # [B, H, W, A * 2]
        return out.view(out.shape[0], -1, 2)
