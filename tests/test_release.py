"""The student release is generated from the solutions and leaks no answers."""
import json
import re

from tests.notebooks import REPO_ROOT
from utils import release
from utils.notebook import read_cells


def test_release_is_in_sync_with_solutions():
    found = [p for hw in release.homeworks() for p in release.problems(hw)]
    assert not found, "run `make release`:\n" + "\n".join(found)


def _solution_lines(path):
    """The non-trivial lines between solution markers of a solution notebook (except lines that
    also appear outside the markers, in given code)."""
    inside_lines, outside_lines = set(), set()
    for c in read_cells(path):
        inside = False
        for line in c.source.splitlines():
            if "BEGIN SOLUTION" in line:
                inside = True
            elif "END SOLUTION" in line:
                inside = False
            elif len(line.strip()) > 12 and not line.strip().startswith("#"):
                (inside_lines if inside else outside_lines).add(line.strip())
    return sorted(inside_lines - outside_lines)


def test_release_contains_no_solution_text_and_no_outputs():
    for hw in release.homeworks():
        for solution in sorted((REPO_ROOT / "solutions" / hw).glob("*.ipynb")):
            student = REPO_ROOT / "assignments" / hw / solution.name
            text = student.read_text()
            leaked = [line for line in _solution_lines(solution) if line in text]
            assert not leaked, f"{student.name} leaks solution lines: {leaked[:3]}"
            for marker in release.FORBIDDEN_MARKERS:
                assert marker not in text
            nb = json.loads(text)
            for c in nb["cells"]:
                if c["cell_type"] == "code":
                    assert not c["outputs"] and c["execution_count"] is None, student


def test_every_answer_cell_is_a_graded_unit_and_every_unit_has_a_cell():
    from autograder.units import HOMEWORKS, homework_units
    for hw in HOMEWORKS:
        units = homework_units(hw)
        cells = {}
        for nb in sorted((REPO_ROOT / "solutions" / hw).glob("*.ipynb")):
            for c in read_cells(nb):
                if c.is_answer:
                    assert c.grade_id not in cells, f"grade_id {c.grade_id} used twice"
                    cells[c.grade_id] = nb.name
        assert set(cells) == set(units), (set(cells) ^ set(units))
        for gid, unit in units.items():
            assert cells[gid] == unit.notebook, gid


def test_graded_tests_cover_every_unit():
    from autograder.grading import graded_tests
    from autograder.units import HOMEWORKS, homework_units
    for hw in HOMEWORKS:
        tests = graded_tests(hw)
        assert {fn.graded.unit for fn in tests} == set(homework_units(hw))
        names = [(fn.graded.unit, fn.graded.title) for fn in tests]
        assert len(names) == len(set(names)), "two checks of a unit share a title"


def test_stubs_raise_not_implemented():
    for nb in sorted((REPO_ROOT / "assignments").rglob("*.ipynb")):
        for c in read_cells(nb):
            if c.is_answer:
                assert re.search(r"raise NotImplementedError\(\)", c.source), (nb.name, c.grade_id)
