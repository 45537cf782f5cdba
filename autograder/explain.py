"""Feedback that looks beyond one comparison: the layout of an output and the order of its rows,
the names and shapes of a module's state_dict, and notes on what else is wrong in the submission
(a unit this one calls, a module's names) that explains a failure.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from autograder.feedback import (DEFAULT_ATOL, DEFAULT_RTOL, NOT_IMPLEMENTED, GradingFailure, describe,
                                 expect_close, expect_names, expect_tensor, expect_type, reordered)

MAX_SHAPES_SHOWN = 4


def fail(case: str, message: str) -> GradingFailure:
    return GradingFailure(f"case '{case}': {message}")


def expect_rows(got: Any, want: torch.Tensor, case: str, what: str, layout: str, order_hint: str) -> None:
    """An output of ``layout`` (e.g. ``[B, H*W*A, 4]``): the layout is named on a shape error, and a
    result holding the right values in the wrong order gets ``order_hint``."""
    got = expect_tensor(got, case, what)
    if tuple(got.shape) != tuple(want.shape):
        raise fail(case, f"{what} should be {layout} = {list(want.shape)}, got {describe(got)}")
    try:
        expect_close(got, want, case, what)
    except GradingFailure:
        if reordered(got, want):
            raise fail(case, f"{what} holds the right values, but the rows are in the wrong order: "
                             f"{order_hint}") from None
        raise


def expect_parameter_shapes(got: Any, want: dict[str, list[int]], case: str) -> None:
    """``got`` ({state_dict name: shape}) must have exactly ``want``'s names and shapes."""
    expect_type(got, dict, case, "the summary of your module's state_dict")
    expect_names(list(got), list(want), case, what="state_dict names")
    wrong = [f"{name} is {list(got[name])}, expected {list(shape)}" for name, shape in want.items()
             if list(got[name]) != list(shape)]
    if wrong:
        raise fail(case, f"{len(wrong)} state_dict shape(s) differ: " + "; ".join(wrong[:MAX_SHAPES_SHOWN]))


def same_output(got: Any, want: Any) -> bool:
    """Whether an output equals a reference output (tensors within the default tolerances)."""
    if isinstance(want, torch.Tensor):
        return (isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype
                and torch.allclose(got.detach().cpu().double(), want.double(), rtol=DEFAULT_RTOL,
                                   atol=DEFAULT_ATOL, equal_nan=True))
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(same_output, got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            same_output(got[k], want[k]) for k in want)
    return got == want


def output_or_none(submission, unit: str, case: str) -> Any:
    try:
        return submission.output(unit, case)
    except GradingFailure:
        return None


def matches_reference(submission, unit: str, case: str) -> bool:
    return same_output(output_or_none(submission, unit, case), submission.reference(unit, case))


def passes_references(submission, unit: str) -> bool:
    """Whether every case of ``unit`` that this submission may run gives the reference output (the
    notebook's check cells run public cases only; cases kept out of the references are skipped)."""
    cases = submission.units[unit].cases
    return all(matches_reference(submission, unit, c.name) for c in cases
               if c.reference and (c.public or not submission.public_only))


def dependency_chain(units: dict, unit: str) -> list[tuple[str, str | None]]:
    """Every unit ``unit`` calls, directly or through another: [(dependency, the unit it is called
    through, or None when called directly)], nearest first."""
    chain, seen, queue = [], {unit}, [(d, None) for d in units[unit].depends]
    while queue:
        dep, via = queue.pop(0)
        if dep in seen or dep not in units:
            continue
        seen.add(dep)
        chain.append((dep, via))
        queue += [(d, dep) for d in units[dep].depends]
    return chain


def dependency_text(chain: list[tuple[str, str | None]]) -> str:
    """``match, encode (through match)``."""
    return ", ".join(dep if via is None else f"{dep} (through {via})" for dep, via in chain)


def not_implemented_text(units: dict, unit: str, raised_in: str | None, stubs: list[str]) -> str:
    """Feedback for a unit whose call raised NotImplementedError: which answer cell still raises it.
    ``raised_in`` is the function that raised (the last frame), ``stubs`` the dependencies of
    ``unit`` that raise NotImplementedError on their own cases."""
    culprit = raised_in if raised_in in stubs and raised_in != unit else None
    if culprit is None:
        return f"the answer cell '{unit}' still raises NotImplementedError"
    where = units[culprit].notebook
    return (f"your {culprit} (answer cell '{culprit}' in {where}) still raises NotImplementedError; "
            f"{unit} calls it, so it cannot be graded until {culprit} is written")


@contextlib.contextmanager
def naming(hint: Callable[[], str | None]):
    """A comparison failed inside gets the mistake ``hint()`` names added to its feedback (its kind
    kept); it is raised unchanged when ``hint()`` names none. ``hint`` runs only on a failure."""
    try:
        yield
    except GradingFailure as err:
        named = hint()
        if named is None:
            raise
        raise GradingFailure(f"{err} — {named}", err.kind) from None


@contextlib.contextmanager
def noting(submission, unit: str, names_case: str | None = None):
    """Adds to a failed check's feedback the units this one calls that give wrong answers (the
    grader's own note covers those that raise) and, for a module whose names are checked on
    ``names_case``, that its names are wrong: the grader sets every weight from its name, so the
    outputs cannot match before the names do."""
    try:
        yield
    except GradingFailure as err:
        notes = []
        named = set(err.dependencies)  # the grader's own note already names these
        broken = [] if err.kind == NOT_IMPLEMENTED else [
            (d, via) for d, via in dependency_chain(submission.units, unit)
            if d not in named and not passes_references(submission, d)]
        if broken:
            verb = "does not pass its own checks" if len(broken) == 1 else "do not pass their checks"
            notes.append(f"{unit} calls your {dependency_text(broken)}, which {verb} yet; fix that first")
        if names_case is not None and not matches_reference(submission, unit, names_case):
            notes.append("your state_dict names or shapes differ from the expected ones (see that check); "
                         "the grader sets every weight from its name, so the outputs cannot match until "
                         "the names do")
        if notes:
            raise GradingFailure(f"{err} (note: {'; '.join(notes)})", err.kind,
                                 (*err.dependencies, *(d for d, _ in broken))) from None
        raise
