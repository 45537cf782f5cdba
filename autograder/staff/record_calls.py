"""Record the calls each unit's solution makes into the units it depends on:
``autograder/references/<hw>-calls.pt.xz``, replayed by charge-once (``autograder.replayed``).

For every unit with dependencies, the solution's notebook is loaded in this process (the solutions
are the course staff's own code) and every case, public and hidden, runs as the grading worker runs
it (same inputs, same seeds), with each function that a dependency's answer cell defines wrapped
wherever the loaded notebooks bind it; each call's arguments and answer are stored under its
fingerprint. Staff-side only: never in the student bundle.

    python -m autograder.staff.record_calls [hw ...]      # run by `make references`
"""
from __future__ import annotations

import ast
import functools
import random
import tempfile
import types
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from autograder.explain import dependency_chain
from autograder.recorded import encode, fingerprint, record_call
from autograder.staff.record_oracles import record_homeworks
from autograder.replayed import calls_path
from autograder.sandbox.supervisor import CASE_SEED, REPO_ROOT
from autograder.units import homework_units
from utils.notebook import read_cells, top_level_definitions

def defined_functions(notebook: Path, grade_id: str) -> list[str]:
    """Top-level functions the answer cell ``grade_id`` of ``notebook`` defines (classes are not
    replayed: a re-grade uses the reference cell for those)."""
    for cell in read_cells(notebook):
        if cell.grade_id == grade_id:
            return [n.name for n in top_level_definitions(cell.source) if isinstance(n, ast.FunctionDef)]
    return []


def _namespaces(module: types.ModuleType) -> list[dict]:
    """The module's globals and those of every notebook module its functions come from."""
    found, queue = {}, [vars(module)]
    while queue:
        names = queue.pop()
        if id(names) in found:
            continue
        found[id(names)] = names
        for value in list(names.values()):
            fn = value if isinstance(value, types.FunctionType) else None
            if fn is not None and "__notebook_report__" in fn.__globals__:
                queue.append(fn.__globals__)
            elif isinstance(value, type):
                queue += [m.__globals__ for m in vars(value).values() if isinstance(m, types.FunctionType)
                          and "__notebook_report__" in m.__globals__]
    return list(found.values())


def _wrap(fn: Callable, name: str, store: dict) -> Callable:
    @functools.wraps(fn)
    def recorded(*args, **kwargs):
        try:
            key = fingerprint(name, args, kwargs)
            arguments = encode((args, kwargs))  # before the call changes them
        except TypeError:  # an argument the replay could not match (a module, a generator): not replayed
            return fn(*args, **kwargs)
        if key in store:
            return fn(*args, **kwargs)
        result, recording = record_call(fn, args, kwargs, strict=False)
        if recording is not None:  # else an answer that cannot be stored: not replayed
            store[key] = {"arguments": arguments, **recording}
        return result
    recorded.__facekit_recorded__ = True
    return recorded


def record_calls(hw: str, solutions: Path = REPO_ROOT / "solutions") -> dict[str, dict]:
    """{function name: {fingerprint: {"arguments", "result"}}} of the calls into dependencies."""
    from utils.notebook import load_notebook

    units = homework_units(hw)
    release = REPO_ROOT / "assignments" / hw
    calls: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="record-calls-") as tmp:
        for gid, unit in units.items():
            chain = [dep for dep, _ in dependency_chain(units, gid)]
            names = {f for dep in chain for f in defined_functions(solutions / hw / units[dep].notebook, dep)}
            if not names:
                continue
            module = load_notebook(solutions / hw / unit.notebook, release / unit.notebook)
            for namespace in _namespaces(module):
                for name in names:
                    fn = namespace.get(name)
                    if isinstance(fn, types.FunctionType) and not getattr(fn, "__facekit_recorded__", False):
                        namespace[name] = _wrap(fn, name, calls.setdefault(name, {}))
            for k, case in enumerate(unit.cases):
                folder = Path(tmp) / f"{gid}-{k}"
                folder.mkdir()
                inputs = case.make_inputs(folder)
                torch.manual_seed(CASE_SEED)
                np.random.seed(CASE_SEED)
                random.seed(CASE_SEED)
                unit.call(module, inputs, torch.device("cpu"))
    return calls


def main(argv: list[str] | None = None) -> None:
    record_homeworks(argv, __doc__.splitlines()[0], record_calls, calls_path,
                     lambda calls: f"{sum(len(c) for c in calls.values())} calls of {len(calls)} functions")


if __name__ == "__main__":
    main()
