"""What graded tests see: the ``graded`` decorator, a submission's outputs, and the references.

A graded test is a plain function ``test_x(submission)`` decorated with ``@graded(unit, points,
title)``. It asks ``submission.output(unit, case)`` for what the student's code returned on a case
and checks it with ``autograder.feedback``. The same functions run under pytest (the submission is
a sandboxed worker, ``SandboxSubmission``) and in the notebook's check cells (the submission is the
live notebook namespace, ``LiveSubmission``).
"""
from __future__ import annotations

import importlib
import pkgutil
import re
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from autograder import feedback as fb
from autograder.explain import dependency_chain, dependency_text, not_implemented_text
from autograder.sandbox.supervisor import DEFAULT_MEMORY_GB, DEFAULT_UNIT_TIMEOUT, Sandbox
from autograder.sandbox.transfer import unwrap
from autograder.submitted import SubmittedNotebooks
from autograder.units import Unit, homework_units, to_device

REFERENCES_DIR = Path(__file__).resolve().parent / "references"

_LOAD_KINDS = {"missing": fb.MISSING, "not_implemented": fb.NOT_IMPLEMENTED, "error": fb.ERROR,
               "tampered": fb.TAMPERED, "skipped": fb.CRASHED}
FORBIDDEN = "forbidden call"  # the unit called the library op its exercise asks for (Unit.forbidden)
_CASE_KINDS = {"not_implemented": fb.NOT_IMPLEMENTED, "error": fb.ERROR, "tampered": fb.TAMPERED,
               "forbidden": FORBIDDEN}
_LAST_FRAME = re.compile(r"line \d+ in (\w+):")  # the worker's short traceback: "line 12 in encode: ..."


@dataclass(frozen=True)
class Graded:
    unit: str
    points: float
    title: str
    public: bool = True
    visible: bool | None = None      # Gradescope shows the result before the due date (None: = public)

    @property
    def shown_now(self) -> bool:
        return self.public if self.visible is None else self.visible


def graded(unit: str, points: float, title: str, public: bool = True, visible: bool | None = None) -> Callable:
    """Mark a test as worth ``points`` for answer cell ``unit``; ``public`` tests also run in the
    notebook's check cells (and the student bundle). ``visible``: Gradescope shows the result before
    the due date (default: only public tests'); a hidden test whose data stays secret may still
    show its result, as the final project's leaderboard split does."""
    def decorate(fn: Callable) -> Callable:
        fn.graded = Graded(unit, points, title, public, visible)
        return pytest.mark.graded(fn.graded)(fn)
    return decorate


def graded_tests(hw: str) -> list[Callable]:
    """Every ``@graded`` test function of ``autograder/<hw>/test_*.py``, in file order."""
    package = importlib.import_module(f"autograder.{hw}")
    tests = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("test_"):
            module = importlib.import_module(f"autograder.{hw}.{info.name}")
            tests += [fn for fn in vars(module).values()
                      if callable(fn) and isinstance(getattr(fn, "graded", None), Graded)]
    return tests


def references_path(hw: str) -> Path:
    return REFERENCES_DIR / f"{hw}.pt"


def load_references(hw: str) -> dict:
    path = references_path(hw)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make references` (instructors) or restore "
                                f"the file from the release")
    return torch.load(path, weights_only=True)


class Submission:
    """Outputs of one submission's units, plus the shared inputs and references.
    ``public_only``: the submission may run public cases only (the notebook's check cells)."""

    public_only = False

    def __init__(self, hw: str, device: str = "cpu") -> None:
        self.hw = hw
        self.device = torch.device(device)
        self.units: dict[str, Unit] = homework_units(hw)
        self._references: dict | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="grading-inputs-")
        self._inputs: dict[tuple[str, str], dict] = {}

    def inputs(self, unit: str, case: str) -> dict[str, Any]:
        """A case's inputs built in this process (CPU), e.g. to compute an oracle's answer."""
        key = (unit, case)
        if key not in self._inputs:
            case_dir = Path(self._tmp.name) / f"{unit}-{len(self._inputs)}"
            case_dir.mkdir()
            self._inputs[key] = self.units[unit].case(case).make_inputs(case_dir)
        return self._inputs[key]

    def reference(self, unit: str, case: str) -> Any:
        """The solution's output on a case, from ``autograder/references/<hw>.pt``."""
        if self._references is None:
            self._references = load_references(self.hw)
        try:
            return unwrap(self._references[unit][case])
        except KeyError:
            raise KeyError(f"no reference for {unit!r} case {case!r} in {references_path(self.hw)}: "
                           f"run `make references`") from None

    def case_names(self, unit: str, public_only: bool = False) -> list[str]:
        return [c.name for c in self.units[unit].cases if c.public or not public_only]

    def output(self, unit: str, case: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self._tmp.cleanup()


class SandboxSubmission(Submission):
    """A submission folder graded through the isolated worker (``autograder.sandbox.supervisor``)."""

    def __init__(self, hw: str, submission_dir: Path, release_dir: Path, device: str = "cpu",
                 unit_timeout: float = DEFAULT_UNIT_TIMEOUT, memory_gb: float = DEFAULT_MEMORY_GB,
                 sandbox: Callable[..., Sandbox] = Sandbox) -> None:
        super().__init__(hw, device)
        self.sandbox = sandbox(hw, submission_dir, release_dir, device, unit_timeout, memory_gb)
        self.notebooks = SubmittedNotebooks(Path(submission_dir), Path(release_dir), self.units)

    def _unit_failed(self, unit: str) -> bool:
        run = self.sandbox.runs.get(unit)
        return (self.sandbox.loads.get(unit, {}).get("status", "ok") != "ok"
                or (run is not None and (run.status != "ok" or not all(c.ok for c in run.cases.values()))))

    def _broken_dependencies(self, unit: str) -> list[tuple[str, str | None]]:
        """The units ``unit`` calls (directly or not) that failed to load or to run."""
        return [(d, via) for d, via in dependency_chain(self.units, unit) if self._unit_failed(d)]

    def _stubs(self, unit: str) -> list[str]:
        """The units ``unit`` calls (directly or not) that still raise NotImplementedError."""
        stubs = []
        for dep, _ in dependency_chain(self.units, unit):
            run = self.sandbox.run(dep)
            if run.load.get("status") == "not_implemented" or any(
                    not c.ok and c.kind == "not_implemented" for c in run.cases.values()):
                stubs.append(dep)
        return stubs

    def output(self, unit: str, case: str) -> Any:
        problem = self.notebooks.problem(unit)
        if problem is not None:
            raise fb.GradingFailure(problem, fb.MISSING)
        run = self.sandbox.run(unit)
        broken = self._broken_dependencies(unit)
        note = (f" (note: this unit calls your {dependency_text(broken)}, which fail(s) its own checks; "
                f"fix that first)") if broken else ""
        named = tuple(d for d, _ in broken)
        if run.status == "load_failed":
            kind = _LOAD_KINDS.get(run.load.get("status"), fb.ERROR)
            raise fb.GradingFailure(self.notebooks.annotate(unit, run.detail + note), kind, named)
        if run.status == "timeout":
            raise fb.GradingFailure(run.detail, fb.TIMEOUT)
        if run.status == "crashed":
            raise fb.GradingFailure(run.detail, fb.CRASHED)
        called = next((name for name, r in run.cases.items() if not r.ok and r.kind == "forbidden"), None)
        if called is not None:  # one call of the library op scores the whole unit 0, in every check
            raise fb.GradingFailure(f"case '{called}': {run.cases[called].message}", FORBIDDEN, named)
        result = run.cases[case]
        if not result.ok and result.kind == "not_implemented":
            frames = _LAST_FRAME.findall(result.message)
            raised_in, stubs = frames[-1] if frames else None, self._stubs(unit)
            culprit = (raised_in,) if raised_in in stubs and raised_in != unit else ()  # a called unit's stub
            raise fb.GradingFailure(not_implemented_text(self.units, unit, raised_in, stubs),
                                    fb.NOT_IMPLEMENTED, culprit)
        if not result.ok:
            raise fb.GradingFailure(self.notebooks.annotate(unit, f"case '{case}': {result.message}{note}"),
                                    _CASE_KINDS[result.kind], named)
        expected_device = self.device.type
        if self.units[unit].same_device and any(not d.startswith(expected_device) for d in result.devices):
            raise fb.GradingFailure(f"case '{case}': returned a tensor on {', '.join(result.devices)}; "
                                    f"results must stay on the inputs' device ({expected_device})")
        return result.value

    def close(self) -> None:
        self.sandbox.close()
        super().close()


class LiveSubmission(Submission):
    """The definitions of a running notebook (its ``globals()``), checked in-process."""

    public_only = True

    def __init__(self, hw: str, namespace: dict, device: str = "cpu") -> None:
        super().__init__(hw, device)
        self.namespace = _Namespace(namespace)
        self._outputs: dict[tuple[str, str], Any] = {}

    def output(self, unit: str, case: str) -> Any:
        key = (unit, case)
        if not self.units[unit].case(case).public:  # the check cells must not reveal hidden cases
            raise fb.GradingFailure(f"kit error: a public check of {unit!r} uses the hidden case "
                                    f"{case!r}", fb.ERROR)
        if key not in self._outputs:
            inputs = to_device(self.units[unit].case(case).make_inputs(Path(self._tmp.name)), self.device)
            torch.manual_seed(0)
            np.random.seed(0)
            try:
                self._outputs[key] = self.units[unit].call(self.namespace, inputs, self.device)
            except NotImplementedError as err:
                frames = traceback.extract_tb(err.__traceback__)
                raised_in = frames[-1].name if frames else None
                stubs = [d for d, _ in dependency_chain(self.units, unit) if d == raised_in]
                raise fb.GradingFailure(not_implemented_text(self.units, unit, raised_in, stubs),
                                        fb.NOT_IMPLEMENTED) from None
            except AttributeError as err:
                raise fb.GradingFailure(f"case '{case}': {err} (did you run the cell that defines it?)",
                                        fb.ERROR) from None
            except Exception as err:
                frames = traceback.extract_tb(err.__traceback__)[-1:]
                where = f" (line {frames[0].lineno}: {frames[0].line})" if frames else ""
                raise fb.GradingFailure(f"case '{case}': {type(err).__name__}: {err}{where}",
                                        fb.ERROR) from None
        return self._outputs[key]


class _Namespace:
    """Attribute access over a notebook's globals dict (what ``Unit.call`` expects)."""

    def __init__(self, names: dict) -> None:
        self._names = names

    def __getattr__(self, name: str) -> Any:
        try:
            return self._names[name]
        except KeyError:
            raise AttributeError(f"name {name!r} is not defined") from None
