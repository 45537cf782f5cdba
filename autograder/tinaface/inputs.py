"""Seeded inputs for the TinaFace cases (float64 draws from a per-case generator, so the grading
worker and the scoring process build the same tensors)."""
from __future__ import annotations

import dataclasses

import torch

BOX_SCALE = 100.0
# warmup_cosine_lr's keyword defaults (vedadet's TinaFace schedule), for the cases that leave them out
WARMUP_COSINE_DEFAULTS = {"warmup_iters": 500, "warmup_ratio": 0.1, "period": 30, "min_lr_ratio": 0.01}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64) * scale


def random_boxes(n: int, seed: int, max_side: float = 40.0, scale: float = BOX_SCALE) -> torch.Tensor:
    """[n, 4] float64 (x1, y1, x2, y2), corners in [0, scale], sides in [1, max_side]."""
    g = gen(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * (scale - max_side)
    wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * (max_side - 1)
    return torch.cat([xy, xy + wh], dim=1)


def jitter(boxes: torch.Tensor, seed: int, amount: float = 0.2) -> torch.Tensor:
    """Boxes moved and resized by up to ``amount`` (< 0.5) of their size (overlapping their originals)."""
    g = gen(seed)
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + (torch.rand(boxes.shape, generator=g, dtype=torch.float64) - 0.5) * 2 * amount * wh


def level_features(seed: int, batch: int, channels: tuple[int, ...], size: tuple[int, int],
                   strides: tuple[int, ...]) -> list[torch.Tensor]:
    """Feature maps [batch, channels[i], ceil(H / s_i), ceil(W / s_i)] of an H x W input."""
    g = gen(seed)
    return [torch.randn(batch, c, -(-size[0] // s), -(-size[1] // s), generator=g, dtype=torch.float64)
            for c, s in zip(channels, strides)]


def oracle_checked(cases: tuple) -> tuple:
    """``cases`` with ``reference=False``: their units are checked against an oracle, so no solution
    outputs are stored for them (keeps ``autograder/references/tinaface.pt`` small)."""
    return tuple(dataclasses.replace(c, reference=False) for c in cases)


FUSION_WEIGHT_RANGE = (0.2, 1.5)   # BiFPN fusion parameters set positive, so every input counts


def positive_fusion_weights(module: torch.nn.Module) -> torch.nn.Module:
    """Every BiFPN fusion parameter (``*_weights.*``) drawn from FUSION_WEIGHT_RANGE, seeded by its
    name's length and size (after ``deterministic_weights``; the grader and its oracle share this)."""
    low, high = FUSION_WEIGHT_RANGE
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "_weights." in name:
                p.copy_(low + (high - low) * torch.rand(p.shape, generator=gen(len(name) + p.numel()),
                                                         dtype=torch.float64))
    return module
