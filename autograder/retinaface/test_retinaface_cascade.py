"""Grading of the optional cascade part of the RetinaFace homework (``7_cascade_regression.ipynb``):
step 2's matching against the refined boxes, and the cascade loss. Oracles: the slow-loop matching of
``oracles_cascade.py`` and, for step 1, the loss oracle of ``oracles_loss.py``. The feedback
names the classic mistakes: forcing in step 2, step 1's threshold in step 2, targets encoded against
the wrong boxes, and step-1 boxes that were not detached."""
import torch
import torch.nn.functional as F

from autograder.explain import fail, naming, noting
from autograder.feedback import GradingFailure, describe, expect_close, expect_equal, expect_tensor
from autograder.grading import graded
from autograder.retinaface import cases_cascade as cases
from autograder.retinaface import checks, mistakes, oracles
from autograder.retinaface.cases_loss import loss_priors
from autograder.retinaface.oracles_cascade import match_refined
from autograder.retinaface.oracles_loss import multibox_oracle
from autograder.units import case_names
from detector.retinaface.config import cfg_mnet

HW = "retinaface"
STEP1_THRESH = cfg_mnet["overlap_thresh"]    # 0.35
FORCE_MIN_IOU = cfg_mnet["force_match_min_iou"]

FORCING_HINT = ("step 2 forces each face's best refined box to be positive, as step 1 does with the "
                "anchors: step 2 has no forcing, only the higher threshold")
THRESHOLD_HINT = ("step 2 used step 1's threshold {used:g} (cfg['overlap_thresh']); step 2 is matched at "
                  "its own, higher threshold ({right:g} here)")
HARDCODED_HINT = ("the result fits the threshold {used:g}, not the {right:g} passed in: use the threshold "
                  "argument (self.cascade_thresh in the loss)")
CORNERS_HINT = ("the targets were encoded against the refined boxes in corner form (x1, y1, x2, y2): "
                "encode expects anchors (cx, cy, w, h), so convert them with center_size first")
PRIORS_HINT = ("step 2's targets were encoded against the original anchors: step 2 regresses relative to "
               "step 1's decoded boxes (center_size(refined)), its anchors")
DETACH_HINT = ("step 2's loss sends gradients into step 1's box offsets (loc1): detach step 1's boxes "
               "(loc1.detach()) before they become step 2's anchors, so that step 2's targets are constants "
               "and step 1 is trained by its own loss only")
BATCH_HINT = ("loss_l2 is divided by the batch size; divide it by the number of step-2 positives in the "
              "whole batch")
STEP1_HINT = "step 1's losses are MultiBoxLoss on (loc1, conf, landm), the first three predictions"


# -- step 2's matching -----------------------------------------------------------------------------
def _match_outputs(submission, name):
    return checks.matching_outputs(submission, "match_cascade", name, "refined", {"loc_t": 4, "conf_t": None})


def _oracle(x, threshold=None, **mistake):
    return match_refined(x["threshold"] if threshold is None else threshold, x["truths"], x["refined"],
                         x["variances"], x["labels"], **mistake)


def _label_mistakes(x):
    """(wrong matching, hint) of the classic mistakes that differ from the right one on ``x``."""
    found = [(_oracle(x, force_min_iou=FORCE_MIN_IOU), FORCING_HINT)]
    if x["threshold"] != STEP1_THRESH:
        found.append((_oracle(x, threshold=STEP1_THRESH),
                      THRESHOLD_HINT.format(used=STEP1_THRESH, right=x["threshold"])))
    if x["threshold"] != cases.CASCADE_THRESH:
        found.append((_oracle(x, threshold=cases.CASCADE_THRESH),
                      HARDCODED_HINT.format(used=cases.CASCADE_THRESH, right=x["threshold"])))
    return found


def _check_labels(submission, name):
    x, (_, conf) = _match_outputs(submission, name)
    right = _oracle(x)
    conf = conf.cpu()
    bad = torch.nonzero(conf != right.conf_t).flatten().tolist()
    if bad:
        for wrong, hint in _label_mistakes(x):
            if not torch.equal(wrong.conf_t, right.conf_t) and torch.equal(conf, wrong.conf_t):
                raise fail(name, f"conf_t differs at {len(bad)} of {len(conf)} anchors — {hint}")
        p = bad[0]
        box = ", ".join(f"{v:.4f}" for v in x["refined"][p].tolist())
        raise fail(name, f"conf_t differs at {len(bad)} of {len(conf)} anchors; first at anchor {p} "
                         f"(refined box {box}): expected {int(right.conf_t[p])}, got {int(conf[p])}, "
                         f"because {right.reasons[p]}")
    expect_equal(conf, submission.reference("match_cascade", name)[1], name, "conf_t")


def _check_targets(submission, name):
    x, (loc, _) = _match_outputs(submission, name)
    right = _oracle(x)
    pos = right.conf_t != 0
    got = loc.cpu()[pos]
    with naming(lambda: mistakes.diagnose(got, [(_oracle(x, encode_against="corners").loc_t[pos], CORNERS_HINT)])):
        expect_close(got, right.loc_t[pos].to(loc.dtype), name, "loc_t at the step-2 positives")
    expect_close(got, submission.reference("match_cascade", name)[0].cpu()[pos], name,
                 "loc_t at the step-2 positives")


def check_match_cascade(submission, names, labels=True, targets=True):
    for name in names:
        with noting(submission, "match_cascade"):
            if labels:
                _check_labels(submission, name)
            if targets:
                _check_targets(submission, name)


@graded("match_cascade", 1, "labels: positive at IoU >= threshold with the refined box, no forcing")
def test_match_cascade_labels(submission):
    check_match_cascade(submission, case_names(cases.MATCH_CASCADE_CASES), targets=False)


@graded("match_cascade", 1, "targets encoded against the refined boxes (cx, cy, w, h)")
def test_match_cascade_targets(submission):
    check_match_cascade(submission, case_names(cases.MATCH_CASCADE_CASES), labels=False)


@graded("match_cascade", 1, "many faces, large step-1 offsets, float64 (hidden)", public=False)
def test_match_cascade_hidden(submission):
    check_match_cascade(submission, case_names(cases.MATCH_CASCADE_CASES, public=False))


# -- the cascade loss ------------------------------------------------------------------------------
def step2_oracle(x, threshold=None, batch_normalised=False, **mistake):
    """(loss_l2, its gradient w.r.t. loc2) of the documented step 2, in float64."""
    priors = loss_priors(x["image_size"]).double()
    loc1 = x["predictions"][0].double()
    loc2 = x["predictions"][3].detach().double().requires_grad_(True)
    variances = cfg_mnet["variance"]
    total, num_pos = loc2.sum() * 0, 0
    for b, t in enumerate(x["targets"]):
        t = t.double()
        refined = oracles.decode_boxes(loc1[b], priors, variances)
        m = match_refined(x["cascade_thresh"] if threshold is None else threshold, t[:, :4], refined,
                          variances, t[:, 14], priors=priors, **mistake)
        pos = m.conf_t != 0
        num_pos += int(pos.sum())
        total = total + F.smooth_l1_loss(loc2[b][pos], m.loc_t[pos], reduction="sum")
    loss = total / (len(x["targets"]) if batch_normalised else max(num_pos, 1))
    loss.backward()
    return loss.detach(), loc2.grad


def _step2_mistakes(x):
    found = [(step2_oracle(x, force_min_iou=FORCE_MIN_IOU)[0], FORCING_HINT),
             (step2_oracle(x, encode_against="priors")[0], PRIORS_HINT),
             (step2_oracle(x, encode_against="corners")[0], CORNERS_HINT),
             (step2_oracle(x, batch_normalised=True)[0], BATCH_HINT)]
    if x["cascade_thresh"] != STEP1_THRESH:
        found.append((step2_oracle(x, threshold=STEP1_THRESH)[0],
                      THRESHOLD_HINT.format(used=STEP1_THRESH, right=x["cascade_thresh"])))
    if x["cascade_thresh"] != cases.CASCADE_THRESH:
        found.append((step2_oracle(x, threshold=cases.CASCADE_THRESH)[0],
                      HARDCODED_HINT.format(used=cases.CASCADE_THRESH, right=x["cascade_thresh"])))
    return found


def _check_cascade_loss_case(submission, name):
    got = submission.output("cascade_loss", name)
    if not isinstance(got, tuple) or len(got) != 9:
        raise fail(name, f"expected (loss_l, loss_c, loss_landm, loss_l2); got {describe(got)}")
    x = submission.inputs("cascade_loss", name)
    step1 = multibox_oracle({**x, "predictions": x["predictions"][:3]})
    try:
        for part, g, w in zip(("loss_l", "loss_c", "loss_landm"), got[:3], step1[:3]):
            expect_close(g, w.float(), name, what=part, check_dtype=False, atol=1e-4)
        for part, g, w in zip(("loc1", "conf", "landm"), got[4:7], step1[3:]):
            expect_close(g, w.float(), name, what=f"gradient of step 1's total loss w.r.t. {part}",
                         check_dtype=False, atol=1e-5)
    except GradingFailure as err:
        raise GradingFailure(f"{err} — {STEP1_HINT}", err.kind) from None
    leak = expect_tensor(got[7], name, "gradient of loss_l2 w.r.t. loc1")
    if leak.abs().max() > 0:
        raise fail(name, f"the gradient of loss_l2 w.r.t. loc1 should be 0, its largest entry is "
                         f"{leak.abs().max().item():.4g} — {DETACH_HINT}")
    want_loss, want_grad = step2_oracle(x)
    try:
        expect_close(got[3], want_loss.float(), name, what="loss_l2", check_dtype=False, atol=1e-4)
    except GradingFailure as err:
        right = [(w.float(), h) for w, h in _step2_mistakes(x) if not torch.allclose(w, want_loss)]
        hint = mistakes.diagnose(torch.as_tensor(got[3]).float(), right)
        if hint is None:
            raise
        raise GradingFailure(f"{err} — {hint}", err.kind) from None
    expect_close(got[8], want_grad.float(), name, what="gradient of loss_l2 w.r.t. loc2",
                 check_dtype=False, atol=1e-5)


def check_cascade_loss(submission, names):
    for name in names:
        with noting(submission, "cascade_loss"):
            _check_cascade_loss_case(submission, name)


@graded("cascade_loss", 2, "step 1's MultiBoxLoss plus step 2's box loss over its positives, "
                           "with step 1's boxes detached")
def test_cascade_loss(submission):
    check_cascade_loss(submission, case_names(cases.CASCADE_LOSS_CASES))


@graded("cascade_loss", 1, "a batch of crowded images (hidden)", public=False)
def test_cascade_loss_hidden(submission):
    check_cascade_loss(submission, case_names(cases.CASCADE_LOSS_CASES, public=False))
