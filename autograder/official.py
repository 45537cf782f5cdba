"""Official grading of one submission: every check, hidden ones included, and a mistake charged once.

A unit that calls another (``Unit.depends``: ``match`` calls ``jaccard``) is first graded with the
student's own dependency. When that dependency fails its own checks and the unit lost points, the
unit is graded again in a copy of the submission whose failing dependencies (and the failing units
they call in turn) are the solution's answer cells, and keeps the better score; its feedback says
so. This needs the solutions' notebooks, which only the private graders hold.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from autograder.engine import Options, Report, run_checks
from autograder.units import Unit, homework_units


def grade(hw: str, folder: Path, release: Path, options: Options) -> Report:
    """Grade the notebooks in ``folder`` (released names) with ``release``'s given cells."""
    started = time.monotonic()
    checks, notes = run_checks(hw, folder, release, options)
    report = Report(hw, checks, notes)
    if options.reference_dir is not None and Path(options.reference_dir).is_dir():
        charge_once(report, folder, release, options)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def failing_dependencies(unit: str, units: dict[str, Unit], failing: set[str]) -> frozenset[str]:
    """The failing units ``unit`` calls, directly or through other failing units."""
    found: set[str] = set()
    todo = [d for d in units[unit].depends if d in failing]
    while todo:
        d = todo.pop()
        if d not in found:
            found.add(d)
            todo += [dd for dd in units[d].depends if dd in failing]
    return frozenset(found)


def charge_once(report: Report, folder: Path, release: Path, options: Options) -> None:
    """Regrade, with reference dependencies, each unit that lost points while a unit it calls fails
    its own checks; keep the better score (``report`` is updated in place)."""
    units = homework_units(report.hw)
    scores = report.unit_scores()
    failing = {u for u, (score, most) in scores.items() if score < most}
    groups: dict[frozenset[str], set[str]] = {}
    for unit in failing:
        deps = failing_dependencies(unit, units, failing)
        if deps:
            groups.setdefault(deps, set()).add(unit)
    for deps, regrade in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
        with tempfile.TemporaryDirectory(prefix="charge-once-") as tmp:
            hybrid = with_reference_cells(folder, Path(tmp) / folder.name, deps, units,
                                          Path(options.reference_dir))
            checks, _ = run_checks(report.hw, hybrid, release, options, units=regrade)
        for unit in sorted(regrade):
            new = [c for c in checks if c.unit == unit]
            if sum(c.score for c in new if c.kind != "skipped") <= scores[unit][0]:
                continue
            named = ", ".join(sorted(deps))
            verb = "fails its own checks" if len(deps) == 1 else "fail their own checks"
            note = (f"graded with the reference {named}, since your {named} {verb} "
                    f"(a mistake is charged once)")
            for c in new:
                c.feedback = f"{c.feedback} ({note})" if c.feedback else note
            report.checks = _replace_unit(report.checks, unit, new)
            report.notes.append(f"{unit}: {note}")


def _replace_unit(checks: list, unit: str, new: list) -> list:
    first = next(k for k, c in enumerate(checks) if c.unit == unit)
    rest = [c for c in checks if c.unit != unit]
    return rest[:first] + new + rest[first:]


def with_reference_cells(folder: Path, dest: Path, replace: frozenset[str], units: dict[str, Unit],
                         reference_dir: Path) -> Path:
    """A copy of the submission ``folder`` in ``dest`` whose answer cells ``replace`` come from the
    notebooks in ``reference_dir``."""
    dest.mkdir(parents=True)
    for path in folder.glob("*.ipynb"):
        (dest / path.name).write_bytes(path.read_bytes())
    for gid in sorted(replace):
        name = units[gid].notebook
        reference = json.loads((reference_dir / name).read_text(encoding="utf-8"))
        cells = [c for c in reference["cells"] if _grade_id(c) == gid]
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
