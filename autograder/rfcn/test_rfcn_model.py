"""Graded tests of Face R-FCN Part 2: PS-RoI pooling (equal to torchvision's), voting, the RPN head
and the model."""
from autograder.grading import graded
from autograder.rfcn import cases, checks
from autograder.units import case_names

HW = "rfcn"


@graded("ps_roi_pool", 1, "the W - 1 clip: arange(36), k = 2 gives 31 in bin (1, 1)")
def test_psroi_known(submission):
    checks.check_psroi(submission, [cases.PSROI_KNOWN], exact=True)


@graded("ps_roi_pool", 3, "torch.equal to torchvision on integer maps (scales 1/16, 1/8, 1; RoIs past the border)")
def test_psroi_exact(submission):
    checks.check_psroi(submission, cases.PSROI_EXACT, exact=True)


@graded("ps_roi_pool", 1, "float maps (rtol 1e-6) and no RoIs")
def test_psroi_float(submission):
    checks.check_psroi(submission, [*cases.PSROI_FLOAT, "no RoIs"], exact=False)


@graded("ps_roi_pool", 2, "gradients equal autograd of the loop reference")
def test_psroi_grad(submission):
    checks.check_psroi_grad(submission)


@graded("ps_roi_pool", 2, "float64, k = 5, half-pixel grid (hidden)", public=False)
def test_psroi_hidden(submission):
    checks.check_psroi(submission, cases.PSROI_HIDDEN, exact=True)


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
