"""Graded units of the optional cascade part of the RetinaFace homework
(``7_cascade_regression.ipynb``): step 2's matching against the refined (step-1 decoded) boxes, and
the cascade loss. Refined boxes are made from the cfg_mnet anchors of a small square image by
decoding seeded step-1 offsets, optionally pulled part of the way towards the faces (as a trained
step 1 would move them)."""
from __future__ import annotations

import torch

from autograder.retinaface.cases_loss import loss_inputs, loss_priors
from autograder.retinaface.inputs import random_faces_px
from autograder.units import Case, ScoringSide, Unit
from detector.retinaface.config import cfg_mnet, get_config

oracles = ScoringSide("autograder.retinaface.oracles")  # builds inputs; never imported by the worker

CASCADE_NB = "7_cascade_regression.ipynb"
CASCADE_THRESH = 0.5          # step 2's IoU threshold (step 1: cfg['overlap_thresh'] = 0.35)
VARIANCES = (0.1, 0.2)        # cfg['variance']
IMAGE = 64                    # pixels; 168 cfg_mnet anchors
ABSENT = -1.0                 # flag of a face without landmarks


def refined_boxes(faces: torch.Tensor, priors: torch.Tensor, g: torch.Generator, scale: float,
                  pull: float) -> torch.Tensor:
    """[P, 4] (x1, y1, x2, y2) float64: each anchor decoded with N(0, scale) offsets, then moved by
    ``pull`` of the way towards the face it overlaps best (where that IoU is >= 0.1)."""
    offsets = torch.randn(len(priors), 4, generator=g, dtype=torch.float64) * scale
    boxes = oracles.decode_boxes(offsets, priors.double(), VARIANCES)
    if len(faces) and pull:
        anchors = oracles.decode_boxes(torch.zeros(len(priors), 4, dtype=torch.float64), priors.double(), VARIANCES)
        iou = torch.tensor([[oracles._iou(f, a) for a in anchors.tolist()] for f in faces.tolist()])
        best, face = iou.max(dim=0)                                                  # [P]
        near = (best >= 0.1)[:, None]
        boxes = torch.where(near, boxes + pull * (faces[face] - boxes), boxes)
    return boxes


def cascade_match_inputs(faces_px, image: int = IMAGE, flags=None, threshold: float = CASCADE_THRESH,
                         scale: float = 0.5, pull: float = 0.5, dtype: torch.dtype = torch.float32,
                         seed: int = 0) -> dict:
    """One image's faces (pixels) and the refined boxes of cfg_mnet's anchors for an image x image input."""
    g = torch.Generator().manual_seed(seed)
    faces = torch.tensor(faces_px, dtype=torch.float64).reshape(-1, 4) / image
    flags = torch.ones(len(faces)) if flags is None else torch.tensor(flags, dtype=torch.float32)
    priors = oracles.prior_boxes(get_config("mobilenet0.25"), (image, image)).double()
    return {"threshold": threshold, "truths": faces.to(dtype),
            "refined": refined_boxes(faces, priors, g, scale, pull).to(dtype),
            "variances": list(VARIANCES), "labels": flags}


CM_PULLED = "three faces, refined boxes pulled towards them"
CM_NOT_FORCED = "a small face whose best refined box is below the threshold is not forced"
CM_AT_THRESHOLD = "IoU exactly at the threshold (refined boxes = the anchors)"
CM_EMPTY = "no faces"
MATCH_CASCADE_CASES = (
    Case(CM_PULLED, lambda d: cascade_match_inputs(
        [[6.3, 7.1, 25.8, 29.4], [35.2, 30.7, 60.1, 58.3], [30.4, 3.2, 44.9, 17.6]],
        flags=[1.0, ABSENT, 1.0], seed=90)),
    # The 9 x 9 px face overlaps the 16 px anchors by at most 0.32: step 1 forces its best anchor,
    # step 2 must not.
    Case(CM_NOT_FORCED, lambda d: cascade_match_inputs(
        [[35.2, 30.7, 60.1, 58.3], [45.3, 6.1, 54.4, 15.0]], scale=0.1, pull=0.0, seed=91)),
    # 16 x 8 pixels inside two 16 x 16 anchors: IoU exactly 0.5 in any floating-point format
    Case(CM_AT_THRESHOLD, lambda d: cascade_match_inputs([[12.0, 12.0, 28.0, 20.0]], scale=0.0, pull=0.0,
                                                         seed=92)),
    Case("threshold 0.6 (an argument)", lambda d: cascade_match_inputs(
        [[6.3, 7.1, 25.8, 29.4], [35.2, 30.7, 60.1, 58.3]], threshold=0.6, seed=93)),
    Case(CM_EMPTY, lambda d: cascade_match_inputs([], seed=94)),
    Case("12 random faces on a 160 x 160 image (float64)", lambda d: cascade_match_inputs(random_faces_px(12, 160, 95), image=160,
                                                      dtype=torch.float64, seed=95), public=False),
    Case("8 random faces, large step-1 offsets", lambda d: cascade_match_inputs(random_faces_px(8, 96, 96), image=96, scale=1.5,
                                                      pull=0.3, seed=96), public=False),
)


def _run_match_cascade(ns, x, device):
    return ns.match_cascade(x["threshold"], x["truths"], x["refined"], x["variances"], x["labels"])


# -- the cascade loss ------------------------------------------------------------------------------
def cascade_loss_inputs(seed: int, faces_per_image: tuple[int, ...], landmarks: bool = True,
                        cascade_thresh: float = CASCADE_THRESH) -> dict:
    """The multibox loss cases' inputs plus step 2's offsets [B, P, 4] (loc2)."""
    x = loss_inputs(seed, faces_per_image, landmarks)
    g = torch.Generator().manual_seed(seed + 1000)
    loc2 = torch.randn(len(faces_per_image), len(loss_priors()), 4, generator=g)
    return {**x, "predictions": (*x["predictions"], loc2), "cascade_thresh": cascade_thresh}


def _grads(loss, inputs):
    """d loss / d inputs, zeros for the inputs it does not depend on."""
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        return tuple(torch.zeros_like(p) for p in inputs)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True)
    return tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, inputs))


def _call_cascade_loss(ns, x, dev):
    """(loss_l, loss_c, loss_landm, loss_l2, the gradients of step 1's total w.r.t. loc, conf and
    landm, the gradients of loss_l2 w.r.t. loc (step 1's offsets) and loc2)."""
    priors = x["priors"]
    loc, conf, landm, loc2 = (p.detach().clone().requires_grad_(True) for p in x["predictions"])
    out = ns.CascadeMultiBoxLoss(cfg_mnet, cascade_thresh=x["cascade_thresh"])(
        (loc, conf, landm, loc2), priors, x["targets"])
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise ValueError("CascadeMultiBoxLoss should return (loss_l, loss_c, loss_landm, loss_l2)")
    loss_l, loss_c, loss_landm, loss_l2 = out
    step1 = cfg_mnet["loc_weight"] * loss_l + loss_c + loss_landm
    return (*(torch.as_tensor(v).detach() for v in out), *_grads(step1, (loc, conf, landm)),
            *_grads(loss_l2, (loc, loc2)))


CASCADE_LOSS_CASES = (
    Case("two images with 3 and 1 faces", lambda d: cascade_loss_inputs(80, (3, 1))),
    Case("faces with and without landmarks, step-2 threshold 0.6",
         lambda d: cascade_loss_inputs(81, (4, 2), landmarks=False, cascade_thresh=0.6)),
    Case("an image without faces in the batch", lambda d: cascade_loss_inputs(82, (2, 0, 3))),
    Case("a batch of 4 crowded images", lambda d: cascade_loss_inputs(83, (8, 6, 9, 7)), public=False),
)

BOX_IOU_OPS = ("torchvision.ops.box_iou", "torchvision.ops.boxes.box_iou",
               "torchvision.ops.boxes._box_inter_union")

UNITS = (
    Unit("match_cascade", CASCADE_NB, _run_match_cascade, MATCH_CASCADE_CASES,
         depends=("jaccard", "encode"), forbidden=BOX_IOU_OPS),
    Unit("cascade_loss", CASCADE_NB, _call_cascade_loss, CASCADE_LOSS_CASES,
         depends=("multibox_loss", "match_cascade", "decode")),
)
