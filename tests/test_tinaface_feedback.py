"""The TinaFace feedback names the classic mistakes. Each mistake is injected into a copy of the
solutions (one answer cell edited by a string replacement); seven of them are graded together once, as a
TA would (``pytest autograder/ --hw tinaface`` in a subprocess), and the two that share a unit with
another mistake are checked in-process through the notebook check cells' path (``LiveSubmission``)."""
import json
import re

import pytest
import torch

from autograder.feedback import GradingFailure
from autograder.grading import LiveSubmission, load_references
from autograder.tinaface import checks, oracles
from autograder.sandbox.transfer import unwrap
from autograder.units import homework_units
from tests.notebooks import REPO_ROOT, copy_homework, grade, public_check_feedback, scores_by_unit, set_answer

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


# -- mistakes named from properties of the answer, each caught by a public check ----------------------
def _sub(pattern, replacement):
    """An edit by regular expression (tolerates the solution's spacing and keyword arguments)."""
    def edit(source):
        new, count = re.subn(pattern, replacement, source)
        assert count, f"the solution no longer matches {pattern!r}; update this test"
        return new
    return edit


def public_feedback(unit, notebook, edit, needs=()):
    """{public test title: its feedback, or None when it passes} for ``unit`` with ``edit`` applied to
    its answer cell, graded in-process as the notebook's check cells grade it."""
    namespace = {}
    setup = answer_source(notebook, "given_setup").replace('check = Checker("tinaface", globals())', "")
    exec(compile(setup.replace("sys.path.insert(0, str(KIT_ROOT))", "pass"), "setup", "exec"), namespace)
    for grade_id in needs:
        exec(compile(answer_source(notebook, grade_id), grade_id, "exec"), namespace)
    exec(compile(edit(answer_source(notebook, unit)), unit, "exec"), namespace)
    return public_check_feedback("tinaface", unit, namespace)


BORDER_REPLICATED = _sub(r"\(weight \* inside\)", "weight")
NAMED_BY_PROPERTY = {
    "border replicated (sampling)": ("deform_sampling", MODEL_NB, BORDER_REPLICATED, (), "border replicated"),
    "border replicated (DCN layer)": (
        "deform_conv", MODEL_NB,
        _sub(r"torchvision\.ops\.deform_conv2d\(x, offset, self\.weight, stride=self\.stride,\s*padding=self\.padding,",
             "torchvision.ops.deform_conv2d(F.pad(x, (self.padding,) * 4, mode='replicate'), offset, self.weight, "
             "stride=self.stride, padding=0,"), (), "border replicated"),
    "GroupNorm groups and channels swapped": (
        "group_norm_resnet", MODEL_NB, _sub(r"partial\(nn\.GroupNorm, num_groups\)", "lambda c: nn.GroupNorm(c // num_groups, c)"),
        ("deform_sampling", "deform_conv"), "GroupNorm's groups and channels swapped"),
    "align_corners=True in FPN6": ("fpn6", MODEL_NB, _sub(r'mode="bilinear"(, align_corners=False)?',
                                                          'mode="bilinear", align_corners=True'), (),
                                   "upsampling with align_corners=True"),
    "SiLU after the conv in BiFPN": ("bifpn_layer", MODEL_NB, _sub(r"conv\(F\.silu\((.*)\)\)\n", r"F.silu(conv(\1))\n"),
                                     ("fast_normalized_fusion",), "SiLU applied after the separable convolution"),
    "DIoU enclosing box like the intersection": (
        "diou_loss", BOXES_NB, _sub(r"torch\.max\(pred\[:, 2:\], target\[:, 2:\]\) - torch\.min\(pred\[:, :2\], target\[:, :2\]\)",
                                    "torch.min(pred[:, 2:], target[:, 2:]) - torch.max(pred[:, :2], target[:, :2])"),
        (), "enclosing box built like the intersection"),
    "warmup off by one step": ("warmup_cosine_lr", BOXES_NB, _sub(r"\* iteration / warmup_iters", "* (iteration + 1) / warmup_iters"),
                               (), "warmup off by 1 step"),
    "clamp before the std (decode)": (
        "delta_xywh_decode", BOXES_NB,
        _sub(r"d = deltas \* deltas\.new_tensor\(stds\)\n(\s*)dw, dh = .*\n",
             r"d = deltas.clone()\n\1d[:, 2:] = d[:, 2:].clamp(-max_ratio, max_ratio)\n\1d = d * deltas.new_tensor(stds)\n"
             r"\1dw, dh = d[:, 2], d[:, 3]\n"), (), "clamped before the stds scale them"),
}


@pytest.mark.parametrize("mistake", list(NAMED_BY_PROPERTY))
def test_public_checks_catch_and_name_the_mistake(mistake):
    unit, notebook, edit, needs, words = NAMED_BY_PROPERTY[mistake]
    feedback = public_feedback(unit, notebook, edit, needs)
    failed = {title: text for title, text in feedback.items() if text is not None}
    assert failed, f"{mistake}: every public check of {unit} passes"
    assert any(words in text for text in failed.values()), failed


def test_a_variant_not_designed_for_is_named_from_the_property():
    """Corners outside the image zeroed for rows only (columns replicated): no variant oracle computes
    it, the property 'wrong only where a tap falls outside the image' names it."""
    rows_only = _sub(r"inside = \(yy >= 0\) & \(yy <= height - 1\) & \(xx >= 0\) & \(xx <= width - 1\)",
                     "inside = (yy >= 0) & (yy <= height - 1)")
    feedback = public_feedback("deform_sampling", MODEL_NB, rows_only)
    assert any(text and "wrong only at positions whose taps fall outside the image" in text
               for text in feedback.values()), feedback


def test_offset_order_is_named_on_a_case_with_offsets():
    """Zero offsets cannot show the (dy, dx) order in the output: the hint comes from a case with offsets."""
    swapped = _sub(r"off\[:, :, tap, (0|1)\]", lambda m: f"off[:, :, tap, {1 - int(m.group(1))}]")
    text = next(t for t in public_feedback("deform_sampling", MODEL_NB, swapped).values() if t)
    assert text.startswith("case 'random offsets") and "offsets in (dx, dy) order" in text, text


def test_every_differing_output_is_listed():
    align = NAMED_BY_PROPERTY["align_corners=True in FPN6"]
    text = next(t for t in public_feedback(*align[:4]).values() if t)
    assert "3 of 6 outputs differ" in text and all(f"output {i} differs" in text for i in range(3)), text
    assert "output 3 differs" not in text


@pytest.mark.parametrize("unit, oracle", [
    ("group_norm_resnet", lambda x: oracles.resnet_gn(x["input"], x["layers"], x["bottleneck"], x["groups"], x["dcn"],
                                                      x.get("width", 64))),
    ("fpn6", lambda x: oracles.fpn6(x["features"], x["in"], x["out"], x["groups"])),
    ("bifpn_layer", lambda x: oracles.bifpn(x["features"], x["channels"], x["groups"])),
])
def test_module_oracles_reproduce_the_references(unit, oracle):
    """The variants that name mistakes are these oracles with one flag changed: unchanged, they give
    the solution's outputs."""
    references = load_references("tinaface")[unit]
    for case in homework_units("tinaface")[unit].cases:
        want = unwrap(references[case.name])[-1]
        got = oracle(case.make_inputs(None))
        for g, w in zip(got, want):
            torch.testing.assert_close(g.float(), w, atol=1e-5, rtol=1e-4)
