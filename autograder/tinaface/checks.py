"""How the TinaFace homework's outputs are checked, and the feedback naming its classic mistakes.

Every reference comes from ``oracles`` (called with arguments built from the case's inputs). A
mistake is named from the answer: it equals the oracle's variant that computes the mistake (named
only on a case where that variant differs from the right answer, so the case can show it), or it
has a property only the mistake gives (DIoU above 2, outputs wrong only where a tap falls outside
the image). A unit checked on several cases is run on all of them and its feedback starts with the
case that names a mistake; a unit with several outputs lists every output that differs.
"""
from __future__ import annotations

import math
import re

import torch

from autograder.explain import expect_parameter_shapes, fail, noting
from autograder.feedback import WRONG, GradingFailure, describe, expect_close, expect_equal, expect_tensor, expect_type
from autograder.tinaface import oracles
from autograder.tinaface.inputs import WARMUP_COSINE_DEFAULTS
from detector.tinaface.config import BOX_STDS, FUSION_EPS, MAX_LOG_RATIO

MODULE_ATOL, MODULE_RTOL = 1e-5, 1e-4   # module outputs: float64 computation returned in float32
SILU_MIN = -0.2785                      # min of x·sigmoid(x), at x = -1.278
DIOU_MAX = 2.0                          # 1 - IoU <= 1 and rho^2 <= c^2 for the enclosing box's diagonal


class Mistake(GradingFailure):
    """A failure that names a classic mistake (preferred over unnamed failures of other cases)."""


def mistake(case: str, message: str) -> Mistake:
    return Mistake(f"case '{case}': {message}")


def _close(a, b, atol=1e-6, rtol=1e-5) -> bool:
    if isinstance(b, (tuple, list)):
        return isinstance(a, (tuple, list)) and len(a) == len(b) and all(_close(x, y, atol, rtol) for x, y in zip(a, b))
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.detach().cpu().double(), b.detach().double(), atol=atol, rtol=rtol))


def shows(got, want, variant, **tol) -> bool:
    """``got`` is the variant's answer, and this case tells the variant from the right answer."""
    return _close(got, variant, **tol) and not _close(want, variant, **tol)


def each_case(names, check_one) -> None:
    """Run ``check_one(name)`` on every case; raise the first failure that names a mistake (else the
    first failure), noting the other cases that fail."""
    failures = []
    for name in names:
        try:
            check_one(name)
        except GradingFailure as err:
            failures.append((name, err))
    if not failures:
        return
    name, first = next(((n, e) for n, e in failures if isinstance(e, Mistake)), failures[0])
    others = [n for n, _ in failures if n != name]
    if first.kind != WRONG or not others:
        raise first
    raise GradingFailure(f"{first} (also wrong: case {', case '.join(repr(n) for n in others)})",
                         first.kind, first.dependencies)


def _short(message: str) -> str:
    """``output 2 differs at 5 of 60 entries; largest error 0.3`` from an expect_close message."""
    text = re.sub(r"^case '.*?': ", "", message)
    return re.sub(r" at \[[^\]]*\] \(expected .*$", "", text)


def expect_all_close(items, case: str, named: str | None = None) -> None:
    """items: (what, got, want, atol, rtol). Every item that differs is listed (the first in full);
    ``named``: a mistake's explanation that heads the message."""
    wrong = []
    for what, got, want, atol, rtol in items:
        try:
            expect_close(got, want, case, what, atol=atol, rtol=rtol)
        except GradingFailure as err:
            wrong.append(str(err))
    if not wrong and named is None:
        return
    if named is not None:
        raise mistake(case, f"{named} ({len(wrong)} of {len(items)} outputs differ: "
                            f"{'; '.join(_short(m) for m in wrong)})" if len(items) > 1 and wrong else named)
    detail = "; ".join([re.sub(r"^case '.*?': ", "", wrong[0])] + [_short(m) for m in wrong[1:]])
    head = f"{len(wrong)} of {len(items)} outputs differ: " if len(items) > 1 else ""
    raise fail(case, head + detail)


def expect_tuple(got, n, case, what):
    if not isinstance(got, (tuple, list)) or len(got) != n:
        raise fail(case, f"{what}: expected a tuple of {n}, got {describe(got)}")
    return got


def value_and_gradients(got, want, grads, case, what, wrt, atol, why_learned="", named=None):
    """``got`` = (value, gradients...) against ``want`` and ``grads`` (``wrt``: the inputs' names); a
    missing gradient says which input it should reach (``why_learned``: an optional reason)."""
    for w, g in zip(wrt, got[1:]):
        if g is None:
            raise fail(case, f"no gradient reaches the {w}{why_learned}")
    items = [(what, got[0], want, atol, 1e-4)] + [(f"the gradient w.r.t. the {w}", g, r, atol, 1e-4)
                                                  for w, g, r in zip(wrt, got[1:], grads)]
    expect_all_close(items, case, named)


# -- deformable convolution -------------------------------------------------------------------------
ZERO_PADDING = ("a tap that falls outside the image must read 0 (zero padding, as nn.Conv2d's padding and "
                "torchvision's deform_conv2d): multiply each of the 4 bilinear corners' weights by whether "
                "that corner lies inside the image")


def _outside_only(got, want, outside) -> bool:
    """The output is wrong, but only at positions where some tap samples outside the image."""
    bad = ((got.detach().double() - want.double()).abs() > 1e-6).any(dim=1)        # [B, H_out, W_out]
    return bool(bad.any()) and not bool((bad & ~outside).any())


def border_feedback(case, got, want, replicated, outside) -> None:
    """Names a sampling that treats the outside of the image wrongly: exactly the edge replicated, or
    wrong only where a tap falls outside the image."""
    if shows(got, want, replicated):
        raise mistake(case, "border replicated: your samples outside the image read the nearest border "
                            "pixel (clamped indices); " + ZERO_PADDING)
    if _outside_only(got, want, outside):
        raise mistake(case, "your output is wrong only at positions whose taps fall outside the image: "
                            + ZERO_PADDING)


def taps_outside(offset, h, w, stride, padding, dilation, k=3) -> torch.Tensor:
    """[B, H_out, W_out]: some tap's bilinear corners reach outside the H x W image (any group)."""
    b, c, h_out, w_out = offset.shape
    off = offset.reshape(b, -1, k * k, 2, h_out, w_out)
    rows = (torch.arange(h_out, dtype=offset.dtype) * stride - padding)[:, None]
    cols = (torch.arange(w_out, dtype=offset.dtype) * stride - padding)[None, :]
    out = torch.zeros(b, h_out, w_out, dtype=torch.bool)
    for tap in range(k * k):
        i, j = divmod(tap, k)
        py, px = rows + i * dilation + off[:, :, tap, 0], cols + j * dilation + off[:, :, tap, 1]
        out |= ((py.floor() < 0) | (py.ceil() > h - 1) | (px.floor() < 0) | (px.ceil() > w - 1)).any(dim=1)
    return out


def check_sampling(submission, names):
    each_case(names, lambda name: _check_sampling(submission, name))


def _check_sampling(submission, name):
    x = submission.inputs("deform_sampling", name)
    kw = dict(stride=x["stride"], padding=x["padding"], dilation=x["dilation"])
    want, grads = oracles.deform_sampling_and_grads(x["input"], x["offset"], x["weight"], seed=7, **kw)
    got = expect_tuple(submission.output("deform_sampling", name), 4, name, "the sampling unit's result")
    if not _close(got[0], want):
        if shows(got[0], want, oracles.deform_sampling(x["input"], x["offset"], x["weight"], dx_dy=True, **kw)):
            raise mistake(name, "offsets in (dx, dy) order: the offset channels are (dy, dx) for each tap — "
                                "channel 2k moves the row (y), channel 2k + 1 the column (x), as in "
                                "torchvision and vedadet ('[y0, x0, y1, x1, ...]')")
        replicated = oracles.deform_sampling(x["input"], x["offset"], x["weight"], border="border", **kw)
        outside = taps_outside(x["offset"], *x["input"].shape[-2:], **kw)
        border_feedback(name, got[0], want, replicated, outside)
    value_and_gradients(got, want, grads, name, "the output", ("input", "offset", "weight"), 1e-6,
                        ": keep the computation in torch (no .detach(), no NumPy, no integer rounding of the "
                        "sampling weights)")


def check_deform_conv(submission, names, part):
    each_case(names, lambda name: _check_deform_conv(submission, name, part))


def _check_deform_conv(submission, name, part):
    x = submission.inputs("deform_conv", name)
    got = expect_tuple(submission.output("deform_conv", name), 5, name, "the DCN layer's result")
    shapes, zero, start, out, still = got
    want_shapes = {"weight": [x["out"], x["in"], 3, 3], "conv_offset.weight": [18, x["in"], 3, 3],
                   "conv_offset.bias": [18]}
    expect_parameter_shapes(shapes, want_shapes, name)
    layer = (x["input"], x["in"], x["out"], x["stride"])
    if part == "init":
        if float(zero.max()) != 0.0:
            raise fail(name, "conv_offset must start at zero (weight and bias), so that the layer starts as "
                             "an ordinary convolution")
        if float(start.max()) > 1e-5:
            want = oracles.deform_layer(*layer, zero_offsets=True)
            outside = taps_outside(torch.zeros(x["input"].shape[0], 18, *want.shape[-2:], dtype=torch.float64),
                                   *x["input"].shape[-2:], x["stride"], 1, 1)
            border_feedback(name, still, want, oracles.deform_layer(*layer, border="border", zero_offsets=True),
                            outside)
            raise fail(name, f"with zero offsets the layer should equal F.conv2d(x, self.weight, stride, "
                             f"padding=1); it differs by {float(start.max()):.3g}")
    else:
        want = oracles.deform_layer(*layer)
        if not _close(out, want):
            if shows(still, oracles.deform_layer(*layer, zero_offsets=True),
                     oracles.deform_layer(*layer, border="border", zero_offsets=True)) or shows(
                    out, want, oracles.deform_layer(*layer, border="border")):
                raise mistake(name, "border replicated: with padding 1 the taps of the edge outputs fall "
                                    "outside the image and your layer reads the border pixels there; "
                                    + ZERO_PADDING)
        expect_close(out, want, name, "the output (name-seeded weights)", atol=1e-6)


# -- modules checked against the solution's reference -------------------------------------------
def _module_mistake(unit, x, outs, wants) -> str | None:
    """A classic mistake of a module unit named from its outputs (``x``: the case's inputs)."""
    tol = dict(atol=MODULE_ATOL, rtol=MODULE_RTOL)
    if unit == "group_norm_resnet":
        args = (x["input"], x["layers"], x["bottleneck"], x["groups"], x["dcn"], x.get("width", 64))
        if shows(outs, wants, oracles.resnet_gn(*args, groups_swapped=True), **tol):
            return (f"GroupNorm's groups and channels swapped: your norm layers split C channels into C / "
                    f"{x['groups']} groups of {x['groups']} channels; nn.GroupNorm(num_groups, num_channels) "
                    f"takes the number of groups first, so norm_layer=partial(nn.GroupNorm, num_groups) "
                    f"(as the notebook says) gives {x['groups']} groups of C / {x['groups']} channels")
    if unit == "fpn6":
        args = (x["features"], x["in"], x["out"], x["groups"])
        if shows(outs, wants, oracles.fpn6(*args, align_corners=True), **tol):
            return ("upsampling with align_corners=True: the top-down pathway upsamples with F.interpolate("
                    "..., size=finer.shape[-2:], mode='bilinear') and align_corners=False (the default, as "
                    "mmdet's FPN), which keeps the pixel centres of both levels on one grid")
        if shows(outs, wants, oracles.fpn6(*args, mode="nearest"), **tol):
            return ("nearest-neighbour upsampling: TinaFace's FPN upsamples the coarser lateral with "
                    "mode='bilinear' (align_corners=False) before adding it")
        if all(_close(g, w, **tol) for g, w in zip(outs[3:], wants[3:])):
            return ("P5, P6 and P7 are right but P2..P4 differ: the top-down pathway is wrong (each lateral "
                    "plus the coarser one upsampled to its size with F.interpolate(mode='bilinear'), "
                    "from the coarsest down, then the 3x3 fpn_convs)")
    if unit == "bifpn_layer":
        args = (x["features"], x["channels"], x["groups"])
        if shows(outs, wants, oracles.bifpn(*args, activation="after"), **tol):
            return ("SiLU applied after the separable convolution: each node is conv(SiLU(fused)), the "
                    "activation before the depthwise-pointwise conv and its GroupNorm (EfficientDet)")
        if shows(outs, wants, oracles.bifpn(*args, activation="none"), **tol):
            return "no SiLU: each node is conv(SiLU(fused)), with the activation before the separable conv"
        lowest = min(float(o.min()) for o in outs)
        if lowest >= SILU_MIN - 1e-6 and min(float(w.min()) for w in wants) < SILU_MIN:
            return (f"no output of your nodes is below {lowest:.3g}: an activation is applied after the "
                    f"separable conv's GroupNorm; each node is conv(SiLU(fused)), the SiLU before the conv")
    return None


def check_module(submission, unit, names, part, extra=None):
    """part 'names': state_dict names and shapes; 'forward': outputs; extra(name, got, want) for more."""
    each_case(names, lambda name: _check_module(submission, unit, name, part, extra))


def _check_module(submission, unit, name, part, extra):
    got = submission.output(unit, name)
    want = submission.reference(unit, name)
    expect_type(got, (tuple, list), name, "the unit's result")
    if part == "names":
        if unit == "group_norm_resnet" and isinstance(got[0], dict) and any("running_mean" in k for k in got[0]):
            raise fail(name, "the network has BatchNorm layers (running_mean buffers): pass "
                             "norm_layer=partial(nn.GroupNorm, num_groups) to ResNet")
        expect_parameter_shapes(got[0], want[0], name)
        return
    if extra is not None:
        extra(name, got, want)
        return
    outs, wants = got[-1], want[-1]
    expect_type(outs, (tuple, list), name, "the forward's result")
    if len(outs) != len(wants):
        raise fail(name, f"forward should return {len(wants)} tensors, got {len(outs)}")
    named = None
    if not _close(outs, wants, atol=MODULE_ATOL, rtol=MODULE_RTOL):
        named = _module_mistake(unit, submission.inputs(unit, name), outs, wants)
    try:
        with noting(submission, unit):
            expect_all_close([(f"output {i}", g, w, MODULE_ATOL, MODULE_RTOL)
                              for i, (g, w) in enumerate(zip(outs, wants))], name, named)
    except GradingFailure as err:      # noting's note keeps the failure's name
        if named is not None and not isinstance(err, Mistake):
            raise Mistake(str(err), err.kind, err.dependencies) from None
        raise


# -- fusion -------------------------------------------------------------------------------------
def check_fusion(submission, names):
    each_case(names, lambda name: _check_fusion(submission, name))


def _check_fusion(submission, name):
    x = submission.inputs("fast_normalized_fusion", name)
    want, grad = oracles.fusion_and_grad(x["inputs"], x["weights"], FUSION_EPS, seed=9)
    got = expect_tuple(submission.output("fast_normalized_fusion", name), 2 + len(x["inputs"]), name,
                       "the fusion result")
    if not _close(got[0], want):
        if shows(got[0], want, oracles.fusion(x["inputs"], x["weights"], FUSION_EPS, relu=False)):
            raise mistake(name, "fusion weights without ReLU: the weights are w_i = ReLU(parameter_i), so a "
                                "negative parameter switches its input off instead of subtracting it")
        if shows(got[0], want, oracles.fusion(x["inputs"], x["weights"], FUSION_EPS, with_eps=False)):
            raise mistake(name, "fusion without eps: divide by eps + sum_j w_j (eps = 1e-4), which keeps "
                                "the division finite when every weight is 0")
    value_and_gradients(got[:2], want, [grad], name, "the fused tensor", ("weights",), 1e-6,
                        ": they are learned parameters")


# -- anchors, assignment, coding -----------------------------------------------------------------
def check_anchors(submission, name):
    x = submission.inputs("tinaface_anchors", name)
    args = (x["image_size"], x["strides"], x["octave_base_scale"], x["scales_per_octave"], x["ratio"])
    want = oracles.anchors(*args)
    got = expect_tensor(submission.output("tinaface_anchors", name), name, "the anchors")
    if tuple(got.shape) != tuple(want.shape):
        raise fail(name, f"the anchors should be [P, 4] with P = sum over strides s of ceil(H/s) ceil(W/s) x "
                         f"{x['scales_per_octave']} = {want.shape[0]} for (H, W) = {x['image_size']}, got "
                         f"{describe(got)}")
    tol = dict(atol=1e-3, rtol=1e-5)
    if not _close(got, want, **tol):
        if shows(got, want, oracles.anchors(*args, centre_offset=0.5), **tol):
            raise mistake(name, "anchors at cell centres: TinaFace (mmdet v2, center_offset 0) puts the anchors "
                                "of cell (i, j) at (j·s, i·s), the cell's top-left corner, not ((j + 0.5)·s, "
                                "(i + 0.5)·s)")
        if shows(got, want, oracles.anchors(*args, hw_ratio=False), **tol):
            raise mistake(name, "ratio taken as width / height: the ratio 1.3 is height / width (h = "
                                "size·sqrt(r), w = size / sqrt(r)), so the anchors are taller than wide, like faces")
    expect_close(got, want.to(got.dtype), name, "the anchors", **tol)


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
            raise mistake(name, "no forcing: after thresholding, each face must take all the anchors that reach "
                                "its own best IoU (if >= 0.35), even where another face overlaps them more")
    expect_equal(got, want, name, "the assigned face indices")


def _clamp_limit(x, got) -> float | None:
    """The limit |log(w / anchor w)| (and h) that the answer's boxes reach where the log sizes must be
    clamped (None when no delta reaches the clamp, or the boxes are clipped to an image)."""
    if x["max_shape"] is not None or not isinstance(got, torch.Tensor) or got.shape != x["deltas"].shape:
        return None
    scaled = x["deltas"].double()[:, 2:] * torch.tensor(BOX_STDS[2:], dtype=torch.float64)
    clamped = scaled.abs() > MAX_LOG_RATIO
    if not clamped.any():
        return None
    a, b = x["anchors"].double(), got.detach().double()
    logs = torch.log((b[:, 2:] - b[:, :2]) / (a[:, 2:] - a[:, :2])).abs()
    limit = float(logs[clamped].max())
    return limit if math.isfinite(limit) and abs(float(logs[clamped].min()) - limit) < 1e-3 else None


def check_coding(submission, unit, name):
    x = submission.inputs(unit, name)
    got = expect_tensor(submission.output(unit, name), name)
    tol = dict(atol=1e-4, rtol=1e-4)
    if unit == "delta_xywh_encode":
        expect_close(got, oracles.encode(x["anchors"].double(), x["gt_boxes"].double()).float(), name,
                     "the deltas", **tol)
        return
    args = (x["anchors"].double(), x["deltas"].double())
    want = oracles.decode(*args, max_shape=x["max_shape"]).float()
    if not _close(got, want, **tol):
        limit = _clamp_limit(x, got)
        if shows(got, want, oracles.decode(*args, max_shape=x["max_shape"], clamp_before_std=True), **tol) or (
                limit is not None and abs(limit - MAX_LOG_RATIO * BOX_STDS[2]) < 1e-3):
            raise mistake(name, f"the log sizes are clamped before the stds scale them: their limit becomes "
                                f"{MAX_LOG_RATIO:.3f} x {BOX_STDS[2]} = {MAX_LOG_RATIO * BOX_STDS[2]:.3f}; multiply "
                                f"the deltas by the stds first, then clamp dw, dh to +-{MAX_LOG_RATIO:.3f} "
                                f"(|log(16 / 1000)|)")
        if limit is not None and abs(limit - MAX_LOG_RATIO) > 1e-3:
            raise mistake(name, f"the clamped log sizes reach +-{limit:.4g}: after multiplying by the stds, "
                                f"clamp dw and dh to +-{MAX_LOG_RATIO:.3f} (|log(16 / 1000)|)")
    expect_close(got, want, name, "the boxes", **tol)


# -- losses, scores, schedule ----------------------------------------------------------------------
def check_focal(submission, name):
    x = submission.inputs("sigmoid_focal_loss", name)
    want, grad = oracles.focal_loss(x["inputs"], x["targets"], x["alpha"], x["gamma"], x["reduction"])
    got = expect_tuple(submission.output("sigmoid_focal_loss", name), 2, name, "the focal loss result")
    if not _close(got[0], want, atol=1e-5, rtol=1e-4) and x["alpha"] >= 0:
        swapped, _ = oracles.focal_loss(x["inputs"], x["targets"], 1 - x["alpha"], x["gamma"], x["reduction"])
        if shows(got[0], want, swapped, atol=1e-5, rtol=1e-4):
            raise mistake(name, "alpha applied to the negatives: alpha_t = alpha for positives (targets 1) and "
                                "1 - alpha for negatives; with alpha 0.25 the rare positives get the smaller "
                                "weight, because gamma already silences the easy negatives")
    value_and_gradients(got, want, [grad], name, "the loss", ("logits",), 1e-5)


def check_diou(submission, name):
    x = submission.inputs("diou_loss", name)
    want, grad = oracles.diou_loss(x["pred"], x["target"])
    got = expect_tuple(submission.output("diou_loss", name), 2, name, "the DIoU result")
    if not _close(got[0], want, atol=1e-5):
        if shows(got[0], want, oracles.diou_variant(x["pred"], x["target"], centre_term=False), atol=1e-4):
            raise mistake(name, "DIoU without the centre-distance term: that is 1 - IoU; add rho^2 / c^2 (squared "
                                "distance of the centres over the squared diagonal of the enclosing box), the "
                                "term that still moves boxes that do not overlap")
        enclosing = ("c is the diagonal of the smallest box enclosing both: from (min x1, min y1) to (max x2, "
                     "max y2)")
        if shows(got[0], want, oracles.diou_variant(x["pred"], x["target"], enclosing=False), atol=1e-4):
            raise mistake(name, f"enclosing box built like the intersection (max of x1, min of x2): {enclosing}, "
                                f"so rho^2 / c^2 <= 1 and the loss stays below 2")
        if isinstance(got[0], torch.Tensor) and float(got[0].detach().max()) > DIOU_MAX + 1e-4:
            raise mistake(name, f"a loss of {float(got[0].detach().max()):.4g} > 2: rho^2 / c^2 > 1, so your c "
                                f"is smaller than the distance of the centres; {enclosing}")
    value_and_gradients(got, want, [grad], name, "the losses", ("predicted boxes",), 1e-5)


def check_iou_aware(submission, name):
    x = submission.inputs("iou_aware_loss", name)
    want, grad = oracles.iou_aware_loss(x["iou_logits"], x["pred_boxes"], x["gt_boxes"], x["avg_factor"])
    got = expect_tuple(submission.output("iou_aware_loss", name), 3, name, "the IoU-aware result")
    expect_all_close([("the loss", got[0], want, 1e-5, 1e-4),
                      ("the gradient w.r.t. the IoU logits", got[1], grad, 1e-5, 1e-4)], name)
    if float(got[2].abs().max()) > 0:
        raise mistake(name, "IoU target not detached: the gradient reaches the decoded boxes through the target; "
                            "compute the target IoU on pred_boxes.detach(), so the IoU branch learns to predict "
                            "the boxes' quality instead of pulling the boxes")


def check_scores(submission, name):
    x = submission.inputs("tinaface_scores", name)
    want = oracles.scores(x["cls_logits"], x["iou_logits"], x.get("alpha", 0.4))
    expect_close(submission.output("tinaface_scores", name), want, name, "the scores", atol=1e-6)


def _warmup_shift(x, got, want) -> int | None:
    """k when the answer's warmup factor at each warmup iteration i is the one of iteration i + k."""
    kw = dict(WARMUP_COSINE_DEFAULTS, **x["kw"])
    warm = [j for j, i in enumerate(x["iterations"]) if i < kw["warmup_iters"]]
    if not warm or not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return None
    cosine = oracles.warmup_cosine_lrs(x["iterations"], x["iters_per_epoch"], x["base_lr"], dict(x["kw"], warmup_iters=0))
    factor = got.detach().double()[warm] / cosine[warm]
    steps = (factor - kw["warmup_ratio"]) / (1 - kw["warmup_ratio"]) * kw["warmup_iters"]
    shift = steps - torch.tensor([x["iterations"][j] for j in warm], dtype=torch.float64)
    k = round(float(shift[0]))
    return k if k != 0 and torch.allclose(shift, torch.full_like(shift, k), atol=1e-3) else None


def check_lr(submission, name, engine: bool):
    """The answer's lrs (``engine``: the lrs the kit's engine sets with the answer as its
    ``lr_schedule``, peak lr x ``warmup_cosine_lr(i, iters_per_epoch, 1.0)``) against vedadet's."""
    x = submission.inputs("warmup_cosine_lr", name)
    want = torch.tensor(
        [oracles.cosine_restart_lr(i, x["iters_per_epoch"], x["base_lr"],
                                   *(dict(WARMUP_COSINE_DEFAULTS, **x["kw"])[k]
                                     for k in ("warmup_iters", "warmup_ratio", "period", "min_lr_ratio")))
         for i in x["iterations"]], dtype=torch.float64)
    called, through_engine = expect_tuple(submission.output("warmup_cosine_lr", name), 2, name,
                                          "the learning rates")
    got = through_engine if engine else called
    what = "the lrs the engine set (warmup_cosine_lr as its lr_schedule)" if engine else "the learning rates"
    if not _close(got, want, atol=1e-12, rtol=1e-6):
        if engine and _close(called, want, atol=1e-12, rtol=1e-6):
            raise mistake(name, "right when called with the case's base_lr, wrong through the engine: the engine "
                                "calls warmup_cosine_lr(iteration, iters_per_epoch, 1.0) and multiplies by the "
                                "optimizer's peak lr, so the lr must be proportional to base_lr (end = base_lr · "
                                "min_lr_ratio; no absolute lr, no global of the notebook)")
        k = _warmup_shift(x, got, want)
        if k is not None:
            raise mistake(name, f"warmup off by {abs(k)} step{'s' if abs(k) > 1 else ''}: at iteration i your "
                                f"warmup factor is that of iteration i {'+' if k > 0 else '-'} {abs(k)}; the factor "
                                f"is warmup_ratio + (1 - warmup_ratio) · i / warmup_iters, so iteration 0 runs at "
                                f"warmup_ratio · lr and iteration warmup_iters is the first at the full lr")
    expect_close(got, want, name, what, atol=1e-12, rtol=1e-6)
