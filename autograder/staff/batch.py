"""Grade a whole class: every submission in isolation, a gradebook, a summary and written answers.

    python -m autograder.staff.batch --submissions submitted/ --out outputs/grades/class [--hw retinaface]
                               [--jobs 2] [--force] [--unit-timeout 30] [--submission-timeout 900]

``--submissions`` holds one entry per student: a folder (nbgrader's ``submitted/<student>/<hw>/``
or the notebooks anywhere inside) or a ``<student>.zip``. Writes into ``--out``:
``students/<student>/{results.json, feedback.txt, report.json}``, ``gradebook.csv``, ``summary.md``
with ``score_histogram.png`` and ``unit_pass_rate.png``, ``written/<question>.html`` and
``manual_scores.csv`` (fill it in; the next run merges it into the gradebook).

Speed and isolation: this process imports torch and the kit once and never loads a reference or
student code. Each submission is graded in a process forked from it (``--jobs`` at a time, killed
past ``--submission-timeout``); its grading workers are forked from a clean copy of this process
(``autograder.sandbox.forkserver``), saving the interpreter and torch start-up of
``python -m autograder.sandbox.worker`` (``--no-fork-workers`` starts them that way instead). A rerun
skips the students already graded unless ``--force``.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import gc
import importlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from autograder.staff import class_report, written
from autograder import engine
from autograder.engine import Options
from autograder.results import Report, feedback_text, gradescope_results
from autograder.submissions import (Student, SubmissionError, extract_notebooks, find_notebooks, grade_ids,
                                    released_notebooks, students_in)
from autograder.units import HOMEWORKS, homework_units

REPO_ROOT = Path(__file__).resolve().parents[2]
USAGE_ERROR = 2
DEFAULT_SUBMISSION_TIMEOUT = 900.0
POLL_SECONDS = 0.05


class UsageError(Exception):
    """A mistake on the command line or in the input folders: one line, exit status 2."""


def choose_homework(students: list[Student], wanted: str | None) -> str:
    """``--hw``, else the homework whose released grade_ids the submissions share most."""
    if wanted is not None:
        if wanted not in HOMEWORKS:
            raise UsageError(f"--hw {wanted}: unknown homework (expected one of {', '.join(HOMEWORKS)})")
        return wanted
    if len(HOMEWORKS) == 1:
        return HOMEWORKS[0]
    ids = {hw: set().union(*released_notebooks(REPO_ROOT / "assignments" / hw).values()) for hw in HOMEWORKS}
    votes = dict.fromkeys(HOMEWORKS, 0)
    for student in students[:10]:
        if not student.is_zip:
            found = set().union(set(), *(grade_ids(p) for p in find_notebooks(student.path)))
            votes[max(HOMEWORKS, key=lambda hw: len(ids[hw] & found))] += bool(found)
    best = max(votes, key=votes.get)
    if not votes[best]:
        raise UsageError(f"cannot tell the homework from the notebooks; pass --hw ({', '.join(HOMEWORKS)})")
    return best


def preload(hw: str) -> None:
    """Import torch, the grading of ``hw`` and what the released notebooks' given cells import, so
    forked graders and workers start with them (nothing here runs student code or loads references)."""
    import torch

    torch.set_num_threads(1)  # no thread pool before fork()
    from autograder.sandbox import forkserver, worker  # noqa: F401
    from autograder.grading import graded_tests

    homework_units(hw)
    graded_tests(hw)
    for path in (REPO_ROOT / "assignments" / hw).glob("*.ipynb"):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code" and str(cell["metadata"].get("nbgrader", {}).get("grade_id", "")
                                                  ).startswith("given_"):
                _import_top_level(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]))
    gc.collect()
    gc.freeze()  # forked processes then never copy these objects' pages when the collector runs


def _import_top_level(source: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # an optional import of a given cell; the worker reports real failures
                pass


@dataclasses.dataclass
class BatchOptions(Options):
    fork_workers: bool = True    # workers forked from a preloaded server (autograder.sandbox.forkserver)


def grade_student(student: Student, hw: str, out: Path, options: BatchOptions) -> None:
    """Grade one student (in a forked process) and write their three files into ``out``."""
    from autograder.sandbox.forkserver import ForkedSandbox, ForkServer

    # First, while this process holds nothing secret.
    server = ForkServer() if options.fork_workers else None
    try:
        if server is not None:
            options = dataclasses.replace(options, sandbox=functools.partial(ForkedSandbox, server=server))
        with tempfile.TemporaryDirectory(prefix="batch-") as tmp:
            notes = []
            source = Path(tmp) / "unzipped"
            try:
                if student.is_zip:
                    extract_notebooks(student.path, source)
                else:
                    source = student.path
            except SubmissionError as err:  # an unreadable zip: graded as an empty submission
                source.mkdir(parents=True, exist_ok=True)
                notes.append(str(err))
            started = time.monotonic()
            folder, staged_notes = engine.stage_submission(hw, source, Path(tmp) / "staged")
            report = engine.grade_staged(hw, folder, staged_notes, options)  # staged once: graded and read
            report.seconds = round(time.monotonic() - started, 2)
            report.notes = notes + report.notes
            found = any(folder.glob("*.ipynb"))
            asked = written.questions(engine.release_dir(hw), None)
            data = dict(report.to_dict(), status="graded" if found else "no notebooks",
                        written=written.answers(folder, asked))
            _write(out, student.name, data, report)
    finally:
        if server is not None:
            server.close()


def _write(out: Path, student: str, data: dict, report: Report | None) -> None:
    """The student's results.json (the one pipeline's), feedback.txt and report.json (last)."""
    out.mkdir(parents=True, exist_ok=True)
    report = report or Report(data["hw"], notes=data["notes"])
    (out / "results.json").write_text(json.dumps(gradescope_results(report), indent=2))
    (out / "feedback.txt").write_text(feedback_text(report, student), encoding="utf-8")
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, out / "report.json")  # last: its presence means "graded"


def _failed(out: Path, student: str, hw: str, why: str) -> None:
    _write(out, student, {"hw": hw, "checks": [], "notes": [why], "seconds": 0, "status": "failed"}, None)


def run_all(todo: list[Student], hw: str, out: Path, options: Options, jobs: int, timeout: float) -> None:
    """Grade ``todo`` with ``jobs`` forked graders at a time; a grader that dies or runs past
    ``timeout`` is killed and its student marked failed (to grade by hand)."""
    from tqdm import tqdm

    running: dict[int, tuple[Student, float]] = {}
    queue = list(todo)
    with tqdm(total=len(todo), unit="submission", desc=f"grading {hw}") as bar:
        try:
            _schedule(queue, running, hw, out, options, jobs, timeout, bar)
        finally:  # interrupted: stop the graders still running
            for pid in running:
                _kill_group(pid)


def _schedule(queue: list[Student], running: dict, hw: str, out: Path, options: Options, jobs: int,
              timeout: float, bar) -> None:
    while queue or running:
        while queue and len(running) < jobs:
            student = queue.pop(0)
            running[_fork_grader(student, hw, out, options)] = (student, time.monotonic() + timeout)
        time.sleep(POLL_SECONDS)
        for pid, (student, deadline) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            late = not done and time.monotonic() > deadline
            if late:
                _kill_group(pid)
                os.waitpid(pid, 0)
            if done or late:
                del running[pid]
                folder = out / "students" / student.name
                if late:
                    _failed(folder, student.name, hw, f"grading took more than {timeout:g} s; stopped")
                elif not (folder / "report.json").exists():
                    _failed(folder, student.name, hw, f"the grader stopped (status {status}); see the log")
                bar.update(1)


def _fork_grader(student: Student, hw: str, out: Path, options: Options) -> int:
    """Fork a process (its own process group) that grades ``student``; returns its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            grade_student(student, hw, out / "students" / student.name, options)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def write_class_files(out: Path, hw: str, students: list[Student]) -> Path:
    """Gradebook, summary, plots, written-answer pages and the manual scores (merged)."""
    reports = {}
    for s in students:
        path = out / "students" / s.name / "report.json"
        if path.exists():
            reports[s.name] = json.loads(path.read_text())
    units = list(homework_units(hw))
    asked = written.questions(REPO_ROOT / "assignments" / hw, _solutions(hw))
    manual_path = out / "manual_scores.csv"
    written.ensure_manual_scores(manual_path, asked, sorted(reports))
    try:
        manual = written.manual_scores(manual_path, asked)
    except written.ManualScoresError as err:
        raise UsageError(str(err)) from None
    written.write_question_pages(out / "written", asked,
                                 {s: r.get("written", {}) for s, r in reports.items()})
    rows = class_report.gradebook(out / "gradebook.csv", reports, units, [q.grade_id for q in asked], manual)
    max_auto = max((sum(m for _, m in class_report.unit_scores(r).values()) for r in reports.values()),
                   default=0.0)
    failed: dict[str, list[str]] = {}
    for s, r in sorted(reports.items()):
        if r.get("status") != "graded":
            failed.setdefault(r.get("status", "failed"), []).append(s)
    return class_report.summary(out, rows, reports, units, max_auto, failed)


def _solutions(hw: str) -> Path | None:
    path = REPO_ROOT / "solutions" / hw
    return path if path.is_dir() else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", required=True, type=Path, help="one folder or .zip per student")
    parser.add_argument("--out", required=True, type=Path, help="where the grades go")
    parser.add_argument("--hw", default=None, help=f"homework ({', '.join(HOMEWORKS)}); default: detected")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--force", action="store_true", help="grade again students already graded")
    parser.add_argument("--unit-timeout", type=float, default=Options.unit_timeout)
    parser.add_argument("--unit-memory-gb", type=float, default=Options.memory_gb)
    parser.add_argument("--submission-timeout", type=float, default=DEFAULT_SUBMISSION_TIMEOUT)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--fork-workers", action=argparse.BooleanOptionalAction, default=True,
                        help="fork the grading workers from a preloaded copy of this process (default; "
                             "--no-fork-workers starts each as a new interpreter, seconds slower)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of usage errors")
    args = parser.parse_args(argv)
    try:
        if args.jobs < 1:
            raise UsageError(f"--jobs {args.jobs}: expected 1 or more")
        students = students_in(args.submissions)
        hw = choose_homework(students, args.hw)
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out}: is a file, expected a folder")
        args.out.mkdir(parents=True, exist_ok=True)
        done = {s.name for s in students if (args.out / "students" / s.name / "report.json").exists()}
        todo = [s for s in students if args.force or s.name not in done]
        print(f"{hw}: {len(students)} submissions, {len(todo)} to grade "
              f"({len(students) - len(todo)} already graded; --force grades them again)", file=sys.stderr)
        options = BatchOptions(device=args.device, unit_timeout=args.unit_timeout, memory_gb=args.unit_memory_gb,
                               reference_dir=engine.default_reference_dir(hw), fork_workers=args.fork_workers)
        if todo:
            preload(hw)
            run_all(todo, hw, args.out, options, args.jobs, args.submission_timeout)
        summary = write_class_files(args.out, hw, students)
    except (SubmissionError, UsageError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    print(f"gradebook: {args.out / 'gradebook.csv'}; summary: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
