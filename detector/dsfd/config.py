"""DSFD configurations, named after the public yxlijun/DSFD.pytorch code (``data/config.py``).

Full configurations reproduce the public VGG-16 model (its state_dict loads with strict=True) and the
EfficientNet-B0/B1 variants; ``*_lite`` ones shrink the widths and the training crop so that a model
trains in minutes on a CPU. ``efficientnet_b0_project`` keeps the course project's taps (blocks at
strides 16/32/32/32 under anchors stepped 4..128): the bug the homework asks you to find.
"""
from __future__ import annotations

import copy

from detector.configs import copy_config

STEPS = [4, 8, 16, 32, 64, 128]               # stride of each source map (pixels)
ANCHOR_SIZES = [16, 32, 64, 128, 256, 512]    # second-shot anchor sides (ANCHOR_SIZES2); first shot: half
VGG_SOURCE_CHANNELS = [256, 512, 512, 1024, 512, 256]

cfg_vgg16 = {
    "name": "vgg16",
    "backbone": "vgg16",                  # 'vgg16' | 'efficientnet_b0' | 'efficientnet_b1'
    "width": 1.0,                         # channel multiplier of the backbone, extras and heads
    "taps": None,                         # EfficientNet: indices of .features whose outputs are sources
    "source_channels": list(VGG_SOURCE_CHANNELS),  # channels of the six source maps (fem_cfg)
    "l2norm_scales": [10.0, 8.0, 5.0],    # initial L2Norm scales of the first three maps of each shot
    "steps": list(STEPS),
    "anchor_sizes": list(ANCHOR_SIZES),   # second shot; the first shot uses anchor_sizes / 2
    "variance": [0.1, 0.2],               # box-encoding scales (centre, log size)
    "fem": True,                          # False: both shots read the backbone maps (ablation)
    "check_strides": True,                # forward checks every source's stride against steps
    "overlap_thresh": 0.35,               # IoU that makes an anchor positive (best anchor forced)
    "neg_pos_ratio": 3,                   # hard negatives per positive
    "pal_weight": 1.0,                    # lambda in L_PAL = L_FSL + lambda * L_SSL (public code: 1)
    "min_anchors": 0,                     # IAM anchor compensation: faces get at least this many (0: off)
    "compensation_min_iou": 0.1,          # ... from anchors down to this IoU
    "das_prob": 0.5,                      # probability of data-anchor-sampling per training image
    "image_size": 640,                    # training crop side (pixels), a multiple of steps[-1]
    "source_strides": list(STEPS),        # the strides the source maps really have (= steps unless buggy)
}


def _efficientnet(name: str, taps: list[int], channels: list[int]) -> dict:
    return {**copy.deepcopy(cfg_vgg16), "name": name, "backbone": name, "taps": taps,
            "source_channels": channels}


# Stride-correct taps: the last block of the stages at strides 4, 8, 16, 32 (features[2], [3], [5], [7]).
cfg_efficientnet_b0 = _efficientnet("efficientnet_b0", [2, 3, 5, 7], [24, 40, 112, 320, 640, 320])
cfg_efficientnet_b1 = _efficientnet("efficientnet_b1", [2, 3, 5, 7], [24, 40, 112, 320, 640, 320])
# The course project's B0 taps (stage 5 end, stage 6 end, stage 7, head: strides 16, 32, 32, 32).
cfg_efficientnet_b0_project = {**_efficientnet("efficientnet_b0", [5, 6, 7, 8],
                                               [112, 192, 320, 1280, 640, 320]),
                               "name": "efficientnet_b0_project", "check_strides": False,
                               "source_strides": [16, 32, 32, 32, 64, 128]}

LITE_WIDTH = 0.125         # VGG-lite: an eighth of the channels
LITE_EFFICIENT_WIDTH = 0.5  # EfficientNet-lite: half the channels (rounded to multiples of 8)
LITE_IMAGE_SIZE = 256


def _lite(cfg: dict, width: float, channels: list[int]) -> dict:
    return {**copy.deepcopy(cfg), "name": cfg["name"] + "_lite", "width": width,
            "source_channels": channels, "image_size": LITE_IMAGE_SIZE}


CONFIGS = {cfg["name"]: cfg for cfg in (
    cfg_vgg16, cfg_efficientnet_b0, cfg_efficientnet_b1, cfg_efficientnet_b0_project,
    _lite(cfg_vgg16, LITE_WIDTH, [32, 64, 64, 128, 64, 32]),
    _lite(cfg_efficientnet_b0, LITE_EFFICIENT_WIDTH, [16, 24, 56, 160, 320, 160]),
    _lite(cfg_efficientnet_b1, LITE_EFFICIENT_WIDTH, [16, 24, 56, 160, 320, 160]),
    _lite(cfg_efficientnet_b0_project, LITE_EFFICIENT_WIDTH, [56, 96, 160, 640, 320, 160]),
)}


def get_config(name: str, **overrides) -> dict:
    """A fresh copy of configuration ``name`` with ``overrides`` (existing fields only)."""
    return copy_config(CONFIGS, name, "DSFD", **overrides)
