"""Grading of the RetinaFace homework, Part 8 (``6_testing_finetuning.ipynb``): ``postprocess``.

Oracle: the documented pipeline in float64 with the slow-loop decoding of ``oracles.py`` and
``torchvision.ops.nms``. A wrong answer is compared with the classic wrong pipelines (boxes left
normalised, x and y scaled by the wrong side, keep_top_k or top_k in the wrong place, scores that
are not softmax probabilities) so the feedback can name the mistake.
"""
import torch
import torchvision

from autograder.explain import naming, noting
from autograder.feedback import GradingFailure, describe, expect_close
from autograder.grading import graded
from autograder.retinaface import cases_testing as cases
from autograder.retinaface.oracles import decode_boxes, decode_landmarks
from autograder.units import case_names

HW = "retinaface"
OUTPUT_NAMES = ("boxes", "scores", "landmarks")


def pipeline(x: dict, scale: str = "wh", scores: str = "softmax", top_k_first: bool = True,
             keep_top_k_after_nms: bool = True) -> tuple:
    """(boxes [K, 4], scores [K], landmarks [K, 10] or None) of the documented pipeline in float64,
    or of a classic wrong one: ``scale`` "none" (normalised) or "hw" (x by the height); ``scores``
    "sigmoid" (sigmoid of the face logit) or "logit"; ``top_k_first=False`` skips the top-k cut;
    ``keep_top_k_after_nms=False`` cuts to keep_top_k before NMS."""
    loc, conf, priors = x["loc"].double(), x["conf"].double(), x["priors"].double()
    height, width = x["image_size"]
    face = {"softmax": lambda c: c.softmax(dim=1)[:, 1], "sigmoid": lambda c: c[:, 1].sigmoid(),
            "logit": lambda c: c[:, 1]}[scores](conf)
    rows = torch.nonzero(face > x["conf_thresh"]).squeeze(1)
    rows = rows[torch.argsort(face[rows], descending=True, stable=True)]
    if top_k_first:
        rows = rows[:x["top_k"]]
    if not keep_top_k_after_nms:
        rows = rows[:x["keep_top_k"]]
    sx, sy = {"wh": (width, height), "hw": (height, width), "none": (1, 1)}[scale]
    factor = torch.tensor([sx, sy], dtype=torch.float64)
    boxes = decode_boxes(loc[rows], priors[rows], x["variances"]) * factor.repeat(2)
    keep = torchvision.ops.nms(boxes, face[rows], x["nms_thresh"])[:x["keep_top_k"]]
    landmarks = None
    if x["landm"] is not None:
        kept = rows[keep]
        landmarks = decode_landmarks(x["landm"].double()[kept], priors[kept], x["variances"]) * factor.repeat(5)
    dtype = x["loc"].dtype
    return (boxes[keep].to(dtype), face[rows][keep].to(dtype),
            None if landmarks is None else landmarks.to(dtype))


MISTAKES = (
    (dict(scale="none"), "your boxes are still normalised to [0, 1]: multiply the decoded boxes (and "
                         "landmarks) by the input's (W, H, W, H) to get pixels"),
    (dict(scale="hw"), "x and y are scaled by the wrong sides: x coordinates are multiplied by the "
                       "height and y by the width; the scale is (W, H, W, H) with image_size = (H, W)"),
    (dict(scores="sigmoid"), "your scores are sigmoid(face logit); the model's two logits are a softmax "
                             "over (background, face): the face score is softmax(conf)[:, 1]"),
    (dict(scores="logit"), "your scores are raw logits; the face score is the probability "
                           "softmax(conf)[:, 1]"),
    (dict(keep_top_k_after_nms=False), "keep_top_k is applied before NMS; it caps the detections NMS "
                                       "returns (take NMS's first keep_top_k), while top_k caps the "
                                       "candidates that reach NMS"),
    (dict(top_k_first=False), "top_k is not applied: only the top_k best-scoring candidates may reach "
                              "NMS"),
)


def _matches(got, wrong) -> bool:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return False
    for g, w in zip(got, wrong):
        if (g is None) != (w is None):
            return False
        if w is None:
            continue
        if not isinstance(g, torch.Tensor) or g.shape != w.shape or not torch.allclose(
                g.detach().cpu().double(), w.double(), rtol=1e-4, atol=1e-3):
            return False
    return True


def mistake_hint(got, x: dict, right: tuple) -> str | None:
    """The hint of the classic wrong pipeline ``got`` equals (and the right answer does not)."""
    for flags, hint in MISTAKES:
        wrong = pipeline(x, **flags)
        if not _matches(right, wrong) and _matches(got, wrong):
            return hint
    return None


def check_postprocess(submission, names) -> None:
    with noting(submission, "postprocess"):
        for name in names:
            x = submission.inputs("postprocess", name)
            got = submission.output("postprocess", name)
            expected = pipeline(x)
            with naming(lambda: mistake_hint(got, x, expected)):
                if not isinstance(got, (tuple, list)) or len(got) != 3:
                    raise GradingFailure(f"case '{name}': postprocess must return (boxes, scores, "
                                         f"landmarks), got {describe(got)}")
                scores = got[1]
                if isinstance(scores, torch.Tensor) and scores.ndim == 1 and len(scores) != len(expected[1]):
                    raise GradingFailure(f"case '{name}': {len(scores)} detections returned, expected "
                                         f"{len(expected[1])}")
                for what, value, want in zip(OUTPUT_NAMES, got, expected):
                    if want is None:
                        if value is not None:
                            raise GradingFailure(f"case '{name}': landm is None, so landmarks must be None; "
                                                 f"got {describe(value)}")
                        continue
                    # pixels: 1e-3 px is far below anything visible and above float32 rounding
                    expect_close(value, want, name, what=what, rtol=1e-4, atol=1e-3)


@graded("postprocess", 2, "scores, threshold, decode, your NMS and pixels, best first")
def test_postprocess_pipeline(submission):
    check_postprocess(submission, cases.PIPELINE_CASES)


@graded("postprocess", 1, "top_k cuts the candidates before NMS, keep_top_k the detections after")
def test_postprocess_counts(submission):
    check_postprocess(submission, cases.COUNT_CASES)


@graded("postprocess", 1, "landm = None, and no candidate at all: empty results")
def test_postprocess_edge_cases(submission):
    check_postprocess(submission, (cases.NO_LANDMARKS, cases.NO_CANDIDATES))


@graded("postprocess", 1, "twelve faces in float64 (hidden)", public=False)
def test_postprocess_hidden(submission):
    check_postprocess(submission, case_names(cases.POSTPROCESS_CASES, public=False))
