"""Glue for the optional cascade part of the RetinaFace homework (``7_cascade_regression.ipynb``):
training a two-step (cascade) RetinaFace with the kit's engine, and detecting with
``utils.inference.Detector``, which knows one regression step only.

A cascade model's forward returns ``(loc1 [B, P, 4], conf [B, P, 2], landm [B, P, 10], loc2 [B, P, 4])``:
step 1 regresses boxes from the anchors (as RetinaFace does), step 2 regresses relative to step 1's
decoded boxes. ``CascadeOutputs`` composes the two steps into one ``loc`` encoded against the
anchors, so the Detector's usual decode gives step 2's boxes. The functions (decode, encode) and the
loss are the notebook's, passed in: ``utils`` never imports the solutions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from data.augment import TrainAugment
from data.widerface import WiderFaceDataset, detection_collate
from utils.inference import Detector, PriorCache
from utils.training.config import TrainConfig
from utils.training.train import TrainResult, fit

BOX_COORDS = 4


def center_size(boxes: torch.Tensor) -> torch.Tensor:
    """boxes [N, 4] (x1, y1, x2, y2) -> [N, 4] (cx, cy, w, h)."""
    return torch.cat(((boxes[:, 2:] + boxes[:, :2]) / 2, boxes[:, 2:] - boxes[:, :2]), dim=1)


class CascadeOutputs(nn.Module):
    """A cascade model seen as a one-step detector: ``forward(images) -> (loc, conf, landm)``.

    model: ``model(images) -> (loc1, conf, landm, loc2)``; prior_fn: ``(H, W) -> [P, 4]`` anchors
    (cx, cy, w, h); decode / encode: the homework's box decoding and encoding; variances: cfg['variance'].
    steps: 2 gives step 2's boxes (decoded on top of step 1's), 1 gives step 1's boxes only.
    ``loc`` [B, P, 4] is the chosen step's box encoded against the anchors, so that
    ``decode(loc, anchors)`` gives it back (landmarks stay step 1's, relative to the anchors).
    """

    def __init__(self, model: nn.Module, prior_fn: Callable, decode: Callable, encode: Callable,
                 variances: Sequence[float], steps: int = 2) -> None:
        super().__init__()
        if steps not in (1, 2):
            raise ValueError(f"steps must be 1 or 2, got {steps}")
        self.model, self.priors = model, PriorCache(prior_fn)
        self.decode, self.encode, self.variances, self.steps = decode, encode, list(variances), steps

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loc1, conf, landm, loc2 = self.model(images)
        if self.steps == 1:
            return loc1, conf, landm
        batch, num_priors = loc1.shape[:2]
        anchors = self.priors(images.shape[-2:], images.device).repeat(batch, 1)       # [B * P, 4]
        step1 = self.decode(loc1.reshape(-1, BOX_COORDS), anchors, self.variances)      # (x1, y1, x2, y2)
        step2 = self.decode(loc2.reshape(-1, BOX_COORDS), center_size(step1), self.variances)
        loc = self.encode(step2, anchors, self.variances)                               # [B * P, 4]
        return loc.reshape(batch, num_priors, BOX_COORDS), conf, landm


def cascade_detector(model: nn.Module, prior_fn: Callable, decode: Callable, encode: Callable,
                     decode_landm: Callable, variances: Sequence[float], steps: int = 2,
                     **options) -> Detector:
    """A batched detector giving the cascade's step-``steps`` boxes (``options``: Detector's)."""
    wrapped = CascadeOutputs(model, prior_fn, decode, encode, variances, steps)
    return Detector(wrapped, prior_fn, decode, decode_landm, variances, **options)


def cascade_criterion(loss: nn.Module, cfg: dict) -> Callable:
    """``criterion(outputs, targets, priors) -> {'loc', 'conf', 'landm', 'loc2'}`` for ``fit``:
    ``loss`` returns (loss_l, loss_c, loss_landm, loss_l2); both box terms weigh cfg['loc_weight']."""
    def criterion(outputs, targets, priors):
        loss_l, loss_c, loss_landm, loss_l2 = loss(outputs, priors, targets)
        return {"loc": cfg["loc_weight"] * loss_l, "conf": loss_c, "landm": loss_landm,
                "loc2": cfg["loc_weight"] * loss_l2}
    return criterion


def train_cascade(model: nn.Module, loss: nn.Module, cfg: dict, data_root: str | Path,
                  config: TrainConfig, prior_fn: Callable) -> TrainResult:
    """Train a cascade model on ``data_root/train`` with the data, augmentation and engine of
    ``utils.detectors.retinaface.train_retinaface`` (same seed, same crops of cfg['image_size'])."""
    dataset = WiderFaceDataset(data_root, "train", transform=TrainAugment(cfg["image_size"]), seed=config.seed)
    return fit(model, cascade_criterion(loss, cfg), dataset, config, collate_fn=detection_collate,
               prior_fn=prior_fn)
