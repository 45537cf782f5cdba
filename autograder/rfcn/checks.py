"""Comparisons for the Face R-FCN units, with feedback that names the classic mistakes from
properties of the answer: the 1-based anchors of the header comment, PS-RoI pooling's corners
rounded half to even (torch.round) or half up (floor(v + 0.5)), bin-major channels (the channel an
output reads, found from its values), Fast NMS instead of greedy NMS. Every expected value comes
from ``oracles`` (called with arguments built from the case's inputs); none is computed here."""
from __future__ import annotations

import torch

from autograder.explain import expect_parameter_shapes, expect_rows, fail, naming, noting
from autograder.feedback import GradingFailure, expect_close, expect_equal, expect_tensor, expect_type
from autograder.rfcn import oracles

EXACT = dict(rtol=0.0, atol=0.0)


def _same(got, want) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.detach().cpu().double(), want.double(), rtol=1e-5, atol=1e-5))


# -- Part 1 ----------------------------------------------------------------------------------------
def check_generate_anchors(submission, names) -> None:
    with noting(submission, "generate_anchors"):
        for name in names:
            got = submission.output("generate_anchors", name)
            want = oracles.generate_anchors(**submission.inputs("generate_anchors", name))
            if _same(got, want + 1):
                raise fail(name, "every coordinate is 1 too large: these are the 1-based MATLAB anchors from "
                                 "the comment at the top of generate_anchors.py (-83 -39 100 56 ...), not what "
                                 "the Python code computes (-84 -40 99 55 ...): the base anchor is "
                                 "(0, 0, base_size - 1, base_size - 1)")
            if isinstance(got, torch.Tensor) and got.shape == want.shape and not _same(got, want) \
                    and _same(got.reshape(-1, 3, 4).transpose(0, 1).reshape(-1, 4) if len(got) % 3 == 0
                              else got, want):
                raise fail(name, "the right anchors in scale-major order: the order is ratio-major (for each "
                                 "ratio, every scale)")
            with naming(lambda: box_property_hint(got, want)):
                expect_close(got, want, name, "anchors", check_dtype=False)


XY_SWAPPED_HINT = ("x and y are swapped ({what}): rows are (x1, y1, x2, y2), x along the width; a ratio is "
                   "h / w, so ratio 2 is twice as tall as wide")
SIDES_WRONG_HINT = ("the anchors are centred right but their sides are wrong: w = round(sqrt(base_size² / "
                    "ratio)), h = round(w · ratio) (half to even), both times the scale, and x2 - x1 + 1 = w")


def box_property_hint(got, want) -> str | None:
    """(x1, y1, x2, y2) rows named from what they are: x and y swapped; centres right, sides wrong."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dim() != 2 or got.shape[1] != 4:
        return None
    g, w = got.detach().cpu().double(), want.double()
    if not _same(w[:, [1, 0, 3, 2]], w) and _same(g[:, [1, 0, 3, 2]], w):
        return XY_SWAPPED_HINT.format(what="or the ratio taken as w / h")
    if _same(g[:, :2] + g[:, 2:], w[:, :2] + w[:, 2:]):
        return SIDES_WRONG_HINT
    return None


SHIFTS_SWAPPED_HINT = ("the shifts are (i, j, i, j) · stride: x and y are swapped; anchor (i, j, a) is base[a] + "
                       "(j, i, j, i) · stride (j the column, along x)")


def check_shift_anchors(submission, names) -> None:
    with noting(submission, "shift_anchors"):
        for name in names:
            x = submission.inputs("shift_anchors", name)
            want = oracles.shift_anchors(x["base"], x["feat_h"], x["feat_w"], x["stride"])
            got = submission.output("shift_anchors", name)
            if isinstance(got, torch.Tensor) and got.shape == want.shape and len(want):
                base = x["base"].double().repeat(x["feat_h"] * x["feat_w"], 1)       # [H*W*A, 4]
                shifts, want_shifts = got.detach().cpu().double() - base, want.double() - base
                if not _same(want_shifts[:, [1, 0, 3, 2]], want_shifts) and _same(shifts[:, [1, 0, 3, 2]], want_shifts):
                    raise fail(name, SHIFTS_SWAPPED_HINT)
            expect_rows(submission.output("shift_anchors", name), want, name, "anchors", "[H*W*A, 4]",
                        "rows go row i, then column j, then anchor a (the RPN's flattening order); anchor "
                        "(i, j, a) is base[a] + (j, i, j, i) * stride")


def check_coding(submission, unit: str, names) -> None:
    with noting(submission, unit):
        for name in names:
            x = submission.inputs(unit, name)
            got = submission.output(unit, name)
            if unit == "bbox_transform":
                want = oracles.bbox_transform(x["rois"], x["gt"], x["stds"])
            else:
                want = oracles.bbox_transform_inv(x["rois"], x["deltas"], x["stds"])
            if unit == "bbox_transform" and len(want) and _same(got, oracles.bbox_transform(
                    x["rois"] + torch.tensor([0.0, 0, 1, 1], dtype=x["rois"].dtype), x["gt"] +
                    torch.tensor([0.0, 0, 1, 1], dtype=x["rois"].dtype), x["stds"])):
                raise fail(name, "you use the +1 convention (w = x2 - x1 + 1); this homework is continuous: "
                                 "w = x2 - x1, centre x1 + w / 2")
            expect_close(got, want, name, "deltas" if unit == "bbox_transform" else "boxes")


def check_round_trip(submission, unit: str) -> None:
    from autograder.rfcn.cases import CODING_ROUND_TRIP as name
    with noting(submission, unit):
        x = submission.inputs(unit, name)
        got = submission.output(unit, name)
        want = x["gt"] if unit == "bbox_transform_inv" else x["deltas"]
        expect_close(got, want, name, "round trip", rtol=1e-6, atol=1e-6)


def check_clip(submission, names) -> None:
    with noting(submission, "clip_boxes"):
        for name in names:
            x = submission.inputs("clip_boxes", name)
            args = (x["boxes"], x["image_size"])
            got = submission.output("clip_boxes", name)
            if len(x["boxes"]) and _same(got, oracles.clip_boxes(*args, last_pixel=True)):
                raise fail(name, "you clip to W - 1 / H - 1 (inclusive pixels, py-faster-rcnn); in the continuous "
                                 "convention the image spans 0 ... W, so clip x to [0, W] and y to [0, H]")
            if len(x["boxes"]) and _same(got, oracles.clip_boxes(*args, swap_axes=True)):
                raise fail(name, "x is clipped by H and y by W: image_size is (H, W)")
            expect_close(got, oracles.clip_boxes(*args), name, "boxes")


def check_nms(submission, names) -> None:
    with noting(submission, "nms_vectorised"):
        for name in names:
            x = submission.inputs("nms_vectorised", name)
            want = oracles.nms(x["boxes"], x["scores"], x["iou_threshold"])
            got = submission.output("nms_vectorised", name)
            fast = oracles.fast_nms(x["boxes"], x["scores"], x["iou_threshold"])
            if (isinstance(got, torch.Tensor) and not torch.equal(fast, want) and got.shape == fast.shape
                    and torch.equal(got.cpu(), fast)):
                raise fail(name, "this is Fast NMS (one pass of triu(IoU).max(0)): a box removed by a better "
                                 "box still removes others. Greedy NMS lets only *kept* boxes remove: iterate "
                                 "the step with the kept rows until nothing changes")
            with naming(lambda: nms_property_hint(got, x["boxes"], x["scores"], x["iou_threshold"], want)):
                expect_equal(got, want, name, what="kept indices (torchvision.ops.nms order)")


NOT_DESCENDING_HINT = ("the kept boxes are not in descending score order ({how}): sort the scores descending "
                       "(stable) first and return the kept indices in that order, as torchvision.ops.nms does")
SUPPRESS_EQUAL_HINT = ("a box whose IoU with a kept box equals iou_threshold exactly was removed: remove only "
                       "IoU > iou_threshold (threshold 0 keeps disjoint boxes)")


def nms_property_hint(got, boxes, scores, thresh, want) -> str | None:
    """NMS named from what the answer is: kept scores not descending (ascending, no order); a removed
    box at IoU exactly the threshold with a kept, better one."""
    if not isinstance(got, torch.Tensor) or got.dim() != 1 or got.dtype.is_floating_point or got.numel() == 0:
        return None
    got = got.cpu().long()
    if got.min() < 0 or got.max() >= len(scores):
        return None
    kept = scores[got].double()
    if len(kept) > 1 and bool((kept[1:] > kept[:-1]).any()):
        how = "they ascend" if bool((kept[1:] >= kept[:-1]).all()) else "they are in no order"
        return NOT_DESCENDING_HINT.format(how=how)
    removed = sorted(set(want.tolist()) - set(got.tolist()))
    if removed:
        iou = oracles.box_iou(boxes.double(), boxes.double())
        for j in removed:
            if any(abs(float(iou[i, j]) - thresh) < 1e-9 and scores[i] >= scores[j] for i in got.tolist()):
                return SUPPRESS_EQUAL_HINT
    return None


# -- Part 2 ----------------------------------------------------------------------------------------
def _psroi_case(submission, name):
    """(inputs, the oracle's arguments built from them, the answer checked for its shape)."""
    x = submission.inputs("ps_roi_pool", name)
    args = (x["features"], x["rois"], x["output_size"], x["spatial_scale"])
    got = expect_tensor(submission.output("ps_roi_pool", name), name)
    kh, kw = (args[2], args[2]) if isinstance(args[2], int) else tuple(args[2])
    want_shape = [len(args[1]), args[0].shape[1] // (kh * kw), kh, kw]
    if list(got.shape) != want_shape:
        raise fail(name, f"the output should be [R, C_in / (kh * kw), kh, kw] = {want_shape}, got {list(got.shape)}")
    return x, args, got.detach().cpu()


def _layout_hint(got, args) -> str | None:
    """Names the channel layout the answer reads, found from its values: for each output (c, i, j),
    the input channels whose mean over bin (i, j) equals it on every RoI."""
    means = oracles.ps_bin_means(*args)                                      # [R, C_in, kh, kw]
    _, channels, kh, kw = got.shape
    if not len(got) or not channels:
        return None
    hits = ((got.double()[:, :, None] - means.double()[:, None]).abs() <= 1e-5 * (1 + means.double().abs()[:, None]))
    read = hits.all(0)                                                       # [C, C_in, kh, kw]
    layouts = {"class-major c * k * k + i * k + j (right)": lambda c, i, j: (c * kh + i) * kw + j,
               "bin-major (i * k + j) * C + c": lambda c, i, j: (i * kw + j) * channels + c,
               "class-major with the bin's row and column swapped, c * k * k + j * k + i":
                   lambda c, i, j: (c * kw + j) * kh + i}
    for layout, channel in list(layouts.items())[1:]:
        if kh != kw and "swapped" in layout:
            continue
        moved = [(c, i, j) for c in range(channels) for i in range(kh) for j in range(kw)
                 if channel(c, i, j) != (c * kh + i) * kw + j]
        if moved and all(read[c, channel(c, i, j), i, j] and not read[c, (c * kh + i) * kw + j, i, j]
                         for c, i, j in moved):
            if "bin-major" in layout:
                return ("your channels are bin-major: output (c, i, j) equals the bin's mean of input channel "
                        "(i * k + j) * C + c; torchvision's (and Caffe R-FCN's) layout is class-major: channel "
                        "c * k * k + i * k + j (all bins of class 0, then all bins of class 1)")
            return ("output (c, i, j) reads input channel c * k * k + j * k + i: the bin's row and column are "
                    "swapped in the channel index; channel c * k * k + i * k + j (i: row, j: column)")
    return None


def _pooling_hint(got, args) -> str | None:
    """Names a different reduction over the bins or truncated corners, from the answer's values."""
    for reduce, words in (("sum", "each bin's sum, not its mean: divide by the bin's number of cells"),
                          ("max", "each bin's maximum, not its mean: PS-RoI pooling averages the bin")):
        if _same(got, oracles.ps_roi_pool(*args, reduce=reduce)):
            return words
    if any(_same(got, oracles.ps_roi_pool(*args, rounding=rule)) for rule in ("down", "toward zero")):
        return ("the scaled corners are truncated (floor / .long() / int()), not rounded: a corner at 2.7 "
                "cells is cell 3; round x * spatial_scale to the nearest cell")
    return None


def check_psroi_idea(submission, names) -> None:
    """Class-major channels, k x k bins, averages, on RoIs where every round-to-nearest rule and
    either clamp agree (inputs.inner_rois), to rtol 1e-6."""
    with noting(submission, "ps_roi_pool"):
        for name in names:
            _, args, got = _psroi_case(submission, name)
            want = oracles.ps_roi_pool_torchvision(*args)
            if len(want) and not _same(got, want):
                hint = _layout_hint(got, args) or _pooling_hint(got, args)
                if hint:
                    raise fail(name, hint)
            expect_close(got, want, name, "pooled scores", rtol=1e-6, atol=1e-6)


def _rounding_rule(got, args) -> str | None:
    """The other rounding rule (a key of ROUNDING_WORDS) that explains the answer on every RoI, if any."""
    for rule in ROUNDING_WORDS:
        if _same(got, oracles.ps_roi_pool(*args, rounding=rule)):
            return rule
    return None


# the rounding rules other than torchvision's that the feedback names (oracles.ROUNDING implements them;
# names only here: in the student bundle ``oracles`` replays recorded calls and holds no constants)
ROUNDING_WORDS = {
    "half to even": "torch.round (like np.round and Python's round) rounds half to even: round(2.5) = 2, "
                    "round(-0.5) = 0",
    "half up": "floor(v + 0.5) rounds half up: -0.5 becomes 0 and -1.5 becomes -1",
    "down": "floor rounds down: 2.5 becomes 2 and -0.5 becomes -1",
    "toward zero": ".long(), int() and torch.trunc round toward zero: 2.5 becomes 2 and -0.5 becomes 0",
}


def check_psroi_rounding(submission, names) -> None:
    """Corners at n + 0.5 cells: torchvision's std::round (half away from zero) decides the cell."""
    with noting(submission, "ps_roi_pool"):
        for name in names:
            _, args, got = _psroi_case(submission, name)
            want = oracles.ps_roi_pool_torchvision(*args)
            if len(want) and not _same(got, want):
                rule = _rounding_rule(got, args)
                if rule:
                    raise fail(name, f"your answer rounds the corners' n + 0.5 cells {rule}: "
                                     f"{ROUNDING_WORDS[rule]}. torchvision's kernel uses std::round, half away "
                                     "from zero (2.5 -> 3, -0.5 -> -1): write it with torch.trunc and torch.sign")
                hint = _layout_hint(got, args) or _pooling_hint(got, args)
                if hint:
                    raise fail(name, hint)
            expect_close(got, want, name, "pooled scores (round half away from zero)", rtol=1e-6, atol=1e-6)


def check_psroi_torchvision(submission, names) -> None:
    """torch.equal to torchvision with its artefacts: std::round on RoIs past the border and bin
    ends clamped to W - 1 (the last row and column are never pooled)."""
    with noting(submission, "ps_roi_pool"):
        for name in names:
            _, args, got = _psroi_case(submission, name)
            want = oracles.ps_roi_pool_torchvision(*args)
            if len(want) and not torch.equal(got, want):
                if _same(got, oracles.ps_roi_pool(*args, clip_last=False)):
                    raise fail(name, "your bin ends are clamped to W (and H); torchvision's forward clamps them "
                                     "to W - 1, so it never pools the last row and column (its artefact: "
                                     "arange(36) as [1, 4, 3, 3], RoI (0, 0, 3, 3), k = 2 gives 31 in bin (1, 1))")
                rule = _rounding_rule(got, args)
                if rule:
                    raise fail(name, f"the corners are rounded {rule} ({ROUNDING_WORDS[rule]}); torchvision "
                                     "rounds half away from zero")
            expect_close(got, want, name, "pooled scores (torch.equal to torchvision)", **EXACT)


def check_psroi_grad(submission, name) -> None:
    with noting(submission, "ps_roi_pool"):
        x = submission.inputs("ps_roi_pool", name)
        want = oracles.ps_roi_pool_grad(x["features"], x["rois"], x["output_size"], x["spatial_scale"], x["weights"])
        got = submission.output("ps_roi_pool", name)
        if got is None:
            raise fail(name, "no gradient reached the features: do not detach them or use integer tensors "
                             "on the path from the features to the output")
        expect_close(got, want, name, "d(sum w * out) / d features", rtol=1e-7, atol=1e-9)


def check_vote(submission, names) -> None:
    with noting(submission, "ps_average_vote"):
        for name in names:
            x = submission.inputs("ps_average_vote", name)
            expect_close(submission.output("ps_average_vote", name), oracles.ps_average_vote(x["pooled"], x["weights"]),
                         name, "votes")


def check_reference(submission, unit: str, names, layout: str = "", hint: str = "") -> None:
    with noting(submission, unit):
        for name in names:
            got, want = submission.output(unit, name), submission.reference(unit, name)
            if isinstance(want, dict) and all(isinstance(v, list) for v in want.values()):
                expect_parameter_shapes(got, want, name)
            elif isinstance(want, (tuple, list)):
                expect_type(got, (tuple, list), name)
                if len(got) != len(want):
                    raise fail(name, f"expected {len(want)} outputs, got {len(got)}")
                for i, (g, w) in enumerate(zip(got, want)):
                    expect_rows(g, w, name, f"output {i}", layout, hint) if layout else \
                        expect_close(g, w, name, f"output {i}")
            else:
                expect_close(got, want, name)


def check_rfcn_forward(submission, names) -> None:
    with noting(submission, "rfcn", names_case="state_dict names, resnet18-lite"):
        for name in names:
            got, want = submission.output("rfcn", name), submission.reference("rfcn", name)
            expect_type(got, dict, name, "RFCN's forward outputs plus head outputs")
            missing = [k for k in want if k not in got]
            if missing:
                raise fail(name, f"forward must return a dict with keys {list(want)[:4]}; missing {missing}")
            for key, value in want.items():
                g = expect_tensor(got[key], name, key)
                if key.endswith("_maps") and g.shape[1] != value.shape[1]:
                    raise fail(name, f"{key} has {g.shape[1]} channels, expected {value.shape[1]} "
                                     f"(cls: 2 * k * k, box: 4 * k * k class-agnostic)")
                expect_close(g, value, name, key)


def expect_subset(got: torch.Tensor, allowed: torch.Tensor, case: str, what: str) -> None:
    bad = got & ~allowed
    if bad.any():
        raise GradingFailure(f"case '{case}': {what} ({int(bad.sum())} entries, first at "
                             f"{int(torch.nonzero(bad)[0])})")
