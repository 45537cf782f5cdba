"""TinaFace configurations (plain dicts, as in the homework).

``r50-gn-dcn`` is vedadet's configs/trainval/tinaface/tinaface_r50_fpn_gn_dcn.py (GPU);
``lite`` keeps the same neck and head structure, narrower, for CPU training on the embedded data.
Boxes and anchors are in pixels of the network input, (x1, y1, x2, y2).
"""
from __future__ import annotations

import math

from detector.configs import copy_config

NUM_ANCHOR_SCALES = 3                        # scales per octave (one ratio) -> 3 anchors per cell
OCTAVE_BASE_SCALE = 2 ** (4 / 3)             # smallest anchor = 2^(4/3) x stride
ANCHOR_RATIO = 1.3                           # height / width: faces are taller than wide
STRIDES = (4, 8, 16, 32, 64, 128)            # P2..P7
BOX_STDS = (0.1, 0.1, 0.2, 0.2)              # DeltaXYWHBBoxCoder stds (means are 0)
MAX_LOG_RATIO = abs(math.log(16 / 1000))     # decode clamps dw, dh to +-4.135
ASSIGN_IOU = 0.35                            # MaxIoUAssigner pos = neg = min_pos IoU threshold
PRIOR_PROB = 0.01                            # classification bias -log((1 - p) / p) = -log(99)
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
DIOU_WEIGHT, IOU_AWARE_WEIGHT = 2.0, 1.0     # loss weights (focal has weight 1)
SCORE_ALPHA = 0.4                            # score = cls^(2 alpha) * iou^(2 (1 - alpha))
NMS_IOU = 0.45                               # test NMS threshold of the vedadet config
FUSION_EPS = 1e-4                            # BiFPN fast normalised fusion

cfg_r50 = {
    "name": "r50-gn-dcn",
    "layers": (3, 4, 6, 3),                  # ResNet-50 blocks per stage
    "bottleneck": True,                      # Bottleneck blocks (C2..C5 = 256, 512, 1024, 2048 ch)
    "width": 64,                             # stem / layer1 channels (torchvision's); stages double it
    "num_groups": 32,                        # GroupNorm groups everywhere (backbone, neck, head)
    "dcn_stages": (False, False, True, True),  # DCNv1 on the 3x3 convs of layer3 and layer4
    "neck": "fpn",                           # 'fpn' | 'bifpn'
    "bifpn_layers": 3,                       # stacked BiFPN layers when neck == 'bifpn'
    "channels": 256,                         # neck and head width
    "inception": True,                       # the shared Inception module after the neck
    "stacked_convs": 4,                      # conv + GN + ReLU layers per head tower
    "image_size": 640,                       # training crop side
}

# The lite config keeps every ingredient (GN, DCN in layer3 and layer4, six levels, Inception, 2-conv
# towers, IoU branch) and shrinks the widths until a training step of 8 crops fits 2 CPU cores: a
# ResNet-10 of BasicBlocks at full width with a 64-channel neck took 4.3 s per step of 8 crops of 320 px
# (3.4 GMAC per crop, 14x RetinaFace-MobileNet-0.25); this one ~0.6 s at 256 px.
cfg_lite = dict(cfg_r50, **{
    "name": "lite",
    "layers": (1, 1, 1, 1),                  # a ResNet-10 of BasicBlocks ...
    "bottleneck": False,
    "width": 16,                             # ... 16, 32, 64, 128 channels
    "num_groups": 4,                         # 8 channels per group in the neck and head, as 256 / 32
    "channels": 32,
    "bifpn_layers": 2,
    "stacked_convs": 2,
    "image_size": 256,
})

CONFIGS = {"r50-gn-dcn": cfg_r50, "lite": cfg_lite}


def get_config(name: str, **overrides) -> dict:
    """A fresh copy of config ``name`` with ``overrides`` (only existing fields)."""
    return copy_config(CONFIGS, name, "TinaFace", **overrides)
