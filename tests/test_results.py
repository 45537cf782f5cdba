"""The one results pipeline (``autograder.results``): one record per check, the charge-once rule and
the views, on hand-made reports (the end-to-end agreement of the views is tests/test_one_grade.py)."""
from __future__ import annotations

import pytest

from autograder import feedback as fb
from autograder.grading import Graded
from autograder.results import (REVIEW_TEST, CheckResult, Regrade, Report, check_result, combined_results,
                                gradescope_results, merge_regrade, regrade_plan, table_lines,
                                unapplied_regrade_notes)
from autograder.units import Unit


def _unit(name, depends=()):
    return Unit(name, "nb.ipynb", lambda ns, x, d: None, (), depends)


UNITS = {u.grade_id: u for u in (_unit("iou"), _unit("match", ("iou",)), _unit("loss", ("match",)),
                                  _unit("nms", ("iou",)), _unit("plot"))}


def _check(unit, score, points=2.0, kind=None, public=True, title="t"):
    return CheckResult(unit, title, points, score, kind or ("ok" if score == points else fb.WRONG),
                       "" if score == points else "largest error 3", public, 0.1)


def test_an_outcome_becomes_one_record():
    info = Graded("iou", 2.0, "agrees with box_iou")
    assert check_result(info, None, 0.5).score == 2.0
    assert check_result(info, fb.GradingFailure("x", fb.TIMEOUT), 0.5).kind == fb.TIMEOUT
    assert check_result(info, pytest.skip.Exception("no GPU"), 0.5).kind == "skipped"
    failed = check_result(info, pytest.fail.Exception("nope"), 0.5)
    assert (failed.kind, failed.score) == (fb.WRONG, 0.0)
    crashed = check_result(info, KeyError("k"), 0.5)
    assert crashed.kind == fb.ERROR and "KeyError" in crashed.feedback


def test_the_plan_names_failing_dependencies_through_failing_units():
    report = Report("hw", [_check("iou", 0), _check("match", 0), _check("loss", 1), _check("nms", 2),
                           _check("plot", 0)])
    plan = {r.unit: r.dependencies for r in regrade_plan(report, UNITS)}
    assert plan == {"match": ("iou",), "loss": ("iou", "match")}  # nms passed; plot calls nothing


def test_a_regrade_keeps_the_better_score_and_shows_none_of_its_text():
    report = Report("hw", [_check("iou", 0), _check("match", 0, title="a"), _check("match", 0, title="b")])
    report.checks[2].feedback = "kept scores not in descending order"  # the student's own run
    better = [_check("match", 2, title="a"), CheckResult("match", "b", 2.0, 0.0, fb.ERROR,
                                                       "def iou(a, b): <the model answer>", True, 0.1)]
    merge_regrade(report, Regrade("match", ("iou",)), better)
    assert report.unit_scores()["match"] == (2.0, 4.0)
    texts = [c.feedback for c in report.checks if c.unit == "match"]
    assert all("graded with the reference iou" in t and "model answer" not in t for t in texts), texts
    assert texts[1].startswith("kept scores not in descending order (graded with")  # still failing: own text
    assert report.regrades[0].applied and any("charged once" in n for n in report.notes)
    worse = Report("hw", [_check("match", 1)])
    merge_regrade(worse, Regrade("match", ("iou",)), [_check("match", 0)])
    assert worse.unit_scores()["match"] == (1.0, 2.0) and not worse.regrades[0].applied


def test_a_hidden_check_may_show_its_result_before_the_due_date():
    """@graded(..., public=False, visible=True): hidden data (never in a check cell or the bundle),
    its result shown at once; the output's totals say which points are shown when."""
    shown = check_result(Graded("board", 2.0, "on hidden data", public=False, visible=True), None, 0.1)
    later = check_result(Graded("board", 2.0, "after the due date", public=False), fb.GradingFailure("x"), 0.1)
    assert (shown.public, shown.shown_now, later.shown_now) == (False, True, False)
    data = gradescope_results(Report("hw", [_check("iou", 2), shown, later]))
    assert [t["visibility"] for t in data["tests"]] == ["visible", "visible", "after_due_date"]
    assert data["output"].splitlines()[:3] == ["Public checks: 2 / 2 points.",
                                               "Checks on hidden data shown now: 2 / 2 points.",
                                               "Hidden checks (2 points) are shown after the due date."]


def test_without_the_solutions_the_table_says_what_official_grading_regrades():
    notes = unapplied_regrade_notes([Regrade("match", ("iou",)), Regrade("nms", ("iou",))])
    assert notes == ["a mistake is charged once: match and nms lost points through your iou; the official "
                     "grade re-grades them with the reference iou, so the points shown here for them are a "
                     "lower bound"]


def test_gradescope_json_the_table_and_the_staff_review():
    report = Report("hw", [_check("iou", 2), _check("match", 0, public=False)], ["a note"], 3.5,
                    review=["iou (nb.ipynb, line 1): imports gc"])
    data = gradescope_results(report)
    assert (data["score"], data["max_score"], data["execution_time"]) == (2.0, 4.0, 3.5)
    assert [t["visibility"] for t in data["tests"]] == ["visible", "after_due_date", "hidden"]
    assert data["tests"][-1]["name"] == REVIEW_TEST and data["tests"][-1]["max_score"] == 0
    assert "Public checks: 2 / 2 points." in data["output"] and "note: a note" in data["output"]
    assert combined_results([report]) == data
    lines = table_lines([report])
    assert lines[-1] == "TOTAL 2/4" and any(line.startswith("review (staff only") for line in lines)
    long = Report("hw", [CheckResult("iou", "t", 1.0, 0.0, fb.WRONG, "x" * 300 + " — the named mistake\nmore",
                                     True, 0.1)])
    assert any(line.endswith("x" * 300 + " — the named mistake") for line in table_lines([long]))


def test_no_regrade_where_the_units_own_cell_is_missing_or_a_stub():
    def failing(unit, kind, blamed=()):
        return CheckResult(unit, "t", 2.0, 0.0, kind, "x", True, 0.1, blamed)

    report = Report("hw", [failing("iou", fb.WRONG), failing("match", fb.NOT_IMPLEMENTED),
                           failing("loss", fb.MISSING), failing("nms", fb.NOT_IMPLEMENTED, ("iou",))])
    assert [r.unit for r in regrade_plan(report, UNITS)] == ["nms"]  # only nms blames a called unit
    info = Graded("nms", 2.0, "t")
    assert check_result(info, fb.GradingFailure("x", fb.NOT_IMPLEMENTED, ("iou",)), 0.1).blamed == ("iou",)
