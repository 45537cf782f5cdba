"""What a graded unit is: the answer cell it lives in, how to call it, and the cases it runs on.

A homework's units are listed in ``autograder/<hw>/cases.py`` as ``UNITS``. The homeworks and their
course order come from the registry (``utils.homeworks``); this copy of the kit grades those whose
``autograder/<hw>/cases.py`` it holds (a student bundle holds one). Case inputs are built
deterministically (seeded), so the worker that runs student code and the process that scores it
build the same inputs independently; only the outputs cross the process boundary.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from utils.homeworks import NAMES

AUTOGRADER_DIR = Path(__file__).resolve().parent


def graded_homeworks(root: Path = AUTOGRADER_DIR) -> tuple[str, ...]:
    """The registry's homeworks, in course order, whose grading is here (``root/<hw>/cases.py``)."""
    return tuple(hw for hw in NAMES if (root / hw / "cases.py").is_file())


HOMEWORKS = graded_homeworks()


@dataclass(frozen=True)
class Case:
    """One call of a unit. ``make_inputs(workdir)`` returns the keyword inputs (deterministic);
    it may write files under ``workdir``. Public cases also run in the notebook's check cells.
    ``reference=False`` keeps a large output out of the reference file (checked by an oracle only)."""

    name: str
    make_inputs: Callable[[Path], dict[str, Any]]
    public: bool = True
    reference: bool = True


@dataclass(frozen=True)
class Unit:
    """A graded answer cell.

    grade_id: the nbgrader grade_id of the answer cell; notebook: its file name.
    call(ns, inputs, device): runs the student's code from namespace ``ns`` on one case's inputs
        (tensors already on ``device``) and returns the outputs to compare.
    depends: other units this one calls, named in feedback when they fail too.
    same_device: outputs must be on the inputs' device (False for units that return CPU data).
    forbidden: the library ops this exercise asks the student to write, which their code may not
        call (dotted names: 'torchvision.ops.nms', 'torch.ops.torchvision.nms', ...); a call scores
        the unit 0 with feedback naming it.
    timeout: seconds this unit may run at least (the grader's per-unit limit applies when larger);
        0 = the grader's limit (the final project's detector on the hidden pictures needs minutes).
    """

    grade_id: str
    notebook: str
    call: Callable[[Any, dict[str, Any], torch.device], Any]
    cases: tuple[Case, ...]
    depends: tuple[str, ...] = ()
    same_device: bool = True
    forbidden: tuple[str, ...] = ()
    timeout: float = 0.0
    case_index: dict[str, Case] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.cases]
        if len(set(names)) != len(names):
            raise ValueError(f"unit {self.grade_id!r}: duplicate case names in {names}")
        object.__setattr__(self, "case_index", {c.name: c for c in self.cases})

    def case(self, name: str) -> Case:
        try:
            return self.case_index[name]
        except KeyError:
            raise KeyError(f"unit {self.grade_id!r} has no case {name!r}; "
                           f"cases are {list(self.case_index)}") from None


class ScoringSide:
    """A module imported on first use. Case builders use a homework's oracles (e.g. the reference
    anchors of a loss case); only the scoring side builds inputs, so the grading worker, which
    receives them built, never imports an oracle, and its view of the kit holds none."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._module), name)


def case_names(cases: tuple[Case, ...], public: bool = True) -> list[str]:
    """The names of the public (or, with ``public=False``, the hidden) cases among ``cases``."""
    return [c.name for c in cases if c.public == public]


def homework_units(hw: str) -> dict[str, Unit]:
    """The units of homework ``hw`` keyed by grade_id."""
    if hw not in HOMEWORKS:
        raise ValueError(f"unknown homework {hw!r}; expected one of {HOMEWORKS}")
    module = importlib.import_module(f"autograder.{hw}.cases")
    units = {u.grade_id: u for u in module.UNITS}
    if len(units) != len(module.UNITS):
        raise ValueError(f"autograder.{hw}.cases: duplicate grade_ids")
    return units


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor (inside lists, tuples and dicts too) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value
