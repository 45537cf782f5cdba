"""Graded units of the Face R-FCN homework, Part 3: proposals, anchor and proposal targets, the
losses and OHEM. Sampling units get a seed; the call builds ``torch.Generator().manual_seed(seed)``."""
from __future__ import annotations

import torch

from autograder.rfcn.inputs import clustered_boxes, faces, gen
from autograder.units import Case, ScoringSide, Unit

oracles = ScoringSide("autograder.rfcn.oracles")  # builds inputs; never imported by the worker

TARGETS_NB = "3_targets_losses.ipynb"
FACE_ANCHORS = {"base_size": 16, "ratios": (1.0,), "scales": (1, 2, 4, 8, 16)}
IMAGE = (96, 128)  # H, W of the small test image: a 6 x 8 map at stride 16
ROI_STDS = (0.1, 0.1, 0.2, 0.2)


def grid_anchors(anchor_args: dict = FACE_ANCHORS, size=IMAGE, stride: int = 16) -> torch.Tensor:
    return oracles.shift_anchors(oracles.generate_anchors(**anchor_args), size[0] // stride, size[1] // stride,
                                 stride)


# -- proposal_layer --------------------------------------------------------------------------------------
def _proposal_inputs(batch: int, seed: int, pre: int, post: int, min_size: float, ties: bool = False,
                     dtype=torch.float32) -> dict:
    anchors = grid_anchors().to(dtype)
    g = gen(seed)
    logits = torch.randn(batch, len(anchors), 2, generator=g, dtype=dtype) * 2
    if ties:
        logits = torch.round(logits * 2) / 2
    return {"rpn_logits": logits, "rpn_deltas": torch.randn(batch, len(anchors), 4, generator=g, dtype=dtype) * 0.2,
            "anchors": anchors, "image_size": IMAGE, "pre_nms_top_n": pre, "post_nms_top_n": post,
            "nms_thresh": 0.7, "min_size": min_size}


PROPOSAL_PUBLIC = ("2 images, 240 anchors, pre 100, post 30, min size 4",
                   "tied scores (logits on a 0.5 grid), pre 200, post 50",
                   "min size 40 drops most boxes")
PROPOSAL_HIDDEN = ("3 images, pre 240 (all), post 100, float64 (hidden)",)
PROPOSAL_CASES = (
    Case(PROPOSAL_PUBLIC[0], lambda d: _proposal_inputs(2, 200, 100, 30, 4.0)),
    Case(PROPOSAL_PUBLIC[1], lambda d: _proposal_inputs(2, 201, 200, 50, 0.0, ties=True)),
    Case(PROPOSAL_PUBLIC[2], lambda d: _proposal_inputs(1, 202, 100, 30, 40.0)),
    Case(PROPOSAL_HIDDEN[0], lambda d: _proposal_inputs(3, 203, 240, 100, 2.0, dtype=torch.float64), public=False),
)


def _run_proposals(ns, x, device):
    return ns.proposal_layer(x["rpn_logits"], x["rpn_deltas"], x["anchors"], x["image_size"], x["pre_nms_top_n"],
                             x["post_nms_top_n"], x["nms_thresh"], x["min_size"])


# -- anchor_target_layer ---------------------------------------------------------------------------------
NO_SAMPLING = 10 ** 6   # a batch larger than the anchors: no subsampling, labels are deterministic


def _anchor_inputs(face_boxes, seed: int, batch: int, anchor_args: dict = FACE_ANCHORS) -> dict:
    return {"anchors": grid_anchors(anchor_args), "gt_boxes": face_boxes.reshape(-1, 4), "image_size": IMAGE,
            "seed": seed, "batch_size": batch}


# 32 px anchors only: inside anchors cover x in [8, 119]; a face at x 121..127 overlaps none of them
UNREACHABLE = {"base_size": 16, "ratios": (1.0,), "scales": (2,)}
ZERO_OVERLAP_CASE = "a face that overlaps no inside anchor (its best IoU is 0)"
TIED_BEST_CASE = "a face halfway between two anchors (both tie for its best IoU, 0.59)"
ANCHOR_RULES = ("6 faces, no subsampling: the IoU rules", ZERO_OVERLAP_CASE, "no faces, no subsampling",
                TIED_BEST_CASE)
ANCHOR_SAMPLED = ("12 faces, 32 sampled (seed 0)", "no faces, 64 sampled (seed 1)")
ANCHOR_HIDDEN = ("10 faces, no subsampling (hidden)", "8 faces, 48 sampled (seed 2, hidden)")
ANCHOR_CASES = (
    Case(ANCHOR_RULES[0], lambda d: _anchor_inputs(faces(6, 96.0, 210), 0, NO_SAMPLING)),
    Case(ANCHOR_RULES[1], lambda d: _anchor_inputs(torch.tensor([[40.0, 30.0, 70.0, 62.0],
                                                                 [121.0, 40.0, 127.0, 50.0]]), 0, NO_SAMPLING,
                                                   UNREACHABLE)),
    Case(ANCHOR_RULES[2], lambda d: _anchor_inputs(torch.zeros(0, 4), 0, NO_SAMPLING)),
    Case(TIED_BEST_CASE, lambda d: _anchor_inputs(torch.tensor([[16.0, 24.0, 47.0, 55.0]]), 0, NO_SAMPLING,
                                                  UNREACHABLE)),
    Case(ANCHOR_SAMPLED[0], lambda d: _anchor_inputs(faces(12, 96.0, 212, 12.0, 40.0), 0, 32)),
    Case(ANCHOR_SAMPLED[1], lambda d: _anchor_inputs(torch.zeros(0, 4), 1, 64)),
    Case(ANCHOR_HIDDEN[0], lambda d: _anchor_inputs(faces(10, 96.0, 214), 0, NO_SAMPLING), public=False),
    Case(ANCHOR_HIDDEN[1], lambda d: _anchor_inputs(faces(8, 96.0, 216, 10.0, 30.0), 2, 48), public=False),
)


def _run_anchor_targets(ns, x, device):
    return ns.anchor_target_layer(x["anchors"], x["gt_boxes"], x["image_size"],
                                  torch.Generator().manual_seed(x["seed"]), x["batch_size"])


# -- proposal_target_layer -------------------------------------------------------------------------------
def _roi_inputs(num_faces: int, num_rois: int, seed: int, batch, dtype=torch.float32) -> dict:
    gt = faces(num_faces, 200.0, seed, 12.0, 60.0)
    g = gen(seed + 1)
    if num_faces:
        pick = torch.randint(0, num_faces, (num_rois,), generator=g)
        size = (gt[pick, 2:] - gt[pick, :2]).repeat(1, 2)
        rois = gt[pick] + torch.randn(num_rois, 4, generator=g) * size * 0.25
    else:
        rois = torch.rand(num_rois, 2, generator=g) * 150
        rois = torch.cat([rois, rois + 10 + torch.rand(num_rois, 2, generator=g) * 40], 1)
    rois = torch.cat([torch.min(rois[:, :2], rois[:, 2:] - 2), rois[:, 2:]], 1)
    return {"rois": rois.to(dtype), "gt_boxes": gt.to(dtype), "seed": seed, "batch_size": batch}


ROI_PUBLIC = ("5 faces, 300 RoIs, 128 sampled (seed 0)", "batch None: every RoI (for OHEM)",
              "no faces: only backgrounds", "1 face, 40 RoIs: fewer than 128")
ROI_HIDDEN = ("8 faces, 500 RoIs, float64 (hidden)",)
ROI_CASES = (
    Case(ROI_PUBLIC[0], lambda d: _roi_inputs(5, 300, 0, 128)),
    Case(ROI_PUBLIC[1], lambda d: _roi_inputs(4, 150, 1, None)),
    Case(ROI_PUBLIC[2], lambda d: _roi_inputs(0, 200, 2, 128)),
    Case(ROI_PUBLIC[3], lambda d: _roi_inputs(1, 40, 3, 128)),
    Case(ROI_HIDDEN[0], lambda d: _roi_inputs(8, 500, 4, 128, torch.float64), public=False),
)


def _run_roi_targets(ns, x, device):
    return ns.proposal_target_layer(x["rois"], x["gt_boxes"], torch.Generator().manual_seed(x["seed"]),
                                    x["batch_size"])


# -- smooth_l1, rfcn_loss, ohem_select ------------------------------------------------------------------
def _smooth_inputs(n: int, sigma: float, seed: int, dtype=torch.float32) -> dict:
    x = torch.randn(n, 4, generator=gen(seed), dtype=dtype) * 0.6
    x[0] = torch.tensor([1 / sigma ** 2, -1 / sigma ** 2, 0.0, 2.0], dtype=dtype)  # the boundary itself
    return {"x": x, "sigma": sigma}


SMOOTH_CASES = (
    Case("sigma 3 (RPN), 50 x 4", lambda d: _smooth_inputs(50, 3.0, 230)),
    Case("sigma 1 (head), 50 x 4", lambda d: _smooth_inputs(50, 1.0, 231)),
    Case("sigma 0.5, float64 (hidden)", lambda d: _smooth_inputs(200, 0.5, 232, torch.float64), public=False),
)


def _loss_inputs(batch: int, anchors: int, rois: int, seed: int, dtype=torch.float32, positives=True) -> dict:
    g = gen(seed)
    rpn_labels = torch.randint(-1, 2 if positives else 1, (batch, anchors), generator=g)
    roi_labels = torch.randint(0, 2 if positives else 1, (rois,), generator=g)
    return {"rpn_logits": torch.randn(batch, anchors, 2, generator=g, dtype=dtype),
            "rpn_deltas": torch.randn(batch, anchors, 4, generator=g, dtype=dtype) * 0.3,
            "rpn_labels": rpn_labels,
            "rpn_targets": torch.randn(batch, anchors, 4, generator=g, dtype=dtype) * 0.3,
            "cls_logits": torch.randn(rois, 2, generator=g, dtype=dtype),
            "box_deltas": torch.randn(rois, 4, generator=g, dtype=dtype),
            "roi_labels": roi_labels, "roi_targets": torch.randn(rois, 4, generator=g, dtype=dtype)}


LOSS_PUBLIC = ("2 images, 60 anchors, 20 RoIs", "no positives anywhere", "no RoIs")
LOSS_CASES = (
    Case(LOSS_PUBLIC[0], lambda d: _loss_inputs(2, 60, 20, 240)),
    Case(LOSS_PUBLIC[1], lambda d: _loss_inputs(1, 40, 10, 241, positives=False)),
    Case(LOSS_PUBLIC[2], lambda d: _loss_inputs(2, 30, 0, 242)),
    Case("3 images, 200 anchors, 64 RoIs, float64 (hidden)", lambda d: _loss_inputs(3, 200, 64, 243, torch.float64),
         public=False),
)

LOSS_KEYS = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")


def _run_loss(ns, x, device):
    return ns.rfcn_loss(**x)


def _ohem_inputs(n: int, batch: int, seed: int, dtype=torch.float32) -> dict:
    boxes, _ = clustered_boxes(n, seed)
    x = _loss_inputs(1, 1, n, seed + 1, dtype)
    return {"cls_logits": x["cls_logits"] * 2, "box_deltas": x["box_deltas"], "roi_labels": x["roi_labels"],
            "roi_targets": x["roi_targets"], "rois": boxes.to(dtype), "batch_size": batch}


OHEM_PUBLIC = ("120 clustered RoIs, keep 32", "40 RoIs, keep 128 (fewer survive)")
OHEM_CASES = (
    Case(OHEM_PUBLIC[0], lambda d: _ohem_inputs(120, 32, 250)),
    Case(OHEM_PUBLIC[1], lambda d: _ohem_inputs(40, 128, 251)),
    Case("300 RoIs, keep 64, float64 (hidden)", lambda d: _ohem_inputs(300, 64, 252, torch.float64), public=False),
)


def units(nms_ops: tuple[str, ...]) -> tuple[Unit, ...]:
    return (
        Unit("proposal_layer", TARGETS_NB, _run_proposals, PROPOSAL_CASES,
             depends=("bbox_transform_inv", "clip_boxes", "nms_vectorised"), forbidden=nms_ops),
        Unit("anchor_target_layer", TARGETS_NB, _run_anchor_targets, ANCHOR_CASES, depends=("bbox_transform",)),
        Unit("proposal_target_layer", TARGETS_NB, _run_roi_targets, ROI_CASES, depends=("bbox_transform",)),
        Unit("smooth_l1", TARGETS_NB, lambda ns, x, dev: ns.smooth_l1(x["x"], x["sigma"]), SMOOTH_CASES,
             forbidden=("torch.nn.functional.smooth_l1_loss", "torch.nn.functional.huber_loss",
                        "torch.ops.aten.smooth_l1_loss", "torch.ops.aten.huber_loss")),  # torch._C._nn too
        Unit("rfcn_loss", TARGETS_NB, _run_loss, LOSS_CASES, depends=("smooth_l1",)),
        Unit("ohem_select", TARGETS_NB, lambda ns, x, dev: ns.ohem_select(
            x["cls_logits"], x["box_deltas"], x["roi_labels"], x["roi_targets"], x["rois"], x["batch_size"]),
            OHEM_CASES, depends=("smooth_l1", "nms_vectorised"), forbidden=nms_ops),
    )
