"""Deterministic DSFD diagnostics (given code of the dsfd experiments notebook, ``4_experiments``):
measurements of what the FEM, PAL, data-anchor-sampling and the EfficientNet taps change that need no
training, so they can be read without a seed spread.

* ``faces_in_images`` / ``face_sides``: a fixed list of faces, normalised to each image padded to a
  multiple of 128 (as the detector pads it), and their sides ``sqrt(w * h)`` in pixels;
* ``matches_per_face``: SSD matching (``detector.dsfd.boxes``) of faces against anchors -> anchors per face;
* ``anchor_grid`` and ``served_faces``: for the anchors of ``utils.detectors.dsfd.misplaced_priors`` (the
  correct anchors when a config's source strides equal its steps), each anchor's level and the centre of
  the feature cell that predicts it (real stride); a face is served when one of its matched anchors is
  predicted by a cell within half a stride of the face's centre (the course project's B0 taps);
* ``theoretical_receptive_fields`` and ``gradient_extent``: receptive field of the plain (first-shot)
  and FEM (second-shot) maps of a VGG DSFD with the solutions' module names (``vgg``, ``extras``,
  ``fpn_fem``, ``loc_pal1``/``loc_pal2``);
* ``flops_and_parameters`` and ``tap_strides``: forward FLOPs (``torch.utils.flop_counter``, 2 FLOPs per
  multiply-add), parameters and tap strides, on the ``meta`` device (shapes only).

Boxes are ``(x1, y1, x2, y2)``; priors ``(cx, cy, w, h)``, both normalised to the (padded) image.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from detector.dsfd.backbones import VGG_SLICES
from detector.dsfd.boxes import BACKGROUND, match_anchors, overlaps
from utils.detectors.dsfd import misplaced_priors

PAD_MULTIPLE = 128                                   # the largest step: the detector pads to it
SIZE_EDGES = (0, 8, 16, 32, 64, 128, 256, math.inf)  # face-side bins (pixels) of every table


def size_labels(edges=SIZE_EDGES) -> list[str]:
    """'0-8', '8-16', ..., '>256' for the bins between consecutive ``edges``."""
    return [f">{lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def size_bins(sides, edges=SIZE_EDGES) -> np.ndarray:
    """[n] face sides (pixels) -> [n] bin index (a side on an edge goes to the upper bin)."""
    return np.digitize(np.asarray(sides, dtype=np.float64), edges[1:-1])


def face_sides(boxes) -> np.ndarray:
    """[n, 4] boxes in pixels -> [n] sqrt(w * h)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def padded_size(shape, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` [H, W, ...] padded bottom/right to multiples of ``multiple``."""
    return tuple(int(math.ceil(s / multiple) * multiple) for s in shape[:2])


def faces_in_images(dataset, count: int):
    """The first ``count`` images of ``dataset`` (items ``(image [H, W, 3], targets [n, >= 4] px)``) that
    hold faces: list of ``(size (H, W) padded, faces [n, 4] normalised to it, sides [n] pixels)``."""
    out = []
    for index in range(min(count, len(dataset))):
        image, targets = dataset[index]
        targets = np.asarray(targets, dtype=np.float64)
        boxes = targets.reshape(-1, targets.shape[-1])[:, :4] if targets.size else np.zeros((0, 4))
        if len(boxes) == 0:
            continue
        height, width = padded_size(image.shape)
        faces = torch.from_numpy(boxes / np.array([width, height, width, height])).float()
        out.append(((height, width), faces, face_sides(boxes)))
    return out


def matches_per_face(faces: torch.Tensor, priors: torch.Tensor,
                     threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """[G, 4] faces, [P, 4] priors -> ([G] long anchors matched per face, [P] long assignment) by the
    kit's SSD matching (IoU >= ``threshold``, every face's best anchor forced)."""
    assigned = match_anchors(overlaps(faces, priors), threshold)
    counts = torch.bincount(assigned[assigned != BACKGROUND], minlength=len(faces))
    return counts, assigned


def anchor_grid(cfg: dict, image_size, pal_priors) -> dict:
    """Anchors of both shots for ``image_size`` (H, W) as ``misplaced_priors`` builds them from
    ``pal_priors`` (the notebook's): one per cell of each real source map, centred with the
    configured steps; and, per anchor, its ``level`` [P] and
    the centre of the feature cell that predicts it, ``cell_xy`` [P, 2] in pixels (real stride), with
    that level's real stride ``cell_stride`` [P]. Correct taps: cell centre == anchor centre."""
    height, width = image_size
    priors = misplaced_priors(cfg, image_size, pal_priors)
    levels, cells, strides = [], [], []
    for level, stride in enumerate(cfg["source_strides"]):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * stride, (torch.arange(cols) + 0.5) * stride,
                                indexing="ij")
        cells.append(torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1))
        levels.append(torch.full((rows * cols,), level, dtype=torch.long))
        strides.append(torch.full((rows * cols,), float(stride)))
    return {"first": priors[0], "second": priors[1], "level": torch.cat(levels),
            "cell_xy": torch.cat(cells).float(), "cell_stride": torch.cat(strides)}


def served_faces(faces: torch.Tensor, image_size, grid: dict, assigned: torch.Tensor) -> torch.Tensor:
    """[G] bool: the face has at least one matched anchor (``assigned`` [P], from ``matches_per_face``)
    whose feature cell lies within half a stride of the face's centre (|dx|, |dy| <= stride / 2), i.e.
    the cell that predicts the anchor sits on the face."""
    height, width = image_size
    centres = (faces[:, :2] + faces[:, 2:]) / 2 * torch.tensor([width, height])              # [G, 2] px
    served = torch.zeros(len(faces), dtype=torch.bool)
    matched = torch.nonzero(assigned != BACKGROUND).squeeze(1)
    if len(matched):
        face = assigned[matched]
        gap = (grid["cell_xy"][matched] - centres[face]).abs().max(dim=1).values              # [M]
        ok = gap <= grid["cell_stride"][matched] / 2
        served[face[ok]] = True
    return served


# -- receptive fields -------------------------------------------------------------------------------
def _grow(rf: float, jump: float, modules) -> tuple[float, float]:
    """Receptive field and jump (pixels) after ``modules`` (Conv2d / MaxPool2d; others pass through)."""
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, s, d = (getattr(m, a) for a in ("kernel_size", "stride", "dilation"))
            k, s, d = (v[0] if isinstance(v, tuple) else v for v in (k, s, d))
            rf, jump = rf + (k - 1) * d * jump, jump * s
    return rf, jump


def _fem_growth(fem: nn.Module) -> float:
    """Largest receptive-field growth (in cells of its map) over the FEM's branches."""
    return max(_grow(1.0, 1.0, branch.modules())[0] - 1 for branch in (fem.branch1, fem.branch2, fem.branch3))


def theoretical_receptive_fields(model: nn.Module) -> tuple[list[float], list[float], list[float]]:
    """(strides, plain, enhanced): per level, the stride and the theoretical receptive field (pixels,
    unclipped) of the first shot's map of_k and of the second shot's ef_k of a VGG DSFD. The FPN makes
    conv_k = up(conv_k+1) * lat(of_k): bilinear x2 upsampling reads 2 cells of the coarser map (+1 of its
    cells); ef_k = FEM(conv_k) adds the deepest branch's dilated convolutions."""
    rf, jump, plain, strides = 1.0, 1.0, [], []
    for start, end in VGG_SLICES:
        rf, jump = _grow(rf, jump, model.vgg[start:end])
        plain.append(rf), strides.append(jump)
    for pair in (model.extras[0:2], model.extras[2:4]):
        rf, jump = _grow(rf, jump, pair)
        plain.append(rf), strides.append(jump)
    fused = [0.0] * 6
    fused[5] = plain[5]                                   # conv7 = 1x1 of of6
    for k in range(4, -1, -1):
        fused[k] = max(plain[k], fused[k + 1] + strides[k + 1])
    enhanced = [fused[k] + _fem_growth(model.fpn_fem[k]) * strides[k] for k in range(6)]
    return strides, plain, enhanced


def _extent(grad: torch.Tensor, mass: float, relative: float) -> tuple[float, float]:
    """(side of the square centred on the |grad|-weighted centroid that holds ``mass`` of sum |grad|,
    side of the bounding box (its longer side) of the pixels with |grad| >= ``relative`` * max), in
    pixels; ``grad`` [H, W] >= 0. Both are clipped by the image."""
    height, width = grad.shape
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    g = grad.double()
    total = g.sum().clamp_min(1e-300)
    cx, cy = float((g * xs).sum() / total), float((g * ys).sum() / total)
    dist = torch.maximum((xs - cx).abs(), (ys - cy).abs()).reshape(-1)
    order = torch.argsort(dist)
    cumulative = torch.cumsum(g.reshape(-1)[order], 0) / total
    at = int(torch.searchsorted(cumulative, torch.tensor(mass, dtype=cumulative.dtype)).clamp(max=len(dist) - 1))
    rows, cols = torch.nonzero(g >= relative * g.max(), as_tuple=True)
    support = max(int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    return 2 * float(dist[order][at]), float(support)


def gradient_extent(model: nn.Module, image_size: int, seed: int = 0, input_std: float = 64.0,
                    mass: float = 0.9, relative: float = 0.01) -> dict:
    """Gradient-measured receptive field at the model's current weights: one input of noise (std
    ``input_std``, ``seed``), then for each level's map read by ``loc_pal1[k]`` (first shot, plain) and
    ``loc_pal2[k]`` (second shot, FEM) the gradient of its centre unit (sum over channels) w.r.t. the
    input. Returns {'plain': [(mass side, support side)] * 6, 'enhanced': ...} in pixels: the side of
    the square centred on the gradient's centroid holding ``mass`` of sum |grad|, and the longer side
    of the bounding box of the pixels with |grad| >= ``relative`` x its max (both clipped by the image).
    The centre unit of a map of h x w cells is (h // 2, w // 2)."""
    maps = {}
    hooks = [head[k].register_forward_pre_hook(lambda m, args, key=(shot, k): maps.__setitem__(key, args[0]))
             for shot, head in (("plain", model.loc_pal1), ("enhanced", model.loc_pal2)) for k in range(6)]
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(1, 3, image_size, image_size, generator=generator) * input_std).requires_grad_(True)
    was_training = model.training
    try:
        model.train()        # training mode: both shots run (no BatchNorm/dropout in the VGG DSFD)
        model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    out = {"plain": [], "enhanced": []}
    for (shot, k), feature in sorted(maps.items(), key=lambda kv: (kv[0][0] != "plain", kv[0][1])):
        h, w = feature.shape[-2:]
        unit = feature[0, :, h // 2, w // 2].sum()
        grad = torch.autograd.grad(unit, x, retain_graph=True)[0][0].abs().sum(0)        # [H, W]
        out[shot].append(_extent(grad, mass, relative))
    return out


def flops_and_parameters(build, image_size: int) -> tuple[int, int]:
    """(forward FLOPs of one square image of ``image_size`` px, counted by ``torch.utils.flop_counter``:
    2 FLOPs per multiply-add; parameters) of the model ``build()`` returns, in eval mode. The model is
    built and run on the ``meta`` device (shapes only: nothing is allocated or computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build().eval()
        image = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return int(counter.get_total_flops()), sum(p.numel() for p in model.parameters())


def tap_strides(features: nn.Sequential, taps, image_size: int) -> list[int]:
    """Strides of the outputs of ``features[t]`` for t in ``taps``, for a square input of
    ``image_size`` px (on the ``meta`` device: shapes only)."""
    x, strides = torch.zeros(1, 3, image_size, image_size, device="meta"), []
    features = features.to("meta").eval()
    with torch.no_grad():
        for index, module in enumerate(features[:max(taps) + 1]):
            x = module(x)
            if index in taps:
                strides.append(image_size // x.shape[-1])
    return strides
