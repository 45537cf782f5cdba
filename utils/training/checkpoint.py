"""Training checkpoints: atomic writes, the last K kept plus the best, and loading weights back.

Layout under a run's ``out_dir/checkpoints/``: ``ckpt_<iteration:08d>.pt`` (periodic and end of
epoch; the newest ``keep_last`` are kept) and ``best.pt``. A file is written to a hidden temporary
name in the same folder, flushed to disk and renamed over its final name, so a crash or kill -9
mid-write leaves the previous files intact and never a truncated ``.pt``.

A training checkpoint is a dict of tensors and plain values (loads with ``weights_only=True``):
``format``, ``model`` (state_dict, no DDP ``module.`` prefix), ``optimizer``, ``scheduler``,
``scaler``, ``progress`` (epoch, batch_in_epoch, iteration, ...), ``rng`` (one state per process),
``world_size`` and ``config``.

``load_model_weights`` also serves inference (the notebooks load trained or public weights with it):
it stays here, next to the format it reads; the reader itself, ``detector.weights.read_state_dict``,
lives in ``detector/`` because the backbones need it.
"""
from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

import torch

from detector.weights import read_state_dict

CHECKPOINT_FORMAT = "face-kit-training-checkpoint/1"
CHECKPOINT_DIRNAME = "checkpoints"
BEST_NAME = "best.pt"
TEMP_SUFFIX = ".tmp"
_PERIODIC_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


def atomic_save(payload, path: str | Path) -> Path:
    """``torch.save(payload)`` to ``path`` via a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (a rename across filesystems is not atomic); open() keeps the umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointStore:
    """The checkpoint folder of one run: periodic files with rotation, and ``best.pt``."""

    def __init__(self, folder: str | Path, keep_last: int) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    @property
    def best_path(self) -> Path:
        return self.folder / BEST_NAME

    def periodic(self) -> list[Path]:
        """Periodic checkpoints, oldest first (by iteration)."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := _PERIODIC_NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest periodic checkpoint, or None."""
        found = self.periodic()
        return found[-1] if found else None

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a killed writer left behind; returns how many."""
        if not self.folder.is_dir():
            return 0
        stale = [p for p in self.folder.iterdir()
                 if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)]
        for p in stale:
            p.unlink()
        return len(stale)

    def save(self, payload: dict, iteration: int) -> Path:
        """Write ``ckpt_<iteration>.pt`` and delete all but the newest ``keep_last``."""
        path = atomic_save(payload, self.folder / f"ckpt_{iteration:08d}.pt")
        for old in self.periodic()[:-self.keep_last]:
            old.unlink()
        return path

    def save_best(self, payload: dict) -> Path:
        return atomic_save(payload, self.best_path)


def load_training_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by ``utils.training.train.fit``, checked for the fields resuming needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint to resume from")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a training checkpoint of utils.training.train (expected a "
                         f"dict with format={CHECKPOINT_FORMAT!r}); load bare weights with "
                         f"load_model_weights")
    return ckpt


def load_model_weights(model: torch.nn.Module, path: str | Path, strict: bool = True):
    """Load weights from ``path`` (see ``read_state_dict``) into ``model``.

    Returns ``load_state_dict``'s result (missing_keys, unexpected_keys), of interest with
    ``strict=False``. Tensors are copied onto the model's own device.
    """
    return model.load_state_dict(read_state_dict(path), strict=strict)
