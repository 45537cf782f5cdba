"""The Face R-FCN feedback names the classic mistakes. Four wrong answers are injected into a copy
of the solutions (each a small edit of the solution cell), the copy is graded once as a TA would
(``pytest autograder/ --hw rfcn`` in a subprocess), and each mistake's check must score 0 with
words that name it; a fifth (bin-major channels, in the same cell as torch.round) is checked in-process."""
import json

import pytest

from autograder.feedback import GradingFailure
from autograder.grading import LiveSubmission
from autograder.rfcn import test_rfcn_model as model_tests
from tests.notebooks import REPO_ROOT, copy_homework, grade, set_answer
from utils.notebook import load_notebook

NB1, NB2, NB3 = "1_anchors_boxes.ipynb", "2_psroi_model.ipynb", "3_targets_losses.ipynb"

# (notebook, grade_id, text in the solution cell, replacement)
MISTAKES = {
    "one-based anchors": (NB1, "generate_anchors", "    return anchors.float()\n",
                          "    return anchors.float() + 1\n"),
    "fast nms": (NB1, "nms_vectorised", "    while True:",
                 "    keep = (torch.ones_like(keep) @ suppress == 0).to(boxes.dtype)\n    while False:"),
    "torch.round": (NB2, "ps_roi_pool", "    start, end = rounded[:, :2], rounded[:, 2:]",
                    "    rounded = torch.round(scaled)\n    start, end = rounded[:, :2], rounded[:, 2:]"),
    "zero overlap": (NB3, "anchor_target_layer", " & (face_best[None] > 0)", ""),
}


# only the checks this file reads run (the grader starts only the units they ask for)
GRADED_TESTS = ("test_generate_anchors_known or test_nms_chain or test_psroi_exact or test_anchor_rules "
                "or test_shift_anchors or test_smooth_l1")


def _solution_source(notebook: str, grade_id: str) -> str:
    cells = json.loads((REPO_ROOT / "solutions" / "rfcn" / notebook).read_text())["cells"]
    (cell,) = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    return "".join(cell["source"])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("rfcn-feedback")
    sub = copy_homework(root / "sub", hw="rfcn")
    sources = {}
    for notebook, grade_id, old, new in MISTAKES.values():
        source = sources.get(grade_id, _solution_source(notebook, grade_id))
        assert old in source, f"the solution of {grade_id} changed: update this test's edit ({old!r})"
        sources[grade_id] = source.replace(old, new)
        set_answer(sub / "rfcn" / notebook, grade_id, sources[grade_id])
    data, output, _ = grade(sub, root / "results.json", "--hw", "rfcn", "-k", GRADED_TESTS)
    assert data, f"results.json was not written:\n{output}"
    return {t["name"]: t for t in data["tests"]}


def _failed_with(results, name: str, *words: str) -> None:
    test = results[name]
    assert test["score"] == 0, test
    for word in words:
        assert word in test["output"], test["output"]


def test_one_based_anchors_are_named(results):
    _failed_with(results, "generate_anchors: the classic 9 anchors (-84, -40, 99, 55), ... exactly",
                 "1-based MATLAB anchors", "comment at the top")


def test_fast_nms_is_named(results):
    _failed_with(results, "nms_vectorised: a chain of three boxes: greedy, not Fast NMS", "this is Fast NMS")


PSROI_EXACT = "ps_roi_pool: torch.equal to torchvision on integer maps (scales 1/16, 1/8, 1; RoIs past the border)"


def test_torch_round_is_named(results):
    _failed_with(results, PSROI_EXACT, "torch.round rounds half to even", "half away from zero")


def _in_process_failure(notebook: str, grade_id: str, old: str, new: str, test, match: str) -> None:
    """``test`` (a graded test function) fails with ``match`` on the solution with ``old`` replaced
    by ``new`` in the answer cell ``grade_id``, run as a notebook's check cell would run it."""
    namespace = vars(load_notebook(REPO_ROOT / "solutions" / "rfcn" / notebook)).copy()
    source = _solution_source(notebook, grade_id)
    assert old in source, f"the solution of {grade_id} changed: update this test's edit ({old!r})"
    exec(source.replace(old, new), namespace)
    submission = LiveSubmission("rfcn", namespace)
    try:
        with pytest.raises(GradingFailure, match=match):
            test(submission)
    finally:
        submission.close()


def test_bin_major_channels_are_named():
    """The other ps_roi_pool mistake, checked in-process as a notebook's check cell would."""
    old = "    b = rois[:, 0].long()"
    _in_process_failure(NB2, "ps_roi_pool", old,
                        "    c_in = (c_in % (kh * kw)) * channels + c_in // (kh * kw)\n" + old,
                        model_tests.test_psroi_exact, "bin-major")


def test_zero_overlap_face_is_named(results):
    _failed_with(results, "anchor_target_layer: labels and targets follow the IoU rules (no subsampling)",
                 "IoU 0 with every face are positive", "only where that best IoU is > 0")


def test_correct_units_keep_full_marks(results):
    for name in ("shift_anchors: [H*W*A, 4] in row, column, anchor order",
                 "smooth_l1: equal to F.smooth_l1_loss(beta = 1 / sigma²), sigma 3 and 1"):
        assert results[name]["score"] == results[name]["max_score"], results[name]


def test_one_forced_anchor_per_face_is_named_by_a_public_check():
    """An argmax forces one anchor per face; py-faster-rcnn forces every anchor that ties a face's best
    IoU. The public case with a face halfway between two anchors tells them apart (it was hidden-only)."""
    from autograder.rfcn import test_rfcn_targets as target_tests

    _in_process_failure(NB3, "anchor_target_layer",
                        "        forced = ((iou == face_best[None]) & (face_best[None] > 0)).any(dim=1)\n",
                        "        forced = torch.zeros(len(best), dtype=torch.bool, device=best.device)\n"
                        "        forced[iou.argmax(dim=0)[face_best > 0]] = True\n",
                        target_tests.test_anchor_rules, "every anchor that ties a face's best IoU is positive")
