"""Seeded random inputs for the RetinaFace homework's cases: boxes, detections, anchors, faces,
landmarks and offsets. Every function draws in float64 from its own generator, so a case's inputs
are the same in the grading worker and in the scoring process.
"""
from __future__ import annotations

import torch

BOX_SCALE = 100.0  # random boxes live in a 100 x 100 pixel square
LANDMARK_VALUES = 10  # five (x, y) points


def random_boxes(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n, 4] (x1, y1, x2, y2) boxes with corners in [0, 100] and sides in [1, 40]."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * (BOX_SCALE - 40)
    wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 39
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def clustered_dets(n: int, seed: int, ties: bool = False) -> torch.Tensor:
    """[n, 5] (x1, y1, x2, y2, score) detections clustered around a few "faces", as a detector
    produces them; with ``ties`` the scores take only 5 distinct values."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 2, generator=g) * 80 + 10
    sizes = torch.rand(4, 1, generator=g) * 20 + 10
    which = torch.randint(0, 4, (n,), generator=g)
    c = centres[which] + torch.randn(n, 2, generator=g) * 3
    s = sizes[which] * (1 + 0.15 * torch.randn(n, 1, generator=g))
    scores = torch.rand(n, generator=g)
    if ties:
        scores = torch.floor(scores * 5) / 5
    return torch.cat([c - s / 2, c + s / 2, scores[:, None]], dim=1)


def random_anchors(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """[n, 4] anchors (cx, cy, w, h), normalised: centres in [0.05, 0.95], sides in [0.02, 0.5]."""
    centres = 0.05 + 0.9 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    sides = 0.02 + 0.48 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.cat([centres, sides], dim=1).to(dtype)


def random_faces(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """[n, 4] boxes (x1, y1, x2, y2), normalised: corners in [0, 0.7], sides in [0.01, 0.3] (never
    empty, so their log sizes are finite)."""
    corner = 0.7 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    sides = 0.01 + 0.29 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.cat([corner, corner + sides], dim=1).to(dtype)


def random_landmarks(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """[n, 10] landmarks (l0x, l0y, ..., l4x, l4y), normalised, in [0, 1]."""
    return torch.rand(n, LANDMARK_VALUES, generator=g, dtype=torch.float64).to(dtype)


def random_offsets(columns: int):
    """A maker of [n, columns] standard-normal regression targets (what a head predicts)."""
    return lambda n, g, dtype: torch.randn(n, columns, generator=g, dtype=torch.float64).to(dtype)


def random_faces_px(n: int, image: int, seed: int) -> list[list[float]]:
    """n faces (x1, y1, x2, y2) in pixels of an image x image picture, sides from 3 pixels to ~40% of
    the image (small ones are frequent: some are too small for any anchor)."""
    g = torch.Generator().manual_seed(seed)
    sides = 3 + (0.4 * image - 3) * torch.rand(n, 1, generator=g, dtype=torch.float64) ** 2
    aspect = 0.7 + 0.6 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    wh = torch.cat([sides, sides * aspect], dim=1)
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * (image - wh)
    return torch.cat([corner, corner + wh], dim=1).tolist()
