"""How the RetinaFace homework's outputs are checked, and what the feedback says when they are wrong:
expected layouts, the classic mistakes (a head without the permute, anchors at the cells' corners,
missing variances, matching without forcing) and, for matching, why each anchor gets its label.

The graded tests in ``test_retinaface.py`` call these with the submission and case names.
"""
import math

import torch
from torch import nn

from autograder.retinaface import cases
from autograder.retinaface import oracles
from autograder.explain import expect_parameter_shapes, expect_rows, fail, matches_reference, noting
from autograder.feedback import (DEFAULT_ATOL, DEFAULT_RTOL, GradingFailure, describe, expect_close,
                                 expect_equal, expect_tensor, expect_type, reordered)
from autograder.modules import MODEL_DTYPE, deterministic_weights

# -- Part 2: the heads -----------------------------------------------------------------------------
HEADS = {"bbox_head": 4, "landmark_head": 10}  # unit: values per anchor
HEAD_ORDER_HINT = ("permute the convolution's output to [B, H, W, C] (channels last) before view, "
                   "as ClassHead does, so that each row holds one anchor of one cell")


def _head_oracle(x, columns):
    """The head's output written out: a 1x1 convolution is a matrix product over channels."""
    holder = nn.Module()
    holder.conv1x1 = nn.Conv2d(x["inchannels"], x["num_anchors"] * columns, kernel_size=1)
    deterministic_weights(holder.to(MODEL_DTYPE))
    weight, bias = holder.conv1x1.weight.detach()[:, :, 0, 0], holder.conv1x1.bias.detach()
    out = torch.einsum("oc,bchw->bhwo", weight, x["features"]) + bias     # [B, H, W, A * columns]
    return out.reshape(out.shape[0], -1, columns)


def check_head(submission, unit, names):
    """Each case's output against the reference and the head written out by hand."""
    columns = HEADS[unit]
    for name in names:
        x = submission.inputs(unit, name)
        batch, _, height, width = x["features"].shape
        layout = f"[B, H*W*A, {columns}] = [{batch}, {height}*{width}*{x['num_anchors']}, {columns}]"
        for want in (submission.reference(unit, name), _head_oracle(x, columns)):
            with noting(submission, unit, cases.HEAD_NAMES_CASE):
                expect_rows(submission.output(unit, name), want, name, "the output", layout, HEAD_ORDER_HINT)


def check_head_names(submission, unit):
    """conv1x1.weight [A * columns, C, 1, 1] and conv1x1.bias [A * columns], nothing else."""
    name = cases.HEAD_NAMES_CASE
    x = submission.inputs(unit, name)
    out_channels = x["num_anchors"] * HEADS[unit]
    want = {"conv1x1.weight": [out_channels, x["inchannels"], 1, 1], "conv1x1.bias": [out_channels]}
    expect_parameter_shapes(submission.output(unit, name), want, name)
    expect_parameter_shapes(submission.output(unit, name), submission.reference(unit, name), name)


# -- Part 2: the model -----------------------------------------------------------------------------
MODEL_OUTPUTS = (("bbox_regressions", 4), ("classifications", 2), ("ldm_regressions", 10))
MODEL_WIRING = ("body → fpn → ssh1, ssh2, ssh3 on the FPN's levels 0, 1, 2 → on level k the heads "
                "ClassHead[k], BboxHead[k], LandmarkHead[k]")
MODEL_ORDER_HINT = ("each head permutes to [B, H, W, C] before view, and the three levels are "
                    "concatenated along dim 1 finest first (ssh1's features with head 0, then ssh2, ssh3)")


def check_retinaface_names(submission, name):
    # The reference is the solution's state_dict, which loads the public checkpoint with strict=True.
    with noting(submission, "retinaface"):
        expect_parameter_shapes(submission.output("retinaface", name),
                               submission.reference("retinaface", name), name)


def check_retinaface_forward(submission, names):
    """The three outputs of each case against the reference (the model runs with name-seeded weights)."""
    for name in names:
        with noting(submission, "retinaface", names_case=cases.RETINAFACE_NAMES_CASE):
            _check_retinaface_outputs(submission, name)


def _check_retinaface_outputs(submission, name):
    got = submission.output("retinaface", name)
    expect_type(got, (tuple, list), name, "the model's output")
    if len(got) != len(MODEL_OUTPUTS):
        raise fail(name, f"forward should return (bbox_regressions, classifications, ldm_regressions), "
                         f"got {describe(got)}")
    height, width = submission.inputs("retinaface", name)["image"].shape[-2:]
    for (what, columns), value, want in zip(MODEL_OUTPUTS, got, submission.reference("retinaface", name)):
        layout = f"[B, P, {columns}] (P = {want.shape[1]} anchors of a {height} x {width} image)"
        try:
            expect_rows(value, want, name, what, layout, MODEL_ORDER_HINT)
        except GradingFailure as err:
            names_ok = matches_reference(submission, "retinaface", cases.RETINAFACE_NAMES_CASE)
            if "wrong order" in str(err) or "should be" in str(err) or not names_ok:
                raise
            raise GradingFailure(f"{err} — check the wiring: {MODEL_WIRING}", err.kind) from None


# -- Part 4: prior boxes ---------------------------------------------------------------------------
PRIOR_MISTAKES = (
    ({"corner": True}, "every anchor centre is off by exactly half a stride: the anchor of cell (i, j) "
                       "sits at the centre of the cell, cx = (j + 0.5)·s / W, cy = (i + 0.5)·s / H, not at "
                       "its top-left corner (j·s / W, i·s / H)"),
    ({"corner": "x"}, "the anchor centres are off by half a stride along x only: cx = (j + 0.5)·s / W "
                      "needs the + 0.5 as cy = (i + 0.5)·s / H has it"),
    ({"corner": "y"}, "the anchor centres are off by half a stride along y only: cy = (i + 0.5)·s / H "
                      "needs the + 0.5 as cx = (j + 0.5)·s / W has it"),
    ({"swap_hw": True}, "x and y are normalised by the wrong sides: image_size is (H, W); cx and w are "
                        "divided by the width W, cy and h by the height H"),
)
PRIOR_ORDER_HINT = ("level by level (finest first), then row i, then column j, then anchor size "
                    "(a [rows, cols, A, 4] tensor reshaped to [-1, 4])")


XY_SWAPPED_HINT = ("x and y are swapped in the {what}: each row is {form}, x (columns j, the width W) "
                   "first, then y (rows i, the height H)")
SIZES_WRONG_HINT = ("the anchor centres are right but the sizes are not: each anchor is a min_size x "
                    "min_size square in pixels, normalised as w = min_size / W and h = min_size / H")
CENTRES_WRONG_HINT = ("the anchor sizes are right but the centres are not: the anchor of cell (i, j) at "
                      "stride s sits at cx = (j + 0.5)·s / W, cy = (i + 0.5)·s / H")


def anchor_property_hint(got, want, form: str, before_order: bool = False) -> str | None:
    """Anchor rows (x, y, x, y) named from what they are: x and y swapped (centres, sizes or both);
    ``before_order=False``: also centres right and sizes wrong, or the reverse."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dim() != 2 or got.shape[1] != 4:
        return None
    g, w = got.detach().cpu().double(), want.double()

    def close(a, b):
        return torch.allclose(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL)
    if before_order:
        for columns, what in (([1, 0, 3, 2], "anchors"), ([1, 0, 2, 3], "centres"), ([0, 1, 3, 2], "sizes")):
            if not close(w[:, columns], w) and close(g[:, columns], w):
                return XY_SWAPPED_HINT.format(what=what, form=form)
        return None
    if close(g[:, :2], w[:, :2]):
        return SIZES_WRONG_HINT
    if close(g[:, 2:], w[:, 2:]):
        return CENTRES_WRONG_HINT
    return None


def check_priors(submission, name):
    """One case against the loop definition (naming the classic mistakes) and the reference."""
    x = submission.inputs("prior_box", name)
    cfg, size = x["cfg"], x["image_size"]
    want = oracles.prior_boxes(cfg, size)
    got = expect_tensor(submission.output("prior_box", name), name, "the priors")
    if tuple(got.shape) != tuple(want.shape):
        floor = oracles.anchor_count(cfg, size, math.floor)
        hint = (" — that is the count with floor: a level of stride s has ceil(H / s) x ceil(W / s) cells "
                "(self.feature_maps)" if got.dim() == 2 and got.shape[0] == floor != want.shape[0] else "")
        raise fail(name, f"the priors should be [P, 4] with P = sum over levels of ceil(H/s)·ceil(W/s)"
                         f"·len(min_sizes) = {want.shape[0]} for (H, W) = {tuple(size)}, got "
                         f"{describe(got)}{hint}")
    try:
        expect_close(got, want, name, "the priors")
    except GradingFailure:
        for mistake, hint in PRIOR_MISTAKES:
            wrong = oracles.prior_boxes(cfg, size, **mistake)
            if not torch.allclose(wrong, want) and torch.allclose(
                    got.double(), wrong.double(), rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
                raise fail(name, hint) from None
        hint = anchor_property_hint(got, want, "(cx, cy, w, h)", before_order=True)
        if hint is None and reordered(got, want):
            hint = f"the priors hold the right values, but the rows are in the wrong order: {PRIOR_ORDER_HINT}"
        hint = hint or anchor_property_hint(got, want, "(cx, cy, w, h)")
        if hint is not None:
            raise fail(name, hint) from None
        raise
    if submission.units["prior_box"].case(name).reference:
        expect_close(got, submission.reference("prior_box", name), name, "the priors")


# -- Part 5: encoding and decoding -----------------------------------------------------------------
# unit: (independent answer, hand-computed answers of the "known values" case, first argument)
CODING = {
    "encode": (oracles.encode_boxes, cases.KNOWN_BOX_TARGETS, "matched"),
    "decode": (oracles.decode_boxes, cases.KNOWN_BOXES, "loc"),
    "encode_landm": (oracles.encode_landmarks, cases.KNOWN_LANDMARK_TARGETS, "matched"),
    "decode_landm": (oracles.decode_landmarks, cases.KNOWN_LANDMARKS, "pre"),
}
VARIANCE_HINT = ("divide the centre offsets by v0 times the anchor size and the log sizes by v1 "
                 "(variances = cfg['variance'], an argument: never write 0.1 or 0.2 into the code)")
LANDMARK_COLUMNS = ("the columns are (l0x, l0y, ..., l4x, l4y): x values go with the anchor's cx and w, "
                    "y values with its cy and h")
INVERSE_VARIANCE_HINT = "decoding multiplies by the variances (v0 · offset · anchor size, exp(v1 · t))"


def _coding_mistakes(unit, x):
    """(wrong answer, hint) pairs for the classic mistakes on inputs ``x``."""
    oracle, _, first = CODING[unit]
    args = (x[first], x["priors"])
    v0, v1 = x["variances"]
    hint = VARIANCE_HINT if unit.startswith("encode") else INVERSE_VARIANCE_HINT
    mistakes = [(oracle(*args, [1.0, 1.0]), "the variances are missing: " + hint)]
    if not unit.endswith("landm"):  # landmarks use v0 only
        mistakes += [(oracle(*args, [1.0, v1]), "v0 (variances[0]) is missing from the centre "
                      "offsets: " + hint),
                     (oracle(*args, [v0, 1.0]), "v1 (variances[1]) is missing from the log sizes: " + hint)]
    if unit.startswith("encode"):
        mistakes.append((oracle(*args, [1 / v0, 1 / v1]),
                         "the variances multiply instead of dividing: " + VARIANCE_HINT))
    if (v0, v1) != cases.VARIANCES:
        mistakes.append((oracle(*args, list(cases.VARIANCES)), "the result fits the usual variances "
                         f"{cases.VARIANCES}, not the ones passed in: use the variances argument"))
    if unit == "decode":
        boxes = oracle(*args, x["variances"])
        centre_form = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
        mistakes.append((centre_form, "decode returns corner boxes (x1, y1, x2, y2), not (cx, cy, w, h)"))
    return mistakes


def check_coding(submission, unit, name, want):
    """One case against ``want``, naming the classic mistake the output fits, if any."""
    got = submission.output(unit, name)
    try:
        expect_close(got, want, name)
    except GradingFailure as err:
        x = submission.inputs(unit, name)
        for wrong, hint in _coding_mistakes(unit, x):
            if isinstance(got, torch.Tensor) and got.shape == wrong.shape and wrong.numel() and \
                    torch.allclose(got.detach().cpu().double(), wrong.double(), rtol=DEFAULT_RTOL,
                                   atol=DEFAULT_ATOL):
                raise GradingFailure(f"{err} — {hint}") from None
        if unit.endswith("landm") and "differs" in str(err):
            raise GradingFailure(f"{err} — {LANDMARK_COLUMNS}") from None
        raise


def check_coding_known(submission, unit):
    check_coding(submission, unit, cases.CODING_KNOWN_CASE, torch.tensor(CODING[unit][1]))


def check_coding_definition(submission, unit, names):
    """Each case against the reference and the slow row-by-row definition."""
    oracle, _, first = CODING[unit]
    for name in names:
        x = submission.inputs(unit, name)
        check_coding(submission, unit, name, submission.reference(unit, name))
        check_coding(submission, unit, name, oracle(x[first], x["priors"], x["variances"]))


def check_coding_round_trip(submission, unit):
    """The inputs were made by the definition's inverse from ``expected``: the unit must undo it."""
    x = submission.inputs(unit, cases.CODING_ROUND_TRIP_CASE)
    check_coding(submission, unit, cases.CODING_ROUND_TRIP_CASE, x["expected"])


# -- Part 5: matching ------------------------------------------------------------------------------
BACKGROUND_TARGET_HINT = ("background anchors get the targets of their best face too (the loss ignores "
                          "them, but the definition of loc_t and landm_t covers every anchor)")


def _anchor_text(priors, p):
    return "anchor {} (cx, cy, w, h = {})".format(p, ", ".join(f"{v:.4f}" for v in priors[p].tolist()))


def matching_outputs(submission, unit: str, name: str, anchors_key: str, widths: dict) -> tuple:
    """A matching unit's (inputs, result) for a case, the result's shapes and dtypes checked.

    widths: the result's parts in order, e.g. {"loc_t": 4, "conf_t": None, "landm_t": 10} (None: a
    [P] int64 label vector; a number: [P, width] rows in the dtype of the inputs' ``anchors_key``)."""
    got = submission.output(unit, name)
    expect_type(got, (tuple, list), name, f"{unit}'s result")
    if len(got) != len(widths):
        raise fail(name, f"{unit} should return ({', '.join(widths)}), got {describe(got)}")
    x = submission.inputs(unit, name)
    num, dtype = x[anchors_key].shape[0], x[anchors_key].dtype
    for (what, width), value in zip(widths.items(), got):
        expect_tensor(value, name, what)
        shape = [num] if width is None else [num, width]
        if list(value.shape) != shape:
            raise fail(name, f"{what} should be {shape} (one row per anchor), got {describe(value)}")
    for (what, width), value in zip(widths.items(), got):
        if width is None and value.dtype != torch.long:
            raise fail(name, f"{what} should hold int64 labels (torch.long), got {describe(value)}")
        if width is not None and value.dtype != dtype:
            raise fail(name, f"{what} should have the dtype of {anchors_key} ({describe(x[anchors_key])}), "
                             f"got {describe(value)}")
    return x, got


def match_outputs(submission, name):
    """The (loc_t, conf_t, landm_t) of a ``match`` case, with their shapes and dtypes checked."""
    return matching_outputs(submission, "match", name, "priors", {"loc_t": 4, "conf_t": None, "landm_t": 10})


def _oracle_match(x):
    return oracles.match_faces(x["threshold"], x["truths"], x["priors"], x["variances"], x["labels"],
                               x["landms"], x["force_min_iou"])


def check_match_labels(submission, names):
    """conf_t against the anchor-by-anchor rules (saying why an anchor gets its label) and the reference."""
    for name in names:
        with noting(submission, "match"):
            _check_match_case_labels(submission, name)


def _check_match_case_labels(submission, name):
    x, (_, conf, _) = match_outputs(submission, name)
    oracle = _oracle_match(x)
    bad = torch.nonzero(conf.cpu() != oracle.conf_t).flatten().tolist()
    if bad:
        p = bad[0]
        raise fail(name, f"conf_t differs at {len(bad)} of {len(conf)} anchors; first at "
                         f"{_anchor_text(x['priors'], p)}: expected {int(oracle.conf_t[p])}, got "
                         f"{int(conf[p])}, because {oracle.reasons[p]}")
    expect_equal(conf, submission.reference("match", name)[1], name, "conf_t")


def check_match_targets(submission, names):
    """loc_t and landm_t of every anchor whose face is defined (not a tie between faces)."""
    for name in names:
        with noting(submission, "match"):
            _check_match_case_targets(submission, name)


def _check_match_case_targets(submission, name):
    x, (loc, conf, landm) = match_outputs(submission, name)
    oracle = _oracle_match(x)
    reference = submission.reference("match", name)
    defined = ~torch.tensor(oracle.ambiguous, dtype=torch.bool)  # ties between faces: a convention
    for what, got, want, ref in (("loc_t", loc, oracle.loc_t, reference[0]),
                                 ("landm_t", landm, oracle.landm_t, reference[2])):
        got = got.detach().cpu()
        close = torch.isclose(got.double(), want.double(), rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL).all(dim=1)
        bad = torch.nonzero(defined & ~close).flatten().tolist()
        if bad:
            p = bad[0]
            hint = (f" — {BACKGROUND_TARGET_HINT}" if int(oracle.conf_t[p]) == 0 and
                    not got[p].any() else "")
            raise fail(name, f"{what} differs at {len(bad)} of {len(got)} anchors; first at "
                             f"{_anchor_text(x['priors'], p)}, whose face is face {oracle.face[p]} "
                             f"({oracle.reasons[p]}): expected "
                             f"{[round(v, 4) for v in want[p].tolist()]}, got "
                             f"{[round(v, 4) for v in got[p].tolist()]}{hint}")
        expect_close(got[defined], ref[defined], name, what)


