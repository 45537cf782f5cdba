"""Charge-once without reference code: a failing dependency's answers, replayed.

A unit that lost points only because a unit it calls fails is graded again with that dependency
fixed (``autograder.engine.charge_once``). The dependency's answer cell is then not the solution's
code but a stand-in whose functions answer from the calls the solution made while it was graded
(``python -m autograder.staff.record_calls``, run by ``make references``;
``autograder/references/<hw>-calls.pt.xz``, staff-side only). The re-graded worker holds the
recorded answers next to the submission (``CALLS_NAME``), never the model answer's code.

A call is answered when its arguments match a recorded call's: by fingerprint
(``autograder.recorded``), else by value within ``RTOL``/``ATOL`` (a correct caller of the student's
own computes the same arguments up to rounding). An unmatched call raises ``NotReplayed``: that
re-grade fails and the unit keeps the score of its own run.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from autograder.recorded import REFERENCES_DIR, answer, decode, fingerprint, load_recordings
from utils.notebook import top_level_definitions

CALLS_NAME = ".charge-once-calls.pt.xz"   # beside the re-graded submission's notebooks
RTOL, ATOL = 1e-5, 1e-6
CALLS_FILE: Path | None = None           # set by the worker: <submission>/CALLS_NAME when present
_LOADED: dict | None = None


def calls_path(hw: str) -> Path:
    """The recorded calls of ``hw``'s solutions into their dependencies (staff-side)."""
    return REFERENCES_DIR / f"{hw}-calls.pt.xz"


def stand_in(source: str) -> str | None:
    """The replaying stand-in for an answer cell of ``source``, or None when the cell defines a
    class or nothing to replay (the re-grade then uses the reference cell)."""
    definitions = top_level_definitions(source)
    if not definitions or any(isinstance(n, ast.ClassDef) for n in definitions):
        return None
    return stand_in_source([n.name for n in definitions])


class NotReplayed(RuntimeError):
    """A call of a replayed dependency with arguments its recording does not hold."""


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape \
                or a.dtype != b.dtype:
            return False
        a, b = a.detach().cpu(), b.detach().cpu()
        if a.is_floating_point():
            return bool(torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
        return bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return _close(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= ATOL + RTOL * abs(b)
    return type(a) is type(b) and a == b


def _calls() -> dict:
    global _LOADED
    if _LOADED is None:
        if CALLS_FILE is None or not Path(CALLS_FILE).is_file():
            raise NotReplayed("charge-once: no recorded calls were given to this worker (a kit bug)")
        _LOADED = load_recordings(Path(CALLS_FILE))
    return _LOADED


def replayed(name: str) -> Callable:
    """A function that answers the calls the solution's ``name`` answered while it was graded."""
    def replay_call(*args, **kwargs):
        recorded = _calls().get(name, {})
        hit = recorded.get(fingerprint(name, args, kwargs))
        if hit is None:
            hit = next((entry for entry in recorded.values()
                        if _close((args, kwargs), decode(entry["arguments"]))), None)
        if hit is None:
            raise NotReplayed(f"charge-once: {name} was called with arguments the solution never passed "
                              f"it, so this re-grade cannot stand in for it")
        return answer(hit, args, kwargs)

    replay_call.__name__ = replay_call.__qualname__ = name
    return replay_call


def stand_in_source(names: list[str]) -> str:
    """The answer cell that replaces a failing dependency defining the functions ``names``."""
    lines = ["# charge-once: the reference answers of this cell, replayed (autograder.replayed)",
             "from autograder.replayed import replayed"]
    return "\n".join(lines + [f"{name} = replayed({name!r})" for name in names]) + "\n"
