"""Record the calls each unit's solution makes into the units it depends on:
``autograder/references/<hw>-calls.pt.xz``, replayed by charge-once (``autograder.replayed``).

For every unit with dependencies, the solution's notebook is loaded in this process (the solutions
are the course staff's own code) and every case, public and hidden, runs as the grading worker runs
it (same inputs, same seeds), with each function that a dependency's answer cell defines wrapped
wherever the loaded notebooks bind it, and each class's ``__init__`` and replayed methods wrapped in
place; each call's arguments and answer are stored under its fingerprint (a construction: the
module's structure; a method: keyed by the module's state and training flags too; a differentiated
call: the gradients of its scalar answers). Staff-side only: never in the student bundle.

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
from autograder.recorded import fingerprint, record_call
from autograder.staff.record_oracles import record_homeworks
from autograder.replayed import calls_path, input_gradients, method_key_arguments, module_structure, \
    replayable_methods, stored_arguments
from autograder.sandbox.supervisor import CASE_SEED, REPO_ROOT
from autograder.units import homework_units
from utils.notebook import read_cells, top_level_definitions

def defined_names(notebook: Path, grade_id: str) -> tuple[list[str], dict[str, list[str]]]:
    """(top-level functions, {class: replayed methods}) the answer cell ``grade_id`` of ``notebook``
    defines."""
    for cell in read_cells(notebook):
        if cell.grade_id == grade_id:
            definitions = top_level_definitions(cell.source)
            return ([n.name for n in definitions if isinstance(n, ast.FunctionDef)],
                    {n.name: replayable_methods(n) for n in definitions if isinstance(n, ast.ClassDef)})
    return [], {}


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


def _record(fn: Callable, args: tuple, kwargs: dict, key_args: tuple, name: str, store: dict):
    """``fn(*args, **kwargs)``, its answer stored in ``store`` under the fingerprint of ``key_args``
    (the call's arguments, plus the module's state for a method)."""
    try:
        key = fingerprint(name, key_args, kwargs)
        arguments = stored_arguments(key_args, kwargs)  # before the call changes them
    except TypeError:  # an argument the replay could not match (a module, a generator): not replayed
        return fn(*args, **kwargs)
    if key in store:
        return fn(*args, **kwargs)
    result, recording = record_call(fn, args, kwargs, strict=False)
    if recording is not None:  # else an answer that cannot be stored: not replayed
        store[key] = {"arguments": arguments, **recording}
        gradients = input_gradients(args, kwargs, result)
        if gradients is not None:
            store[key]["gradients"] = gradients
    return result


def _wrap(fn: Callable, name: str, store: dict) -> Callable:
    @functools.wraps(fn)
    def recorded(*args, **kwargs):
        return _record(fn, args, kwargs, args, name, store)
    recorded.__facekit_recorded__ = True
    return recorded


def _wrap_class(cls: type, methods: list[str], calls: dict) -> None:
    """Record, in place, the structure each construction of ``cls`` builds and the answers of its
    ``methods`` (an ``nn.Module`` only: other classes are not replayed)."""
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)) or "__facekit_recorded__" in vars(cls):
        return
    name, init = cls.__name__, cls.__init__
    constructions = calls.setdefault(f"{name}.__init__", {})

    @functools.wraps(init)
    def recorded_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        try:
            key = fingerprint(f"{name}.__init__", args, kwargs)
            if key not in constructions:
                constructions[key] = {"arguments": stored_arguments(args, kwargs),
                                      "structure": module_structure(self)}
        except TypeError:  # arguments the replay could not match: this construction is not replayed
            pass

    def recorded_method(method: Callable, qualified: str) -> Callable:
        store = calls.setdefault(qualified, {})

        @functools.wraps(method)
        def recorded(self, *args, **kwargs):
            return _record(functools.partial(method, self), args, kwargs, method_key_arguments(self, args),
                           qualified, store)
        return recorded

    cls.__init__ = recorded_init
    for method in methods:
        if isinstance(vars(cls).get(method), types.FunctionType):
            setattr(cls, method, recorded_method(vars(cls)[method], f"{name}.{method}"))
    cls.__facekit_recorded__ = True


def record_calls(hw: str, solutions: Path = REPO_ROOT / "solutions") -> dict[str, dict]:
    """{function name: {fingerprint: {"arguments", "result"}}} of the calls into dependencies."""
    from utils.notebook import load_notebook

    units = homework_units(hw)
    release = REPO_ROOT / "assignments" / hw
    calls: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="record-calls-") as tmp:
        for gid, unit in units.items():
            chain = [dep for dep, _ in dependency_chain(units, gid)]
            defined = [defined_names(solutions / hw / units[dep].notebook, dep) for dep in chain]
            names = {f for functions, _ in defined for f in functions}
            classes = {c: methods for _, found in defined for c, methods in found.items()}
            if not names and not classes:
                continue
            module = load_notebook(solutions / hw / unit.notebook, release / unit.notebook)
            for namespace in _namespaces(module):
                for name in names:
                    fn = namespace.get(name)
                    if isinstance(fn, types.FunctionType) and not getattr(fn, "__facekit_recorded__", False):
                        namespace[name] = _wrap(fn, name, calls.setdefault(name, {}))
                for name, methods in classes.items():
                    _wrap_class(namespace.get(name), methods, calls)
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
