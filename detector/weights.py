"""Read model weights from a file a user hands in (public state_dicts and the kit's checkpoints).

It lives in ``detector/`` (which imports nothing else of the kit) because the backbones read
ImageNet weights with it; ``utils.training.checkpoint.load_model_weights`` and
``utils.detectors.weights`` load trained weights with it.
"""
from __future__ import annotations

from pathlib import Path

import torch

DDP_PREFIX = "module."


def strip_ddp_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the leading ``module.`` that DistributedDataParallel/DataParallel add."""
    return {k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k: v for k, v in state_dict.items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from a training checkpoint, a ``{'state_dict': ...}`` file or a bare state_dict.

    Loaded on the CPU with ``weights_only=True``; a leading ``module.`` is stripped from the keys.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{path}: expected a state_dict (parameter name -> tensor), a dict with "
                         f"'model' or 'state_dict' holding one, got {type(obj).__name__}")
    return strip_ddp_prefix(obj)
