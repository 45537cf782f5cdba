"""Graded units of the TinaFace homework, Part 2 (``2_anchors_losses.ipynb``): anchors, max-IoU
assignment, box coding, the three losses, the test-time score and the learning-rate schedule."""
from __future__ import annotations

import functools

import torch

from autograder.tinaface.inputs import gen, jitter, oracle_checked, randn, random_boxes
from autograder.units import Case, Unit
from detector.tinaface.config import ANCHOR_RATIO, NUM_ANCHOR_SCALES, OCTAVE_BASE_SCALE, STRIDES

BOXES_NB = "2_anchors_losses.ipynb"
FULL_SIZE = (640, 640)            # 102 375 anchors: checked against the oracle, not stored


def anchor_inputs(size, strides=STRIDES, base=OCTAVE_BASE_SCALE, scales=NUM_ANCHOR_SCALES, ratio=ANCHOR_RATIO):
    return {"image_size": size, "strides": strides, "octave_base_scale": base, "scales_per_octave": scales,
            "ratio": ratio}


def call_anchors(ns, x, dev):
    out = ns.tinaface_anchors(x["image_size"], x["strides"], x["octave_base_scale"], x["scales_per_octave"],
                              x["ratio"])
    return torch.as_tensor(out).to(dev)


ANCHOR_CASES = (
    Case("64 x 96 input, strides 4..128", lambda d: anchor_inputs((64, 96))),
    Case("odd 100 x 37 input (ceil(H / s) x ceil(W / s) cells)", lambda d: anchor_inputs((100, 37))),
    Case("640 x 640: 102 375 anchors", lambda d: anchor_inputs(FULL_SIZE), reference=False),
    Case("strides 8, 16; 2 scales, ratio 2, base 4 (hidden)",
         lambda d: anchor_inputs((48, 40), (8, 16), 4.0, 2, 2.0), public=False),
)


def assign_inputs(num_anchors, faces, seed, max_side=40.0):
    """Random anchors (not a grid: mathematically tied IoUs would depend on float rounding) and faces."""
    anchors = random_boxes(num_anchors, seed + 1000, max_side)
    return {"anchors": anchors.float(), "gt_boxes": random_boxes(faces, seed, max_side).float()}


def forced_inputs():
    """A face too odd for any anchor to reach 0.35 alone -> no; one whose best IoU is in [0.35, ...) shared."""
    anchors = torch.tensor([[0, 0, 10, 13], [2, 0, 12, 13], [40, 40, 60, 66], [0, 0, 10, 13]], dtype=torch.float32)
    gt = torch.tensor([[1, 0, 11, 13], [30, 30, 52, 60], [0, 0, 10, 13]], dtype=torch.float32)
    return {"anchors": anchors, "gt_boxes": gt}


def shared_best_anchor_inputs():
    """Two faces whose best anchor is the same one (IoU 1 for the first, 0.54 for the second): forcing
    gives it to the later face, and the first face loses its only anchor (which TinaFace accepts)."""
    anchors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]], dtype=torch.float32)
    gt = torch.tensor([[0, 0, 10, 10], [3, 0, 13, 10]], dtype=torch.float32)
    return {"anchors": anchors, "gt_boxes": gt}


def call_assign(ns, x, dev):
    return torch.as_tensor(ns.max_iou_assign(x["anchors"], x["gt_boxes"]))


ASSIGN_CASES = (
    Case("3 faces, 300 anchors", lambda d: assign_inputs(300, 3, 81)),
    Case("no faces: every anchor is background", lambda d: {"anchors": assign_inputs(50, 1, 82)["anchors"],
                                                             "gt_boxes": torch.zeros(0, 4)}),
    Case("forcing: ties all forced, the later face wins", lambda d: forced_inputs()),
    Case("forcing: two faces share their best anchor, the later face takes it", lambda d: shared_best_anchor_inputs()),
    Case("small faces the threshold misses (forcing keeps them)", lambda d: assign_inputs(400, 6, 83, 12.0)),
    Case("12 faces, 1000 anchors (hidden)", lambda d: assign_inputs(1000, 12, 84), public=False),
)


def coding_inputs(n, seed, near=True):
    anchors = random_boxes(n, seed)
    faces = jitter(anchors, seed + 1, 0.3) if near else random_boxes(n, seed + 1)
    return {"anchors": anchors.float(), "gt_boxes": faces.float()}


def call_encode(ns, x, dev):
    return ns.delta_xywh_encode(x["anchors"], x["gt_boxes"])


ENCODE_CASES = (
    Case("20 faces near their anchors", lambda d: coding_inputs(20, 91)),
    Case("faces far from their anchors", lambda d: coding_inputs(15, 92, near=False)),
    Case("a face equal to its anchor: zero deltas", lambda d: {"anchors": torch.tensor([[10., 20., 30., 46.]]),
                                                               "gt_boxes": torch.tensor([[10., 20., 30., 46.]])}),
    Case("200 faces (hidden)", lambda d: coding_inputs(200, 93), public=False),
)


def decode_inputs(n, seed, scale=1.0, max_shape=None):
    return {"anchors": random_boxes(n, seed).float(), "deltas": randn(seed + 1, n, 4, scale=scale).float(),
            "max_shape": max_shape}


def call_decode(ns, x, dev):
    if x["max_shape"] is None:
        return ns.delta_xywh_decode(x["anchors"], x["deltas"])
    return ns.delta_xywh_decode(x["anchors"], x["deltas"], max_shape=x["max_shape"])


DECODE_CASES = (
    Case("20 small deltas", lambda d: decode_inputs(20, 101)),
    Case("huge log-size deltas are clamped to +-4.135 (x std)", lambda d: decode_inputs(20, 102, 60.0)),
    Case("clipped to a 60 x 80 image (max_shape)", lambda d: decode_inputs(20, 103, 5.0, (60, 80))),
    Case("200 deltas, clipped (hidden)", lambda d: decode_inputs(200, 104, 30.0, (50, 70)), public=False),
)


def focal_inputs(seed, shape, alpha, gamma, reduction, scale=3.0):
    g = gen(seed)
    inputs = torch.randn(*shape, generator=g) * scale
    return {"inputs": inputs, "targets": (torch.rand(*shape, generator=g) < 0.3).float(), "alpha": alpha,
            "gamma": gamma, "reduction": reduction}


def call_focal(ns, x, dev):
    inputs = x["inputs"].detach().clone().requires_grad_(True)
    loss = ns.sigmoid_focal_loss(inputs, x["targets"], alpha=x["alpha"], gamma=x["gamma"], reduction=x["reduction"])
    loss.sum().backward()
    return loss.detach(), inputs.grad


FOCAL_CASES = (
    Case("alpha 0.25, gamma 2, no reduction", lambda d: focal_inputs(111, (6, 5), 0.25, 2.0, "none")),
    Case("sum over 1000 anchors", lambda d: focal_inputs(112, (1000,), 0.25, 2.0, "sum")),
    Case("alpha < 0 disables the weighting", lambda d: focal_inputs(113, (50,), -1.0, 2.0, "none")),
    Case("large logits stay finite", lambda d: focal_inputs(114, (40,), 0.25, 2.0, "none", 60.0)),
    Case("alpha 0.75, gamma 5, mean (hidden)", lambda d: focal_inputs(115, (3, 300), 0.75, 5.0, "mean"), public=False),
)


def diou_inputs(n, seed, near=True):
    pred = random_boxes(n, seed)
    target = jitter(pred, seed + 1, 0.3) if near else random_boxes(n, seed + 1)
    return {"pred": pred.float(), "target": target.float()}


def disjoint_inputs():
    pred = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [50., 50., 60., 70.], [5., 5., 15., 15.]])
    target = torch.tensor([[20., 0., 30., 10.], [40., 40., 50., 50.], [50., 50., 60., 70.], [5., 5., 15., 15.]])
    return {"pred": pred, "target": target}


def call_diou(ns, x, dev):
    pred = x["pred"].detach().clone().requires_grad_(True)
    loss = ns.diou_loss(pred, x["target"])
    loss.sum().backward()
    return loss.detach(), pred.grad


DIOU_CASES = (
    Case("20 overlapping pairs", lambda d: diou_inputs(20, 121)),
    Case("pairs that do not overlap, and identical pairs", lambda d: disjoint_inputs()),
    Case("30 pairs, some far apart", lambda d: diou_inputs(30, 122, near=False)),
    Case("300 pairs (hidden)", lambda d: diou_inputs(300, 123, near=False), public=False),
)


def iou_aware_inputs(n, seed, avg):
    gt = random_boxes(n, seed)
    return {"iou_logits": randn(seed + 2, n).float(), "pred_boxes": jitter(gt, seed + 1, 0.4).float(),
            "gt_boxes": gt.float(), "avg_factor": avg}


def call_iou_aware(ns, x, dev):
    logits = x["iou_logits"].detach().clone().requires_grad_(True)
    pred = x["pred_boxes"].detach().clone().requires_grad_(True)
    loss = ns.iou_aware_loss(logits, pred, x["gt_boxes"], x["avg_factor"])
    loss.backward()
    grad_pred = pred.grad if pred.grad is not None else torch.zeros_like(pred)
    return loss.detach(), logits.grad, grad_pred


IOU_AWARE_CASES = (
    Case("10 positives, avg_factor 10", lambda d: iou_aware_inputs(10, 131, 10.0)),
    Case("25 positives, avg_factor 7", lambda d: iou_aware_inputs(25, 132, 7.0)),
    Case("200 positives (hidden)", lambda d: iou_aware_inputs(200, 133, 50.0), public=False),
)


def score_inputs(seed, shape, alpha=None):
    x = {"cls_logits": randn(seed, *shape, scale=3).float(), "iou_logits": randn(seed + 1, *shape, scale=3).float()}
    return x if alpha is None else dict(x, alpha=alpha)


def call_scores(ns, x, dev):
    if "alpha" in x:
        return ns.tinaface_scores(x["cls_logits"], x["iou_logits"], alpha=x["alpha"])
    return ns.tinaface_scores(x["cls_logits"], x["iou_logits"])


SCORE_CASES = (
    Case("default alpha 0.4: cls^0.8 * iou^1.2", lambda d: score_inputs(141, (2, 50))),
    Case("alpha 0.5: sqrt(cls * iou) ^ 2 = cls * iou", lambda d: score_inputs(142, (30,), 0.5)),
    Case("alpha 0.25, [3, 100, 1] (hidden)", lambda d: score_inputs(143, (3, 100, 1), 0.25), public=False),
)


def lr_inputs(iters_per_epoch, base_lr, iterations, **kw):
    return {"iters_per_epoch": iters_per_epoch, "base_lr": base_lr, "iterations": iterations, "kw": kw}


def engine_lrs(lr_schedule, x) -> torch.Tensor:
    """The lr of the optimizer's param group before each step in ``x['iterations']`` when the kit's
    engine (``utils.training.optim.build_scheduler``, peak lr ``x['base_lr']``) runs ``lr_schedule``."""
    from utils.training.config import TrainConfig
    from utils.training.optim import build_optimizer, build_scheduler
    steps = max(x["iterations"]) + 1
    config = TrainConfig(lr=x["base_lr"], weight_decay=0.0)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    scheduler = build_scheduler(optimizer, config, x["iters_per_epoch"], steps, lr_schedule=lr_schedule)
    lrs = []
    for _ in range(steps):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return torch.tensor([lrs[i] for i in x["iterations"]], dtype=torch.float64)


def call_lr(ns, x, dev):
    """(the lrs of the answer called at each iteration, the lrs the engine sets with the answer as its
    ``lr_schedule``)."""
    called = torch.tensor([float(ns.warmup_cosine_lr(i, x["iters_per_epoch"], x["base_lr"], **x["kw"]))
                           for i in x["iterations"]], dtype=torch.float64)
    return called, engine_lrs(functools.partial(ns.warmup_cosine_lr, **x["kw"]), x)


LR_CASES = (
    Case("warmup: iterations 0..500 of 100-iteration epochs",
         lambda d: lr_inputs(100, 3.75e-3, list(range(0, 520, 20)))),
    Case("restarts every 30 epochs (epochs 0..95)", lambda d: lr_inputs(50, 3.75e-3, [e * 50 + 7 for e in range(96)])),
    Case("a short warmup longer than an epoch", lambda d: lr_inputs(10, 0.01, list(range(0, 60, 3)), warmup_iters=40)),
    Case("period 5, min 10 %, warmup ratio 0.3 (hidden)",
         lambda d: lr_inputs(7, 0.02, list(range(0, 200, 3)), warmup_iters=30, warmup_ratio=0.3, period=5,
                             min_lr_ratio=0.1), public=False),
)

# The library's IoU (the box losses ask for it to be computed): box_iou(...).diagonal() is the paired IoU.
BOX_IOU_OPS = ("torchvision.ops.box_iou", "torchvision.ops.boxes.box_iou", "torchvision.ops.boxes._box_inter_union")

# Every unit here is checked against an oracle only: no reference outputs are stored.
UNITS = tuple(Unit(u.grade_id, u.notebook, u.call, oracle_checked(u.cases), u.depends, u.same_device, u.forbidden)
              for u in (
    Unit("tinaface_anchors", BOXES_NB, call_anchors, ANCHOR_CASES),
    Unit("max_iou_assign", BOXES_NB, call_assign, ASSIGN_CASES),
    Unit("delta_xywh_encode", BOXES_NB, call_encode, ENCODE_CASES),
    Unit("delta_xywh_decode", BOXES_NB, call_decode, DECODE_CASES),
    Unit("sigmoid_focal_loss", BOXES_NB, call_focal, FOCAL_CASES,
         forbidden=("torchvision.ops.sigmoid_focal_loss", "torchvision.ops.focal_loss.sigmoid_focal_loss")),
    Unit("diou_loss", BOXES_NB, call_diou, DIOU_CASES,
         forbidden=("torchvision.ops.distance_box_iou_loss", "torchvision.ops.complete_box_iou_loss",
                    "torchvision.ops.generalized_box_iou_loss", "torchvision.ops.distance_box_iou",
                    "torchvision.ops.complete_box_iou", "torchvision.ops.diou_loss.distance_box_iou_loss",
                    "torchvision.ops.ciou_loss.complete_box_iou_loss", "torchvision.ops.diou_loss._diou_iou_loss",
                    "torchvision.ops.boxes._box_diou_iou", *BOX_IOU_OPS)),
    Unit("iou_aware_loss", BOXES_NB, call_iou_aware, IOU_AWARE_CASES, forbidden=BOX_IOU_OPS),
    Unit("tinaface_scores", BOXES_NB, call_scores, SCORE_CASES),
    Unit("warmup_cosine_lr", BOXES_NB, call_lr, LR_CASES, same_device=False),
))
