"""Grading of the DSFD homework, Parts 1 and 2: the model's parts, the model, compound scaling.

Each test asks the submission for its outputs on named cases (``cases.py``) and compares them with
the solution's references and an independent oracle (``oracles.py``: F.normalize, F.interpolate,
F.conv2d, torchvision's EfficientNet rules); ``checks.py`` holds the comparisons and feedback.
"""
from autograder.dsfd import cases, checks
from autograder.grading import graded
from autograder.units import case_names

HW = "dsfd"


@graded("l2norm", 1, "a [C] parameter named weight, initialised to scale")
def test_l2norm_init(submission):
    checks.check_l2norm_init(submission, cases.L2NORM_INIT_CASE)


@graded("l2norm", 2, "x / (||x||_2 over channels + eps) * weight")
def test_l2norm_forward(submission):
    checks.check_l2norm(submission, ["[2, 6, 3, 4] input"])


@graded("l2norm", 1, "a location whose features are all zero (hidden)", public=False)
def test_l2norm_hidden(submission):
    checks.check_l2norm(submission, case_names(cases.L2NORM_CASES, public=False))


@graded("upsample_product", 2, "bilinear (align_corners=False) upsampling times the finer map")
def test_upsample_product(submission):
    checks.check_upsample(submission, case_names(cases.UPSAMPLE_CASES))


@graded("upsample_product", 1, "from a 1 x 1 map (hidden)", public=False)
def test_upsample_product_hidden(submission):
    checks.check_upsample(submission, case_names(cases.UPSAMPLE_CASES, public=False))


@graded("fem", 2, "branch names and widths of the public FEM (C//3, C//3, C - 2*(C//3))")
def test_fem_names(submission):
    checks.check_fem_names(submission, cases.FEM_NAMES_CASE)
    checks.check_fem_names(submission, "names and shapes, C = 256")


@graded("fem", 2, "ReLU(cat(three dilated branches on the whole input))")
def test_fem_forward(submission):
    checks.check_fem(submission, ["[1, 7, 9, 8] input"])


@graded("fem", 1, "another width and batch (hidden)", public=False)
def test_fem_hidden(submission):
    checks.check_fem(submission, ["[2, 6, 4, 5] input"])


@graded("efficientnet_sources", 2, "find_taps: the last block of each stride 4, 8, 16, 32 (B0, B1)")
def test_find_taps(submission):
    checks.check_taps(submission, case_names(cases.TAPS_CASES))


@graded("efficientnet_sources", 1, "find_taps on other backbones (hidden)", public=False)
def test_find_taps_hidden(submission):
    checks.check_taps(submission, case_names(cases.TAPS_CASES, public=False))


@graded("efficientnet_sources", 1, "EfficientNetSources: the tapped maps, strides matching the anchor steps")
def test_sources(submission):
    checks.check_sources(submission, case_names(cases.SOURCES_CASES))


@graded("efficientnet_sources", 1, "EfficientNetSources on B1, a non-square batch (hidden)", public=False)
def test_sources_hidden(submission):
    checks.check_sources(submission, case_names(cases.SOURCES_CASES, public=False))


@graded("dsfd", 3, "state_dict: the public VGG-16 checkpoint's 186 names and shapes")
def test_dsfd_names(submission):
    checks.check_dsfd_names(submission, cases.DSFD_NAMES_CASE)


@graded("dsfd", 1, "state_dict of the EfficientNet-B0 configuration")
def test_dsfd_names_efficientnet(submission):
    checks.check_dsfd_names(submission, "state_dict names, efficientnet_b0")


@graded("dsfd", 1, "without FEM: no fpn_* / L2Normef modules (hidden)", public=False)
def test_dsfd_names_hidden(submission):
    checks.check_dsfd_names(submission, "state_dict names, vgg16_lite without FEM")


@graded("dsfd", 3, "forward: both shots in training mode, the second alone in eval mode (VGG, EfficientNet)")
def test_dsfd_forward(submission):
    checks.check_dsfd_forward(submission, case_names(cases.DSFD_FORWARD_CASES))


@graded("dsfd", 1, "forward on a non-square input (hidden)", public=False)
def test_dsfd_forward_hidden(submission):
    checks.check_dsfd_forward(submission, case_names(cases.DSFD_FORWARD_CASES, public=False))


@graded("compound_scaling", 1, "depth alpha^phi, width beta^phi, resolution round(224 gamma^phi)")
def test_compound_scaling(submission):
    checks.check_compound(submission, case_names(cases.COMPOUND_CASES))


@graded("compound_scaling", 1, "other coefficients (hidden)", public=False)
def test_compound_scaling_hidden(submission):
    checks.check_compound(submission, case_names(cases.COMPOUND_CASES, public=False))


@graded("compound_scaling", 2, "round_filters gives torchvision's B0..B7 widths")
def test_round_filters(submission):
    checks.check_filters(submission, case_names(cases.FILTER_CASES), torchvision_stages=True)


@graded("compound_scaling", 1, "round_filters: never below 8, never below 90 % (hidden)", public=False)
def test_round_filters_hidden(submission):
    checks.check_filters(submission, case_names(cases.FILTER_CASES, public=False))


@graded("compound_scaling", 1, "round_repeats gives torchvision's B0..B7 depths")
def test_round_repeats(submission):
    checks.check_repeats(submission, case_names(cases.REPEAT_CASES))
