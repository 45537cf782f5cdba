"""Notice calls to the library ops an exercise asks the student to write (``Unit.forbidden``).

Two nets, both only open while the student's code runs (never while the kit builds a case):

- by name: each forbidden Python function (``torchvision.ops.box_iou``...) gets a new code object
  that records the call and runs the original. The function object itself changes, so an alias
  taken earlier (``from torchvision.ops import nms as my_nms`` when the notebook loaded) is caught
  too;
- at the dispatcher: ``torch.ops`` names (``torch.ops.torchvision.nms``) are watched by a
  TorchDispatchMode, which sees the op however it was reached (a re-imported module, an alias of
  ``torch.ops``, torchvision's own wrapper).

It runs in the forked child of one unit, so the changes die with it.
"""
from __future__ import annotations

import importlib
import linecache
import sys
import types
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOOK_GLOBAL = "__facekit_forbidden_hooks__"
TORCH_OPS_PREFIX = "torch.ops."


def _resolve(dotted: str) -> Any:
    """The object a dotted name points to (None when it does not exist in this install)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _student_line() -> str:
    """Where in the notebook the call came from (the innermost frame of a notebook cell)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<") and ".ipynb" in frame.f_code.co_filename:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            return f" (line {frame.f_lineno} in {frame.f_code.co_name}: {line})"
        frame = frame.f_back
    return ""


class _Mode(TorchDispatchMode):
    def __init__(self, watcher: "ForbiddenCalls") -> None:
        super().__init__()
        self.watcher = watcher

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        name = self.watcher.ops.get(func.overloadpacket._qualified_op_name)
        if name is not None:
            self.watcher.record(name)
        return func(*args, **(kwargs or {}))


class ForbiddenCalls:
    """Install once per child with ``install()``; wrap each student call in ``with watcher:``;
    ``calls`` lists what was called (first call of each name, with the notebook line)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.ops: dict[str, str] = {}          # 'torchvision::nms' -> the name to report
        self.calls: list[str] = []
        self._active = False
        self._depth = 0
        self._mode: _Mode | None = None

    def record(self, name: str) -> None:
        """Note a call, unless it comes from inside another forbidden call being recorded."""
        if self._active and self._depth == 0 and not any(c.split(" ")[0] == name for c in self.calls):
            self.calls.append(name + _student_line())

    def install(self) -> None:
        seen: set[int] = set()
        for name in self.names:
            obj = _resolve(name)
            if isinstance(obj, torch._ops.OpOverloadPacket):
                self.ops.setdefault(obj._qualified_op_name, name)
            elif isinstance(obj, types.FunctionType) and id(obj) not in seen:
                seen.add(id(obj))
                self._wrap(obj, name)

    def _wrap(self, fn: types.FunctionType, name: str) -> None:
        original = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                                      fn.__closure__)
        original.__kwdefaults__ = fn.__kwdefaults__

        def hook(*args, **kwargs):
            self.record(name)
            self._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
        hooks = fn.__globals__.setdefault(HOOK_GLOBAL, {})
        key = f"{fn.__module__}.{fn.__qualname__}"
        hooks[key] = hook
        free = ", ".join(fn.__code__.co_freevars)
        # Same free variables as the original, so the new code fits the function's closure.
        source = (f"def _outer({free}):\n"
                  f"    def {fn.__name__}(*args, **kwargs):\n"
                  + (f"        ({free},)\n" if free else "")
                  + f"        return {HOOK_GLOBAL}[{key!r}](*args, **kwargs)\n"
                  f"    return {fn.__name__}\n")
        scope: dict = {}
        exec(compile(source, f"<forbidden {name}>", "exec"), scope)
        inner = next(c for c in scope["_outer"].__code__.co_consts if isinstance(c, types.CodeType))
        fn.__code__ = inner

    def __enter__(self) -> "ForbiddenCalls":
        self._active = True
        if self.ops:
            self._mode = _Mode(self)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._mode is not None:
            try:
                self._mode.__exit__(*exc)
            except (RuntimeError, AssertionError, IndexError):  # student code popped the mode
                self.calls.append("torch dispatch-mode internals (it removed the grader's watch)")
            self._mode = None
        self._active = False
