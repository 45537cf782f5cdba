"""How the TinaFace homework's outputs are checked, and the feedback naming its classic mistakes:
offsets read as (dx, dy), anchors at cell centres, ratio as width / height, alpha on the negatives,
DIoU without its centre-distance term, an IoU target that is not detached, fusion without ReLU or eps.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from autograder.explain import expect_parameter_shapes, fail, noting
from autograder.feedback import GradingFailure, describe, expect_close, expect_equal, expect_tensor, expect_type
from autograder.modules import deterministic_weights
from autograder.tinaface import oracles
from detector.tinaface.config import FUSION_EPS

MODULE_ATOL, MODULE_RTOL = 1e-5, 1e-4   # module outputs: float64 computation returned in float32
GRAD_NAMES = {"deform_sampling": ("input", "offset", "weight"),
              "fast_normalized_fusion": ("weights",)}


def _close(a, b, **kw) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.detach().cpu().double(), b.double(), **kw))


def expect_tuple(got, n, case, what):
    if not isinstance(got, (tuple, list)) or len(got) != n:
        raise fail(case, f"{what}: expected a tuple of {n}, got {describe(got)}")
    return got


# -- deformable convolution -------------------------------------------------------------------------
def expect_value_and_gradient(got, want, grad, case, what, wrt, atol, why_learned=""):
    """``got`` = (value, gradient w.r.t. ``wrt``) matches ``want`` (value) and ``grad``; a missing
    gradient says which input it should reach (``why_learned``: an optional reason)."""
    expect_close(got[0], want.detach(), case, what, atol=atol)
    if got[1] is None:
        raise fail(case, f"no gradient reaches the {wrt}{why_learned}")
    expect_close(got[1], grad, case, f"the gradient w.r.t. the {wrt}", atol=atol)


def swap_dy_dx(offset: torch.Tensor) -> torch.Tensor:
    """The offsets with (dy, dx) of every tap exchanged: what a (dx, dy) reading computes."""
    b, c, h, w = offset.shape
    return offset.reshape(b, c // 2, 2, h, w).flip(2).reshape(b, c, h, w)


def check_sampling(submission, names):
    for name in names:
        x = submission.inputs("deform_sampling", name)
        tensors = [x[n].detach().clone().requires_grad_(True) for n in ("input", "offset", "weight")]
        kw = dict(stride=x["stride"], padding=x["padding"], dilation=x["dilation"])
        want = torchvision.ops.deform_conv2d(tensors[0], tensors[1], tensors[2], **kw)
        cotangent = torch.randn(want.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        grads = torch.autograd.grad((want * cotangent).sum(), tensors)
        got = expect_tuple(submission.output("deform_sampling", name), 4, name, "the sampling unit's result")
        swapped = torchvision.ops.deform_conv2d(x["input"], swap_dy_dx(x["offset"]), x["weight"], **kw)
        if (not _close(got[0], want.detach(), atol=1e-6) and _close(got[0], swapped, atol=1e-6)) or (
                _close(got[0], want.detach(), atol=1e-6) and isinstance(got[2], torch.Tensor)
                and not _close(got[2], grads[1], atol=1e-6) and _close(got[2], swap_dy_dx(grads[1]), atol=1e-6)):
            raise fail(name, "offsets in (dx, dy) order: the offset channels are (dy, dx) for each tap — "
                             "channel 2k moves the row (y), channel 2k + 1 the column (x), as in "
                             "torchvision and vedadet ('[y0, x0, y1, x1, ...]')")
        expect_close(got[0], want.detach(), name, "the output", atol=1e-6)
        for what, g, w in zip(GRAD_NAMES["deform_sampling"], got[1:], grads):
            if g is None:
                raise fail(name, f"no gradient reaches the {what}: keep the computation in torch (no .detach(), "
                                 f"no NumPy, no integer rounding of the sampling weights)")
            expect_close(g, w, name, f"the gradient w.r.t. the {what}", atol=1e-6)


class _DeformOracle(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(c_out, c_in, 3, 3, dtype=torch.float64))
        self.conv_offset = nn.Conv2d(c_in, 18, 3, stride, 1, dtype=torch.float64)

    def forward(self, x):
        return torchvision.ops.deform_conv2d(x, self.conv_offset(x), self.weight, stride=self.stride, padding=1)


def check_deform_conv(submission, names, part):
    for name in names:
        x = submission.inputs("deform_conv", name)
        got = expect_tuple(submission.output("deform_conv", name), 4, name, "the DCN layer's result")
        shapes, zero, start, out = got
        want_shapes = {"weight": [x["out"], x["in"], 3, 3], "conv_offset.weight": [18, x["in"], 3, 3],
                       "conv_offset.bias": [18]}
        expect_parameter_shapes(shapes, want_shapes, name)
        if part == "init":
            if float(zero.max()) != 0.0:
                raise fail(name, "conv_offset must start at zero (weight and bias), so that the layer starts as "
                                 "an ordinary convolution")
            if float(start.max()) > 1e-5:
                raise fail(name, f"with zero offsets the layer should equal F.conv2d(x, self.weight, stride, "
                                 f"padding=1); it differs by {float(start.max()):.3g}")
        else:
            with torch.no_grad():
                oracle = deterministic_weights(_DeformOracle(x["in"], x["out"], x["stride"]))
                want = oracle(x["input"])
            expect_close(out, want, name, "the output (name-seeded weights)", atol=1e-6)


# -- modules checked against the solution's reference -------------------------------------------
def check_module(submission, unit, names, part, extra=None):
    """part 'names': state_dict names and shapes; 'forward': outputs; extra(name, got) for more."""
    for name in names:
        got = submission.output(unit, name)
        want = submission.reference(unit, name)
        expect_type(got, (tuple, list), name, "the unit's result")
        if part == "names":
            if unit == "group_norm_resnet" and isinstance(got[0], dict) and any("running_mean" in k for k in got[0]):
                raise fail(name, "the network has BatchNorm layers (running_mean buffers): pass "
                                 "norm_layer=partial(nn.GroupNorm, num_groups) to ResNet")
            expect_parameter_shapes(got[0], want[0], name)
            continue
        if extra is not None:
            extra(name, got, want)
            continue
        outs, wants = got[-1], want[-1]
        expect_type(outs, (tuple, list), name, "the forward's result")
        if len(outs) != len(wants):
            raise fail(name, f"forward should return {len(wants)} tensors, got {len(outs)}")
        with noting(submission, unit):
            for i, (g, w) in enumerate(zip(outs, wants)):
                expect_close(g, w, name, f"output {i}", atol=MODULE_ATOL, rtol=MODULE_RTOL)


# -- fusion -------------------------------------------------------------------------------------
def check_fusion(submission, names):
    for name in names:
        x = submission.inputs("fast_normalized_fusion", name)
        weights = x["weights"].detach().clone().requires_grad_(True)
        want = oracles.fusion(x["inputs"], weights, FUSION_EPS)
        grads = torch.autograd.grad((want * torch.randn(want.shape, generator=torch.Generator().manual_seed(9),
                                                        dtype=torch.float64)).sum(), [weights])
        got = expect_tuple(submission.output("fast_normalized_fusion", name), 2 + len(x["inputs"]), name,
                           "the fusion result")
        if not _close(got[0], want.detach(), atol=1e-6):
            if _close(got[0], oracles.fusion(x["inputs"], x["weights"], FUSION_EPS, relu=False), atol=1e-6):
                raise fail(name, "fusion weights without ReLU: the weights are w_i = ReLU(parameter_i), so a "
                                 "negative parameter switches its input off instead of subtracting it")
            if _close(got[0], oracles.fusion(x["inputs"], x["weights"], FUSION_EPS, with_eps=False), atol=1e-6):
                raise fail(name, "fusion without eps: divide by eps + sum_j w_j (eps = 1e-4), which keeps "
                                 "the division finite when every weight is 0")
        expect_value_and_gradient(got, want, grads[0], name, "the fused tensor", "weights", 1e-6,
                                  ": they are learned parameters")


# -- anchors -------------------------------------------------------------------------------------
def check_anchors(submission, name):
    x = submission.inputs("tinaface_anchors", name)
    args = (x["image_size"], x["strides"], x["octave_base_scale"], x["scales_per_octave"], x["ratio"])
    want = oracles.anchors(*args)
    got = expect_tensor(submission.output("tinaface_anchors", name), name, "the anchors")
    if tuple(got.shape) != tuple(want.shape):
        raise fail(name, f"the anchors should be [P, 4] with P = sum over strides s of ceil(H/s) ceil(W/s) x "
                         f"{x['scales_per_octave']} = {want.shape[0]} for (H, W) = {x['image_size']}, got "
                         f"{describe(got)}")
    if not _close(got, want, atol=1e-3, rtol=1e-5):
        if _close(got, oracles.anchors(*args, centre_offset=0.5), atol=1e-3, rtol=1e-5):
            raise fail(name, "anchors at cell centres: TinaFace (mmdet v2, center_offset 0) puts the anchors of "
                             "cell (i, j) at (j·s, i·s), the cell's top-left corner, not ((j + 0.5)·s, (i + 0.5)·s)")
        if _close(got, oracles.anchors(*args, hw_ratio=False), atol=1e-3, rtol=1e-5):
            raise fail(name, "ratio taken as width / height: the ratio 1.3 is height / width (h = size·sqrt(r), "
                             "w = size / sqrt(r)), so the anchors are taller than wide, like faces")
    expect_close(got, want.to(got.dtype), name, "the anchors", atol=1e-3, rtol=1e-5)


def check_assign(submission, name):
    x = submission.inputs("max_iou_assign", name)
    want = oracles.assign(x["anchors"].double(), x["gt_boxes"].double(), 0.35, 0.35)
    got = expect_tensor(submission.output("max_iou_assign", name), name, "the assignment")
    if got.dtype.is_floating_point:
        raise fail(name, f"the assignment should be int64 face indices (-1 = background), got {describe(got)}")
    got = got.long()
    if not torch.equal(got.cpu(), want):
        unforced = oracles.assign(x["anchors"].double(), x["gt_boxes"].double(), 0.35, 0.35, force=False)
        if torch.equal(got.cpu(), unforced):
            raise fail(name, "no forcing: after thresholding, each face must take all the anchors that reach its "
                             "own best IoU (if >= 0.35), even where another face overlaps them more")
    expect_equal(got, want, name, "the assigned face indices")


def check_coding(submission, unit, name):
    x = submission.inputs(unit, name)
    if unit == "delta_xywh_encode":
        want = oracles.encode(x["anchors"].double(), x["gt_boxes"].double())
    else:
        want = oracles.decode(x["anchors"].double(), x["deltas"].double(), max_shape=x["max_shape"])
    got = expect_tensor(submission.output(unit, name), name)
    expect_close(got, want.float(), name, "the deltas" if unit.endswith("encode") else "the boxes",
                 atol=1e-4, rtol=1e-4)


def check_focal(submission, name):
    x = submission.inputs("sigmoid_focal_loss", name)
    inputs = x["inputs"].detach().clone().requires_grad_(True)
    kw = dict(alpha=x["alpha"], gamma=x["gamma"], reduction=x["reduction"])
    want = torchvision.ops.sigmoid_focal_loss(inputs, x["targets"], **kw)
    want.sum().backward()
    got = expect_tuple(submission.output("sigmoid_focal_loss", name), 2, name, "the focal loss result")
    if not _close(got[0], want.detach(), atol=1e-5, rtol=1e-4) and x["alpha"] >= 0:
        swapped = torchvision.ops.sigmoid_focal_loss(x["inputs"], x["targets"], alpha=1 - x["alpha"],
                                                     gamma=x["gamma"], reduction=x["reduction"])
        if _close(got[0], swapped, atol=1e-5, rtol=1e-4):
            raise fail(name, "alpha applied to the negatives: alpha_t = alpha for positives (targets 1) and "
                             "1 - alpha for negatives; with alpha 0.25 the rare positives get the smaller weight, "
                             "because gamma already silences the easy negatives")
    expect_value_and_gradient(got, want, inputs.grad, name, "the loss", "logits", 1e-5)


def check_diou(submission, name):
    x = submission.inputs("diou_loss", name)
    pred = x["pred"].detach().clone().requires_grad_(True)
    want = torchvision.ops.distance_box_iou_loss(pred, x["target"], reduction="none", eps=1e-6)
    want.sum().backward()
    got = expect_tuple(submission.output("diou_loss", name), 2, name, "the DIoU result")
    if not _close(got[0], want.detach(), atol=1e-5):
        iou_only = 1 - torchvision.ops.box_iou(x["pred"], x["target"]).diagonal()
        if _close(got[0], iou_only, atol=1e-4):
            raise fail(name, "DIoU without the centre-distance term: that is 1 - IoU; add rho^2 / c^2 (squared "
                             "distance of the centres over the squared diagonal of the enclosing box), the term "
                             "that still moves boxes that do not overlap")
    expect_value_and_gradient(got, want, pred.grad, name, "the losses", "predicted boxes", 1e-5)


def check_iou_aware(submission, name):
    x = submission.inputs("iou_aware_loss", name)
    logits = x["iou_logits"].detach().clone().requires_grad_(True)
    target = oracles.aligned_iou(x["pred_boxes"], x["gt_boxes"]).float()
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / x["avg_factor"]
    want.backward()
    got = expect_tuple(submission.output("iou_aware_loss", name), 3, name, "the IoU-aware result")
    expect_close(got[0], want.detach(), name, "the loss", atol=1e-5)
    expect_close(got[1], logits.grad, name, "the gradient w.r.t. the IoU logits", atol=1e-5)
    if float(got[2].abs().max()) > 0:
        raise fail(name, "IoU target not detached: the gradient reaches the decoded boxes through the target; "
                         "compute the target IoU on pred_boxes.detach(), so the IoU branch learns to predict the "
                         "boxes' quality instead of pulling the boxes")


def check_scores(submission, name):
    x = submission.inputs("tinaface_scores", name)
    alpha = x.get("alpha", 0.4)
    want = torch.sigmoid(x["cls_logits"]) ** (2 * alpha) * torch.sigmoid(x["iou_logits"]) ** (2 * (1 - alpha))
    expect_close(submission.output("tinaface_scores", name), want, name, "the scores", atol=1e-6)


def check_lr(submission, name, engine: bool):
    from utils.training.config import TrainConfig
    from utils.training.optim import build_scheduler
    x = submission.inputs("warmup_cosine_lr", name)
    kw = dict({"warmup_iters": 500, "warmup_ratio": 0.1, "period": 30, "min_lr_ratio": 0.01}, **x["kw"])
    if engine:  # the kit's engine must produce the same lr step by step
        config = TrainConfig(lr=x["base_lr"], schedule="cosine_restart", warmup_iterations=kw["warmup_iters"],
                             warmup_ratio=kw["warmup_ratio"], restart_epochs=kw["period"],
                             min_lr_ratio=kw["min_lr_ratio"])
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=x["base_lr"])
        sched = build_scheduler(opt, config, x["iters_per_epoch"], max(x["iterations"]) + 1)
        lrs = []
        for i in range(max(x["iterations"]) + 1):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        want = torch.tensor([lrs[i] for i in x["iterations"]], dtype=torch.float64)
    else:
        want = torch.tensor([oracles.cosine_restart_lr(i, x["iters_per_epoch"], x["base_lr"], kw["warmup_iters"],
                                                       kw["warmup_ratio"], kw["period"], kw["min_lr_ratio"])
                             for i in x["iterations"]], dtype=torch.float64)
    expect_close(submission.output("warmup_cosine_lr", name), want, name, "the learning rates",
                 atol=1e-12, rtol=1e-6)
