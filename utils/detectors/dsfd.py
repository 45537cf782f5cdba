"""DSFD (the extension homework) behind the kit's detector interface (``utils.detectors``), and the
glue its experiment notebook uses: ``Homework`` (the notebook definitions training needs),
``DsfdAugment`` (data-anchor-sampling mixed with the kit's square crops), ``train_dsfd`` and
``make_detector``.

Inputs of the model must have sides that are multiples of the largest step (128): training crops
are, and the detector pads every batch bottom/right with the mean colour (``PaddedDetector``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import math

import cv2
import numpy as np
import torch
from torchvision.ops import nms

from data.augment import TrainAugment, mirror, photometric_distort, shift_and_scale, to_tensor
from data.widerface import WiderFaceDataset, detection_collate
from detector.dsfd.boxes import decode
from detector.dsfd.config import CONFIGS
from utils.detectors.notebooks import NotebookCode
from utils.inference import Detections, Detector
from utils.training.config import TrainConfig
from utils.training.train import TrainResult, fit

NAME = "dsfd"
LITE = "vgg16_lite"
FULL = "vgg16"                 # the public checkpoint's layout (GPU)
MODEL_NOTEBOOK, TRAINING_NOTEBOOK = "1_model.ipynb", "3_anchors_loss_sampling.ipynb"
NOTEBOOKS = (MODEL_NOTEBOOK, TRAINING_NOTEBOOK)
# The demo's recipe (VGG-16-lite, crops of 256 px), trained from ``init_from_scratch`` (train_detector
# and train_dsfd apply it to every model they build) and tested with LITE_TEST_SCALES. Cost: 499 vs
# RetinaFace's 245 MMAC per crop (forward + backward 2.3x RetinaFace's per image, `python -m
# bench.training_cost --batch 8 --repeats 2`); channels_last makes it 26-36% faster on this CPU (mkldnn
# convolutions of 8-64 channels; `python -m bench.training_cost`, batch 12, 2026-12-07: x0.64 and
# x0.74). Measured 2026-12-01 on the quiet 2-core machine (2 threads, `python -m utils.demo --model dsfd
# --fresh`): training 985 s, 17.3 min in all (with a three-scale evaluation, 45 s; the two-scale one
# takes 40 s); AP easy / medium / hard 0.934 / 0.939 / 0.864. A rerun took 11.4 min (training 653 s),
# identical AP: the machine's speed varies, the budget fits the slower run. AdamW is what made it fit:
# SGD lr 0.01 (850 steps, otherwise the same recipe) ended at loss 6.7 (mean of the last 50 steps; AdamW
# 5.5) and AP 0.682 / 0.853 / 0.799; at step 300 the loss was 13.2 with SGD, 9.5 with AdamW.
# With PyTorch's default init the loss rose (15.6 at step 50 -> 20.1 at 150; same 60-step schedule,
# steps 11-25 at lr ~0.01: mean loss 18.7 with the default init, 15.6 with init_from_scratch): the deep
# maps carried ~1e-5 of the image (see init_from_scratch).
DEMO = dict(image_size=256, max_iterations=1050, batch_size=12, lr=1e-3, momentum=0.9, weight_decay=1e-4,
            optimizer="adamw", schedule="cosine", warmup_iterations=100, clip_grad_norm=10.0,
            channels_last=True)
MIN_FACE_PX = 1.0            # boxes narrower or lower than this after data-anchor-sampling are dropped
SMOKE_SIZE = (128, 128)      # input size used to check that the loaded functions run at all
INPUT_STD = 64.0             # about the std of a BGR image minus the mean colour (init_from_scratch)
HEAD_PREFIXES = ("loc_pal", "conf_pal")


@dataclass(frozen=True)
class Homework:
    """The notebook definitions that training and evaluation need."""

    DSFD: type
    pal_priors: Callable
    ProgressiveAnchorLoss: type
    data_anchor_sampling: Callable


def load_homework(code: NotebookCode) -> Homework:
    """The model, anchors, loss and sampling of ``code``; the anchors run once on a tiny input so
    that a stub is reported with its notebook now, not deep inside training."""
    hw = Homework(code.get("DSFD", MODEL_NOTEBOOK), code.get("pal_priors", TRAINING_NOTEBOOK),
                  code.get("ProgressiveAnchorLoss", TRAINING_NOTEBOOK),
                  code.get("data_anchor_sampling", TRAINING_NOTEBOOK))
    code.call("pal_priors", TRAINING_NOTEBOOK, CONFIGS[LITE], SMOKE_SIZE)
    return hw


class DsfdAugment:
    """``(image uint8 BGR [H, W, 3], targets [n, 15] pixels, rng) -> (float32 [3, S, S] minus the mean,
    targets [n', 15] in [0, 1])``: with probability ``das_prob`` (and at least one face) the
    notebook's data-anchor-sampling, then photometric distortion and a mirror with probability 1/2
    (faces whose centre left the crop are dropped, the rest clipped); otherwise the kit's
    RetinaFace-style square crop (``data.augment.TrainAugment``)."""

    def __init__(self, image_size: int, das_prob: float, das_fn: Callable, anchor_sizes) -> None:
        self.image_size, self.das_prob, self.das_fn = int(image_size), float(das_prob), das_fn
        self.anchor_sizes = tuple(anchor_sizes)
        self.fallback = TrainAugment(self.image_size)

    def __call__(self, image: np.ndarray, targets, rng: np.random.Generator):
        targets = np.asarray(targets, dtype=np.float32).reshape(-1, 15)
        size = self.image_size
        if len(targets) and rng.random() < self.das_prob:
            crop, boxes, info = self.das_fn(image, targets[:, :4], rng, anchor_sizes=self.anchor_sizes,
                                            crop_size=size)
            ratio, (x0, y0) = info["ratio"], info["offset"]
            out = shift_and_scale(targets, x0 / ratio, y0 / ratio, ratio)
            out[:, :4] = boxes
            centres = (out[:, :2] + out[:, 2:4]) / 2
            out = out[((centres >= 0) & (centres < size)).all(axis=1)]
            out[:, :4] = np.clip(out[:, :4], 0, size)
            out = out[((out[:, 2:4] - out[:, :2]) >= MIN_FACE_PX).all(axis=1)]
            image = photometric_distort(np.ascontiguousarray(crop), rng)
            if rng.random() < 0.5:
                image, out = mirror(image, out)
        else:
            image, out = self.fallback.geometric(image, targets, rng)
        normalised = shift_and_scale(out, 0.0, 0.0, 1.0 / size)
        return to_tensor(image), torch.from_numpy(normalised)


def misplaced_priors(cfg: dict, image_size, pal_priors: Callable) -> torch.Tensor:
    """[2, P, 4] anchors of both shots as the course project's PriorBox made them when a source map's
    real stride (``cfg['source_strides']``) differs from its step: one anchor per cell of the real
    map, but centred at ``(j + 0.5) * step / W``, so the level's anchors cover only ``step / stride``
    of each side (the project's B0 level 0 at 640 px: 40 x 40 cells x 4 px, the top-left quarter).
    Built from ``pal_priors`` (the notebook's): its anchors for the real strides, centres scaled by
    step / stride; the kit ships no anchor generator of its own (that is the exercise)."""
    height, width = image_size
    strides = list(cfg["source_strides"])
    first, second = pal_priors(dict(cfg, steps=strides), image_size)
    scale = torch.cat([torch.full((math.ceil(height / stride) * math.ceil(width / stride),), step / stride)
                       for stride, step in zip(strides, cfg["steps"])])
    priors = torch.stack([first, second]).float().clone()
    priors[..., :2] *= scale[:, None]
    return priors


def prior_function(hw: Homework, cfg: dict) -> Callable:
    """``(H, W) -> [2, P, 4]`` both shots' anchors: the notebook's ``pal_priors``, or the project's
    misplaced anchors for a config whose source strides differ from its steps."""
    if list(cfg["source_strides"]) != list(cfg["steps"]):
        return lambda size: misplaced_priors(cfg, size, hw.pal_priors)
    return lambda size: torch.stack(hw.pal_priors(cfg, size))


def init_from_scratch(model: torch.nn.Module, input_std: float = INPUT_STD) -> torch.nn.Module:
    """Initialise ``model`` (a DSFD of the solutions' layout) for training without pretrained weights,
    in place: He-normal convolutions with zero biases, the first one divided by ``input_std`` (inputs
    are pixels minus the mean, std ~60), the loc/conf heads normal(0, 0.01). PyTorch's default init
    shrinks each layer's signal (VGG has no BatchNorm): the 1/8-width VGG's source maps then keep a
    thousandth of the image's variation and the multiplicative FPN a hundred-thousandth, so the
    detector starts blind; plain He init on raw pixels makes the FPN's products explode instead."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            if name.startswith(HEAD_PREFIXES):
                torch.nn.init.normal_(module.weight, std=0.01)
            else:
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        first.weight /= input_std
    return model


def dsfd_criterion(loss: torch.nn.Module, pal: bool = True) -> Callable:
    """``criterion(outputs, targets, priors) -> dict`` for ``utils.training.train.fit``; priors
    [2, P, 4] are the two shots' anchors stacked. ``pal=False`` trains the second shot alone (PAL
    ablation)."""
    def criterion(outputs, targets, priors):
        parts = loss(outputs, (priors[0], priors[1]), targets)
        return parts if pal else {k: v for k, v in parts.items() if k.endswith("second")}
    return criterion


def train_dsfd(hw: Homework, cfg: dict, data_root: str | Path, config: TrainConfig, pal: bool = True,
               model: torch.nn.Module | None = None) -> TrainResult:
    """Train ``model`` (when None, a new ``hw.DSFD(cfg)`` seeded by ``config.seed`` and initialised by
    ``init_from_scratch``) on ``data_root/train`` with crops of ``cfg['image_size']`` pixels;
    ``cfg['das_prob']`` = 0 turns data-anchor-sampling off, ``cfg['fem']`` False the FEM (a model
    without it)."""
    if cfg["image_size"] % max(cfg["steps"]):
        raise ValueError(f"cfg['image_size'] = {cfg['image_size']} must be a multiple of {max(cfg['steps'])}")
    if model is None:
        torch.manual_seed(config.seed)
        model = init_from_scratch(hw.DSFD(cfg))
    augment = DsfdAugment(cfg["image_size"], cfg["das_prob"], hw.data_anchor_sampling, cfg["anchor_sizes"])
    dataset = WiderFaceDataset(data_root, "train", transform=augment, seed=config.seed)
    return fit(model, dsfd_criterion(hw.ProgressiveAnchorLoss(cfg), pal), dataset, config,
               collate_fn=detection_collate, prior_fn=prior_function(hw, cfg))


class PaddedDetector(Detector):
    """A ``Detector`` whose batches are zero-padded (the mean colour) bottom/right to multiples of
    ``divisor``, the largest stride of DSFD; detections stay in each image's own pixels."""

    def __init__(self, *args, divisor: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.divisor = int(divisor)

    def prepare(self, images) -> torch.Tensor:
        batch = super().prepare(images)
        height, width = batch.shape[-2:]
        pad_h, pad_w = -height % self.divisor, -width % self.divisor
        return torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h)) if pad_h or pad_w else batch


# Test scales of the lite configs: (scale, smallest and largest box side kept, in pixels of the original
# image; a box's side is its longer one). A SNIP-style split: each pass keeps the face sizes that the
# 256-px training crops showed it at that scale. Large faces are found in the half-size pass; the full-size
# pass keeps confident partial boxes inside them, so it keeps only boxes up to 64 px; the 32-64 px overlap
# goes to NMS. The public code's multi-scale test (shrunk passes keep boxes > 30 px, the base pass all)
# is the same idea without the upper bound. Chosen on the embedded validation set (see README, DSFD).
LITE_TEST_SCALES = ((1.0, 0.0, 64.0), (0.5, 32.0, math.inf))
SINGLE_SCALE = ((1.0, 0.0, math.inf),)


class ScaleSplitDetector(PaddedDetector):
    """A ``PaddedDetector`` that runs every image at each of ``scales`` = ((scale, min side, max side),
    ...), keeps from each pass the boxes whose longer side (original pixels) lies in (min, max], and
    merges the passes by NMS (``nms_thresh``), best first, at most ``keep_top_k`` per image."""

    def __init__(self, *args, scales=SINGLE_SCALE, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        scales = tuple((float(s), float(lo), float(hi)) for s, lo, hi in scales)
        if not scales or any(s <= 0 or lo < 0 or hi <= lo for s, lo, hi in scales):
            raise ValueError(f"scales must be non-empty (scale > 0, 0 <= min side < max side) triples, "
                             f"got {scales}")
        self.scales = scales

    def detect(self, images) -> list[Detections]:
        if self.scales == SINGLE_SCALE:
            return super().detect(images)
        if len(images) == 0:
            return []
        parts = [[] for _ in images]
        for scale, low, high in self.scales:
            resized, factors = [], []
            for image in images:
                height, width = image.shape[:2]
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                resized.append(image if scale == 1 else cv2.resize(image, size, interpolation=interpolation))
                factors.append(np.array([width / size[0], height / size[1]] * 2, dtype=np.float32))
            for i, found in enumerate(super().detect(resized)):
                boxes = found.boxes * factors[i]
                side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
                keep = (side > low) & (side <= high)
                parts[i].append((boxes[keep], found.scores[keep]))
        merged = []
        for pieces in parts:
            boxes = np.concatenate([b for b, _ in pieces]).astype(np.float32).reshape(-1, 4)
            scores = np.concatenate([s for _, s in pieces]).astype(np.float32)
            keep = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.nms_thresh)[:self.keep_top_k]
            keep = keep.numpy()
            merged.append(Detections(boxes[keep], scores[keep], None))
        return merged


def make_detector(hw: Homework, model: torch.nn.Module, cfg: dict, scales=None, **options) -> Detector:
    """A batched detector for ``model``: the second shot with the notebook's anchors. ``scales``: the
    test passes (``ScaleSplitDetector``); None = ``LITE_TEST_SCALES`` for a lite config (trained on
    256-px crops), one full-size pass otherwise."""
    priors = prior_function(hw, cfg)
    if scales is None:
        scales = LITE_TEST_SCALES if cfg["name"].endswith("_lite") else SINGLE_SCALE
    return ScaleSplitDetector(model, lambda size: priors(size)[1], decode, None, cfg["variance"],
                              divisor=max(cfg["steps"]), scales=scales, **options)


# -- the detector interface (utils.detectors) ------------------------------------------------------
def build_model(cfg: dict, code: NotebookCode) -> torch.nn.Module:
    return code.get("DSFD", MODEL_NOTEBOOK)(cfg)


def build_detector(model: torch.nn.Module, cfg: dict, code: NotebookCode, **options) -> Detector:
    """options: conf_thresh, nms_thresh, top_k, keep_top_k, scales (``make_detector``)."""
    return make_detector(load_homework(code), model, cfg, **options)


def train_model(model: torch.nn.Module, cfg: dict, data_root: str | Path, config: TrainConfig,
                code: NotebookCode, pal: bool = True, das: bool = True) -> TrainResult:
    """Variants: ``pal=False`` trains the second shot only; ``das=False`` turns data-anchor-sampling
    off (the FEM ablation is the config field ``fem``)."""
    cfg = cfg if das else {**cfg, "das_prob": 0.0}
    return train_dsfd(load_homework(code), cfg, data_root, config, pal, model)
