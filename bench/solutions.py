"""The solutions' fast model answers against the straightforward versions, in one run:

- ``nms`` (block-wise exact greedy NMS, notebook 4) against torchvision.ops.nms, a NumPy loop in the
  style of the public ``py_cpu_nms`` and the simple "one iteration per kept box" loop the notebook
  shows first, on 5 000 candidates clustered on 60 faces and on 5 000 spread-out boxes (IoU 0.4);
- ``match`` (vectorised forcing with scatter_reduce, notebook 4), called once per image as the public
  MultiBoxLoss does, and the optional ``match_batch`` (the whole batch in one call), against a match
  in the style of the public code (a Python loop over the faces for the forcing) called once per
  image, on a training batch (16 crops of 320 px with 1 to 40 faces).

Every version must return the same answer (the NMS versions the same indices as torchvision,
``match_batch`` exactly the per-image ``match``); the bench checks that before timing. Best of
``--repeats`` runs, one torch thread (other load on a shared machine only ever adds time); the
ratios are measured in the same process, so they stay meaningful on a busy machine.

    python -m bench.solutions [--repeats 20]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torchvision

from bench.timing import best_times
from detector.retinaface.config import cfg_mnet
from utils.notebook import load_notebook

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions" / "retinaface"
NMS_THRESH = 0.4
IMAGE = 640                       # pixels, square
CANDIDATES = 5000
CLUSTER_FACES = 60
MATCH_BATCH, MATCH_IMAGE, MAX_FACES = 16, 320, 40


def clustered(n: int, faces: int, seed: int = 0) -> torch.Tensor:
    """[n, 5] detections jittered around ``faces`` faces of 12 to 120 px, as a detector fires."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(faces, 2, generator=g) * IMAGE
    side = 12 + torch.rand(faces, 1, generator=g) * 108
    which = torch.randint(faces, (n,), generator=g)
    c = centre[which] + torch.randn(n, 2, generator=g) * side[which] * 0.2
    s = side[which] * (1 + 0.1 * torch.randn(n, 1, generator=g))
    return torch.cat([c - s / 2, c + s / 2, torch.rand(n, 1, generator=g)], dim=1)


def spread(n: int, seed: int = 1) -> torch.Tensor:
    """[n, 5] boxes of 8 to 40 px anywhere in the image: most survive NMS."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * IMAGE
    side = 8 + torch.rand(n, 1, generator=g) * 32
    return torch.cat([xy, xy + side, torch.rand(n, 1, generator=g)], dim=1)


def numpy_nms(dets: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy NMS as the public py_cpu_nms writes it (continuous widths, stable order)."""
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        order = rest[~(inter / (areas[i] + areas[rest] - inter) > thresh)]
    return np.array(keep, dtype=np.int64)


def kept_box_loop(jaccard):
    def nms(dets, thresh):
        order = torch.argsort(dets[:, 4], descending=True, stable=True)
        keep = []
        while order.numel() > 0:
            best, rest = order[0], order[1:]
            keep.append(best)
            iou = jaccard(dets[best, :4].unsqueeze(0), dets[rest, :4])[0]
            order = rest[~(iou > thresh)]
        return torch.stack(keep)
    return nms


def bench_nms(nb, repeats: int) -> None:
    versions = {"solution nms (blocks)": nb.nms, "torchvision.ops.nms": lambda d, t: torchvision.ops.nms(
                    d[:, :4], d[:, 4], t),
                "py_cpu_nms-style NumPy loop": lambda d, t: torch.from_numpy(numpy_nms(d.numpy(), t)),
                "loop once per kept box": kept_box_loop(nb.jaccard)}
    for label, dets in ((f"{CANDIDATES} candidates on {CLUSTER_FACES} faces", clustered(CANDIDATES, CLUSTER_FACES)),
                        (f"{CANDIDATES} spread-out boxes", spread(CANDIDATES))):
        want = torchvision.ops.nms(dets[:, :4], dets[:, 4], NMS_THRESH)
        for name, fn in versions.items():   # every version agrees before anything is timed
            if not torch.equal(fn(dets, NMS_THRESH), want):
                raise AssertionError(f"{name} disagrees with torchvision on {label}")
        times = best_times({name: lambda fn=fn: fn(dets, NMS_THRESH) for name, fn in versions.items()}, repeats)
        print(f"NMS, {label}, IoU {NMS_THRESH}: {len(want)} kept")
        report(times, "torchvision.ops.nms")


def report(times: dict[str, float], baseline: str) -> None:
    """One line per version: best time and its ratio to ``baseline``."""
    for name, seconds in times.items():
        print(f"  {name:<34} {seconds * 1e3:8.2f} ms   {seconds / times[baseline]:6.2f} x {baseline}")


def public_style_match(threshold, truths, priors, variances, labels, landms, force_min_iou, encode,
                       encode_landm):
    """One image, written as the public match is: IoU matrix, best anchor per face, then a Python loop
    over the faces to force their anchors (only faces above the floor, the kit's rule)."""
    anchors = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)
    overlaps = torchvision.ops.box_iou(truths, anchors)                       # [F, P]
    best_prior_overlap, best_prior_idx = overlaps.max(dim=1)
    best_truth_overlap, best_truth_idx = overlaps.max(dim=0)
    valid = best_prior_overlap >= force_min_iou
    best_truth_overlap.index_fill_(0, best_prior_idx[valid], 2.0)
    for j in range(best_prior_idx.size(0)):
        if valid[j]:
            best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx].long()
    conf[best_truth_overlap < threshold] = 0
    return (encode(truths[best_truth_idx], priors, variances), conf,
            encode_landm(landms[best_truth_idx], priors, variances))


def match_inputs(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    truths, landms, labels = [], [], []
    for _ in range(MATCH_BATCH):
        n = int(torch.randint(1, MAX_FACES + 1, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 0.9
        side = (8 + torch.rand(n, 1, generator=g) * 100) / MATCH_IMAGE
        truths.append(torch.cat([xy, (xy + side).clamp(max=1.0)], dim=1))
        landms.append(xy.repeat(1, 5) + torch.rand(n, 10, generator=g) * side)
        labels.append(torch.where(torch.rand(n, generator=g) < 0.8, 1.0, -1.0))
    return truths, landms, labels


def bench_match(nb, repeats: int) -> None:
    priors = load_notebook(SOLUTIONS / "3_anchors.ipynb").PriorBox(cfg_mnet, (MATCH_IMAGE, MATCH_IMAGE)).forward()
    truths, landms, labels = match_inputs()
    thresh, variances, force = cfg_mnet["overlap_thresh"], cfg_mnet["variance"], cfg_mnet["force_match_min_iou"]

    def per_image(match):
        out = [match(thresh, t, priors, variances, c, lm, force) for t, lm, c in zip(truths, landms, labels)]
        return tuple(torch.stack(parts) for parts in zip(*out))

    targets = [torch.cat([t, lm, c[:, None]], dim=1) for t, lm, c in zip(truths, landms, labels)]
    public = "public-style match per image"
    versions = {
        public: lambda: per_image(lambda *a: public_style_match(*a, nb.encode, nb.encode_landm)),
        "solution match per image": lambda: per_image(nb.match),
        "solution match_batch": lambda: nb.match_batch(thresh, targets, priors, variances, force),
    }
    results = {name: fn() for name, fn in versions.items()}   # they agree before anything is timed
    want = results["solution match per image"]
    for a, b in zip(results[public], want):   # torchvision's box_iou may round differently
        torch.testing.assert_close(a, b, msg="the public-style match disagrees with the solution's match")
    if not all(torch.equal(a, b) for a, b in zip(results["solution match_batch"], want)):
        raise AssertionError("match_batch differs from the solution's match per image")
    times = best_times(versions, repeats)
    print(f"match, {MATCH_BATCH} crops of {MATCH_IMAGE} px with 1 to {MAX_FACES} faces, {len(priors)} anchors:")
    report(times, public)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, 1 thread")
    nb = load_notebook(SOLUTIONS / "4_matching_nms.ipynb")
    bench_nms(nb, args.repeats)
    bench_match(nb, args.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
