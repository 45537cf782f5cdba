"""A classic mistake is found before the deadline: for every mistake the feedback tests inject, at
least one PUBLIC check of the mistaken unit fails (graded in-process, as the notebook's check cells
grade: ``LiveSubmission``, public cases only). The mistakes come from ``tests/test_<hw>_feedback.py``;
the ones named from properties of the answer (``NAMED``) must also be named by a public check."""
from __future__ import annotations

import functools
import json
import re

import pytest

from tests import test_dsfd_feedback as dsfd_fb
from tests import test_retinaface_feedback as retina_fb
from tests import test_rfcn_feedback as rfcn_fb
from tests import test_tinaface_feedback as tina_fb
from tests.notebooks import REPO_ROOT, public_check_feedback
from utils.notebook import load_notebook


def answer_source(hw: str, notebook: str, grade_id: str) -> str:
    cells = json.loads((REPO_ROOT / "solutions" / hw / notebook).read_text())["cells"]
    (cell,) = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    return re.sub(r"(?m)^[ ]*### (BEGIN|END) SOLUTION\n", "", "".join(cell["source"]))


def edited(hw: str, notebook: str, grade_id: str, change) -> str:
    """The answer of ``grade_id`` with ``change`` applied: a list of (old, new) replacements (each
    must be in the solution), a whole answer (str), or a function of the solution's answer."""
    if isinstance(change, str):
        return change
    source = answer_source(hw, notebook, grade_id)
    if callable(change):
        return change(source)
    for old, new in change:
        assert old in source, f"{hw} {grade_id}: the solution no longer contains {old!r}; update the edit"
        source = source.replace(old, new)
    return source


@functools.lru_cache(maxsize=None)
def _solution(hw: str, notebook: str) -> dict:
    return dict(vars(load_notebook(REPO_ROOT / "solutions" / hw / notebook)))


def public_feedback(hw: str, unit: str, notebook: str, source: str, after: str = "") -> dict:
    """{public test title: its feedback, or None when it passes} for ``unit`` whose answer cell is
    ``source`` (then ``after`` run in the same namespace), in the solution's notebook namespace."""
    namespace = dict(_solution(hw, notebook))
    exec(compile(source, unit, "exec"), namespace)
    if after:
        exec(compile(after, f"{unit} (after)", "exec"), namespace)
    return public_check_feedback(hw, unit, namespace)


# (hw, unit, notebook, change, code run after the answer); tinaface's come with its own namespace helper
def _retinaface():
    out = {}
    for name, (notebook, unit, change) in retina_fb.MISTAKES.items():
        out[name] = ("retinaface", unit, notebook, change, "")
    out["multibox_loss over the batch size"] = ("retinaface", "multibox_loss", retina_fb.LOSS, [],
                                                retina_fb.LOSS_OVER_BATCH)
    return out


def _dsfd():
    out = {f"{unit}: {edits[0][1].strip()[:40]}": ("dsfd", unit, notebook, edits, "")
           for unit, (notebook, edits) in dsfd_fb.MISTAKES.items()}
    out["progressive_anchor_loss detached"] = ("dsfd", "progressive_anchor_loss", dsfd_fb.TRAINING_NB, [],
                                               dsfd_fb.DETACHED_LOSS)
    return out


def _rfcn():
    both = {**rfcn_fb.MISTAKES, **rfcn_fb.IN_PROCESS_MISTAKES}
    return {name: ("rfcn", unit, notebook, [(old, new)], "") for name, (notebook, unit, old, new) in both.items()}


INJECTED = {f"{hw} {name}": spec for hw, table in (("retinaface", _retinaface()), ("dsfd", _dsfd()),
                                                      ("rfcn", _rfcn())) for name, spec in table.items()}


def _failed(feedback: dict) -> dict:
    return {title: text for title, text in feedback.items() if text is not None}


@pytest.mark.parametrize("mistake", list(INJECTED))
def test_an_injected_mistake_fails_a_public_check(mistake):
    hw, unit, notebook, change, after = INJECTED[mistake]
    feedback = public_feedback(hw, unit, notebook, edited(hw, notebook, unit, change), after)
    assert feedback, f"{mistake}: {unit} has no public check"
    assert _failed(feedback), f"{mistake}: every public check of {unit} passes: {sorted(feedback)}"


def _tinaface():
    out = {}
    for unit, (notebook, edits) in tina_fb.MISTAKES.items():
        needs = ("deform_sampling", "deform_conv") if unit == "group_norm_resnet" else ()
        out[unit] = (unit, notebook, edits, needs)
    out["ratio as width / height"] = ("tinaface_anchors", tina_fb.BOXES_NB, tina_fb.RATIO_AS_WIDTH_OVER_HEIGHT, ())
    out["fusion without eps"] = ("fast_normalized_fusion", tina_fb.MODEL_NB, tina_fb.FUSION_WITHOUT_EPS, ())
    out["narrow resnet, 64-channel stem"] = ("group_norm_resnet", tina_fb.MODEL_NB, [("if width != 64:", "if False:")],
                                             ("deform_sampling", "deform_conv"))
    for name, (unit, notebook, edit, needs, _) in tina_fb.NAMED_BY_PROPERTY.items():
        out[name] = (unit, notebook, edit, needs)
    return out


TINAFACE = _tinaface()


@pytest.mark.parametrize("mistake", list(TINAFACE))
def test_an_injected_tinaface_mistake_fails_a_public_check(mistake):
    unit, notebook, edits, needs = TINAFACE[mistake]
    edit = edits if callable(edits) else (lambda source: tina_fb.mistaken(notebook, unit, edits))
    feedback = tina_fb.public_feedback(unit, notebook, edit, needs)
    assert _failed(feedback), f"{mistake}: every public check of {unit} passes: {sorted(feedback)}"


# -- mistakes named from properties of the answer: a public check fails AND names it ----------------------
MATCHING, ANCHORS = retina_fb.MATCHING, "3_anchors.ipynb"


def _jaccard(extra_inter: str = "", extra_a: str = "", extra_b: str = "") -> str:
    """jaccard written out, with '+ 1' (or any text) added to the intersection's or an area's sides."""
    return (f"def jaccard(box_a, box_b):\n"
            f"    w = (torch.min(box_a[:, None, 2], box_b[None, :, 2]) - torch.max(box_a[:, None, 0], box_b[None, :, 0]){extra_inter}).clamp(min=0)\n"
            f"    h = (torch.min(box_a[:, None, 3], box_b[None, :, 3]) - torch.max(box_a[:, None, 1], box_b[None, :, 1]){extra_inter}).clamp(min=0)\n"
            f"    inter = w * h\n"
            f"    area_a = ((box_a[:, 2] - box_a[:, 0]{extra_a}) * (box_a[:, 3] - box_a[:, 1]{extra_a}))[:, None]\n"
            f"    area_b = ((box_b[:, 2] - box_b[:, 0]{extra_b}) * (box_b[:, 3] - box_b[:, 1]{extra_b}))[None, :]\n"
            f"    return inter / (area_a + area_b - inter)\n")


def _loss_over(count: str) -> str:
    """MultiBoxLoss with loss_l and loss_c divided by ``count`` (an expression) instead of the positives."""
    return retina_fb.LOSS_OVER_BATCH.replace("/ len(targets)", f"/ ({count})")


IOU_WORDS = ("with itself", "above 1", "add one pixel")
# name: (hw, unit, notebook, change, code run after, words one failed public check must hold; a tuple: any)
NAMED = {
    "retinaface nms sorted ascending": ("retinaface", "nms", MATCHING, retina_fb.loop_nms(
        order="torch.argsort(dets[:, 4], descending=False, stable=True)"), "", "they ascend"),
    "retinaface nms not sorted": ("retinaface", "nms", MATCHING, retina_fb.MISTAKES["nms unsorted"][2], "",
                                  "not sorted by score first"),
    "retinaface nms suppresses IoU >= thresh": ("retinaface", "nms", MATCHING, retina_fb.MISTAKES["nms with >="][2],
                                                "", "IoU exactly equal to thresh was suppressed"),
    "retinaface nms sorted by x1 (variant)": ("retinaface", "nms", MATCHING, retina_fb.loop_nms(
        order="torch.argsort(dets[:, 0])"), "", "not in descending score order"),
    "retinaface jaccard +1 in the areas only": ("retinaface", "jaccard", MATCHING, _jaccard("", " + 1", " + 1"), "",
                                                IOU_WORDS),
    "retinaface jaccard +1 in the intersection only": ("retinaface", "jaccard", MATCHING, _jaccard(" + 1"), "",
                                                       IOU_WORDS),
    "retinaface jaccard +1 in box_a's area only (variant)": ("retinaface", "jaccard", MATCHING,
                                                             _jaccard("", " + 1", ""), "", IOU_WORDS),
    "retinaface prior_box centres (cy, cx)": ("retinaface", "prior_box", ANCHORS, [
        ("torch.stack([grid_x, grid_y], dim=-1)", "torch.stack([grid_y, grid_x], dim=-1)")], "",
        "x and y are swapped in the centres"),
    "retinaface prior_box (cy, cx, h, w)": ("retinaface", "prior_box", ANCHORS, [
        ("torch.stack([grid_x, grid_y], dim=-1)", "torch.stack([grid_y, grid_x], dim=-1)"),
        ("torch.stack([sizes / width, sizes / height], dim=-1)", "torch.stack([sizes / height, sizes / width], dim=-1)")],
        "", "x and y are swapped in the anchors"),
    "retinaface prior_box sizes over the width only": ("retinaface", "prior_box", ANCHORS, [
        ("sizes / height]", "sizes / width]")], "", "centres are right but the sizes are not"),
    "retinaface prior_box sizes over the stride (variant)": ("retinaface", "prior_box", ANCHORS, [
        ("torch.stack([sizes / width, sizes / height], dim=-1)", "torch.stack([sizes / step, sizes / step], dim=-1)")],
        "", "centres are right but the sizes are not"),
    "retinaface multibox_loss over the batch size": ("retinaface", "multibox_loss", retina_fb.LOSS, [],
                                                     retina_fb.LOSS_OVER_BATCH, "divided by the batch size"),
    "retinaface multibox_loss over the anchors": ("retinaface", "multibox_loss", retina_fb.LOSS, [],
                                                  _loss_over("len(priors)"), "the number of anchors per image"),
    "retinaface multibox_loss over B x P (variant)": ("retinaface", "multibox_loss", retina_fb.LOSS, [],
                                                      _loss_over("len(targets) * len(priors)"),
                                                      "the number of anchors in the whole batch"),
}


RFCN_NB1, RFCN_NB3 = rfcn_fb.NB1, rfcn_fb.NB3
DSFD_NB = dsfd_fb.TRAINING_NB
RFCN_SORT = "order = torch.sort(scores, descending=True, stable=True).indices"
RFCN_LOSS_RPN = "rpn_deltas[positive] - rpn_targets[positive], rpn_sigma).sum() / num_sampled"
DSFD_TOTAL = "    total = max(int(num_pos.sum()), 1)\n"
NAMED.update({
    "rfcn nms_vectorised sorted ascending": ("rfcn", "nms_vectorised", RFCN_NB1, [
        (RFCN_SORT, RFCN_SORT.replace("descending=True", "descending=False"))], "", "they ascend"),
    "rfcn nms_vectorised not sorted": ("rfcn", "nms_vectorised", RFCN_NB1, [
        (RFCN_SORT, "order = torch.arange(len(scores), device=boxes.device)")], "", "not in descending score order"),
    "rfcn nms_vectorised removes IoU >= threshold": ("rfcn", "nms_vectorised", RFCN_NB1, [
        ("iou > iou_threshold", "iou >= iou_threshold")], "", "equals iou_threshold exactly was removed"),
    "rfcn nms_vectorised sorted by area (variant)": ("rfcn", "nms_vectorised", RFCN_NB1, [
        (RFCN_SORT, "order = torch.sort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), "
                    "descending=True, stable=True).indices")], "", "not in descending score order"),
    "rfcn generate_anchors x and y swapped": ("rfcn", "generate_anchors", RFCN_NB1, [
        ("torch.stack([centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1),\n                           centre + 0.5 * (ws - 1), centre + 0.5 * (hs - 1)]",
         "torch.stack([centre - 0.5 * (hs - 1), centre - 0.5 * (ws - 1),\n                           centre + 0.5 * (hs - 1), centre + 0.5 * (ws - 1)]")],
        "", "x and y are swapped"),
    "rfcn generate_anchors sides not rounded": ("rfcn", "generate_anchors", RFCN_NB1, [
        ("ws = torch.round(torch.sqrt(size / ratios_t))", "ws = torch.sqrt(size / ratios_t)"),
        ("hs = torch.round(ws * ratios_t)", "hs = ws * ratios_t")], "", "centred right but their sides are wrong"),
    "rfcn generate_anchors scales the area (variant)": ("rfcn", "generate_anchors", RFCN_NB1, [
        ("scales_t = torch.tensor(scales, dtype=torch.float64)", "scales_t = torch.tensor(scales, dtype=torch.float64).sqrt()")],
        "", "centred right but their sides are wrong"),
    "rfcn shift_anchors x and y swapped": ("rfcn", "shift_anchors", RFCN_NB1, [
        ("torch.stack([shift_x, shift_y, shift_x, shift_y]", "torch.stack([shift_y, shift_x, shift_y, shift_x]")],
        "", "x and y are swapped"),
    "rfcn smooth_l1 without sigma": ("rfcn", "smooth_l1", RFCN_NB3, [("s2 = sigma ** 2", "s2 = 1.0")], "",
                                     "sigma is missing"),
    "rfcn smooth_l1 sigma not squared (variant)": ("rfcn", "smooth_l1", RFCN_NB3, [("s2 = sigma ** 2", "s2 = sigma")],
                                                   "", "sigma is not squared"),
    "rfcn rfcn_loss rpn_box over the positives": ("rfcn", "rfcn_loss", RFCN_NB3, [
        (RFCN_LOSS_RPN, RFCN_LOSS_RPN.replace("num_sampled", "max(int(positive.sum()), 1)"))], "",
        "divided by the positive anchors"),
    "rfcn rfcn_loss rpn_box over all anchors": ("rfcn", "rfcn_loss", RFCN_NB3, [
        (RFCN_LOSS_RPN, RFCN_LOSS_RPN.replace("num_sampled", "rpn_labels.numel()"))], "",
        "divided by the number of anchors in the batch"),
    "rfcn rfcn_loss rcnn_box over the batch (variant)": ("rfcn", "rfcn_loss", RFCN_NB3, [
        ("smooth_l1(box_deltas[fg] - roi_targets[fg], rcnn_sigma).sum() / num_rois",
         "smooth_l1(box_deltas[fg] - roi_targets[fg], rcnn_sigma).sum() / rpn_labels.shape[0]")], "",
        "divided by the batch size"),
    "dsfd pal_priors centres (cy, cx)": ("dsfd", "pal_priors", DSFD_NB, [
        ("torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1)", "torch.stack([cy.reshape(-1), cx.reshape(-1)], dim=1)")],
        "", "x and y are swapped in the centres"),
    "dsfd pal_priors sizes over the height only": ("dsfd", "pal_priors", DSFD_NB, [
        ("[side / width, side / height]", "[side / height, side / height]")], "", "centres are right but the sizes"),
    "dsfd pal_priors sizes over the stride (variant)": ("dsfd", "pal_priors", DSFD_NB, [
        ("[side / width, side / height]", "[side / step, side / step]")], "", "centres are right but the sizes"),
    "dsfd progressive_anchor_loss over the batch size": ("dsfd", "progressive_anchor_loss", DSFD_NB, [
        (DSFD_TOTAL, "    total = len(targets)\n")], "", "divided by the batch size"),
    "dsfd progressive_anchor_loss over the anchors": ("dsfd", "progressive_anchor_loss", DSFD_NB, [
        (DSFD_TOTAL, "    total = num_priors\n")], "", "divided by the number of anchors per image"),
    "dsfd progressive_anchor_loss over B x P (variant)": ("dsfd", "progressive_anchor_loss", DSFD_NB, [
        (DSFD_TOTAL, "    total = batch * num_priors\n")], "", "divided by the number of anchors in the batch"),
})


@pytest.mark.parametrize("mistake", list(NAMED))
def test_a_mistake_is_named_by_a_public_check(mistake):
    hw, unit, notebook, change, after, words = NAMED[mistake]
    feedback = public_feedback(hw, unit, notebook, edited(hw, notebook, unit, change), after)
    failed = _failed(feedback)
    assert failed, f"{mistake}: every public check of {unit} passes"
    words = (words,) if isinstance(words, str) else words
    assert any(w in text for text in failed.values() for w in words), failed
