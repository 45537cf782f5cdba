"""Slow, loop-by-loop references for the Face R-FCN units, written independently of the
solutions (numpy / Python loops), plus the classic mistakes the feedback recognises.

Box convention: continuous (x1, y1, x2, y2), width x2 - x1 (torchvision), except
``generate_anchors`` (py-faster-rcnn's +1 algorithm).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def generate_anchors(base_size=16, ratios=(0.5, 1.0, 2.0), scales=(8, 16, 32)) -> torch.Tensor:
    """py-faster-rcnn's generate_anchors, one anchor at a time (numpy rounding: half to even)."""
    ctr = 0.5 * (base_size - 1)
    rows = []
    for r in ratios:
        ws = float(np.round(np.sqrt(base_size * base_size / r)))
        hs = float(np.round(ws * r))
        for s in scales:
            w, h = ws * s, hs * s
            rows.append([ctr - 0.5 * (w - 1), ctr - 0.5 * (h - 1), ctr + 0.5 * (w - 1), ctr + 0.5 * (h - 1)])
    return torch.tensor(rows, dtype=torch.float32)


def shift_anchors(base, feat_h, feat_w, stride) -> torch.Tensor:
    rows = [base[a] + torch.tensor([j * stride, i * stride, j * stride, i * stride], dtype=base.dtype)
            for i in range(feat_h) for j in range(feat_w) for a in range(len(base))]
    return torch.stack(rows) if rows else base.new_zeros(0, 4)


def bbox_transform(rois, gt, stds=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    out = torch.zeros_like(rois)
    for n in range(len(rois)):
        x1, y1, x2, y2 = rois[n].tolist()
        g1, h1, g2, h2 = gt[n].tolist()
        w, h, gw, gh = x2 - x1, y2 - y1, g2 - g1, h2 - h1
        out[n] = torch.tensor([((g1 + gw / 2) - (x1 + w / 2)) / w / stds[0],
                               ((h1 + gh / 2) - (y1 + h / 2)) / h / stds[1],
                               math.log(gw / w) / stds[2], math.log(gh / h) / stds[3]], dtype=rois.dtype)
    return out


def bbox_transform_inv(rois, deltas, stds=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    out = torch.zeros_like(rois)
    for n in range(len(rois)):
        x1, y1, x2, y2 = rois[n].tolist()
        dx, dy, dw, dh = (d * s for d, s in zip(deltas[n].tolist(), stds))
        w, h = x2 - x1, y2 - y1
        cx, cy = x1 + w / 2 + dx * w, y1 + h / 2 + dy * h
        pw, ph = w * math.exp(min(dw, BBOX_XFORM_CLIP)), h * math.exp(min(dh, BBOX_XFORM_CLIP))
        out[n] = torch.tensor([cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2], dtype=rois.dtype)
    return out


def box_iou(a, b) -> torch.Tensor:
    return torchvision.ops.box_iou(a, b)


def fast_nms(boxes, scores, thresh) -> torch.Tensor:
    """YOLACT's Fast NMS (one pass of triu(IoU).max(0)): the mistake, not greedy NMS."""
    if len(boxes) == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = torch.triu(box_iou(boxes[order], boxes[order]), diagonal=1)
    return order[iou.max(dim=0).values <= thresh]


ROUNDING = {  # how a corner x * scale becomes a cell index: torchvision's std::round and the usual others
    "half away from zero": lambda v: math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1),   # C's std::round
    "half to even": round,                                           # torch.round, np.round, Python's round
    "half up": lambda v: math.floor(v + 0.5),                        # floor(v + 0.5): -0.5 -> 0
    "down": math.floor,                                              # floor: 2.5 -> 2, -0.5 -> -1
    "toward zero": math.trunc,                                       # trunc / .long() / int(): -0.5 -> 0
}
TORCHVISION_ROUNDING = "half away from zero"


def _corners(roi, scale: float, rounding: str) -> tuple[int, int, int, int]:
    """A RoI's (x1, y1, x2, y2) in feature cells: the pixel corners times ``scale``, rounded."""
    return tuple(int(ROUNDING[rounding](float(v) * scale)) for v in roi[1:])


def _bins(k: int, origin: int, length: int, limit: int) -> list[tuple[int, int]]:
    """Bin edges along one axis: floor(i * length / k) .. ceil((i + 1) * length / k) cells from
    ``origin`` (exclusive end), clamped to [0, limit]."""
    return [(min(max(math.floor(i * length / k) + origin, 0), limit),
             min(max(math.ceil((i + 1) * length / k) + origin, 0), limit)) for i in range(k)]


def ps_roi_pool(features, rois, k, scale, rounding=TORCHVISION_ROUNDING, bin_major=False, clip_last=True,
                reduce="mean") -> torch.Tensor:
    """Loop reference of torchvision's ps_roi_pool (differentiable through autograd), and of the
    usual ways to differ from it: another ``rounding`` (a key of ROUNDING), bin-major channels
    ((i * k + j) * C + c), bin ends clamped to W rather than torchvision's W - 1 (``clip_last``
    False), or the bins' sum or max (``reduce``). ``k``: int or (kh, kw)."""
    kh, kw = (k, k) if isinstance(k, int) else tuple(k)
    _, cin, height, width = features.shape
    channels = cin // (kh * kw)
    out = features.new_zeros(len(rois), channels, kh, kw)
    for r in range(len(rois)):
        b = int(rois[r, 0])
        x1, y1, x2, y2 = _corners(rois[r], scale, rounding)
        rows = _bins(kh, y1, max(y2 - y1, 1), height - 1 if clip_last else height)
        cols = _bins(kw, x1, max(x2 - x1, 1), width - 1 if clip_last else width)
        for i, (hs, he) in enumerate(rows):
            for j, (ws, we) in enumerate(cols):
                if he <= hs or we <= ws:
                    continue
                for c in range(channels):
                    ch = (i * kw + j) * channels + c if bin_major else (c * kh + i) * kw + j
                    cells = features[b, ch, hs:he, ws:we]
                    out[r, c, i, j] = {"mean": cells.mean, "sum": cells.sum, "max": cells.max}[reduce]()
    return out


def ps_roi_pool_torchvision(features, rois, k, scale) -> torch.Tensor:
    """torchvision.ops.ps_roi_pool itself (its C++ kernel): the op the homework's answer is compared with."""
    return torchvision.ops.ps_roi_pool(features, rois, k, scale)


def ps_roi_pool_grad(features, rois, k, scale, weights) -> torch.Tensor:
    """d(sum(weights * ps_roi_pool(features, rois))) / d features, by autograd of the loop reference."""
    features = features.detach().clone().requires_grad_(True)
    (ps_roi_pool(features, rois, k, scale) * weights).sum().backward()
    return features.grad


def ps_bin_means(features, rois, k, scale) -> torch.Tensor:
    """[R, C_in, kh, kw]: the mean of *every* input channel over each of torchvision's bins, so the
    channel a wrong layout reads can be found from the answer's values."""
    kh, kw = (k, k) if isinstance(k, int) else tuple(k)
    _, cin, height, width = features.shape
    out = features.new_zeros(len(rois), cin, kh, kw)
    for r in range(len(rois)):
        b = int(rois[r, 0])
        x1, y1, x2, y2 = _corners(rois[r], scale, TORCHVISION_ROUNDING)
        for i, (hs, he) in enumerate(_bins(kh, y1, max(y2 - y1, 1), height - 1)):
            for j, (ws, we) in enumerate(_bins(kw, x1, max(x2 - x1, 1), width - 1)):
                if he > hs and we > ws:
                    out[r, :, i, j] = features[b, :, hs:he, ws:we].mean((-2, -1))
    return out


def ps_average_vote(pooled, weights) -> torch.Tensor:
    """[R, C]: the plain mean of the k x k bins (weights None) or sum_ij weights[i, j] * pooled[..., i, j]."""
    if weights is None:
        return pooled.mean((-2, -1))
    out = pooled.new_zeros(pooled.shape[:2])
    for i in range(pooled.shape[-2]):
        for j in range(pooled.shape[-1]):
            out += weights[i, j] * pooled[..., i, j]
    return out


def clip_boxes(boxes, image_size, last_pixel=False, swap_axes=False) -> torch.Tensor:
    """x clamped to [0, W] and y to [0, H]; ``last_pixel``: to W - 1 and H - 1 (py-faster-rcnn's
    inclusive pixels); ``swap_axes``: x by H and y by W (the (H, W) order misread)."""
    height, width = image_size
    if swap_axes:
        height, width = width, height
    if last_pixel:
        height, width = height - 1, width - 1
    return torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height), boxes[:, 2].clamp(0, width),
                        boxes[:, 3].clamp(0, height)], 1)


def nms(boxes, scores, thresh) -> torch.Tensor:
    """torchvision.ops.nms: greedy NMS, kept indices in descending score order."""
    return torchvision.ops.nms(boxes, scores, thresh)


def smooth_l1(x, sigma) -> torch.Tensor:
    return F.smooth_l1_loss(x, torch.zeros_like(x), beta=1.0 / sigma ** 2, reduction="none")


def proposal_layer(rpn_logits, rpn_deltas, anchors, image_size, pre, post, thresh, min_size):
    height, width = image_size
    rois, out_scores = [], []
    for b in range(rpn_logits.shape[0]):
        scores = rpn_logits[b].softmax(-1)[:, 1]
        boxes = bbox_transform_inv(anchors, rpn_deltas[b])
        boxes = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                             boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], 1)
        ok = [n for n in range(len(boxes)) if boxes[n, 2] - boxes[n, 0] >= min_size
              and boxes[n, 3] - boxes[n, 1] >= min_size]
        ok = sorted(ok, key=lambda n: -float(scores[n]))[:pre]  # Python's sort is stable
        idx = torch.tensor(ok, dtype=torch.long)
        keep = idx[torchvision.ops.nms(boxes[idx], scores[idx], thresh)[:post]]
        rois.append(torch.cat([boxes.new_full((len(keep), 1), b), boxes[keep]], 1))
        out_scores.append(scores[keep])
    return torch.cat(rois), torch.cat(out_scores)


def anchor_labels(anchors, gt, image_size, positive=0.7, negative=0.3, zero_overlap_bug=False):
    """Labels before subsampling, anchor by anchor (py-faster-rcnn rules, continuous boxes)."""
    height, width = image_size
    labels = torch.full((len(anchors),), -1, dtype=torch.long)
    inside = [n for n in range(len(anchors)) if anchors[n, 0] >= 0 and anchors[n, 1] >= 0
              and anchors[n, 2] <= width and anchors[n, 3] <= height]
    if len(gt) == 0:
        labels[inside] = 0
        return labels
    iou = box_iou(anchors[inside], gt)
    face_best = iou.max(0).values
    for row, n in enumerate(inside):
        best = float(iou[row].max())
        if best < negative:
            labels[n] = 0
        if any(iou[row, g] == face_best[g] and (zero_overlap_bug or face_best[g] > 0) for g in range(len(gt))):
            labels[n] = 1
        if best >= positive:
            labels[n] = 1
    return labels


def rfcn_loss(rpn_logits, rpn_deltas, rpn_labels, rpn_targets, cls_logits, box_deltas, roi_labels,
              roi_targets, rpn_sigma=3.0, rcnn_sigma=1.0) -> dict:
    sampled = (rpn_labels >= 0).reshape(-1)
    n = max(int(sampled.sum()), 1)
    logits, labels = rpn_logits.reshape(-1, 2), rpn_labels.reshape(-1)
    pos = labels == 1
    s = max(len(roi_labels), 1)
    fg = roi_labels > 0
    return {"rpn_cls": F.cross_entropy(logits[sampled], labels[sampled], reduction="sum") / n,
            "rpn_box": smooth_l1(rpn_deltas.reshape(-1, 4)[pos] - rpn_targets.reshape(-1, 4)[pos],
                                 rpn_sigma).sum() / n,
            "rcnn_cls": F.cross_entropy(cls_logits, roi_labels, reduction="sum") / s,
            "rcnn_box": smooth_l1(box_deltas[fg] - roi_targets[fg], rcnn_sigma).sum() / s}


def ohem_select(cls_logits, box_deltas, roi_labels, roi_targets, rois, batch_size, nms_thresh, sigma,
                use_nms=True):
    loss = F.cross_entropy(cls_logits, roi_labels, reduction="none")
    loss = loss + smooth_l1(box_deltas - roi_targets, sigma).sum(1) * (roi_labels > 0)
    if not use_nms:
        return torch.sort(loss, descending=True, stable=True).indices[:batch_size]
    return torchvision.ops.nms(rois, loss, nms_thresh)[:batch_size]
