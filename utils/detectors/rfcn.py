"""Face R-FCN behind the kit's detector interface (``utils.detectors``), and the glue its
notebooks use: ``Homework`` (the notebook definitions training needs), ``RFCNCriterion`` (the
two-stage training step around ``utils.training.train.fit``), ``RFCNDetector`` and ``train_rfcn``.

R-FCN is two-stage, so ``utils.inference.Detector`` (one forward, decode at anchors) does not fit:
``RFCNDetector.detect`` runs forward -> proposal_layer -> head -> bbox_transform_inv -> NMS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.ops import batched_nms

from data.augment import BGR_MEAN, TrainAugment
from data.widerface import WiderFaceDataset, detection_collate
from detector.rfcn.config import CONFIGS
from utils.detectors.notebooks import NotebookCode
from utils.inference import Detections
from utils.training.config import TrainConfig
from utils.training.train import TrainResult, fit

NAME = "rfcn"
LITE = "resnet18-lite"
FULL = "resnet101"            # Face R-FCN's backbone (no public checkpoint: names are ours)
ANCHOR_NOTEBOOK, MODEL_NOTEBOOK, TARGET_NOTEBOOK = ("1_anchors_boxes.ipynb", "2_psroi_model.ipynb",
                                                    "3_targets_losses.ipynb")
NOTEBOOKS = (ANCHOR_NOTEBOOK, MODEL_NOTEBOOK, TARGET_NOTEBOOK)
# The demo's recipe: 1800 steps of 8 crops of 320 px, AdamW, cosine schedule, channels-last. Measured
# 2026-12-07 (2 threads, `make demo MODEL=rfcn`): training 820 s, evaluation 6 s, 13.8 min in all, 8 of
# them beside another 2-thread job; AP easy / medium / hard 0.988 / 0.937 / 0.708. Contiguous
# (2026-11-30, quiet machine): training 950 s, 16.2 min, AP 0.989 / 0.937 / 0.698. Per step the
# criterion (proposals, anchor/proposal targets, head on the sampled RoIs) is ~15-20% and augmentation ~5%.
DEMO = dict(image_size=320, max_iterations=1800, batch_size=8, lr=2e-3, momentum=0.9, weight_decay=1e-4,
            optimizer="adamw", schedule="cosine", warmup_iterations=100, clip_grad_norm=10.0,
            channels_last=True)
FACE = 1
SMOKE_SIZE = 32


@dataclass(frozen=True)
class Homework:
    """The notebook definitions that training and detection need."""

    generate_anchors: Callable
    shift_anchors: Callable
    bbox_transform_inv: Callable
    clip_boxes: Callable
    RFCN: type
    proposal_layer: Callable
    anchor_target_layer: Callable
    proposal_target_layer: Callable
    rfcn_loss: Callable
    ohem_select: Callable


def load_homework(code: NotebookCode) -> Homework:
    """The notebooks' definitions; the anchor functions run once so that a stub is reported now."""
    hw = Homework(*(code.get(n, ANCHOR_NOTEBOOK) for n in
                    ("generate_anchors", "shift_anchors", "bbox_transform_inv", "clip_boxes")),
                  code.get("RFCN", MODEL_NOTEBOOK),
                  *(code.get(n, TARGET_NOTEBOOK) for n in ("proposal_layer", "anchor_target_layer",
                                                           "proposal_target_layer", "rfcn_loss",
                                                           "ohem_select")))
    base = code.call("generate_anchors", ANCHOR_NOTEBOOK, 16, (1.0,), (1,))
    code.call("shift_anchors", ANCHOR_NOTEBOOK, torch.as_tensor(base), 1, 1, 16)
    return hw


class AnchorCache:
    """``anchors(feat_h, feat_w, device) -> [h*w*A, 4]`` pixels, computed once per size."""

    def __init__(self, hw: Homework, cfg: dict) -> None:
        self.hw, self.cfg, self._cache = hw, cfg, {}
        self.base = torch.as_tensor(hw.generate_anchors(cfg["anchor_base"], tuple(cfg["anchor_ratios"]),
                                                        tuple(cfg["anchor_scales"])), dtype=torch.float32)

    def __call__(self, feat_h: int, feat_w: int, device: torch.device) -> torch.Tensor:
        key = (feat_h, feat_w, str(device))
        if key not in self._cache:
            self._cache[key] = self.hw.shift_anchors(self.base.to(device), feat_h, feat_w,
                                                     self.cfg["feat_stride"])
        return self._cache[key]


class RFCNCriterion:
    """``criterion(outputs, targets) -> {rpn_cls, rpn_box, rcnn_cls, rcnn_box}`` for ``fit``.

    targets: list of [n, 15] rows with boxes normalised to the square crop of cfg['image_size'].
    Per image: anchor targets, proposals (no gradient), proposal targets (or every RoI and OHEM),
    then the head on the sampled RoIs of the whole batch and ``rfcn_loss``.
    """

    def __init__(self, hw: Homework, model: torch.nn.Module, cfg: dict, seed: int = 0,
                 ohem: bool | None = None) -> None:
        self.hw, self.model, self.cfg = hw, model, cfg
        self.ohem = cfg["ohem"] if ohem is None else ohem
        self.anchors = AnchorCache(hw, cfg)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, outputs: dict, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, hw = self.cfg, self.hw
        size = (cfg["image_size"], cfg["image_size"])
        maps = outputs["cls_maps"]
        anchors = self.anchors(maps.shape[-2], maps.shape[-1], maps.device)
        rois, _ = hw.proposal_layer(outputs["rpn_logits"], outputs["rpn_deltas"], anchors, size,
                                    cfg["rpn_pre_nms_train"], cfg["rpn_post_nms_train"],
                                    cfg["rpn_nms_thresh"], cfg["rpn_min_size"])
        rpn_labels, rpn_targets, sampled = [], [], []
        for b, target in enumerate(targets):
            faces = target[:, :4] * cfg["image_size"]
            labels, deltas = hw.anchor_target_layer(anchors, faces, size, self.generator, cfg["rpn_batch"],
                                                    cfg["rpn_fg_fraction"], cfg["rpn_positive_iou"],
                                                    cfg["rpn_negative_iou"])
            rpn_labels.append(labels)
            rpn_targets.append(deltas)
            sampled.append(self._sample(outputs, rois[rois[:, 0] == b, 1:], faces, b))
        picked = [torch.cat(parts) for parts in zip(*sampled)]
        cls_logits, box_deltas = self.model.head(outputs, picked[0])
        return hw.rfcn_loss(outputs["rpn_logits"], outputs["rpn_deltas"], torch.stack(rpn_labels),
                            torch.stack(rpn_targets), cls_logits, box_deltas, picked[1], picked[2],
                            cfg["rpn_sigma"], cfg["rcnn_sigma"])

    def _sample(self, outputs: dict, rois: torch.Tensor, faces: torch.Tensor, b: int):
        """(rois [S, 5] with batch index b, labels [S], targets [S, 4]) of image b."""
        cfg = self.cfg
        batch = None if self.ohem else cfg["roi_batch"]
        boxes, labels, targets = self.hw.proposal_target_layer(
            rois, faces, self.generator, batch, cfg["roi_fg_fraction"], cfg["roi_fg_iou"],
            tuple(cfg["roi_bg_iou"]), tuple(cfg["bbox_stds"]))
        with_index = torch.cat([boxes.new_full((len(boxes), 1), b), boxes], dim=1)
        if self.ohem:
            with torch.no_grad():
                cls_logits, box_deltas = self.model.head(outputs, with_index)
            keep = self.hw.ohem_select(cls_logits, box_deltas, labels, targets, boxes, cfg["roi_batch"],
                                       cfg["ohem_nms"], cfg["rcnn_sigma"])
            with_index, labels, targets = with_index[keep], labels[keep], targets[keep]
        return with_index, labels, targets


class RFCNDetector:
    """``detect(images) -> list[Detections]``: each uint8 BGR image alone at its own size."""

    def __init__(self, hw: Homework, model: torch.nn.Module, cfg: dict, conf_thresh: float | None = None,
                 nms_thresh: float | None = None, max_dets: int | None = None,
                 device: str | torch.device | None = None) -> None:
        self.hw, self.model, self.cfg = hw, model.eval(), cfg
        self.conf_thresh = cfg["test_score_thresh"] if conf_thresh is None else conf_thresh
        self.nms_thresh = cfg["test_nms_thresh"] if nms_thresh is None else nms_thresh
        self.max_dets = cfg["test_max_dets"] if max_dets is None else max_dets
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.anchors = AnchorCache(hw, cfg)
        self.mean = torch.tensor(BGR_MEAN, dtype=torch.float32).view(3, 1, 1)

    @torch.no_grad()
    def proposals(self, image: np.ndarray) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """(model outputs, rois [R, 5], RPN scores [R]) of one image."""
        x = (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() - self.mean)[None]
        outputs = self.model(x.to(self.device))
        maps = outputs["cls_maps"]
        anchors = self.anchors(maps.shape[-2], maps.shape[-1], maps.device)
        rois, scores = self.hw.proposal_layer(outputs["rpn_logits"], outputs["rpn_deltas"], anchors,
                                              image.shape[:2], self.cfg["rpn_pre_nms_test"],
                                              self.cfg["rpn_post_nms_test"], self.cfg["rpn_nms_thresh"],
                                              self.cfg["rpn_min_size"])
        return outputs, rois, scores

    @torch.no_grad()
    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: np.ndarray) -> Detections:
        outputs, rois, _ = self.proposals(image)
        cls_logits, box_deltas = self.model.head(outputs, rois)
        scores = cls_logits.softmax(dim=-1)[:, FACE]
        boxes = self.hw.clip_boxes(self.hw.bbox_transform_inv(rois[:, 1:], box_deltas,
                                                              tuple(self.cfg["bbox_stds"])), image.shape[:2])
        keep = torch.nonzero(scores > self.conf_thresh).flatten()
        keep = keep[batched_nms(boxes[keep], scores[keep], torch.zeros_like(keep), self.nms_thresh)]
        keep = keep[:self.max_dets]
        return Detections(boxes[keep].float().cpu().numpy(), scores[keep].float().cpu().numpy(), None)


def train_rfcn(hw: Homework, cfg: dict, data_root: str | Path, config: TrainConfig,
               model: torch.nn.Module | None = None, ohem: bool | None = None) -> TrainResult:
    """Train ``model`` (a new ``hw.RFCN(cfg)`` seeded by ``config.seed`` when None) on
    ``data_root/train`` with square crops of ``cfg['image_size']`` pixels."""
    if model is None:
        torch.manual_seed(config.seed)
        model = hw.RFCN(cfg)
    dataset = WiderFaceDataset(data_root, "train", transform=TrainAugment(cfg["image_size"]), seed=config.seed)
    criterion = RFCNCriterion(hw, model, cfg, config.seed, ohem)
    return fit(model, criterion, dataset, config, collate_fn=detection_collate)


# -- the detector interface (utils.detectors) ------------------------------------------------------
def build_model(cfg: dict, code: NotebookCode) -> torch.nn.Module:
    return code.get("RFCN", MODEL_NOTEBOOK)(cfg)


def build_detector(model: torch.nn.Module, cfg: dict, code: NotebookCode, **options) -> RFCNDetector:
    return RFCNDetector(load_homework(code), model, cfg, **options)


def train_model(model: torch.nn.Module, cfg: dict, data_root: str | Path, config: TrainConfig,
                code: NotebookCode, ohem: bool | None = None) -> TrainResult:
    """Variants: ``ohem=True/False`` overrides cfg['ohem']; the voting and anchors come from cfg
    (``weighted_vote``, ``anchor_ratios``, ``anchor_scales``)."""
    return train_rfcn(load_homework(code), cfg, data_root, config, model, ohem)


__all__ = ["NAME", "CONFIGS", "LITE", "FULL", "DEMO", "NOTEBOOKS", "build_model", "build_detector", "train_model",
           "Homework", "load_homework", "RFCNCriterion", "RFCNDetector", "train_rfcn"]
