"""Box coding and SSD matching for DSFD (given).

Boxes ``(x1, y1, x2, y2)`` and priors ``(cx, cy, w, h)`` are normalised to the image. Matching is
the public code's ``match_ssd``: every anchor takes the face it overlaps most; it is a positive when
that IoU >= threshold; every face's best anchor is forced positive (a later face wins an anchor that
two faces force). Encoding is SSD's with variances (0.1, 0.2).
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

BACKGROUND = -1          # matched index of an anchor that matches no face


def point_form(priors: torch.Tensor) -> torch.Tensor:
    """[P, 4] (cx, cy, w, h) -> [P, 4] (x1, y1, x2, y2)."""
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)


def encode(matched: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """[P, 4] boxes (x1, y1, x2, y2) against [P, 4] priors -> [P, 4] regression targets."""
    centre = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / variances[1]
    return torch.cat([centre, size], dim=1)


def decode(loc: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """[P, 4] regressions and priors -> [P, 4] boxes (x1, y1, x2, y2)."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def overlaps(truths: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """[G, 4] faces (x1, y1, x2, y2), [P, 4] priors (cx, cy, w, h) -> [G, P] IoU."""
    return box_iou(truths, point_form(priors))


def match_anchors(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """[G, P] IoU -> [P] long: the face each anchor regresses to, ``BACKGROUND`` (-1) for negatives.
    Anchors whose best IoU is below ``threshold`` are negatives, except every face's best anchor."""
    num_faces, num_priors = iou.shape
    if num_faces == 0:
        return torch.full((num_priors,), BACKGROUND, dtype=torch.long, device=iou.device)
    best_truth_iou, best_truth = iou.max(dim=0)                      # [P]
    best_prior = iou.argmax(dim=1)                                   # [G]
    assigned = torch.where(best_truth_iou >= threshold, best_truth, torch.full_like(best_truth, BACKGROUND))
    for face in range(num_faces):  # in order, so a later face wins a shared best anchor
        assigned[best_prior[face]] = face
    return assigned
