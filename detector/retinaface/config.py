"""Model and training configurations, named as in the homework (``cfg['min_sizes']`` ...).

``cfg_mnet`` and ``cfg_re50`` reproduce the public Pytorch_Retinaface configurations, so the public
checkpoints load and behave as published; the matching and mining thresholds that the public code
passes as loose arguments are named fields here.
"""
from __future__ import annotations

import copy

from detector.configs import copy_config

cfg_mnet = {
    "name": "mobilenet0.25",
    "min_sizes": [[16, 32], [64, 128], [256, 512]],  # anchor side lengths (pixels) per FPN level
    "steps": [8, 16, 32],                # stride (pixels) of each FPN level's feature map
    "variance": [0.1, 0.2],              # box-encoding scales for centre offsets and log sizes
    "clip": False,                       # clamp anchors to the image
    "loc_weight": 2.0,                   # weight of the box-regression loss in the total loss
    "image_size": 640,                   # training crop size (pixels)
    "batch_size": 32,                    # public training batch size
    "epoch": 250,                        # public schedule: epochs ...
    "decay1": 190,                       # ... and the two epochs where the LR drops by 10x
    "decay2": 220,
    "return_layers": {"stage1": 1, "stage2": 2, "stage3": 3},  # backbone stages fed to the FPN
    "in_channel": 32,                    # FPN inputs are in_channel * (2, 4, 8) channels
    "out_channel": 64,                   # channels of every FPN/SSH output
    "overlap_thresh": 0.35,              # an anchor is a positive if its IoU with a face >= this
    "force_match_min_iou": 0.2,          # a face forces its best anchor positive if that IoU >= this
    "neg_pos_ratio": 7,                  # hard negative mining keeps 7 negatives per positive
    "num_classes": 2,                    # background, face
    "pretrained": None,                  # optional path to ImageNet backbone weights on disk
}

cfg_re50 = {
    **copy.deepcopy(cfg_mnet),
    "name": "Resnet50",
    "image_size": 840,
    "batch_size": 24,
    "epoch": 100,
    "decay1": 70,
    "decay2": 90,
    "return_layers": {"layer2": 1, "layer3": 2, "layer4": 3},
    "in_channel": 256,
    "out_channel": 256,
}

CONFIGS = {"mobilenet0.25": cfg_mnet, "resnet50": cfg_re50}


def get_config(name: str, **overrides) -> dict:
    """A fresh copy of a named configuration (``mobilenet0.25`` or ``resnet50``) with overrides."""
    return copy_config(CONFIGS, name, "RetinaFace", **overrides)
