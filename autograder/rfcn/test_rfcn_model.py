"""Graded tests of Face R-FCN Part 2: PS-RoI pooling (its idea on RoIs where torchvision's artefacts
do not matter, the rounding rule, then torchvision exactly in one small hidden test), voting, the RPN
head and the model."""
from autograder.grading import graded
from autograder.rfcn import cases, checks
from autograder.units import case_names

HW = "rfcn"


@graded("ps_roi_pool", 4, "the idea: class-major channels, k x k bins, bin averages (integer maps; RoIs inside "
                          "the map, away from its last row and column and from n + 0.5 cells)")
def test_psroi_idea(submission):
    checks.check_psroi_idea(submission, cases.PSROI_IDEA[:3])


@graded("ps_roi_pool", 1, "float maps (rtol 1e-6) and no RoIs")
def test_psroi_float(submission):
    checks.check_psroi_idea(submission, cases.PSROI_IDEA[3:])


@graded("ps_roi_pool", 2, "gradients equal autograd of the loop reference")
def test_psroi_grad(submission):
    checks.check_psroi_grad(submission, cases.PSROI_GRAD)


@graded("ps_roi_pool", 1, "corners at n + 0.5 cells round half away from zero (torchvision's std::round)")
def test_psroi_rounding(submission):
    checks.check_psroi_rounding(submission, [cases.PSROI_ROUNDING])


@graded("ps_roi_pool", 1, "torch.equal to torchvision with its artefacts: rounding past the border, the W - 1 "
                          "clamp (hidden)", public=False)
def test_psroi_torchvision(submission):
    checks.check_psroi_torchvision(submission, cases.PSROI_TORCHVISION)


@graded("ps_average_vote", 2, "plain and weighted averages of the k x k bins")
def test_vote(submission):
    checks.check_vote(submission, case_names(cases.VOTE_CASES))


@graded("ps_average_vote", 1, "float64, k = 5 (hidden)", public=False)
def test_vote_hidden(submission):
    checks.check_vote(submission, case_names(cases.VOTE_CASES, public=False))


@graded("rpn_head", 1, "modules conv, cls_logits, bbox_pred with A * 2 and A * 4 outputs")
def test_rpn_head_names(submission):
    checks.check_reference(submission, "rpn_head", [cases.HEAD_NAMES])


@graded("rpn_head", 2, "(logits [B, H*W*A, 2], deltas [B, H*W*A, 4]) in shift_anchors' order")
def test_rpn_head_forward(submission):
    checks.check_reference(submission, "rpn_head", case_names(cases.HEAD_CASES)[1:], "[B, H*W*A, C]",
                           "permute the convolutions' outputs to [B, H, W, C] before reshaping")


@graded("rpn_head", 1, "5 anchors, other sizes (hidden)", public=False)
def test_rpn_head_hidden(submission):
    checks.check_reference(submission, "rpn_head", case_names(cases.HEAD_CASES, public=False), "[B, H*W*A, C]",
                           "permute the convolutions' outputs to [B, H, W, C] before reshaping")


@graded("rfcn", 2, "state_dict names and shapes (lite and resnet50)")
def test_rfcn_names(submission):
    checks.check_reference(submission, "rfcn", cases.RFCN_NAMES)


@graded("rfcn", 3, "forward (rpn_logits, rpn_deltas, cls_maps, box_maps) and head on RoIs")
def test_rfcn_forward(submission):
    checks.check_rfcn_forward(submission, [cases.RFCN_FORWARD])


@graded("rfcn", 1, "plain voting, k = 5, batch of 2 (hidden)", public=False)
def test_rfcn_hidden(submission):
    checks.check_rfcn_forward(submission, case_names(cases.RFCN_CASES, public=False))
