"""Throughput of the data layer, each beside a straightforward per-image baseline in the same run.

1. Generation of the embedded dataset: ``data.synthetic`` with its worker processes, against a
   plain loop that makes and writes the same pictures one by one in this process (OpenCV left
   at its default threading). The target is >= 20 images/s on 2 cores.
2. Loading + training augmentation: ``WiderFaceDataset`` + ``TrainAugment`` through a
   ``DataLoader`` with 2 workers, against a per-image loop with the textbook augmentation
   (float32 arithmetic for every photometric step, as the public RetinaFace ``preproc`` does).

    python -m bench.data [--images 120] [--size 640] [--image-size 640] [--workers 2]

Each timing is the best of ``REPEATS`` runs.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.timing import best_time
from data.augment import BGR_MEAN, TrainAugment
from data.backgrounds import BackgroundBank
from data.synthetic import generate_split, make_picture
from data.widerface import WiderFaceDataset, detection_collate

GENERATION_TARGET = 20.0  # images/s on 2 cores
BATCH_SIZE = 8
REPEATS = 2


def baseline_generation(out: Path, count: int, size: int) -> None:
    """Make and write pictures one after another in this process."""
    bank = BackgroundBank(noise_size=size + 256)
    for index in range(count):
        event, name, jpeg, _, _ = make_picture(bank, 0, "train", index, size)
        path = out / event / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)


def textbook_augment(image: np.ndarray, targets: np.ndarray, rng: np.random.Generator, size: int):
    """The per-image baseline: crop, float32 photometric steps, mirror, resize, mean."""
    height, width = image.shape[:2]
    side = int(min(height, width) * rng.choice([0.3, 0.45, 0.6, 0.8, 1.0]))
    x0, y0 = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
    image = image[y0:y0 + side, x0:x0 + side].astype(np.float32)
    image += rng.uniform(-32, 32)
    image = np.clip(image, 0, 255) * rng.uniform(0.5, 1.5)
    hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] *= rng.uniform(0.5, 1.5)
    hsv[..., 0] = (hsv[..., 0] + rng.integers(-18, 19)) % 180
    image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = cv2.resize(image, (size, size)).astype(np.float32) - np.array(BGR_MEAN, np.float32)
    return torch.from_numpy(image.transpose(2, 0, 1).copy()), torch.from_numpy(targets)


def baseline_loading(root: Path, size: int, count: int) -> int:
    entries = WiderFaceDataset(root, "train")
    rng = np.random.default_rng(0)
    batch = []
    for i in range(count):
        image = cv2.imread(str(entries.image_path(i)))
        batch.append(textbook_augment(image, entries.targets[i], rng, size))
        if len(batch) == BATCH_SIZE:
            detection_collate(batch)
            batch = []
    return count


def kit_loading(root: Path, size: int, workers: int, epochs: int) -> int:
    dataset = WiderFaceDataset(root, "train", transform=TrainAugment(size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers,
                                         collate_fn=detection_collate, persistent_workers=workers > 0)
    seen = 0
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for images, _ in loader:
            seen += images.shape[0]
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=640, help="long side of generated pictures")
    parser.add_argument("--image-size", type=int, default=640, help="training crop size")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{torch.get_num_threads()} torch thread, {args.workers} workers, {args.images} pictures "
          f"of long side {args.size}, cores visible: {len(__import__('os').sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gen_s, _ = best_time(lambda: generate_split(root, "train", args.images, args.size, 0, args.workers), REPEATS)
        base_s, _ = best_time(lambda: baseline_generation(root / "baseline", args.images, args.size), REPEATS)
        gen_rate, base_rate = args.images / gen_s, args.images / base_s
        verdict = "meets" if gen_rate >= GENERATION_TARGET else "MISSES"
        print(f"generation   data.synthetic ({args.workers} workers) {gen_rate:7.1f} images/s   "
              f"per-image loop {base_rate:7.1f} images/s   ratio {gen_rate / base_rate:5.2f}x   "
              f"({verdict} the {GENERATION_TARGET:.0f} images/s target)")
        epochs = 2
        kit_s, seen = best_time(lambda: kit_loading(root, args.image_size, args.workers, epochs), REPEATS)
        loop_s, loop_seen = best_time(lambda: baseline_loading(root, args.image_size, args.images), REPEATS)
        kit_rate, loop_rate = seen / kit_s, loop_seen / loop_s
        print(f"load+augment DataLoader ({args.workers} workers)      {kit_rate:7.1f} images/s   "
              f"per-image loop {loop_rate:7.1f} images/s   ratio {kit_rate / loop_rate:5.2f}x   "
              f"(crops of {args.image_size} px, {epochs} epochs incl. worker start)")


if __name__ == "__main__":
    main()
