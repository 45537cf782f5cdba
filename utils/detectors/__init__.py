"""Every homework's detector behind one interface: build it from notebook code, load weights,
detect faces, train it. ``utils.detect``, ``utils.experiment``, ``utils.demo`` and ``utils.compare``
only talk to this interface; a homework's adapter is named in its registry entry (``utils.homeworks``).

    model = load_model("retinaface", "mobilenet0.25")                 # solutions' code, random weights
    model = load_model("dsfd", "vgg16", impl="submissions/alice", weights="dsfd.pth")
    detector = load_detector("retinaface", model, "mobilenet0.25")    # .detect(images) -> [Detections]

An adapter is a module ``utils/detectors/<hw>.py`` with:

    NAME: str                      the homework (= folder under solutions/, assignments/, autograder/)
    CONFIGS: dict[str, dict]       config name -> config dict (from detector/<hw>/config.py)
    LITE: str                      the CPU config that the demo, the comparison and the tests train
    FULL: str                      the full (GPU) config, public names where a checkpoint exists
    DEMO: dict                     the demo/compare budget: TrainConfig keywords plus "image_size"
    NOTEBOOKS: tuple[str, ...]     the notebooks the adapter reads (a student folder must have them)
    build_model(cfg, code) -> nn.Module                  an untrained model (caller seeds torch)
    build_detector(model, cfg, code, **options) -> obj   obj.detect(list of uint8 BGR [H, W, 3])
                                                         -> list[utils.inference.Detections]
    train_model(model, cfg, data_root, config, code, **variant) -> utils.training.train.TrainResult
                                                         variant: the homework's ablation switches
    init_from_scratch(model) (optional)                  re-initialises a new model in place before
                                                         training from scratch (utils.experiment)

``code`` is a ``utils.detectors.notebooks.NotebookCode``: the notebooks of the solutions or of a
student's folder (answer cells with the release's given cells), loaded once, names looked up with
clear errors. ``cfg`` is the config dict (a fresh copy).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from detector.configs import copy_config
from utils.detectors.notebooks import NotebookCode, UserError, load_code
from utils.detectors.weights import load_weights
from utils.homeworks import REGISTRY

# name -> adapter module, from the homework registry (utils/homeworks.py); a homework without a
# detector of its own (the final project) is no model.
ADAPTERS = {entry.name: entry.adapter for entry in REGISTRY if entry.adapter is not None}


def adapter(model: str) -> ModuleType:
    """The adapter module of homework ``model``; a clear error for an unknown name."""
    if model not in ADAPTERS:
        raise UserError(f"unknown model {model!r}; expected one of {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[model])


def config(model: str, cfg: str, **overrides: Any) -> dict:
    """A fresh copy of config ``cfg`` of ``model`` with ``overrides`` (only existing fields)."""
    try:
        return copy_config(adapter(model).CONFIGS, cfg, f"--model {model}", **overrides)
    except ValueError as err:
        raise UserError(str(err)) from None


def load_model(model: str, cfg: str | dict, impl: str | Path = "solutions",
               weights: str | Path | None = None, device: str | torch.device = "cpu",
               seed: int | None = 0) -> torch.nn.Module:
    """The one way to build a detector: homework ``model`` with config ``cfg`` (a name or a dict)
    from the notebooks of ``impl`` ('solutions' or a student's folder), weights from ``weights``
    (a public state_dict or a kit training checkpoint; None: initial weights seeded by ``seed``),
    in eval mode on ``device``."""
    module = adapter(model)
    cfg_dict = config(model, cfg) if isinstance(cfg, str) else cfg
    code = load_code(model, impl, module.NOTEBOOKS)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        net = module.build_model(cfg_dict, code)
    except UserError:
        raise
    except Exception as err:  # the notebook's model class failed: name where
        raise code.error(f"building the {model} model with config {cfg_dict.get('name', cfg)!r} "
                         f"failed: {type(err).__name__}: {err}") from err
    if weights is not None:
        load_weights(net, weights, f"{model} with config {cfg if isinstance(cfg, str) else cfg_dict.get('name')}")
    return net.to(device).eval()


def load_detector(model: str, net: torch.nn.Module, cfg: str | dict, impl: str | Path = "solutions",
                  **options: Any):
    """A detector (``.detect(images) -> list[Detections]``) for ``net`` with the anchors, decoding
    and post-processing of ``impl``'s notebooks. options: conf_thresh, nms_thresh, top_k, ..."""
    module = adapter(model)
    cfg_dict = config(model, cfg) if isinstance(cfg, str) else cfg
    return module.build_detector(net, cfg_dict, load_code(model, impl, module.NOTEBOOKS), **options)


__all__ = ["ADAPTERS", "NotebookCode", "UserError", "adapter", "config", "load_model", "load_detector",
           "load_code", "load_weights"]
