"""Backbones: MobileNet-0.25 (as in the public RetinaFace code) and torchvision's ResNet-50.

The RetinaFace model wraps a backbone in ``torchvision.models._utils.IntermediateLayerGetter``
with ``cfg['return_layers']``, so only the named stages' outputs (strides 8, 16, 32) are kept.
Nothing is downloaded: ImageNet weights load from a file the user already has
(``cfg['pretrained']``), with a clear error when it is missing or does not fit.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from detector.blocks import conv_bn, conv_dw
from detector.weights import read_state_dict

IMAGENET_CLASSES = 1000


class MobileNetV1(nn.Module):
    """MobileNet v1 at width 0.25 (8 to 256 channels). ``stage1``/``stage2``/``stage3`` output
    64, 128 and 256 channels at strides 8, 16 and 32."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2), conv_dw(32, 32, 1),
            conv_dw(32, 64, 2), conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(256, IMAGENET_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(torch.flatten(self.avg(x), 1))


def load_pretrained(backbone: nn.Module, path: str | Path) -> None:
    """Load ImageNet weights from ``path`` (a state_dict, or a checkpoint holding ``state_dict``;
    a ``module.`` prefix from DataParallel is stripped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights not found (cfg['pretrained']); the kit "
                                f"never downloads weights — put the file there or set it to None")
    missing, unexpected = backbone.load_state_dict(read_state_dict(path), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: does not fit the backbone (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")


def build_backbone(cfg: dict) -> nn.Module:
    """The backbone named by ``cfg['name']``, with ``cfg['pretrained']`` weights if set."""
    name = cfg["name"].lower()
    if name == "mobilenet0.25":
        backbone = MobileNetV1()
    elif name == "resnet50":
        backbone = torchvision.models.resnet50(weights=None)
    else:
        raise ValueError(f"unknown backbone {cfg['name']!r}; expected mobilenet0.25 or Resnet50")
    if cfg.get("pretrained"):
        load_pretrained(backbone, cfg["pretrained"])
    return backbone
