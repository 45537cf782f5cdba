"""Whose code a detector runs: the notebooks of the solutions or of a student's folder.

``load_code(hw, impl, notebooks)`` finds the notebooks of homework ``hw`` in ``impl`` — the word
``solutions``, the release (``assignments``), or a student's folder laid out like ``assignments/``
(``DIR/<hw>/*.ipynb``) or holding the notebooks directly — and loads their definitions once.
A student's answer cells run with the release's given cells, exactly as grading does.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from utils.notebook import load_notebook

REPO_ROOT = Path(__file__).resolve().parents[2]


class UserError(Exception):
    """A mistake of the person running a command (missing or wrong file, unknown name, unfinished
    notebook): the command-line tools print its message in one line and exit 2, no traceback."""


def notebook_folder(hw: str, impl: str | Path, notebooks: tuple[str, ...]) -> tuple[Path, Path | None]:
    """``'solutions'`` or a folder -> (folder holding ``notebooks``, release folder or None).

    The release folder (``assignments/<hw>``) supplies the given cells of a student's folder; None
    means the notebooks supply their own (the solutions, the release itself, or any folder when the
    kit has no release).
    """
    solutions, release = REPO_ROOT / "solutions" / hw, REPO_ROOT / "assignments" / hw
    if str(impl) == "solutions":
        if not solutions.is_dir():
            raise UserError(f"{solutions} not found (the student release has no solutions); "
                            f"pass --impl assignments or your own folder")
        return solutions, None
    root = Path(impl)
    if not root.is_dir():
        raise UserError(f"--impl {root}: no such folder (expected 'solutions' or a folder with "
                        f"the {hw} notebooks)")
    for folder in (root / hw, root):
        if all((folder / name).is_file() for name in notebooks):
            own_given_cells = folder.resolve() in (release.resolve(), solutions.resolve())
            return folder, (None if own_given_cells or not release.is_dir() else release)
    missing = [n for n in notebooks if not (root / hw / n).is_file() and not (root / n).is_file()]
    raise UserError(f"{root}: expected the {hw} notebooks {', '.join(notebooks)} in {root / hw} "
                    f"(a folder laid out like assignments/) or directly in {root}; missing "
                    f"{', '.join(missing) or 'some of them in each place'}")


class NotebookCode:
    """The definitions of one homework's notebooks from one source, loaded lazily, once each."""

    def __init__(self, hw: str, folder: Path, release: Path | None, notebooks: tuple[str, ...]) -> None:
        self.hw, self.folder, self.release, self.notebooks = hw, folder, release, notebooks
        self._modules: dict[str, ModuleType] = {}

    def module(self, notebook: str) -> ModuleType:
        if notebook not in self._modules:
            given = None if self.release is None else self.release / notebook
            self._modules[notebook] = load_notebook(self.folder / notebook, given)
        return self._modules[notebook]

    def get(self, name: str, notebook: str) -> Any:
        """Definition ``name`` of ``notebook``; a clear error naming the cell's problem if absent."""
        module = self.module(notebook)
        if not hasattr(module, name):
            raise self.error(f"{name} is not defined", notebook)
        return getattr(module, name)

    def has(self, name: str, notebook: str) -> bool:
        return (self.folder / notebook).is_file() and hasattr(self.module(notebook), name)

    def error(self, message: str, notebook: str | None = None) -> UserError:
        """A UserError about this code, naming the failing answer cells of ``notebook`` (or all)."""
        failing = []
        for name, module in self._modules.items():
            if notebook is None or name == notebook:
                report = module.__notebook_report__
                failing += [f"{u.grade_id} ({u.status})" for u in report.units.values() if u.status != "ok"]
        where = self.folder / notebook if notebook else self.folder
        hint = f"; failing cells: {', '.join(failing)}" if failing else ""
        return UserError(f"{where}: {message}{hint}")

    def call(self, name: str, notebook: str, *args: Any, **kwargs: Any) -> Any:
        """``name(*args, **kwargs)``; the student's exception becomes a UserError naming the function
        (NotImplementedError: 'not implemented yet')."""
        fn = self.get(name, notebook)
        return self.run(name, notebook, lambda: fn(*args, **kwargs))

    def run(self, name: str, notebook: str, action: Callable[[], Any]) -> Any:
        """``action()``, which exercises ``name`` of ``notebook``; its exception becomes a UserError
        naming ``name`` (NotImplementedError: 'not implemented yet')."""
        try:
            return action()
        except NotImplementedError as err:
            raise self.error(f"{name} is not implemented yet", notebook) from err
        except Exception as err:
            raise self.error(f"{name} failed: {type(err).__name__}: {err}", notebook) from err


@lru_cache(maxsize=16)
def _cached(hw: str, folder: Path, release: Path | None, notebooks: tuple[str, ...]) -> NotebookCode:
    return NotebookCode(hw, folder, release, notebooks)


def load_code(hw: str, impl: str | Path, notebooks: tuple[str, ...]) -> NotebookCode:
    """The notebook code of homework ``hw`` from ``impl`` (one NotebookCode per source)."""
    folder, release = notebook_folder(hw, impl, tuple(notebooks))
    return _cached(hw, folder.resolve(), None if release is None else release.resolve(), tuple(notebooks))
