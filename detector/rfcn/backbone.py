"""The R-FCN trunk: a ResNet cut after its third stage (C4, stride 16) and its fourth stage (res5)
kept at stride 16 with dilation 2, as py-R-FCN does.

py-R-FCN sets stride 1 on res5a (both branches) and dilation 2 / padding 2 on *every* res5 3x3
conv. torchvision's ``replace_stride_with_dilation`` leaves the first block's 3x3 at dilation 1 (as
the princewang port does), so ``atrous_res5`` sets the strides and dilations itself.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

RES5_DILATION = 2
BLOCKS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3)),
          "resnet101": (Bottleneck, (3, 4, 23, 3))}
STANDARD_WIDTH = 64


def build_resnet(name: str, width: int = STANDARD_WIDTH) -> nn.Module:
    """torchvision's ResNet ``name`` (no weights); ``width`` < 64 scales every stage's channels
    (a "narrow" ResNet for the CPU). Module names are torchvision's (conv1, layer1 ... layer4)."""
    if name not in BLOCKS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BLOCKS)}")
    block, layers = BLOCKS[name]
    if width == STANDARD_WIDTH:
        return getattr(torchvision.models, name)(weights=None)
    net = torchvision.models.ResNet(block, list(layers))
    net.inplanes = width  # rebuild the stages at the narrow width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for i, blocks in enumerate(layers):
        setattr(net, f"layer{i + 1}", net._make_layer(block, width * 2 ** i, blocks, stride=1 if i == 0 else 2))
    net.fc = nn.Identity()
    for m in net.modules():  # the initialisation torchvision.models.ResNet gives
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def atrous_res5(layer4: nn.Sequential, dilation: int = RES5_DILATION) -> nn.Sequential:
    """``layer4`` changed in place to keep stride 16: stride 1 everywhere, dilation and padding
    ``dilation`` on every 3x3 conv (the shapes of the weights do not change)."""
    for module in layer4.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (dilation, dilation)
                module.padding = (dilation, dilation)
    return layer4


def res5_channels(resnet: nn.Module) -> tuple[int, int]:
    """(channels of C4, channels of res5) of a ResNet built by ``build_resnet``."""
    def out_channels(layer: nn.Sequential) -> int:
        last = layer[-1]
        return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
    return out_channels(resnet.layer3), out_channels(resnet.layer4)


def load_pretrained(resnet: nn.Module, path: str) -> None:
    """ImageNet weights for ``resnet`` from a torchvision state_dict on disk (nothing is downloaded)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = resnet.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.startswith("fc.")]:
        raise ValueError(f"{path}: not a torchvision ResNet state_dict for this backbone "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
