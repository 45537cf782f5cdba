"""pytest plumbing for grading: options, the sandboxed submission, the score table, results.json.

    pytest autograder/                                   # grades assignments/ (the release)
    pytest autograder/ --submission DIR --results r.json # DIR laid out like assignments/
    pytest autograder/ --device cuda                     # the same tests on the GPU
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from autograder import feedback as fb
from autograder.grading import Graded, SandboxSubmission
from autograder.sandbox import DEFAULT_UNIT_TIMEOUT, REPO_ROOT
from autograder.units import HOMEWORKS, homework_units

RELEASE_DIR = REPO_ROOT / "assignments"
FEEDBACK_WIDTH = 90
USAGE_ERROR = 2              # exit code for a mistyped or empty --submission, as the kit's other tools


@dataclass
class GradedResult:
    unit: str
    title: str
    points: float
    score: float
    kind: str          # "ok", "skipped" or a feedback kind
    feedback: str
    public: bool
    seconds: float


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading")
    group.addoption("--submission", default=str(RELEASE_DIR),
                    help="folder laid out like assignments/ (default: assignments/)")
    group.addoption("--hw", default=None, choices=HOMEWORKS,
                    help="grade this homework only (default: every homework found in the submission)")
    group.addoption("--device", default="cpu", choices=("cpu", "cuda"), help="where student code runs")
    group.addoption("--results", default=None, help="write Gradescope results.json here")
    group.addoption("--unit-timeout", type=float, default=DEFAULT_UNIT_TIMEOUT,
                    help="seconds each graded unit may run (default %(default)s)")
    group.addoption("--unit-memory-gb", type=float, default=4.0,
                    help="memory each graded unit may allocate on CPU (default %(default)s GiB)")


def pytest_configure(config: pytest.Config) -> None:
    config._grading = {"results": [], "submissions": {}, "notes": [], "started": set(),
                       "clock": time.monotonic()}


def _homework_dir(root: Path, hw: str) -> Path:
    """``root/hw`` when the submission is laid out like assignments/, else ``root`` itself."""
    return root / hw if (root / hw).is_dir() else root


def homeworks_in(root: Path) -> list[str]:
    """The homeworks with at least one of their notebooks in ``root/<hw>/`` or directly in ``root``."""
    found = []
    for hw in HOMEWORKS:
        notebooks = {u.notebook for u in homework_units(hw).values()}
        if any((_homework_dir(root, hw) / nb).is_file() for nb in notebooks):
            found.append(hw)
    return found


def _homeworks_to_grade(config: pytest.Config) -> list[str]:
    """``--hw``, or every homework found in ``--submission``; stops pytest with one line and exit
    code 2 when the folder is missing or holds no homework notebook."""
    root = Path(config.getoption("--submission"))
    if not root.is_dir():
        pytest.exit(f"--submission {root}: no such folder (expected a folder laid out like "
                    f"assignments/, or one holding the notebooks)", returncode=USAGE_ERROR)
    chosen = config.getoption("--hw")
    if chosen:
        return [chosen]
    found = homeworks_in(root.resolve())
    if not found:
        expected = ", ".join(f"{hw}/{sorted({u.notebook for u in homework_units(hw).values()})[0]}"
                             for hw in HOMEWORKS)
        pytest.exit(f"--submission {root}: no homework notebook found (expected e.g. {expected}, "
                    f"or the notebooks directly in the folder)", returncode=USAGE_ERROR)
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the graded tests of homeworks that are not being graded."""
    grading = config._grading.get("homeworks")
    if grading is None:
        return
    keep, drop = [], []
    for item in items:
        hw = getattr(getattr(item, "module", None), "HW", None)
        (drop if hw is not None and hw not in grading else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _grading_cuda_without_gpu(config: pytest.Config) -> bool:
    return config.getoption("--device") == "cuda" and not torch.cuda.is_available()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Launch each homework's grading worker now, so that importing torch and loading the
    notebooks overlaps pytest's own collection."""
    config = session.config
    if _grading_cuda_without_gpu(config):
        return
    root = Path(config.getoption("--submission")).resolve()
    config._grading["homeworks"] = _homeworks_to_grade(config)
    for hw in config._grading["homeworks"]:
        sub = SandboxSubmission(hw, _homework_dir(root, hw), RELEASE_DIR / hw, config.getoption("--device"),
                                config.getoption("--unit-timeout"), config.getoption("--unit-memory-gb"))
        sub.sandbox.spawn()
        config._grading["submissions"][hw] = sub


@pytest.fixture
def submission(request: pytest.FixtureRequest) -> SandboxSubmission:
    config = request.config
    if _grading_cuda_without_gpu(config):
        pytest.skip("--device cuda: no CUDA device on this machine")
    state = config._grading
    sub = state["submissions"][request.module.HW]
    if sub.hw not in state["started"]:
        state["started"].add(sub.hw)
        try:
            sub.sandbox.start()
        except RuntimeError as err:
            state["notes"].append(f"{sub.hw}: {err}")
        state["notes"] += [f"{sub.hw}: {p}" for p in sub.sandbox.problems]
        note = sub.sandbox.isolation_note
        if note and not any(n.endswith(note) for n in state["notes"]):  # one line, not one per homework
            state["notes"].append(note)
    return sub


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("graded")
    if marker is None:
        return
    info: Graded = marker.args[0]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        results = item.config._grading["results"]
        if report.skipped:
            results.append(GradedResult(info.unit, info.title, info.points, 0.0, "skipped",
                                        str(report.longrepr[-1]) if isinstance(report.longrepr, tuple)
                                        else "skipped", info.public, report.duration))
        elif report.passed:
            results.append(GradedResult(info.unit, info.title, info.points, info.points, "ok", "",
                                        info.public, report.duration))
        else:
            err = call.excinfo.value if call.excinfo else None
            if isinstance(err, fb.GradingFailure):
                kind, message = err.kind, str(err)
            else:  # a check that crashed on an unexpected answer: still the student's feedback
                kind = fb.ERROR
                message = f"the check could not handle the result: {type(err).__name__}: {err}"
            report.longrepr = f"[{info.unit}] {kind}: {message}"
            results.append(GradedResult(info.unit, info.title, info.points, 0.0, kind, message,
                                        info.public, report.duration))


def _unit_order() -> list[str]:
    """Every homework's units in notebook order (the order of their ``UNITS``)."""
    return [unit for hw in HOMEWORKS for unit in homework_units(hw)]  # grade_ids are unique per kit


def _first_line(text: str, width: int = FEEDBACK_WIDTH) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config._grading
    results: list[GradedResult] = state["results"]
    if not results and not state["notes"]:
        return
    tr = terminalreporter
    tr.section("grading")
    order = {unit: k for k, unit in enumerate(_unit_order())}
    results = sorted(results, key=lambda r: order.get(r.unit, len(order)))  # stable: test order within a unit
    for note in state["notes"]:
        tr.write_line(f"note: {note}")
    unit_w = max([4] + [len(r.unit) for r in results])
    title_w = min(48, max([5] + [len(r.title) for r in results]))
    tr.write_line(f"{'unit':<{unit_w}}  {'check':<{title_w}}  {'points':>9}  feedback")
    for r in results:
        pts = "skipped" if r.kind == "skipped" else f"{r.score:g}/{r.points:g}"
        note = "ok" if r.kind == "ok" else f"{r.kind}: {_first_line(r.feedback)}"
        tr.write_line(f"{r.unit:<{unit_w}}  {r.title[:title_w]:<{title_w}}  {pts:>9}  {note}")
    counted = [r for r in results if r.kind != "skipped"]
    total = sum(r.score for r in counted)
    max_total = sum(r.points for r in counted)
    tr.write_line(f"TOTAL {total:g}/{max_total:g}")


def _gradescope(config: pytest.Config, collect_errors: list[str]) -> dict:
    state = config._grading
    tests = []
    for r in state["results"]:
        if r.kind == "skipped":
            continue
        tests.append({
            "name": f"{r.unit}: {r.title}",
            "score": r.score,
            "max_score": r.points,
            "status": "passed" if r.kind == "ok" else "failed",
            "output": "" if r.kind == "ok" else f"{r.kind}: {r.feedback}",
            "visibility": "visible" if r.public else "after_due_date",
        })
    return {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "execution_time": round(time.monotonic() - state["clock"], 2),
        "output": "\n".join(state["notes"] + collect_errors),
        "tests": tests,
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config._grading
    try:
        for sub in state["submissions"].values():  # every worker, and all it started, ends first
            sub.close()
    finally:
        state["submissions"] = {}
        path = config.getoption("--results")
        if path:  # written only now: no process that ran student code is left to touch it
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            errors = [f"grading error: {r.nodeid}: {r.longreprtext[-500:]}"
                      for r in reporter.stats.get("error", []) if hasattr(r, "longreprtext")] if reporter else []
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(_gradescope(config, errors), indent=2))
