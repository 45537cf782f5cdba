"""Part 8's ``postprocess``: its check cell names each classic mistake, and the detector built from a
student's folder (``--impl``) runs the student's post-processing and NMS end to end."""
import contextlib
import io

import nbformat
import numpy as np
import pytest
import torch

from autograder.check import Checker
from tests.notebooks import REPO_ROOT, copy_homework, edit_cells, set_answer
from utils.detectors import load_detector, load_model
from utils.detectors.notebooks import load_code
from utils.detectors.retinaface import NOTEBOOKS, load_homework
from utils.notebook import load_notebook

TESTING = "6_testing_finetuning.ipynb"
SOLUTION = REPO_ROOT / "solutions" / "retinaface" / TESTING


def _check_with(old: str, new: str) -> str:
    """What the check cell prints when ``old`` is replaced by ``new`` in the solution's postprocess."""
    namespace = dict(vars(load_notebook(SOLUTION)))
    (cell,) = [c for c in nbformat.read(SOLUTION, as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == "postprocess"]
    assert old in cell.source, old
    exec(cell.source.replace(old, new), namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        Checker("retinaface", namespace)("postprocess")
    return out.getvalue()


def test_the_solution_passes_its_check_cell():
    assert "all public checks pass" in _check_with("height, width = image_size", "height, width = image_size")


@pytest.mark.parametrize("old, new, words", [
    ("* pixels.repeat(2)\n", "\n", "still normalised to [0, 1]"),
    ("pixels = torch.tensor([width, height]", "pixels = torch.tensor([height, width]", "scaled by the wrong sides"),
    ("F.softmax(conf, dim=-1)[:, 1]", "torch.sigmoid(conf[:, 1])", "sigmoid(face logit)"),
    ("candidates = candidates[best_first]", "candidates = candidates[best_first][:keep_top_k]",
     "keep_top_k is applied before NMS"),
    ("stable=True)[:top_k]", "stable=True)", "top_k is not applied"),
], ids=["normalised", "h-w swapped", "sigmoid", "keep_top_k first", "no top_k"])
def test_each_classic_mistake_is_named(old, new, words):
    out = _check_with(old, new)
    assert words in out, out


def test_calling_torchvision_nms_is_forbidden_in_the_sandbox_only_by_name():
    """The unit declares torchvision's NMS ops forbidden (the sandbox enforces it, tests/test_hostile.py)."""
    from autograder.retinaface.cases_testing import UNITS
    (unit,) = UNITS
    assert "torchvision.ops.nms" in unit.forbidden and "torch.ops.torchvision.nms" in unit.forbidden


# -- end to end: the student's folder --------------------------------------------------------------
def _student(tmp_path, nms_source=None):
    """A student's folder holding the solutions (answers and all), with an optional NMS answer."""
    hw = copy_homework(tmp_path / "student") / "retinaface"
    if nms_source is not None:
        set_answer(hw / "4_matching_nms.ipynb", "nms", nms_source)
    return hw.parent


def test_the_students_postprocess_and_nms_run_inside_the_detector(tmp_path):
    """A counting NMS in the student's notebook 4 is called once per image by the --impl detector,
    and its detections equal those of the solutions' post-processing on the same (untrained) model.
    (The kit's vectorised pipeline scores with sigmoid(c1 - c0), equal to the softmax up to rounding,
    which an untrained model's tied scores would turn into a different tie order.)"""
    counting = ("CALLS = []\n\n"
                "def nms(dets, thresh):\n"
                "    CALLS.append(len(dets))\n"
                "    order = torch.argsort(dets[:, 4], descending=True, stable=True)\n"
                "    keep = []\n"
                "    while order.numel() > 0:\n"
                "        best, rest = order[0], order[1:]\n"
                "        keep.append(best)\n"
                "        iou = jaccard(dets[best, :4].unsqueeze(0), dets[rest, :4])[0]\n"
                "        order = rest[~(iou > thresh)]\n"
                "    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)\n")
    student = _student(tmp_path, counting)
    net = load_model("retinaface", "mobilenet0.25", impl=student, seed=0)
    theirs = load_detector("retinaface", net, "mobilenet0.25", impl=student, conf_thresh=0.3)
    code = load_code("retinaface", student, NOTEBOOKS)
    calls = code.module("6_testing_finetuning.ipynb").nms.__globals__["CALLS"]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    before = len(calls)
    found = theirs.detect(images)
    assert len(calls) - before == 2                      # once per image: the student's NMS ran
    solution = load_detector("retinaface", net, "mobilenet0.25", impl="solutions", conf_thresh=0.3)
    assert solution.postprocess_fn is not None and solution.postprocess_fn is not theirs.postprocess_fn
    expected = solution.detect(images)
    for a, b in zip(found, expected):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.landmarks, b.landmarks, rtol=1e-4, atol=1e-3)


def test_a_postprocess_stub_falls_back_to_the_kit_with_a_note(tmp_path, capsys):
    student = _student(tmp_path)
    set_answer(student / "retinaface" / TESTING, "postprocess",
               "def postprocess(loc, conf, landm, priors, image_size, **options):\n"
               "    raise NotImplementedError()\n")
    hw = load_homework(load_code("retinaface", student, NOTEBOOKS))
    assert hw.postprocess is None
    assert "postprocess (or the nms it calls) is not implemented yet" in capsys.readouterr().err
