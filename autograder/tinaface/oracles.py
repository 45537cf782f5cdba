"""Every reference the TinaFace checks compare against, independent of the solutions: slow loop
definitions, torchvision's ops (with their gradients), the modules rebuilt from the given blocks
with name-seeded weights, and the variants that compute each classic mistake (a flag per mistake).
Arguments are built from a case's inputs only, so an answer can be recorded per call."""
from __future__ import annotations

import math

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from autograder.modules import deterministic_weights
from autograder.tinaface.inputs import WARMUP_COSINE_DEFAULTS, positive_fusion_weights
from detector.tinaface.blocks import ConvGN, SeparableConvGN
from detector.tinaface.config import BOX_STDS, FUSION_EPS, MAX_LOG_RATIO


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


def decode(anchor_boxes, deltas, stds=BOX_STDS, max_ratio=MAX_LOG_RATIO, max_shape=None,
           clamp_before_std=False) -> torch.Tensor:
    """Boxes row by row; ``clamp_before_std``: the log sizes clamped before the stds scale them (the
    mistake: their limit becomes max_ratio · std)."""
    rows = []
    for a, d in zip(anchor_boxes.tolist(), deltas.tolist()):
        if clamp_before_std:
            d = d[:2] + [min(max(v, -max_ratio), max_ratio) for v in d[2:]]
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


def scores(cls_logits, iou_logits, alpha) -> torch.Tensor:
    """TinaFace's test-time score sigmoid(cls)^(2 alpha) * sigmoid(iou)^(2 (1 - alpha))."""
    return torch.sigmoid(cls_logits) ** (2 * alpha) * torch.sigmoid(iou_logits) ** (2 * (1 - alpha))


def warmup_cosine_lrs(iterations, iters_per_epoch, base_lr, kw, warmup_shift=0) -> torch.Tensor:
    """[len(iterations)] float64 lrs of ``cosine_restart_lr``; ``warmup_shift`` k: the warmup factor of
    iteration i + k at iteration i (the off-by-one mistake)."""
    kw = dict(WARMUP_COSINE_DEFAULTS, **kw)
    out = []
    for i in iterations:
        lr = cosine_restart_lr(i, iters_per_epoch, base_lr, 0, 1.0, kw["period"], kw["min_lr_ratio"])
        if i < kw["warmup_iters"]:
            lr *= cosine_restart_lr(i + warmup_shift, 1, 1.0, kw["warmup_iters"], kw["warmup_ratio"], 1, 1.0)
        out.append(lr)
    return torch.tensor(out, dtype=torch.float64)


def engine_cosine_restart_factor(iteration, iterations_per_epoch, restart_epochs, warmup_iterations=0,
                                 warmup_ratio=1e-3, min_lr_ratio=0.0):
    """The lr multiplier of the kit's engine's former ``schedule='cosine_restart'`` (removed from
    ``utils.training.optim``: it answered ``warmup_cosine_lr``), as it computed it: the engine now
    runs the notebook's function, and tests/test_tinaface.py checks its lrs are bit-identical."""
    cycle = (iteration // max(1, iterations_per_epoch)) % restart_epochs
    cosine = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * cycle / restart_epochs))
    warmup = 1.0 if iteration >= warmup_iterations else \
        warmup_ratio + (1.0 - warmup_ratio) * iteration / warmup_iterations
    return cosine * warmup


# -- losses: torchvision's ops with their gradients, and loop variants of the classic mistakes ----------
def _value_and_grads(fn, tensors, seed=None):
    """(fn(*tensors) detached, gradients w.r.t. ``tensors``) of sum(out · cotangent); the cotangent is
    1 (``seed`` None) or a seeded N(0, 1) draw."""
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*tensors)
    cot = torch.ones_like(out) if seed is None else torch.randn(
        out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(out)
    return out.detach(), torch.autograd.grad((out * cot).sum(), tensors)


def focal_loss(inputs, targets, alpha, gamma, reduction):
    """(torchvision sigmoid_focal_loss, its gradient w.r.t. the logits)."""
    value, grads = _value_and_grads(lambda x: torchvision.ops.sigmoid_focal_loss(
        x, targets, alpha=alpha, gamma=gamma, reduction=reduction), [inputs])
    return value, grads[0]


def diou_loss(pred, target):
    """(torchvision distance_box_iou_loss with eps 1e-6, its gradient w.r.t. ``pred``)."""
    value, grads = _value_and_grads(lambda p: torchvision.ops.distance_box_iou_loss(
        p, target, reduction="none", eps=1e-6), [pred])
    return value, grads[0]


def diou_variant(pred, target, eps=1e-6, centre_term=True, enclosing=True) -> torch.Tensor:
    """[N] DIoU losses pair by pair; ``centre_term=False``: 1 - IoU; ``enclosing=False``: c built like
    the intersection (max of x1, min of x2, clamped at 0), the mistake."""
    rows = []
    for p, t in zip(pred.double().tolist(), target.double().tolist()):
        iw = max(0.0, min(p[2], t[2]) - max(p[0], t[0]))
        ih = max(0.0, min(p[3], t[3]) - max(p[1], t[1]))
        inter = iw * ih
        union = (p[2] - p[0]) * (p[3] - p[1]) + (t[2] - t[0]) * (t[3] - t[1]) - inter
        if enclosing:
            cw, ch = max(p[2], t[2]) - min(p[0], t[0]), max(p[3], t[3]) - min(p[1], t[1])
        else:
            cw, ch = iw, ih
        rho2 = ((p[0] + p[2] - t[0] - t[2]) ** 2 + (p[1] + p[3] - t[1] - t[3]) ** 2) / 4
        loss = 1 - inter / (union + eps)
        rows.append(loss + rho2 / (cw ** 2 + ch ** 2 + eps) if centre_term else loss)
    return torch.tensor(rows, dtype=torch.float64)


def iou_aware_loss(iou_logits, pred_boxes, gt_boxes, avg_factor):
    """(BCE of the logits against the loop IoU of the (detached) boxes / avg_factor, its gradient
    w.r.t. the logits)."""
    target = aligned_iou(pred_boxes, gt_boxes).to(iou_logits.dtype)
    value, grads = _value_and_grads(lambda x: torch.nn.functional.binary_cross_entropy_with_logits(
        x, target, reduction="sum") / avg_factor, [iou_logits])
    return value, grads[0]


def fusion_and_grad(inputs, weights, eps, seed):
    """(``fusion``, its gradient w.r.t. the weights for a seeded cotangent)."""
    value, grads = _value_and_grads(lambda w: fusion(inputs, w, eps), [weights], seed)
    return value, grads[0]


# -- model parts: deformable sampling, and the modules rebuilt from the given blocks ------------------
def swap_dy_dx(offset: torch.Tensor) -> torch.Tensor:
    """The offsets with (dy, dx) of every tap exchanged: what a (dx, dy) reading computes."""
    b, c, h, w = offset.shape
    return offset.reshape(b, c // 2, 2, h, w).flip(2).reshape(b, c, h, w)


def deform_sampling(input, offset, weight, stride, padding, dilation, border="zeros", dx_dy=False):
    """DCNv1 by F.grid_sample, one tap at a time: [B, C_out, H_out, W_out]. ``border``: grid_sample's
    padding mode ('zeros' as torchvision; 'border': outside samples replicate the edge, the mistake);
    ``dx_dy``: offsets read as (dx, dy) (the other mistake)."""
    offset = swap_dy_dx(offset) if dx_dy else offset
    b, c, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    h_out, w_out = offset.shape[-2:]
    groups = offset.shape[1] // (2 * kh * kw)
    off = offset.reshape(b, groups, kh * kw, 2, h_out, w_out)
    rows = (torch.arange(h_out, dtype=input.dtype) * stride - padding)[:, None]
    cols = (torch.arange(w_out, dtype=input.dtype) * stride - padding)[None, :]
    image = input.reshape(b * groups, c // groups, h, w)
    taps = []
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        py = (rows + i * dilation + off[:, :, k, 0]).reshape(b * groups, h_out, w_out)
        px = (cols + j * dilation + off[:, :, k, 1]).reshape(b * groups, h_out, w_out)
        grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
        taps.append(torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode=border,
                                                    align_corners=True).reshape(b, c, h_out, w_out))
    return torch.einsum("bckhw,ock->bohw", torch.stack(taps, dim=2), weight.reshape(c_out, c, kh * kw))


def deform_sampling_and_grads(input, offset, weight, stride, padding, dilation, seed):
    """(torchvision deform_conv2d, its gradients w.r.t. input, offset and weight for a seeded cotangent)."""
    return _value_and_grads(lambda x, o, wt: torchvision.ops.deform_conv2d(
        x, o, wt, stride=stride, padding=padding, dilation=dilation), [input, offset, weight], seed)


class _DeformLayer(nn.Module):
    """DeformConv2dPack's names (weight, conv_offset) around ``deform_sampling``."""

    def __init__(self, c_in, c_out, stride, border="zeros", zero_offsets=False):
        super().__init__()
        self.stride, self.border, self.zero_offsets = stride, border, zero_offsets
        self.weight = nn.Parameter(torch.empty(c_out, c_in, 3, 3, dtype=torch.float64))
        self.conv_offset = nn.Conv2d(c_in, 18, 3, stride, 1, dtype=torch.float64)

    def forward(self, x):
        offset = self.conv_offset(x)
        offset = torch.zeros_like(offset) if self.zero_offsets else offset
        if self.border == "zeros":
            return torchvision.ops.deform_conv2d(x, offset, self.weight, stride=self.stride, padding=1)
        return deform_sampling(x, offset, self.weight, self.stride, 1, 1, border=self.border)


def deform_layer(input, c_in, c_out, stride, border="zeros", zero_offsets=False) -> torch.Tensor:
    """A DCN layer with name-seeded weights applied to ``input`` (``zero_offsets``: conv_offset zeroed)."""
    with torch.no_grad():
        return deterministic_weights(_DeformLayer(c_in, c_out, stride, border, zero_offsets))(input)


class _ResNetGN(ResNet):
    """ResNet with GroupNorm(groups(C), C), DCN conv2 in the marked stages, width w (the homework's)."""

    def __init__(self, layers, bottleneck, groups, dcn_stages, width):
        self.width = width
        norm = lambda c: nn.GroupNorm(groups(c), c)   # noqa: E731
        super().__init__(Bottleneck if bottleneck else BasicBlock, list(layers), norm_layer=norm)
        del self.avgpool, self.fc
        if width != 64:
            self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), norm(width)
        for stage, use_dcn in enumerate(dcn_stages):
            for blk in getattr(self, f"layer{stage + 1}") if use_dcn else ():
                blk.conv2 = _DeformLayer(blk.conv2.in_channels, blk.conv2.out_channels, blk.conv2.stride[0])

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:
            self.inplanes = self.width
        return super()._make_layer(block, planes * self.width // 64, blocks, stride, dilate)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        return feats


def _run(module, inputs):
    module = deterministic_weights(module.to(torch.float64)).eval()
    with torch.no_grad():
        return tuple(module(inputs))


def resnet_gn(input, layers, bottleneck, num_groups, dcn_stages, width=64, groups_swapped=False):
    """[C2, C3, C4, C5] with name-seeded weights; ``groups_swapped``: GroupNorm(C // num_groups, C),
    num_groups channels per group (the mistake)."""
    groups = (lambda c: c // num_groups) if groups_swapped else (lambda c: num_groups)
    return _run(_ResNetGN(layers, bottleneck, groups, dcn_stages, width), input)


class _FPN6(nn.Module):
    def __init__(self, in_channels, out, groups, mode, align_corners):
        super().__init__()
        self.mode, self.align_corners = mode, align_corners
        self.lateral_convs = nn.ModuleList(ConvGN(c, out, 1, num_groups=groups) for c in in_channels)
        self.fpn_convs = nn.ModuleList([*(ConvGN(out, out, 3, num_groups=groups) for _ in in_channels),
                                        ConvGN(in_channels[-1], out, 3, 2, groups), ConvGN(out, out, 3, 2, groups)])

    def forward(self, features):
        lat = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(lat) - 1, 0, -1):
            up = torch.nn.functional.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode=self.mode,
                                                 **({} if self.mode == "nearest" else
                                                    {"align_corners": self.align_corners}))
            lat[i - 1] = lat[i - 1] + up
        outs = [conv(t) for conv, t in zip(self.fpn_convs, lat)]
        outs.append(self.fpn_convs[len(lat)](features[-1]))
        outs.append(self.fpn_convs[len(lat) + 1](outs[-1]))
        return outs


def fpn6(features, in_channels, out_channels, num_groups, mode="bilinear", align_corners=False):
    """P2..P7 with name-seeded weights; ``mode``/``align_corners``: the top-down upsampling."""
    return _run(_FPN6(in_channels, out_channels, num_groups, mode, align_corners), features)


class _BiFPN(nn.Module):
    def __init__(self, channels, levels, groups, activation):
        super().__init__()
        self.activation = activation
        self.td_weights = nn.ParameterList(nn.Parameter(torch.ones(2)) for _ in range(levels - 1))
        self.bu_weights = nn.ParameterList(nn.Parameter(torch.ones(3 if i < levels - 2 else 2))
                                           for i in range(levels - 1))
        self.td_convs = nn.ModuleList(SeparableConvGN(channels, groups) for _ in range(levels - 1))
        self.bu_convs = nn.ModuleList(SeparableConvGN(channels, groups) for _ in range(levels - 1))

    def node(self, conv, inputs, weights):
        fused = fusion(inputs, weights, FUSION_EPS)
        if self.activation == "before":
            return conv(torch.nn.functional.silu(fused))
        return torch.nn.functional.silu(conv(fused)) if self.activation == "after" else conv(fused)

    def forward(self, features):
        n = len(features)
        td = list(features)
        for i in range(n - 2, -1, -1):
            up = torch.nn.functional.interpolate(td[i + 1], size=features[i].shape[-2:], mode="nearest")
            td[i] = self.node(self.td_convs[i], [features[i], up], self.td_weights[i])
        outs = [td[0]]
        for i in range(1, n):
            down = torch.nn.functional.max_pool2d(outs[-1], 3, 2, 1)
            inputs = [features[i], td[i], down] if i < n - 1 else [features[i], down]
            outs.append(self.node(self.bu_convs[i - 1], inputs, self.bu_weights[i - 1]))
        return outs


def bifpn(features, channels, num_groups, activation="before"):
    """A BiFPN layer's outputs with name-seeded weights and positive fusion weights; ``activation``:
    SiLU 'before' the separable conv (EfficientDet), 'after' it or 'none' (the mistakes)."""
    module = positive_fusion_weights(deterministic_weights(
        _BiFPN(channels, len(features), num_groups, activation).to(torch.float64))).eval()
    with torch.no_grad():
        return tuple(module(features))
