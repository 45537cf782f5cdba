"""Graded units of the Face R-FCN homework, Parts 1 and 2 (anchors, box coding, NMS, PS-RoI
pooling, the model): where each answer cell lives, how it is called and the deterministic inputs
it runs on. Part 3 (proposals, targets, losses) is in ``cases_targets.py``; the checks and points
are in ``test_rfcn*.py``."""
from __future__ import annotations

import torch

from autograder.modules import MODEL_DTYPE, as_module, deterministic_weights, parameter_shapes, run_deterministic
from autograder.rfcn import cases_targets
from autograder.rfcn.inputs import (clustered_boxes, deltas, gen, inner_rois, integer_maps, random_boxes,
                                   random_rois)
from autograder.units import Case, ScoringSide, Unit
from detector.rfcn.config import get_config

oracles = ScoringSide("autograder.rfcn.oracles")  # builds inputs; never imported by the worker

ANCHORS_NB, MODEL_NB = "1_anchors_boxes.ipynb", "2_psroi_model.ipynb"
ROI_STDS = (0.1, 0.1, 0.2, 0.2)

# -- generate_anchors / shift_anchors ----------------------------------------------------------------
CLASSIC_ANCHORS = "classic defaults (16, (0.5, 1, 2), (8, 16, 32))"
ANCHOR_CASES = (
    Case(CLASSIC_ANCHORS, lambda d: {}),
    Case("face anchors: ratio 1, scales 1 ... 16", lambda d: {"base_size": 16, "ratios": (1.0,),
                                                              "scales": (1, 2, 4, 8, 16)}),
    Case("base 8, ratios (0.5, 1.25, 2), scales (1, 2)", lambda d: {"base_size": 8, "ratios": (0.5, 1.25, 2.0),
                                                                    "scales": (1, 2)}),
    Case("base 32, ratios (0.25, 1, 3), scales (2, 4, 8, 16) (hidden)",
         lambda d: {"base_size": 32, "ratios": (0.25, 1.0, 3.0), "scales": (2, 4, 8, 16)}, public=False),
    Case("base 16, ratio 1, scale 0.5: an 8 px anchor (hidden)",
         lambda d: {"base_size": 16, "ratios": (1.0,), "scales": (0.5,)}, public=False),
)


def _shift_inputs(anchor_args: dict, feat_h: int, feat_w: int, stride: int, dtype=torch.float32) -> dict:
    return {"base": oracles.generate_anchors(**anchor_args).to(dtype), "feat_h": feat_h, "feat_w": feat_w,
            "stride": stride}


FACE_ANCHORS = {"base_size": 16, "ratios": (1.0,), "scales": (1, 2, 4, 8, 16)}
SHIFT_CASES = (
    Case("9 classic anchors on a 3 x 4 map, stride 16", lambda d: _shift_inputs({}, 3, 4, 16)),
    Case("5 face anchors on a 5 x 7 map, stride 16", lambda d: _shift_inputs(FACE_ANCHORS, 5, 7, 16)),
    Case("1 x 1 map", lambda d: _shift_inputs(FACE_ANCHORS, 1, 1, 16)),
    Case("empty map (0 x 5)", lambda d: _shift_inputs(FACE_ANCHORS, 0, 5, 16)),
    Case("float64, 6 x 3 map, stride 8 (hidden)", lambda d: _shift_inputs({}, 6, 3, 8, torch.float64),
         public=False),
)


# -- box coding ------------------------------------------------------------------------------------
def _coding_inputs(n: int, seed: int, stds=(1.0, 1.0, 1.0, 1.0), dtype=torch.float32) -> dict:
    rois = random_boxes(n, seed, dtype=dtype)
    return {"rois": rois, "gt": random_boxes(n, seed + 1, dtype=dtype), "deltas": deltas(n, seed + 2, dtype=dtype),
            "stds": stds}


def _known_coding(_d) -> dict:
    # roi 10 x 20 at the origin; the face: centre moved by half a width and half a height, twice as tall
    rois = torch.tensor([[0.0, 0.0, 10.0, 20.0], [4.0, 4.0, 8.0, 8.0]])
    gt = torch.tensor([[5.0, 0.0, 15.0, 40.0], [4.0, 4.0, 8.0, 8.0]])
    known = torch.tensor([[0.5, 0.5, 0.0, 0.6931471805599453], [0.0, 0.0, 0.0, 0.0]])
    return {"rois": rois, "gt": gt, "deltas": known, "stds": (1.0, 1.0, 1.0, 1.0)}


def _round_trip(_d) -> dict:
    x = _coding_inputs(40, 90, ROI_STDS, torch.float64)
    x["deltas"] = oracles.bbox_transform(x["rois"], x["gt"], ROI_STDS)
    return x


def _huge_deltas(_d) -> dict:
    x = _coding_inputs(10, 95)
    x["deltas"][:, 2:] = torch.linspace(-3.0, 12.0, 20).reshape(10, 2)  # dw, dh past log(1000/16)
    return x


CODING_KNOWN = "known values"
CODING_ROUND_TRIP = "round trip: the deltas of bbox_transform give the faces back (float64)"
CODING_PUBLIC = ("random 50 boxes", "RoI-head stds (0.1, 0.1, 0.2, 0.2)", "no boxes")
CODING_HIDDEN = ("random 300 boxes, float64 (hidden)",)
CODING_CASES = (
    Case(CODING_KNOWN, _known_coding),
    Case("random 50 boxes", lambda d: _coding_inputs(50, 80)),
    Case("RoI-head stds (0.1, 0.1, 0.2, 0.2)", lambda d: _coding_inputs(30, 84, ROI_STDS)),
    Case("no boxes", lambda d: _coding_inputs(0, 86)),
    Case("random 300 boxes, float64 (hidden)", lambda d: _coding_inputs(300, 88, ROI_STDS, torch.float64),
         public=False),
    Case(CODING_ROUND_TRIP, _round_trip),
    Case("dw, dh beyond log(1000 / 16) are clamped", _huge_deltas),
)


def _clip_inputs(n: int, seed: int, size: tuple[int, int], dtype=torch.float32) -> dict:
    boxes = random_boxes(n, seed, extent=size[1] * 1.4, max_side=150.0, dtype=dtype) - 40
    return {"boxes": boxes, "image_size": size}


CLIP_CASES = (
    Case("known boxes on a 240 x 320 image", lambda d: {"boxes": torch.tensor(
        [[-5.0, -7.0, 400.0, 100.0], [10.0, 20.0, 30.0, 300.0], [330.0, 250.0, 340.0, 260.0]]),
        "image_size": (240, 320)}),
    Case("60 random boxes, 240 x 320 (H x W)", lambda d: _clip_inputs(60, 100, (240, 320))),
    Case("no boxes", lambda d: _clip_inputs(0, 101, (240, 320))),
    Case("200 boxes, float64, 333 x 125 (hidden)", lambda d: _clip_inputs(200, 102, (333, 125), torch.float64),
         public=False),
)


# -- NMS -------------------------------------------------------------------------------------------
def _nms_inputs(boxes, scores, thresh) -> dict:
    return {"boxes": boxes, "scores": scores, "iou_threshold": thresh}


FAST_NMS_CASE = "three boxes in a chain at 0.5 (greedy keeps the first and the last)"
NMS_RANDOM = tuple(
    Case(f"{n} clustered boxes, seed {seed}, IoU {t}" + ("" if seed < 2 else " (hidden)"),
         lambda d, n=n, seed=seed, t=t: _nms_inputs(*clustered_boxes(n, seed), t), public=seed < 2)
    for seed, n in zip(range(4), (30, 80, 250, 500)) for t in (0.3, 0.5, 0.7))
NMS_TIES = tuple(Case(f"100 boxes with tied scores, seed {s}", lambda d, s=s: _nms_inputs(
    *clustered_boxes(100, 20 + s, ties=True), 0.5)) for s in range(2))
NMS_SPECIAL = (
    Case(FAST_NMS_CASE, lambda d: _nms_inputs(torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0], [6.0, 0.0, 16.0, 10.0]]), torch.tensor([0.9, 0.8, 0.7]), 0.5)),
    Case("identical boxes, equal scores", lambda d: _nms_inputs(torch.tensor([[0.0, 0, 10, 10]] * 4 + [[20.0, 20, 30, 30]]),
                                                                  torch.tensor([0.5, 0.5, 0.5, 0.5, 0.1]), 0.5)),
    Case("threshold 0: any overlap removes", lambda d: _nms_inputs(*clustered_boxes(60, 30), 0.0)),
    Case("threshold 1: nothing is removed", lambda d: _nms_inputs(*clustered_boxes(60, 31), 1.0)),
    Case("no boxes", lambda d: _nms_inputs(torch.zeros(0, 4), torch.zeros(0), 0.5)),
)
NMS_CASES = NMS_RANDOM + NMS_TIES + NMS_SPECIAL

# -- PS-RoI pooling and voting -------------------------------------------------------------------------
def _maps(batch, c, k, h, w, seed, dtype=torch.float32, integer=True) -> torch.Tensor:
    kh, kw = (k, k) if isinstance(k, int) else k
    return (integer_maps(batch, c * kh * kw, h, w, seed, dtype) if integer
            else torch.randn(batch, c * kh * kw, h, w, generator=gen(seed), dtype=dtype))


def _psroi(batch, c, k, h, w, n, image, scale, seed, dtype=torch.float32, on_grid=0, integer=True) -> dict:
    """RoIs anywhere (past the border, on the 8 px grid): torchvision's artefacts decide the values."""
    return {"features": _maps(batch, c, k, h, w, seed, dtype, integer),
            "rois": random_rois(n, batch, image, seed + 1, dtype, on_grid), "output_size": k, "spatial_scale": scale}


def _psroi_inner(batch, c, k, h, w, n, scale, seed, dtype=torch.float32, integer=True, half_cells=False) -> dict:
    """RoIs that grade the idea (inputs.inner_rois): no corner near n + 0.5 cells, nothing near the
    last row or column; ``half_cells``: every corner at n + 0.5 cells (the rounding rule)."""
    return {"features": _maps(batch, c, k, h, w, seed, dtype, integer),
            "rois": inner_rois(n, batch, h, w, scale, k, seed + 1, dtype, half_cells), "output_size": k,
            "spatial_scale": scale}


# the idea: class-major channels, k x k bins, averages (any round-to-nearest rule, any clamp agree here)
PSROI_IDEA = ("integer maps, 40 RoIs, k = 3, scale 1/16", "integer maps, 30 RoIs, k = 7, scale 1/8",
              "2 x 3 grid, scale 1", "random float maps, 50 RoIs, k = 3, scale 1/16", "no RoIs")
PSROI_GRAD = "gradient of a weighted sum (float64)"
# the rounding rule: corners at n + 0.5 cells (an edge at 8 px with scale 1/16)
PSROI_ROUNDING = "corners at n + 0.5 cells (x / 16 = 2.5, -0.5, ...), away from the last row and column"
# torchvision's artefacts, one small hidden test: std::round on RoIs past the border, the W - 1 clamp
PSROI_KNOWN = "arange(36) as [1, 4, 3, 3], RoI (0, 0, 3, 3), k = 2: the W - 1 clamp (hidden)"
PSROI_TORCHVISION = (PSROI_KNOWN, "integer maps, 40 RoIs past the border, half on the 8 px grid (hidden)",
                     "float64 integer maps, 3 images, 80 RoIs past the border, k = 5 (hidden)",
                     "2 x 3 grid, scale 1, RoIs past the border (hidden)")
PSROI_CASES = (
    Case(PSROI_IDEA[0], lambda d: _psroi_inner(2, 2, 3, 13, 17, 40, 1 / 16, 110)),
    Case(PSROI_IDEA[1], lambda d: _psroi_inner(1, 2, 7, 20, 24, 30, 1 / 8, 112)),
    Case(PSROI_IDEA[2], lambda d: _psroi_inner(1, 3, (2, 3), 9, 11, 25, 1.0, 116)),
    Case(PSROI_IDEA[3], lambda d: _psroi_inner(2, 2, 3, 14, 14, 50, 1 / 16, 118, integer=False)),
    Case(PSROI_IDEA[4], lambda d: {**_psroi_inner(1, 2, 3, 5, 5, 1, 1 / 16, 124), "rois": torch.zeros(0, 5)}),
    Case(PSROI_GRAD, lambda d: {**_psroi_inner(2, 2, 3, 6, 7, 12, 1 / 16, 126, torch.float64, integer=False),
                                "weights": torch.randn(12, 2, 3, 3, generator=gen(127), dtype=torch.float64)}),
    Case(PSROI_ROUNDING, lambda d: _psroi_inner(2, 2, 3, 14, 14, 40, 1 / 16, 114, half_cells=True)),
    Case(PSROI_KNOWN, lambda d: {"features": torch.arange(36.0).reshape(1, 4, 3, 3),
                                 "rois": torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]]), "output_size": 2,
                                 "spatial_scale": 1.0}, public=False),
    Case(PSROI_TORCHVISION[1], lambda d: _psroi(2, 2, 3, 15, 15, 40, 240.0, 1 / 16, 122, on_grid=20), public=False),
    Case(PSROI_TORCHVISION[2], lambda d: _psroi(3, 2, 5, 16, 19, 80, 300.0, 1 / 16, 120, torch.float64),
         public=False),
    Case(PSROI_TORCHVISION[3], lambda d: _psroi(1, 3, (2, 3), 9, 11, 25, 11.0, 1.0, 128), public=False),
)


def _run_psroi(ns, x, device):
    if "weights" not in x:
        return ns.ps_roi_pool(x["features"], x["rois"], x["output_size"], x["spatial_scale"])
    features = x["features"].clone().requires_grad_(True)
    out = ns.ps_roi_pool(features, x["rois"], x["output_size"], x["spatial_scale"])
    (out * x["weights"]).sum().backward()
    return features.grad


def _vote(r, c, k, seed, weighted, dtype=torch.float32) -> dict:
    g = gen(seed)
    return {"pooled": torch.randn(r, c, k, k, generator=g, dtype=dtype),
            "weights": torch.rand(k, k, generator=g, dtype=dtype) if weighted else None}


VOTE_CASES = (
    Case("plain average (weights None), 20 RoIs, k = 3", lambda d: _vote(20, 2, 3, 130, False)),
    Case("learned weights, 20 RoIs, k = 7", lambda d: _vote(20, 4, 7, 131, True)),
    Case("no RoIs", lambda d: _vote(0, 2, 3, 132, True)),
    Case("float64, 50 RoIs, k = 5 (hidden)", lambda d: _vote(50, 2, 5, 133, True, torch.float64), public=False),
)

# -- RPN head and model ------------------------------------------------------------------------------
HEAD_NAMES = "state_dict names (16 in, 8 mid, 3 anchors)"
HEAD_CASES = (
    Case(HEAD_NAMES, lambda d: {"in_channels": 16, "mid_channels": 8, "num_anchors": 3}),
    Case("[2, 16, 3, 5] features, 3 anchors", lambda d: {"in_channels": 16, "mid_channels": 8, "num_anchors": 3,
         "features": torch.randn(2, 16, 3, 5, generator=gen(140), dtype=MODEL_DTYPE)}),
    Case("[1, 12, 4, 6] features, 5 anchors (hidden)", lambda d: {"in_channels": 12, "mid_channels": 6, "num_anchors": 5,
         "features": torch.randn(1, 12, 4, 6, generator=gen(141), dtype=MODEL_DTYPE)}, public=False),
)


def _run_head(ns, x, device):
    head = as_module(ns.RPNHead(x["in_channels"], x["mid_channels"], x["num_anchors"]), "RPNHead(...)")
    return parameter_shapes(head) if "features" not in x else run_deterministic(head, x["features"], device)


RFCN_NAMES = ("state_dict names, resnet18-lite", "state_dict names, resnet50 (k = 7)")
RFCN_FORWARD = "resnet18-lite forward: 1 x 3 x 64 x 96 image and 5 RoIs"
RFCN_CASES = (
    Case(RFCN_NAMES[0], lambda d: {"cfg": get_config("resnet18-lite")}),
    Case(RFCN_NAMES[1], lambda d: {"cfg": get_config("resnet50")}),
    Case(RFCN_FORWARD, lambda d: {"cfg": get_config("resnet18-lite"),
                                  "image": torch.randn(1, 3, 64, 96, generator=gen(150), dtype=MODEL_DTYPE),
                                  "rois": random_rois(5, 1, 80.0, 151, MODEL_DTYPE)}),
    Case("plain voting, 2 x 3 x 48 x 80 images, 8 RoIs (hidden)", lambda d: {
        "cfg": get_config("resnet18-lite", weighted_vote=False, k=5),
        "image": torch.randn(2, 3, 48, 80, generator=gen(152), dtype=MODEL_DTYPE),
        "rois": random_rois(8, 2, 70.0, 153, MODEL_DTYPE)}, public=False),
)


def _run_rfcn(ns, x, device):
    model = as_module(ns.RFCN(x["cfg"]), "RFCN(cfg)")
    if "image" not in x:
        return parameter_shapes(model)
    model = deterministic_weights(model.to(device=device, dtype=MODEL_DTYPE)).eval()
    with torch.no_grad():
        out = model(x["image"])
        cls_logits, box_deltas = model.head(out, x["rois"])
    return {**out, "cls_logits": cls_logits, "box_deltas": box_deltas}


PS_ROI_POOL_OPS = ("torchvision.ops.ps_roi_pool", "torchvision.ops.PSRoIPool", "torch.ops.torchvision.ps_roi_pool")
NMS_OPS = ("torchvision.ops.nms", "torchvision.ops.batched_nms", "torchvision.ops.boxes.nms",
           "torchvision.ops.boxes.batched_nms", "torch.ops.torchvision.nms", "torchvision.ops.box_iou",
           "torchvision.ops.boxes.box_iou", "torchvision.ops.boxes._box_inter_union")

UNITS = (
    Unit("generate_anchors", ANCHORS_NB, lambda ns, x, dev: ns.generate_anchors(**x), ANCHOR_CASES,
         same_device=False),
    Unit("shift_anchors", ANCHORS_NB, lambda ns, x, dev: ns.shift_anchors(x["base"], x["feat_h"], x["feat_w"],
                                                                          x["stride"]), SHIFT_CASES),
    Unit("bbox_transform", ANCHORS_NB, lambda ns, x, dev: ns.bbox_transform(x["rois"], x["gt"], x["stds"]),
         CODING_CASES),
    Unit("bbox_transform_inv", ANCHORS_NB,
         lambda ns, x, dev: ns.bbox_transform_inv(x["rois"], x["deltas"], x["stds"]), CODING_CASES),
    Unit("clip_boxes", ANCHORS_NB, lambda ns, x, dev: ns.clip_boxes(x["boxes"], x["image_size"]), CLIP_CASES),
    Unit("nms_vectorised", ANCHORS_NB,
         lambda ns, x, dev: ns.nms_vectorised(x["boxes"], x["scores"], x["iou_threshold"]), NMS_CASES,
         forbidden=NMS_OPS),
    Unit("ps_roi_pool", MODEL_NB, _run_psroi, PSROI_CASES, forbidden=PS_ROI_POOL_OPS),
    Unit("ps_average_vote", MODEL_NB, lambda ns, x, dev: ns.ps_average_vote(x["pooled"], x["weights"]), VOTE_CASES),
    Unit("rpn_head", MODEL_NB, _run_head, HEAD_CASES),
    Unit("rfcn", MODEL_NB, _run_rfcn, RFCN_CASES, depends=("rpn_head", "ps_roi_pool", "ps_average_vote"),
         forbidden=PS_ROI_POOL_OPS),
    *cases_targets.units(NMS_OPS),
)
