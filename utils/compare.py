"""Compare the homeworks' detectors on the same data with the same budget: a table, PR curves, speed.

    python -m utils.compare [--models retinaface,dsfd,...] [--data outputs/data] [--out outputs/compare]
        [--iterations 300] [--batch-size 8] [--image-size 320] [--device cpu] [--impl solutions]

Every model registered in ``utils.detectors.ADAPTERS`` (or those named) trains its CPU lite config
from scratch on ``DATA/train`` for the same number of iterations, batch size and crop size, with its
own optimiser recipe (the optimiser, learning rate, schedule and memory format of its adapter's
``DEMO``), then detects every ``DATA/val`` image at its original size. Written to ``--out``:
``comparison.md`` (AP easy / medium / hard with the WIDER protocol, parameters, training and detection
images/s), ``comparison.json`` and ``pr_curves.png`` (one panel per setting, one curve per model).
Training runs resume when rerun.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from data.widerface import WiderFaceDataset  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.detectors import ADAPTERS, UserError, adapter, config, load_detector  # noqa: E402
from utils.experiment import check_dataset, detect_split, score_detections, train_detector  # noqa: E402
from utils.training.config import TrainConfig  # noqa: E402

SUBSETS = ("easy", "medium", "hard")
# Shared budget (overridable): the same for every model.
DEFAULT_ITERATIONS, DEFAULT_BATCH, DEFAULT_CROP = 300, 8, 320
RECIPE_KEYS = ("lr", "momentum", "weight_decay", "optimizer", "schedule", "warmup_iterations",
               "warmup_ratio", "min_lr_ratio", "clip_grad_norm",
               "channels_last")   # each model's own, from its DEMO (memory format: its fastest on the CPU)


@dataclass
class Row:
    model: str
    cfg: str
    parameters: int
    train_images_per_s: float
    detect_images_per_s: float
    ap: dict[str, float]


def train_config(model: str, iterations: int, batch_size: int, out_dir: Path, device: str) -> TrainConfig:
    recipe = {k: v for k, v in adapter(model).DEMO.items() if k in RECIPE_KEYS}
    return TrainConfig(**recipe, max_iterations=iterations, batch_size=batch_size, seed=0, device=device,
                       num_workers=1, out_dir=str(out_dir), ckpt_every=max(1, iterations // 4), keep_last=1,
                       resume="auto" if (out_dir / "checkpoints").is_dir() else None, log_every=50)


def compare_one(model: str, data: Path, out: Path, iterations: int, batch_size: int, crop: int,
                device: str, impl: str) -> tuple[Row, dict]:
    """Train and evaluate one model; returns its row and its PR curves."""
    lite = adapter(model).LITE
    cfg = config(model, lite, image_size=crop)
    settings = train_config(model, iterations, batch_size, out / model / "train", device)
    started = time.monotonic()
    result = train_detector(model, cfg, data, settings, impl)
    train_seconds = time.monotonic() - started
    net = result.model.eval()
    detector = load_detector(model, net, cfg, impl, device=device)
    started = time.monotonic()
    detections = detect_split(detector, data)
    detect_seconds = time.monotonic() - started
    wider = score_detections(detections, data, out / model / "predictions")
    row = Row(model, lite, sum(p.numel() for p in net.parameters()),
              iterations * batch_size / max(train_seconds, 1e-9), len(detections) / max(detect_seconds, 1e-9),
              {k: float(wider.ap[k]) for k in SUBSETS})
    return row, wider.curves


def plot_curves(curves: dict[str, dict], rows: list[Row], path: Path) -> None:
    fig, axes = plt.subplots(1, len(SUBSETS), figsize=(4.2 * len(SUBSETS), 4), sharey=True)
    for ax, subset in zip(axes, SUBSETS):
        for row in rows:
            precision, recall = curves[row.model][subset]
            ax.plot(recall, precision, label=f"{row.model}: AP {row.ap[subset]:.3f}")
        ax.set_title(subset)
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[Row], iterations: int, batch_size: int, crop: int, val_images: int) -> str:
    lines = [f"# Detectors compared: {iterations} iterations x {batch_size} crops of {crop} px each, "
             f"{val_images} validation images", "",
             "| model | config | parameters | AP easy | AP medium | AP hard | train images/s | detect images/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.model} | {r.cfg} | {r.parameters / 1e6:.2f} M | {r.ap['easy']:.3f} | {r.ap['medium']:.3f} | "
              f"{r.ap['hard']:.3f} | {r.train_images_per_s:.1f} | {r.detect_images_per_s:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ADAPTERS), help="comma-separated (default: all)")
    parser.add_argument("--data", type=Path, default=Path("outputs/data"))
    parser.add_argument("--out", type=Path, default=Path("outputs/compare"))
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--image-size", type=int, default=DEFAULT_CROP)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--impl", default="solutions", help="'solutions' or a notebook folder")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ADAPTERS]
    if unknown or not models:
        raise UserError(f"--models {args.models}: unknown {', '.join(unknown) or '(none given)'}; "
                        f"registered: {', '.join(ADAPTERS)}")
    check_dataset(args.data, "train")
    check_dataset(args.data, "val")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for model in models:
        print(f"== {model}", flush=True)
        row, curves[model] = compare_one(model, args.data, args.out, args.iterations, args.batch_size,
                                         args.image_size, args.device, args.impl)
        rows.append(row)
        print(f"   AP easy {row.ap['easy']:.3f} medium {row.ap['medium']:.3f} hard {row.ap['hard']:.3f}; "
              f"{row.train_images_per_s:.1f} train images/s, {row.detect_images_per_s:.1f} detect images/s")
    text = table(rows, args.iterations, args.batch_size, args.image_size, len(WiderFaceDataset(args.data, "val")))
    (args.out / "comparison.md").write_text(text)
    (args.out / "comparison.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    plot_curves(curves, rows, args.out / "pr_curves.png")
    print(text)
    print(f"wrote {args.out / 'comparison.md'}, comparison.json and pr_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
