"""The DSFD feedback names the classic mistakes. Each mistake is injected into a copy of the
solutions (the solution cell with one edit), the copy is graded once as a TA would (``pytest
autograder/ --hw dsfd`` in a subprocess), and the feedback must say what went wrong."""
import json
import re

import pytest

from tests.notebooks import REPO_ROOT, copy_homework, grade, scores_by_unit, set_answer

MODEL_NB, TRAINING_NB = "1_model.ipynb", "3_anchors_loss_sampling.ipynb"

# grade_id: (notebook, [(solution text, wrong text)])
MISTAKES = {
    "efficientnet_sources": (MODEL_NB, [("    return [last[s] for s in strides]", "    return [5, 6, 7, 8]")]),
    "pal_priors": (TRAINING_NB, [("((second, size), (first, size / 2))", "((second, size), (first, size))")]),
    "upsample_product": (MODEL_NB, [("align_corners=False) * y", "align_corners=True) * y")]),
    "fem": (MODEL_NB, [
        ("        a = channels // 3\n", "        a = channels // 3\n        self.a = a\n"),
        ("self.branch1 = conv(channels, a)", "self.branch1 = conv(a, a)"),
        ("nn.Sequential(conv(channels, a), nn.ReLU", "nn.Sequential(conv(a, a), nn.ReLU"),
        ("nn.Sequential(conv(channels, b), nn.ReLU", "nn.Sequential(conv(b, b), nn.ReLU"),
        ("torch.cat([self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)",
         "torch.cat([self.branch1(x[:, :self.a]), self.branch2(x[:, self.a:2 * self.a]), "
         "self.branch3(x[:, 2 * self.a:])], dim=1)")]),
    "progressive_anchor_loss": (TRAINING_NB, [
        ("    total = max(int(num_pos.sum()), 1)\n    return loss_l / total, loss_c / total",
         "    return loss_l, loss_c, int(num_pos.sum())"),
        ("        loc_first, conf_first = shot_loss(loc1, conf1, priors[0], targets, self.cfg)\n"
         "        loc_second, conf_second = shot_loss(loc2, conf2, priors[1], targets, self.cfg)\n",
         "        loc_first, conf_first, n1 = shot_loss(loc1, conf1, priors[0], targets, self.cfg)\n"
         "        loc_second, conf_second, n2 = shot_loss(loc2, conf2, priors[1], targets, self.cfg)\n"
         "        n = max(n1 + n2, 1)\n"
         "        loc_first, conf_first, loc_second, conf_second = (\n"
         "            loc_first / n, conf_first / n, loc_second / n, conf_second / n)\n")]),
}


def solution_source(notebook: str, grade_id: str) -> str:
    cells = json.loads((REPO_ROOT / "solutions" / "dsfd" / notebook).read_text())["cells"]
    [cell] = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    return re.sub(r"(?m)^[ ]*### (BEGIN|END) SOLUTION\n", "", "".join(cell["source"]))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsfd_feedback")
    sub = copy_homework(root / "sub", hw="dsfd")
    for grade_id, (notebook, edits) in MISTAKES.items():
        source = solution_source(notebook, grade_id)
        for right, wrong in edits:
            assert right in source, (grade_id, right)
            source = source.replace(right, wrong)
        set_answer(sub / "dsfd" / notebook, grade_id, source)
    results, output, _ = grade(sub, root / "results.json", "--hw", "dsfd", timeout=900)
    assert results, f"results.json was not written:\n{output}"
    return results


def _test(results, name):
    [test] = [t for t in results["tests"] if t["name"] == name]
    return test


def test_taps_at_the_wrong_stride_are_named(graded):
    test = _test(graded, "efficientnet_sources: find_taps: the last block of each stride 4, 8, 16, 32 (B0, B1)")
    assert test["score"] == 0
    assert "stride mismatch: source 0 has stride 16, but its anchors step 4 pixels" in test["output"]
    assert "course project" in test["output"]


def test_first_shot_anchors_not_halved_are_named(graded):
    test = _test(graded, "pal_priors: 640 x 640: first-shot anchors half the second shot's, at the cell centres")
    assert test["score"] == 0
    assert "the first shot's anchors must be half the second shot's" in test["output"]


def test_align_corners_true_is_named(graded):
    test = _test(graded, "upsample_product: bilinear (align_corners=False) upsampling times the finer map")
    assert test["score"] == 0
    assert "align_corners=True" in test["output"] and "align_corners=False" in test["output"]


def test_fem_channel_split_is_named(graded):
    test = _test(graded, "fem: branch names and widths of the public FEM (C//3, C//3, C - 2*(C//3))")
    assert test["score"] == 0
    assert "every FEM branch must read the whole input x" in test["output"]
    assert "channel split" in test["output"]


def test_shots_normalised_together_are_named(graded):
    test = _test(graded, "progressive_anchor_loss: L_PAL: two multibox losses, each normalised by its own positives")
    assert test["score"] == 0
    assert "each shot must be divided by its OWN number of positives" in test["output"]


def test_only_the_wrong_units_lose_points_and_their_callers_are_charged_once(graded):
    scores = scores_by_unit(graded)
    for unit, (score, max_score) in scores.items():
        if unit not in MISTAKES:  # the model calls upsample_product, fem, the sources: graded again
            assert score == max_score > 0, (unit, scores)
    outputs = " ".join(t["output"] for t in graded["tests"] if t["name"].startswith("dsfd:"))
    assert "graded with the reference" in outputs and "charged once" in outputs, outputs


# appended to the solution's progressive_anchor_loss cell: the right values with no gradient
DETACHED_LOSS = ("\n\n_WithGradient = ProgressiveAnchorLoss\n\n\n"
                 "class ProgressiveAnchorLoss(_WithGradient):\n"
                 "    def forward(self, *args, **kwargs):\n"
                 "        return {k: v.detach() for k, v in super().forward(*args, **kwargs).items()}\n")


def test_a_loss_detached_from_the_predictions_scores_zero(tmp_path):
    """The right values with no gradient train nothing: the check compares the gradients too."""
    sub = copy_homework(tmp_path / "sub", hw="dsfd")
    detached = solution_source(TRAINING_NB, "progressive_anchor_loss") + DETACHED_LOSS
    set_answer(sub / "dsfd" / TRAINING_NB, "progressive_anchor_loss", detached)
    results, output, _ = grade(sub, tmp_path / "results.json", "--hw", "dsfd", "-k", "progressive_anchor_loss")
    scores = scores_by_unit(results)
    assert scores["progressive_anchor_loss"][0] == 0 < scores["progressive_anchor_loss"][1], output[-2000:]
    outputs = " ".join(t["output"] for t in results["tests"] if t["name"].startswith("progressive_anchor_loss"))
    assert "gradient of the loss with respect to the first shot's loc is zero" in outputs, outputs
