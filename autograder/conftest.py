"""``pytest autograder/``: the pytest view of grading (``autograder.engine`` + ``autograder.results``).

    pytest autograder/                                   # grades assignments/ (the release)
    pytest autograder/ --submission DIR --results r.json # DIR laid out like assignments/
    pytest autograder/ --device cuda                     # the same tests on the GPU

Each graded test is a pytest item; its outcome becomes the same ``CheckResult`` that
``autograder.engine`` records, and at the end of the session the homework's Report gets the same
charge-once (``engine.charge_once``: where the solutions are on disk, else a note of what official
grading re-grades) and the same views (``autograder.results``). So this command, ``make grade``,
Gradescope's ``run_autograder`` and class grading give one submission one results.json.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
import torch

from autograder import engine
from autograder.grading import Graded, SandboxSubmission
from autograder.results import Report, check_result, combined_results, order_checks, table_lines, \
    unapplied_regrade_notes
from autograder.units import HOMEWORKS, homework_units

USAGE_ERROR = 2              # exit code for a mistyped or empty --submission, as the kit's other tools


def pytest_addoption(parser: pytest.Parser) -> None:
    defaults = engine.Options()
    group = parser.getgroup("grading")
    group.addoption("--submission", default=str(engine.RELEASE_ROOT),
                    help="folder laid out like assignments/ (default: assignments/)")
    group.addoption("--hw", default=None, choices=HOMEWORKS,
                    help="grade this homework only (default: every homework found in the submission)")
    group.addoption("--device", default=defaults.device, choices=("cpu", "cuda"), help="where student code runs")
    group.addoption("--results", default=None, help="write Gradescope results.json here")
    group.addoption("--unit-timeout", type=float, default=defaults.unit_timeout,
                    help="seconds each graded unit may run (default %(default)s)")
    group.addoption("--unit-memory-gb", type=float, default=defaults.memory_gb,
                    help="memory each graded unit may allocate on CPU (default %(default)s GiB)")


def pytest_configure(config: pytest.Config) -> None:
    config._grading = {"records": {}, "submissions": {}, "notes": {}, "started": set(), "reports": [],
                       "clock": time.monotonic(), "tmp": None}


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


def homework_of(module) -> str | None:
    """The homework whose folder holds a graded test module (``autograder.<hw>.test_x``), checked
    against the module's own ``HW``: the folder decides, a disagreeing ``HW`` is a kit error."""
    parts = getattr(module, "__name__", "").split(".")
    hw = parts[1] if len(parts) == 3 and parts[0] == "autograder" and parts[1] in HOMEWORKS else None
    declared = getattr(module, "HW", hw)
    if hw is not None and declared != hw:
        raise pytest.UsageError(f"{module.__file__}: HW = {declared!r}, but the file is in autograder/{hw}/")
    return hw


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the graded tests of homeworks that are not being graded."""
    grading = config._grading.get("homeworks")
    if grading is None:
        return
    keep, drop = [], []
    for item in items:
        hw = homework_of(getattr(item, "module", None))
        (drop if hw is not None and hw not in grading else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _grading_cuda_without_gpu(config: pytest.Config) -> bool:
    return config.getoption("--device") == "cuda" and not torch.cuda.is_available()


def _options(config: pytest.Config, hw: str) -> engine.Options:
    return engine.Options(device=config.getoption("--device"), unit_timeout=config.getoption("--unit-timeout"),
                          memory_gb=config.getoption("--unit-memory-gb"),
                          reference_dir=engine.default_reference_dir(hw))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stage each homework's notebooks and launch its grading worker now, so that importing torch
    and loading the notebooks overlaps pytest's own collection."""
    config = session.config
    if _grading_cuda_without_gpu(config):
        return
    state = config._grading
    root = Path(config.getoption("--submission")).resolve()
    state["homeworks"] = _homeworks_to_grade(config)
    state["tmp"] = tempfile.TemporaryDirectory(prefix="pytest-grading-")
    for hw in state["homeworks"]:
        folder, notes = engine.stage_submission(hw, _homework_dir(root, hw), Path(state["tmp"].name))
        sub = engine.open_submission(hw, folder, _options(config, hw))
        sub.sandbox.spawn()
        state["submissions"][hw] = sub
        state["notes"][hw] = notes
        state["records"][hw] = []


@pytest.fixture
def submission(request: pytest.FixtureRequest) -> SandboxSubmission:
    config = request.config
    if _grading_cuda_without_gpu(config):
        pytest.skip("--device cuda: no CUDA device on this machine")
    state = config._grading
    sub = state["submissions"][homework_of(request.module)]
    if sub.hw not in state["started"]:
        state["started"].add(sub.hw)
        state["notes"][sub.hw] += engine.start(sub)
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
        if report.skipped:
            why = report.longrepr[-1] if isinstance(report.longrepr, tuple) else "skipped"
            record = check_result(info, pytest.skip.Exception(str(why)), report.duration)
        elif report.passed:
            record = check_result(info, None, report.duration)
        else:
            record = check_result(info, call.excinfo.value if call.excinfo else RuntimeError("no outcome"),
                                  report.duration)
            report.longrepr = f"[{info.unit}] {record.kind}: {record.feedback}"
        hw = homework_of(item.module)
        item.config._grading["records"].setdefault(hw, []).append(record)


def _reports(config: pytest.Config) -> list[Report]:
    """Each graded homework's Report, charged once (the submissions' workers are closed)."""
    state = config._grading
    reports = []
    for hw in state.get("homeworks", []):
        records = state["records"].get(hw, [])
        if not records:
            continue
        report = Report(hw, order_checks(records, engine.test_order(hw)), list(state["notes"].get(hw, [])))
        sub = state["submissions"].get(hw)
        options = _options(config, hw)
        if sub is not None:
            folder = sub.sandbox.submission
            engine.charge_once(report, folder, options)
            engine.staff_review(report, folder, options)
            engine.homework_extras(report, sub)
            if options.reference_dir is None:
                report.notes += unapplied_regrade_notes(report.regrades)
        report.seconds = round(time.monotonic() - state["clock"], 2)
        reports.append(report)
    return reports


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config._grading
    try:
        for sub in state["submissions"].values():  # every worker, and all it started, ends first
            sub.close()
        state["reports"] = _reports(config)
    finally:
        state["submissions"] = {}
        if state["tmp"] is not None:
            state["tmp"].cleanup()
            state["tmp"] = None
    path = config.getoption("--results")
    if path:  # written only now: no process that ran student code is left to touch it
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        errors = [f"grading error: {r.nodeid}: {r.longreprtext[-500:]}"
                  for r in reporter.stats.get("error", []) if hasattr(r, "longreprtext")] if reporter else []
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(combined_results(state["reports"], errors), indent=2))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    reports = config._grading["reports"]
    if not reports:
        return
    terminalreporter.section("grading")
    for line in table_lines(reports):
        terminalreporter.write_line(line)
