"""Notice calls to the library ops an exercise asks the student to write (``Unit.forbidden``).

Two nets, both only open while the student's code runs (never while the kit builds a case):

- by name: each forbidden Python function (``torchvision.ops.box_iou``...) gets a new code object
  that records the call and runs the original. The function object itself changes, so an alias
  taken earlier (``from torchvision.ops import nms as my_nms`` when the notebook loaded) is caught
  too;
- at the dispatcher: ``torch.ops`` names (``torch.ops.torchvision.nms``) are watched by a
  TorchDispatchMode, which sees the op however it was reached (a re-imported module, an alias of
  ``torch.ops``, torchvision's own wrapper);
- and under it, in the grading worker, the op's native kernels are replaced by one that records the
  call and raises (``remove_kernels``): what the exercise asks for is not there to call, even by
  code that switched the two watches above off.

It runs in the forked child of one unit, so the changes die with it.
"""
from __future__ import annotations

import importlib
import linecache
import sys
import types
import warnings
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOOK_GLOBAL = "__facekit_forbidden_hooks__"
KERNEL_KEYS = ("CPU", "CUDA")          # where torchvision registers its native kernels
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


def _calling_cell() -> tuple[str | None, str]:
    """(grade_id, " (line n in f: source)") of the innermost notebook frame the call came from;
    (None, "") when none is on the stack. Notebook code is compiled as ``<nb cell k: grade_id>``."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith("<") and ".ipynb" in filename:
            line = linecache.getline(filename, frame.f_lineno).strip()
            grade_id = filename[:-1].rsplit(": ", 1)[-1] if ": " in filename else None
            return grade_id, f" (line {frame.f_lineno} in {frame.f_code.co_name}: {line})"
        frame = frame.f_back
    return None, ""


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

    def __init__(self, names: tuple[str, ...], charged_elsewhere: dict[str, tuple[str, ...]] | None = None) -> None:
        self.names = names
        # {answer cell of a unit this one calls: the names that unit forbids}: a call made from such
        # a cell is that unit's mistake, charged there once (its own grading sees the same call).
        self.charged_elsewhere = charged_elsewhere or {}
        self.ops: dict[str, str] = {}          # 'torchvision::nms' -> the name to report
        self.calls: list[str] = []
        self._wrapped: list[tuple[types.FunctionType, types.CodeType]] = []   # (function, its own code)
        self._active = False
        self._depth = 0
        self._mode: _Mode | None = None
        self._libraries: list = []

    def record(self, name: str) -> None:
        """Note a call, unless it comes from inside another forbidden call being recorded, or from
        the answer cell of a called unit that forbids it too (charged to that unit instead)."""
        if self._active and self._depth == 0 and not any(c.split(" ")[0] == name for c in self.calls):
            cell, where = _calling_cell()
            if name not in self.charged_elsewhere.get(cell, ()):
                self.calls.append(name + where)

    def install(self) -> None:
        seen: set[int] = set()
        for name in self.names:
            obj = _resolve(name)
            if isinstance(obj, torch._ops.OpOverloadPacket):
                self.ops.setdefault(obj._qualified_op_name, name)
            elif isinstance(obj, types.FunctionType) and id(obj) not in seen \
                    and not obj.__code__.co_filename.startswith("<forbidden "):  # never wrapped twice
                seen.add(id(obj))
                self._wrap(obj, name)

    def remove_kernels(self) -> list[str]:
        """Replace the native CPU and CUDA kernels of the watched ``torch.ops`` by one that records
        the call and raises, so no trick that switches the Python watch off (a dispatch mode
        popped, a dispatch key excluded, a module reloaded) reaches the library's computation.
        Only in the forked child of one unit: a kernel cannot be put back. An op that a unit this
        one calls also forbids keeps its kernel (that unit's call is charged there, once, and this
        unit must still run). Returns the ops removed."""
        kept = {obj._qualified_op_name for names in self.charged_elsewhere.values() for name in names
                if isinstance(obj := _resolve(name), torch._ops.OpOverloadPacket)}
        removed = []
        for qualified, name in self.ops.items():
            if qualified in kept:
                continue
            namespace, op = qualified.split("::")
            library = torch.library.Library(namespace, "IMPL")

            def refuse(*args, _name=name, **kwargs):
                self.record(_name)
                raise RuntimeError(f"{_name} is not available while this exercise is graded: "
                                   f"write the computation yourself")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
                for key in KERNEL_KEYS:
                    library.impl(op, refuse, key)
            self._libraries.append(library)  # a Library's registrations last as long as it does
            removed.append(qualified)
        return removed

    def uninstall(self) -> None:
        """Give every wrapped function its own code back (the worker's child never needs this: its
        changes die with it; in-process tests do)."""
        for fn, code in reversed(self._wrapped):
            fn.__code__ = code
        self._wrapped.clear()

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
        key = f"{fn.__module__}.{fn.__qualname__}@{id(fn)}"  # a reload leaves two such functions in one module
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
        self._wrapped.append((fn, fn.__code__))
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
