"""Grading of the RetinaFace homework: a few checks per answer cell, each worth points.

Each test asks the submission for its outputs on named cases (``cases.py``) and compares
them with the solution's reference outputs and, where one exists, an independent oracle
(torchvision.ops, or the slow loops of ``oracles.py``); ``checks.py`` holds
the comparisons and their feedback. Run:
``pytest autograder/ [--submission DIR] [--device cuda] [--results r.json]``.
"""
import torch
import torchvision

from autograder.retinaface import cases
from autograder.retinaface import checks, mistakes
from autograder.explain import naming, noting
from autograder.feedback import GradingFailure, expect_close, expect_equal
from autograder.grading import graded
from autograder.units import case_names

HW = "retinaface"


# -- Part 2: the heads -----------------------------------------------------------------------------
@graded("bbox_head", 1, "one 1x1 convolution named conv1x1 with num_anchors*4 outputs")
def test_bbox_head_names(submission):
    checks.check_head_names(submission, "bbox_head")


@graded("bbox_head", 2, "[B, H*W*A, 4] rows: cell by cell, then anchor by anchor")
def test_bbox_head_forward(submission):
    checks.check_head(submission, "bbox_head", case_names(cases.HEAD_FORWARD_CASES))


@graded("bbox_head", 1, "larger feature maps (hidden)", public=False)
def test_bbox_head_hidden(submission):
    checks.check_head(submission, "bbox_head", case_names(cases.HEAD_FORWARD_CASES, public=False))


@graded("landmark_head", 1, "one 1x1 convolution named conv1x1 with num_anchors*10 outputs")
def test_landmark_head_names(submission):
    checks.check_head_names(submission, "landmark_head")


@graded("landmark_head", 2, "[B, H*W*A, 10] rows: cell by cell, then anchor by anchor")
def test_landmark_head_forward(submission):
    checks.check_head(submission, "landmark_head", case_names(cases.HEAD_FORWARD_CASES))


@graded("landmark_head", 1, "larger feature maps (hidden)", public=False)
def test_landmark_head_hidden(submission):
    checks.check_head(submission, "landmark_head", case_names(cases.HEAD_FORWARD_CASES, public=False))


# -- Part 2: the model -----------------------------------------------------------------------------
@graded("retinaface", 2, "state_dict names of the public checkpoint (mobilenet0.25)")
def test_retinaface_names(submission):
    checks.check_retinaface_names(submission, cases.RETINAFACE_NAMES_CASE)


@graded("retinaface", 1, "the backbone stages and channels come from cfg (resnet50)")
def test_retinaface_names_resnet(submission):
    checks.check_retinaface_names(submission, "parameter names, resnet50")


@graded("retinaface", 2, "forward: (loc [B, P, 4], conf [B, P, 2], landm [B, P, 10])")
def test_retinaface_forward(submission):
    checks.check_retinaface_forward(submission, case_names(cases.RETINAFACE_FORWARD_CASES))


@graded("retinaface", 1, "forward on a batch of odd-sized images (hidden)", public=False)
def test_retinaface_forward_hidden(submission):
    checks.check_retinaface_forward(submission, case_names(cases.RETINAFACE_FORWARD_CASES, public=False))


# -- Part 4: prior boxes ---------------------------------------------------------------------------
@graded("prior_box", 2, "640 x 640: 16 800 anchors at the cell centres")
def test_prior_box_square(submission):
    checks.check_priors(submission, "640 x 640")


@graded("prior_box", 2, "non-square and odd image sizes (ceil)")
def test_prior_box_sizes(submission):
    for name in cases.PRIOR_SIZE_CASES:
        checks.check_priors(submission, name)


@graded("prior_box", 1, "clip=True clamps every value to [0, 1]")
def test_prior_box_clip(submission):
    checks.check_priors(submission, "75 x 101, clip=True")


@graded("prior_box", 1, "more sizes, clip, cfg_re50 (hidden)", public=False)
def test_prior_box_hidden(submission):
    for name in case_names(cases.PRIOR_CASES, public=False):
        checks.check_priors(submission, name)


# -- Part 5: intersect and jaccard ---------------------------------------------------------------
def _expect_pairwise(submission, unit, name, want):
    """One box-pair case against ``want``, naming the "+1" pixel mistake when the output fits it."""
    got = submission.output(unit, name)
    try:
        expect_close(got, want, name)
    except GradingFailure as err:
        x = submission.inputs(unit, name)
        hint = mistakes.diagnose(got, mistakes.pairwise_mistakes(unit, x["box_a"], x["box_b"]))
        if hint is None and unit == "jaccard":
            hint = mistakes.iou_property_hint(got, x["box_a"], x["box_b"])
        if hint is None:
            raise
        raise GradingFailure(f"{err} — {hint}", err.kind) from None


def _check_against_reference(submission, unit, names):
    with noting(submission, unit):
        for name in names:
            _expect_pairwise(submission, unit, name, submission.reference(unit, name))


@graded("intersect", 1, "known boxes, including touching edges")
def test_intersect_known(submission):
    _check_against_reference(submission, "intersect", ["known boxes"])


@graded("intersect", 1, "random boxes and identical/nested/zero-area boxes")
def test_intersect_random(submission):
    _check_against_reference(submission, "intersect",
                             ["identical, nested and zero-area boxes", *cases.RANDOM_PAIR_CASES])


@graded("intersect", 1, "random float64 boxes (hidden)", public=False)
def test_intersect_hidden(submission):
    _check_against_reference(submission, "intersect", cases.HIDDEN_PAIR_CASES)


@graded("intersect", 1, "empty inputs give empty [A, B] results")
def test_intersect_empty(submission):
    _check_against_reference(submission, "intersect", cases.EMPTY_PAIR_CASES)


@graded("jaccard", 1, "known boxes (1/7 for a 5-pixel offset)")
def test_jaccard_known(submission):
    _check_against_reference(submission, "jaccard", ["known boxes"])


def _check_jaccard_oracle(submission, names):
    with noting(submission, "jaccard"):
        for name in names:
            x = submission.inputs("jaccard", name)
            _expect_pairwise(submission, "jaccard", name, torchvision.ops.box_iou(x["box_a"], x["box_b"]))


@graded("jaccard", 1, "agrees with torchvision.ops.box_iou")
def test_jaccard_oracle(submission):
    _check_jaccard_oracle(submission, ["known boxes", "identical, nested and zero-area boxes",
                                       *cases.RANDOM_PAIR_CASES])


@graded("jaccard", 1, "agrees with box_iou on random float64 boxes (hidden)", public=False)
def test_jaccard_hidden(submission):
    _check_jaccard_oracle(submission, cases.HIDDEN_PAIR_CASES)


@graded("jaccard", 1, "empty inputs give empty [A, B] results")
def test_jaccard_empty(submission):
    _check_against_reference(submission, "jaccard", cases.EMPTY_PAIR_CASES)


# -- Part 5: encoding and decoding -----------------------------------------------------------------
def _coding_tests(unit: str, known_title: str) -> tuple:
    """The four checks every box/landmark coding unit gets (same cases, same points)."""
    @graded(unit, 1, f"known values ({known_title})")
    def known(submission):
        checks.check_coding_known(submission, unit)

    @graded(unit, 1, "random anchors, other variances and no anchors")
    def definition(submission):
        checks.check_coding_definition(submission, unit, cases.CODING_PUBLIC_CASES)

    @graded(unit, 1, "inverts the definition of its counterpart (round trip)")
    def round_trip(submission):
        checks.check_coding_round_trip(submission, unit)

    @graded(unit, 1, "300 anchors in float64 (hidden)", public=False)
    def hidden(submission):
        checks.check_coding_definition(submission, unit, cases.CODING_HIDDEN_CASES)

    return known, definition, round_trip, hidden


test_encode_known, test_encode_definition, test_encode_round_trip, test_encode_hidden = _coding_tests(
    "encode", "a face 0.1 right of its anchor's centre, twice as wide")
test_decode_known, test_decode_definition, test_decode_round_trip, test_decode_hidden = _coding_tests(
    "decode", "the inverse of encode's known values")
(test_encode_landm_known, test_encode_landm_definition, test_encode_landm_round_trip,
 test_encode_landm_hidden) = _coding_tests("encode_landm", "offsets in units of v0 times the anchor size")
(test_decode_landm_known, test_decode_landm_definition, test_decode_landm_round_trip,
 test_decode_landm_hidden) = _coding_tests("decode_landm", "the inverse of encode_landm's known values")


# -- Part 5: matching ------------------------------------------------------------------------------
@graded("match", 2, "labels: IoU >= threshold is positive (1), the rest background (0)")
def test_match_labels(submission):
    checks.check_match_labels(submission, [cases.MATCH_SEPARATE, cases.MATCH_AT_THRESHOLD])


@graded("match", 1, "a face without landmarks labels its anchors -1")
def test_match_no_landmarks(submission):
    checks.check_match_labels(submission, [cases.MATCH_NO_LANDMARKS])


@graded("match", 2, "forcing: each face's best anchor; the later face wins a shared one")
def test_match_forcing(submission):
    checks.check_match_labels(submission, [cases.MATCH_SHARED, cases.MATCH_SMALL])


@graded("match", 2, "loc_t and landm_t encode each anchor's face")
def test_match_targets(submission):
    checks.check_match_targets(submission, [cases.MATCH_SEPARATE, cases.MATCH_SHARED, cases.MATCH_SMALL,
                                            cases.MATCH_NO_LANDMARKS])


@graded("match", 1, "no faces: every anchor background, zero targets")
def test_match_no_faces(submission):
    with noting(submission, "match"):
        x, (loc, conf, landm) = checks.match_outputs(submission, cases.MATCH_EMPTY)
        num_priors = x["priors"].shape[0]
        expect_equal(conf, torch.zeros(num_priors, dtype=torch.long), cases.MATCH_EMPTY, "conf_t")
        expect_close(loc, torch.zeros(num_priors, 4), cases.MATCH_EMPTY, "loc_t")
        expect_close(landm, torch.zeros(num_priors, 10), cases.MATCH_EMPTY, "landm_t")


@graded("match", 2, "many random faces, float32 and float64 (hidden)", public=False)
def test_match_hidden(submission):
    checks.check_match_labels(submission, cases.MATCH_RANDOM_CASES)
    checks.check_match_targets(submission, cases.MATCH_RANDOM_CASES)


# -- Part 6: NMS ----------------------------------------------------------------------------------
def _check_nms_oracle(submission, names):
    with noting(submission, "nms"):
        for name in names:
            x = submission.inputs("nms", name)
            expected = torchvision.ops.nms(x["dets"][:, :4], x["dets"][:, 4], x["thresh"])
            got = submission.output("nms", name)
            with naming(lambda: mistakes.nms_hint(got, x["dets"], x["thresh"], expected)):
                expect_equal(got, expected, name, what="kept indices")


@graded("nms", 1, "keeps the best of three duplicates")
def test_nms_known(submission):
    name = "three duplicates around one face and one other face"
    with noting(submission, "nms"):
        got, want = submission.output("nms", name), submission.reference("nms", name)
        try:
            expect_equal(got, want, name, what="kept indices")
        except GradingFailure as err:
            x = submission.inputs("nms", name)
            hint = mistakes.nms_hint(got, x["dets"], x["thresh"], want)
            if hint is None:
                raise
            raise GradingFailure(f"{err} — {hint}", err.kind) from None


@graded("nms", 3, "agrees with torchvision.ops.nms over seeds and thresholds")
def test_nms_oracle(submission):
    _check_nms_oracle(submission, case_names(cases.NMS_RANDOM_CASES))


@graded("nms", 1, "agrees with torchvision.ops.nms on 200 and 500 detections (hidden)", public=False)
def test_nms_oracle_hidden(submission):
    _check_nms_oracle(submission, case_names(cases.NMS_RANDOM_CASES, public=False))


@graded("nms", 1, "tied scores keep their original order")
def test_nms_ties(submission):
    _check_nms_oracle(submission, [c.name for c in cases.NMS_TIE_CASES])


@graded("nms", 1, "identical and zero-area boxes; thresholds 0 and 1")
def test_nms_special(submission):
    _check_nms_oracle(submission, ["identical and zero-area boxes", "thresh 0: any overlap suppresses",
                                   "thresh 1: nothing is suppressed"])


@graded("nms", 1, "no detections give an empty int64 result")
def test_nms_empty(submission):
    name = "no detections"
    got = submission.output("nms", name)
    expect_equal(got, torch.empty(0, dtype=torch.long), name, what="kept indices")
