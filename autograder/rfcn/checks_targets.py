"""Checks of Part 3 (proposals, anchor and proposal targets, losses, OHEM): oracles for the
deterministic parts, invariants for the sampled ones, the solution's outputs on fixed seeds."""
from __future__ import annotations

import torch

from autograder.explain import fail, naming, noting
from autograder.feedback import GradingFailure, expect_close, expect_equal, expect_type
from autograder.rfcn import oracles
from autograder.rfcn.cases_targets import LOSS_KEYS, ROI_STDS
from autograder.rfcn.checks import expect_subset


def _pair(submission, unit, name):
    got = submission.output(unit, name)
    expect_type(got, (tuple, list), name, f"{unit}'s result")
    if len(got) != 2 and unit != "proposal_target_layer":
        raise fail(name, f"{unit} returns 2 tensors, got {len(got)}")
    return got


def check_proposals(submission, names) -> None:
    with noting(submission, "proposal_layer"):
        for name in names:
            x = submission.inputs("proposal_layer", name)
            rois, scores = _pair(submission, "proposal_layer", name)
            want_rois, want_scores = oracles.proposal_layer(*x.values())
            expect_close(rois, want_rois, name, "rois (batch index, x1, y1, x2, y2)")
            expect_close(scores, want_scores, name, "scores")


def _anchor_iou(x):
    inside = ((x["anchors"][:, 0] >= 0) & (x["anchors"][:, 1] >= 0) & (x["anchors"][:, 2] <= x["image_size"][1])
              & (x["anchors"][:, 3] <= x["image_size"][0]))
    best = torch.zeros(len(x["anchors"]))
    if len(x["gt_boxes"]):
        best = oracles.box_iou(x["anchors"], x["gt_boxes"]).max(1).values
    return inside, best


def check_anchor_rules(submission, names) -> None:
    """Without subsampling the labels are deterministic: compare with the loop oracle."""
    with noting(submission, "anchor_target_layer"):
        for name in names:
            x = submission.inputs("anchor_target_layer", name)
            labels, targets = _pair(submission, "anchor_target_layer", name)
            want = oracles.anchor_labels(x["anchors"], x["gt_boxes"], x["image_size"])
            _, best = _anchor_iou(x)
            if isinstance(labels, torch.Tensor) and labels.shape == want.shape:
                zero = (labels.cpu() == 1) & (best == 0)
                if zero.sum() > 1:
                    raise fail(name, f"{int(zero.sum())} anchors with IoU 0 with every face are positive: a face "
                                     "that overlaps no inside anchor has best IoU 0, and every zero-IoU anchor "
                                     "'ties' it. Force a face's best anchors only where that best IoU is > 0")
                hint = _tied_best_hint(x, labels.cpu())
                if hint is not None and not torch.equal(labels.cpu(), want):
                    raise fail(name, hint)
            expect_equal(labels, want, name, "labels")
            check_anchor_targets(x, labels, targets, name)


def _tied_best_hint(x, labels: torch.Tensor) -> str | None:
    """Named from the labels: a face whose best IoU several inside anchors reach, only some of them
    positive (an argmax forces one anchor per face; py-faster-rcnn forces every anchor that ties)."""
    inside, _ = _anchor_iou(x)
    if not len(x["gt_boxes"]) or not inside.any():
        return None
    overlaps = oracles.box_iou(x["anchors"], x["gt_boxes"])                      # [A, G]
    overlaps[~inside] = -1
    for g in range(overlaps.shape[1]):
        top = overlaps[:, g].max()
        tied = (overlaps[:, g] - top).abs() < 1e-6
        if top > 0 and tied.sum() > 1 and (labels[tied] == 1).any() and not (labels[tied] == 1).all():
            return (f"face {g}'s best IoU ({float(top):.3g}) is reached by {int(tied.sum())} inside anchors, but only "
                    f"{int((labels[tied] == 1).sum())} of them is positive: every anchor that ties a face's best "
                    f"IoU is positive (where(overlaps == gt_max_overlaps), not one argmax per face)")
    return None


def check_anchor_targets(x, labels, targets, name) -> None:
    inside, _ = _anchor_iou(x)
    want = torch.zeros_like(x["anchors"])
    if len(x["gt_boxes"]):
        assign = oracles.box_iou(x["anchors"][inside], x["gt_boxes"]).max(1).indices
        want[inside] = oracles.bbox_transform(x["anchors"][inside], x["gt_boxes"][assign])
    expect_close(targets, want, name, "targets (0 outside the image)")


def check_anchor_sampling(submission, names) -> None:
    """Invariants of the subsampling (any random choice passes) for seeded cases."""
    with noting(submission, "anchor_target_layer"):
        for name in names:
            x = submission.inputs("anchor_target_layer", name)
            labels, _ = _pair(submission, "anchor_target_layer", name)
            full = oracles.anchor_labels(x["anchors"], x["gt_boxes"], x["image_size"])
            labels = labels.cpu()
            expect_subset(labels == 1, full == 1, name, "anchors labelled 1 that are not positives")
            expect_subset(labels == 0, full == 0, name, "anchors labelled 0 that are not negatives")
            batch = x["batch_size"]
            want_fg = min(int(0.5 * batch), int((full == 1).sum()))
            want_bg = min(batch - want_fg, int((full == 0).sum()))
            got_fg, got_bg = int((labels == 1).sum()), int((labels == 0).sum())
            if (got_fg, got_bg) != (want_fg, want_bg):
                raise fail(name, f"{got_fg} positives and {got_bg} negatives after subsampling; expected "
                                 f"{want_fg} and {want_bg} (at most half of {batch} positive, the rest negatives)")


def check_seeded(submission, unit: str, names) -> None:
    """The solution's outputs on fixed seeds (same generator calls as the docstring says)."""
    with noting(submission, unit):
        for name in names:
            got, want = submission.output(unit, name), submission.reference(unit, name)
            expect_type(got, (tuple, list), name)
            for i, (g, w) in enumerate(zip(got, want)):
                if w.dtype.is_floating_point:
                    expect_close(g, w, name, f"output {i}")
                else:
                    expect_equal(g, w, name, f"output {i} (with the generator used as the docstring says)")


def check_roi_invariants(submission, names) -> None:
    with noting(submission, "proposal_target_layer"):
        for name in names:
            x = submission.inputs("proposal_target_layer", name)
            got = submission.output("proposal_target_layer", name)
            expect_type(got, (tuple, list), name)
            rois, labels, targets = (t.cpu() for t in got)
            gt = x["gt_boxes"]
            pool = torch.cat([x["rois"], gt])
            best, assign = (oracles.box_iou(pool, gt).max(1) if len(gt)
                            else (torch.zeros(len(pool), dtype=pool.dtype), torch.zeros(len(pool), dtype=torch.long)))
            n_fg_all, n_bg_all = int((best >= 0.5).sum()), int((best < 0.5).sum())
            batch = x["batch_size"]
            want_fg = n_fg_all if batch is None else min(round(0.25 * batch), n_fg_all)
            want_bg = n_bg_all if batch is None else min(batch - want_fg, n_bg_all)
            if int((labels == 1).sum()) != want_fg or int((labels == 0).sum()) != want_bg:
                raise fail(name, f"{int((labels == 1).sum())} foreground and {int((labels == 0).sum())} background "
                                 f"RoIs; expected {want_fg} and {want_bg} (the faces are added to the RoIs first)")
            if len(rois):
                iou = oracles.box_iou(rois, gt).max(1).values if len(gt) else torch.zeros(len(rois), dtype=rois.dtype)
                if ((labels == 1) & (iou < 0.5)).any() or ((labels == 0) & (iou >= 0.5)).any():
                    raise fail(name, "a RoI's label does not match its IoU (foreground: >= 0.5)")
                fg = labels == 1
                want_t = torch.zeros_like(targets)
                if fg.any():
                    want_t[fg] = oracles.bbox_transform(rois[fg], gt[oracles.box_iou(rois[fg], gt).max(1).indices],
                                                        ROI_STDS)
                expect_close(targets, want_t, name, "targets (normalised by stds; 0 for background)")
            if batch is None and len(gt):
                have = torch.cdist(gt.double(), rois.double()).min(1).values if len(rois) else torch.ones(len(gt))
                if (have > 1e-6).any():
                    raise fail(name, "the faces themselves must be among the RoIs (append gt_boxes to the RoIs)")


def check_smooth(submission, names) -> None:
    with noting(submission, "smooth_l1"):
        for name in names:
            x = submission.inputs("smooth_l1", name)
            got = submission.output("smooth_l1", name)
            with naming(lambda: sigma_hint(got, x["x"], x["sigma"])):
                expect_close(got, oracles.smooth_l1(x["x"], x["sigma"]), name,
                             "smooth L1 (F.smooth_l1_loss with beta = 1 / sigma²)")


SIGMA_HINT = ("your values are the smooth L1 of sigma² = {used:.4g}, not sigma² = {want:.4g}{how}: 0.5 (sigma x)² "
              "where |x| < 1 / sigma², else |x| - 0.5 / sigma² (sigma 3 for the RPN, 1 for the head)")


def sigma_hint(got, x, sigma) -> str | None:
    """The sigma² an answer used, read from its largest |x| (in the linear part: |x| - 0.5 / sigma²),
    named when the whole answer is the smooth L1 of that sigma: sigma missing, not squared, ..."""
    if not isinstance(got, torch.Tensor) or got.shape != x.shape or x.numel() == 0:
        return None
    g, v = got.detach().cpu().double().reshape(-1), x.double().reshape(-1)
    i = int(v.abs().argmax())
    gap = float(v[i].abs() - g[i])
    if not gap > 0:
        return None
    used = 0.5 / gap
    if abs(used - sigma ** 2) < 1e-6 * sigma ** 2:
        return None
    try:
        expect_close(got, oracles.smooth_l1(x, used ** 0.5), "", check_dtype=False)
    except GradingFailure:
        return None
    how = (" (sigma is missing: that is F.smooth_l1_loss with beta = 1)" if abs(used - 1) < 1e-6 else
           " (sigma is not squared)" if abs(used - sigma) < 1e-6 * sigma else "")
    return SIGMA_HINT.format(used=used, want=sigma ** 2, how=how)


WRONG_COUNT_HINT = ("{key} is divided by {count} ({value}) instead of {right} ({n}): the ratio to the expected "
                    "loss is {n} / {value}")


def count_hint(got: dict, want: dict, x: dict) -> str | None:
    """A loss divided by the wrong count, named from its ratio to the expected loss."""
    labels, rois = x["rpn_labels"], x["roi_labels"]
    batch, anchors = labels.shape[0], labels.shape[1]
    counts = {"rpn": ("the sampled anchors (label >= 0)", max(int((labels >= 0).sum()), 1),
                      (("the batch size", batch), ("the number of anchors per image", anchors),
                       ("the number of anchors in the batch", batch * anchors),
                       ("the positive anchors", int((labels == 1).sum())))),
              "rcnn": ("the number of sampled RoIs S", max(len(rois), 1),
                       (("the batch size", batch), ("the foreground RoIs", int((rois > 0).sum()))))}
    for key in LOSS_KEYS:
        if key not in got or not isinstance(got[key], torch.Tensor) or got[key].numel() != 1:
            continue
        g, w = float(got[key]), float(want[key])
        right, n, others = counts[key.split("_")[0]]
        if abs(w) < 1e-8 or abs(g - w) <= 1e-5 + 1e-4 * abs(w):
            continue
        for count, value in others:
            if value not in (0, n) and abs(g - w * n / value) <= 1e-5 + 1e-4 * abs(w * n / value):
                return WRONG_COUNT_HINT.format(key=key, count=count, value=value, right=right, n=n)
    return None


def check_loss(submission, names) -> None:
    with noting(submission, "rfcn_loss"):
        for name in names:
            x = submission.inputs("rfcn_loss", name)
            got = submission.output("rfcn_loss", name)
            expect_type(got, dict, name, "rfcn_loss's result")
            want = oracles.rfcn_loss(**x)
            for key in LOSS_KEYS:
                if key not in got:
                    raise fail(name, f"missing loss {key!r}; expected keys {list(LOSS_KEYS)}")
                with naming(lambda: count_hint(got, want, x)):
                    expect_close(got[key], want[key], name, key)


def check_ohem(submission, names) -> None:
    with noting(submission, "ohem_select"):
        for name in names:
            x = submission.inputs("ohem_select", name)
            args = [x[k] for k in ("cls_logits", "box_deltas", "roi_labels", "roi_targets", "rois", "batch_size")]
            want = oracles.ohem_select(*args, 0.7, 1.0)
            got = submission.output("ohem_select", name)
            without = oracles.ohem_select(*args, 0.7, 1.0, use_nms=False)
            if (isinstance(got, torch.Tensor) and got.shape == without.shape and torch.equal(got.cpu(), without)
                    and not torch.equal(want, without)):
                raise fail(name, "you keep the top losses without NMS: near-duplicate RoIs have near-equal "
                                 "losses; remove them with NMS (IoU > 0.7) in loss order first")
            expect_equal(got, want, name, "kept RoI indices (hardest first)")
