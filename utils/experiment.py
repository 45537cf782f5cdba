"""Train and evaluate a RetinaFace built from notebook code on a dataset in the WIDER layout.

The glue that ``make demo``, the notebooks (Parts 7 and 9) and the command line share:

    python -m utils.experiment train --data outputs/data --out outputs/train/run1
        [--impl solutions|DIR] [--cfg mobilenet0.25] [--image-size 640] [--no-landmarks] [--focal]
        [training flags of utils.train_config: --epochs --batch-size --lr ... --resume]
    python -m utils.experiment evaluate --data outputs/data --weights CKPT --out outputs/eval/run1
        [--impl solutions|DIR] [--cfg mobilenet0.25] [--nms 0.4] [--json]

``--impl`` picks whose notebook code runs (the solutions, or a student's folder with the release's
given cells), exactly as ``utils.detect`` does. Training uses the kit's dataset
(``data.widerface.WiderFaceDataset``) with the RetinaFace augmentation (``data.augment``);
evaluation runs the batched detector on every validation image at its original size and scores it
with the official WIDER FACE protocol (``utils.evaluate``) against ``DATA/val/ground_truth``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from data.augment import TrainAugment
from data.widerface import WiderFaceDataset, detection_collate, load_image
from detector.retinaface.config import CONFIGS, get_config
from utils.detect import load_retinaface_code, load_weights, notebook_folder
from utils.evaluate import WiderResult, evaluate, read_predictions
from utils.inference import CONF_THRESH, NMS_THRESH, Detector, predict_dataset
from utils.notebook import load_notebook
from utils.train import TrainResult, fit
from utils.train_config import TrainConfig, add_train_args, config_from_args
from utils.wider_predictions import write_predictions

LOSS_NOTEBOOK = "5_loss_training.ipynb"
GROUND_TRUTH = Path("val") / "ground_truth"


@dataclass(frozen=True)
class Homework:
    """The notebook definitions that training and evaluation need."""

    RetinaFace: type
    PriorBox: type
    decode: Callable
    decode_landm: Callable
    MultiBoxLoss: type
    FocalMultiBoxLoss: type


def load_homework(impl: str | Path = "solutions") -> Homework:
    """The model, anchors, decoding and losses from the notebooks of ``impl``."""
    code = load_retinaface_code(impl)
    folder, release = notebook_folder(impl)
    module = load_notebook(folder / LOSS_NOTEBOOK, None if release is None else release / LOSS_NOTEBOOK)
    missing = [name for name in ("MultiBoxLoss", "FocalMultiBoxLoss") if not hasattr(module, name)]
    if missing:
        raise RuntimeError(f"{folder / LOSS_NOTEBOOK} does not define {missing}")
    return Homework(code.RetinaFace, code.PriorBox, code.decode, code.decode_landm,
                    module.MultiBoxLoss, module.FocalMultiBoxLoss)


def retinaface_criterion(loss: torch.nn.Module, cfg: dict, landmarks: bool = True) -> Callable:
    """``criterion(outputs, targets, priors) -> {'loc', 'conf'[, 'landm']}`` for ``utils.train.fit``:
    the box loss weighted by cfg['loc_weight']; without ``landmarks`` the landmark term is left out
    of the optimised sum (training without landmark supervision)."""
    def criterion(outputs, targets, priors):
        loss_l, loss_c, loss_landm = loss(outputs, priors, targets)
        parts = {"loc": cfg["loc_weight"] * loss_l, "conf": loss_c}
        if landmarks:
            parts["landm"] = loss_landm
        return parts
    return criterion


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


def train_retinaface(hw: Homework, cfg: dict, data_root: str | Path, config: TrainConfig,
                     landmarks: bool = True, focal: bool = False,
                     model: torch.nn.Module | None = None) -> TrainResult:
    """Train ``model`` (a new ``hw.RetinaFace(cfg)`` seeded by ``config.seed`` when None) on
    ``data_root/train`` with crops of ``cfg['image_size']`` pixels."""
    if model is None:
        torch.manual_seed(config.seed)
        model = hw.RetinaFace(cfg)
    dataset = WiderFaceDataset(data_root, "train", transform=TrainAugment(cfg["image_size"]), seed=config.seed)
    loss = (hw.FocalMultiBoxLoss if focal else hw.MultiBoxLoss)(cfg)
    return fit(model, retinaface_criterion(loss, cfg, landmarks), dataset, config,
               collate_fn=detection_collate, prior_fn=lambda size: hw.PriorBox(cfg, size).forward())


def make_detector(hw: Homework, model: torch.nn.Module, cfg: dict, **options) -> Detector:
    """A batched detector for ``model`` with the notebook's anchors and decoding."""
    return Detector(model, lambda size: hw.PriorBox(cfg, size).forward(), hw.decode, hw.decode_landm,
                    cfg["variance"], **options)


def detect_split(detector: Detector, data_root: str | Path, split: str = "val") -> dict:
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


def evaluate_detector(detector: Detector, data_root: str | Path, out_dir: str | Path) -> WiderResult:
    """WIDER FACE AP (easy, medium, hard) of ``detector`` on ``data_root/val``; the predictions are
    kept in ``out_dir/predictions``."""
    return score_detections(detect_split(detector, data_root), data_root, Path(out_dir) / "predictions")


def _train(args: argparse.Namespace) -> None:
    hw = load_homework(args.impl)
    cfg = get_config(args.cfg, **({"image_size": args.image_size} if args.image_size else {}))
    result = train_retinaface(hw, cfg, args.data, config_from_args(args),
                              landmarks=not args.no_landmarks, focal=args.focal)
    print(f"trained {result.iterations} iterations; log {result.history_path}; "
          f"last checkpoint {result.last_checkpoint}")


def _evaluate(args: argparse.Namespace) -> None:
    hw = load_homework(args.impl)
    cfg = get_config(args.cfg)
    model = hw.RetinaFace(cfg)
    load_weights(model, args.weights, f"RetinaFace with --cfg {args.cfg}")
    detector = make_detector(hw, model.to(args.device).eval(), cfg, conf_thresh=args.conf,
                             nms_thresh=args.nms, device=args.device)
    result = evaluate_detector(detector, args.data, args.out)
    for subset, ap in result.ap.items():
        print(f"{subset.capitalize()} AP: {ap:.4f}")
    if args.json:
        print(json.dumps(result.ap))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        sub = commands.add_parser(name)
        sub.add_argument("--data", required=True, type=Path, help="dataset root (train/, val/)")
        sub.add_argument("--impl", default="solutions", help="'solutions' or a notebook folder")
        sub.add_argument("--cfg", default="mobilenet0.25", choices=sorted(CONFIGS))
    train = commands.choices["train"]
    train.add_argument("--image-size", type=int, help="training crop size (default: cfg['image_size'])")
    train.add_argument("--no-landmarks", action="store_true", help="train without the landmark loss")
    train.add_argument("--focal", action="store_true", help="focal loss instead of hard negative mining")
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


if __name__ == "__main__":
    sys.exit(main())
