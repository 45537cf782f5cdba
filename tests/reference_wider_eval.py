"""Slow reference of the WIDER FACE protocol: one prediction, one threshold, one image at a time.

Written straight from the rules (see ``utils/evaluate.py``) with plain Python loops and no shared
code with the vectorised version, so the two can check each other. ``tests/test_evaluate.py`` and
``bench/evaluate.py`` both use it.

``reference_evaluate(predictions, gt, iou_thresh)`` -> ``{setting: (ap, precision [1000], recall [1000])}``.
"""
from __future__ import annotations

import numpy as np

from data.wider_gt import WiderGroundTruth

THRESHOLDS = 1000


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two (x, y, w, h) boxes; corners x2 = x + w, sizes with the +1 pixel convention."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0]) + 1
    ih = min(ay2, by2) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (ax2 - a[0] + 1) * (ay2 - a[1] + 1)
    area_b = (bx2 - b[0] + 1) * (by2 - b[1] + 1)
    return inter / (area_a + area_b - inter)


def _normalised(all_dets: list[list[list[float]]]) -> list[list[list[float]]]:
    """Scores mapped by (s - lo) / (hi - lo), lo = min(1, scores), hi = max(0, scores)."""
    lo, hi = 1.0, 0.0
    for dets in all_dets:
        for d in dets:
            lo, hi = min(lo, d[4]), max(hi, d[4])
    out = []
    for dets in all_dets:
        out.append([d[:4] + [1.0 if hi == lo else (d[4] - lo) / (hi - lo)] for d in dets])
    return out


def _best_faces(dets: list[list[float]], faces: list[list[float]]) -> list[tuple[float, int, float]]:
    """Per prediction in descending score order: (score, highest-IoU face (first on ties), IoU)."""
    order = sorted(range(len(dets)), key=lambda k: -dets[k][4])   # sorted() is stable
    rows = []
    for k in order:
        best, best_iou = 0, -1.0
        for j, face in enumerate(faces):
            iou = _iou(dets[k], face)
            if iou > best_iou:
                best, best_iou = j, iou
        rows.append((dets[k][4], best, best_iou))
    return rows


def _image_counts(rows: list[tuple[float, int, float]], n_faces: int, kept: set[int],
                  iou_thresh: float) -> list[tuple[float, int, int]]:
    """Apply the rules in order: per prediction (score, proposals so far, recalled so far)."""
    state = ["free"] * n_faces
    proposals, recalled, counts = 0, 0, []
    for score, best, best_iou in rows:
        is_proposal = True
        if best_iou >= iou_thresh:
            if best not in kept:
                is_proposal = False
            elif state[best] == "free":
                state[best] = "recalled"
                recalled += 1
        proposals += is_proposal
        counts.append((score, proposals, recalled))
    return counts


def _add_threshold_counts(counts: list[tuple[float, int, int]], levels: list[float],
                          proposals: list[int], recalled: list[int]) -> None:
    """Add, per threshold, the counts at the last prediction scoring >= it (scores descend)."""
    last = -1
    for t, level in enumerate(levels):
        while last + 1 < len(counts) and counts[last + 1][0] >= level:
            last += 1
        if last >= 0:
            proposals[t] += counts[last][1]
            recalled[t] += counts[last][2]


def _ap(recall: list[float], precision: list[float]) -> float:
    rec = [0.0] + recall + [1.0]
    prec = [0.0] + precision + [0.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    return sum((rec[i + 1] - rec[i]) * prec[i + 1] for i in range(len(rec) - 1) if rec[i + 1] != rec[i])


def reference_evaluate(predictions: dict, gt: WiderGroundTruth, iou_thresh: float = 0.5) -> dict:
    """``{setting: (ap, precision [1000], recall [1000])}`` for every setting of ``gt``.

    predictions: ``{event: {image: [k, 5] (x, y, w, h, score)}}``; images absent from it have no
    predictions; every prediction handed in enters the score normalisation.
    """
    images = [(e, i) for e in range(len(gt.events)) for i in range(len(gt.images[e]))]
    in_gt = {(gt.events[e], gt.images[e][i]) for e, i in images}
    paired = [[list(map(float, d)) for d in predictions.get(gt.events[e], {}).get(gt.images[e][i], [])]
              for e, i in images]
    outside = [[list(map(float, d)) for d in dets] for event, per_image in predictions.items()
               for name, dets in per_image.items() if (event, name) not in in_gt]
    paired = _normalised(paired + outside)[:len(images)]
    levels = [1 - (t + 1) / THRESHOLDS for t in range(THRESHOLDS)]
    matched = [_best_faces(dets, [list(map(float, b)) for b in gt.boxes[e][i]]) if len(gt.boxes[e][i]) else []
               for (e, i), dets in zip(images, paired)]
    results = {}
    for setting, keep in gt.keep.items():
        proposals = [0] * THRESHOLDS
        recalled = [0] * THRESHOLDS
        faces_kept = 0
        for (e, i), rows in zip(images, matched):
            kept = {int(j) - 1 for j in keep[e][i]}
            faces_kept += len(kept)
            if rows:      # images without faces or without predictions add nothing
                counts = _image_counts(rows, len(gt.boxes[e][i]), kept, iou_thresh)
                _add_threshold_counts(counts, levels, proposals, recalled)
        precision = [r / p if p else 1.0 for r, p in zip(recalled, proposals)]
        recall = [r / faces_kept for r in recalled]
        results[setting] = (_ap(recall, precision), np.array(precision), np.array(recall))
    return results
