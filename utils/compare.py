"""Compare face detectors on the same data with the kit's WIDER protocol: real baselines as they are,
or the homeworks' detectors trained from scratch on one budget.

    python -m utils.compare [--split val] [--data outputs/data] [--out outputs/compare]
        [--models retinaface,dsfd,tinaface,rfcn] [--demo-root outputs] [--public-weights PATH]
        [--threads N] [--device cpu] [--impl solutions]
    python -m utils.compare --iterations 300 [--models retinaface,dsfd,...] [--batch-size 8]
        [--image-size 320] [--data outputs/data] [--out outputs/compare] [--device cpu] [--impl solutions]

**Baselines** (default). Every image of ``DATA/<split>`` is detected alone at its original size and
scored against ``DATA/<split>/ground_truth`` with ``utils.evaluate`` (the official WIDER FACE rules:
IoU 0.5, the min-max score normalisation over all predictions, 1000 thresholds, AP easy / medium /
hard). Detectors, each skipped with a one-line reason when it cannot run here:

1. ``haar``: OpenCV's Viola-Jones cascade ``haarcascade_frontalface_default.xml`` from
   ``cv2.data.haarcascades`` of the installed opencv wheel, ``cv2.CascadeClassifier.detectMultiScale3``
   on the histogram-equalised grayscale image (scale factor 1.1, minNeighbors 3, the cascade's 24 x 24 window as the
   smallest face, ``outputRejectLevels=True``). Score of a detection: its ``levelWeights`` entry,
   the summed weak-classifier votes of the last stage the window reached (higher is more face-like;
   unbounded, the protocol's min-max normalisation maps all of them to [0, 1] together). OpenCV 5
   moved the cascades out of the main package (no ``cv2.CascadeClassifier``, no XML files in
   ``cv2.data``): with ``opencv-python-headless>=5`` this baseline is skipped, with ``<5`` it runs.
2. ``retinaface-public``: the public Pytorch_Retinaface MobileNet-0.25 checkpoint
   (``--public-weights``, default ``../shared/data/checkpoints/retinaface_mobilenet0.25.pth``) loaded
   as it is into the kit's RetinaFace ``mobilenet0.25`` model (``utils.detectors.load_model``, the
   solutions' notebook code, as ``utils.detect --weights`` does), with the kit's post-processing
   (conf 0.02, NMS 0.4, the public test script's values).
3. ``<model>-demo`` for each model of ``--models``: the checkpoint that ``make demo MODEL=<model>``
   writes (``DEMO_ROOT/demo[-<model>]/<model>_<lite cfg>_demo.pt``), in its lite config.
4. ``mtcnn``: facenet-pytorch's MTCNN with the P/R/O-Net weights its wheel ships, package defaults
   (min face 20 px, thresholds 0.6 / 0.7 / 0.7), its face probability as the score; only when
   ``facenet_pytorch`` imports. Its only release (2.6.0) pins torch < 2.3 and numpy < 2, so the kit
   does not require it; ``pip install --no-deps facenet-pytorch`` adds it without touching torch
   (it runs with the kit's torch 2.14 / numpy 2).

Written to ``--out``: ``baselines.md`` (the table: AP easy / medium / hard, detection images/s
over the split, timed without model loading or image decoding, and parameters; then the skipped
detectors), ``baselines.json`` and ``baselines_pr_curves.png`` (one panel per setting, one curve per
detector), and each detector's submission files under ``<name>/predictions/``. The APs are
deterministic for a given machine and library versions (no randomness at detection time); images/s
is a timing and varies from run to run.

**Training** (``--iterations N``). Every model of ``--models`` trains its CPU lite config from
scratch on ``DATA/train`` for the same number of iterations, batch size and crop size, with its own
optimiser recipe (the optimiser, learning rate, schedule and memory format of its adapter's
``DEMO``), then detects every ``DATA/val`` image at its original size. Written to ``--out``:
``comparison.md`` (AP easy / medium / hard with the WIDER protocol, parameters, training and detection
images/s), ``comparison.json`` and ``pr_curves.png`` (one panel per setting, one curve per model).
Training runs resume when rerun.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import shutil
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from data.widerface import WiderFaceDataset, load_image  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.detectors import ADAPTERS, UserError, adapter, config, load_detector, load_model  # noqa: E402
from utils.evaluate import WiderResult, evaluate, read_predictions  # noqa: E402
from utils.experiment import check_dataset, detect_split, score_detections, train_detector  # noqa: E402
from utils.inference import Detections  # noqa: E402
from utils.training.config import TrainConfig  # noqa: E402
from utils.wider_predictions import write_predictions  # noqa: E402

SUBSETS = ("easy", "medium", "hard")
# Shared budget (overridable): the same for every model.
DEFAULT_ITERATIONS, DEFAULT_BATCH, DEFAULT_CROP = 300, 8, 320
RECIPE_KEYS = ("lr", "momentum", "weight_decay", "optimizer", "schedule", "warmup_iterations",
               "warmup_ratio", "min_lr_ratio", "clip_grad_norm",
               "channels_last")   # each model's own, from its DEMO (memory format: its fastest on the CPU)

# -- baselines -------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLIC_WEIGHTS = REPO_ROOT.parent / "shared" / "data" / "checkpoints" / "retinaface_mobilenet0.25.pth"
PUBLIC_CFG = "mobilenet0.25"
HAAR_XML = "haarcascade_frontalface_default.xml"
HAAR_SCALE, HAAR_NEIGHBOURS = 1.1, 3      # OpenCV's defaults of detectMultiScale
BASELINE_FILES = ("baselines.md", "baselines.json", "baselines_pr_curves.png")


@dataclass
class Row:
    model: str
    cfg: str
    parameters: int
    train_images_per_s: float
    detect_images_per_s: float
    ap: dict[str, float]


@dataclass
class BaselineRow:
    name: str                 # haar, retinaface-public, <model>-demo, mtcnn
    weights: str              # where the detector's weights came from
    parameters: str           # a count, or what a cascade has instead
    images_per_s: float       # detection only: no model loading, no image decoding
    ap: dict[str, float]
    notes: list[str] = field(default_factory=list)   # the evaluation's warnings


class Skip(Exception):
    """A detector that cannot run here; the message is its one-line reason."""


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade; ``.detect(images) -> list[Detections]``."""

    def __init__(self, xml: str | Path) -> None:
        self.cascade = cv2.CascadeClassifier(str(xml))
        if self.cascade.empty():
            raise Skip(f"haar: OpenCV could not read the cascade {xml}")

    def detect(self, images) -> list[Detections]:
        found = []
        for image in images:
            gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
            boxes, _levels, weights = self.cascade.detectMultiScale3(
                gray, scaleFactor=HAAR_SCALE, minNeighbors=HAAR_NEIGHBOURS, outputRejectLevels=True)
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(weights, dtype=np.float32).reshape(-1)
            order = np.argsort(-scores, kind="stable")
            corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)[order]
            found.append(Detections(corners, scores[order], None))
        return found


def haar_baseline() -> tuple[HaarDetector, str, str]:
    """The cascade from the installed opencv wheel, or Skip saying what is missing."""
    version = cv2.__version__
    folder = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
    xml = folder / HAAR_XML
    missing = [what for what, absent in (("cv2.CascadeClassifier", not hasattr(cv2, "CascadeClassifier")),
                                          (f"{HAAR_XML} in cv2.data.haarcascades", not xml.is_file()))
               if absent]
    if missing:
        raise Skip(f"haar: skipped, the installed OpenCV {version} has no {' and no '.join(missing)} "
                   f"(OpenCV 5 moved the cascades out of the main package; "
                   f"`pip install \"opencv-python-headless<5\"` brings them)")
    stages = ET.parse(xml).getroot().find("cascade/stages")
    stumps = sum(len(stage.find("weakClassifiers")) for stage in stages)
    return HaarDetector(xml), f"{HAAR_XML} (OpenCV {version})", f"{stumps} stumps, {len(stages)} stages"


class MtcnnDetector:
    """facenet-pytorch's MTCNN (RGB input); boxes (x1, y1, x2, y2) and face probabilities."""

    def __init__(self, mtcnn) -> None:
        self.mtcnn = mtcnn

    def detect(self, images) -> list[Detections]:
        found = []
        for image in images:
            boxes, probs = self.mtcnn.detect(np.ascontiguousarray(image[:, :, ::-1]))
            if boxes is None:
                found.append(Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None))
                continue
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(probs, dtype=np.float32).reshape(-1)
            order = np.argsort(-scores, kind="stable")
            found.append(Detections(boxes[order], scores[order], None))
        return found


def mtcnn_baseline(device: str) -> tuple[MtcnnDetector, str, str]:
    try:
        facenet = importlib.import_module("facenet_pytorch")
    except ImportError:
        raise Skip("mtcnn: skipped, facenet-pytorch is not installed (its only release, 2.6.0, ships the "
                   "P/R/O-Net weights but pins torch<2.3 and numpy<2; `pip install --no-deps "
                   "facenet-pytorch` adds it without changing torch)") from None
    mtcnn = facenet.MTCNN(keep_all=True, device=device)
    parameters = sum(p.numel() for p in mtcnn.parameters())
    version = getattr(facenet, "__version__", None) or importlib.metadata.version("facenet-pytorch")
    return MtcnnDetector(mtcnn), f"facenet-pytorch {version} (pnet/rnet/onet.pt)", f"{parameters / 1e6:.3f} M"


def public_retinaface(weights: Path, impl: str, device: str):
    if not Path(weights).is_file():
        raise Skip(f"retinaface-public: skipped, {weights} not found (the public Pytorch_Retinaface "
                   f"MobileNet-0.25 checkpoint; --public-weights PATH)")
    net = load_model("retinaface", PUBLIC_CFG, impl, weights, device)
    detector = load_detector("retinaface", net, PUBLIC_CFG, impl, device=device)
    return detector, f"{Path(weights).name} (cfg {PUBLIC_CFG})", _count(net)


def demo_checkpoint(model: str, demo_root: Path) -> Path:
    """Where ``make demo MODEL=<model>`` (utils.demo) writes the trained weights."""
    module = adapter(model)
    folder = demo_root / ("demo" if model == "retinaface" else f"demo-{model}")
    return folder / f"{model}_{module.LITE}_demo.pt"


def demo_detector(model: str, demo_root: Path, impl: str, device: str):
    path = demo_checkpoint(model, demo_root)
    if not path.is_file():
        raise Skip(f"{model}-demo: skipped, {path} not found (run `make demo MODEL={model}`)")
    module = adapter(model)
    cfg = config(model, module.LITE, image_size=module.DEMO["image_size"])   # as utils.demo trained it
    net = load_model(model, cfg, impl, path, device)
    return load_detector(model, net, cfg, impl, device=device), f"{path} (cfg {module.LITE})", _count(net)


def _count(net: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in net.parameters()) / 1e6:.3f} M"


def load_split(data: Path, split: str) -> list[tuple[tuple[str, str], np.ndarray]]:
    dataset = WiderFaceDataset(data, split)
    return [(dataset.image_id(i), load_image(dataset.image_path(i))) for i in range(len(dataset))]


def score(detections: dict, ground_truth: Path, pred_dir: Path) -> WiderResult:
    """Write the official submission files ``pred_dir/EVENT/IMAGE.txt`` and score them."""
    if pred_dir.exists():
        shutil.rmtree(pred_dir)  # stale files of an earlier run would be scored too
    for (event, name), found in detections.items():
        write_predictions(pred_dir, event, name, found.wider_rows())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # kept in result.warnings (and baselines.json)
        return evaluate(read_predictions(pred_dir), ground_truth)


def run_baseline(name: str, detector, weights: str, parameters: str, images: list, ground_truth: Path,
                 out: Path) -> tuple[BaselineRow, dict]:
    detector.detect([images[0][1]])            # warm-up (lazy initialisation, caches), not timed
    started = time.perf_counter()
    with torch.inference_mode():
        detections = {key: detector.detect([image])[0] for key, image in images}
    seconds = time.perf_counter() - started
    wider = score(detections, ground_truth, out / name / "predictions")
    row = BaselineRow(name, weights, parameters, len(images) / max(seconds, 1e-9),
                      {k: float(wider.ap[k]) for k in SUBSETS}, wider.warnings)
    return row, wider.curves


def baselines(args: argparse.Namespace, models: list[str]) -> list[tuple[str, Callable]]:
    """(name, factory) in table order; a factory returns (detector, weights, parameters) or raises Skip."""
    entries = [("haar", haar_baseline),
               ("retinaface-public", lambda: public_retinaface(args.public_weights, args.impl, args.device))]
    entries += [(f"{m}-demo", lambda m=m: demo_detector(m, args.demo_root, args.impl, args.device)) for m in models]
    entries.append(("mtcnn", lambda: mtcnn_baseline(args.device)))
    return entries


def baseline_table(rows: list[BaselineRow], skipped: list[str], data: Path, split: str, images: int) -> str:
    lines = [f"# Face detectors on {data}/{split} ({images} images), WIDER FACE protocol (utils.evaluate)", "",
             "| detector | weights | parameters | AP easy | AP medium | AP hard | images/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.weights} | {r.parameters} | {r.ap['easy']:.4f} | {r.ap['medium']:.4f} | "
              f"{r.ap['hard']:.4f} | {r.images_per_s:.1f} |" for r in rows]
    lines += ["", f"Each image detected alone at its original size; images/s: detection only, "
              f"{torch.get_num_threads()} torch / {cv2.getNumThreads()} OpenCV threads."]
    if skipped:
        lines += ["", "Skipped:", *(f"- {message}" for message in skipped)]
    return "\n".join(lines) + "\n"


def plot_baselines(curves: dict[str, dict], rows: list[BaselineRow], path: Path) -> None:
    fig, axes = plt.subplots(1, len(SUBSETS), figsize=(4.4 * len(SUBSETS), 4.2), sharey=True)
    for ax, subset in zip(axes, SUBSETS):
        for row in rows:
            precision, recall = curves[row.name][subset]
            ax.plot(recall, precision, label=f"{row.name}: AP {row.ap[subset]:.3f}")
        ax.set_title(subset)
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if rows:
            ax.legend(loc="lower left", fontsize=7)
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare_baselines(args: argparse.Namespace, models: list[str]) -> int:
    ground_truth = args.data / args.split / "ground_truth"
    check_dataset(args.data, args.split)
    if not ground_truth.is_dir():
        raise UserError(f"--split {args.split}: {ground_truth} not found (only a split with WIDER ground "
                        f"truth can be scored; the embedded dataset has it for val)")
    images = load_split(args.data, args.split)
    if not images:
        raise UserError(f"--data {args.data}: no images in the {args.split} split")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves, skipped = [], {}, []
    for name, factory in baselines(args, models):
        try:
            detector, weights, parameters = factory()
        except Skip as reason:
            skipped.append(str(reason))
            print(str(reason), flush=True)
            continue
        print(f"== {name}: {weights}", flush=True)
        row, curves[name] = run_baseline(name, detector, weights, parameters, images, ground_truth, args.out)
        rows.append(row)
        print(f"   AP easy {row.ap['easy']:.4f} medium {row.ap['medium']:.4f} hard {row.ap['hard']:.4f}; "
              f"{row.images_per_s:.1f} images/s", flush=True)
    text = baseline_table(rows, skipped, args.data, args.split, len(images))
    md, js, png = (args.out / f for f in BASELINE_FILES)
    md.write_text(text)
    js.write_text(json.dumps({"data": str(args.data), "split": args.split, "images": len(images),
                              "rows": [asdict(r) for r in rows], "skipped": skipped}, indent=2))
    plot_baselines(curves, rows, png)
    print()
    print(text)
    print(f"wrote {md}, {js.name} and {png.name}")
    return 0


# -- training: every homework on one budget -------------------------------------------------------
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
    parser.add_argument("--models", default=",".join(ADAPTERS),
                        help="comma-separated kit detectors (default: all): their demo checkpoints, or trained")
    parser.add_argument("--data", type=Path, default=Path("outputs/data"))
    parser.add_argument("--out", type=Path, default=Path("outputs/compare"))
    parser.add_argument("--split", default="val", help="baselines: the split scored (needs ground_truth/)")
    parser.add_argument("--demo-root", type=Path, default=Path("outputs"),
                        help="baselines: the folder holding make demo's demo/ and demo-<model>/")
    parser.add_argument("--public-weights", type=Path, default=PUBLIC_WEIGHTS,
                        help="baselines: the public RetinaFace MobileNet-0.25 checkpoint")
    parser.add_argument("--iterations", type=int,
                        help="train every model from scratch for this many iterations (instead of baselines)")
    parser.add_argument("--batch-size", type=int, help=f"training (default {DEFAULT_BATCH})")
    parser.add_argument("--image-size", type=int, help=f"training crop (default {DEFAULT_CROP})")
    parser.add_argument("--threads", type=int,
                        help="baselines: torch and OpenCV threads while detecting (default: their own; "
                             "1 is far faster on a CPU that other jobs keep busy)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--impl", default="solutions", help="'solutions' or a notebook folder")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ADAPTERS]
    if unknown or not models:
        raise UserError(f"--models {args.models}: unknown {', '.join(unknown) or '(none given)'}; "
                        f"registered: {', '.join(ADAPTERS)}")
    if args.iterations is None:
        given = [flag for flag, value in (("--batch-size", args.batch_size), ("--image-size", args.image_size))
                 if value is not None]
        if given:
            raise UserError(f"{', '.join(given)}: training options; add --iterations N to train")
        if args.threads is None:
            return compare_baselines(args, models)
        if args.threads < 1:
            raise UserError(f"--threads {args.threads}: expected a positive count")
        torch_threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        try:
            return compare_baselines(args, models)
        finally:
            torch.set_num_threads(torch_threads)
            cv2.setNumThreads(cv_threads)
    batch_size = args.batch_size or DEFAULT_BATCH
    image_size = args.image_size or DEFAULT_CROP
    check_dataset(args.data, "train")
    check_dataset(args.data, "val")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for model in models:
        print(f"== {model}", flush=True)
        row, curves[model] = compare_one(model, args.data, args.out, args.iterations, batch_size,
                                         image_size, args.device, args.impl)
        rows.append(row)
        print(f"   AP easy {row.ap['easy']:.3f} medium {row.ap['medium']:.3f} hard {row.ap['hard']:.3f}; "
              f"{row.train_images_per_s:.1f} train images/s, {row.detect_images_per_s:.1f} detect images/s")
    text = table(rows, args.iterations, batch_size, image_size, len(WiderFaceDataset(args.data, "val")))
    (args.out / "comparison.md").write_text(text)
    (args.out / "comparison.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    plot_curves(curves, rows, args.out / "pr_curves.png")
    print(text)
    print(f"wrote {args.out / 'comparison.md'}, comparison.json and pr_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
