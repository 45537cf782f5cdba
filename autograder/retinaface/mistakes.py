"""The classic mistakes of the RetinaFace homework, written out as the wrong answers they give, so a
failed check can say which mistake an output fits instead of only quoting numbers.

``diagnose(got, mistakes)`` returns the hint of the first (wrong answer, hint) pair ``got`` matches.
Boxes are (x1, y1, x2, y2); every function here is a plain loop or a direct formula in float64.
"""
from __future__ import annotations

import torch
import torchvision

from autograder.feedback import DEFAULT_ATOL, DEFAULT_RTOL

PLUS_ONE_HINT = ("your widths and heights add one pixel (x2 - x1 + 1): that is the pixel-index "
                 "convention of the old py_cpu_nms; this kit's boxes are continuous, so a width is "
                 "x2 - x1 (see 'Which pixel convention?' at the top of the notebook)")


def diagnose(got, mistakes) -> str | None:
    """The hint of the first mistake whose wrong answer ``got`` equals (within the default
    tolerances), or None. A wrong answer equal to ``mistakes``' right answer is never reported:
    pass only answers that differ from it."""
    if not isinstance(got, torch.Tensor):
        return None
    for wrong, hint in mistakes:
        if (got.shape == wrong.shape and wrong.numel() and got.dtype.is_floating_point == wrong.dtype.is_floating_point
                and torch.allclose(got.detach().cpu().double(), wrong.double(), rtol=DEFAULT_RTOL,
                                   atol=DEFAULT_ATOL)):
            return hint
    return None


def _sides(boxes: torch.Tensor, plus_one: bool) -> tuple[torch.Tensor, torch.Tensor]:
    extra = 1.0 if plus_one else 0.0
    return boxes[:, 2] - boxes[:, 0] + extra, boxes[:, 3] - boxes[:, 1] + extra


def intersections(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """[A, B] intersection areas; ``plus_one`` adds a pixel to each side (the classic mistake)."""
    a, b = a.double(), b.double()
    extra = 1.0 if plus_one else 0.0
    w = (torch.min(a[:, None, 2], b[None, :, 2]) - torch.max(a[:, None, 0], b[None, :, 0]) + extra).clamp(min=0)
    h = (torch.min(a[:, None, 3], b[None, :, 3]) - torch.max(a[:, None, 1], b[None, :, 1]) + extra).clamp(min=0)
    return w * h


def ious(a: torch.Tensor, b: torch.Tensor, plus_one_inter: bool, plus_one_area: bool) -> torch.Tensor:
    inter = intersections(a, b, plus_one_inter)
    wa, ha = _sides(a.double(), plus_one_area)
    wb, hb = _sides(b.double(), plus_one_area)
    return inter / (wa * ha)[:, None].add((wb * hb)[None, :]).sub(inter)


SELF_IOU_HINT = ("the IoU of a box with itself is {value:.6g} here, not 1: the intersection and the two "
                 "areas must measure a box the same way (a '+1' in only some of them, or a side "
                 "computed differently, gives this)")
ABOVE_ONE_HINT = ("an IoU of {value:.6g} is above 1: the union is smaller than the intersection (the "
                  "areas and the intersection are measured differently, e.g. '+1' in the intersection only)")


def iou_property_hint(got, a: torch.Tensor, b: torch.Tensor) -> str | None:
    """jaccard's mistakes named from what the answer is: a box with itself not at IoU 1, an IoU above 1."""
    if not isinstance(got, torch.Tensor) or got.shape != (len(a), len(b)) or got.numel() == 0:
        return None
    got = got.detach().cpu().double()
    if bool((got > 1 + 1e-6).any()):
        return ABOVE_ONE_HINT.format(value=float(got.max()))
    same = (a[:, None, :].double() == b[None, :, :].double()).all(dim=2)
    areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    same &= (areas > 0)[:, None]
    if bool(same.any()):
        values = got[same]
        if bool(((values - 1).abs() > 1e-4).any()):
            return SELF_IOU_HINT.format(value=float(values[(values - 1).abs().argmax()]))
    return None


def pairwise_mistakes(unit: str, a: torch.Tensor, b: torch.Tensor) -> list:
    """intersect / jaccard with "+1" pixel sides, as (wrong answer in a's dtype, hint)."""
    if unit == "intersect":
        return [(intersections(a, b, True).to(a.dtype), PLUS_ONE_HINT)]
    return [(ious(a, b, *flags).to(a.dtype), PLUS_ONE_HINT) for flags in ((False, True), (True, True))]


# -- NMS -------------------------------------------------------------------------------------------
def greedy_nms(dets: torch.Tensor, thresh: float, sort: bool = True, suppress_equal: bool = False,
               plus_one: bool = False) -> torch.Tensor:
    """Kept indices of greedy NMS, one box at a time. The flags give the classic mistakes: no sort
    by score (boxes taken in input order), suppressing IoU >= thresh, "+1" pixel sides."""
    boxes = dets[:, :4].double()
    order = torch.argsort(dets[:, 4], descending=True, stable=True).tolist() if sort else list(range(len(dets)))
    iou = ious(boxes, boxes, plus_one, plus_one)
    keep, removed = [], set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        for j in order:
            if j not in removed and j != i and (iou[i, j] >= thresh if suppress_equal else iou[i, j] > thresh):
                removed.add(j)
    return torch.tensor(keep, dtype=torch.long)


SUPPRESS_EQUAL_HINT = ("a box with IoU exactly equal to thresh was suppressed: suppress only IoU > thresh "
                       "(as torchvision.ops.nms does; thresh 0 keeps disjoint boxes)")
NMS_MISTAKES = (
    ({"sort": False}, "the boxes were not sorted by score first: greedy NMS visits the highest score "
                      "first (argsort descending, stable), so a weak box never suppresses a stronger one"),
    ({"suppress_equal": True}, SUPPRESS_EQUAL_HINT),
    ({"plus_one": True}, PLUS_ONE_HINT),
)


NOT_DESCENDING_HINT = ("the kept boxes are not in descending score order ({how}): greedy NMS visits the "
                       "boxes by score, highest first (argsort descending, stable), and returns the kept "
                       "indices in that order")


def nms_property_hint(got, dets: torch.Tensor, thresh: float, right: torch.Tensor) -> str | None:
    """A mistake named from what the answer is, whatever code gave it: kept scores that are not
    descending (an ascending sort, no sort); a dropped box whose IoU with a kept one equals thresh."""
    if not isinstance(got, torch.Tensor) or got.dim() != 1 or got.dtype.is_floating_point or got.numel() == 0:
        return None
    got = got.cpu().long()
    if got.min() < 0 or got.max() >= len(dets):
        return None
    scores = dets[got, 4].double()
    if len(scores) > 1 and bool((scores[1:] > scores[:-1]).any()):
        how = "they ascend" if bool((scores[1:] >= scores[:-1]).all()) else "they are in no order"
        return NOT_DESCENDING_HINT.format(how=how)
    dropped = sorted(set(right.tolist()) - set(got.tolist()))
    if dropped:
        iou = ious(dets[:, :4].double(), dets[:, :4].double(), False, False)
        for j in dropped:
            if any(abs(float(iou[i, j]) - thresh) < 1e-9 and dets[i, 4] >= dets[j, 4] for i in got.tolist()):
                return SUPPRESS_EQUAL_HINT
    return None


def nms_hint(got, dets: torch.Tensor, thresh: float, right: torch.Tensor) -> str | None:
    """The classic mistake ``got`` is exactly (its fuller explanation), else one named from what the
    answer is (so variants are named too)."""
    if not isinstance(got, torch.Tensor) or len(dets) == 0:
        return None
    for flags, hint in NMS_MISTAKES:
        wrong = greedy_nms(dets, thresh, **flags)
        if not torch.equal(wrong, right) and got.shape == wrong.shape and torch.equal(got.cpu().long(), wrong):
            return hint
    return nms_property_hint(got, dets, thresh, right)


# -- losses ----------------------------------------------------------------------------------------
FOCAL_ALPHA_HINT = ("alpha weights the wrong class: alpha multiplies the positives' term (y = 1) and "
                    "1 - alpha the negatives' (alpha_t = alpha·y + (1 - alpha)·(1 - y))")


def focal_hint(got, inputs: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float,
               reduction: str) -> str | None:
    if alpha < 0 or alpha == 0.5:
        return None
    swapped = torchvision.ops.sigmoid_focal_loss(inputs.double(), targets.double(), alpha=1 - alpha,
                                                 gamma=gamma, reduction=reduction)
    return diagnose(got, [(swapped.to(inputs.dtype), FOCAL_ALPHA_HINT)])


def batch_normalised(want: torch.Tensor, count: int, batch: int) -> torch.Tensor:
    """A loss divided by ``count`` (the positives) re-divided by ``batch`` (or any other count) instead."""
    return want * max(count, 1) / batch


BATCH_HINT = ("{part} is divided by the batch size; divide the summed loss by N, the number of "
              "positive anchors in the whole batch ({what}), so that images with many faces do not "
              "weigh more per face")
WRONG_COUNT_HINT = ("{part} is divided by {name} ({value}); divide the summed loss by N, the number of "
                    "positive anchors in the whole batch ({what})")
# the counts a loss is wrongly divided by: (key of multibox_oracle's counts, words); the batch size has BATCH_HINT
WRONG_COUNTS = (("anchors", "the number of anchors per image"),
                ("batch_anchors", "the number of anchors in the whole batch (B x P)"))
