"""Graded tests of Face R-FCN Part 3: proposals, anchor and proposal targets (invariants and
fixed seeds), smooth L1, the loss and OHEM."""
from autograder.grading import graded
from autograder.rfcn import cases_targets as cases
from autograder.rfcn import checks_targets

HW = "rfcn"


@graded("proposal_layer", 3, "decode, clip, min size, top-N, NMS 0.7, top-N per image (loop oracle)")
def test_proposals(submission):
    checks_targets.check_proposals(submission, cases.PROPOSAL_PUBLIC)


@graded("proposal_layer", 1, "3 images, float64 (hidden)", public=False)
def test_proposals_hidden(submission):
    checks_targets.check_proposals(submission, cases.PROPOSAL_HIDDEN)


@graded("anchor_target_layer", 3, "labels and targets follow the IoU rules (no subsampling)")
def test_anchor_rules(submission):
    checks_targets.check_anchor_rules(submission, cases.ANCHOR_RULES)


@graded("anchor_target_layer", 2, "subsampling: at most half positives, counts, subsets of the rules")
def test_anchor_sampling(submission):
    checks_targets.check_anchor_sampling(submission, cases.ANCHOR_SAMPLED)


@graded("anchor_target_layer", 1, "the solution's choice on fixed seeds")
def test_anchor_seeded(submission):
    checks_targets.check_seeded(submission, "anchor_target_layer", cases.ANCHOR_SAMPLED)


@graded("anchor_target_layer", 1, "more faces, rules and sampling (hidden)", public=False)
def test_anchor_hidden(submission):
    checks_targets.check_anchor_rules(submission, cases.ANCHOR_HIDDEN[:1])
    checks_targets.check_anchor_sampling(submission, cases.ANCHOR_HIDDEN[1:])


@graded("proposal_target_layer", 3, "1:3 sampling, IoU thresholds, faces appended, normalised targets")
def test_roi_invariants(submission):
    checks_targets.check_roi_invariants(submission, cases.ROI_PUBLIC)


@graded("proposal_target_layer", 1, "the solution's choice on fixed seeds")
def test_roi_seeded(submission):
    checks_targets.check_seeded(submission, "proposal_target_layer", cases.ROI_PUBLIC)


@graded("proposal_target_layer", 1, "8 faces, 500 RoIs, float64 (hidden)", public=False)
def test_roi_hidden(submission):
    checks_targets.check_roi_invariants(submission, cases.ROI_HIDDEN)
    checks_targets.check_seeded(submission, "proposal_target_layer", cases.ROI_HIDDEN)


@graded("smooth_l1", 2, "equal to F.smooth_l1_loss(beta = 1 / sigma²), sigma 3 and 1")
def test_smooth_l1(submission):
    checks_targets.check_smooth(submission, [c.name for c in cases.SMOOTH_CASES if c.public])


@graded("smooth_l1", 1, "sigma 0.5, float64 (hidden)", public=False)
def test_smooth_l1_hidden(submission):
    checks_targets.check_smooth(submission, [c.name for c in cases.SMOOTH_CASES if not c.public])


@graded("rfcn_loss", 3, "rpn_cls, rpn_box (sigma 3), rcnn_cls, rcnn_box (sigma 1); empty parts")
def test_loss(submission):
    checks_targets.check_loss(submission, cases.LOSS_PUBLIC)


@graded("rfcn_loss", 1, "3 images, float64 (hidden)", public=False)
def test_loss_hidden(submission):
    checks_targets.check_loss(submission, [c.name for c in cases.LOSS_CASES if not c.public])


@graded("ohem_select", 2, "hardest RoIs first, NMS 0.7 in loss order, top B")
def test_ohem(submission):
    checks_targets.check_ohem(submission, cases.OHEM_PUBLIC)


@graded("ohem_select", 1, "300 RoIs, float64 (hidden)", public=False)
def test_ohem_hidden(submission):
    checks_targets.check_ohem(submission, [c.name for c in cases.OHEM_CASES if not c.public])
