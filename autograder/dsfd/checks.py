"""How the DSFD homework's outputs are checked, and the feedback naming the classic mistakes: taps
at the wrong stride, first-shot anchors not halved, ``align_corners=True``, FEM branches reading a
channel split, shots normalised by another shot's positives. ``test_dsfd*.py`` call these."""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.models._utils import _make_divisible
from torchvision.models.efficientnet import _efficientnet_conf

from autograder.dsfd import cases, oracles
from autograder.explain import expect_parameter_shapes, expect_rows, fail, noting
from autograder.feedback import describe, expect_close, expect_equal, expect_type

FILTER_DIVISOR = 8
PIXEL_TOLERANCE = 1          # uint8 levels: the crop against cv2.warpAffine from the returned info


def _close(got, want) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.detach().double().cpu(), want.double(), rtol=1e-4, atol=1e-5))


# -- L2Norm, upsample-product, FEM ----------------------------------------------------------------
def check_l2norm_init(submission, name):
    got = submission.output("l2norm", name)
    expect_type(got, dict, name, "the result")
    expect_parameter_shapes(got["shapes"], {"weight": [6]}, name)
    expect_close(got["weight"], torch.full((6,), 10.0, dtype=torch.float64), name,
                 "weight (it starts at `scale` for every channel)")


def check_l2norm(submission, names):
    for name in names:
        x = submission.inputs("l2norm", name)
        with noting(submission, "l2norm", cases.L2NORM_INIT_CASE):
            expect_close(submission.output("l2norm", name), oracles.l2norm(x["x"], x["channels"]), name,
                         "L2Norm(x) (against F.normalize(x, dim=1) * weight)")
            expect_close(submission.output("l2norm", name), submission.reference("l2norm", name), name)


ALIGN_CORNERS_HINT = ("your upsampling uses align_corners=True (the behaviour of the public code's PyTorch "
                      "0.3); use F.interpolate(x, size=y.shape[-2:], mode='bilinear', align_corners=False)")


def check_upsample(submission, names):
    for name in names:
        x = submission.inputs("upsample_product", name)
        got = submission.output("upsample_product", name)
        want = oracles.upsample_product(x["x"], x["y"])
        if not _close(got, want) and _close(got, oracles.upsample_product(x["x"], x["y"], align_corners=True)):
            raise fail(name, ALIGN_CORNERS_HINT)
        expect_close(got, want, name, "upsample_product(x, y)")
        expect_close(got, submission.reference("upsample_product", name), name)


SPLIT_HINT = ("every FEM branch must read the whole input x (all C channels); your branches read a "
              "channel split (in_channels C//3): the paper's figure draws a split, the public code "
              "and its checkpoint do not")


def check_fem_names(submission, name):
    got = submission.output("fem", name)
    channels = submission.inputs("fem", name)["channels"]
    if isinstance(got, dict) and "branch1.weight" in got and list(got["branch1.weight"])[1:2] != [channels]:
        raise fail(name, f"{SPLIT_HINT} (branch1.weight is {list(got['branch1.weight'])})")
    expect_parameter_shapes(got, oracles.fem_shapes(channels), name)


def check_fem(submission, names):
    for name in names:
        x = submission.inputs("fem", name)
        with noting(submission, "fem", cases.FEM_NAMES_CASE):
            expect_close(submission.output("fem", name), oracles.fem(x["x"], x["channels"]), name, "FEM(x)")
            expect_close(submission.output("fem", name), submission.reference("fem", name), name)


# -- EfficientNet sources --------------------------------------------------------------------------
def module_strides(features: torch.nn.Sequential, image_size: int) -> list[int]:
    """The stride of every module's output for a square zero image."""
    strides, x = [], torch.zeros(1, 3, image_size, image_size)
    features.eval()
    with torch.no_grad():
        for module in features:
            x = module(x)
            strides.append(image_size // x.shape[-1])
    return strides


def stride_mismatch(strides: list[int], wanted) -> str | None:
    """Feedback for sources whose strides differ from the anchor steps, or None."""
    wrong = [(k, s, t) for k, (s, t) in enumerate(zip(strides, wanted)) if s != t]
    if not wrong:
        return None
    k, s, t = wrong[0]
    return (f"stride mismatch: source {k} has stride {s}, but its anchors step {t} pixels "
            f"(sources at strides {list(strides)} for anchor steps {list(wanted)}): the anchors of that "
            f"level are laid out for another grid and point at the wrong places — the course project's "
            f"EfficientNet bug (taps at strides 16/32/32/32). Tap the last block of each stride")


def check_taps(submission, names):
    for name in names:
        x = submission.inputs("efficientnet_sources", name)
        got = submission.output("efficientnet_sources", name)
        features = x["features"]()
        strides = module_strides(features, x["image_size"])
        want = [max(i for i, s in enumerate(strides[:-1]) if s == t) for t in x["strides"]]
        expect_type(got, (list, tuple), name, "find_taps(...)")
        if list(got) == want:
            continue
        if len(got) == len(want) and all(isinstance(t, int) and 0 <= t < len(strides) for t in got):
            hint = stride_mismatch([strides[t] for t in got], x["strides"])
            if hint:
                raise fail(name, hint)
            raise fail(name, f"find_taps returned {list(got)}, expected {want}: the strides are right, "
                             f"but take the LAST module of each stride (deepest features), never the "
                             f"final head module")
        raise fail(name, f"find_taps returned {got!r}, expected {want}")


def check_sources(submission, names):
    for name in names:
        x = submission.inputs("efficientnet_sources", name)
        got = submission.output("efficientnet_sources", name)
        expect_type(got, (list, tuple), name, "EfficientNetSources(x)")
        height = x["image"].shape[-2]
        if len(got) == len(x["taps"]) and all(isinstance(m, torch.Tensor) and m.dim() == 4 for m in got):
            hint = stride_mismatch([height // m.shape[-2] for m in got], cases.SOURCE_STRIDES)
            if hint:
                raise fail(name, hint)
        want = submission.reference("efficientnet_sources", name)
        if len(got) != len(want):
            raise fail(name, f"expected {len(want)} maps (one per tap), got {len(got)}")
        for k, (g, w) in enumerate(zip(got, want)):
            expect_close(g, w, name, f"map {k}")


# -- the model -------------------------------------------------------------------------------------
def check_dsfd_names(submission, name):
    with noting(submission, "dsfd"):
        expect_parameter_shapes(submission.output("dsfd", name), submission.reference("dsfd", name), name)


MODEL_ORDER_HINT = ("each head's output is permuted to [B, H, W, C] before the reshape, and the six "
                    "levels are concatenated finest first")


def check_dsfd_forward(submission, names):
    for name in names:
        with noting(submission, "dsfd", names_case=cases.DSFD_NAMES_CASE):
            got = submission.output("dsfd", name)
            want = submission.reference("dsfd", name)
            outputs = got["outputs"]
            if not isinstance(outputs, (tuple, list)) or len(outputs) != 4:
                raise fail(name, f"in training mode forward should return (loc1, conf1, loc2, conf2), got "
                                 f"{describe(outputs)}")
            labels = ("loc1 (first shot)", "conf1 (first shot)", "loc2 (second shot)", "conf2 (second shot)")
            for what, g, w in zip(labels, outputs, want["outputs"]):
                expect_rows(g, w, name, what, f"[B, P, {w.shape[-1]}]", MODEL_ORDER_HINT)
            if not got["eval_is_second_shot"]:
                raise fail(name, "in eval mode forward should return only the second shot, (loc2, conf2), "
                                 "identical to the last two outputs of training mode")


# -- compound scaling ------------------------------------------------------------------------------
def check_compound(submission, names):
    for name in names:
        x = submission.inputs("compound_scaling", name)
        got = submission.output("compound_scaling", name)
        expect_type(got, (list, tuple), name, "the results")
        kw = {"alpha": 1.2, "beta": 1.1, "gamma": 1.15, "base_resolution": 224, **x["kwargs"]}
        for phi, result in zip(x["phis"], got):
            expect_type(result, dict, name, f"compound_scaling({phi})")
            want = {"depth": kw["alpha"] ** phi, "width": kw["beta"] ** phi,
                    "resolution": int(round(kw["base_resolution"] * kw["gamma"] ** phi))}
            for key, value in want.items():
                if key not in result or not math.isclose(float(result[key]), value, rel_tol=1e-9):
                    raise fail(name, f"compound_scaling({phi})[{key!r}] should be {value!r}, got "
                                     f"{result.get(key)!r} (depth = alpha**phi, width = beta**phi, "
                                     f"resolution = round(base_resolution * gamma**phi))")


def check_filters(submission, names, torchvision_stages: bool = False):
    """round_filters against torchvision's ``_make_divisible``; with ``torchvision_stages`` the stage
    widths (all but the stem) also against torchvision's EfficientNet-B0..B7 configurations."""
    for name in names:
        x = submission.inputs("compound_scaling", name)
        got = submission.output("compound_scaling", name)
        expect_type(got, (list, tuple), name, "the results")
        for w, g in zip(x["widths"], got):
            want = [_make_divisible(f * w, FILTER_DIVISOR) for f in x["filters"]]
            if torchvision_stages:
                setting = _efficientnet_conf("efficientnet_b0", width_mult=w, depth_mult=1.0)[0]
                want = want[:1] + [c.out_channels for c in setting]
            if list(g) != want:
                raise fail(name, f"round_filters(f, {w}) for f in {x['filters']}: expected {want}, got {list(g)} "
                                 f"(nearest multiple of 8 with halves up, at least 8, +8 if below 90 %)")


def check_repeats(submission, names):
    for name in names:
        x = submission.inputs("compound_scaling", name)
        got = submission.output("compound_scaling", name)
        for d, g in zip(x["depths"], got):
            stages = [c.num_layers for c in _efficientnet_conf("efficientnet_b0", width_mult=1.0, depth_mult=d)[0]]
            if list(g) != stages:
                raise fail(name, f"round_repeats(n, {d}) for n in {x['repeats']}: torchvision's EfficientNet has "
                                 f"{stages} blocks per stage, got {list(g)} (round up: ceil(depth * n))")


# -- anchors ----------------------------------------------------------------------------------------
NOT_HALVED_HINT = ("the first shot's anchors must be half the second shot's (8..256 vs 16..512 pixels at "
                   "the same steps 4..128): yours are the same size")


XY_SWAPPED_HINT = ("x and y are swapped in the {what}: rows are (cx, cy, w, h), x (columns, the width W) "
                   "first, then y (rows, the height H)")
SIZES_WRONG_HINT = ("the centres are right but the sizes are not: a square anchor of side s pixels is "
                    "w = s / W, h = s / H (second shot s = anchor_sizes, first shot s / 2)")


def anchor_property_hint(got, want) -> str | None:
    """(cx, cy, w, h) rows named from what they are: x and y swapped; centres right, sizes wrong."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dim() != 2 or got.shape[1] != 4:
        return None
    g, w = got.detach().cpu().double(), want.double()
    for columns, what in (([1, 0, 3, 2], "anchors"), ([1, 0, 2, 3], "centres"), ([0, 1, 3, 2], "sizes")):
        if not _close(w[:, columns], w) and _close(g[:, columns], w):
            return XY_SWAPPED_HINT.format(what=what)
    return SIZES_WRONG_HINT if _close(g[:, :2], w[:, :2]) else None


def check_priors(submission, name):
    x = submission.inputs("pal_priors", name)
    got = submission.output("pal_priors", name)
    expect_type(got, (tuple, list), name, "pal_priors(...)")
    if len(got) != 2:
        raise fail(name, f"pal_priors should return (first, second), got {describe(got)}")
    first, second = oracles.pal_priors(x["cfg"], x["image_size"])
    if _close(got[0], second) and _close(got[1], second):
        raise fail(name, NOT_HALVED_HINT)
    if _close(got[0], second) and _close(got[1], first):
        raise fail(name, "the two shots are swapped: return (first, second), the first shot's anchors being the small ones")
    for shot, g, w in (("the first shot's anchors", got[0], first), ("the second shot's anchors", got[1], second)):
        if not _close(g, w):
            hint = anchor_property_hint(g, w)
            if hint is not None:
                raise fail(name, f"{shot}: {hint}")
        expect_close(g, w, name, shot)
    if submission.units["pal_priors"].case(name).reference:
        ref = submission.reference("pal_priors", name)
        expect_close(got[0], ref[0], name, "the first shot's anchors")


# -- anchor compensation -------------------------------------------------------------------------------
def check_compensation(submission, names):
    for name in names:
        x = submission.inputs("anchor_compensation", name)
        want = oracles.anchor_compensation(x["iou"], x["assigned"], x["min_anchors"], x["min_iou"])
        got = submission.output("anchor_compensation", name)
        expect_equal(got, want, name, "the compensated assignment")
        expect_equal(got, submission.reference("anchor_compensation", name), name, "the compensated assignment")


# -- the loss ----------------------------------------------------------------------------------------
GRADIENT_NAMES = ("the first shot's loc", "the first shot's conf", "the second shot's loc", "the second shot's conf")
OWN_POSITIVES_HINT = ("each shot must be divided by its OWN number of positives: the first shot's small "
                      "anchors match a different number of anchors than the second shot's")


WRONG_COUNT_HINT = ("{part} is divided by {count} ({value}) instead of its shot's number of positive anchors "
                    "({positives}): the ratio to the expected loss is {value} / {positives}; divide each shot's "
                    "summed loss by the positives of that shot in the whole batch")


def wrong_count_hint(values: dict, want: dict, counts: dict) -> str | None:
    """A loss part divided by the wrong count, named from its ratio to the expected part: the batch
    size, the shot's anchors per image, or the anchors of the whole batch."""
    for part, value in values.items():
        shot = "first" if part.endswith("first") else "second"
        positives = max(counts[shot], 1)
        if math.isclose(value, want[part], rel_tol=1e-4, abs_tol=1e-5) or abs(want[part]) < 1e-8:
            continue
        anchors = counts[f"anchors_{shot}"]
        for count, n in (("the batch size", counts["batch"]), ("the number of anchors per image", anchors),
                         ("the number of anchors in the batch (B x P)", counts["batch"] * anchors)):
            if n != positives and math.isclose(value, want[part] * positives / n, rel_tol=1e-4, abs_tol=1e-7):
                return WRONG_COUNT_HINT.format(part=part, count=count, value=n, positives=positives)
    return None


def check_loss(submission, names):
    for name in names:
        x = submission.inputs("progressive_anchor_loss", name)
        got = submission.output("progressive_anchor_loss", name)
        expect_type(got, dict, name, "the loss parts")
        missing = [k for k in cases.LOSS_PARTS if k not in got]
        if missing:
            raise fail(name, f"the loss should return a dict with {list(cases.LOSS_PARTS)}; missing {missing}")
        counts = {}
        want = oracles.progressive_anchor_loss(x, counts=counts)
        values = {k: float(got[k]) for k in cases.LOSS_PARTS}
        if not all(math.isclose(values[k], want[k], rel_tol=1e-4, abs_tol=1e-5) for k in want):
            for wrong in ("second", "both"):
                other = oracles.progressive_anchor_loss(x, wrong)
                if other != want and all(math.isclose(values[k], other[k], rel_tol=1e-4, abs_tol=1e-5) for k in other):
                    raise fail(name, OWN_POSITIVES_HINT)
            hint = wrong_count_hint(values, want, counts)
            if hint is not None:
                raise fail(name, hint)
            with noting(submission, "progressive_anchor_loss"):
                worst = max(want, key=lambda k: abs(values[k] - want[k]))
                raise fail(name, f"{worst} is {values[worst]:.6g}, expected {want[worst]:.6g} (all parts: "
                                 f"expected { {k: round(v, 5) for k, v in want.items()} })")
        ref = submission.reference("progressive_anchor_loss", name)
        for k in cases.LOSS_PARTS:
            expect_close(got[k].detach().reshape(()).float(), ref[k].reshape(()).float(), name, k)
        for what, g, want in zip(GRADIENT_NAMES, got.get("gradients", ()), ref["gradients"]):
            if g.abs().max() == 0 < want.abs().max():
                raise fail(name, f"the gradient of the loss with respect to {what} is zero: the loss is detached "
                                 f"from the predictions (.item(), .detach(), a new tensor built from numbers), so "
                                 f"it would train nothing")
            expect_close(g, want, name, f"the gradient with respect to {what}")


# -- data-anchor-sampling ----------------------------------------------------------------------------
def check_das_invariants(submission, names):
    for name in names:
        x = submission.inputs("data_anchor_sampling", name)
        got = submission.output("data_anchor_sampling", name)
        boxes, n = np.asarray(x["boxes"], np.float64), len(x["boxes"])
        out = np.asarray(got["boxes"])
        if out.shape != (n, 4):
            raise fail(name, f"return every face ({n} boxes [n, 4], none dropped or clipped: the caller decides "
                             f"what to keep); got shape {list(out.shape)}")
        ratio, (x0, y0), face, anchor = got["ratio"], got["offset"], got["face"], got["anchor"]
        if not 0 <= face < n:
            raise fail(name, f"info['face'] = {face} is not a face index")
        expected = boxes * ratio - np.float64([x0, y0, x0, y0])
        if not np.allclose(out, expected, rtol=1e-6, atol=1e-6):
            raise fail(name, "boxes must be shifted exactly: boxes * ratio - (x0, y0, x0, y0) with the returned "
                             "ratio and offset")
        w, h = boxes[face, 2:] - boxes[face, :2]
        side = math.sqrt(w * h)
        sizes = list(x["anchor_sizes"])
        nearest = int(np.argmin(np.abs(np.float64(sizes) - side)))
        allowed = sizes[:min(nearest + 1, len(sizes) - 1) + 1]
        if anchor not in allowed:
            raise fail(name, f"the chosen anchor {anchor} should be one of {allowed} (up to one above the nearest "
                             f"anchor to the face's size {side:.1f})")
        if not anchor / 2 - 1e-6 <= side * ratio <= 2 * anchor + 1e-6:
            raise fail(name, f"the chosen face ends up {side * ratio:.1f} px, not within [anchor/2, 2·anchor] "
                             f"= [{anchor / 2:g}, {2 * anchor:g}]")
        crop_size = x["crop_size"]
        fx1, fy1, fx2, fy2 = out[face]
        if max(fx2 - fx1, fy2 - fy1) <= crop_size - 1 and not (
                fx1 >= -1e-6 and fy1 >= -1e-6 and fx2 <= crop_size + 1e-6 and fy2 <= crop_size + 1e-6):
            raise fail(name, f"the chosen face fits in the crop but is cut: it is at {out[face].round(2).tolist()} "
                             f"in a {crop_size} x {crop_size} crop")
        crop = np.asarray(got["crop"])
        want_crop = oracles.warp(x["image"], ratio, (x0, y0), crop_size)
        if crop.shape != want_crop.shape or crop.dtype != np.uint8:
            raise fail(name, f"the crop should be uint8 {list(want_crop.shape)}, got {describe(crop)}")
        if np.abs(crop.astype(int) - want_crop.astype(int)).max() > PIXEL_TOLERANCE:
            raise fail(name, "the crop is not the image resized by ratio and cut at (x0, y0) (cv2.warpAffine "
                             "with [[ratio, 0, t_x], [0, ratio, t_y]], t = 0.5 (ratio - 1) - (x0, y0), mean border)")


def check_das_draws(submission, names):
    """Which face, anchor, ratio and offset a seed gives: the documented order of draws."""
    for name in names:
        x = submission.inputs("data_anchor_sampling", name)
        got = submission.output("data_anchor_sampling", name)
        want = oracles.data_anchor_sampling(x["image"], x["boxes"], x["seed"], x["anchor_sizes"], x["crop_size"])
        for key in ("face", "anchor", "offset"):
            if list(np.atleast_1d(got[key])) != list(np.atleast_1d(want[key])):
                raise fail(name, f"with this seed info[{key!r}] should be {want[key]}, got {got[key]}: draw in the "
                                 f"documented order (face, anchor, u, x0, y0) from the rng passed in")
        if not math.isclose(got["ratio"], want["ratio"], rel_tol=1e-9):
            raise fail(name, f"ratio should be {want['ratio']:.6g}, got {got['ratio']:.6g}")
        ref = submission.reference("data_anchor_sampling", name)
        if list(got["offset"]) != list(ref["offset"]) or got["face"] != ref["face"]:
            raise fail(name, "the draws differ from the reference solution's")
