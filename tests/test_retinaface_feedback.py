"""The feedback names the classic mistakes of the RetinaFace homework. Two submissions, each graded
once as a TA would (``pytest autograder/`` in a subprocess), carry several injected mistakes in
different units; a third check runs a notebook check cell in-process.
"""
import contextlib
import io

import pytest
import torch

from autograder.check import Checker
from tests.notebooks import REPO_ROOT, copy_homework, edit_cells, grade, set_answer
from utils.notebook import load_notebook

MATCHING = "4_matching_nms.ipynb"
LOSS = "5_loss_training.ipynb"


def loop_nms(order="torch.argsort(dets[:, 4], descending=True, stable=True)", suppress="iou > thresh"):
    """The notebook's first NMS version, with ``order`` and the suppression test replaceable."""
    return (f"def nms(dets, thresh):\n"
            f"    order = {order}\n"
            f"    keep = []\n"
            f"    while order.numel() > 0:\n"
            f"        best, rest = order[0], order[1:]\n"
            f"        keep.append(best)\n"
            f"        iou = jaccard(dets[best, :4].unsqueeze(0), dets[rest, :4])[0]\n"
            f"        order = rest[~({suppress})]\n"
            f"    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)\n")


# name: (notebook, grade_id, [(solution text, mistaken text)] or the whole mistaken answer)
MISTAKES = {
    "jaccard +1 areas": (MATCHING, "jaccard", [
        ("area_a = ((box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1]))",
         "area_a = ((box_a[:, 2] - box_a[:, 0] + 1) * (box_a[:, 3] - box_a[:, 1] + 1))"),
        ("area_b = ((box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1]))",
         "area_b = ((box_b[:, 2] - box_b[:, 0] + 1) * (box_b[:, 3] - box_b[:, 1] + 1))")]),
    "encode without v1": (MATCHING, "encode", [("/ priors[:, 2:]) / variances[1]", "/ priors[:, 2:])")]),
    "decode without v0": (MATCHING, "decode", [("loc[:, :2] * variances[0] * priors", "loc[:, :2] * priors")]),
    "nms with >=": (MATCHING, "nms", loop_nms(suppress="iou >= thresh")),
    "focal alpha on the negatives": (LOSS, "focal_loss", [("(alpha * targets + (1 - alpha) * (1 - targets))",
                                                            "((1 - alpha) * targets + alpha * (1 - targets))")]),
    "anchors at the corners along x": ("3_anchors.ipynb", "prior_box", [
        ("cx = (torch.arange(cols, dtype=torch.float64) + 0.5)", "cx = (torch.arange(cols, dtype=torch.float64) + 0.0)")]),
    "nms unsorted": (MATCHING, "nms", loop_nms(order="torch.arange(len(dets))")),
}
FIRST_MISTAKES = ("jaccard +1 areas", "encode without v1", "decode without v0", "nms with >=",
                  "focal alpha on the negatives", "anchors at the corners along x")


def edit_answer(notebook, grade_id, old, new):
    """Replace ``old`` (which must be there) by ``new`` in the answer cell ``grade_id``."""
    def edit(cells):
        (cell,) = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
        source = "".join(cell["source"])
        assert old in source, (grade_id, old)
        cell["source"] = source.replace(old, new)
    edit_cells(notebook, edit)


def _feedback(results, prefix):
    matches = [t for t in results["tests"] if t["name"].startswith(prefix)]
    assert matches, [t["name"] for t in results["tests"]]
    return matches[0]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """+1 areas in jaccard, v1 missing in encode (so match and, through it, the loss fail), v0
    missing in decode, focal alpha on the negatives, NMS with >=, anchors at the corners along x,
    a helper added to a locked cell, 1_data renamed and 2_model unreadable."""
    root = tmp_path_factory.mktemp("mistakes1")
    hw = copy_homework(root / "sub") / "retinaface"
    nb = hw / MATCHING
    for name in FIRST_MISTAKES:
        notebook, grade_id, change = MISTAKES[name]
        if isinstance(change, str):
            set_answer(hw / notebook, grade_id, change)
        else:
            for old, new in change:
                edit_answer(hw / notebook, grade_id, old, new)
    edit_answer(nb, "decode_landm", "pre.reshape(-1, 5, 2)", "as_points(pre)")

    def add_helper(cells):
        (cell,) = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "given_box_forms"]
        cell["source"] = "".join(cell["source"]) + "\n\ndef as_points(x):\n    return x.reshape(-1, 5, 2)\n"
    edit_cells(nb, add_helper)
    (hw / "1_data.ipynb").rename(hw / "1_data (1).ipynb")
    (hw / "2_model.ipynb").write_text('{"cells": [')
    units = ("intersect", "jaccard", "encode", "decode", "multibox", "focal", "nms", "prior_box",
             "face_stats", "centre_heatmap", "bbox_head")
    results, output, _ = grade(root / "sub", root / "results.json", "--hw", "retinaface",
                               "-k", " or ".join(units))
    assert results, output
    return results


def test_plus_one_widths_are_named_and_intersect_is_not_blamed(first):
    test = _feedback(first, "jaccard: known boxes")
    assert test["score"] == 0 and "add one pixel (x2 - x1 + 1)" in test["output"]
    assert "intersect" not in test["output"]
    assert _feedback(first, "intersect: known boxes")["score"] == 1


def test_one_missing_variance_is_named(first):
    assert "v1 (variances[1]) is missing from the log sizes" in _feedback(first, "encode: random")["output"]
    assert "v0 (variances[0]) is missing from the centre offsets" in _feedback(first, "decode: random")["output"]


def test_the_loss_names_its_broken_dependencies_transitively(first):
    test = _feedback(first, "multibox_loss: box, class")
    assert test["score"] == 0
    assert "calls your match, jaccard (through match), encode (through match)" in test["output"]


def test_focal_alpha_on_the_wrong_class_and_nms_with_ge(first):
    assert "alpha weights the wrong class" in _feedback(first, "focal_loss: agrees")["output"]
    assert "IoU exactly equal to thresh was suppressed" in _feedback(first, "nms: identical and zero")["output"]


def test_anchor_corners_on_one_axis(first):
    assert "off by half a stride along x only" in _feedback(first, "prior_box: 640 x 640")["output"]


def test_an_edited_locked_cell_is_said_to_be_discarded(first):
    test = _feedback(first, "decode_landm: known values")
    assert "you edited the locked cell(s) given_box_forms" in test["output"]
    assert "edits are discarded" in test["output"]


def test_renamed_and_unreadable_notebooks_are_said_once(first):
    """A renamed notebook is found by its cells and graded (as Gradescope does), and said once."""
    renamed = [t for t in first["tests"] if t["name"].startswith(("face_stats", "centre_heatmap"))]
    assert renamed and all(t["score"] == t["max_score"] for t in renamed), renamed
    assert first["output"].count("graded '1_data (1).ipynb' as 1_data.ipynb") == 1, first["output"]
    assert not any("no answer cell" in t["output"] for t in first["tests"])
    model = _feedback(first, "bbox_head")
    assert "2_model.ipynb could not be read as a Jupyter notebook" in model["output"]


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    """encode_landm still a stub (match calls it), decode_landm a stub of its own, NMS unsorted."""
    root = tmp_path_factory.mktemp("mistakes2")
    hw = copy_homework(root / "sub") / "retinaface"
    set_answer(hw / MATCHING, "decode_landm", "def decode_landm(pre, priors, variances):\n"
                                              "    raise NotImplementedError()\n")
    set_answer(hw / MATCHING, "nms", MISTAKES["nms unsorted"][2])
    set_answer(hw / MATCHING, "encode_landm", "def encode_landm(matched, priors, variances):\n"
                                              "    raise NotImplementedError()\n")
    results, output, _ = grade(root / "sub", root / "results.json", "--hw", "retinaface",
                               "-k", "match or nms or multibox or decode_landm")
    assert results, output
    return results


def test_not_implemented_names_the_unit_that_raises(second):
    test = _feedback(second, "match: labels")
    assert "your encode_landm (answer cell 'encode_landm' in 4_matching_nms.ipynb) still raises" in test["output"]
    assert "answer cell 'decode_landm' still raises" in _feedback(second, "decode_landm: known")["output"]


def test_unsorted_nms(second):
    assert "not sorted by score first" in _feedback(second, "nms: agrees with torchvision.ops.nms over")["output"]


def _check_cell(notebook, unit, source):
    """What the check cell of ``unit`` prints when ``source`` replaces the solution's definition."""
    namespace = dict(vars(load_notebook(REPO_ROOT / "solutions" / "retinaface" / notebook)))
    exec(source, namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        Checker("retinaface", namespace)(unit)
    return out.getvalue()


# MultiBoxLoss with loss_l and loss_c divided by the batch size instead of the positives (run after the
# solution's definitions, in their namespace)
LOSS_OVER_BATCH = """
_RightMultiBoxLoss = MultiBoxLoss


class MultiBoxLoss(_RightMultiBoxLoss):
    def forward(self, predictions, priors, targets):
        loss_l, loss_c, loss_landm = super().forward(predictions, priors, targets)
        num_pos = sum(int((match(self.threshold, t[:, :4], priors, self.variance, t[:, 14], t[:, 4:14],
                                 self.force_min_iou)[1] != 0).sum()) for t in targets)
        return loss_l * num_pos / len(targets), loss_c * num_pos / len(targets), loss_landm
"""


def test_check_cell_names_a_loss_divided_by_the_batch_size():
    namespace = dict(vars(load_notebook(REPO_ROOT / "solutions" / "retinaface" / LOSS)))
    out = _check_cell(LOSS, "multibox_loss", "")
    assert "all public checks pass" in out
    exec(LOSS_OVER_BATCH, namespace)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        Checker("retinaface", namespace)("multibox_loss")
    assert "loss_l is divided by the batch size" in printed.getvalue()


def test_check_cell_does_not_blame_a_passing_dependency():
    """The repro: a correct intersect and a jaccard with "+1": the check cell names the +1, not intersect."""
    out = _check_cell(MATCHING, "jaccard", "def jaccard(a, b):\n"
                      "    inter = intersect(a, b)\n"
                      "    area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)\n"
                      "    return inter / (area(a)[:, None] + area(b)[None, :] - inter)\n")
    assert "add one pixel" in out
    assert "calls your intersect" not in out


# -- mistakes named from properties of the answer, so variants nobody injected are named too ---------
def _iou_variant(a, b, extra_inter=0.0, extra_a=0.0, extra_b=0.0):
    w = (torch.min(a[:, None, 2], b[None, :, 2]) - torch.max(a[:, None, 0], b[None, :, 0]) + extra_inter).clamp(min=0)
    h = (torch.min(a[:, None, 3], b[None, :, 3]) - torch.max(a[:, None, 1], b[None, :, 1]) + extra_inter).clamp(min=0)
    inter = w * h
    area_a = ((a[:, 2] - a[:, 0] + extra_a) * (a[:, 3] - a[:, 1] + extra_a))[:, None]
    area_b = ((b[:, 2] - b[:, 0] + extra_b) * (b[:, 3] - b[:, 1] + extra_b))[None, :]
    return inter / (area_a + area_b - inter)


@pytest.mark.parametrize("extra", [dict(extra_a=1.0), dict(extra_b=1.0), dict(extra_a=1.0, extra_b=1.0),
                                   dict(extra_inter=1.0), dict(extra_inter=1.0, extra_a=1.0)])
def test_plus_one_in_only_some_terms_of_jaccard_is_named(extra):
    from autograder.retinaface import cases, mistakes

    x = cases._special_pair(None)
    got = _iou_variant(x["box_a"], x["box_b"], **extra)
    hint = mistakes.iou_property_hint(got, x["box_a"], x["box_b"])
    assert hint is not None and ("with itself" in hint or "above 1" in hint), (extra, hint)
    assert mistakes.iou_property_hint(_iou_variant(x["box_a"], x["box_b"]), x["box_a"], x["box_b"]) is None


def test_nms_order_and_ties_are_named_from_the_kept_boxes():
    import torchvision

    from autograder.retinaface import mistakes

    g = torch.Generator().manual_seed(3)
    xy = torch.rand(30, 2, generator=g) * 50
    dets = torch.cat([xy, xy + 10 + torch.rand(30, 2, generator=g) * 10, torch.rand(30, 1, generator=g)], 1)
    right = torchvision.ops.nms(dets[:, :4], dets[:, 4], 0.3)
    ascending = right.flip(0)
    by_index = right.sort().values
    assert "they ascend" in mistakes.nms_property_hint(ascending, dets, 0.3, right)
    assert "not in descending score order" in mistakes.nms_property_hint(by_index, dets, 0.3, right)
    assert mistakes.nms_property_hint(right, dets, 0.3, right) is None
    # two boxes at IoU exactly 0.5 (10 x 10 boxes overlapping by two thirds of a width... 100 / 200)
    tie = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.9], [0.0, 0.0, 10.0, 5.0, 0.8], [30, 30, 40, 40, 0.7]])
    keep = torchvision.ops.nms(tie[:, :4], tie[:, 4], 0.5)
    assert keep.tolist() == [0, 1, 2]
    assert mistakes.nms_property_hint(torch.tensor([0, 2]), tie, 0.5, keep) == mistakes.SUPPRESS_EQUAL_HINT
