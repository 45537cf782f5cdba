"""Independent answers for grading the RetinaFace homework, written from the homework's definitions
(never from the solutions): slow per-anchor loops in float64 that the graded outputs must agree with.

Boxes are (x1, y1, x2, y2), anchors (cx, cy, w, h), both normalised to the image; landmarks are
(l0x, l0y, ..., l4x, l4y).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LANDMARK_POINTS = 5


def prior_boxes(cfg: dict, image_size: tuple[int, int], corner: bool | str = False,
                swap_hw: bool = False) -> torch.Tensor:
    """[P, 4] float32 anchors (cx, cy, w, h) by the definition: level by level, row i, column j,
    anchor size. ``corner`` and ``swap_hw`` give classic mistakes instead (anchors at the cells'
    top-left corners, or with ``corner="x"``/``"y"`` on that axis only; x normalised by the height
    and y by the width)."""
    height, width = image_size
    norm_x, norm_y = (height, width) if swap_hw else (width, height)
    offset_x = 0.0 if corner in (True, "x") else 0.5
    offset_y = 0.0 if corner in (True, "y") else 0.5
    rows = []
    for step, sizes in zip(cfg["steps"], cfg["min_sizes"]):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for size in sizes:
                    rows.append([(j + offset_x) * step / norm_x, (i + offset_y) * step / norm_y,
                                 size / norm_x, size / norm_y])
    anchors = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4).float()
    return anchors.clamp(0, 1) if cfg["clip"] else anchors


def anchor_count(cfg: dict, image_size: tuple[int, int], rounding=math.ceil) -> int:
    """P = sum over levels of rounding(H / s) * rounding(W / s) * len(min_sizes)."""
    return sum(rounding(image_size[0] / s) * rounding(image_size[1] / s) * len(m)
               for s, m in zip(cfg["steps"], cfg["min_sizes"]))


# -- box and landmark encoding, row by row ----------------------------------------------------------
def encode_boxes(matched: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """[P, 4] targets (tx, ty, tw, th) of boxes [P, 4] against anchors [P, 4]; in matched's dtype."""
    v0, v1 = float(variances[0]), float(variances[1])
    rows = []
    for (x1, y1, x2, y2), (cx, cy, w, h) in zip(matched.double().tolist(), priors.double().tolist()):
        rows.append([((x1 + x2) / 2 - cx) / (v0 * w), ((y1 + y2) / 2 - cy) / (v0 * h),
                     math.log((x2 - x1) / w) / v1, math.log((y2 - y1) / h) / v1])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4).to(matched.dtype)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """[P, 4] boxes (x1, y1, x2, y2) from targets [P, 4] and anchors [P, 4]; in loc's dtype."""
    v0, v1 = float(variances[0]), float(variances[1])
    rows = []
    for (tx, ty, tw, th), (cx, cy, w, h) in zip(loc.double().tolist(), priors.double().tolist()):
        gx, gy = cx + tx * v0 * w, cy + ty * v0 * h
        gw, gh = w * math.exp(tw * v1), h * math.exp(th * v1)
        rows.append([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4).to(loc.dtype)


def encode_landmarks(matched: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """[P, 10] targets of landmarks [P, 10] against anchors [P, 4]; in matched's dtype."""
    v0 = float(variances[0])
    rows = []
    for points, (cx, cy, w, h) in zip(matched.double().tolist(), priors.double().tolist()):
        rows.append([v for k in range(LANDMARK_POINTS)
                     for v in ((points[2 * k] - cx) / (v0 * w), (points[2 * k + 1] - cy) / (v0 * h))])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 10).to(matched.dtype)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """[P, 10] landmarks from targets [P, 10] and anchors [P, 4]; in pre's dtype."""
    v0 = float(variances[0])
    rows = []
    for offsets, (cx, cy, w, h) in zip(pre.double().tolist(), priors.double().tolist()):
        rows.append([v for k in range(LANDMARK_POINTS)
                     for v in (cx + offsets[2 * k] * v0 * w, cy + offsets[2 * k + 1] * v0 * h)])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 10).to(pre.dtype)


# -- matching, anchor by anchor ---------------------------------------------------------------------
@dataclass
class Matching:
    """The documented matching of one image, with the reason for every anchor's label.

    loc_t [P, 4], conf_t [P] int64, landm_t [P, 10]; face[p] is anchor p's face (-1 without faces);
    ambiguous[p] is True where several faces tie for anchor p's best IoU (often all at 0), so which
    face's encoding it gets is a convention, not part of the definition.
    """

    loc_t: torch.Tensor
    conf_t: torch.Tensor
    landm_t: torch.Tensor
    face: list[int]
    ambiguous: list[bool]
    reasons: list[str]


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_faces(threshold: float, truths: torch.Tensor, priors: torch.Tensor, variances,
                labels: torch.Tensor, landms: torch.Tensor, force_min_iou: float) -> Matching:
    """The matching rules of Part 5, one face and one anchor at a time (float64)."""
    num_priors, dtype = priors.shape[0], priors.dtype
    if truths.shape[0] == 0:
        why = "there are no faces, so every anchor is background"
        return Matching(torch.zeros(num_priors, 4, dtype=dtype), torch.zeros(num_priors, dtype=torch.long),
                        torch.zeros(num_priors, 10, dtype=dtype), [-1] * num_priors, [False] * num_priors,
                        [why] * num_priors)
    anchors = [(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) for cx, cy, w, h in priors.double().tolist()]
    faces = truths.double().tolist()
    iou = [[_iou(face, anchor) for anchor in anchors] for face in faces]          # [F][P]
    pickers: dict[int, list[int]] = {}  # anchor -> faces that force it, in face order
    for f, row in enumerate(iou):
        best = max(range(num_priors), key=lambda p: (row[p], -p))  # first anchor among equals
        if row[best] >= force_min_iou:
            pickers.setdefault(best, []).append(f)
    face_of, ambiguous, reasons, conf = [], [], [], []
    for p in range(num_priors):
        column = [iou[f][p] for f in range(len(faces))]
        if p in pickers:
            f = pickers[p][-1]  # the later face wins
            face_of.append(f)
            ambiguous.append(False)
            conf.append(int(labels[f]))
            shared = (f" (faces {pickers[p]} all pick it; the later face wins)" if len(pickers[p]) > 1
                      else "")
            reasons.append(f"it is the best anchor of face {f} (IoU {column[f]:.4f} >= force_min_iou "
                           f"{force_min_iou:g}), so face {f} forces it positive{shared}")
            continue
        best = max(column)
        f = column.index(best)
        face_of.append(f)
        ambiguous.append(column.count(best) > 1)
        positive = best >= threshold
        conf.append(int(labels[f]) if positive else 0)
        reasons.append(f"its best face is face {f} with IoU {best:.4f} "
                       + (f">= threshold {threshold:g}, so it is positive" if positive
                          else f"< threshold {threshold:g}, and no face forces it, so it is background"))
    index = torch.tensor(face_of)
    return Matching(encode_boxes(truths[index], priors, variances).to(dtype),
                    torch.tensor(conf, dtype=torch.long),
                    encode_landmarks(landms[index], priors, variances).to(dtype),
                    face_of, ambiguous, reasons)
