"""WIDER FACE validation AP, exactly as the official evaluation computes it.

The protocol is the one of the official Python evaluation (the port shipped with the public
RetinaFace code, ``widerface_evaluate/evaluation.py``), so the numbers compare with papers:

1. Ground truth: ``wider_face_val.mat`` (faces ``x, y, w, h`` per event and image) and
   ``wider_{easy,medium,hard}_val.mat`` (1-based indices of the faces *kept* in each setting; the
   others are "ignore"), read by ``data.wider_gt.load_wider_gt``.
2. Scores are min-max normalised over every prediction handed in. As in the official code the
   running minimum starts at 1 and the maximum at 0, i.e. ``lo = min(1, scores)``,
   ``hi = max(0, scores)``: the usual min-max for scores in [0, 1] (every softmax detector).
3. Boxes become ``x2 = x + w, y2 = y + h`` and IoU uses the +1 pixel convention
   (``width = x2 - x1 + 1``).
4. Per image, predictions in descending score order; each goes to its highest-IoU face (the first
   one on a tie). At IoU >= 0.5 an ignored face makes the prediction neither a true nor a false
   positive; a kept face not yet recalled becomes recalled; a recalled one leaves the prediction a
   false positive. Below 0.5 the prediction is a false positive.
5. 1000 thresholds ``1 - (t + 1) / 1000``; at each, the proposals (predictions that are not
   ignored) and the recalled faces among the predictions scoring >= it, summed over images.
   Faces of images without predictions still count.
6. precision = recalled / proposals, recall = recalled / kept faces; VOC all-point AP.

Differences from the official script, none of which changes the AP of a normal submission:

- It keeps each file's order; the protocol (and this module) sorts per image by descending score
  (stable: ties keep file order). Detector output is already sorted, and then both agree.
- Where no prediction passes a threshold, precision is 0/0 (NaN) there; we report 1 ("no
  proposal, no false positive"). Such thresholds have recall 0, and the AP never reads them.
- All scores equal (``hi == lo``): the official division by zero yields NaN; here every
  prediction gets normalised score 1, so the curve is one operating point and
  AP = precision x recall there. A warning says so.
- No predictions at all: the official script fails; here AP is 0 and a warning says so.
- A setting that keeps no face (recall undefined) raises ``ValueError`` instead of a NaN AP.

Kept from the official script: predictions on an image without ground-truth faces are skipped
(they count as neither true nor false positives), and normalisation runs over every prediction
handed in, including images that are not in the ground truth.

Speed: the face a prediction goes to does not depend on the matching state, so a face is
recalled by its first matching prediction; the proposal and recall counts at all 1000 thresholds
are then counts of scores >= threshold over the whole set (one sort, one ``searchsorted``).

CLI: ``python -m utils.evaluate --pred DIR --gt DIR [--json] [--plot PR.png]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.wider_gt import SUBSETS, WiderGroundTruth, load_wider_gt
from utils.wider_predictions import read_predictions, write_predictions

__all__ = ["WiderResult", "evaluate", "read_predictions", "write_predictions", "normalise_scores",
           "thresholds", "voc_ap", "IOU_THRESHOLD", "THRESHOLD_COUNT"]

IOU_THRESHOLD = 0.5          # a prediction matches a face at IoU >= this
THRESHOLD_COUNT = 1000       # score thresholds 1 - (t + 1) / 1000, t = 0..999
OFFICIAL_MIN_START = 1.0     # the official running minimum of the scores starts here ...
OFFICIAL_MAX_START = 0.0     # ... and the running maximum here
PIXEL = 1.0                  # +1 pixel convention: a box spans x2 - x1 + 1 pixels
NAMES_SHOWN = 3              # how many names a warning lists


@dataclass
class WiderResult:
    """AP and precision-recall curves per setting, plus what was (not) matched.

    ap:        ``{'easy': AP, 'medium': ..., 'hard': ...}``.
    curves:    ``{setting: (precision [1000], recall [1000])}`` at ``thresholds()``.
    num_faces: kept faces per setting (the recall denominator).
    num_predictions: predictions on ground-truth images that have faces (the ones evaluated).
    missing_images:  ``'event/image'`` of ground-truth images without predictions (counted as
                     images with no detections).
    unknown_images:  ``'event/image'`` of predictions for images not in the ground truth (not
                     evaluated; their scores still enter the normalisation, as officially).
    warnings:  every warning ``evaluate`` raised, as text.
    """

    ap: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    num_faces: dict[str, int]
    num_predictions: int
    missing_images: list[str] = field(default_factory=list)
    unknown_images: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def thresholds() -> np.ndarray:
    """The official score thresholds, float64 [1000]: ``1 - (t + 1) / 1000``, descending."""
    return 1.0 - (np.arange(THRESHOLD_COUNT) + 1.0) / THRESHOLD_COUNT


def _as_detections(dets, where: str) -> np.ndarray:
    """float64 [k, 5] (x, y, w, h, score) copy of ``dets``; ValueError naming ``where`` otherwise."""
    arr = np.array(dets, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 5)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"{where}: predictions must be [k, 5] (x, y, w, h, score), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: predictions contain NaN or infinite values")
    return arr


def normalise_scores(scores: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """Official min-max normalisation of score arrays taken together.

    scores: float64 [k_i] per image. Returns the normalised arrays and whether all scores were
    equal (then every normalised score is 1; see the module docstring).
    """
    non_empty = [s for s in scores if s.size]
    if not non_empty:
        return [s.copy() for s in scores], False
    lo = min(OFFICIAL_MIN_START, min(float(s.min()) for s in non_empty))
    hi = max(OFFICIAL_MAX_START, max(float(s.max()) for s in non_empty))
    if hi == lo:
        return [np.ones_like(s) for s in scores], True
    return [(s - lo) / (hi - lo) for s in scores], False


def _xywh_to_corners(boxes: np.ndarray) -> np.ndarray:
    """[n, 4] (x, y, w, h) -> [n, 4] (x1, y1, x2, y2) with x2 = x + w, as officially."""
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], axis=1)


def _iou_plus_one(pred: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """IoU [P, G] of pred [P, 4] and faces [G, 4], both (x1, y1, x2, y2), +1 pixel convention.

    The float64 operations are those of the official Cython ``bbox_overlaps`` in the same order,
    so IoU ties and values at the 0.5 threshold come out identical (``torchvision.ops.box_iou`` on
    boxes grown by 1 rounds differently, and importing torch would slow the CLI down).
    """
    pred_area = (pred[:, 2] - pred[:, 0] + PIXEL) * (pred[:, 3] - pred[:, 1] + PIXEL)        # [P]
    face_area = (faces[:, 2] - faces[:, 0] + PIXEL) * (faces[:, 3] - faces[:, 1] + PIXEL)    # [G]
    iw = (np.minimum(pred[:, None, 2], faces[None, :, 2])
          - np.maximum(pred[:, None, 0], faces[None, :, 0]) + PIXEL)                         # [P, G]
    ih = (np.minimum(pred[:, None, 3], faces[None, :, 3])
          - np.maximum(pred[:, None, 1], faces[None, :, 1]) + PIXEL)                         # [P, G]
    inter = iw * ih
    overlap = (iw > 0) & (ih > 0)
    union = np.where(overlap, pred_area[:, None] + face_area[None, :] - inter, 1.0)
    return np.where(overlap, inter / union, 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope, recall from 0 to 1.

    recall, precision: [T], recall non-decreasing.
    """
    rec = np.concatenate(([0.0], recall, [1.0]))
    prec = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(prec[::-1])[::-1]     # best precision at this recall or more
    steps = np.flatnonzero(rec[1:] != rec[:-1])
    return float(np.sum((rec[steps + 1] - rec[steps]) * envelope[steps + 1]))


def _count_at_thresholds(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """How many of ``scores`` are >= each of ``levels``: int64 [len(levels)]."""
    return scores.size - np.searchsorted(np.sort(scores), levels, side="left")


def _match_images(gt: WiderGroundTruth, dets: list[np.ndarray], iou_thresh: float):
    """Setting-independent matching of every image, concatenated over images.

    dets: per flat ground-truth image, float64 [k, 5] with normalised scores.
    Returns score [N] and face [N] (global face index, see ``_kept_mask``; -1 when the best IoU
    is below ``iou_thresh``), predictions in per-image descending score order.
    """
    scores, faces = [], []
    offset, flat = 0, 0
    for e in range(len(gt.events)):
        for boxes in gt.boxes[e]:
            pred = dets[flat]
            flat += 1
            if len(boxes) and len(pred):           # officially, images without faces are skipped
                order = np.argsort(-pred[:, 4], kind="stable")
                pred = pred[order]
                iou = _iou_plus_one(_xywh_to_corners(pred[:, :4]), _xywh_to_corners(boxes))
                best = iou.argmax(axis=1)
                matched = iou[np.arange(len(pred)), best] >= iou_thresh
                scores.append(pred[:, 4])
                faces.append(np.where(matched, best + offset, -1))
            offset += len(boxes)
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(scores), np.concatenate(faces)


def _curve(scores: np.ndarray, faces: np.ndarray, kept: np.ndarray, levels: np.ndarray):
    """Precision [T] and recall [T] of one setting; kept: bool [F] per global face."""
    on_face = faces >= 0
    on_kept = on_face.copy()
    on_kept[on_face] = kept[faces[on_face]]
    proposal = ~(on_face & ~on_kept)                       # matched to an ignored face: neither
    _, first = np.unique(faces[on_kept], return_index=True)  # first (best-scored) match recalls
    recalled = _count_at_thresholds(scores[on_kept][first], levels)
    proposals = _count_at_thresholds(scores[proposal], levels)
    precision = np.where(proposals > 0, recalled / np.maximum(proposals, 1), 1.0)
    return precision, recalled / kept.sum()


def _kept_mask(gt: WiderGroundTruth, setting: str) -> np.ndarray:
    """bool [F]: which faces ``setting`` keeps, faces numbered event by event, image by image."""
    sizes = [len(boxes) for per_event in gt.boxes for boxes in per_event]
    offsets = np.cumsum([0] + sizes[:-1])
    kept = np.zeros(sum(sizes), dtype=bool)
    kept_per_image = [idx for per_event in gt.keep[setting] for idx in per_event]
    if kept_per_image:
        index = np.concatenate([offset + np.asarray(idx, dtype=np.int64) - 1
                                for offset, idx in zip(offsets, kept_per_image)])
        kept[index] = True
    if not kept.any():
        raise ValueError(f"the ground truth keeps no face in the {setting!r} setting; "
                         f"its recall (and AP) is undefined")
    return kept


def _pair_with_ground_truth(predictions, gt: WiderGroundTruth):
    """Per flat GT image its detections (empty where absent), missing and unknown image names."""
    dets, missing, known = [], [], set()
    for e, event in enumerate(gt.events):
        per_image = predictions.get(event, {})
        for name in gt.images[e]:
            known.add((event, name))
            if name in per_image:
                dets.append(_as_detections(per_image[name], f"{event}/{name}"))
            else:
                missing.append(f"{event}/{name}")
                dets.append(np.zeros((0, 5)))
    unknown = [(event, name) for event, per_image in predictions.items() for name in per_image
               if (event, name) not in known]
    extra = [_as_detections(predictions[ev][name], f"{ev}/{name}") for ev, name in unknown]
    return dets, missing, [f"{ev}/{name}" for ev, name in unknown], extra


def _listed(names: list[str]) -> str:
    return ", ".join(names[:NAMES_SHOWN]) + (", ..." if len(names) > NAMES_SHOWN else "")


def evaluate(predictions: dict[str, dict[str, np.ndarray]], gt: WiderGroundTruth | str | Path,
             iou_thresh: float = IOU_THRESHOLD) -> WiderResult:
    """WIDER FACE AP of ``predictions`` on ``gt`` for every setting ``gt`` keeps.

    predictions: ``{event: {image name: [k, 5] (x, y, w, h, score)}}`` as ``read_predictions``
        returns (pixels, any score scale); not modified.
    gt: a ``WiderGroundTruth`` or a folder holding the four official ``.mat`` files.
    iou_thresh: in (0, 1]; 0.5 is the official value.
    """
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"iou_thresh must be in (0, 1], got {iou_thresh}")
    if not isinstance(gt, WiderGroundTruth):
        gt = load_wider_gt(gt)
    settings = [s for s in SUBSETS if s in gt.keep]
    if not settings:
        raise ValueError(f"the ground truth keeps no setting; expected some of {SUBSETS}")
    kept_faces = {setting: _kept_mask(gt, setting) for setting in settings}
    dets, missing, unknown, extra = _pair_with_ground_truth(predictions, gt)
    notes = []
    if missing:
        notes.append(f"{len(missing)} of {gt.num_images()} ground-truth images have no predictions "
                     f"(counted as images without detections): {_listed(missing)}")
    if unknown:
        notes.append(f"{len(unknown)} prediction files name images that are not in the ground "
                     f"truth (not evaluated): {_listed(unknown)}")
    normalised, all_equal = normalise_scores([d[:, 4] for d in dets + extra])
    if all_equal:
        notes.append("all prediction scores are equal: every prediction is counted at every "
                     "threshold, so the curve is a single point (AP = precision x recall)")
    dets = [np.concatenate([d[:, :4], s[:, None]], axis=1) for d, s in zip(dets, normalised)]
    if not any(len(d) for d in dets):
        notes.append("no predictions on the ground-truth images: AP is 0")
    scores, faces = _match_images(gt, dets, iou_thresh)
    levels = thresholds()
    result = WiderResult({}, {}, {}, num_predictions=int(scores.size), missing_images=missing,
                         unknown_images=unknown, warnings=notes)
    for setting, kept in kept_faces.items():
        precision, recall = _curve(scores, faces, kept, levels)
        result.ap[setting] = voc_ap(recall, precision)
        result.curves[setting] = (precision, recall)
        result.num_faces[setting] = int(kept.sum())
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.evaluate",
                                     description="WIDER FACE validation AP (official protocol).")
    parser.add_argument("--pred", required=True, help="submission folder: EVENT/IMAGE.txt files")
    parser.add_argument("--gt", required=True, help="folder with wider_face_val.mat and "
                        "wider_{easy,medium,hard}_val.mat")
    parser.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="IoU threshold (0.5)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the APs")
    parser.add_argument("--plot", metavar="PR.png", help="draw the precision-recall curves here")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate(read_predictions(args.pred), args.gt, args.iou)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"evaluated {result.num_predictions} predictions; faces kept: "
          + ", ".join(f"{s} {n}" for s, n in result.num_faces.items()), file=sys.stderr)
    for setting, ap in result.ap.items():
        print(f"{setting.capitalize() + ' AP:':<11} {ap:.6f}")
    if args.plot:
        from utils.viz import plot_pr_curves  # matplotlib only when a plot is asked for
        plot_pr_curves(result.curves, result.ap, args.plot)
        print(f"PR curves written to {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.ap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
