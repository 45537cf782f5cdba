"""Grading of the DSFD homework, Part 3: PAL anchors, anchor compensation, the progressive anchor
loss and data-anchor-sampling (slow-loop oracles in ``oracles.py``)."""
from autograder.dsfd import cases, checks
from autograder.grading import graded
from autograder.units import case_names

HW = "dsfd"


@graded("pal_priors", 2, "640 x 640: first-shot anchors half the second shot's, at the cell centres")
def test_pal_priors_square(submission):
    checks.check_priors(submission, "640 x 640")
    checks.check_priors(submission, "128 x 128")


@graded("pal_priors", 1, "non-square image (H x W)")
def test_pal_priors_non_square(submission):
    checks.check_priors(submission, "256 x 384 (H x W)")


@graded("pal_priors", 1, "sizes not divisible by the steps, other anchor sizes (hidden)", public=False)
def test_pal_priors_hidden(submission):
    checks.check_priors(submission, "100 x 140 (ceil), other anchor sizes")


@graded("anchor_compensation", 2, "faces with too few anchors take their next-best free ones")
def test_anchor_compensation(submission):
    checks.check_compensation(submission, case_names(cases.COMPENSATION_CASES))


@graded("anchor_compensation", 1, "many faces; no faces (hidden)", public=False)
def test_anchor_compensation_hidden(submission):
    checks.check_compensation(submission, case_names(cases.COMPENSATION_CASES, public=False))


@graded("progressive_anchor_loss", 3, "L_PAL: two multibox losses, each normalised by its own positives")
def test_progressive_anchor_loss(submission):
    checks.check_loss(submission, ["batch of 2, 3 and 1 faces", "batch of 3, one image without faces"])


@graded("progressive_anchor_loss", 1, "lambda weights the second shot")
def test_progressive_anchor_loss_lambda(submission):
    checks.check_loss(submission, ["lambda = 0.5"])


@graded("progressive_anchor_loss", 1, "with anchor compensation")
def test_progressive_anchor_loss_compensation(submission):
    checks.check_loss(submission, ["anchor compensation on (N = 6)"])


@graded("progressive_anchor_loss", 1, "crowded images; a batch without faces (hidden)", public=False)
def test_progressive_anchor_loss_hidden(submission):
    checks.check_loss(submission, case_names(cases.LOSS_CASES, public=False))


@graded("data_anchor_sampling", 2, "invariants: face at the anchor's scale, boxes shifted exactly, none lost")
def test_data_anchor_sampling_invariants(submission):
    checks.check_das_invariants(submission, case_names(cases.DAS_CASES))


@graded("data_anchor_sampling", 2, "the documented draws on fixed seeds")
def test_data_anchor_sampling_draws(submission):
    checks.check_das_draws(submission, case_names(cases.DAS_CASES))


@graded("data_anchor_sampling", 1, "more images and seeds (hidden)", public=False)
def test_data_anchor_sampling_hidden(submission):
    checks.check_das_invariants(submission, case_names(cases.DAS_CASES, public=False))
    checks.check_das_draws(submission, case_names(cases.DAS_CASES, public=False))
