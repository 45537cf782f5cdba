"""Grading of the TinaFace homework, Part 1 (``1_model.ipynb``). Oracles: torchvision.ops.deform_conv2d
(values and gradients), a DCN layer built from the same name-seeded weights, the fusion formula; the
solution's reference outputs for the modules."""
import math

from autograder.explain import fail
from autograder.grading import graded
from autograder.tinaface import cases_model as cases
from autograder.tinaface import checks
from autograder.units import case_names

HW = "tinaface"


@graded("deform_sampling", 4, "pure-PyTorch bilinear sampling = torchvision deform_conv2d (values, gradients)")
def test_deform_sampling(submission):
    checks.check_sampling(submission, case_names(cases.SAMPLING_CASES))


@graded("deform_sampling", 2, "offset groups, stride 2, no padding (hidden)", public=False)
def test_deform_sampling_hidden(submission):
    checks.check_sampling(submission, case_names(cases.SAMPLING_CASES, public=False))


@graded("deform_conv", 1, "weight and conv_offset; zero-initialised offsets = plain convolution")
def test_deform_conv_init(submission):
    checks.check_deform_conv(submission, case_names(cases.DEFORM_CONV_CASES), "init")


@graded("deform_conv", 2, "forward = torchvision deform_conv2d with the layer's own offsets")
def test_deform_conv_forward(submission):
    checks.check_deform_conv(submission, case_names(cases.DEFORM_CONV_CASES), "forward")


@graded("deform_conv", 1, "odd size, stride 2 (hidden)", public=False)
def test_deform_conv_hidden(submission):
    names = case_names(cases.DEFORM_CONV_CASES, public=False)
    checks.check_deform_conv(submission, names, "init")
    checks.check_deform_conv(submission, names, "forward")


def _resnet_zero_init(name, got, want):
    if float(got[1].abs().max()) != 0.0:
        raise fail(name, "the last norm of every residual block should start at 0 (zero_init_residual=True)")


@graded("group_norm_resnet", 1, "state_dict: GroupNorm, DCN conv2 in the marked stages")
def test_resnet_names(submission):
    checks.check_module(submission, "group_norm_resnet", case_names(cases.RESNET_CASES), "names")


@graded("group_norm_resnet", 1, "zero-initialised residual branches")
def test_resnet_zero_init(submission):
    checks.check_module(submission, "group_norm_resnet", case_names(cases.RESNET_CASES), "forward",
                        extra=_resnet_zero_init)


@graded("group_norm_resnet", 2, "forward: [C2, C3, C4, C5]")
def test_resnet_forward(submission):
    checks.check_module(submission, "group_norm_resnet", case_names(cases.RESNET_CASES), "forward")


@graded("group_norm_resnet", 1, "DCN in layer2 only (hidden)", public=False)
def test_resnet_hidden(submission):
    names = case_names(cases.RESNET_CASES, public=False)
    checks.check_module(submission, "group_norm_resnet", names, "names")
    checks.check_module(submission, "group_norm_resnet", names, "forward")


@graded("fpn6", 1, "state_dict: lateral_convs.i, fpn_convs.0..5 (.conv, .gn)")
def test_fpn_names(submission):
    checks.check_module(submission, "fpn6", case_names(cases.FPN_CASES), "names")


@graded("fpn6", 2, "forward: six levels P2..P7")
def test_fpn_forward(submission):
    checks.check_module(submission, "fpn6", case_names(cases.FPN_CASES), "forward")


@graded("fpn6", 1, "100 x 36 input (hidden)", public=False)
def test_fpn_hidden(submission):
    checks.check_module(submission, "fpn6", case_names(cases.FPN_CASES, public=False), "forward")


@graded("inception", 1, "state_dict: convs.0..4 (.conv, .gn)")
def test_inception_names(submission):
    checks.check_module(submission, "inception", case_names(cases.INCEPTION_CASES), "names")


@graded("inception", 2, "forward: [C/2, C/4, C/4] branches, ReLU of the concatenation")
def test_inception_forward(submission):
    checks.check_module(submission, "inception", case_names(cases.INCEPTION_CASES), "forward")


@graded("inception", 1, "128 channels (hidden)", public=False)
def test_inception_hidden(submission):
    checks.check_module(submission, "inception", case_names(cases.INCEPTION_CASES, public=False), "forward")


def _head_init(name, got, want):
    init = got[1]
    if abs(float(init[0]) + math.log(99)) > 1e-4:
        raise fail(name, f"retina_cls.bias should start at -log(99) = {-math.log(99):.4f} (prior probability "
                         f"0.01), got {float(init[0]):.4f}")
    if float(init[1:5].max()) != 0.0:
        raise fail(name, "retina_reg and retina_iou should start at zero (weights and biases)")
    if not 0.005 < float(init[5]) < 0.015:
        raise fail(name, f"the tower convolutions should start normal(std 0.01), got std {float(init[5]):.4g}")


@graded("tinaface_head", 1, "state_dict: cls_convs, reg_convs, retina_cls/reg/iou")
def test_head_names(submission):
    checks.check_module(submission, "tinaface_head", case_names(cases.HEAD_CASES), "names")


@graded("tinaface_head", 1, "initialisation: prior bias -log(99), zero reg/iou")
def test_head_init(submission):
    checks.check_module(submission, "tinaface_head", case_names(cases.HEAD_CASES), "forward", extra=_head_init)


@graded("tinaface_head", 2, "forward: (bbox [B, P, 4], cls [B, P, 1], iou [B, P, 1]), IoU from the reg tower")
def test_head_forward(submission):
    checks.check_module(submission, "tinaface_head", case_names(cases.HEAD_CASES), "forward")


@graded("tinaface_head", 1, "3 stacked convs (hidden)", public=False)
def test_head_hidden(submission):
    checks.check_module(submission, "tinaface_head", case_names(cases.HEAD_CASES, public=False), "forward")


@graded("fast_normalized_fusion", 2, "sum w_i / (eps + sum w_j) I_i with w = ReLU(params)")
def test_fusion(submission):
    checks.check_fusion(submission, case_names(cases.FUSION_CASES))


@graded("fast_normalized_fusion", 1, "all weights negative (hidden)", public=False)
def test_fusion_hidden(submission):
    checks.check_fusion(submission, case_names(cases.FUSION_CASES, public=False))


@graded("bifpn_layer", 1, "state_dict: td/bu weights (2 and 3 inputs), separable convs")
def test_bifpn_names(submission):
    checks.check_module(submission, "bifpn_layer", case_names(cases.BIFPN_CASES), "names")


@graded("bifpn_layer", 2, "forward: top-down then bottom-up nodes, SiLU -> separable conv -> GN")
def test_bifpn_forward(submission):
    checks.check_module(submission, "bifpn_layer", case_names(cases.BIFPN_CASES), "forward")


@graded("bifpn_layer", 1, "5 levels (hidden)", public=False)
def test_bifpn_hidden(submission):
    checks.check_module(submission, "bifpn_layer", case_names(cases.BIFPN_CASES, public=False), "forward")
