"""Grading of the RetinaFace homework: a few checks per answer cell, each worth points.

Each test asks the submission for its outputs on named cases (``cases_retinaface.py``) and compares
them with the solution's reference outputs and, where one exists, an independent oracle
(torchvision.ops). Run: ``pytest autograder/ [--submission DIR] [--device cuda] [--results r.json]``.
"""
import torch
import torchvision

from autograder import cases_retinaface as cases
from autograder.feedback import expect_close, expect_equal
from autograder.grading import graded

HW = "retinaface"


# -- Part 5: intersect and jaccard ---------------------------------------------------------------
def _check_against_reference(submission, unit, names):
    for name in names:
        expect_close(submission.output(unit, name), submission.reference(unit, name), name)


@graded("intersect", 1, "known boxes, including touching edges")
def test_intersect_known(submission):
    _check_against_reference(submission, "intersect", ["known boxes"])


@graded("intersect", 2, "random boxes and identical/nested/zero-area boxes")
def test_intersect_random(submission):
    _check_against_reference(submission, "intersect",
                             ["identical, nested and zero-area boxes", *cases.RANDOM_PAIR_CASES])


@graded("intersect", 1, "empty inputs give empty [A, B] results")
def test_intersect_empty(submission):
    _check_against_reference(submission, "intersect", cases.EMPTY_PAIR_CASES)


@graded("jaccard", 1, "known boxes (1/7 for a 5-pixel offset)")
def test_jaccard_known(submission):
    _check_against_reference(submission, "jaccard", ["known boxes"])


@graded("jaccard", 2, "agrees with torchvision.ops.box_iou")
def test_jaccard_oracle(submission):
    for name in ["known boxes", "identical, nested and zero-area boxes", *cases.RANDOM_PAIR_CASES]:
        x = submission.inputs("jaccard", name)
        expect_close(submission.output("jaccard", name), torchvision.ops.box_iou(x["box_a"], x["box_b"]), name)


@graded("jaccard", 1, "empty inputs give empty [A, B] results")
def test_jaccard_empty(submission):
    _check_against_reference(submission, "jaccard", cases.EMPTY_PAIR_CASES)


# -- Part 6: NMS ----------------------------------------------------------------------------------
def _check_nms_oracle(submission, names):
    for name in names:
        x = submission.inputs("nms", name)
        expected = torchvision.ops.nms(x["dets"][:, :4], x["dets"][:, 4], x["thresh"])
        expect_equal(submission.output("nms", name), expected, name, what="kept indices")


@graded("nms", 1, "keeps the best of three duplicates")
def test_nms_known(submission):
    name = "three duplicates around one face and one other face"
    expect_equal(submission.output("nms", name), submission.reference("nms", name), name,
                 what="kept indices")


@graded("nms", 3, "agrees with torchvision.ops.nms over seeds and thresholds")
def test_nms_oracle(submission):
    _check_nms_oracle(submission, [c.name for c in cases.NMS_RANDOM_CASES])


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
