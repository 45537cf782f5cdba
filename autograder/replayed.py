"""Charge-once without reference code: a failing dependency's answers, replayed.

A unit that lost points only because a unit it calls fails is graded again with that dependency
fixed (``autograder.engine.charge_once``). The dependency's answer cell is then not the solution's
code but a stand-in whose functions answer from the calls the solution made while it was graded
(``python -m autograder.staff.record_calls``, run by ``make references``;
``autograder/references/<hw>-calls.pt.xz``, staff-side only). The re-graded worker holds the
recorded answers next to the submission (``CALLS_NAME``), never the model answer's code.

A call is answered when its arguments match a recorded call's: by fingerprint
(``autograder.recorded``), else by value within ``RTOL``/``ATOL`` (a correct caller of the student's
own computes the same arguments up to rounding; arguments over ``MAX_STORED_ARGUMENTS`` bytes are
not stored, so those calls match by fingerprint only: the models run in float64, whose rounding
differences stay far below the fingerprint's 22 bits). An unmatched call raises ``NotReplayed``: that
re-grade fails and the unit keeps the score of its own run.

A class of the cell (an ``nn.Module``: a head, a loss, a layer) becomes a module that replays too
(``replayed_module``): constructed with the arguments the solution used, it holds the parameters
and buffers the reference's ``__init__`` made (same names, shapes and order, so ``state_dict``,
``.to()`` and the checks' deterministic weights work; their values when the module is small,
``MAX_STORED_VALUES``, else zeros) and its public attributes; each of its methods answers by the
call's arguments, the module's state and its training flags. Where the solution's call was
differentiated (a loss), the gradient of each scalar answer with respect to each input is recorded
and flows back through the replayed answer. The stand-in draws no random numbers: a re-grade whose
answers depend on the reference's random initialisation fails to replay (the unit keeps its own
score); it never gains a point the reference would not give.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from autograder.recorded import REFERENCES_DIR, answer, decode, encode, fingerprint, load_recordings
from utils.notebook import top_level_definitions

CALLS_NAME = ".charge-once-calls.pt.xz"   # beside the re-graded submission's notebooks
RTOL, ATOL = 1e-5, 1e-6
MAX_STORED_VALUES = 1 << 16              # a replayed module's initial values are kept up to this size
MAX_STORED_ARGUMENTS = 64 << 10          # bytes of tensors in a call's arguments kept for matching by value
CALLS_FILE: Path | None = None           # set by the worker: <submission>/CALLS_NAME when present
_LOADED: dict | None = None


def calls_path(hw: str) -> Path:
    """The recorded calls of ``hw``'s solutions into their dependencies (staff-side)."""
    return REFERENCES_DIR / f"{hw}-calls.pt.xz"


def stand_in(source: str) -> str | None:
    """The replaying stand-in for an answer cell of ``source``, or None when the cell defines
    nothing to replay (no function or class)."""
    definitions = top_level_definitions(source)
    if not definitions:
        return None
    return stand_in_source([n.name for n in definitions if isinstance(n, ast.FunctionDef)],
                           {n.name: replayable_methods(n) for n in definitions if isinstance(n, ast.ClassDef)})


def replayable_methods(cls: ast.ClassDef) -> list[str]:
    """The methods of ``cls`` a replayed module answers: plain (undecorated) methods, ``forward``
    and the public ones; ``__init__`` is replayed as the module's structure."""
    return [n.name for n in cls.body if isinstance(n, ast.FunctionDef) and not n.decorator_list
            and not (n.name.startswith("__") and n.name.endswith("__"))]


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


def _recorded_call(name: str, args: tuple, kwargs: dict) -> dict:
    """The recording of ``name``'s call with these arguments: by fingerprint, else by value."""
    recorded = _calls().get(name, {})
    hit = recorded.get(fingerprint(name, args, kwargs))
    if hit is None:
        hit = next((entry for entry in recorded.values() if entry["arguments"] is not None
                    and _close((args, kwargs), decode(entry["arguments"]))), None)
    if hit is None:
        raise NotReplayed(f"charge-once: {name} was called with arguments the solution never passed "
                          f"it, so this re-grade cannot stand in for it")
    return hit


def replayed(name: str) -> Callable:
    """A function that answers the calls the solution's ``name`` answered while it was graded."""
    def replay_call(*args, **kwargs):
        call = _recorded_call(name, args, kwargs)
        return with_gradients(call, on_device(answer(call, args, kwargs), (args, kwargs)), args, kwargs)

    replay_call.__name__ = replay_call.__qualname__ = name
    return replay_call


# -- replayed modules ------------------------------------------------------------------------------
def stored_arguments(args: tuple, kwargs: dict) -> dict | None:
    """The call's arguments as recorded for matching by value (None when too large to keep, or
    when they hold what cannot be stored, e.g. a module: such a call matches by fingerprint only)."""
    size = sum(t.numel() * t.element_size() for t in tensors_of((args, kwargs)))
    try:
        return encode((args, kwargs)) if size <= MAX_STORED_ARGUMENTS else None
    except TypeError:
        return None


def state_key(module: nn.Module) -> str:
    """A fingerprint of the module's state (every entry of its ``state_dict``, names included)."""
    return fingerprint("state", (tuple(module.state_dict().items()),), {})


def method_key_arguments(module: nn.Module, args: tuple) -> tuple:
    """What a replayed method's answer is looked up by: the module's state and training flags, then
    the call's own arguments."""
    return (state_key(module), tuple(m.training for m in module.modules()), *args)


def module_structure(module: nn.Module) -> dict:
    """What ``module``'s ``__init__`` built, encoded: submodule paths, parameters and buffers (name,
    shape, dtype, requires_grad / persistent; values when small) and the public attributes."""
    state = [*module.named_parameters(), *module.named_buffers()]
    keep_values = sum(t.numel() for _, t in state) <= MAX_STORED_VALUES

    def entry(name: str, tensor: torch.Tensor, **flags) -> dict:
        return {"name": name, "shape": list(tensor.shape), "dtype": tensor.dtype,
                "value": tensor if keep_values else None, **flags}

    def persistent(name: str) -> bool:
        owner, _, leaf = name.rpartition(".")
        return leaf not in module.get_submodule(owner)._non_persistent_buffers_set

    attributes = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        try:
            attributes[key] = encode(value)
        except TypeError:  # a callable, a config object: not replayed
            pass
    return {"modules": encode([path for path, _ in module.named_modules() if path]),
            "parameters": [encode(entry(n, p.detach(), requires_grad=p.requires_grad))
                           for n, p in module.named_parameters()],
            "buffers": [encode(entry(n, b, persistent=persistent(n))) for n, b in module.named_buffers()],
            "attributes": attributes}


def _rebuild(module: nn.Module, structure: dict) -> None:
    """Give ``module`` the submodules, parameters, buffers and attributes of ``structure``."""
    for path in decode(structure["modules"]):
        parent, _, leaf = path.rpartition(".")
        module.get_submodule(parent).add_module(leaf, nn.Module())
    for kind in ("parameters", "buffers"):
        for tree in structure[kind]:
            e = decode(tree)
            owner, _, leaf = e["name"].rpartition(".")
            value = e["value"] if e["value"] is not None else torch.zeros(e["shape"], dtype=e["dtype"])
            if kind == "parameters":
                module.get_submodule(owner).register_parameter(
                    leaf, nn.Parameter(value, requires_grad=e["requires_grad"]))
            else:
                module.get_submodule(owner).register_buffer(leaf, value, persistent=e["persistent"])
    for key, tree in structure["attributes"].items():
        setattr(module, key, decode(tree))


def replayed_module(name: str, methods: list[str]) -> type:
    """An ``nn.Module`` class standing in for the solution's class ``name``: its ``__init__`` builds
    what the reference's built for the same arguments, each of ``methods`` answers the recorded calls."""
    def __init__(self, *args, **kwargs):
        nn.Module.__init__(self)
        _rebuild(self, _recorded_call(f"{name}.__init__", args, kwargs)["structure"])

    def method(attribute: str) -> Callable:
        qualified = f"{name}.{attribute}"

        def replay_method(self, *args, **kwargs):
            call = _recorded_call(qualified, method_key_arguments(self, args), kwargs)
            result = on_device(answer(call, args, kwargs), (args, kwargs, list(self.parameters())))
            return with_gradients(call, result, args, kwargs)

        replay_method.__name__, replay_method.__qualname__ = attribute, f"{name}.{attribute}"
        return replay_method

    namespace = {"__init__": __init__, "__module__": __name__, "__qualname__": name,
                 **{m: method(m) for m in methods}}
    return type(name, (nn.Module,), namespace)


# -- devices and gradients of replayed answers -----------------------------------------------------
def tensors_of(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` (nested tuples, lists and dicts), in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_of(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_of(v)]
    return []


def _map_tensors(value: Any, fn: Callable[[int, torch.Tensor], torch.Tensor], start: list | None = None) -> Any:
    counter = start if start is not None else [0]
    if isinstance(value, torch.Tensor):
        counter[0] += 1
        return fn(counter[0] - 1, value)
    if isinstance(value, (list, tuple)):
        items = [_map_tensors(v, fn, counter) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn, counter) for k, v in value.items()}
    return value


def on_device(result: Any, inputs: Any) -> Any:
    """``result`` (recorded on the CPU) on the device of the call's first tensor."""
    device = next((t.device for t in tensors_of(inputs)), torch.device("cpu"))
    return result if device.type == "cpu" else _map_tensors(result, lambda _, t: t.to(device))


def input_gradients(args: tuple, kwargs: dict, result: Any) -> dict | None:
    """Recorded while the solution runs: for each scalar answer that requires grad, its gradient
    with respect to each input tensor that requires grad (None when no such pair)."""
    inputs = tensors_of((args, kwargs))
    wanted = [j for j, t in enumerate(inputs) if t.requires_grad]
    if not wanted or not torch.is_grad_enabled():
        return None
    rows = {}
    for i, out in enumerate(tensors_of(result)):
        if out.requires_grad and out.numel() == 1:
            grads = torch.autograd.grad(out, [inputs[j] for j in wanted], retain_graph=True, allow_unused=True)
            rows[str(i)] = [None if g is None else g.detach().cpu().clone() for g in grads]
    return {"inputs": wanted, "rows": rows} if rows else None


class _Replayed(torch.autograd.Function):
    """A recorded scalar answer whose backward is the recorded gradient (times the incoming one)."""

    @staticmethod
    def forward(ctx, value, gradients, *inputs):
        ctx.gradients = gradients
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return (None, None, *[None if g is None else grad.reshape(()) * g.to(grad.device, grad.dtype)
                              for g in ctx.gradients])


def with_gradients(call: dict, result: Any, args: tuple, kwargs: dict) -> Any:
    """``result`` whose scalar answers carry the recorded gradients back to the call's inputs."""
    recorded = call.get("gradients")
    if not recorded or not torch.is_grad_enabled():
        return result
    inputs = tensors_of((args, kwargs))
    try:
        attached = [inputs[j] for j in recorded["inputs"]]
    except IndexError:
        return result
    rows = recorded["rows"]
    return _map_tensors(result, lambda i, t: _Replayed.apply(t, rows[str(i)], *attached) if str(i) in rows else t)


def stand_in_source(functions: list[str], classes: dict[str, list[str]] | None = None) -> str:
    """The answer cell that replaces a failing dependency defining the functions ``functions`` and
    the classes ``classes`` (name: replayed methods)."""
    classes = classes or {}
    imported = ["replayed"] * bool(functions) + ["replayed_module"] * bool(classes)
    lines = ["# charge-once: the reference answers of this cell, replayed (autograder.replayed)",
             f"from autograder.replayed import {', '.join(imported)}"]
    lines += [f"{name} = replayed({name!r})" for name in functions]
    lines += [f"{name} = replayed_module({name!r}, {methods!r})" for name, methods in classes.items()]
    return "\n".join(lines) + "\n"
