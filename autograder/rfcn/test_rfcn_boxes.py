"""Graded tests of Face R-FCN Part 1: reference anchors, shifting, box coding, clipping and the
vectorised greedy NMS."""
import torch

from autograder.explain import noting
from autograder.feedback import expect_close
from autograder.grading import graded
from autograder.rfcn import cases, checks
from autograder.units import case_names

HW = "rfcn"

# py-faster-rcnn's generate_anchors() as the Python code computes it (the header comment's values
# are these + 1: the 1-based MATLAB anchors).
CLASSIC_ANCHORS = torch.tensor([
    [-84.0, -40.0, 99.0, 55.0], [-176.0, -88.0, 191.0, 103.0], [-360.0, -184.0, 375.0, 199.0],
    [-56.0, -56.0, 71.0, 71.0], [-120.0, -120.0, 135.0, 135.0], [-248.0, -248.0, 263.0, 263.0],
    [-36.0, -80.0, 51.0, 95.0], [-80.0, -168.0, 95.0, 183.0], [-168.0, -344.0, 183.0, 359.0]])


@graded("generate_anchors", 2, "the classic 9 anchors (-84, -40, 99, 55), ... exactly")
def test_generate_anchors_known(submission):
    checks.check_generate_anchors(submission, [cases.CLASSIC_ANCHORS])
    with noting(submission, "generate_anchors"):
        expect_close(submission.output("generate_anchors", cases.CLASSIC_ANCHORS), CLASSIC_ANCHORS,
                     cases.CLASSIC_ANCHORS, "anchors", rtol=0, atol=0, check_dtype=False)


@graded("generate_anchors", 2, "other bases, ratios and scales (ratio-major)")
def test_generate_anchors_other(submission):
    checks.check_generate_anchors(submission, case_names(cases.ANCHOR_CASES)[1:])


@graded("generate_anchors", 1, "more bases, ratios, scales (hidden)", public=False)
def test_generate_anchors_hidden(submission):
    checks.check_generate_anchors(submission, case_names(cases.ANCHOR_CASES, public=False))


@graded("shift_anchors", 2, "[H*W*A, 4] in row, column, anchor order")
def test_shift_anchors(submission):
    checks.check_shift_anchors(submission, case_names(cases.SHIFT_CASES))


@graded("shift_anchors", 1, "float64 and stride 8 (hidden)", public=False)
def test_shift_anchors_hidden(submission):
    checks.check_shift_anchors(submission, case_names(cases.SHIFT_CASES, public=False))


def _coding(unit: str):
    @graded(unit, 1, "known values (half a width right, twice as tall)")
    def known(submission):
        checks.check_coding(submission, unit, [cases.CODING_KNOWN])

    @graded(unit, 2, "random boxes, RoI-head stds, no boxes" + (", clamped dw/dh" if unit.endswith("inv") else ""))
    def random(submission):
        extra = ["dw, dh beyond log(1000 / 16) are clamped"] if unit.endswith("inv") else []
        checks.check_coding(submission, unit, [*cases.CODING_PUBLIC, *extra])

    @graded(unit, 1, "round trip with its inverse")
    def round_trip(submission):
        checks.check_round_trip(submission, unit)

    @graded(unit, 1, "300 boxes in float64 (hidden)", public=False)
    def hidden(submission):
        checks.check_coding(submission, unit, cases.CODING_HIDDEN)

    return known, random, round_trip, hidden


test_transform_known, test_transform_random, test_transform_round_trip, test_transform_hidden = _coding(
    "bbox_transform")
test_inv_known, test_inv_random, test_inv_round_trip, test_inv_hidden = _coding("bbox_transform_inv")


@graded("clip_boxes", 2, "x in [0, W], y in [0, H]; no boxes")
def test_clip(submission):
    checks.check_clip(submission, case_names(cases.CLIP_CASES))


@graded("clip_boxes", 1, "float64, odd image size (hidden)", public=False)
def test_clip_hidden(submission):
    checks.check_clip(submission, case_names(cases.CLIP_CASES, public=False))


@graded("nms_vectorised", 1, "a chain of three boxes: greedy, not Fast NMS")
def test_nms_chain(submission):
    checks.check_nms(submission, [cases.FAST_NMS_CASE])


@graded("nms_vectorised", 3, "equal to torchvision.ops.nms over seeds and thresholds")
def test_nms_random(submission):
    checks.check_nms(submission, [c.name for c in cases.NMS_RANDOM if c.public])


@graded("nms_vectorised", 1, "tied scores keep their original order (stable sort)")
def test_nms_ties(submission):
    checks.check_nms(submission, [c.name for c in cases.NMS_TIES])


@graded("nms_vectorised", 1, "identical boxes, thresholds 0 and 1, no boxes")
def test_nms_special(submission):
    checks.check_nms(submission, [c.name for c in cases.NMS_SPECIAL[1:]])


@graded("nms_vectorised", 1, "250 and 500 boxes (hidden)", public=False)
def test_nms_hidden(submission):
    checks.check_nms(submission, [c.name for c in cases.NMS_RANDOM if not c.public])
