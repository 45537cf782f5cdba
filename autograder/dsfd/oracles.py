"""Independent references for the DSFD checks: torch.nn.functional / torchvision where they exist,
slow loops written from the notebooks' definitions elsewhere. None of this imports solution code."""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autograder.modules import MODEL_DTYPE, deterministic_weights
from detector.dsfd.boxes import encode, match_anchors, overlaps

L2NORM_EPS = 1e-10
DILATION = 3


def l2norm(x: torch.Tensor, channels: int) -> torch.Tensor:
    """F.normalize over channels times the grader's name-seeded ``weight`` [C]."""
    weight = _seeded("weight", [channels])
    return F.normalize(x, dim=1, eps=L2NORM_EPS) * weight[None, :, None, None]


def upsample_product(x: torch.Tensor, y: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=align_corners) * y


def fem_shapes(channels: int) -> dict[str, list[int]]:
    """The public FEM's state_dict: three branches reading all C channels, widths C//3, C//3, rest."""
    a = channels // 3
    b = channels - 2 * a
    convs = {"branch1": [(channels, a)], "branch2.0": [(channels, a)], "branch2.2": [(a, a)],
             "branch3.0": [(channels, b)], "branch3.2": [(b, b)], "branch3.4": [(b, b)]}
    shapes = {}
    for name, [(cin, cout)] in convs.items():
        shapes[f"{name}.weight"] = [cout, cin, 3, 3]
        shapes[f"{name}.bias"] = [cout]
    return shapes


def fem(x: torch.Tensor, channels: int) -> torch.Tensor:
    """FEM written with F.conv2d on the grader's name-seeded weights."""
    state = {name: _seeded(name, shape) for name, shape in fem_shapes(channels).items()}

    def conv(name, inp):
        return F.conv2d(inp, state[f"{name}.weight"], state[f"{name}.bias"], padding=DILATION, dilation=DILATION)

    b1 = conv("branch1", x)
    b2 = conv("branch2.2", F.relu(conv("branch2.0", x)))
    b3 = conv("branch3.4", F.relu(conv("branch3.2", F.relu(conv("branch3.0", x)))))
    return F.relu(torch.cat([b1, b2, b3], dim=1))


def _seeded(name: str, shape: list[int]) -> torch.Tensor:
    """The value ``deterministic_weights`` gives the state_dict entry ``name`` of this shape."""
    holder = module = nn.Module()
    parts = name.split(".")
    for part in parts[:-1]:
        child = nn.Module()
        module.add_module(part, child)
        module = child
    module.register_parameter(parts[-1], nn.Parameter(torch.zeros(shape, dtype=MODEL_DTYPE)))
    return deterministic_weights(holder).state_dict()[name]


# -- anchors ---------------------------------------------------------------------------------------
def pal_priors(cfg: dict, image_size, halve_first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The two shots' anchors, cell by cell (the documented loop)."""
    height, width = image_size
    first, second = [], []
    for step, size in zip(cfg["steps"], cfg["anchor_sizes"]):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                cx, cy = (j + 0.5) * step / width, (i + 0.5) * step / height
                second.append([cx, cy, size / width, size / height])
                small = size / 2 if halve_first else size
                first.append([cx, cy, small / width, small / height])
    return torch.tensor(first, dtype=torch.float32), torch.tensor(second, dtype=torch.float32)


# -- anchor compensation ------------------------------------------------------------------------------
def anchor_compensation(iou: torch.Tensor, assigned: torch.Tensor, min_anchors: int, min_iou: float) -> torch.Tensor:
    """Face by face, anchor by anchor (decreasing IoU, then index)."""
    result = assigned.clone().tolist()
    values = iou.tolist()
    for face, row in enumerate(values):
        have = sum(1 for a in result if a == face)
        for p in sorted(range(len(row)), key=lambda q: (-row[q], q)):
            if have >= min_anchors or row[p] < min_iou:
                break
            if result[p] == -1:
                result[p] = face
                have += 1
    return torch.tensor(result, dtype=torch.long).reshape(assigned.shape)


# -- the loss -----------------------------------------------------------------------------------------
def _smooth_l1(d: float) -> float:
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def shot_loss(loc, conf, priors, targets, cfg, normaliser=None) -> tuple[float, float, int]:
    """One shot's multibox loss, anchor by anchor; returns (loss_l, loss_c, positives). The sums are
    divided by ``normaliser`` (default: this shot's positives, at least 1)."""
    loss_l = loss_c = 0.0
    positives = 0
    for b, target in enumerate(targets):
        faces = target[:, :4].double()
        iou = overlaps(faces, priors.double())
        assigned = match_anchors(iou, cfg["overlap_thresh"])
        if cfg["min_anchors"] > 0 and len(faces):
            assigned = anchor_compensation(iou, assigned, cfg["min_anchors"], cfg["compensation_min_iou"])
        pos = [p for p in range(len(assigned)) if assigned[p] >= 0]
        positives += len(pos)
        if pos:
            idx = torch.tensor(pos)
            t = encode(faces[assigned[idx]], priors.double()[idx], cfg["variance"])
            for row, p in enumerate(pos):
                loss_l += sum(_smooth_l1(float(loc[b, p, k]) - float(t[row, k])) for k in range(4))
        logits = conf[b].double().tolist()
        ce_bg = [math.log(math.exp(z0) + math.exp(z1)) - z0 for z0, z1 in logits]
        ce_face = [math.log(math.exp(z0) + math.exp(z1)) - z1 for z0, z1 in logits]
        pos_set = set(pos)
        mining = [0.0 if p in pos_set else ce_bg[p] for p in range(len(logits))]
        keep = min(cfg["neg_pos_ratio"] * len(pos), len(logits) - 1)
        ranked = sorted(range(len(logits)), key=lambda p: (-mining[p], p))[:keep]
        negatives = set(ranked) - pos_set
        loss_c += sum(ce_face[p] for p in pos) + sum(ce_bg[p] for p in negatives)
    total = normaliser if normaliser is not None else max(positives, 1)
    return loss_l / total, loss_c / total, positives


def progressive_anchor_loss(x: dict, normalise: str = "own", counts: dict | None = None) -> dict[str, float]:
    """L_PAL parts. ``normalise``: 'own' (each shot by its positives: the definition), 'second'
    (both by the second shot's positives) or 'both' (both by the two shots' positives together).
    ``counts`` (a dict), when given, receives each shot's positives, the batch size and the anchors."""
    loc1, conf1, loc2, conf2 = x["predictions"]
    first, second = x["priors"]
    cfg = x["cfg"]
    l1, c1, n1 = shot_loss(loc1, conf1, first, x["targets"], cfg)
    l2, c2, n2 = shot_loss(loc2, conf2, second, x["targets"], cfg)
    if counts is not None:
        counts.update(first=n1, second=n2, batch=len(x["targets"]), anchors_first=len(first),
                      anchors_second=len(second))
    if normalise != "own":
        shared = max(n2 if normalise == "second" else n1 + n2, 1)
        l1, c1 = l1 * max(n1, 1) / shared, c1 * max(n1, 1) / shared
        l2, c2 = l2 * max(n2, 1) / shared, c2 * max(n2, 1) / shared
    w = cfg["pal_weight"]
    return {"loc_first": l1, "conf_first": c1, "loc_second": w * l2, "conf_second": w * c2}


# -- data-anchor-sampling -------------------------------------------------------------------------------
def data_anchor_sampling(image, boxes, seed, anchor_sizes, crop_size, mean=(104, 117, 123)) -> dict:
    """The documented steps, written out again with the same draws."""
    rng = np.random.default_rng(seed)
    face = int(rng.integers(len(boxes)))
    x1, y1, x2, y2 = (float(v) for v in boxes[face])
    side = math.sqrt((x2 - x1) * (y2 - y1))
    distances = [abs(a - side) for a in anchor_sizes]
    nearest = distances.index(min(distances))
    anchor = int(anchor_sizes[int(rng.integers(0, min(nearest + 1, len(anchor_sizes) - 1) + 1))])
    ratio = anchor / side * 2.0 ** rng.uniform(-1, 1)
    offset = []
    for start, end in ((x1 * ratio, x2 * ratio), (y1 * ratio, y2 * ratio)):
        lo, hi = min(end - crop_size, start), max(end - crop_size, start)
        if math.ceil(lo) <= math.floor(hi):
            offset.append(int(rng.integers(math.ceil(lo), math.floor(hi) + 1)))
        else:
            offset.append(int(round((lo + hi) / 2)))
    return {"face": face, "anchor": anchor, "ratio": float(ratio), "offset": offset,
            "crop": warp(image, ratio, offset, crop_size, mean)}


def warp(image, ratio, offset, crop_size, mean=(104, 117, 123)) -> np.ndarray:
    """The image resized by ``ratio`` and cut at ``offset`` (pixel-centre convention)."""
    shift = 0.5 * (ratio - 1)
    matrix = np.float64([[ratio, 0, shift - offset[0]], [0, ratio, shift - offset[1]]])
    return cv2.warpAffine(image, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(m) for m in mean))
