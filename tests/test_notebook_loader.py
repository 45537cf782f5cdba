"""utils.notebook: which cells run, error isolation, release-given cells, missing/duplicate cells."""
import json

import pytest
import torch

from tests.notebooks import cell, write_notebook
from utils.notebook import (RELEASE_ENV, NotebookDependencyError, import_from_notebook,
                            load_notebook)


def _release(tmp_path):
    return write_notebook(tmp_path / "release" / "hw.ipynb", [
        cell("markdown", "# Title"),
        cell("given", "import math\nSCALE = 2", "given_setup"),
        cell("answer", "def double(x):\n    raise NotImplementedError()", "double"),
        cell("check", "raise RuntimeError('check cells never run when loading')", "check_double"),
        cell("code", "raise RuntimeError('experiment cells never run when loading')"),
        cell("answer", "def triple(x):\n    raise NotImplementedError()", "triple"),
        cell("given", "def helper():\n    return SCALE", "given_helper"),
    ])


def _submission(tmp_path, answers, extra_cells=()):
    cells = [cell("given", "import math\nSCALE = 2", "given_setup")]
    cells += [cell("answer", src, gid) for gid, src in answers]
    cells += list(extra_cells)
    return write_notebook(tmp_path / "student" / "hw.ipynb", cells)


def _status(module):
    return {g: u.status for g, u in module.__notebook_report__.units.items()}


def test_runs_given_and_answer_cells_only(tmp_path):
    release = _release(tmp_path)
    module = load_notebook(release)
    assert module.SCALE == 2 and module.helper() == 2
    assert _status(module) == {"double": "ok", "triple": "ok"}
    with pytest.raises(NotImplementedError):
        module.double(1)


def test_error_in_one_answer_cell_does_not_stop_the_others(tmp_path):
    release = _release(tmp_path)
    sub = _submission(tmp_path, [("double", "def double(x):\n    return x * SCALE\n1 / 0"),
                                 ("triple", "def triple(x):\n    return 3 * x")])
    module = load_notebook(sub, release)
    report = module.__notebook_report__
    assert _status(module) == {"double": "error", "triple": "ok"}
    assert "ZeroDivisionError" in report.units["double"].detail
    assert "1 / 0" in report.units["double"].detail  # the feedback quotes the failing line
    assert module.triple(2) == 6
    assert module.helper() == 2  # given cells after a failing answer cell still run


def test_top_level_not_implemented_is_told_apart(tmp_path):
    sub = _submission(tmp_path, [("double", "raise NotImplementedError()"),
                                 ("triple", "import sys\nsys.exit(3)")])
    module = load_notebook(sub, _release(tmp_path))
    assert _status(module) == {"double": "not_implemented", "triple": "error"}


def test_given_cells_come_from_the_release(tmp_path):
    release = _release(tmp_path)
    sub = write_notebook(tmp_path / "student" / "hw.ipynb", [
        cell("given", "SCALE = 1000  # a student edited the locked cell", "given_setup"),
        cell("answer", "def double(x):\n    return x * SCALE", "double"),
        cell("answer", "def triple(x):\n    return 3 * x", "triple"),
        cell("given", "def helper():\n    return -1", "given_helper"),
    ])
    module = load_notebook(sub, release)
    assert module.double(1) == 2
    assert module.helper() == 2


def test_deleted_answer_cell_is_missing(tmp_path):
    sub = _submission(tmp_path, [("triple", "def triple(x):\n    return 3 * x")])
    module = load_notebook(sub, _release(tmp_path))
    report = module.__notebook_report__
    assert _status(module) == {"double": "missing", "triple": "ok"}
    assert "no answer cell with grade_id 'double'" in report.units["double"].detail


def test_duplicated_grade_id_is_reported_and_the_last_copy_graded(tmp_path):
    sub = _submission(tmp_path, [("double", "def double(x):\n    return 0"),
                                 ("triple", "def triple(x):\n    return 3 * x"),
                                 ("double", "def double(x):\n    return 2 * x")])
    module = load_notebook(sub, _release(tmp_path))
    assert module.double(4) == 8
    assert any("'double' appears in 2 cells" in p for p in module.__notebook_report__.problems)


def test_output_warnings_and_magics_never_fail_a_cell(tmp_path, capsys):
    src = ("%matplotlib inline\n!ls\nimport warnings, sys\nprint('hello')\n"
           "print('to stderr', file=sys.stderr)\nwarnings.warn('deprecated thing')\n"
           "def double(x):\n    return 2 * x")
    sub = _submission(tmp_path, [("double", src), ("triple", "def triple(x):\n    return 3 * x")])
    module = load_notebook(sub, _release(tmp_path))
    assert _status(module) == {"double": "ok", "triple": "ok"}
    assert "hello" in module.__notebook_report__.output
    assert capsys.readouterr().out == ""


def test_reassigning_library_functions_is_undone_and_reported(tmp_path):
    original = torch.allclose
    sub = _submission(tmp_path, [("double", "import torch\ntorch.allclose = lambda *a, **k: True\n"
                                            "def double(x):\n    return 2 * x"),
                                 ("triple", "def triple(x):\n    return 3 * x")])
    module = load_notebook(sub, _release(tmp_path))
    assert torch.allclose is original
    assert _status(module) == {"double": "tampered", "triple": "ok"}
    assert "torch.allclose" in module.__notebook_report__.units["double"].detail


def test_unreadable_submission_makes_every_unit_missing(tmp_path):
    release = _release(tmp_path)
    bad = tmp_path / "student" / "hw.ipynb"
    bad.parent.mkdir()
    bad.write_text("{ not json")
    module = load_notebook(bad, release)
    assert set(_status(module).values()) == {"missing"}
    assert any("not a readable Jupyter notebook" in p for p in module.__notebook_report__.problems)


def test_import_from_notebook_stands_in_for_failed_definitions(tmp_path, monkeypatch):
    _submission(tmp_path, [("double", "def double(x):\n    return 2 * x"), ("triple", "1 / 0")])
    monkeypatch.chdir(tmp_path / "student")
    double, triple = import_from_notebook("hw.ipynb", "double", "triple")
    assert double(3) == 6
    with pytest.raises(NotebookDependencyError, match="triple"):
        triple(1)


def test_nested_loads_take_given_cells_from_the_release(tmp_path, monkeypatch):
    release = _release(tmp_path)
    sub = _submission(tmp_path, [("double", "def double(x):\n    return x * SCALE"),
                                 ("triple", "def triple(x):\n    return 3 * x")])
    nb = json.loads(sub.read_text())
    nb["cells"][0]["source"] = "SCALE = 1000"
    sub.write_text(json.dumps(nb))
    monkeypatch.setenv(RELEASE_ENV, str(release.parent))
    monkeypatch.chdir(sub.parent)
    (double,) = import_from_notebook("hw.ipynb", "double")
    assert double(1) == 2
