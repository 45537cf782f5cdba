"""What the grader can tell from a submission's notebook files alone, before any code runs: a
notebook that is missing (or saved under another name, ``4_matching_nms (1).ipynb``) or unreadable,
and locked cells the student edited (grading runs the released version of those, so the edits are
discarded). Only JSON is read here; student code runs in the worker.
"""
from __future__ import annotations

from pathlib import Path

from utils.notebook import NotebookFormatError, read_cells


class SubmittedNotebooks:
    def __init__(self, submission_dir: Path, release_dir: Path, units: dict) -> None:
        self.submission_dir, self.release_dir, self.units = submission_dir, release_dir, units
        self._problems: dict[str, str | None] = {}
        self._edited: dict[str, list[str]] = {}

    def _find_problem(self, notebook: str) -> str | None:
        path = self.submission_dir / notebook
        if not path.is_file():
            stem = Path(notebook).stem
            others = sorted(p.name for p in self.submission_dir.glob("*.ipynb") if stem in p.name)
            found = (f"; found {', '.join(repr(o) for o in others)}: rename it to {notebook}" if others
                     else f"; submit it under that exact name (as released in assignments/)")
            return f"{notebook} is not in your submission, so none of its cells were graded{found}"
        try:
            read_cells(path)
        except NotebookFormatError as err:
            return (f"{notebook} could not be read as a Jupyter notebook, so none of its cells were "
                    f"graded ({str(err).split('(', 1)[-1].rstrip(')')}); open it in Jupyter, or "
                    f"restore it from the release and copy your answers back in")
        return None

    def problem(self, unit: str) -> str | None:
        """Why ``unit``'s notebook cannot be graded, or None. The full explanation is given once, to
        the notebook's first unit; its other units point there."""
        notebook = self.units[unit].notebook
        if notebook not in self._problems:
            self._problems[notebook] = self._find_problem(notebook)
        text = self._problems[notebook]
        first = next(u for u, spec in self.units.items() if spec.notebook == notebook)
        if text is None or unit == first:
            return text
        return f"not graded: {notebook} is missing or unreadable (see the checks of {first})"

    def edited_locked_cells(self, notebook: str) -> list[str]:
        """grade_ids of the locked code cells whose source differs from the release."""
        if notebook not in self._edited:
            try:
                released = {c.grade_id: c.source for c in read_cells(self.release_dir / notebook)
                            if c.cell_type == "code" and c.nbgrader.get("locked") and c.grade_id}
                submitted = read_cells(self.submission_dir / notebook)
            except (OSError, NotebookFormatError):
                self._edited[notebook] = []
                return []
            self._edited[notebook] = [c.grade_id for c in submitted if c.grade_id in released
                                      and c.source.strip() != released[c.grade_id].strip()]
        return self._edited[notebook]

    def annotate(self, unit: str, message: str) -> str:
        """``message`` plus, for a name that is not defined, the locked cells the student edited in
        that unit's notebook: those edits never reach the grader."""
        if "not defined" not in message and "NameError" not in message:
            return message
        notebook = self.units[unit].notebook
        edited = self.edited_locked_cells(notebook)
        if not edited:
            return message
        return (f"{message} (note: you edited the locked cell(s) {', '.join(edited)} of {notebook}; "
                f"grading runs the released version of every locked cell, so those edits are "
                f"discarded: put helpers inside your answer cell)")
