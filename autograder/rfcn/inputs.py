"""Deterministic (seeded) inputs of the Face R-FCN cases: boxes, detections, score maps, RoIs."""
from __future__ import annotations

import torch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_boxes(n: int, seed: int, extent: float = 200.0, max_side: float = 60.0,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n, 4] (x1, y1, x2, y2) with sides in [2, max_side + 2) inside [0, extent + max_side]."""
    g = gen(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * extent
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_side + 2
    return torch.cat([xy, xy + wh], 1).to(dtype)


def clustered_boxes(n: int, seed: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes [n, 4], scores [n]): jittered copies around a few centres, so NMS has chains;
    ``ties``: scores drawn from 8 values."""
    g = gen(seed)
    centres = torch.rand(max(1, n // 8), 2, generator=g) * 200
    pick = torch.randint(0, len(centres), (n,), generator=g)
    size = torch.rand(n, 1, generator=g) * 20 + 20
    xy = centres[pick] + torch.randn(n, 2, generator=g) * 6
    boxes = torch.cat([xy, xy + size], 1)
    scores = (torch.randint(0, 8, (n,), generator=g).float() / 8 if ties
              else torch.rand(n, generator=g))
    return boxes, scores


def integer_maps(batch: int, channels: int, height: int, width: int, seed: int,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer-valued score maps in [-50, 50): every average is then exact in float32."""
    return torch.randint(-50, 50, (batch, channels, height, width), generator=gen(seed)).to(dtype)


def random_rois(n: int, batch: int, image: float, seed: int, dtype: torch.dtype = torch.float32,
                on_grid: int = 0) -> torch.Tensor:
    """[n, 5] (batch index, x1, y1, x2, y2) pixels; some reach past the image border; the first
    ``on_grid`` have corners on multiples of 8 px (x * 1/16 = k + 0.5: the rounding trap)."""
    g = gen(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * image * 1.1 - image * 0.15
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * image * 0.6
    rois = torch.cat([torch.randint(0, batch, (n, 1), generator=g).double(), xy, xy + wh], 1)
    if on_grid:
        rois[:on_grid, 1:] = torch.randint(-2, int(image / 8) + 2, (on_grid, 4), generator=g).double() * 8
        rois[:on_grid, 3:] = torch.max(rois[:on_grid, 3:], rois[:on_grid, 1:3])
    return rois.to(dtype)


def faces(n: int, image: float, seed: int, min_side: float = 8.0, max_side: float = 64.0) -> torch.Tensor:
    """[n, 4] face boxes inside an image x image picture."""
    g = gen(seed)
    side = torch.rand(n, 1, generator=g) * (max_side - min_side) + min_side
    xy = torch.rand(n, 2, generator=g) * (image - side)
    return torch.cat([xy, xy + side * torch.tensor([0.8, 1.0])], 1)


def deltas(n: int, seed: int, scale: float = 0.3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (torch.randn(n, 4, generator=gen(seed), dtype=torch.float64) * scale).to(dtype)
