"""Outputs crossing from the worker to the scoring process: plain tensors and containers only.

The worker turns whatever student code returned into a tagged tree of tensors and primitives; the
scoring process reads it with ``torch.load(weights_only=True)``, so a returned object can never run
code there, and unwraps it back into tensors, arrays, tuples and lists. Anything else arrives as an
``Opaque`` that says what type it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MAX_REPR = 200
MAX_DEPTH = 8


@dataclass(frozen=True)
class Opaque:
    """A returned object of a type the grader does not transfer (e.g. a custom class)."""

    type_name: str
    text: str


def wrap(value: Any, depth: int = 0) -> dict:
    """Tagged, weights_only-loadable form of ``value`` (tensors are detached and moved to CPU)."""
    if depth > MAX_DEPTH:
        return {"kind": "opaque", "type": type(value).__name__, "repr": "(nested too deeply)"}
    if isinstance(value, torch.Tensor):
        return {"kind": "tensor", "data": value.detach().cpu().clone(), "device": str(value.device)}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {"kind": "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return {"kind": "scalar", "data": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "scalar", "data": value}
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__ if type(value) in (list, tuple) else "tuple",
                "items": [wrap(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"kind": "dict", "items": {str(k): wrap(v, depth + 1) for k, v in value.items()}}
    try:
        text = repr(value)[:MAX_REPR]
    except Exception as err:  # a student's __repr__ may itself fail
        text = f"(repr failed: {type(err).__name__})"
    return {"kind": "opaque", "type": type(value).__name__, "repr": text}


def unwrap(tree: dict) -> Any:
    """The value ``wrap`` encoded (numpy arrays come back as numpy arrays)."""
    kind = tree["kind"]
    if kind == "tensor":
        return tree["data"]
    if kind == "ndarray":
        return tree["data"].numpy()
    if kind == "scalar":
        return tree["data"]
    if kind in ("list", "tuple"):
        items = [unwrap(v) for v in tree["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: unwrap(v) for k, v in tree["items"].items()}
    return Opaque(tree["type"], tree["repr"])


def devices(tree: dict) -> set[str]:
    """Devices of all tensors in a wrapped tree."""
    if tree["kind"] == "tensor":
        return {tree["device"]}
    items = tree.get("items", ())
    children = items.values() if isinstance(items, dict) else items
    return set().union(*(devices(v) for v in children)) if children else set()
