"""Graded units of the RetinaFace homework: where each answer cell lives, how it is called, and the
deterministic inputs it is run on. The checks and points are in ``test_retinaface.py``."""
from __future__ import annotations

from pathlib import Path

import torch

from autograder.units import Case, Unit

MATCHING_NB = "4_matching_nms.ipynb"

BOX_SCALE = 100.0  # random boxes live in a 100 x 100 pixel square
NMS_THRESHOLDS = (0.3, 0.5, 0.7)
NMS_SEEDS = (0, 1, 2, 3)


# -- input builders -----------------------------------------------------------------------------
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


def _pair(a: torch.Tensor, b: torch.Tensor, _dir: Path) -> dict:
    return {"box_a": a, "box_b": b}


def _known_pair(_dir: Path) -> dict:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 20.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0],
                      [10.0, 0.0, 20.0, 10.0]])  # the last one only touches a[0] along an edge
    return {"box_a": a, "box_b": b}


def _special_pair(_dir: Path) -> dict:
    """Identical boxes, nested boxes, zero-width and zero-height boxes against normal ones."""
    a = torch.tensor([[10.0, 10.0, 30.0, 40.0], [0.0, 0.0, 50.0, 50.0], [5.0, 5.0, 5.0, 25.0],
                      [5.0, 5.0, 25.0, 5.0]])
    b = torch.tensor([[10.0, 10.0, 30.0, 40.0], [20.0, 20.0, 25.0, 25.0], [0.0, 0.0, 20.0, 20.0]])
    return {"box_a": a, "box_b": b}


def _dets(dets: torch.Tensor, thresh: float, _dir: Path) -> dict:
    return {"dets": dets, "thresh": thresh}


def _known_dets(_dir: Path) -> dict:
    dets = torch.tensor([[10.0, 10.0, 50.0, 50.0, 0.95], [12.0, 12.0, 52.0, 52.0, 0.90],
                         [8.0, 9.0, 49.0, 51.0, 0.60], [100.0, 100.0, 140.0, 150.0, 0.80]])
    return {"dets": dets, "thresh": 0.4}


def _special_dets(_dir: Path) -> dict:
    """Identical boxes with identical scores, a zero-area box twice, and one box on its own."""
    dets = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.5], [0.0, 0.0, 10.0, 10.0, 0.5],
                         [0.0, 0.0, 10.0, 10.0, 0.5], [30.0, 30.0, 30.0, 40.0, 0.9],
                         [30.0, 30.0, 30.0, 40.0, 0.8], [60.0, 60.0, 70.0, 70.0, 0.7]])
    return {"dets": dets, "thresh": 0.5}


# -- cases ---------------------------------------------------------------------------------------
BOX_PAIR_CASES = (
    Case("known boxes", _known_pair),
    Case("identical, nested and zero-area boxes", _special_pair),
    Case("random 7 x 5 boxes", lambda d: _pair(random_boxes(7, 1), random_boxes(5, 2), d)),
    Case("random 1 x 30 boxes", lambda d: _pair(random_boxes(1, 3), random_boxes(30, 4), d)),
    Case("random 40 x 60 boxes (float64)",
         lambda d: _pair(random_boxes(40, 5, torch.float64), random_boxes(60, 6, torch.float64), d),
         public=False),
    Case("empty box_a (0 x 5)", lambda d: _pair(torch.zeros(0, 4), random_boxes(5, 7), d)),
    Case("empty box_b (3 x 0)", lambda d: _pair(random_boxes(3, 8), torch.zeros(0, 4), d)),
)
RANDOM_PAIR_CASES = ("random 7 x 5 boxes", "random 1 x 30 boxes", "random 40 x 60 boxes (float64)")
EMPTY_PAIR_CASES = ("empty box_a (0 x 5)", "empty box_b (3 x 0)")

NMS_RANDOM_CASES = tuple(
    Case(f"{n} clustered detections, seed {seed}, thresh {t}",
         lambda d, n=n, seed=seed, t=t: _dets(clustered_dets(n, seed), t, d),
         public=seed < 2)
    for seed, n in zip(NMS_SEEDS, (20, 60, 200, 500)) for t in NMS_THRESHOLDS)
NMS_TIE_CASES = tuple(
    Case(f"80 detections with tied scores, seed {seed}",
         lambda d, seed=seed: _dets(clustered_dets(80, 10 + seed, ties=True), 0.5, d))
    for seed in range(2))
NMS_CASES = (
    Case("three duplicates around one face and one other face", _known_dets),
    *NMS_RANDOM_CASES,
    *NMS_TIE_CASES,
    Case("identical and zero-area boxes", _special_dets),
    Case("thresh 0: any overlap suppresses", lambda d: _dets(clustered_dets(50, 20), 0.0, d)),
    Case("thresh 1: nothing is suppressed", lambda d: _dets(clustered_dets(50, 21), 1.0, d)),
    Case("no detections", lambda d: _dets(torch.zeros(0, 5), 0.5, d)),
)


UNITS = (
    Unit("intersect", MATCHING_NB, lambda ns, x, dev: ns.intersect(x["box_a"], x["box_b"]),
         BOX_PAIR_CASES),
    Unit("jaccard", MATCHING_NB, lambda ns, x, dev: ns.jaccard(x["box_a"], x["box_b"]),
         BOX_PAIR_CASES, depends=("intersect",)),
    Unit("nms", MATCHING_NB, lambda ns, x, dev: ns.nms(x["dets"], x["thresh"]), NMS_CASES,
         depends=("jaccard",)),
)
