"""Slow, loop-by-loop definitions the TinaFace checks compare against (independent of the solutions)."""
from __future__ import annotations

import math

import torch

from detector.tinaface.config import BOX_STDS, MAX_LOG_RATIO


def anchors(image_size, strides, base_scale, scales, ratio, centre_offset=0.0, hw_ratio=True) -> torch.Tensor:
    """[P, 4] float64 anchors, one by one: level, row i, column j, scale k; centre ((j + offset) s,
    (i + offset) s); ratio = h / w (``hw_ratio``) or w / h (the mistake)."""
    height, width = image_size
    rows = []
    for s in strides:
        for i in range(math.ceil(height / s)):
            for j in range(math.ceil(width / s)):
                for k in range(scales):
                    size = s * base_scale * 2 ** (k / scales)
                    r = ratio if hw_ratio else 1 / ratio
                    w, h = size / math.sqrt(r), size * math.sqrt(r)
                    cx, cy = (j + centre_offset) * s, (i + centre_offset) * s
                    rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes (no +1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assign(anchor_boxes, gt_boxes, thr, min_pos, force=True) -> torch.Tensor:
    """MaxIoUAssigner by loops: [P] int64 face index or -1."""
    P, G = len(anchor_boxes), len(gt_boxes)
    out = torch.full((P,), -1, dtype=torch.long)
    if G == 0:
        return out
    table = [[iou(gt_boxes[g].tolist(), anchor_boxes[p].tolist()) for p in range(P)] for g in range(G)]
    for p in range(P):
        best = max(range(G), key=lambda g: (table[g][p], -g))
        if table[best][p] >= thr:
            out[p] = best
    if force:
        for g in range(G):
            top = max(table[g])
            if top >= min_pos:
                for p in range(P):
                    if table[g][p] == top:
                        out[p] = g
    return out


def encode(anchor_boxes, gt, stds=BOX_STDS) -> torch.Tensor:
    rows = []
    for a, g in zip(anchor_boxes.tolist(), gt.tolist()):
        pw, ph, gw, gh = a[2] - a[0], a[3] - a[1], g[2] - g[0], g[3] - g[1]
        d = [((g[0] + g[2]) - (a[0] + a[2])) / 2 / pw, ((g[1] + g[3]) - (a[1] + a[3])) / 2 / ph,
             math.log(gw / pw), math.log(gh / ph)]
        rows.append([v / s for v, s in zip(d, stds)])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def decode(anchor_boxes, deltas, stds=BOX_STDS, max_ratio=MAX_LOG_RATIO, max_shape=None) -> torch.Tensor:
    rows = []
    for a, d in zip(anchor_boxes.tolist(), deltas.tolist()):
        d = [v * s for v, s in zip(d, stds)]
        pw, ph = a[2] - a[0], a[3] - a[1]
        cx, cy = (a[0] + a[2]) / 2 + pw * d[0], (a[1] + a[3]) / 2 + ph * d[1]
        w = pw * math.exp(min(max(d[2], -max_ratio), max_ratio))
        h = ph * math.exp(min(max(d[3], -max_ratio), max_ratio))
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        if max_shape is not None:
            box = [min(max(box[0], 0), max_shape[1]), min(max(box[1], 0), max_shape[0]),
                   min(max(box[2], 0), max_shape[1]), min(max(box[3], 0), max_shape[0])]
        rows.append(box)
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def aligned_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N] IoU of rows a[i], b[i]."""
    return torch.tensor([iou(x, y) for x, y in zip(a.tolist(), b.tolist())], dtype=torch.float64)


def fusion(inputs, weights, eps, relu=True, with_eps=True):
    """sum_i w_i / (eps + sum_j w_j) I_i with w = ReLU(weights) (flags: the two classic mistakes)."""
    w = torch.relu(weights) if relu else weights
    total = w.sum() + (eps if with_eps else 0.0)
    out = torch.zeros_like(inputs[0])
    for i, x in enumerate(inputs):
        out = out + w[i] / total * x
    return out


def cosine_restart_lr(iteration, iters_per_epoch, base_lr, warmup_iters, warmup_ratio, period, min_ratio):
    """vedadet's CosineRestartLrSchedulerHook (one restart weight 1) with mmcv's linear warmup."""
    epoch = iteration // iters_per_epoch
    end = base_lr * min_ratio
    lr = end + 0.5 * (base_lr - end) * (1 + math.cos(math.pi * (epoch % period) / period))
    if iteration < warmup_iters:
        k = (1 - iteration / warmup_iters) * (1 - warmup_ratio)
        lr = lr * (1 - k)
    return lr
