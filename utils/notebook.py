"""Load a notebook's definitions as a Python module, the way grading and later notebooks see them.

Which cells run (nbgrader cell metadata decides):

- **answer cells** (``solution: true`` code cells): one graded unit each, keyed by ``grade_id``;
- **given definition cells**: locked code cells whose ``grade_id`` starts with ``given_``
  (imports, helper classes the homework provides);
- nothing else: check cells, plots, training runs and downloads never run when a notebook is loaded.

When grading a submission, pass the released notebook as ``release``: the cell order and every given
cell come from the release, only the answer cells come from the submission (as nbgrader's
OverwriteCells does), so editing a locked cell changes nothing. An answer cell whose ``grade_id``
is absent makes its unit *missing*; a ``grade_id`` that appears twice is reported and the last copy
is used (as running the notebook top to bottom would); an error in one answer cell is recorded
against that unit and the other cells still run. Output, warnings and IPython magics in cells are
captured or skipped, never fatal. Reassigning library functions is undone and reported
(``utils.guard``).

Other notebooks use earlier parts with ``import_from_notebook``; when the grading worker sets
``FACEKIT_RELEASE_DIR``, those nested loads take their given cells from the release too.
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import linecache
import os
import sys
import traceback
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from utils import guard

GIVEN_PREFIX = "given_"
RELEASE_ENV = "FACEKIT_RELEASE_DIR"  # folder of released notebooks for nested loads while grading
SKIP_ENV = "FACEKIT_SKIP_CELLS"      # grade_ids the grading worker does not run
MAX_CAPTURED_CHARS = 2000
TRACEBACK_FRAMES = 3

# Notebooks loaded in this process, keyed by (paths, modification times, skip). A later notebook
# that imports an earlier one gets the module already loaded instead of running its cells again:
# in the grading worker, a cell that was skipped for killing the worker stays skipped; in Jupyter,
# saving the earlier notebook changes its mtime and so reloads it.
_LOADED: dict[tuple, types.ModuleType] = {}


class NotebookFormatError(ValueError):
    """A file that is not a readable Jupyter notebook."""


class NotebookDependencyError(RuntimeError):
    """Raised when code uses a definition that another notebook failed to provide."""


@dataclass
class UnitLoad:
    """How one graded unit (answer cell) loaded.

    status: ``ok`` | ``missing`` | ``error`` | ``not_implemented`` | ``tampered`` | ``skipped``.
    """

    grade_id: str
    notebook: str
    status: str
    detail: str = ""
    cell_index: int | None = None
    copies: int = 1


@dataclass
class NotebookReport:
    path: str
    units: dict[str, UnitLoad] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    output: str = ""


@dataclass
class Cell:
    index: int
    cell_type: str
    source: str
    nbgrader: dict

    @property
    def grade_id(self) -> str | None:
        return self.nbgrader.get("grade_id")

    @property
    def is_answer(self) -> bool:
        return self.cell_type == "code" and bool(self.nbgrader.get("solution"))

    @property
    def is_given_definition(self) -> bool:
        return (self.cell_type == "code" and bool(self.nbgrader.get("locked"))
                and not self.nbgrader.get("solution")
                and str(self.grade_id or "").startswith(GIVEN_PREFIX))


def read_cells(path: str | Path) -> list[Cell]:
    """The cells of a notebook file; raises NotebookFormatError naming the file if unreadable."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        raw_cells = nb["cells"]
        if not isinstance(raw_cells, list):
            raise TypeError("'cells' is not a list")
        cells = []
        for i, c in enumerate(raw_cells):
            source = c.get("source", "")
            if isinstance(source, list):
                source = "".join(source)
            meta = c.get("metadata", {}).get("nbgrader", {})
            cells.append(Cell(i, c.get("cell_type", ""), source, meta if isinstance(meta, dict) else {}))
        return cells
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise NotebookFormatError(f"{path}: not a readable Jupyter notebook ({err})") from err


def _strip_magics(source: str) -> tuple[str, int]:
    """Blank out top-level IPython magics and shell escapes (``%timeit``, ``!ls``); count them."""
    lines, count = source.split("\n"), 0
    for k, line in enumerate(lines):
        if line.startswith(("%", "!")):
            lines[k], count = "", count + 1
    return "\n".join(lines), count


def top_level_definitions(source: str) -> list[ast.FunctionDef | ast.ClassDef]:
    """The functions and classes a cell's source defines at top level, magics left out as the
    loader leaves them out; none when it does not parse."""
    try:
        tree = ast.parse(_strip_magics(source)[0])
    except SyntaxError:
        return []
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def _short_traceback(err: BaseException, filename: str) -> str:
    """The exception and the last frames that ran inside the notebook cell(s)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<")]
    lines = [f"line {f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-TRACEBACK_FRAMES:]]
    head = f"{type(err).__name__}: {err}".strip()
    return head + ("".join(f"\n    {line}" for line in lines) if lines else "")


def _classify_error(err: BaseException) -> str:
    return "not_implemented" if isinstance(err, NotImplementedError) else "error"


class _Runner:
    """Executes cells into one module namespace, capturing output and warnings."""

    def __init__(self, module: types.ModuleType, report: NotebookReport) -> None:
        self.module = module
        self.report = report
        self.output = io.StringIO()

    def run(self, source: str, filename: str) -> BaseException | None:
        source, magics = _strip_magics(source)
        if magics:
            self.report.problems.append(f"{filename}: skipped {magics} IPython magic/shell line(s)")
        # Tracebacks (the student's feedback) can then quote the cell's lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            code = compile(source, filename, "exec")
            with contextlib.redirect_stdout(self.output), contextlib.redirect_stderr(self.output), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(code, self.module.__dict__)
        except (Exception, SystemExit) as err:  # a student's cell must never stop the loading
            return err
        return None


def _answer_cells(cells: list[Cell], report: NotebookReport, nb_name: str) -> dict[str, Cell]:
    """Answer cells by grade_id (last copy wins; duplicates reported)."""
    found: dict[str, list[Cell]] = {}
    for c in cells:
        if c.is_answer and c.grade_id:
            found.setdefault(c.grade_id, []).append(c)
    for gid, copies in found.items():
        if len(copies) > 1:
            where = ", ".join(str(c.index) for c in copies)
            report.problems.append(f"{nb_name}: grade_id {gid!r} appears in {len(copies)} cells "
                                   f"({where}); graded the last one")
    return {gid: copies[-1] for gid, copies in found.items()}


def load_notebook(path: str | Path, release: str | Path | None = None, *,
                  skip: frozenset[str] = frozenset(),
                  on_cell: Callable[[str], None] | None = None) -> types.ModuleType:
    """Run a notebook's given definition cells and answer cells into a new module.

    path: the notebook whose answers are loaded (a student's copy, or a solution).
    release: the released notebook that supplies cell order and given cells; defaults to the
        notebook in ``$FACEKIT_RELEASE_DIR`` with the same name, else ``path`` itself.
    skip: grade_ids not to run (the grading worker skips a cell that killed a previous worker).
    on_cell: called with each answer cell's grade_id just before it runs.
    The returned module has ``__notebook_report__`` (a NotebookReport).
    """
    path = Path(path).resolve()
    if release is None and os.environ.get(RELEASE_ENV):
        candidate = Path(os.environ[RELEASE_ENV]) / path.name
        release = candidate if candidate.is_file() else None
    release = Path(release).resolve() if release is not None else path
    key = (path, release, _mtime(path), _mtime(release), skip)
    if key in _LOADED:
        return _LOADED[key]
    nb_name = path.name
    report = NotebookReport(str(path))
    module = types.ModuleType(path.stem.replace("-", "_").replace(" ", "_"))
    module.__file__ = str(path)
    module.__notebook_report__ = report

    release_cells = read_cells(release)
    try:
        submitted = _answer_cells(read_cells(path), report, nb_name) if path != release else None
    except (FileNotFoundError, NotebookFormatError) as err:
        report.problems.append(str(err))
        submitted = {}
    if submitted is None:
        submitted = _answer_cells(release_cells, report, nb_name)

    runner = _Runner(module, report)
    previous_path, previous_cwd = list(sys.path), os.getcwd()
    # Cells run as in Jupyter, from the notebook's own folder (relative paths, sibling imports).
    sys.path.insert(0, str(path.parent))
    if path.parent.is_dir():
        os.chdir(path.parent)
    try:
        for cell in release_cells:
            if cell.is_given_definition:
                err = runner.run(cell.source, f"<{nb_name} cell {cell.index}: {cell.grade_id}>")
                if err is not None:
                    report.problems.append(f"{nb_name}: given cell {cell.grade_id!r} failed: "
                                           f"{_short_traceback(err, nb_name)}")
            elif cell.is_answer and cell.grade_id:
                report.units[cell.grade_id] = _run_answer(runner, cell.grade_id, submitted, nb_name,
                                                          skip, on_cell)
    finally:
        sys.path[:] = previous_path
        os.chdir(previous_cwd)
    report.output = runner.output.getvalue()[-MAX_CAPTURED_CHARS:]
    _LOADED[key] = module
    return module


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def _run_answer(runner: _Runner, gid: str, submitted: dict[str, Cell], nb_name: str,
                skip: frozenset[str], on_cell: Callable[[str], None] | None) -> UnitLoad:
    cell = submitted.get(gid)
    if cell is None:
        return UnitLoad(gid, nb_name, "missing",
                        f"no answer cell with grade_id {gid!r} in {nb_name}; restore the cell "
                        f"from the released notebook and put your answer back in it")
    if gid in skip:
        return UnitLoad(gid, nb_name, "skipped", "this cell stopped the grader while loading; "
                        "it was not run again", cell.index)
    if on_cell is not None:
        on_cell(gid)
    before = guard.snapshot()
    err = runner.run(cell.source, f"<{nb_name} cell {cell.index}: {gid}>")
    patched = guard.restore_changes(before)
    if patched:
        return UnitLoad(gid, nb_name, "tampered",
                        f"the cell reassigns library functions ({', '.join(patched)}); grading "
                        f"does not accept code that patches torch/numpy", cell.index)
    if err is not None:
        return UnitLoad(gid, nb_name, _classify_error(err),
                        f"the cell raised while loading: {_short_traceback(err, nb_name)}", cell.index)
    return UnitLoad(gid, nb_name, "ok", "", cell.index)


def _skipped_in_process() -> frozenset[str]:
    """The grade_ids the grading worker skips (its loads of the same notebook used that set)."""
    return frozenset(s for s in os.environ.get(SKIP_ENV, "").split(",") if s)


class _Unavailable:
    """Stands in for a definition another notebook failed to provide; fails clearly when used."""

    def __init__(self, name: str, reason: str) -> None:
        self._name, self._reason = name, reason

    def __call__(self, *args, **kwargs):
        raise NotebookDependencyError(f"{self._name} is unavailable: {self._reason}")

    def __getattr__(self, attr):
        raise NotebookDependencyError(f"{self._name} is unavailable: {self._reason}")

    def __repr__(self) -> str:
        return f"<unavailable {self._name}: {self._reason}>"


def import_from_notebook(path: str | Path, *names: str) -> tuple:
    """Definitions from another notebook (relative paths are resolved from the current folder).

    Returns one object per name; a name the notebook failed to define is replaced by a stand-in
    that raises NotebookDependencyError (saying which cell failed) when it is used, so loading a
    later notebook never fails because an earlier one is incomplete.
    """
    module = load_notebook(Path(path), skip=_skipped_in_process())
    report: NotebookReport = module.__notebook_report__
    broken = [u for u in report.units.values() if u.status != "ok"]
    out = []
    for name in names:
        if hasattr(module, name):
            out.append(getattr(module, name))
            continue
        why = "; ".join(f"{u.grade_id} ({u.status})" for u in broken) or "it is not defined there"
        out.append(_Unavailable(name, f"{Path(path).name} does not define it — "
                                      f"unfinished or failing cells there: {why}"))
    return tuple(out)
