"""Answer cells that reach into library or interpreter internals, found by reading their source.

A watch inside the process that runs student code is advisory: code can look for the grader's
objects (``gc``, frames), switch off a dispatch mode, reload a library module or call C. This module
reads the answer cells (never runs them) and lists every place that reaches for such machinery, for
a person to look at: the class summary lists them, and Gradescope gets them as a staff-only test
(``visibility: hidden``). A finding never costs points on its own; legitimate code rarely needs any
of these (an answer that does is worth a look either way).
"""
from __future__ import annotations

import ast
from pathlib import Path

from utils.notebook import NotebookFormatError, read_cells

# Modules whose only use in an exercise answer is to reach the interpreter, the process or the grader.
REACHING_MODULES = {
    "gc": "the garbage collector (finds any live object)", "ctypes": "raw memory and C functions",
    "inspect": "frames and source of the caller", "importlib": "module (re)loading",
    "subprocess": "other processes", "multiprocessing": "other processes", "signal": "signal handlers",
    "socket": "the network", "builtins": "the interpreter's builtins", "marshal": "code objects",
    "sys": "the interpreter's state", "threading": "threads that outlive the call",
    "atexit": "code run at exit", "types": "code and function objects",
}
# Attributes that reach the interpreter's or the grader's machinery.
REACHING_ATTRIBUTES = {
    "_getframe", "f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame",
    "__code__", "__globals__", "__closure__", "__builtins__", "__subclasses__", "__dict__", "modules",
    "settrace", "setprofile", "reload", "get_referrers", "get_objects", "_disable_current_modes",
    "_ExcludeDispatchKeyGuard", "_C", "dlopen", "CDLL",
    # a second, unwatched copy of a module: mod.__spec__.loader.exec_module(new), importlib.util
    "__spec__", "__loader__", "loader", "exec_module", "module_from_spec", "spec_from_file_location",
}
REACHING_CALLS = {"exec", "eval", "compile", "__import__", "breakpoint", "globals"}
LIBRARIES = ("torch", "torchvision", "numpy")   # their private names (``_x``) are internals


def _private(name: str) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in name.split("."))


def _library_aliases(tree: ast.AST) -> set[str]:
    """Names a cell binds to a library module or object (``import torch as t``, ``from torch import nn``)."""
    names = set(LIBRARIES) | {"np", "F", "nn", "ops"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in LIBRARIES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            names |= {a.asname or a.name for a in node.names}
    return names


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def findings(source: str) -> list[tuple[int, str]]:
    """(line, what) for every reach into internals in one cell's source, in line order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [(err.lineno or 0, "does not parse, so it could not be reviewed")]
    aliases = _library_aliases(tree)
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                root = module.split(".")[0]
                if root in REACHING_MODULES:
                    found.add((node.lineno, f"imports {module} ({REACHING_MODULES[root]})"))
                elif root in LIBRARIES and _private(module):
                    found.add((node.lineno, f"imports {module} (library internals)"))
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    found.add((node.lineno, f"imports {', '.join(private)} from {node.module} (library internals)"))
        elif isinstance(node, ast.Attribute):
            if node.attr in REACHING_ATTRIBUTES:
                found.add((node.lineno, f"uses .{node.attr}"))
            elif _private(node.attr) and _root_name(node) in aliases:
                found.add((node.lineno, f"uses {_root_name(node)}...{node.attr} (library internals)"))
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in REACHING_CALLS:
                found.add((node.lineno, f"calls {node.func.id}()"))
            elif isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "delattr") \
                    and len(node.args) >= 2:
                name = node.args[1]
                if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                    # '_disable' + '_current_modes': a name spelled out of constants hides what it
                    # reaches; so does any computed name on a library (getattr(self, f"layer{k}") is fine)
                    spelled = not any(isinstance(n, ast.Name) for n in ast.walk(name))
                    if spelled or _root_name(node.args[0]) in aliases:
                        found.add((node.lineno, f"{node.func.id}() with a computed attribute name"))
                elif name.value.startswith("_") or name.value in REACHING_ATTRIBUTES:
                    found.add((node.lineno, f"{node.func.id}(..., {name.value!r})"))
    return sorted(found)


def review(folder: Path) -> list[str]:
    """``unit (notebook, line n): what`` for every finding in the answer cells of the notebooks in
    ``folder`` (staged under their released names)."""
    lines = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            cells = read_cells(path)
        except NotebookFormatError:
            continue  # the grader reports unreadable notebooks itself
        for cell in cells:
            if cell.nbgrader.get("solution") and cell.cell_type == "code":
                lines += [f"{cell.grade_id or '?'} ({path.name}, line {line}): {what}"
                          for line, what in findings(cell.source)]
    return lines
