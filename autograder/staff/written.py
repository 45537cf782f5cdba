"""Written answers (nbgrader manually graded cells): grading by question, and the manual scores.

For each question, ``written/<grade_id>.html`` shows the prompt, then every student's answer beside
the model answer and its rubric (from the solutions; they stay in view while scrolling), so a TA
grades one question across the class. The TA types the points into ``manual_scores.csv`` (one row per student, one column per
question); ``autograder.staff.batch`` merges that file into the gradebook at every run.
"""
from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

MAX_ANSWER_CHARS = 20000
RUBRIC = re.compile(r"^\s*(\*\*)?rubric\b", re.IGNORECASE | re.MULTILINE)
SOLUTION_BLOCK = re.compile(r"### BEGIN SOLUTION\s*(.*?)\s*### END SOLUTION", re.S)


class ManualScoresError(ValueError):
    """A manual_scores.csv entry that is not a number of points in range (says file:line)."""


@dataclass
class Question:
    grade_id: str
    notebook: str
    points: float
    prompt: str
    model_answer: str
    rubric: str


def _cells(path: Path) -> list[dict]:
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []
    except (OSError, ValueError, AttributeError):
        return []


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _manual(cell: dict) -> dict | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and meta.get("solution") and meta.get("grade") and cell.get("cell_type") == "markdown":
        return meta
    return None


def questions(release: Path, solutions: Path | None) -> list[Question]:
    """The manually graded cells of a homework, in notebook order."""
    found = []
    for path in sorted(release.glob("*.ipynb")):
        cells = _cells(path)
        model = {(_manual(c) or {}).get("grade_id"): _source(c) for c in _cells(solutions / path.name)} \
            if solutions is not None else {}
        for k, cell in enumerate(cells):
            meta = _manual(cell)
            if meta is None:
                continue
            gid = meta.get("grade_id", f"cell{k}")
            block = SOLUTION_BLOCK.search(model.get(gid, ""))
            answer = block.group(1) if block else "(no model answer in the solutions)"
            split = RUBRIC.search(answer)
            rubric = answer[split.start():].strip() if split else "(no rubric in the model answer)"
            answer = answer[:split.start()].strip() if split else answer
            prompt = _source(cells[k - 1]) if k else ""
            found.append(Question(gid, path.name, float(meta.get("points", 0)), prompt, answer, rubric))
    return found


def answers(folder: Path, asked: list[Question]) -> dict[str, str]:
    """{grade_id: the student's text} read from staged notebooks in ``folder``."""
    out = {}
    for q in asked:
        for cell in _cells(folder / q.notebook):
            if (_manual(cell) or {}).get("grade_id") == q.grade_id:
                out[q.grade_id] = _source(cell)[:MAX_ANSWER_CHARS]
    return out


def write_question_pages(out: Path, asked: list[Question], by_student: dict[str, dict[str, str]]) -> None:
    """``out/<grade_id>.html`` per question: prompt, model answer, rubric, every student's answer."""
    out.mkdir(parents=True, exist_ok=True)
    for q in asked:
        rows = []
        for student, texts in sorted(by_student.items()):
            text = texts.get(q.grade_id)
            shown = html.escape(text) if text is not None else "<em>(no answer cell)</em>"
            rows.append(f"<tr><td class='who'>{html.escape(student)}</td><td><pre>{shown}</pre></td></tr>")
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(q.grade_id)}</title>
<style>body{{font-family:sans-serif;margin:1em}} pre{{white-space:pre-wrap;margin:0}}
.grid{{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}} .side{{position:sticky;top:0;align-self:start;
max-height:100vh;overflow:auto}} .model{{background:#eef7ee;padding:.5em}} .rubric{{background:#fff6e0;padding:.5em}}
td{{vertical-align:top;border-top:1px solid #ccc;padding:.4em}} .who{{font-weight:bold;width:10em}}</style>
</head><body><h1>{html.escape(q.grade_id)} ({q.points:g} points, {html.escape(q.notebook)})</h1>
<pre>{html.escape(q.prompt)}</pre>
<div class="grid"><div><h2>Answers ({len(rows)} students)</h2>
<p>Enter points in manual_scores.csv, column {html.escape(q.grade_id)}.</p><table>{''.join(rows)}</table></div>
<div class="side"><h2>Model answer</h2><div class="model"><pre>{html.escape(q.model_answer)}</pre></div>
<h2>Rubric</h2><div class="rubric"><pre>{html.escape(q.rubric)}</pre></div></div></div></body></html>"""
        (out / f"{q.grade_id}.html").write_text(page, encoding="utf-8")


def ensure_manual_scores(path: Path, asked: list[Question], students: list[str]) -> None:
    """Create ``manual_scores.csv`` (empty scores) or add the rows of new students to it."""
    columns = ["student"] + [q.grade_id for q in asked]
    rows = read_manual_rows(path) if path.exists() else []
    known = {r["student"] for r in rows}
    rows += [{"student": s} for s in students if s not in known]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(rows)


def read_manual_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def manual_scores(path: Path, asked: list[Question]) -> dict[str, dict[str, float]]:
    """{student: {grade_id: points}} of the filled cells; ManualScoresError for a bad entry."""
    most = {q.grade_id: q.points for q in asked}
    scores: dict[str, dict[str, float]] = {}
    if not path.exists():
        return scores
    for line, row in enumerate(read_manual_rows(path), start=2):
        for gid, value in row.items():
            if gid in most and value not in (None, "") and value.strip():
                try:
                    points = float(value)
                except ValueError:
                    points = None
                if points is None or not 0 <= points <= most[gid]:
                    raise ManualScoresError(f"{path}:{line}: {gid} = {value!r}: expected a number of "
                                            f"points from 0 to {most[gid]:g}")
                scores.setdefault(row["student"], {})[gid] = points
    return scores
