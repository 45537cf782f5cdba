"""Answers hidden in the code a student bundle ships: a leak check by behaviour, not by text.

Every function or class that a shipped module defines (the given packages ``detector/``, ``data/``,
``utils/`` and the homework's grading code) and whose name, or whose parameter list, matches a
graded answer's (read from the release's answer cells) is run through that unit's public checks,
in-process, as the notebook's check cells run a student's definition. One that passes every public
check of the unit is an answer the bundle would give away — e.g. a given helper that already
implements the exercise under another name.

    python utils/deploy/implementations.py <hw> <bundle folder>   # inside the bundle; prints JSON
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

SEARCHED = ("detector", "data", "utils")     # the given packages; plus autograder/<hw>/ (not its tests)
MIN_MATCHING_PARAMETERS = 2                   # one-argument signatures match too much to mean anything


def graded_definitions(release: Path) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """{grade_id: [(name, parameter names)]} of the functions and classes each answer cell defines."""
    from utils.notebook import read_cells, top_level_definitions
    out: dict[str, list] = {}
    for path in sorted(release.glob("*.ipynb")):
        for cell in read_cells(path):
            if not (cell.nbgrader.get("solution") and cell.grade_id):
                continue
            for node in top_level_definitions(cell.source):
                params = (tuple(a.arg for a in node.args.args + node.args.kwonlyargs)
                          if isinstance(node, ast.FunctionDef) else ())
                out.setdefault(cell.grade_id, []).append((node.name, params))
    return out


def _modules(root: Path, hw: str) -> list[str]:
    names = []
    for package in SEARCHED:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if "deploy" in rel.parts or any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                continue
            names.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    names += [f"autograder.{hw}.{p.stem}" for p in sorted((root / "autograder" / hw).glob("*.py"))
              if not p.stem.startswith("test_") and p.stem != "__init__"]
    return names


def _parameters(obj) -> tuple[str, ...]:
    try:
        return tuple(p.name for p in inspect.signature(obj).parameters.values()
                     if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    except (TypeError, ValueError):
        return ()


def candidates(hw: str, root: Path) -> list[tuple[str, str, str, str]]:
    """(unit, answer name, module, attribute) for every shipped definition matching an answer."""
    graded = graded_definitions(root / "assignments" / hw)
    found = []
    for module_name in _modules(root, hw):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # a script that needs arguments or data: nothing to import
            continue
        for attr, obj in vars(module).items():
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != module_name:
                continue
            params = _parameters(obj)
            for unit, definitions in graded.items():
                for name, wanted in definitions:
                    if attr == name or (len(wanted) >= MIN_MATCHING_PARAMETERS and params == wanted):
                        found.append((unit, name, module_name, attr))
    return found


def passing(hw: str, root: Path) -> list[str]:
    """``module.attr passes every public check of unit`` for each candidate that does."""
    from autograder.grading import LiveSubmission, graded_tests
    from autograder.results import OK, check_result
    tests = [t for t in graded_tests(hw) if t.graded.public]
    leaks = []
    for unit, name, module_name, attr in candidates(hw, root):
        checks = [t for t in tests if t.graded.unit == unit]
        obj = getattr(importlib.import_module(module_name), attr)
        submission = LiveSubmission(hw, {name: obj})
        try:
            results = []
            for test in checks:
                try:
                    test(submission)
                    results.append(check_result(test.graded, None, 0.0).kind)
                except BaseException as err:  # noqa: BLE001 - a check's outcome, whatever it is
                    if isinstance(err, (KeyboardInterrupt, SystemExit)):
                        raise
                    results.append(check_result(test.graded, err, 0.0).kind)
        finally:
            submission.close()
        if checks and all(kind == OK for kind in results):
            leaks.append(f"{module_name}.{attr} passes every public check of {unit} (the answer {name})")
    return leaks


def find(hw: str, folder: Path) -> list[str]:
    """Run ``passing`` inside the bundle ``folder`` (its stubs and recordings, not the kit's)."""
    # Run by path: the bundle holds no utils/deploy, and its own packages must be the ones imported.
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), hw, str(folder)],
                          cwd=folder, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, PYTHONPATH=str(folder), OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        return [f"the implementation check could not run: {proc.stderr[-1500:]}"]
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    hw_name, bundle = sys.argv[1], Path(sys.argv[2]).resolve()
    print(json.dumps(passing(hw_name, bundle)))
