"""Record what the public checks ask of the reference code: ``autograder/references/<hw>-oracles.pt.xz``.

The student bundle ships the public checks but not the oracles and mistake models they call
(``autograder.recorded``). This runs every public graded test, in this process, on the solutions'
outputs (computed by the sandboxed worker, as ``make references`` does) and again with one output at
a time perturbed (shifted, reversed, zeroed; each output of a multi-output unit alone), so the
branches that name a mistake call the reference code too; each call's answer is stored under the
fingerprint of its arguments. Hidden cases are never built or checked here, so nothing of them is
recorded. A public test that fails on the solutions stops the recording (nothing written).

    python -m autograder.staff.record_oracles [hw ...]      # run by `make references`
"""
from __future__ import annotations

import argparse
import copy
import functools
import inspect
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from autograder import feedback as fb
from autograder.grading import Submission, graded_tests
from autograder.recorded import (answer, encode, fingerprint, import_reference_modules, record_call,
                                 recordings_path, save_recordings)
from autograder.sandbox.supervisor import REPO_ROOT
from autograder.staff.make_references import solution_outputs
from autograder.units import HOMEWORKS

OUTCOMES = (Exception, pytest.skip.Exception, pytest.fail.Exception)


class Recorder:
    """Wraps every function of the reference modules; while ``active``, an outermost call's answer
    is stored (encoded) under its fingerprint and returned as the replay would return it."""

    def __init__(self, modules: list) -> None:
        self.calls: dict[str, Any] = {}
        self.functions: dict[str, list[str]] = {}
        self.constants: dict[str, dict[str, Any]] = {}
        self.active = False
        self._depth = 0
        for module in modules:
            names = []
            for name, obj in list(vars(module).items()):
                if name.startswith("__") or inspect.ismodule(obj) or inspect.isclass(obj):
                    continue
                if inspect.isfunction(obj) or inspect.isbuiltin(obj):
                    setattr(module, name, self._wrap(f"{module.__name__}.{name}", obj))
                    names.append(name)
                    continue
                try:
                    self.constants.setdefault(module.__name__, {})[name] = encode(obj)
                except TypeError:
                    pass  # not a value a check reads (e.g. a typing alias)
            self.functions[module.__name__] = sorted(names)

    def _wrap(self, qualified: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            if not self.active or self._depth:
                return fn(*args, **kwargs)
            key = fingerprint(qualified, args, kwargs)
            if key not in self.calls:
                self._depth += 1
                try:
                    _, self.calls[key] = record_call(fn, args, kwargs)
                finally:
                    self._depth -= 1
            return answer(self.calls[key], args, kwargs)
        return recorded

    def payload(self) -> dict:
        return {"functions": self.functions, "constants": self.constants, "calls": self.calls}


class RecordingSubmission(Submission):
    """The solutions' outputs (public cases), one of them optionally perturbed."""

    public_only = True

    def __init__(self, hw: str, outputs: dict, perturbed: tuple | None = None) -> None:
        super().__init__(hw)
        self.outputs, self.perturbed = outputs, perturbed
        self.requested: list[tuple[str, str]] = []

    def output(self, unit: str, case: str) -> Any:
        if not self.units[unit].case(case).public:
            raise fb.GradingFailure(f"kit error: a public check of {unit!r} uses the hidden case {case!r}",
                                    fb.ERROR)
        if (unit, case) not in self.requested:
            self.requested.append((unit, case))
        value = copy.deepcopy(self.outputs[unit, case])
        if self.perturbed is not None and self.perturbed[0] == (unit, case):
            value = self.perturbed[1](value)
        return value


# -- perturbations: each takes a solution output and returns a wrong one of the same structure ----
def _map(value: Any, tensor_fn: Callable, number_fn: Callable) -> Any:
    if isinstance(value, torch.Tensor):
        return tensor_fn(value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return number_fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map(v, tensor_fn, number_fn) for v in value) if type(value) in (list, tuple) \
            else value
    if isinstance(value, dict):
        return {k: _map(v, tensor_fn, number_fn) for k, v in value.items()}
    return value


def _shift(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.bool:
        return ~t
    return t * 1.1 + 0.37 if t.is_floating_point() else t + 1


def _reverse(t: torch.Tensor) -> torch.Tensor:
    return t.flip(0) if t.dim() and len(t) > 1 else _shift(t)


PERTURBATIONS: dict[str, Callable[[Any], Any]] = {
    "shifted": lambda v: _map(v, _shift, lambda x: x * 1.1 + 1),
    "reversed": lambda v: _map(v, _reverse, lambda x: x + 1),
    "zeroed": lambda v: _map(v, torch.zeros_like, lambda x: 0 * x),
}


def _one_part(value: Any) -> list[Callable[[Any], Any]]:
    """For a tuple, list or dict output: shift one element at a time (a mistake in one output)."""
    if isinstance(value, dict):
        return [lambda v, k=k: {**v, k: PERTURBATIONS["shifted"](v[k])} for k in value]
    if type(value) in (list, tuple) and 1 < len(value) <= 8:
        return [lambda v, i=i: type(v)(PERTURBATIONS["shifted"](x) if j == i else x for j, x in enumerate(v))
                for i in range(len(value))]
    return []


def _run(test: Callable, submission: RecordingSubmission) -> BaseException | None:
    try:
        test(submission)
    except OUTCOMES as err:
        return err
    finally:
        submission.close()
    return None


def record(hw: str, solutions: Path = REPO_ROOT / "solutions") -> dict:
    modules = import_reference_modules(hw)           # patched before any check imports them by name
    recorder = Recorder(modules)
    if not modules:  # no reference code to record (the final project: scored by AP on pictures)
        return recorder.payload()
    outputs = solution_outputs(hw, solutions, lambda case: case.public)  # hidden inputs: not recorded
    recorder.active = True
    units = RecordingSubmission(hw, outputs).units
    with tempfile.TemporaryDirectory(prefix="record-inputs-") as tmp:
        for gid, unit in units.items():               # what the scoring side builds for the worker
            for k, case in enumerate(c for c in unit.cases if c.public):
                folder = Path(tmp) / f"{gid}-{k}"
                folder.mkdir()
                case.make_inputs(folder)
    failures = []
    for test in (t for t in graded_tests(hw) if t.graded.public):
        submission = RecordingSubmission(hw, outputs)
        error = _run(test, submission)
        if error is not None:
            failures.append(f"{test.graded.unit}: {test.graded.title}: {type(error).__name__}: {error}")
            continue
        for key in submission.requested:
            variants = list(PERTURBATIONS.values()) + _one_part(outputs[key])
            for perturb in variants:
                _run(test, RecordingSubmission(hw, outputs, (key, perturb)))
    recorder.active = False
    if failures:
        raise SystemExit("the solutions fail public checks; nothing recorded:\n  " + "\n  ".join(failures))
    return recorder.payload()


def record_homeworks(argv: list[str] | None, description: str, make: Callable[[str], dict],
                     path_of: Callable[[str], Path], count: Callable[[dict], str]) -> None:
    """The command line of the recorders: ``make(hw)`` for each homework named (default all),
    saved to ``path_of(hw)``, one line each."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("homeworks", nargs="*", default=list(HOMEWORKS))
    for hw in parser.parse_args(argv).homeworks:
        started = time.monotonic()
        payload = make(hw)
        path = path_of(hw)
        save_recordings(payload, path)
        print(f"wrote {path.relative_to(REPO_ROOT)}: {count(payload)} ({path.stat().st_size / 1024:.0f} KiB, "
              f"{time.monotonic() - started:.0f} s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    record_homeworks(argv, __doc__.splitlines()[0], record, recordings_path,
                     lambda payload: f"{len(payload['calls'])} recorded calls")


if __name__ == "__main__":
    main()
