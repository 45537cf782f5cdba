"""Grading of the TinaFace homework, Part 2 (``2_anchors_losses.ipynb``). Oracles: loop definitions
(anchors, assignment, coding), torchvision.ops.sigmoid_focal_loss and distance_box_iou_loss, the
score formula, vedadet's schedule (also for the lrs the kit's engine, utils.training.optim, sets with
the answer as its schedule)."""
from autograder.grading import graded
from autograder.tinaface import cases_boxes as cases
from autograder.tinaface import checks
from autograder.units import case_names

HW = "tinaface"


def _each(check, unit, case_list, public=True):
    """``check`` on every case; the feedback starts with a case that names a mistake."""
    checks.each_case(case_names(case_list, public), check if unit is None else lambda name: check(unit, name))


@graded("tinaface_anchors", 3, "(j·s, i·s) centres, 3 scales, ratio 1.3 = h / w; 102 375 at 640 x 640")
def test_anchors(submission):
    _each(lambda n: checks.check_anchors(submission, n), None, cases.ANCHOR_CASES)


@graded("tinaface_anchors", 1, "other strides, scales and ratio (hidden)", public=False)
def test_anchors_hidden(submission):
    _each(lambda n: checks.check_anchors(submission, n), None, cases.ANCHOR_CASES, False)


@graded("max_iou_assign", 3, "IoU >= 0.35 positive, every face's best anchors forced")
def test_assign(submission):
    _each(lambda n: checks.check_assign(submission, n), None, cases.ASSIGN_CASES)


@graded("max_iou_assign", 1, "12 faces (hidden)", public=False)
def test_assign_hidden(submission):
    _each(lambda n: checks.check_assign(submission, n), None, cases.ASSIGN_CASES, False)


@graded("delta_xywh_encode", 1, "deltas / stds (0.1, 0.1, 0.2, 0.2)")
def test_encode(submission):
    _each(lambda n: checks.check_coding(submission, "delta_xywh_encode", n), None, cases.ENCODE_CASES)


@graded("delta_xywh_encode", 1, "200 faces (hidden)", public=False)
def test_encode_hidden(submission):
    _each(lambda n: checks.check_coding(submission, "delta_xywh_encode", n), None, cases.ENCODE_CASES, False)


@graded("delta_xywh_decode", 2, "inverse coding, log sizes clamped, optional clipping")
def test_decode(submission):
    _each(lambda n: checks.check_coding(submission, "delta_xywh_decode", n), None, cases.DECODE_CASES)


@graded("delta_xywh_decode", 1, "200 clipped boxes (hidden)", public=False)
def test_decode_hidden(submission):
    _each(lambda n: checks.check_coding(submission, "delta_xywh_decode", n), None, cases.DECODE_CASES, False)


@graded("sigmoid_focal_loss", 2, "= torchvision.ops.sigmoid_focal_loss (values and gradients)")
def test_focal(submission):
    _each(lambda n: checks.check_focal(submission, n), None, cases.FOCAL_CASES)


@graded("sigmoid_focal_loss", 1, "alpha 0.75, gamma 5 (hidden)", public=False)
def test_focal_hidden(submission):
    _each(lambda n: checks.check_focal(submission, n), None, cases.FOCAL_CASES, False)


@graded("diou_loss", 2, "= torchvision.ops.distance_box_iou_loss (eps 1e-6), values and gradients")
def test_diou(submission):
    _each(lambda n: checks.check_diou(submission, n), None, cases.DIOU_CASES)


@graded("diou_loss", 1, "300 pairs (hidden)", public=False)
def test_diou_hidden(submission):
    _each(lambda n: checks.check_diou(submission, n), None, cases.DIOU_CASES, False)


@graded("iou_aware_loss", 2, "BCE against the IoU of the detached decoded boxes")
def test_iou_aware(submission):
    _each(lambda n: checks.check_iou_aware(submission, n), None, cases.IOU_AWARE_CASES)


@graded("iou_aware_loss", 1, "200 positives (hidden)", public=False)
def test_iou_aware_hidden(submission):
    _each(lambda n: checks.check_iou_aware(submission, n), None, cases.IOU_AWARE_CASES, False)


@graded("tinaface_scores", 1, "cls^(2 alpha) * iou^(2 (1 - alpha))")
def test_scores(submission):
    _each(lambda n: checks.check_scores(submission, n), None, cases.SCORE_CASES)


@graded("tinaface_scores", 1, "alpha 0.25 (hidden)", public=False)
def test_scores_hidden(submission):
    _each(lambda n: checks.check_scores(submission, n), None, cases.SCORE_CASES, False)


@graded("warmup_cosine_lr", 1, "vedadet's warmup and cosine restarts")
def test_lr(submission):
    _each(lambda n: checks.check_lr(submission, n, engine=False), None, cases.LR_CASES)


@graded("warmup_cosine_lr", 1, "drives the kit's engine (lr_schedule=warmup_cosine_lr): the optimizer's lr per step")
def test_lr_engine(submission):
    _each(lambda n: checks.check_lr(submission, n, engine=True), None, cases.LR_CASES)


@graded("warmup_cosine_lr", 1, "period 5, warmup ratio 0.3 (hidden)", public=False)
def test_lr_hidden(submission):
    _each(lambda n: checks.check_lr(submission, n, engine=False), None, cases.LR_CASES, False)
    _each(lambda n: checks.check_lr(submission, n, engine=True), None, cases.LR_CASES, False)
