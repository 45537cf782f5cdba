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


def _bins_agree(cells: int, k: int) -> bool:
    """Whether the bin edges floor(i * cells / k), ceil((i + 1) * cells / k) come out the same in
    exact arithmetic and in float32 / float64 (torchvision computes cells / k in the features'
    dtype): RoIs where they differ would grade an implementation's arithmetic, not its idea."""
    from fractions import Fraction
    import math

    for dtype in (torch.float32, torch.float64):
        step = torch.tensor(cells, dtype=dtype) / k
        pos = torch.arange(k + 1, dtype=dtype) * step
        exact = [Fraction(i * cells, k) for i in range(k + 1)]
        if (torch.floor(pos).tolist() != [math.floor(e) for e in exact]
                or torch.ceil(pos).tolist() != [math.ceil(e) for e in exact]):
            return False
    return True


def inner_rois(n: int, batch: int, feat_h: int, feat_w: int, scale: float, k, seed: int,
               dtype: torch.dtype = torch.float32, half_cells: bool = False) -> torch.Tensor:
    """[n, 5] (batch index, x1, y1, x2, y2) pixels of RoIs that grade PS-RoI pooling's idea, not
    torchvision's artefacts: in feature cells every corner lies within 0.3 of an integer (any
    round-to-nearest rule gives the same cell), x2 <= W - 2 and y2 <= H - 2 (away from the last row
    and column, which torchvision's W - 1 clamp never pools), sides of at least one cell, and bin
    edges that float and exact arithmetic agree on. ``half_cells``: every corner at n + 0.5 cells
    instead (from -1.5 on; the ends still before the last row and column): the rounding rule
    decides the cell, and the half-to-even, half-up and half-away-from-zero rules all differ."""
    kh, kw = (k, k) if isinstance(k, int) else tuple(k)
    g = gen(seed)
    rows = []
    while len(rows) < n:
        b = int(torch.randint(0, batch, (1,), generator=g))
        corner = []
        for limit, bins in ((feat_w, kw), (feat_h, kh)):
            if half_cells:
                lo = int(torch.randint(-2, limit - 3, (1,), generator=g))          # lo + 0.5 >= -1.5
                hi = int(torch.randint(lo + 1, limit - 2, (1,), generator=g))      # hi + 0.5 <= W - 2.5
                corner.append((lo + 0.5, hi + 0.5))
                if not all(_bins_agree(max(hi - lo + d, 1), bins) for d in (-1, 0, 1)):
                    corner = None
                    break
            else:
                lo = int(torch.randint(0, limit - 2, (1,), generator=g))
                hi = int(torch.randint(lo + 1, limit - 1, (1,), generator=g))      # hi <= W - 2
                jitter = (torch.rand(2, generator=g, dtype=torch.float64) * 0.6 - 0.3).tolist()
                corner.append((max(lo + jitter[0], 0.0), hi + jitter[1]))
                if not _bins_agree(hi - lo, bins):
                    corner = None
                    break
        if corner is None:
            continue
        (x1, x2), (y1, y2) = corner
        rows.append([b, x1 / scale, y1 / scale, x2 / scale, y2 / scale])
    return torch.tensor(rows, dtype=torch.float64).to(dtype) if rows else torch.zeros(0, 5, dtype=dtype)
