"""Seeded inputs for checking the WIDER FACE evaluation: ground truths and predictions made from them.

Used by ``tests/test_evaluate.py`` and ``bench/evaluate.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.wider_gt import WiderGroundTruth

SHARED_GT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wider_val_gt"
EASY_MIN_SIZE = 50      # generated ground truth: faces at least this tall are "easy" ...
MEDIUM_MIN_SIZE = 20    # ... this tall "medium"; every face of a non-"hard-ignored" image is "hard"
IMAGE_SIZE = 1024


def random_ground_truth(seed: int, events: int = 4, images: int = 12, max_faces: int = 30
                        ) -> WiderGroundTruth:
    """A generated ground truth with easy ⊂ medium ⊂ hard keeps, like the official one.

    Some images have no face, some faces overlap, and about 1 in 10 faces is ignored even in
    "hard" (as the official set ignores tiny or occluded ones).
    """
    rng = np.random.default_rng(seed)
    min_sizes = {"easy": EASY_MIN_SIZE, "medium": MEDIUM_MIN_SIZE, "hard": 0}
    names, image_names, boxes = [], [], []
    keep = {setting: [] for setting in min_sizes}
    for e in range(events):
        names.append(f"{e}--Event{e}")
        image_names.append([f"{e}_Event_{e}_{i}" for i in range(images)])
        per_image = []
        for _ in range(images):
            n = int(rng.integers(0, max_faces + 1)) if rng.random() > 0.1 else 0
            height = np.exp(rng.uniform(np.log(4), np.log(300), n)).round()
            xy = rng.uniform(0, IMAGE_SIZE - height[:, None], (n, 2)).round()
            per_image.append(np.column_stack([xy, (height * rng.uniform(0.7, 1.0, n)).round(), height]))
        boxes.append(per_image)
        for setting in min_sizes:
            keep[setting].append([])
        for b in per_image:
            not_ignored = rng.random(len(b)) > 0.1
            for setting, min_size in min_sizes.items():
                keep[setting][e].append(np.flatnonzero(not_ignored & (b[:, 3] >= min_size)) + 1)
    return WiderGroundTruth(names, image_names, boxes, keep)


def first_events(gt: WiderGroundTruth, count: int) -> WiderGroundTruth:
    """The ground truth restricted to its first ``count`` events."""
    return WiderGroundTruth(gt.events[:count], gt.images[:count], gt.boxes[:count],
                            {s: k[:count] for s, k in gt.keep.items()})


def predictions_from_gt(gt: WiderGroundTruth, seed: int, jitter: float = 0.15, drop: float = 0.1,
                        false_positives: float = 0.3, duplicates: float = 0.05,
                        integer_boxes: bool = True, score_decimals: int | None = 3,
                        shuffled_every: int | None = 3) -> dict[str, dict[str, np.ndarray]]:
    """Predictions ``{event: {image: [k, 5] (x, y, w, h, score)}}`` made from ``gt``'s faces.

    Each face is dropped with probability ``drop``, else predicted with corners moved by
    ``jitter`` x its size (Gaussian) and a random score (higher for smaller jitter); ``duplicates``
    of them are predicted twice; ``false_positives`` x faces random boxes are added. Integer boxes
    and rounded scores (as detectors write them) create the exact IoU and score ties the protocol
    must break as the official code does. Rows are in descending score order except in every
    ``shuffled_every``-th image, which stays shuffled (the official script, which does not sort,
    agrees with the protocol only when ``shuffled_every`` is None).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for e, event in enumerate(gt.events):
        per_image = out.setdefault(event, {})
        for i, name in enumerate(gt.images[e]):
            faces = gt.boxes[e][i]
            faces = faces[rng.random(len(faces)) >= drop]
            shift = rng.normal(0.0, jitter, (len(faces), 4)) * faces[:, [2, 3, 2, 3]]
            boxes = faces + shift
            quality = np.exp(-np.abs(shift).sum(1) / np.maximum(faces[:, 2:].sum(1), 1))
            scores = 0.5 * quality + 0.5 * rng.random(len(faces))
            again = rng.random(len(faces)) < duplicates
            boxes = np.concatenate([boxes, boxes[again] + rng.normal(0, 1, (again.sum(), 4))])
            scores = np.concatenate([scores, scores[again] * rng.uniform(0.5, 1.0, again.sum())])
            n_fp = rng.poisson(false_positives * max(len(gt.boxes[e][i]), 1))
            size = np.exp(rng.uniform(np.log(4), np.log(200), n_fp))
            fp = np.column_stack([rng.uniform(0, IMAGE_SIZE, (n_fp, 2)), size, size * 1.2])
            boxes = np.concatenate([boxes, fp])
            scores = np.concatenate([scores, rng.random(n_fp) * 0.7])
            if integer_boxes:
                boxes = np.round(boxes)
            if score_decimals is not None:
                scores = np.round(scores, score_decimals)
            shuffled = shuffled_every is not None and i % shuffled_every == shuffled_every - 1
            order = rng.permutation(len(scores)) if shuffled else np.argsort(-scores, kind="stable")
            per_image[name] = np.column_stack([boxes, scores])[order]
    return out
