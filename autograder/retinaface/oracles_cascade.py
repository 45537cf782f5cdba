"""Independent answers for the optional cascade part of the RetinaFace homework
(``7_cascade_regression.ipynb``), written from its definitions: slow per-anchor loops in float64.

Step 2 of the cascade treats the boxes decoded by step 1 as its anchors: ``refined`` [P, 4] holds one
box (x1, y1, x2, y2), normalised, per anchor. An anchor is a step-2 positive when its refined box
overlaps its best face by at least the (higher) step-2 threshold; there is no forcing in step 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from autograder.retinaface.oracles import _iou, encode_boxes

CASCADE_THRESH = 0.5  # the step-2 threshold the notebook uses (the kit's step 1 uses 0.35)


def center_size(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h), row by row, float64."""
    rows = [[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1] for x1, y1, x2, y2 in boxes.double().tolist()]
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


@dataclass
class CascadeMatching:
    """Step 2's matching of one image: loc_t [P, 4], conf_t [P] int64, the face of every anchor
    (-1 without faces) and the reason for every anchor's label."""

    loc_t: torch.Tensor
    conf_t: torch.Tensor
    face: list[int]
    reasons: list[str]


def match_refined(threshold: float, truths: torch.Tensor, refined: torch.Tensor, variances,
                  labels: torch.Tensor, force_min_iou: float | None = None,
                  encode_against: str = "refined", priors: torch.Tensor | None = None) -> CascadeMatching:
    """The step-2 matching, one anchor at a time. The keyword arguments give the classic mistakes
    instead: ``force_min_iou`` (each face forces its best refined box, as step 1 does) and
    ``encode_against="corners"`` (targets encoded against the refined boxes left in corner form) or
    ``"priors"`` (against the original anchors ``priors`` [P, 4] (cx, cy, w, h), as step 1 does)."""
    num = refined.shape[0]
    if truths.shape[0] == 0:
        why = "there are no faces, so every anchor is background"
        return CascadeMatching(torch.zeros(num, 4, dtype=torch.float64), torch.zeros(num, dtype=torch.long),
                               [-1] * num, [why] * num)
    boxes = refined.double().tolist()
    faces = truths.double().tolist()
    iou = [[_iou(face, box) for box in boxes] for face in faces]                    # [F][P]
    forced: dict[int, int] = {}
    if force_min_iou is not None:
        for f, row in enumerate(iou):
            best = max(range(num), key=lambda p: (row[p], -p))
            if row[best] >= force_min_iou:
                forced[best] = f
    face_of, conf, reasons = [], [], []
    for p in range(num):
        column = [iou[f][p] for f in range(len(faces))]
        best = max(column)
        f = forced.get(p, column.index(best))
        face_of.append(f)
        positive = p in forced or best >= threshold
        conf.append(int(labels[f]) if positive else 0)
        reasons.append(f"its refined box's best face is face {f} with IoU {best:.4f} "
                       + (f">= threshold {threshold:g}, so it is a step-2 positive" if positive else
                          f"< threshold {threshold:g}, so it is background in step 2 (no forcing in step 2)"))
    anchors = {"refined": lambda: center_size(refined), "corners": lambda: refined.double(),
               "priors": lambda: priors.double()}[encode_against]()
    loc_t = encode_boxes(truths.double()[torch.tensor(face_of)], anchors, variances)
    return CascadeMatching(loc_t, torch.tensor(conf, dtype=torch.long), face_of, reasons)
