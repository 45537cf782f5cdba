"""RetinaFace (the core homework) behind the kit's detector interface (``utils.detectors``), and the
glue its notebooks use: ``Homework`` (the notebook definitions training needs), ``train_retinaface``
and ``make_detector``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from data.augment import TrainAugment
from data.widerface import WiderFaceDataset, detection_collate
from detector.retinaface.config import CONFIGS
from utils.detectors.notebooks import NotebookCode, UserError
from utils.inference import Detector
from utils.training.config import TrainConfig
from utils.training.train import TrainResult, fit

NAME = "retinaface"
LITE = "mobilenet0.25"
FULL = "resnet50"
MODEL_NOTEBOOK, ANCHOR_NOTEBOOK = "2_model.ipynb", "3_anchors.ipynb"
CODING_NOTEBOOK, LOSS_NOTEBOOK = "4_matching_nms.ipynb", "5_loss_training.ipynb"
TESTING_NOTEBOOK = "6_testing_finetuning.ipynb"
NOTEBOOKS = (MODEL_NOTEBOOK, ANCHOR_NOTEBOOK, CODING_NOTEBOOK, LOSS_NOTEBOOK, TESTING_NOTEBOOK)
# The demo's recipe: 8.5 minutes on 2 CPU cores (README), 16 crops of 320 px per step, channels-last.
DEMO = dict(image_size=320, max_iterations=1000, batch_size=16, lr=1e-2, momentum=0.9, weight_decay=5e-4,
            optimizer="sgd", schedule="cosine", warmup_iterations=50, clip_grad_norm=10.0,
            channels_last=True)
SMOKE_SIZE = (32, 32)        # input size used to check that the loaded functions run at all


@dataclass(frozen=True)
class Homework:
    """The notebook definitions that training and evaluation need."""

    RetinaFace: type
    PriorBox: type
    decode: Callable
    decode_landm: Callable
    MultiBoxLoss: type
    FocalMultiBoxLoss: type
    postprocess: Callable | None = None    # Part 8's; None: the kit's vectorised post-processing


def load_homework(code: NotebookCode) -> Homework:
    """The model, anchors, decoding, losses and post-processing of ``code``; each function is run
    once on a tiny input so that a stub is reported with its notebook now, not deep inside training.

    Part 8's ``postprocess`` (which calls the student's ``nms``) is used when it runs; while it is
    not implemented yet, detections come from the kit's post-processing and a note says so on
    stderr (training does not need it)."""
    priors = code.run("PriorBox", ANCHOR_NOTEBOOK,
                      lambda: code.get("PriorBox", ANCHOR_NOTEBOOK)(CONFIGS[LITE], image_size=SMOKE_SIZE).forward())
    priors = torch.as_tensor(priors)
    variances = CONFIGS[LITE]["variance"]
    code.call("decode", CODING_NOTEBOOK, torch.zeros(1, 4), priors[:1], variances)
    code.call("decode_landm", CODING_NOTEBOOK, torch.zeros(1, 10), priors[:1], variances)
    return Homework(code.get("RetinaFace", MODEL_NOTEBOOK), code.get("PriorBox", ANCHOR_NOTEBOOK),
                    code.get("decode", CODING_NOTEBOOK), code.get("decode_landm", CODING_NOTEBOOK),
                    code.get("MultiBoxLoss", LOSS_NOTEBOOK), code.get("FocalMultiBoxLoss", LOSS_NOTEBOOK),
                    _working_postprocess(code, priors, variances))


def _working_postprocess(code: NotebookCode, priors: torch.Tensor, variances) -> Callable | None:
    """Part 8's ``postprocess`` if it runs on a tiny input, None (with a note) while it or the
    ``nms`` it calls is a stub; any other failure is the student's error to see."""
    rows = len(priors)
    try:
        postprocess = code.get("postprocess", TESTING_NOTEBOOK)
        postprocess(torch.zeros(rows, 4), torch.zeros(rows, 2), torch.zeros(rows, 10), priors, SMOKE_SIZE,
                    variances=variances)
    except NotImplementedError as err:
        print(f"note: {code.folder / TESTING_NOTEBOOK}: postprocess (or the nms it calls) is not "
              f"implemented yet ({err}); detections use the kit's post-processing", file=sys.stderr)
        return None
    except UserError:
        raise
    except Exception as err:
        raise code.error(f"postprocess failed: {type(err).__name__}: {err}", TESTING_NOTEBOOK) from err
    return postprocess


def retinaface_criterion(loss: torch.nn.Module, cfg: dict, landmarks: bool = True) -> Callable:
    """``criterion(outputs, targets, priors) -> {'loc', 'conf'[, 'landm']}`` for
    ``utils.training.train.fit``: the box loss weighted by cfg['loc_weight']; without ``landmarks``
    the landmark term is left out of the optimised sum (training without landmark supervision)."""
    def criterion(outputs, targets, priors):
        loss_l, loss_c, loss_landm = loss(outputs, priors, targets)
        parts = {"loc": cfg["loc_weight"] * loss_l, "conf": loss_c}
        if landmarks:
            parts["landm"] = loss_landm
        return parts
    return criterion


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


def make_detector(hw: Homework, model: torch.nn.Module, cfg: dict, postprocess: Callable | None = None,
                  **options) -> Detector:
    """A batched detector for ``model`` with the notebook's anchors and decoding; with
    ``postprocess`` (Part 8's function) each image's detections come from it instead of the kit's
    vectorised post-processing."""
    return Detector(model, lambda size: hw.PriorBox(cfg, size).forward(), hw.decode, hw.decode_landm,
                    cfg["variance"], postprocess_fn=postprocess if postprocess is not None else hw.postprocess,
                    **options)


# -- the detector interface (utils.detectors) ------------------------------------------------------
def build_model(cfg: dict, code: NotebookCode) -> torch.nn.Module:
    return code.get("RetinaFace", MODEL_NOTEBOOK)(cfg)


def build_detector(model: torch.nn.Module, cfg: dict, code: NotebookCode, **options) -> Detector:
    return make_detector(load_homework(code), model, cfg, **options)


def train_model(model: torch.nn.Module, cfg: dict, data_root: str | Path, config: TrainConfig,
                code: NotebookCode, landmarks: bool = True, focal: bool = False) -> TrainResult:
    """Variants: ``landmarks=False`` drops the landmark loss; ``focal=True`` trains with the focal
    loss instead of hard negative mining."""
    return train_retinaface(load_homework(code), cfg, data_root, config, landmarks, focal, model)
