"""The result of grading one submission, and every view of it: the one results pipeline.

A check's outcome becomes a ``CheckResult`` in one place (``check_result``); a submission's checks
make a ``Report`` with its unit totals and the charge-once rule (``regrade_plan``, ``merge_regrade``:
a unit that lost points while a unit it calls fails its own checks is graded again with the
reference dependency and keeps the better score). The views are functions of the Report only:
Gradescope's results.json (``gradescope_results``), the readable feedback (``feedback_text``) and
the terminal table (``table_lines``). ``pytest autograder/`` (so ``make grade`` and the student
bundle), Gradescope's ``run_autograder`` and class grading all build a Report with
``autograder.engine`` and print one of these views, so one submission has one grade everywhere.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pytest

from autograder import feedback as fb
from autograder.recorded import NotRecorded
from autograder.units import Unit

SKIPPED = "skipped"
OK = "ok"
CHARGE_ONCE = "a mistake is charged once"
# What a person should look at (autograder.review: answer cells reaching into library or interpreter
# internals; a homework's own findings, e.g. an upload fine-tuned from published weights).
REVIEW_TEST = "review: for course staff to look at (staff only, no points)"


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
    blamed: tuple[str, ...] = ()   # units it calls that the failure names as failing (not in results.json)
    visible: bool | None = None    # shown before the due date (None: when public)

    @property
    def shown_now(self) -> bool:
        return self.public if self.visible is None else self.visible


def check_result(info, error: BaseException | None, seconds: float) -> CheckResult:
    """The record of one graded check (``info``: its ``autograder.grading.Graded``) that raised
    ``error`` (None: it passed). The only place an outcome becomes a kind and a score."""
    blamed: tuple[str, ...] = ()
    if error is None:
        kind, message = OK, ""
    elif isinstance(error, fb.GradingFailure):
        kind, message = error.kind, str(error)
        blamed = error.dependencies
    elif isinstance(error, (pytest.skip.Exception, NotRecorded)):  # NotRecorded: the student bundle
        kind, message = SKIPPED, str(error)                            # cannot run this comparison
    elif isinstance(error, pytest.fail.Exception):  # pytest.fail() in a check: a failed check
        kind, message = fb.WRONG, str(error)
    else:  # a check that crashed on an unexpected answer: still the student's feedback
        kind = fb.ERROR
        message = f"the check could not handle the result: {type(error).__name__}: {error}"
    score = info.points if kind == OK else 0.0
    return CheckResult(info.unit, info.title, info.points, score, kind, message, info.public,
                       round(seconds, 3), tuple(blamed), getattr(info, "visible", None))


@dataclass
class Regrade:
    """Charge-once for one unit: it lost points while the failing ``dependencies`` (units it
    calls, directly or through other failing units) fail their own checks. ``applied``: the
    official grade re-graded it with the reference dependencies and the score rose."""

    unit: str
    dependencies: tuple[str, ...]
    applied: bool = False


@dataclass
class Report:
    hw: str
    checks: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    regrades: list[Regrade] = field(default_factory=list)
    # Answer cells that reach into library or interpreter internals (autograder.review), for a person
    # to look at; None where no review ran (the student bundle). Never costs points.
    review: list[str] | None = None
    # Gradescope's leaderboard entries ({"name", "value", "order"}) where the homework reports one
    # (autograder/<hw>/report_extras.py: the final project); None elsewhere.
    leaderboard: list[dict] | None = None
    # The precision-recall curves behind the leaderboard ({setting: {"recall", "precision"}}), for the
    # class summary's figure (not in results.json); None elsewhere.
    curves: dict | None = None

    def unit_scores(self) -> dict[str, tuple[float, float]]:
        """{unit: (score, max)} over the counted (not skipped) checks, in check order."""
        out: dict[str, list[float]] = {}
        for c in self.checks:
            if c.kind != SKIPPED:
                s = out.setdefault(c.unit, [0.0, 0.0])
                s[0] += c.score
                s[1] += c.points
        return {u: (s[0], s[1]) for u, s in out.items()}

    def total(self) -> tuple[float, float]:
        scores = self.unit_scores().values()
        return sum(s for s, _ in scores), sum(m for _, m in scores)

    def public_total(self) -> tuple[float, float]:
        counted = [c for c in self.checks if c.public and c.kind != SKIPPED]
        return sum(c.score for c in counted), sum(c.points for c in counted)

    def to_dict(self) -> dict:
        return {"hw": self.hw, "checks": [asdict(c) for c in self.checks], "notes": self.notes,
                "seconds": self.seconds, "regrades": [asdict(r) for r in self.regrades],
                "review": self.review, "leaderboard": self.leaderboard, "curves": self.curves}


def order_checks(checks: list[CheckResult], test_order: list[tuple[str, str]]) -> list[CheckResult]:
    """``checks`` in the order of ``test_order`` ((unit, title) of the homework's graded tests in
    notebook order); checks of unknown tests go last, in their given order."""
    position = {key: k for k, key in enumerate(test_order)}
    return sorted(checks, key=lambda c: position.get((c.unit, c.title), len(position)))


# -- charge once --------------------------------------------------------------------------------
def failing_dependencies(unit: str, units: dict[str, Unit], failing: set[str]) -> tuple[str, ...]:
    """The failing units ``unit`` calls, directly or through other failing units (sorted)."""
    found: set[str] = set()
    todo = [d for d in units[unit].depends if d in failing]
    while todo:
        d = todo.pop()
        if d not in found:
            found.add(d)
            todo += [dd for dd in units[d].depends if dd in failing]
    return tuple(sorted(found))


def _own_fault_only(checks: list[CheckResult]) -> bool:
    """Every failing check says the unit's own cell is absent or still a stub: a reference
    dependency cannot give it points."""
    failed = [c for c in checks if c.kind not in (OK, SKIPPED)]
    return bool(failed) and all(c.kind == fb.MISSING or (c.kind == fb.NOT_IMPLEMENTED and not c.blamed)
                                for c in failed)


def regrade_plan(report: Report, units: dict[str, Unit]) -> list[Regrade]:
    """Every unit of ``report`` that lost points while a unit it calls fails its own checks (and
    not only because its own cell is missing or a stub): what official grading re-grades with the
    reference dependencies (in check order)."""
    failing = {u for u, (score, most) in report.unit_scores().items() if score < most}
    plan = []
    for unit in report.unit_scores():
        if unit not in failing or unit not in units or _own_fault_only([c for c in report.checks if c.unit == unit]):
            continue
        deps = failing_dependencies(unit, units, failing)
        if deps:
            plan.append(Regrade(unit, deps))
    return plan


def regrade_note(dependencies: tuple[str, ...]) -> str:
    named = ", ".join(dependencies)
    verb = "fails its own checks" if len(dependencies) == 1 else "fail their own checks"
    return f"graded with the reference {named}, since your {named} {verb} ({CHARGE_ONCE})"


def merge_regrade(report: Report, regrade: Regrade, new: list[CheckResult]) -> None:
    """Keep ``new`` (the unit's checks graded with the reference dependencies) when it scores more
    than the unit's own checks; record the regrade either way (``report`` changes in place)."""
    old = sum(c.score for c in report.checks if c.unit == regrade.unit and c.kind != SKIPPED)
    regrade.applied = sum(c.score for c in new if c.kind != SKIPPED) > old
    report.regrades.append(regrade)
    if not regrade.applied:
        return
    note = regrade_note(regrade.dependencies)
    own = {(c.unit, c.title): c.feedback for c in report.checks if c.unit == regrade.unit and c.kind != OK}
    for c in new:  # no text of the regrade is shown (it ran next to the reference's answer cells):
        mine = own.get((c.unit, c.title), "")  # a check that still fails keeps its own run's text
        c.feedback = note if c.kind == OK else f"{mine or c.kind} ({note})"
    first = next(k for k, c in enumerate(report.checks) if c.unit == regrade.unit)
    rest = [c for c in report.checks if c.unit != regrade.unit]
    report.checks = rest[:first] + new + rest[first:]
    report.notes.append(f"{regrade.unit}: {note}")


def unapplied_regrade_notes(plan: list[Regrade]) -> list[str]:
    """What a grader without the solutions (the student bundle) says about ``plan``: which units
    lost points through which dependency, and that the official grade re-grades them."""
    by_deps: dict[tuple[str, ...], list[str]] = {}
    for r in plan:
        by_deps.setdefault(r.dependencies, []).append(r.unit)
    lines = []
    for deps, units in by_deps.items():
        named, lost = ", ".join(deps), " and ".join(", ".join(units).rsplit(", ", 1))
        lines.append(f"{CHARGE_ONCE}: {lost} lost points through your {named}; the official grade "
                     f"re-grades {'it' if len(units) == 1 else 'them'} with the reference {named}, "
                     f"so the points shown here for {'it' if len(units) == 1 else 'them'} are a lower bound")
    return lines


# -- views ---------------------------------------------------------------------------------------
def gradescope_results(report: Report, extra_notes: tuple[str, ...] | list[str] = ()) -> dict:
    """Gradescope's results.json: every counted check a test, hidden ones ``after_due_date`` unless
    they are ``visible``; the top-level output shows the totals students may see before the due date."""
    tests = [{"name": f"{c.unit}: {c.title}", "score": c.score, "max_score": c.points,
              "status": "passed" if c.kind == OK else "failed",
              "output": c.feedback if c.kind == OK else f"{c.kind}: {c.feedback}",
              "visibility": "visible" if c.shown_now else "after_due_date"}
             for c in report.checks if c.kind != SKIPPED]
    if report.review is not None:
        tests.append({"name": REVIEW_TEST, "score": 0.0, "max_score": 0.0,
                      "status": "failed" if report.review else "passed",
                      "output": "\n".join(report.review) or "nothing found", "visibility": "hidden"})
    public, public_max = report.public_total()
    shown = [c for c in report.checks if c.kind != SKIPPED and c.shown_now and not c.public]
    later = sum(c.points for c in report.checks if c.kind != SKIPPED and not c.shown_now)
    lines = [f"Public checks: {public:g} / {public_max:g} points."]
    if shown:
        lines.append(f"Checks on hidden data shown now: {sum(c.score for c in shown):g} / "
                     f"{sum(c.points for c in shown):g} points.")
    if later:
        lines.append(f"Hidden checks ({later:g} points) are shown after the due date.")
    lines += [f"note: {n}" for n in [*extra_notes, *report.notes]]
    results = {"score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
               "execution_time": report.seconds, "output": "\n".join(lines), "tests": tests}
    if report.leaderboard is not None:
        results["leaderboard"] = [dict(entry) for entry in report.leaderboard]
    return results


def feedback_text(report: Report, student: str = "") -> str:
    """A readable report: one line per check with its whole feedback, the notes and the total."""
    lines = [f"{report.hw}{' — ' + student if student else ''}"]
    lines += [f"note: {n}" for n in report.notes]
    width = max([4] + [len(c.unit) for c in report.checks])
    for c in report.checks:
        pts = SKIPPED if c.kind == SKIPPED else f"{c.score:g}/{c.points:g}"
        verdict = (OK + (f" ({c.feedback})" if c.feedback else "")) if c.kind == OK \
            else f"{c.kind}: {c.feedback}"
        lines.append(f"{c.unit:<{width}}  {pts:>7}  {c.title} — {verdict}")
    total, max_total = report.total()
    lines.append(f"TOTAL {total:g}/{max_total:g}")
    return "\n".join(lines) + "\n"


def first_line(text: str) -> str:
    """The first line of a feedback, whole (a cut line hides the very words that name the mistake)."""
    return text.strip().splitlines()[0] if text.strip() else ""


def table_lines(reports: list[Report], notes: list[str] = ()) -> list[str]:
    """The terminal table of one or more homeworks' reports: notes, one row per check, the total."""
    checks = [c for r in reports for c in r.checks]
    lines = [f"note: {n}" for n in [*notes, *(n for r in reports for n in r.notes)]]
    lines += [f"review (staff only, no points): {n}" for r in reports for n in (r.review or [])]
    unit_w = max([4] + [len(c.unit) for c in checks])
    title_w = min(48, max([5] + [len(c.title) for c in checks]))
    lines.append(f"{'unit':<{unit_w}}  {'check':<{title_w}}  {'points':>9}  feedback")
    for c in checks:
        pts = SKIPPED if c.kind == SKIPPED else f"{c.score:g}/{c.points:g}"
        note = OK if c.kind == OK else f"{c.kind}: {first_line(c.feedback)}"
        lines.append(f"{c.unit:<{unit_w}}  {c.title[:title_w]:<{title_w}}  {pts:>9}  {note}")
    totals = [r.total() for r in reports]
    lines.append(f"TOTAL {sum(t for t, _ in totals):g}/{sum(m for _, m in totals):g}")
    return lines


def combined_results(reports: list[Report], extra_notes: list[str] = ()) -> dict:
    """results.json for several homeworks graded at once (``pytest autograder/`` without --hw): one
    homework gives exactly ``gradescope_results`` of its report."""
    if len(reports) == 1:
        return gradescope_results(reports[0], extra_notes)
    parts = [gradescope_results(r) for r in reports]
    output = [*(f"note: {n}" for n in extra_notes), *(f"{r.hw}: {p['output']}" for r, p in zip(reports, parts))]
    return {"score": sum(p["score"] for p in parts), "max_score": sum(p["max_score"] for p in parts),
            "execution_time": round(sum(r.seconds for r in reports), 2), "output": "\n".join(output),
            "tests": [t for p in parts for t in p["tests"]]}
