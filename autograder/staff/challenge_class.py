"""The final project's other grading views: Gradescope's ``run_autograder`` and a whole class.

    python -m autograder.staff.challenge_class gradescope [--root /autograder]
    python -m autograder.staff.challenge_class class --submissions submitted/ --out outputs/grades/challenge \
        [--jobs 2] [--force]

Both grade with ``autograder.staff.challenge.grade_challenge`` and write results.json with the one
results pipeline (``autograder.results.gradescope_results``: the tests, the points and the
``leaderboard``), so an upload gets the same results.json from each.

``gradescope``: grades ``ROOT/submission`` and always writes ``ROOT/results/results.json``, also
when the kit itself fails (then with a message and a failing exit status).

``class``: one entry per student in ``--submissions`` (a folder holding the packed upload somewhere
inside, or ``<student>.zip``: only its ``challenge.pt`` and ``.ipynb`` members are read). Writes
``students/<student>/{results.json, report.json}``, ``gradebook.csv`` (the challenge points, the
total and one column per leaderboard entry) and ``summary.md`` with the leaderboard table
(``autograder.staff.class_report``). The hidden splits are rendered once before grading; each upload
runs in its own confined runner, ``--jobs`` at a time. A rerun skips graded students unless
``--force``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autograder.results import gradescope_results
from autograder.staff import class_report
from autograder.staff.challenge import HW, UNIT, grade_challenge
from autograder.staff.hidden_set import CACHE_ROOT, IMAGES_PER_SPLIT, render_all
from autograder.submissions import Student, SubmissionError, students_in
from utils.challenge import FILE_NAME, MAX_BYTES

DEFAULT_ROOT = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
MAX_NOTEBOOK_BYTES = 20 * 2**20


def extract_upload(archive: Path, dest: Path) -> None:
    """``challenge.pt`` (at most 50 MB, else left out: graded as missing) and the ``.ipynb`` members
    of a zip, without absolute or ``..`` paths. Raises SubmissionError for a file that is not a zip."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                name = member.filename.lower()
                limit = MAX_BYTES if name.endswith(FILE_NAME) else MAX_NOTEBOOK_BYTES if name.endswith(".ipynb") else -1
                if member.is_dir() or member.file_size > limit:
                    continue
                parts = [p for p in Path(member.filename).parts if p not in ("", ".", "..", "/")]
                if not parts:
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise SubmissionError(f"{archive}: not a readable zip file ({err})") from None


def grade_one(student: Student, out: Path, images: int, cache: Path) -> None:
    """Grade one student's upload into ``out`` (results.json, then report.json last)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="challenge-class-") as tmp:
        source, notes = student.path, []
        if student.is_zip:
            source = Path(tmp) / "unzipped"
            source.mkdir()
            try:
                extract_upload(student.path, source)
            except SubmissionError as err:
                notes.append(str(err))
        report = grade_challenge(source, images, cache)
    report.notes = notes + report.notes
    (out / "results.json").write_text(json.dumps(gradescope_results(report), indent=2))
    data = dict(report.to_dict(), status="graded")
    (out / "report.json.tmp").write_text(json.dumps(data))
    os.replace(out / "report.json.tmp", out / "report.json")


def grade_class(submissions: Path, out: Path, jobs: int = 2, force: bool = False,
                images: int = IMAGES_PER_SPLIT, cache: Path = CACHE_ROOT) -> Path:
    """Grade every student of ``submissions`` into ``out``; returns the summary's path."""
    students = students_in(submissions)
    render_all(images, cache)                        # once, before the graders run side by side
    todo = [s for s in students if force or not (out / "students" / s.name / "report.json").exists()]
    print(f"{HW}: {len(students)} uploads, {len(todo)} to grade", file=sys.stderr)
    with ThreadPoolExecutor(max(1, jobs)) as pool:   # each grading waits on its own runner process
        list(pool.map(lambda s: grade_one(s, out / "students" / s.name, images, cache), todo))
    reports = {}
    for s in students:
        path = out / "students" / s.name / "report.json"
        if path.exists():
            reports[s.name] = json.loads(path.read_text())
    rows = class_report.gradebook(out / "gradebook.csv", reports, [UNIT], [], {})
    max_auto = max((sum(m for _, m in class_report.unit_scores(r).values()) for r in reports.values()), default=0.0)
    return class_report.summary(out, rows, reports, [UNIT], max_auto, {})


def gradescope(root: Path, images: int = IMAGES_PER_SPLIT, cache: Path = CACHE_ROOT) -> int:
    """Gradescope's run_autograder: always writes ROOT/results/results.json."""
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    started, code = time.monotonic(), 0
    try:
        results = gradescope_results(grade_challenge(root / "submission", images, cache))
    except Exception:  # a kit bug: still a results.json that says so
        traceback.print_exc()
        results = {"score": 0.0, "max_score": 0.0, "execution_time": round(time.monotonic() - started, 2),
                   "output": "The autograder itself failed (not your upload); please tell your course staff:\n"
                             + traceback.format_exc()[-1500:], "tests": []}
        code = 1
    results_path.write_text(json.dumps(results, indent=2))
    print(results["output"])
    print(f"score {results['score']:g}/{results['max_score']:g}; wrote {results_path}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gs = commands.add_parser("gradescope", help="grade ROOT/submission into ROOT/results/results.json")
    gs.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    cl = commands.add_parser("class", help="grade one upload per student; gradebook and leaderboard")
    cl.add_argument("--submissions", required=True, type=Path)
    cl.add_argument("--out", required=True, type=Path)
    cl.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    cl.add_argument("--force", action="store_true")
    for sub in (gs, cl):
        sub.add_argument("--images", type=int, default=IMAGES_PER_SPLIT, help="hidden pictures per split")
        sub.add_argument("--cache", type=Path, default=CACHE_ROOT)
    args = parser.parse_args(argv)
    if args.command == "gradescope":
        return gradescope(args.root, args.images, args.cache)
    try:
        summary = grade_class(args.submissions, args.out, args.jobs, args.force, args.images, args.cache)
    except SubmissionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"gradebook: {args.out / 'gradebook.csv'}; summary: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
