"""DSFD backbones (given): VGG-16 as in the public DSFD/SSD code, torchvision's EfficientNet-B0/B1
features (``weights=None``: nothing is downloaded) and the two extra layers.

VGG-16 (``vgg16_layers``) is a ``ModuleList`` of 35 modules whose indices 0..30 are those of
``torchvision.models.vgg16().features`` (conv3_3 = 14, conv4_3 = 21, conv5_3 = 28, pool5 = 30), then
conv6 (31: 3x3, dilation 3, 1024 channels) and conv7 (33: 1x1): fc7, stride 32. Index 16 is the
``ceil_mode`` pool of SSD. The source maps are the outputs of ``vgg[:16]`` (ReLU of conv3_3, stride 4),
``vgg[16:23]`` (conv4_3, 8), ``vgg[23:30]`` (conv5_3, 16) and ``vgg[30:]`` (fc7, 32): ``VGG_SLICES``.
"""
from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.efficientnet import _efficientnet_conf

VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG_FC_CHANNELS = 1024          # conv6 / conv7 (fc7)
VGG_SLICES = [(0, 16), (16, 23), (23, 30), (30, 35)]   # vgg[a:b] -> source maps 1..4
EFFICIENTNET_DEPTH = {"efficientnet_b0": 1.0, "efficientnet_b1": 1.1}
EFFICIENTNET_DROPOUT = 0.2


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def vgg16_layers(width: float = 1.0) -> nn.ModuleList:
    """The 35 modules of DSFD's VGG-16 (``vgg.N`` in the public state_dict); ``width`` scales channels."""
    layers, in_channels = [], 3
    for v in VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "C":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            out = scaled(v, width)
            layers += [nn.Conv2d(in_channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out
    fc = scaled(VGG_FC_CHANNELS, width)
    layers += [nn.Conv2d(in_channels, fc, kernel_size=3, padding=3, dilation=3), nn.ReLU(inplace=True),
               nn.Conv2d(fc, fc, kernel_size=1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


def efficientnet_features(name: str, width: float = 1.0) -> nn.Sequential:
    """torchvision's ``efficientnet_b0/b1(weights=None).features`` (``width`` = 1) or the same network
    with channels times ``width`` (rounded as EfficientNet does). features[k] for k = 0..8: stem (stride
    2), seven MBConv stages (strides 2, 4, 8, 16, 16, 32, 32), 1x1 head conv (stride 32)."""
    if name not in EFFICIENTNET_DEPTH:
        raise ValueError(f"unknown EfficientNet {name!r}; expected one of {sorted(EFFICIENTNET_DEPTH)}")
    if width == 1.0:
        builder = getattr(torchvision.models, name)
        return builder(weights=None).features
    setting, last_channel = _efficientnet_conf(name, width_mult=width, depth_mult=EFFICIENTNET_DEPTH[name])
    return torchvision.models.EfficientNet(setting, EFFICIENTNET_DROPOUT, last_channel=last_channel).features


def extra_layers(in_channels: int, channels5: int, channels6: int) -> nn.ModuleList:
    """conv6_2 and conv7_2 of SSD: (1x1 to half, 3x3 stride 2) twice -> strides 64 and 128.
    VGG: 1024 -> 256 -> 512 -> 128 -> 256 (``extras.0..3``); each conv is followed by a ReLU in forward."""
    return nn.ModuleList([
        nn.Conv2d(in_channels, channels5 // 2, kernel_size=1),
        nn.Conv2d(channels5 // 2, channels5, kernel_size=3, stride=2, padding=1),
        nn.Conv2d(channels5, channels6 // 2, kernel_size=1),
        nn.Conv2d(channels6 // 2, channels6, kernel_size=3, stride=2, padding=1)])


def check_source_strides(maps, image_size, steps) -> None:
    """Raise a ValueError when a source map's stride is not its anchors' step.

    maps: the six source maps [B, C, h, w]; image_size: (H, W) of the input; steps: cfg['steps'].
    A map of stride s under anchors of step t != s puts its anchors at the wrong places (level k's
    anchor grid covers only the top-left s/t of the image when s > t): nothing else raises an error.
    """
    height, width = image_size
    for level, (feature, step) in enumerate(zip(maps, steps)):
        h, w = feature.shape[-2:]
        if (h, w) != (-(-height // step), -(-width // step)):
            raise ValueError(f"source map {level} is {h} x {w} for a {height} x {width} input (stride "
                             f"{height / h:g}), but cfg['steps'][{level}] = {step} lays its anchors for "
                             f"stride {step}: the anchors of this level would be misplaced (tap a block of "
                             f"stride {step}, or feed an input whose sides are multiples of {max(steps)})")
