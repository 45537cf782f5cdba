"""Grading of the RetinaFace homework, Part 7 (``5_loss_training.ipynb``): the multibox loss and
the focal loss. Oracles: a direct re-statement of the loss on the slow-loop matching of
``oracles.py`` (values and gradients), and ``torchvision.ops.sigmoid_focal_loss``."""
import torch
import torch.nn.functional as F
import torchvision

from autograder.retinaface import cases_loss as cases
from autograder.retinaface import mistakes
from autograder.explain import noting
from autograder.feedback import GradingFailure, describe, expect_close
from autograder.grading import graded
from autograder.units import case_names
from autograder.retinaface.oracles import match_faces
from detector.retinaface.config import cfg_mnet

HW = "retinaface"
LOSS_PARTS = ("loss_l", "loss_c", "loss_landm")
PREDICTION_NAMES = ("loc", "conf", "landm")


def multibox_oracle(x, counts=None):
    """(loss_l, loss_c, loss_landm, grad loc, grad conf, grad landm) of the documented loss; ``counts``
    (a dict), when given, receives the numbers of positives and of positives with landmarks."""
    priors = cases.loss_priors(x["image_size"]).double()
    preds = [p.detach().double().requires_grad_(True) for p in x["predictions"]]
    loc, conf, landm = preds
    loss_l = loss_c = loss_landm = torch.zeros((), dtype=torch.float64)
    num_pos = num_landm = 0
    for b, t in enumerate(x["targets"]):
        t = t.double()
        m = match_faces(cfg_mnet["overlap_thresh"], t[:, :4], priors, cfg_mnet["variance"], t[:, 14],
                        t[:, 4:14], cfg_mnet["force_match_min_iou"])
        pos, with_landm = m.conf_t != 0, m.conf_t > 0
        num_pos, num_landm = num_pos + int(pos.sum()), num_landm + int(with_landm.sum())
        loss_l = loss_l + F.smooth_l1_loss(loc[b][pos], m.loc_t[pos], reduction="sum")
        loss_landm = loss_landm + F.smooth_l1_loss(landm[b][with_landm], m.landm_t[with_landm], reduction="sum")
        ce = F.cross_entropy(conf[b], pos.long(), reduction="none")
        negatives = ce[~pos].sort(descending=True).values
        keep = min(cfg_mnet["neg_pos_ratio"] * int(pos.sum()), len(priors) - 1)
        loss_c = loss_c + ce[pos].sum() + negatives[:keep].sum()
    if counts is not None:
        counts.update(pos=num_pos, landm=num_landm, batch=len(x["targets"]))
    losses = (loss_l / max(num_pos, 1), loss_c / max(num_pos, 1), loss_landm / max(num_landm, 1))
    (cfg_mnet["loc_weight"] * losses[0] + losses[1] + losses[2]).backward()
    return (*(v.detach() for v in losses), *(p.grad for p in preds))


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
        try:
            expect_close(got[0], want.detach(), name, what="loss", atol=1e-5)
        except GradingFailure as err:
            hint = mistakes.focal_hint(got[0], x["inputs"], x["targets"], x["alpha"], x["gamma"],
                                       x["reduction"])
            if hint is None:
                raise
            raise GradingFailure(f"{err} — {hint}", err.kind) from None
        if got[1] is None:
            raise GradingFailure(f"case '{name}': no gradient reaches the inputs")
        expect_close(got[1], inputs.grad, name, what="gradient w.r.t. the logits", atol=1e-5)


@graded("focal_loss", 3, "agrees with torchvision.ops.sigmoid_focal_loss (values and gradients)")
def test_focal_loss(submission):
    _check_focal(submission, case_names(cases.FOCAL_CASES))


@graded("focal_loss", 1, "gamma 5 on a large batch (hidden)", public=False)
def test_focal_loss_hidden(submission):
    _check_focal(submission, case_names(cases.FOCAL_CASES, public=False))
