"""Helpers for the kit's tests: build small nbgrader notebooks and student-like submissions."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]


def cell(kind: str, source: str, grade_id: str | None = None) -> nbformat.NotebookNode:
    """kind: given | answer | check | code | markdown (nbgrader metadata as the kit uses it)."""
    if kind == "markdown":
        c = nbformat.v4.new_markdown_cell(source)
    else:
        c = nbformat.v4.new_code_cell(source)
    if kind in ("given", "check"):
        c.metadata["nbgrader"] = {"grade_id": grade_id, "locked": True, "solution": False,
                                  "grade": False, "schema_version": 3}
    elif kind == "answer":
        c.metadata["nbgrader"] = {"grade_id": grade_id, "locked": False, "solution": True,
                                  "grade": False, "schema_version": 3}
    return c


def write_notebook(path: Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def copy_homework(dest_root: Path, hw: str = "retinaface", source: str = "solutions") -> Path:
    """A submission folder laid out like assignments/: ``dest_root/hw/*.ipynb`` copied from
    ``source`` (solutions/ or assignments/). Returns ``dest_root``."""
    shutil.copytree(REPO_ROOT / source / hw, dest_root / hw)
    return dest_root


def edit_cells(notebook: Path, edit) -> None:
    """Apply ``edit(cells)`` to the raw JSON cells of a notebook file and save it."""
    nb = json.loads(notebook.read_text())
    edit(nb["cells"])
    notebook.write_text(json.dumps(nb, indent=1))


def set_answer(notebook: Path, grade_id: str, source: str) -> None:
    """Replace the source of the answer cell ``grade_id``."""
    def edit(cells):
        matches = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
        if not matches:
            raise KeyError(f"{notebook}: no cell {grade_id!r}")
        for c in matches:
            c["source"] = source
    edit_cells(notebook, edit)


def grade(submission: Path, results: Path, *extra: str, timeout: float = 300) -> tuple[dict, str, int]:
    """Run ``pytest autograder/`` on a submission; return (results.json, output, exit code)."""
    cmd = [sys.executable, "-m", "pytest", "autograder/", "--submission", str(submission),
           "--results", str(results), "-q", "-p", "no:cacheprovider", *extra]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    data = json.loads(results.read_text()) if results.exists() else {}
    return data, proc.stdout + proc.stderr, proc.returncode


def graded_entries(results: dict) -> list[dict]:
    """results.json's tests with points (not the staff-only review, ``visibility: hidden``)."""
    return [t for t in results["tests"] if t["visibility"] != "hidden"]


def scores_by_unit(results: dict) -> dict[str, tuple[float, float]]:
    """{unit: (score, max_score)} summed over that unit's checks."""
    out: dict[str, list[float]] = {}
    for t in graded_entries(results):
        unit = t["name"].split(":", 1)[0]
        s = out.setdefault(unit, [0.0, 0.0])
        s[0] += t["score"]
        s[1] += t["max_score"]
    return {u: (s[0], s[1]) for u, s in out.items()}


def public_check_feedback(hw: str, unit: str, namespace: dict) -> dict:
    """{public test title of ``unit``: its feedback, or None when it passes}, the unit's definitions
    taken from ``namespace`` and graded in-process as the notebook's check cells grade them."""
    from autograder.feedback import GradingFailure
    from autograder.grading import LiveSubmission, graded_tests

    submission = LiveSubmission(hw, namespace)
    feedback = {}
    try:
        for test in graded_tests(hw):
            if test.graded.unit == unit and test.graded.public:
                try:
                    test(submission)
                    feedback[test.graded.title] = None
                except GradingFailure as err:
                    feedback[test.graded.title] = str(err)
    finally:
        submission.close()
    return feedback
