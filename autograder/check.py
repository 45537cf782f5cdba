"""The check cells of the notebooks: the autograder's public checks, run on the live notebook.

    check = Checker("retinaface", globals())   # in the notebook's first (given) cell
    check("jaccard")                           # in the check cell under an answer cell

It runs the same graded test functions as ``pytest autograder/`` (public ones only) against the
definitions in the running notebook and prints one line per check.
"""
from __future__ import annotations

import pytest

from autograder.results import SKIPPED, check_result
from autograder.grading import LiveSubmission, graded_tests


class Checker:
    def __init__(self, hw: str, namespace: dict, device: str = "cpu") -> None:
        self.hw, self.namespace, self.device = hw, namespace, device

    def tests_for(self, unit: str) -> list:
        """The public graded tests of ``unit``."""
        tests = [fn for fn in graded_tests(self.hw) if fn.graded.unit == unit and fn.graded.public]
        if not tests:
            raise ValueError(f"no public checks for unit {unit!r} in autograder/{self.hw}/test_*.py")
        return tests

    def __call__(self, unit: str) -> None:
        submission = LiveSubmission(self.hw, self.namespace, self.device)
        earned = total = 0.0
        try:
            for test in self.tests_for(unit):
                info = test.graded
                total += info.points
                try:
                    test(submission)
                except (Exception, pytest.skip.Exception, pytest.fail.Exception) as err:
                    result = check_result(info, err, 0.0)
                    if result.kind == SKIPPED:  # not counted: the official grader runs it
                        total -= info.points
                        print(f"– {info.title} (not run here) — {result.feedback}")
                    else:
                        print(f"✗ {info.title} (0/{info.points:g}) — {result.kind}: {result.feedback}")
                else:
                    earned += info.points
                    print(f"✓ {info.title} ({info.points:g}/{info.points:g})")
        finally:
            submission.close()
        verdict = "all public checks pass" if earned == total else "some checks fail"
        print(f"{unit}: {earned:g}/{total:g} points on the public checks — {verdict}")
