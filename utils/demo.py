"""The kit's main job (``make demo``): train a homework's solution detector (RetinaFace by default)
on the embedded dataset, on the CPU, and report its WIDER FACE AP.

    python -m utils.demo [--model retinaface|dsfd|...] [--out outputs/demo] [--data outputs/data]
        [--iterations N] [--threads 2] [--fresh]

1. the embedded dataset is generated into ``--data`` unless it is already there;
2. dataset figures: face heights, face-centre heatmap, the first training images with their faces;
3. the model's CPU lite config (MobileNet-0.25 for RetinaFace; the solutions' notebook code) trains
   from scratch (``utils.experiment.train_detector``: the adapter's ``init_from_scratch`` where it
   has one) with the budget of its adapter (``DEMO`` in ``utils/detectors/<model>.py``); an
   interrupted run resumes from its last checkpoint when started again;
4. loss curves (every 20 iterations), then every validation image is detected at its original
   size and scored with the official WIDER protocol: PR curves and AP easy / medium / hard;
5. detections drawn on validation images, and ``summary.md`` with the figures and the AP.

Reproducibility: on one machine, a run is bit-for-bit repeatable for a given number of torch
threads (``--threads``, default ``DEMO_THREADS``: the reference machine's 2, whatever the number of
cores): data generation, the data order, the augmentation and the initialisation are seeded and
independent of the DataLoader workers, but the CPU kernels' float reductions are split per thread
and per instruction set, so another thread count, or another CPU (AVX2 vs AVX-512 oneDNN kernels),
trains different weights. ``summary.md`` records the seed, the threads and the CPU capability.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from data.synthetic import generate
from data.widerface import WiderFaceDataset, load_image
from utils.cli import run
from utils.detectors import ADAPTERS, adapter, config as model_config, load_detector
from utils.experiment import GROUND_TRUTH, evaluate_detector, train_detector
from utils.training.config import TrainConfig
from utils.viz import draw_detections, plot_loss_curves, plot_pr_curves, show_images

TRAIN_IMAGES, VAL_IMAGES = 800, 200   # embedded dataset generated when --data has none
SHOWN_IMAGES = 4                      # images drawn in the dataset and detection figures
SHOWN_SCORE = 0.5                     # detections drawn on the validation images score at least this
# The run's settings beside each model's own budget (its adapter's DEMO: iterations, batch, lr, crop).
DEMO_RUN = dict(num_workers=1, seed=0, device="cpu", ckpt_every=100, keep_last=2, log_every=50)
# torch intra-op threads of the training and evaluation: the README's APs were measured with 2 (the
# reference machine's 2 cores); the losses and the AP change with this number (see the docstring).
DEMO_THREADS = 2


def machine_line() -> str:
    """The settings a run's numbers depend on beyond the seed: threads, CPU kernels, versions."""
    return (f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}")


def _step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def ensure_dataset(root: Path, train: int, val: int) -> None:
    if (root / "train" / "label.txt").is_file() and (root / GROUND_TRUTH).is_dir():
        print(f"using the dataset in {root}")
        return
    print(f"generating the embedded dataset ({train} training and {val} validation images) in {root}")
    summary = generate(root, train, val, workers=2)
    for split, counts in summary.items():
        print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def dataset_figures(root: Path, out: Path) -> dict:
    """Face-height histogram, centre heatmap and the first training images; returns statistics."""
    train = WiderFaceDataset(root, "train")
    boxes = [t[:, :4] for t in train.targets]
    sizes = np.array([load_image(train.image_path(i)).shape[:2] for i in range(len(train))], dtype=float)
    all_boxes = np.concatenate(boxes)
    heights = all_boxes[:, 3] - all_boxes[:, 1]
    widths = all_boxes[:, 2] - all_boxes[:, 0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.hist(heights, bins=np.geomspace(max(1.0, heights.min()), heights.max(), 40))
    ax1.set_xscale("log")
    ax1.set_xlabel("face height (px)")
    ax1.set_ylabel("faces")
    ax1.set_title(f"{len(heights)} training faces, mean {widths.mean():.0f} x {heights.mean():.0f} px")
    centres_x = np.concatenate([(b[:, 0] + b[:, 2]) / 2 / s[1] for b, s in zip(boxes, sizes)])
    centres_y = np.concatenate([(b[:, 1] + b[:, 3]) / 2 / s[0] for b, s in zip(boxes, sizes)])
    heat, _, _ = np.histogram2d(centres_y, centres_x, bins=32, range=[[0, 1], [0, 1]])
    ax2.imshow(heat, extent=(0, 1, 1, 0), cmap="magma")
    ax2.set_title("face centres (normalised)")
    fig.tight_layout()
    fig.savefig(out / "dataset_statistics.png", dpi=110)
    plt.close(fig)
    drawn = []
    for i in range(min(SHOWN_IMAGES, len(train))):
        target = train.targets[i]
        landmarks = np.where(target[:, 14:15] > 0, target[:, 4:14], -1.0)
        drawn.append(draw_detections(load_image(train.image_path(i)), target[:, :4], landmarks, thickness=1))
    plt.close(show_images(drawn, [train.image_path(i).name for i in range(len(drawn))],
                          path=out / "dataset_examples.png"))
    return {"images": len(train), "faces": len(heights), "mean_width": float(widths.mean()),
            "mean_height": float(heights.mean()), "under_32px": float((heights < 32).mean())}


def detection_figure(detector, root: Path, out: Path) -> None:
    val = WiderFaceDataset(root, "val")
    drawn, titles = [], []
    for i in range(min(SHOWN_IMAGES, len(val))):
        image = load_image(val.image_path(i))
        found = detector.detect([image])[0].above(SHOWN_SCORE)
        drawn.append(draw_detections(image, found.boxes, found.landmarks, found.scores))
        titles.append(f"{val.image_path(i).name}: {len(found)} faces >= {SHOWN_SCORE}")
    plt.close(show_images(drawn, titles, path=out / "detections.png"))


def write_summary(out: Path, title: str, stats: dict, ap: dict, val_images: int, config: TrainConfig,
                  crop: int, checkpoint: str, timings: dict, command: str) -> Path:
    lines = [
        f"# Demo: {title} trained from scratch on the embedded dataset", "",
        "| setting | AP |", "|---|---|",
        *(f"| {subset} | {value:.4f} |" for subset, value in ap.items()), "",
        f"WIDER FACE protocol (`utils.evaluate`) on the {val_images} validation images at "
        f"their original size.", "",
        "## Data",
        f"{stats['images']} training images, {stats['faces']} faces, mean {stats['mean_width']:.1f} x "
        f"{stats['mean_height']:.1f} px, {100 * stats['under_32px']:.0f}% under 32 px tall.", "",
        "## Training",
        f"{config.max_iterations} iterations of {config.batch_size} crops of {crop} px, "
        f"{config.optimizer.upper()} lr {config.lr} ({config.schedule}, {config.warmup_iterations} "
        f"warmup), weight decay {config.weight_decay}, seed {config.seed}, "
        f"{config.num_workers} DataLoader worker(s).", "",
        "## Reproducibility",
        f"Seed {config.seed}, {torch.get_num_threads()} torch threads: the same command on the same "
        f"machine gives the same losses and AP (`{command}`); another thread count or CPU changes "
        f"the floating-point sums and so the weights and the AP.", "",
        "## Time", *(f"- {k}: {v:.0f} s" for k, v in timings.items()),
        f"- machine: {machine_line()}", "",
        "## Files",
        "dataset_statistics.png, dataset_examples.png, loss_curves.png, pr_curves.png, detections.png, "
        f"train/train_log.csv, train/checkpoints/, {checkpoint}, predictions/", "",
    ]
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="retinaface", choices=sorted(ADAPTERS))
    parser.add_argument("--out", type=Path, help="default: outputs/demo (retinaface), outputs/demo-<model>")
    parser.add_argument("--data", type=Path, default=Path("outputs/data"))
    parser.add_argument("--iterations", type=int, help="default: the model's demo budget")
    parser.add_argument("--threads", type=int, default=DEMO_THREADS,
                        help=f"torch threads (default {DEMO_THREADS}, the README's; 0: torch's default, "
                             f"one per core); the losses and AP depend on it")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier demo run's training")
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error("--threads must be 0 (torch's default) or a positive number")
    if args.threads:
        torch.set_num_threads(args.threads)
    module = adapter(args.model)
    budget = dict(module.DEMO)
    crop = budget.pop("image_size")
    if args.iterations:
        budget["max_iterations"] = args.iterations
    out = args.out or Path("outputs/demo" if args.model == "retinaface" else f"outputs/demo-{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    timings, started = {}, time.monotonic()
    command = (f"python -m utils.demo --model {args.model} --threads {torch.get_num_threads()} --fresh"
               + (f" --iterations {args.iterations}" if args.iterations else "")
               + (f" --data {args.data}" if args.data != Path("outputs/data") else ""))
    print(f"seed {DEMO_RUN['seed']}, {machine_line()}; reproduce with: {command}", flush=True)

    _step("1/5 data")
    ensure_dataset(args.data, TRAIN_IMAGES, VAL_IMAGES)
    stats = dataset_figures(args.data, out)
    timings["data"] = time.monotonic() - started

    title = f"{args.model} ({module.LITE})"
    _step(f"2/5 training ({title} from scratch, solutions' code)")
    train_dir = out / "train"
    if args.fresh and train_dir.exists():
        shutil.rmtree(train_dir)
    resume = "auto" if (train_dir / "checkpoints").is_dir() else None
    config = TrainConfig(**{**DEMO_RUN, **budget}, out_dir=str(train_dir), resume=resume)
    cfg = model_config(args.model, module.LITE, image_size=crop)
    t = time.monotonic()
    result = train_detector(args.model, cfg, args.data, config)
    timings["training"] = time.monotonic() - t
    checkpoint = f"{args.model}_{module.LITE}_demo.pt"
    torch.save(result.model.state_dict(), out / checkpoint)
    plt.close(plot_loss_curves(result.history_path, path=out / "loss_curves.png"))

    _step("3/5 evaluation on the validation set (WIDER FACE protocol)")
    t = time.monotonic()
    detector = load_detector(args.model, result.model.eval(), cfg)
    wider = evaluate_detector(detector, args.data, out)
    timings["evaluation"] = time.monotonic() - t
    plt.close(plot_pr_curves(wider.curves, wider.ap, path=out / "pr_curves.png"))

    _step("4/5 detections on validation images")
    detection_figure(detector, args.data, out)

    _step("5/5 summary")
    timings["total"] = time.monotonic() - started
    val_images = len(WiderFaceDataset(args.data, "val"))
    summary = write_summary(out, title, stats, wider.ap, val_images, config, crop, checkpoint, timings,
                            command)
    for subset, ap in wider.ap.items():
        print(f"{subset.capitalize()} AP: {ap:.4f}")
    print(f"wrote {summary} and the figures in {out}/ ({timings['total'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
