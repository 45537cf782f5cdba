"""Recorded answers of the staff's reference code, replayed where that code does not ship.

The checks compare a student's answer with the homework's oracles (slow, independent
implementations: ``autograder/<hw>/oracles*.py``) and name mistakes with its mistake models
(``mistakes*.py``). Those are implementations of the exercises, so the student bundle must not hold
them. ``python -m autograder.staff.record_oracles <hw>`` runs every public check on the solutions'
outputs, and on perturbed copies of them to reach the branches that name mistakes, and stores each
call's answer keyed by a fingerprint of its arguments in ``autograder/references/<hw>-oracles.pt.xz``.
In the student bundle each of those modules is a stub (``stub_source``) whose functions look the
answer up (``replay``).

A call whose arguments were never recorded (built from an answer that differs from the solution's,
or a mistake branch the perturbations did not reach) cannot be answered. Made while a failed check
looks for the mistake's name (inside ``except GradingFailure``), the failure is reported without the
name; otherwise it raises ``NotRecorded``: the check is skipped in the bundle (counted neither way)
and its message says that the official grader runs it.

Fingerprints: tensors, arrays and floats are hashed with ``KEPT_MANTISSA_BITS`` of their mantissa,
so the last-bit differences of another machine's arithmetic (1e-16) do not change the key; integers,
booleans, strings and shapes are hashed exactly; a module by its structure (module types, state
names, dtypes and shapes), not its values.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import lzma
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from autograder.feedback import GradingFailure

REFERENCES_DIR = Path(__file__).resolve().parent / "references"
REFERENCE_MODULE_PREFIXES = ("oracles", "mistakes")  # autograder/<hw>/<prefix>*.py never ship to students
KEPT_MANTISSA_BITS = 22                               # ~6.6 significant digits
UNNAMED = " (the official grader may name the mistake; the student bundle cannot)"
_DROPPED = np.int64((1 << (52 - KEPT_MANTISSA_BITS)) - 1)


class NotRecorded(Exception):
    """A reference answer the student bundle does not hold (the official grader computes it)."""


def is_reference_module(filename: str) -> bool:
    """Whether ``autograder/<hw>/<filename>`` holds reference code (oracles, mistake models)."""
    return filename.endswith(".py") and filename.startswith(REFERENCE_MODULE_PREFIXES)


def recordings_path(hw: str) -> Path:
    return REFERENCES_DIR / f"{hw}-oracles.pt.xz"


def save_recordings(payload: dict, path: Path) -> None:
    """``torch.save`` of ``payload``, xz-compressed (a 640 x 640 anchor grid: 3.2 MB -> 15 KB)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(lzma.compress(buffer.getvalue()))


def load_recordings(path: Path) -> dict:
    return torch.load(io.BytesIO(lzma.decompress(path.read_bytes())), weights_only=True)


# -- fingerprints ----------------------------------------------------------------------------------
def _floats(h, values: np.ndarray) -> None:
    a = np.ascontiguousarray(values, dtype=np.float64) + 0.0           # -0.0 hashes like 0.0
    a = np.where(np.isnan(a), np.nan, a)                               # one NaN payload
    h.update((a.view(np.int64) & ~_DROPPED).tobytes())


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        h.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        if value.is_complex():
            value = torch.view_as_real(value)
        if value.is_floating_point():
            _floats(h, value.double().numpy())
        else:
            h.update(value.contiguous().numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"A{value.dtype}{value.shape}".encode())
        if value.dtype.kind in "fc":
            _floats(h, value.real if value.dtype.kind == "f" else np.stack([value.real, value.imag]))
        else:
            h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (float, np.floating)):
        h.update(b"f")
        _floats(h, np.array([float(value)]))
    elif value is None or isinstance(value, (bool, int, str, np.integer, np.bool_, torch.dtype, torch.device)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, (list, tuple, torch.Size)):
        h.update(f"{type(value).__name__}[{len(value)}](".encode())
        for v in value:
            _feed(h, v)
        h.update(b")")
    elif isinstance(value, dict):
        h.update(f"dict[{len(value)}](".encode())
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
        h.update(b")")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"D{type(value).__name__}".encode())
        _feed(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    elif isinstance(value, types.SimpleNamespace):
        _feed(h, vars(value))
    elif isinstance(value, torch.nn.Module):  # by structure: its module types, state names, shapes, dtypes
        h.update(f"M{type(value).__qualname__}".encode())
        _feed(h, [type(m).__qualname__ for m in value.modules()])
        _feed(h, [(name, t.dtype, tuple(t.shape)) for name, t in value.state_dict().items()])
    elif callable(value) and hasattr(value, "__qualname__"):
        h.update(f"F{getattr(value, '__module__', '')}.{value.__qualname__};".encode())
    else:
        raise TypeError(f"cannot fingerprint an argument of type {type(value).__name__}")


def fingerprint(function: str, args: tuple, kwargs: dict) -> str:
    """``function:sha1`` of a call's arguments (see the module docstring for the rounding)."""
    h = hashlib.sha1(function.encode())
    _feed(h, (tuple(args), dict(kwargs)))
    return f"{function}:{h.hexdigest()}"


# -- answers: a weights_only-loadable tree ---------------------------------------------------------
def encode(value: Any) -> Any:
    """``value`` as tensors, numbers, strings and tagged containers (``torch.load(weights_only=True)``)."""
    if isinstance(value, torch.Tensor):
        return {"t": "tensor", "v": value.detach().cpu().clone()}
    if isinstance(value, np.ndarray):
        return {"t": "ndarray", "v": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return {"t": "scalar", "v": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"t": "scalar", "v": value}
    if isinstance(value, torch.Size):
        return {"t": "size", "v": list(value)}
    if isinstance(value, torch.dtype):
        return {"t": "dtype", "v": str(value).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        return {"t": "list" if isinstance(value, list) else "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "k": [encode(k) for k in value], "v": [encode(v) for v in value.values()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"t": "fields", "v": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot record an answer of type {type(value).__name__}")


def decode(tree: Any) -> Any:
    kind, v = tree["t"], tree["v"]
    if kind == "tensor":
        return v.clone()
    if kind == "ndarray":
        return v.numpy().copy()
    if kind == "scalar":
        return v
    if kind == "size":
        return torch.Size(v)
    if kind == "dtype":
        return getattr(torch, v)
    if kind in ("list", "tuple"):
        items = [decode(x) for x in v]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {decode(k): decode(x) for k, x in zip(tree["k"], v)}
    if kind == "fields":  # a dataclass of the reference code: its fields, read as attributes
        return types.SimpleNamespace(**{name: decode(x) for name, x in v.items()})
    raise ValueError(f"unknown recorded kind {kind!r}")


def record_call(fn: Callable, args: tuple, kwargs: dict, strict: bool = True) -> tuple[Any, dict | None]:
    """(result, recording) of ``fn(*args, **kwargs)``: the encoded result, and every dict, list or
    tensor argument the call changed (an out-argument: ``counts=``, a target filled in place).
    A result that cannot be stored raises TypeError, or with ``strict=False`` gives recording None."""
    mutable = {k: v for k, v in {**dict(enumerate(args)), **kwargs}.items()
               if isinstance(v, (dict, list, torch.Tensor))}
    before = {k: fingerprint("", (v,), {}) for k, v in mutable.items()}
    result = fn(*args, **kwargs)
    try:
        filled = {str(k): encode(v) for k, v in mutable.items() if fingerprint("", (v,), {}) != before[k]}
        return result, {"result": encode(result), "filled": filled}
    except TypeError:
        if strict:
            raise
        return result, None


def answer(call: dict, args: tuple, kwargs: dict) -> Any:
    """A recorded call's result; an argument it filled (``counts=``, a tensor written in place) is
    filled again."""
    for where, tree in call.get("filled", {}).items():
        target = args[int(where)] if where.isdigit() else kwargs[where]
        value = decode(tree)
        if isinstance(target, torch.Tensor):
            with torch.no_grad():
                target.copy_(value)
        elif isinstance(target, dict):
            target.clear()
            target.update(value)
        else:
            target[:] = value
    return decode(call["result"])


# -- replay (the student bundle) -------------------------------------------------------------------
_LOADED: dict[str, dict] = {}


def _recordings(hw: str) -> dict:
    if hw not in _LOADED:
        path = recordings_path(hw)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the bundle's public checks need it "
                                    f"(instructors: python -m autograder.staff.record_oracles {hw})")
        _LOADED[hw] = load_recordings(path)
    return _LOADED[hw]


def replay(module: str) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of a reference module's stub (``module``: its dotted name,
    ``autograder.<hw>.<name>``): recorded constants, and functions that answer recorded calls."""
    hw = module.split(".")[1]

    def attribute(name: str) -> Any:
        recorded = _recordings(hw)
        constants = recorded["constants"].get(module, {})
        if name in constants:
            return decode(constants[name])
        if name not in recorded["functions"].get(module, ()):
            raise AttributeError(f"module {module!r} has no attribute {name!r} in the student bundle")
        qualified = f"{module}.{name}"

        def replayed(*args, **kwargs):
            key = fingerprint(qualified, args, kwargs)
            if key not in recorded["calls"]:
                pending = sys.exc_info()[1]
                if isinstance(pending, GradingFailure):  # naming a mistake already found: report it unnamed
                    raise GradingFailure(f"{pending}{UNNAMED}", pending.kind, pending.dependencies) from None
                raise NotRecorded(f"this check needs the staff's reference {name}() on arguments the "
                                  f"student bundle has no recorded answer for (they depend on your "
                                  f"answer); the official grader runs it")
            return answer(recorded["calls"][key], args, kwargs)

        replayed.__name__ = replayed.__qualname__ = name
        return replayed

    return attribute


def stub_source(module: str) -> str:
    """The text of ``module``'s stand-in in the student bundle."""
    return (f'"""The staff\'s reference code is not part of the student bundle: the answers it gave on\n'
            f'the public cases are replayed from autograder/references/ (autograder.recorded)."""\n'
            f"from autograder.recorded import replay\n\n"
            f"__getattr__ = replay({module!r})\n")


def reference_modules(hw: str, root: Path | None = None) -> list[str]:
    """Dotted names of ``hw``'s reference modules (oracles, mistake models)."""
    folder = (root or REFERENCES_DIR.parents[1]) / "autograder" / hw
    return [f"autograder.{hw}.{p.stem}" for p in sorted(folder.glob("*.py")) if is_reference_module(p.name)]


def import_reference_modules(hw: str) -> list[types.ModuleType]:
    return [importlib.import_module(name) for name in reference_modules(hw)]
