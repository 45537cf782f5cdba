"""The TinaFace feedback names the classic mistakes. Each mistake is injected into a copy of the
solutions (one answer cell edited by a string replacement); seven of them are graded together once, as a
TA would (``pytest autograder/ --hw tinaface`` in a subprocess), and the two that share a unit with
another mistake are checked in-process through the notebook check cells' path (``LiveSubmission``)."""
import json

import pytest

from autograder.feedback import GradingFailure
from autograder.grading import LiveSubmission
from autograder.tinaface import checks
from tests.notebooks import REPO_ROOT, copy_homework, grade, scores_by_unit, set_answer

MODEL_NB, BOXES_NB = "1_model.ipynb", "2_anchors_losses.ipynb"

# (notebook, grade_id, (solution text, mistaken text))
MISTAKES = {
    "deform_sampling": (MODEL_NB, [("off[:, :, tap, 0]", "OFF_Y"), ("off[:, :, tap, 1]", "off[:, :, tap, 0]"),
                                   ("OFF_Y", "off[:, :, tap, 1]")]),
    "tinaface_anchors": (BOXES_NB, [("torch.arange(rows, dtype=torch.float64) * s",
                                     "(torch.arange(rows, dtype=torch.float64) + 0.5) * s"),
                                    ("torch.arange(cols, dtype=torch.float64) * s",
                                     "(torch.arange(cols, dtype=torch.float64) + 0.5) * s")]),
    "sigmoid_focal_loss": (BOXES_NB, [("(alpha * targets + (1 - alpha) * (1 - targets))",
                                       "((1 - alpha) * targets + alpha * (1 - targets))")]),
    "diou_loss": (BOXES_NB, [("return 1 - iou + rho2 / c2", "return 1 - iou")]),
    "iou_aware_loss": (BOXES_NB, [("pred = pred_boxes.detach()", "pred = pred_boxes")]),
    "fast_normalized_fusion": (MODEL_NB, [("w = torch.relu(weights)", "w = weights")]),
    "group_norm_resnet": (MODEL_NB, [("self.width = width", "pass"), ("if width != 64:", "if False:")]),
}
# Second mistakes in units that already carry one above: checked in-process.
RATIO_AS_WIDTH_OVER_HEIGHT = [("w = s * sizes / math.sqrt(ratio)", "w = s * sizes * math.sqrt(ratio)"),
                              ("h = s * sizes * math.sqrt(ratio)", "h = s * sizes / math.sqrt(ratio)")]
FUSION_WITHOUT_EPS = [("w = w / (eps + w.sum())", "w = w / w.sum()")]


def answer_source(notebook: str, grade_id: str) -> str:
    cells = json.loads((REPO_ROOT / "solutions" / "tinaface" / notebook).read_text())["cells"]
    return "".join(next(c["source"] for c in cells
                        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id))


def mistaken(notebook: str, grade_id: str, edits) -> str:
    source = answer_source(notebook, grade_id)
    for old, new in edits:
        assert old in source, f"{grade_id}: the solution no longer contains {old!r}; update this test"
        source = source.replace(old, new)
    return source


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinaface_feedback")
    sub = copy_homework(root / "sub", hw="tinaface")
    for grade_id, (notebook, edits) in MISTAKES.items():
        set_answer(sub / "tinaface" / notebook, grade_id, mistaken(notebook, grade_id, edits))
    results, output, _ = grade(sub, root / "results.json", "--hw", "tinaface")
    assert results, f"results.json was not written:\n{output}"
    return results


def _feedback(results, unit_and_title):
    matches = [t for t in results["tests"] if t["name"].startswith(unit_and_title)]
    assert matches, [t["name"] for t in results["tests"]]
    return matches[0]


@pytest.mark.parametrize("test_name, words", [
    ("deform_sampling: pure-PyTorch", "offsets in (dx, dy) order"),
    ("tinaface_anchors: (j·s, i·s) centres", "anchors at cell centres"),
    ("sigmoid_focal_loss: = torchvision", "alpha applied to the negatives"),
    ("diou_loss: = torchvision", "DIoU without the centre-distance term"),
    ("iou_aware_loss: BCE", "IoU target not detached"),
    ("fast_normalized_fusion: sum", "fusion weights without ReLU"),
    ("group_norm_resnet: state_dict", "width=16 was ignored"),
])
def test_mistake_is_named(graded, test_name, words):
    test = _feedback(graded, test_name)
    assert test["score"] == 0
    assert words in test["output"], test["output"]


def test_only_the_mistaken_units_lose_points(graded):
    for unit, (score, max_score) in scores_by_unit(graded).items():
        if unit not in MISTAKES:
            assert score == max_score > 0, (unit, score, max_score)


def _live_failure(unit, notebook, edits, check, needs=()):
    """``needs``: grade_ids of the same notebook whose (correct) answers the unit uses."""
    namespace = {}
    setup = answer_source(notebook, "given_setup").replace('check = Checker("tinaface", globals())', "")
    exec(compile(setup.replace("sys.path.insert(0, str(KIT_ROOT))", "pass"), "setup", "exec"), namespace)
    for grade_id in needs:
        exec(compile(answer_source(notebook, grade_id), grade_id, "exec"), namespace)
    exec(compile(mistaken(notebook, unit, edits), unit, "exec"), namespace)
    submission = LiveSubmission("tinaface", namespace)
    try:
        with pytest.raises(GradingFailure) as err:
            check(submission)
    finally:
        submission.close()
    return str(err.value)


def test_ratio_as_width_over_height_is_named():
    message = _live_failure("tinaface_anchors", BOXES_NB, RATIO_AS_WIDTH_OVER_HEIGHT,
                            lambda s: checks.check_anchors(s, "64 x 96 input, strides 4..128"))
    assert "ratio taken as width / height" in message


def test_fusion_without_eps_is_named():
    message = _live_failure("fast_normalized_fusion", MODEL_NB, FUSION_WITHOUT_EPS,
                            lambda s: checks.check_fusion(s, ["tiny weights: eps matters"]))
    assert "fusion without eps" in message


def test_narrow_resnet_with_a_64_channel_stem_is_named():
    lite_case = "BasicBlock (1, 1, 1, 1), width 16, GN 4, DCN in layer3 and layer4 (the lite backbone)"
    message = _live_failure("group_norm_resnet", MODEL_NB, [("if width != 64:", "if False:")],
                            lambda s: checks.check_module(s, "group_norm_resnet", [lite_case], "names"),
                            needs=("deform_sampling", "deform_conv"))
    assert "conv1 still has 64 output channels" in message


def test_assignment_without_forcing_is_named_by_a_public_check():
    """Without the forced best anchor a face that shares its best anchor keeps nothing of it: the
    public case where two faces share one anchor tells the two rules apart (it once scored 62 / 62)."""
    unforced = [("        if gt_best[g] >= min_pos_iou:\n            assigned[overlaps[g] == gt_best[g]] = g\n",
                 "        pass\n")]
    message = _live_failure("max_iou_assign", BOXES_NB, unforced,
                            lambda s: checks.check_assign(s, "forcing: two faces share their best anchor, "
                                                             "the later face takes it"))
    assert "no forcing" in message, message
