"""The embedded dataset: WIDER-FACE-shaped pictures generated offline, deterministically.

    python -m data.synthetic --out outputs/data --train 800 --val 200 [--size 640] [--seed 0]
                             [--workers 2] [--distractors 1.0]

writes, exactly as WIDER FACE with the RetinaFace labels is laid out::

    OUT/train/images/<event>/<name>.jpg   OUT/train/label.txt
    OUT/val/images/<event>/<name>.jpg     OUT/val/label.txt
    OUT/val/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat

Pictures are painted by ``data/scene.py`` (people with 5 exact landmarks on photographic
backgrounds, with distractors and occluders). Picture ``i`` of a split depends only on
``(seed, split, i)``, so the same seed gives byte-identical files with any number of workers.

Annotation rules, in WIDER's spirit:

- a face is labelled when its box, clipped to the picture, is at least ``MIN_LABEL_HEIGHT`` px
  tall and ``MIN_LABEL_WIDTH`` wide, and at least ``MIN_LABEL_VISIBLE`` of it shows; its landmarks
  are given (flag 1) when its box is at least ``MIN_LANDMARK_SIZE`` px on its short side and all
  five lie inside the picture, else written as -1 (absent);
- evaluation subsets (nested by construction: every easy face is medium, every medium face hard):

  ====== ============ ============ ============== =========================================
  subset box height   visible      blur           other
  ====== ============ ============ ============== =========================================
  hard   >= 10 px     >= 30 %      any
  medium >= 25 px     >= 50 %      clear/normal
  easy   >= 50 px     >= 75 %      clear          |yaw| <= 60 deg, picture not under-exposed
  ====== ============ ============ ============== =========================================

  Labelled faces outside a subset are "ignore" faces for it, as in the official evaluation.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from data.backgrounds import BackgroundBank
from data.labels import ABSENT, PRESENT, TARGET_COLUMNS, write_labels
from data.scene import SceneFace, render_scene, sample_scene_kind
from data.wider_gt import SUBSETS, WiderGroundTruth, save_wider_gt

EVENTS = {"crowd": "0--Parade", "group": "1--Group", "portrait": "2--Interview", "street": "3--Street"}
SPLIT_SALT = {"train": 0, "val": 1}
MARKER = ".embedded_dataset"  # marks a split folder this generator may overwrite
MIN_LABEL_HEIGHT, MIN_LABEL_WIDTH = 6.0, 4.0
MIN_LABEL_VISIBLE = 0.2
MIN_LANDMARK_SIZE = 10.0
SUBSET_RULES = {  # subset: (min box height px, min visible fraction, max blur level)
    "hard": (10.0, 0.3, 2),
    "medium": (25.0, 0.5, 1),
    "easy": (50.0, 0.75, 0),
}
EASY_MAX_YAW_DEG = 60.0
JPEG_QUALITY = (80, 96)  # range of JPEG qualities drawn per picture
COORD_DECIMALS = 2
NOISE_MARGIN = 256  # noise tile this much larger than a picture, for varied windows


def face_subsets(height: float, face: SceneFace) -> dict[str, bool]:
    """Which evaluation subsets a labelled face (clipped box ``height`` px) belongs to."""
    member = {}
    for subset, (min_height, min_visible, max_blur) in SUBSET_RULES.items():
        member[subset] = height >= min_height and face.visible >= min_visible and face.blur <= max_blur
    member["easy"] &= abs(face.yaw_deg) <= EASY_MAX_YAW_DEG and not face.dark
    return member


def annotate(faces: list[SceneFace], width: int, height: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label rows ``[n, 15]`` (pixels) for the faces worth labelling, and per subset a bool ``[n]``."""
    rows, members = [], {s: [] for s in SUBSETS}
    for face in faces:
        x1, y1, x2, y2 = face.box
        box = np.array([np.clip(x1, 0, width), np.clip(y1, 0, height),
                        np.clip(x2, 0, width), np.clip(y2, 0, height)])
        box_w, box_h = box[2] - box[0], box[3] - box[1]
        if box_h < MIN_LABEL_HEIGHT or box_w < MIN_LABEL_WIDTH or face.visible < MIN_LABEL_VISIBLE:
            continue
        row = np.full(TARGET_COLUMNS, ABSENT, np.float64)
        row[:4] = box
        lm = face.landmarks
        inside = (lm[:, 0] >= 0).all() and (lm[:, 0] < width).all() and \
            (lm[:, 1] >= 0).all() and (lm[:, 1] < height).all()
        if min(x2 - x1, y2 - y1) >= MIN_LANDMARK_SIZE and inside:
            row[4:14] = lm.reshape(-1)
            row[14] = PRESENT
        rows.append(np.round(row, COORD_DECIMALS))
        for subset, member in face_subsets(box_h, face).items():
            members[subset].append(member)
    targets = np.array(rows, np.float32).reshape(-1, TARGET_COLUMNS)
    return targets, {s: np.array(m, bool) for s, m in members.items()}


def image_name(split: str, index: int, kind: str) -> tuple[str, str]:
    """``(event, name without extension)`` of picture ``index``, WIDER style."""
    event = EVENTS[kind]
    number, title = event.split("--")
    return event, f"{number}_{title}_synthetic_{split}_{index}"


@contextmanager
def _single_threaded_opencv():
    """One OpenCV thread: far faster for many small images, and the same on every machine."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def make_picture(bank: BackgroundBank, seed: int, split: str, index: int, long_side: int,
                 distractors: float = 1.0):
    """Picture ``index`` of ``split``: (event, name, JPEG bytes, targets [n, 15], subsets)."""
    rng = np.random.default_rng((seed, SPLIT_SALT[split], index))
    kind = sample_scene_kind(rng)
    image, faces = render_scene(rng, long_side, bank, kind, distractors)
    targets, subsets = annotate(faces, image.shape[1], image.shape[0])
    quality = int(rng.integers(*JPEG_QUALITY))
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for picture {index} of {split}")
    event, name = image_name(split, index, kind)
    return event, name, jpeg.tobytes(), targets, subsets


def _make_share(args):
    """Worker: pictures ``indices`` of one split, written under ``images_dir``; returns
    ``[(index, event, name, targets, subsets)]``."""
    seed, split, indices, long_side, distractors, images_dir = args
    with _single_threaded_opencv():
        bank = BackgroundBank(noise_size=long_side + NOISE_MARGIN)
        out = []
        for index in indices:
            event, name, jpeg, targets, subsets = make_picture(bank, seed, split, index, long_side,
                                                               distractors)
            path = Path(images_dir) / event / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
            out.append((index, event, name, targets, subsets))
    return out


def _prepare(split_dir: Path) -> None:
    if split_dir.exists():
        if not (split_dir / MARKER).is_file() and any(split_dir.iterdir()):
            raise FileExistsError(f"{split_dir} exists and was not made by data.synthetic; "
                                  f"choose another --out (it is never overwritten)")
        shutil.rmtree(split_dir)
    split_dir.mkdir(parents=True)
    (split_dir / MARKER).write_text("made by python -m data.synthetic; safe to delete\n")


def generate_split(out: str | Path, split: str, count: int, long_side: int = 640, seed: int = 0,
                   workers: int = 1, distractors: float = 1.0) -> list[tuple]:
    """Write ``out/<split>/images`` and ``label.txt``; returns per picture
    ``(event, name, targets [n, 15], {subset: bool [n]})``."""
    if split not in SPLIT_SALT:
        raise ValueError(f"split must be one of {tuple(SPLIT_SALT)}, got {split!r}")
    if count < 0 or long_side < 64 or distractors < 0:
        raise ValueError(f"need count >= 0, size >= 64 and distractors >= 0; got count={count}, "
                         f"size={long_side}, distractors={distractors}")
    split_dir = Path(out) / split
    _prepare(split_dir)
    # Worker k makes pictures k, k + workers, ...: one background bank per process, and the
    # interleaving spreads crowds and portraits evenly over the workers.
    workers = max(1, min(workers, count))
    jobs = [(seed, split, range(k, count, workers), long_side, distractors, str(split_dir / "images"))
            for k in range(workers)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            shares = list(pool.map(_make_share, jobs))
    else:
        shares = [_make_share(job) for job in jobs]
    results = [r[1:] for r in sorted((r for share in shares for r in share), key=lambda r: r[0])]
    write_labels(split_dir / "label.txt", [(f"{e}/{n}.jpg", t) for e, n, t, _ in results])
    return results


def write_ground_truth(results, gt_dir: str | Path) -> None:
    """The val split's official-format ground truth (boxes x, y, w, h; 1-based kept indices)."""
    events = sorted({event for event, *_ in results})
    images = {e: [] for e in events}
    boxes = {e: [] for e in events}
    keep = {s: {e: [] for e in events} for s in SUBSETS}
    for event, name, targets, subsets in results:
        images[event].append(name)
        xywh = np.concatenate([targets[:, :2], targets[:, 2:4] - targets[:, :2]], axis=1)
        boxes[event].append(xywh.astype(np.float64))
        for s in SUBSETS:
            keep[s][event].append(np.flatnonzero(subsets[s]) + 1)
    gt = WiderGroundTruth(events, [images[e] for e in events], [boxes[e] for e in events],
                          {s: [keep[s][e] for e in events] for s in SUBSETS})
    save_wider_gt(gt, gt_dir)


def generate(out: str | Path, train: int, val: int, long_side: int = 640, seed: int = 0,
             workers: int = 1, distractors: float = 1.0) -> dict:
    """Write the whole embedded dataset under ``out``; returns counts for a summary."""
    summary = {}
    for split, count in (("train", train), ("val", val)):
        results = generate_split(out, split, count, long_side, seed, workers, distractors)
        if split == "val":
            write_ground_truth(results, Path(out) / "val" / "ground_truth")
        summary[split] = {"images": count, "faces": sum(len(r[2]) for r in results),
                          **{s: int(sum(r[3][s].sum() for r in results)) for s in SUBSETS}}
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the embedded WIDER-FACE-like dataset")
    parser.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    parser.add_argument("--train", type=int, default=800, help="training pictures")
    parser.add_argument("--val", type=int, default=200, help="validation pictures")
    parser.add_argument("--size", type=int, default=640, help="long side of every picture, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes (the output does not depend on it)")
    parser.add_argument("--distractors", type=float, default=1.0,
                        help="scale of the number of non-face distractors per picture (0: none)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = generate(args.out, args.train, args.val, args.size, args.seed, args.workers,
                       args.distractors)
    seconds = time.perf_counter() - start
    for split, counts in summary.items():
        print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    total = args.train + args.val
    print(f"wrote {args.out} in {seconds:.1f} s ({total / max(seconds, 1e-9):.1f} images/s)")


if __name__ == "__main__":
    main()
