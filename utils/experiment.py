"""Train and evaluate any homework's detector, built from notebook code, on a dataset in the WIDER layout.

The glue that ``make demo``, ``utils.compare``, the notebooks and the command line share:

    python -m utils.experiment train --data outputs/data --out outputs/train/run1
        [--model retinaface] [--cfg NAME] [--impl solutions|DIR] [--image-size 640]
        [--variant NAME=VALUE ...]
        [training flags of utils.training.config: --epochs --batch-size --lr ... --resume]
    python -m utils.experiment evaluate --data outputs/data --weights CKPT --out outputs/eval/run1
        [--model retinaface] [--cfg NAME] [--impl solutions|DIR] [--nms 0.4] [--json]

``--model`` picks the homework (``utils.detectors``), ``--cfg`` one of its configs (default: the CPU
lite config), ``--impl`` whose notebook code runs (the solutions, or a student's folder with the
release's given cells), exactly as ``utils.detect`` does. ``--variant`` passes a homework's ablation
switches to its trainer (RetinaFace: ``landmarks=False``, ``focal=True``). Evaluation runs the
detector on every validation image at its original size and scores it with the official WIDER FACE
protocol (``utils.evaluate``) against ``DATA/val/ground_truth``.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import shutil
import sys
from pathlib import Path

import torch

from data.widerface import WiderFaceDataset, load_image
from utils.cli import run
from utils.detectors import ADAPTERS, UserError, adapter, config, load_code, load_detector, load_model
from utils.evaluate import WiderResult, evaluate, read_predictions
from utils.inference import CONF_THRESH, NMS_THRESH, predict_dataset
from utils.training.config import TrainConfig, add_train_args, config_from_args
from utils.training.train import TrainResult
from utils.wider_predictions import write_predictions

GROUND_TRUTH = Path("val") / "ground_truth"
TRAIN_MODEL_ARGS = ("model", "cfg", "data_root", "config", "code")   # an adapter's train_model, before its switches


def check_dataset(data_root: str | Path, split: str) -> Path:
    """``data_root`` if it holds ``split/label.txt`` (and, for val, the ground truth), else a UserError."""
    root = Path(data_root)
    needed = [root / split / "label.txt"] + ([root / GROUND_TRUTH] if split == "val" else [])
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise UserError(f"--data {root}: not a dataset in the WIDER layout (missing {', '.join(missing)}); "
                        f"make one with `python -m data.synthetic --out {root}`")
    return root


def train_detector(model_name: str, cfg: dict, data_root: str | Path, train_config: TrainConfig,
                   impl: str | Path = "solutions", model: torch.nn.Module | None = None,
                   **variant) -> TrainResult:
    """Train ``model`` (a new one seeded by ``train_config.seed`` when None, initialised by the
    adapter's ``init_from_scratch`` where it has one) of homework ``model_name`` with config ``cfg``
    on ``data_root/train``; ``variant``: the homework's switches."""
    module = adapter(model_name)
    switches = [name for name in inspect.signature(module.train_model).parameters
                if name not in TRAIN_MODEL_ARGS]
    unknown = sorted(set(variant) - set(switches))
    if unknown:
        raise UserError(f"--variant {', '.join(unknown)}: not a switch of {model_name}'s training; "
                        f"its switches are {', '.join(switches) or 'none'}")
    check_dataset(data_root, "train")
    if model is None:
        model = load_model(model_name, cfg, impl, seed=train_config.seed).train()
        if hasattr(module, "init_from_scratch"):  # e.g. DSFD: VGG without BatchNorm starts blind otherwise
            module.init_from_scratch(model)
    code = load_code(model_name, impl, module.NOTEBOOKS)
    return module.train_model(model, cfg, data_root, train_config, code, **variant)


def freeze_stages(model: torch.nn.Module, prefixes: tuple[str, ...]) -> int:
    """Stop training the parameters whose names start with any of ``prefixes`` (e.g.
    ``('body.stage1',)`` for the early backbone layers); returns how many tensors were frozen.
    BatchNorm statistics of frozen layers still update in train mode."""
    frozen = 0
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)
            frozen += 1
    if prefixes and not frozen:
        raise ValueError(f"no parameter name starts with {prefixes}")
    return frozen


def detect_split(detector, data_root: str | Path, split: str = "val") -> dict:
    """``{(event, image name): Detections}`` for every image of ``data_root/split``, each detected
    alone at its original size (the protocol of the public evaluation)."""
    dataset = WiderFaceDataset(data_root, split)
    items = ((dataset.image_id(i), load_image(dataset.image_path(i))) for i in range(len(dataset)))
    return dict(predict_dataset(detector, items))


def score_detections(detections: dict, data_root: str | Path, pred_dir: str | Path) -> WiderResult:
    """Write ``detections`` ({(event, name): Detections}) as the official submission files
    ``pred_dir/EVENT/IMAGE.txt`` and score them against ``data_root/val/ground_truth``."""
    pred_dir = Path(pred_dir)
    if pred_dir.exists():
        shutil.rmtree(pred_dir)  # stale files of an earlier run would be scored too
    for (event, name), found in detections.items():
        write_predictions(pred_dir, event, name, found.wider_rows())
    return evaluate(read_predictions(pred_dir), Path(data_root) / GROUND_TRUTH)


def evaluate_detector(detector, data_root: str | Path, out_dir: str | Path) -> WiderResult:
    """WIDER FACE AP (easy, medium, hard) of ``detector`` on ``data_root/val``; the predictions are
    kept in ``out_dir/predictions``."""
    return score_detections(detect_split(detector, data_root), data_root, Path(out_dir) / "predictions")


def parse_variant(pairs: list[str]) -> dict:
    """``['focal=True', 'landmarks=False']`` -> {'focal': True, 'landmarks': False} (Python literals)."""
    variant = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise UserError(f"--variant expects NAME=VALUE, got {pair!r}")
        try:
            variant[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            variant[name] = text
    return variant


def _config(args: argparse.Namespace) -> dict:
    name = args.cfg or adapter(args.model).LITE
    overrides = {"image_size": args.image_size} if getattr(args, "image_size", None) else {}
    return config(args.model, name, **overrides)


def _train(args: argparse.Namespace) -> None:
    cfg = _config(args)
    result = train_detector(args.model, cfg, args.data, config_from_args(args), args.impl,
                            **parse_variant(args.variant))
    print(f"trained {result.iterations} iterations; log {result.history_path}; "
          f"last checkpoint {result.last_checkpoint}")


def _evaluate(args: argparse.Namespace) -> None:
    check_dataset(args.data, "val")
    cfg = _config(args)
    model = load_model(args.model, cfg, args.impl, args.weights, args.device)
    detector = load_detector(args.model, model, cfg, args.impl, conf_thresh=args.conf,
                             nms_thresh=args.nms, device=args.device)
    result = evaluate_detector(detector, args.data, args.out)
    for subset, ap in result.ap.items():
        print(f"{subset.capitalize()} AP: {ap:.4f}")
    if args.json:
        print(json.dumps(result.ap))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        sub = commands.add_parser(name)
        sub.add_argument("--data", required=True, type=Path, help="dataset root (train/, val/)")
        sub.add_argument("--model", default="retinaface", choices=sorted(ADAPTERS))
        sub.add_argument("--cfg", help="config name (default: the model's CPU lite config)")
        sub.add_argument("--impl", default="solutions", help="'solutions' or a notebook folder")
    train = commands.choices["train"]
    train.add_argument("--image-size", type=int, help="training crop size (default: cfg['image_size'])")
    train.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE",
                       help="a homework's training switch, e.g. focal=True (repeatable)")
    add_train_args(train)
    evaluate_cmd = commands.choices["evaluate"]
    evaluate_cmd.add_argument("--weights", required=True, type=Path)
    evaluate_cmd.add_argument("--out", required=True, type=Path, help="folder for the predictions")
    evaluate_cmd.add_argument("--conf", type=float, default=CONF_THRESH)
    evaluate_cmd.add_argument("--nms", type=float, default=NMS_THRESH)
    evaluate_cmd.add_argument("--device", default="cpu")
    evaluate_cmd.add_argument("--json", action="store_true", help="last line: the APs as JSON")
    args = parser.parse_args(argv)
    {"train": _train, "evaluate": _evaluate}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
