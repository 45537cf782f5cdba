"""Grading one submission: the one function every view calls, with one set of defaults.

    report = grade("retinaface", Path("submitted/alice"), Options())

``grade`` finds the homework's notebooks in the submission (``autograder.submissions.stage``:
renamed, nested or missing notebooks), runs every graded test against the sandboxed worker
(``run_checks``), charges each mistake once (``charge_once``) where the solutions are on disk
(``Options.reference_dir``; course staff only), then adds what the homework itself reports beyond
its checks (``homework_extras``: the final project's leaderboard). ``pytest autograder/`` runs the
same tests as pytest items and then the same ``charge_once`` and ``homework_extras``
(``autograder/conftest.py``); Gradescope's
``run_autograder`` and class grading call ``grade``; all of them turn the Report into results.json
with ``autograder.results``, so the same submission gets the same results.json from each.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autograder.grading import SandboxSubmission, graded_tests
from autograder.replayed import CALLS_NAME, calls_path, stand_in
from autograder.results import CheckResult, Report, check_result, merge_regrade, order_checks, regrade_plan
from autograder.review import review
from autograder.sandbox.supervisor import DEFAULT_MEMORY_GB, DEFAULT_UNIT_TIMEOUT, REPO_ROOT, Sandbox
from autograder.submissions import SubmissionError, stage
from autograder.units import Unit, homework_units

RELEASE_ROOT = REPO_ROOT / "assignments"
SOLUTIONS_ROOT = REPO_ROOT / "solutions"


def default_reference_dir(hw: str) -> Path | None:
    """``solutions/<hw>/`` where the solutions are on disk (the kit, Gradescope's zip); None in the
    student bundle, which then says which units official grading would re-grade."""
    folder = SOLUTIONS_ROOT / hw
    return folder if folder.is_dir() else None


@dataclass
class Options:
    device: str = "cpu"
    unit_timeout: float = DEFAULT_UNIT_TIMEOUT
    memory_gb: float = DEFAULT_MEMORY_GB
    hidden: bool = True                    # also the hidden checks (absent from the student bundle)
    reference_dir: Path | None = None      # solutions/<hw>/: charge a mistake once
    sandbox: Callable[..., Sandbox] = Sandbox


def release_dir(hw: str) -> Path:
    return RELEASE_ROOT / hw


def stage_submission(hw: str, source: Path, dest: Path) -> tuple[Path, list[str]]:
    """(folder holding the homework's notebooks under their released names, notes). A submission
    without any notebook of ``hw`` gives an empty folder (every unit is then graded "missing") and
    a note saying what to upload."""
    release = release_dir(hw)
    try:
        staged = stage(source, release, dest)
    except SubmissionError as err:
        folder = dest / hw
        folder.mkdir(parents=True, exist_ok=True)
        expected = ", ".join(sorted(p.name for p in release.glob("*.ipynb")))
        return folder, [f"No notebook of this homework was found in the submission ({err}); "
                        f"upload the notebooks: {expected}"]
    return staged.folder, staged.notes


def open_submission(hw: str, folder: Path, options: Options) -> SandboxSubmission:
    """A submission whose worker comes from ``options.sandbox`` (not started yet)."""
    return SandboxSubmission(hw, folder, release_dir(hw), options.device, options.unit_timeout,
                             options.memory_gb, sandbox=options.sandbox)


def start(submission: SandboxSubmission) -> list[str]:
    """Wait until the worker has loaded the notebooks; the notes it leaves (skipped cells, a
    worker that failed to start, isolation that is off on this machine)."""
    notes = []
    try:
        submission.sandbox.start()
    except RuntimeError as err:
        notes.append(str(err))
    notes += list(submission.sandbox.problems)
    if submission.sandbox.isolation_note:
        notes.append(submission.sandbox.isolation_note)
    return notes


def run_check(test: Callable, submission: SandboxSubmission) -> CheckResult:
    """One graded test on one submission; never raises."""
    started = time.monotonic()
    try:
        test(submission)
    except Exception as err:  # pytest's skip and fail outcomes are Exceptions too
        return check_result(test.graded, err, time.monotonic() - started)
    return check_result(test.graded, None, time.monotonic() - started)


def test_order(hw: str) -> list[tuple[str, str]]:
    """(unit, title) of every graded test of ``hw``: notebook order, file order within a unit."""
    order = {u: k for k, u in enumerate(homework_units(hw))}
    tests = sorted(graded_tests(hw), key=lambda t: order.get(t.graded.unit, len(order)))
    return [(t.graded.unit, t.graded.title) for t in tests]


def tests_for(hw: str, hidden: bool, units: set[str] | None = None) -> list[Callable]:
    """The graded tests of ``hw`` in notebook order (public only unless ``hidden``)."""
    position = {key: k for k, key in enumerate(test_order(hw))}
    tests = [t for t in graded_tests(hw) if (hidden or t.graded.public)
             and (units is None or t.graded.unit in units)]
    return sorted(tests, key=lambda t: position[(t.graded.unit, t.graded.title)])


def run_checks(hw: str, folder: Path, options: Options,
               units: set[str] | None = None) -> tuple[list[CheckResult], list[str]]:
    """(results, notes) of the graded tests of ``units`` (default all) on one staged folder."""
    results, notes, _ = _checked(hw, folder, options, units)
    return results, notes


def _checked(hw: str, folder: Path, options: Options,
             units: set[str] | None = None) -> tuple[list[CheckResult], list[str], SandboxSubmission]:
    """``run_checks`` and the submission it graded (closed: its answers and scores stay readable)."""
    sub = open_submission(hw, folder, options)
    try:
        notes = start(sub)
        results = [run_check(t, sub) for t in tests_for(hw, options.hidden, units)]
    finally:
        sub.close()
    return results, notes, sub


EXTRAS = "report_extras"    # autograder/<hw>/report_extras.py: what a homework reports beyond its checks


def homework_extras(report: Report, submission: SandboxSubmission) -> None:
    """What the homework adds to its Report beyond the checks, from what grading already computed
    (the submission may be closed), where ``autograder/<hw>/report_extras.py`` exists:
    ``leaderboard(submission)`` -> Gradescope's leaderboard entries (or None), ``curves(submission)``
    -> the precision-recall curves behind it (for the class summary), ``notes(submission)``
    -> lines for the top of the feedback (shown before the due date), and, where staff grade
    (``report.review`` is a list), ``review(submission)`` -> lines for a person to look at."""
    name = f"autograder.{report.hw}.{EXTRAS}"
    if importlib.util.find_spec(name) is None:
        return
    extras = importlib.import_module(name)
    report.leaderboard = extras.leaderboard(submission)
    report.curves = extras.curves(submission)
    report.notes += extras.notes(submission)
    if report.review is not None:
        report.review += extras.review(submission)


def charge_once(report: Report, folder: Path, options: Options) -> None:
    """Re-grade, with the failing dependencies' answers replayed (``autograder.replayed``), each unit
    that lost points while a unit it calls fails its own checks, and keep the better score
    (``report`` changes in place). Without ``options.reference_dir`` or the recorded calls the plan
    is recorded (``report.regrades``, none applied)."""
    units = homework_units(report.hw)
    plan = regrade_plan(report, units)
    reference, calls = options.reference_dir, calls_path(report.hw)
    if reference is None or not Path(reference).is_dir() or not calls.is_file():
        report.regrades = plan
        return
    groups: dict[tuple[str, ...], list] = {}
    for regrade in plan:
        groups.setdefault(regrade.dependencies, []).append(regrade)
    for deps, regrades in groups.items():
        with tempfile.TemporaryDirectory(prefix="charge-once-") as tmp:
            hybrid = with_replayed_cells(folder, Path(tmp) / folder.name, deps, units, Path(reference), calls)
            checks, _ = run_checks(report.hw, hybrid, options, units={r.unit for r in regrades})
        for regrade in regrades:
            merge_regrade(report, regrade, [c for c in checks if c.unit == regrade.unit])


def staff_review(report: Report, folder: Path, options: Options) -> None:
    """Where course staff grade (the solutions are on disk), list the answer cells that reach into
    library or interpreter internals (``autograder.review``; never costs points)."""
    if options.reference_dir is not None and Path(options.reference_dir).is_dir():
        report.review = review(folder)


def grade(hw: str, source: Path, options: Options) -> Report:
    """Grade the notebooks of homework ``hw`` found in ``source`` (with the release's given cells)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
        folder, notes = stage_submission(hw, Path(source), Path(tmp))
        report = grade_staged(hw, folder, notes, options)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def grade_staged(hw: str, folder: Path, notes: list[str], options: Options) -> Report:
    """``grade`` of notebooks already staged in ``folder`` (``stage_submission``'s folder and notes);
    the caller times it, staging included."""
    checks, worker_notes, sub = _checked(hw, folder, options)
    report = Report(hw, order_checks(checks, test_order(hw)), notes + worker_notes)
    charge_once(report, folder, options)
    staff_review(report, folder, options)
    homework_extras(report, sub)
    return report


def with_replayed_cells(folder: Path, dest: Path, replace: tuple[str, ...], units: dict[str, Unit],
                        reference_dir: Path, calls: Path) -> Path:
    """A copy of the submission ``folder`` in ``dest`` whose answer cells ``replace`` are stand-ins
    that replay the reference's answers (``autograder.replayed``; the recorded ``calls`` beside
    them): the reference notebook in ``reference_dir`` gives only which functions and classes the
    cell defines, so no model answer's code reaches the worker. A reference cell with nothing to
    replay (no function or class) becomes an empty cell."""
    dest.mkdir(parents=True)
    for path in folder.glob("*.ipynb"):
        (dest / path.name).write_bytes(path.read_bytes())
    shutil.copy2(calls, dest / CALLS_NAME)
    for gid in sorted(replace):
        name = units[gid].notebook
        reference = json.loads((reference_dir / name).read_text(encoding="utf-8"))
        cells = [c for c in reference["cells"] if _grade_id(c) == gid]
        if cells:
            source = stand_in("".join(cells[-1].get("source", ""))) or ""
            cells = [dict(cells[-1], source=source, outputs=[])]
        target = dest / name
        try:
            nb = json.loads(target.read_text(encoding="utf-8"))
            nb["cells"] = [c for c in nb["cells"] if _grade_id(c) != gid] + cells
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # absent or unreadable
            nb = dict(reference, cells=cells)
        target.write_text(json.dumps(nb), encoding="utf-8")
    return dest


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
    return meta.get("grade_id") if isinstance(meta, dict) else None
