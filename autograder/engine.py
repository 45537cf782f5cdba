"""Grading one submission without pytest: the graded test functions, run in this process against
the sandboxed worker, as ``pytest autograder/`` runs them (same tests, same feedback, same points).

Used by Gradescope's ``run_autograder`` and by class grading (``autograder.batch``), where a pytest
session per student would cost seconds of start-up each. In official grading a mistake is charged
once (``autograder.official``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from autograder import feedback as fb
from autograder.grading import SandboxSubmission, graded_tests
from autograder.sandbox import DEFAULT_UNIT_TIMEOUT, Sandbox
from autograder.units import homework_units


@dataclass
class Options:
    device: str = "cpu"
    unit_timeout: float = DEFAULT_UNIT_TIMEOUT
    memory_gb: float = 4.0
    hidden: bool = True                    # also the hidden checks (official grading)
    reference_dir: Path | None = None      # solutions/<hw>/: grade with reference dependencies
    sandbox: Callable[..., Sandbox] = Sandbox
    fork_workers: bool = False             # batch: workers forked from the preloaded process (experimental)


@dataclass
class CheckResult:
    unit: str
    title: str
    points: float
    score: float
    kind: str            # "ok", "skipped" or a feedback kind (autograder.feedback)
    feedback: str
    public: bool
    seconds: float


@dataclass
class Report:
    hw: str
    checks: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def unit_scores(self) -> dict[str, tuple[float, float]]:
        """{unit: (score, max)} over the counted (not skipped) checks, in notebook order."""
        out: dict[str, list[float]] = {}
        for c in self.checks:
            if c.kind != "skipped":
                s = out.setdefault(c.unit, [0.0, 0.0])
                s[0] += c.score
                s[1] += c.points
        return {u: (s[0], s[1]) for u, s in out.items()}

    def to_dict(self) -> dict:
        return {"hw": self.hw, "checks": [asdict(c) for c in self.checks], "notes": self.notes,
                "seconds": self.seconds}


def open_submission(hw: str, folder: Path, release: Path, options: Options) -> SandboxSubmission:
    """A submission whose worker comes from ``options.sandbox``."""
    sub = SandboxSubmission(hw, folder, release, options.device, options.unit_timeout, options.memory_gb)
    sub.sandbox.close()
    sub.sandbox = options.sandbox(hw, folder, release, options.device, options.unit_timeout,
                                  options.memory_gb)
    return sub


def run_check(test: Callable, submission: SandboxSubmission) -> CheckResult:
    """One graded test on one submission; never raises."""
    info = test.graded
    started = time.monotonic()
    try:
        test(submission)
    except fb.GradingFailure as err:
        kind, message = err.kind, str(err)
    except pytest.skip.Exception as err:
        kind, message = "skipped", str(err)
    except pytest.fail.Exception as err:  # pytest.fail() in a check: a failed check like any other
        kind, message = fb.WRONG, str(err)
    except Exception as err:  # a check that crashed on an unexpected answer: still feedback
        kind = fb.ERROR
        message = f"the check could not handle the result: {type(err).__name__}: {err}"
    else:
        kind, message = "ok", ""
    score = info.points if kind == "ok" else 0.0
    return CheckResult(info.unit, info.title, info.points, score, kind, message, info.public,
                       round(time.monotonic() - started, 3))


def tests_for(hw: str, hidden: bool, units: set[str] | None = None) -> list[Callable]:
    """The graded tests of ``hw`` in notebook order (public only unless ``hidden``)."""
    order = {u: k for k, u in enumerate(homework_units(hw))}
    tests = [t for t in graded_tests(hw) if (hidden or t.graded.public)
             and (units is None or t.graded.unit in units)]
    return sorted(tests, key=lambda t: order.get(t.graded.unit, len(order)))  # stable in a unit


def run_checks(hw: str, folder: Path, release: Path, options: Options,
               units: set[str] | None = None) -> tuple[list[CheckResult], list[str]]:
    """(results, notes) of the graded tests of ``units`` (default all) on one submission folder."""
    sub = open_submission(hw, folder, release, options)
    notes: list[str] = []
    try:
        try:
            sub.sandbox.start()
        except RuntimeError as err:
            notes.append(str(err))
        notes += list(sub.sandbox.problems)
        results = [run_check(t, sub) for t in tests_for(hw, options.hidden, units)]
    finally:
        sub.close()
    return results, notes


def public_total(report: Report) -> tuple[float, float]:
    counted = [c for c in report.checks if c.public and c.kind != "skipped"]
    return sum(c.score for c in counted), sum(c.points for c in counted)


def gradescope_results(report: Report, extra_notes: list[str] = ()) -> dict:
    """Gradescope's results.json: every check a test; hidden ones ``after_due_date``; the top-level
    output shows the public-check total (what students may see before the due date)."""
    tests = [{"name": f"{c.unit}: {c.title}", "score": c.score, "max_score": c.points,
              "status": "passed" if c.kind == "ok" else "failed",
              "output": c.feedback if c.kind == "ok" else f"{c.kind}: {c.feedback}",
              "visibility": "visible" if c.public else "after_due_date"}
             for c in report.checks if c.kind != "skipped"]
    public, public_max = public_total(report)
    hidden_max = sum(t["max_score"] for t in tests) - public_max
    lines = [f"Public checks: {public:g} / {public_max:g} points."]
    if hidden_max:
        lines.append(f"Hidden checks ({hidden_max:g} points) are shown after the due date.")
    lines += [f"note: {n}" for n in [*extra_notes, *report.notes]]
    return {"score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
            "execution_time": report.seconds, "output": "\n".join(lines), "tests": tests}


def feedback_text(report: Report, student: str = "") -> str:
    """A readable report: one line per check, the unit totals and the notes."""
    lines = [f"{report.hw}{' — ' + student if student else ''}"]
    lines += [f"note: {n}" for n in report.notes]
    width = max([4] + [len(c.unit) for c in report.checks])
    for c in report.checks:
        pts = "skipped" if c.kind == "skipped" else f"{c.score:g}/{c.points:g}"
        verdict = ("ok" + (f" ({c.feedback})" if c.feedback else "")) if c.kind == "ok" \
            else f"{c.kind}: {c.feedback}"
        lines.append(f"{c.unit:<{width}}  {pts:>7}  {c.title} — {verdict}")
    total = sum(s for s, _ in report.unit_scores().values())
    max_total = sum(m for _, m in report.unit_scores().values())
    lines.append(f"TOTAL {total:g}/{max_total:g}")
    return "\n".join(lines) + "\n"
