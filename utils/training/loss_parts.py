"""The criterion's side of the training contract: named scalar loss parts, and the NaN guard.

``criterion(...) -> {'loc': tensor(), 'conf': tensor(), ...}``; the optimised loss is the sum of the
parts, logged as ``loss`` next to each part.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from utils.training.log import BOOKKEEPING_COLUMNS, TOTAL_COLUMN


class NonFiniteLossError(FloatingPointError):
    """A loss part became NaN or infinite; raised before the optimizer step touches the weights."""

    def __init__(self, iteration: int, part: str, value: float, last_checkpoint: Path | None):
        self.iteration, self.part, self.value = iteration, part, value
        self.last_checkpoint = last_checkpoint
        where = last_checkpoint if last_checkpoint else "none written yet"
        super().__init__(f"non-finite loss at iteration {iteration}: loss part '{part}' = {value}; "
                         f"training stopped before this step changed the weights; last good "
                         f"checkpoint: {where}")


def checked_loss_parts(parts) -> dict[str, torch.Tensor]:
    """``parts`` as float32 0-d tensors, after checking it is a dict of named scalar tensors."""
    if not isinstance(parts, dict) or not parts:
        raise TypeError(f"criterion must return a non-empty dict of named scalar loss tensors "
                        f"(e.g. {{'loc': ..., 'conf': ...}}), got {type(parts).__name__}")
    for name, value in parts.items():
        if name == TOTAL_COLUMN or name in BOOKKEEPING_COLUMNS:
            raise ValueError(f"criterion returned a loss part named {name!r}, which is a reserved "
                             f"log column ({TOTAL_COLUMN}, {', '.join(BOOKKEEPING_COLUMNS)})")
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TypeError(f"criterion part {name!r} must be a scalar tensor, got "
                            f"{getattr(value, 'shape', type(value).__name__)}")
    return {name: value.float().reshape(()) for name, value in parts.items()}


def first_non_finite(values: dict[str, float]) -> str | None:
    """Name of the first NaN/inf loss part, ``loss`` if only the sum overflowed, else None."""
    parts = [name for name in values if name != TOTAL_COLUMN]
    for name in [*parts, TOTAL_COLUMN]:
        if name in values and not math.isfinite(values[name]):
            return name
    return None
