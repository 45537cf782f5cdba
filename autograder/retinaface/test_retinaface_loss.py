"""Grading of the RetinaFace homework, Part 7 (``5_loss_training.ipynb``): the multibox loss and
the focal loss. Oracles: a direct re-statement of the loss on the slow-loop matching of
``oracles.py`` (``oracles_loss.py``: values and gradients), and ``torchvision.ops.sigmoid_focal_loss``."""
import torch
import torchvision

from autograder.retinaface import cases_loss as cases
from autograder.retinaface import mistakes
from autograder.explain import naming, noting
from autograder.feedback import GradingFailure, describe, expect_close
from autograder.grading import graded
from autograder.units import case_names
from autograder.retinaface.oracles_loss import multibox_oracle

HW = "retinaface"
LOSS_PARTS = ("loss_l", "loss_c", "loss_landm")
PREDICTION_NAMES = ("loc", "conf", "landm")


def _expect_loss_part(part, got, want, name, counts):
    try:
        expect_close(got, want.to(torch.float32), name, what=part, check_dtype=False, atol=1e-4)
    except GradingFailure as err:
        count, what = ((counts["landm"], f"{counts['landm']} positives with landmarks for loss_landm")
                       if part == "loss_landm" else (counts["pos"], f"{counts['pos']} here"))
        wrong = mistakes.batch_normalised(want, count, counts["batch"]).float()
        if counts["batch"] != max(count, 1) and mistakes.diagnose(got, [(wrong, "")]) is not None:
            raise GradingFailure(f"{err} — {mistakes.BATCH_HINT.format(part=part, what=what)}",
                                 err.kind) from None
        for key, words in mistakes.WRONG_COUNTS:  # the ratio to the expected loss names the count used
            if counts.get(key) is None:  # a recording made before this count was kept
                continue
            wrong = mistakes.batch_normalised(want, count, counts[key]).float()
            if counts[key] != max(count, 1) and mistakes.diagnose(got, [(wrong, "")]) is not None:
                hint = mistakes.WRONG_COUNT_HINT.format(part=part, name=words, value=counts[key], what=what)
                raise GradingFailure(f"{err} — {hint}", err.kind) from None
        raise


def _check_multibox(submission, names):
    for name in names:
        with noting(submission, "multibox_loss"):
            _check_multibox_case(submission, name)


def _check_multibox_case(submission, name):
    got = submission.output("multibox_loss", name)
    if not isinstance(got, tuple) or len(got) != 6:
        raise GradingFailure(f"case '{name}': expected (loss_l, loss_c, loss_landm); got "
                             f"{describe(got)}")
    counts = {}
    want = multibox_oracle(submission.inputs("multibox_loss", name), counts)
    for part, g, w in zip(LOSS_PARTS, got[:3], want[:3]):
        _expect_loss_part(part, g, w, name, counts)
    for part, g, w in zip(PREDICTION_NAMES, got[3:], want[3:]):
        if g is None:
            raise GradingFailure(f"case '{name}': no gradient reaches the {part} predictions; "
                                 f"do not detach them or compute the loss with NumPy")
        expect_close(g, w.to(torch.float32), name, what=f"gradient of the total loss w.r.t. {part}",
                     check_dtype=False, atol=1e-5)


@graded("multibox_loss", 4, "box, class (hard negative mining 1:7) and landmark losses")
def test_multibox_loss(submission):
    _check_multibox(submission, case_names(cases.MULTIBOX_CASES))


@graded("multibox_loss", 2, "a batch of crowded images (hidden)", public=False)
def test_multibox_loss_hidden(submission):
    _check_multibox(submission, case_names(cases.MULTIBOX_CASES, public=False))


def _check_focal(submission, names):
    for name in names:
        x = submission.inputs("focal_loss", name)
        inputs = x["inputs"].detach().clone().requires_grad_(True)
        want = torchvision.ops.sigmoid_focal_loss(inputs, x["targets"], alpha=x["alpha"],
                                                  gamma=x["gamma"], reduction=x["reduction"])
        want.sum().backward()
        got = submission.output("focal_loss", name)
        if not isinstance(got, tuple) or len(got) != 2:
            raise GradingFailure(f"case '{name}': unexpected result {describe(got)}")
        with naming(lambda: mistakes.focal_hint(got[0], x["inputs"], x["targets"], x["alpha"], x["gamma"],
                                                x["reduction"])):
            expect_close(got[0], want.detach(), name, what="loss", atol=1e-5)
        if got[1] is None:
            raise GradingFailure(f"case '{name}': no gradient reaches the inputs")
        expect_close(got[1], inputs.grad, name, what="gradient w.r.t. the logits", atol=1e-5)


@graded("focal_loss", 3, "agrees with torchvision.ops.sigmoid_focal_loss (values and gradients)")
def test_focal_loss(submission):
    _check_focal(submission, case_names(cases.FOCAL_CASES))


@graded("focal_loss", 1, "gamma 5 on a large batch (hidden)", public=False)
def test_focal_loss_hidden(submission):
    _check_focal(submission, case_names(cases.FOCAL_CASES, public=False))
