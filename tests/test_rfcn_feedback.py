"""The Face R-FCN feedback names the classic mistakes. Four wrong answers are injected into a copy
of the solutions (each a small edit of the solution cell), the copy is graded once as a TA would
(``pytest autograder/ --hw rfcn`` in a subprocess), and each mistake's check must score 0 with
words that name it; the other ps_roi_pool mistakes (bin-major channels, rounding half up; in the same
cell as torch.round) are checked in-process. A different rounding or clamp keeps the points of
PS-RoI pooling's idea: only the rounding check and the small hidden torchvision test charge it."""
import json
from types import SimpleNamespace

import pytest
import torch

from autograder.feedback import GradingFailure
from autograder.grading import LiveSubmission
from autograder.rfcn import test_rfcn_model as model_tests
from autograder.units import homework_units
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
GRADED_TESTS = ("test_generate_anchors_known or test_nms_chain or test_psroi_idea or test_psroi_rounding "
                "or test_psroi_torchvision or test_anchor_rules or test_shift_anchors or test_smooth_l1")


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


PSROI_IDEA = ("ps_roi_pool: the idea: class-major channels, k x k bins, bin averages (integer maps; RoIs inside "
              "the map, away from its last row and column and from n + 0.5 cells)")
PSROI_ROUNDING = "ps_roi_pool: corners at n + 0.5 cells round half away from zero (torchvision's std::round)"
PSROI_TORCHVISION = ("ps_roi_pool: torch.equal to torchvision with its artefacts: rounding past the border, the "
                     "W - 1 clamp (hidden)")


def test_torch_round_is_named_by_the_public_rounding_check(results):
    _failed_with(results, PSROI_ROUNDING, "rounds the corners' n + 0.5 cells half to even", "torch.round",
                 "half away from zero")
    _failed_with(results, PSROI_TORCHVISION, "rounded half to even")


def test_torch_round_keeps_the_points_of_the_idea(results):
    assert results[PSROI_IDEA]["score"] == results[PSROI_IDEA]["max_score"], results[PSROI_IDEA]


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


PSROI_ROUNDED = "    start, end = rounded[:, :2], rounded[:, 2:]"
PSROI_CLAMP = "return lo.clamp(0, limit - 1).long(), hi.clamp(0, limit - 1).long()"


PSROI_CHANNELS = "    b = rois[:, 0].long()"
# Mistakes in units that already carry one above, checked in-process: (notebook, grade_id, old, new)
IN_PROCESS_MISTAKES = {
    "bin-major channels": (NB2, "ps_roi_pool", PSROI_CHANNELS,
                           "    c_in = (c_in % (kh * kw)) * channels + c_in // (kh * kw)\n" + PSROI_CHANNELS),
    "rounding half up": (NB2, "ps_roi_pool", PSROI_ROUNDED, "    rounded = torch.floor(scaled + 0.5)\n" + PSROI_ROUNDED),
    "one forced anchor per face": (
        NB3, "anchor_target_layer",
        "        forced = ((iou == face_best[None]) & (face_best[None] > 0)).any(dim=1)\n",
        "        forced = torch.zeros(len(best), dtype=torch.bool, device=best.device)\n"
        "        forced[iou.argmax(dim=0)[face_best > 0]] = True\n"),
}


def test_bin_major_channels_are_named():
    """The other ps_roi_pool mistake, checked in-process as a notebook's check cell would."""
    _in_process_failure(*IN_PROCESS_MISTAKES["bin-major channels"], model_tests.test_psroi_idea,
                        "your channels are bin-major")


def test_rounding_half_up_is_named():
    _in_process_failure(*IN_PROCESS_MISTAKES["rounding half up"], model_tests.test_psroi_rounding,
                        "half up: floor\\(v \\+ 0.5\\)")


def _psroi_namespace(old: str, new: str) -> dict:
    namespace = vars(load_notebook(REPO_ROOT / "solutions" / "rfcn" / NB2)).copy()
    source = _solution_source(NB2, "ps_roi_pool")
    assert old in source, f"the solution of ps_roi_pool changed: update this test's edit ({old!r})"
    exec(source.replace(old, new), namespace)
    return namespace


class _StaffView:
    """The hidden cases too, run in-process on a namespace (what official grading's worker returns)."""

    def __init__(self, namespace: dict) -> None:
        self.units, self.namespace, self.public_only = homework_units("rfcn"), SimpleNamespace(**namespace), False

    def inputs(self, unit: str, case: str) -> dict:
        return self.units[unit].case(case).make_inputs(None)

    def output(self, unit: str, case: str):
        return self.units[unit].call(self.namespace, self.inputs(unit, case), torch.device("cpu"))


def test_clamping_to_w_keeps_the_idea_and_only_the_hidden_check_names_it():
    """Clamping bin ends to W (Caffe's choice) is reasonable: the public ps_roi_pool checks pass; the
    one small hidden test names torchvision's W - 1 artefact."""
    namespace = _psroi_namespace(PSROI_CLAMP, PSROI_CLAMP.replace("limit - 1", "limit"))
    submission = LiveSubmission("rfcn", namespace)
    try:
        for test in (model_tests.test_psroi_idea, model_tests.test_psroi_float, model_tests.test_psroi_grad,
                     model_tests.test_psroi_rounding):
            test(submission)
    finally:
        submission.close()
    with pytest.raises(GradingFailure, match="clamps them to W - 1"):
        model_tests.test_psroi_torchvision(_StaffView(namespace))


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

    _in_process_failure(*IN_PROCESS_MISTAKES["one forced anchor per face"], target_tests.test_anchor_rules,
                        "every anchor that ties a face's best IoU is positive")
