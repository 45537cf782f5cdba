"""Load a checkpoint file into a detector, with errors that name the file and what does not fit."""
from __future__ import annotations

from pathlib import Path

import torch

from detector.weights import read_state_dict
from utils.detectors.notebooks import UserError

SHOWN_KEYS = 5               # key names quoted in a weights-mismatch error


def load_weights(model: torch.nn.Module, path: str | Path, what: str = "the model") -> None:
    """Load a checkpoint (``weights_only``: a public state_dict or a kit training checkpoint) into
    ``model``; a mismatch names the missing and unexpected keys (or the shapes that differ)."""
    if not Path(path).is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        state = read_state_dict(path)
    except ValueError as err:  # already names the file and what was expected
        raise UserError(str(err)) from err
    except Exception as err:  # torch.load's unpickling errors do not say which file
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(state) & set(own))
                   if state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        parts = [f"{len(keys)} {label} (e.g. {', '.join(keys[:SHOWN_KEYS])})"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("tensors of another shape", wrong_shape)) if keys]
        raise UserError(f"{path}: the checkpoint does not fit {what}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
