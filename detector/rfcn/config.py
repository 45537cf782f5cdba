"""Face R-FCN configurations: a CPU "lite" one (narrow ResNet-18, trained in minutes) and the
GPU ones (ResNet-50 / ResNet-101 as in py-R-FCN). Every field is commented where it is defined.

Box convention of the whole homework: continuous (x1, y1, x2, y2) pixels, width x2 - x1, as
torchvision. Only ``generate_anchors`` keeps the classic "+1" algorithm of py-faster-rcnn (its
anchors are then used as continuous boxes; see notebook 1).
"""
from __future__ import annotations

import copy

from detector.configs import copy_config

DEFAULT_ANCHOR_RATIOS = (0.5, 1.0, 2.0)   # py-faster-rcnn: h / w
DEFAULT_ANCHOR_SCALES = (8, 16, 32)       # py-faster-rcnn: 128, 256, 512 px at base 16
FACE_ANCHOR_RATIOS = (1.0,)               # faces are roughly square
FACE_ANCHOR_SCALES = (1, 2, 4, 8, 16)     # 16 ... 256 px: the "smaller anchors" of Face R-FCN

cfg_lite = {
    "name": "resnet18-lite",
    "backbone": "resnet18",               # resnet18 | resnet50 | resnet101
    "width": 16,                          # channels of the first stage (64 = the standard ResNet)
    "feat_stride": 16,                    # stride of C4 and of the atrous res5 (pixels)
    "anchor_base": 16,                    # generate_anchors(base_size=...)
    "anchor_ratios": FACE_ANCHOR_RATIOS,  # generate_anchors(ratios=...)
    "anchor_scales": FACE_ANCHOR_SCALES,  # generate_anchors(scales=...)
    "rpn_channels": 64,                   # channels of the RPN's 3x3 conv (py-R-FCN: 512)
    "rfcn_channels": 64,                  # channels of conv_new_1 (py-R-FCN: 1024)
    "k": 3,                               # position-sensitive grid k x k (py-R-FCN: 7)
    "weighted_vote": True,                # learned k x k voting weights (False: plain average)
    "rpn_pre_nms_train": 600,             # proposals kept before NMS, training (py-R-FCN: 6000)
    "rpn_post_nms_train": 150,            # ... after NMS (py-R-FCN end2end: 300)
    "rpn_pre_nms_test": 1000,
    "rpn_post_nms_test": 300,             # py-faster-rcnn TEST: 300
    "rpn_nms_thresh": 0.7,
    "rpn_min_size": 2,                    # pixels; py-faster-rcnn uses 16, far too large for tiny faces
    "rpn_batch": 256,                     # anchors sampled per image
    "rpn_fg_fraction": 0.5,
    "rpn_positive_iou": 0.7,
    "rpn_negative_iou": 0.3,
    "roi_batch": 128,                     # RoIs sampled per image for the head
    "roi_fg_fraction": 0.25,              # 1:3
    "roi_fg_iou": 0.5,
    "roi_bg_iou": (0.0, 0.5),             # [lo, hi)
    "bbox_stds": (0.1, 0.1, 0.2, 0.2),    # head targets are divided by these (means 0)
    "ohem": False,                        # online hard example mining on the head's RoIs
    "ohem_nms": 0.7,
    "rpn_sigma": 3.0,                     # smooth L1 sigma of the RPN box loss
    "rcnn_sigma": 1.0,
    "test_score_thresh": 0.02,
    "test_nms_thresh": 0.3,
    "test_max_dets": 750,
    "image_size": 320,                    # training crop (pixels)
    "pretrained": None,                   # optional path to ImageNet ResNet weights on disk
}

cfg_res50 = {
    **copy.deepcopy(cfg_lite),
    "name": "resnet50",
    "backbone": "resnet50",
    "width": 64,
    "rpn_channels": 512,
    "rfcn_channels": 1024,
    "k": 7,
    "rpn_pre_nms_train": 6000,
    "rpn_post_nms_train": 300,
    "rpn_pre_nms_test": 6000,
    "image_size": 640,
}

cfg_res101 = {**copy.deepcopy(cfg_res50), "name": "resnet101", "backbone": "resnet101", "image_size": 1024}

CONFIGS = {cfg["name"]: cfg for cfg in (cfg_lite, cfg_res50, cfg_res101)}


def get_config(name: str, **overrides) -> dict:
    """A fresh copy of configuration ``name`` with ``overrides`` (existing fields only)."""
    return copy_config(CONFIGS, name, "R-FCN", **overrides)
