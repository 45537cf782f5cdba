"""Notice code that reassigns library functions (``torch.allclose = ...``) and undo it.

Grading compares results in a process that never runs student code, so patching a comparison
cannot raise a score; but a patched ``torch.zeros`` would silently change what *other* units
compute. The loader and the grading worker take a snapshot of the protected modules before student
code runs, and after it they report and restore whatever was reassigned or deleted.
"""
from __future__ import annotations

import sys

# Modules (and classes) whose attributes student code must not reassign.
PROTECTED_MODULES = ("builtins", "math", "numpy", "numpy.testing", "torch", "torch.testing",
                     "torch.nn.functional", "torchvision.ops")
PROTECTED_CLASSES = (("torch", "Tensor"), ("numpy", "ndarray"))


def _namespaces() -> dict[str, object]:
    spaces = {name: sys.modules[name] for name in PROTECTED_MODULES if name in sys.modules}
    for module, cls in PROTECTED_CLASSES:
        if module in sys.modules and hasattr(sys.modules[module], cls):
            spaces[f"{module}.{cls}"] = getattr(sys.modules[module], cls)
    return spaces


def snapshot() -> dict[str, tuple[object, dict]]:
    """The current attributes of every protected module/class that is already imported."""
    return {name: (space, dict(vars(space))) for name, space in _namespaces().items()}


def restore_changes(before: dict[str, tuple[object, dict]]) -> list[str]:
    """Undo reassignments and deletions made since ``before``; return what was changed.

    New attributes are left alone (modules add lazily imported submodules themselves), and
    modules imported after the snapshot are not judged.
    """
    changed = []
    for name, (space, old) in before.items():
        now = vars(space)
        for key, value in old.items():
            if key in now and now[key] is value:
                continue
            changed.append(f"{name}.{key}")
            try:
                setattr(space, key, value)
            except (AttributeError, TypeError):  # read-only slot: nothing was really changed
                changed.pop()
    return changed
