"""The two bundles of a homework, unpacked and used as a student and Gradescope would.

Student bundle: nothing hidden or solved in it, and ``pytest autograder/`` inside it gives the
solutions full public marks and the released stubs 0. Gradescope zip: run_autograder in a temporary
root grades renamed/nested notebooks, hidden checks included, and charges a mistake once.
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from autograder.units import homework_units
from tests.notebooks import REPO_ROOT, graded_entries, scores_by_unit, set_answer
from utils.deploy import gradescope, student
from utils.deploy.bundle import PackagingError, solution_snippets

HW = "retinaface"
RESULT_KEYS = {"score", "max_score", "execution_time", "output", "tests"}
TEST_KEYS = {"name", "score", "max_score", "status", "output", "visibility"}
BROKEN_JACCARD = "def jaccard(box_a, box_b):\n    return intersect(box_a, box_b)  # not divided by the union\n"


def _hidden_and_public():
    units = homework_units(HW)
    hidden = {c.name for u in units.values() for c in u.cases if not c.public}
    public = {(gid, c.name) for gid, u in units.items() for c in u.cases if c.public}
    return hidden, public


def _public_max():
    from autograder.grading import graded_tests
    return sum(t.graded.points for t in graded_tests(HW) if t.graded.public)


@pytest.fixture(scope="module")
def student_kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    archive = student.build(HW, out)
    assert archive.name == f"{HW}-student.zip"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out / "unpacked")
    return out / "unpacked" / f"{HW}-student"


def _texts(folder: Path) -> dict[str, str]:
    out = {}
    for p in folder.rglob("*"):
        if p.is_file():
            try:
                out[str(p.relative_to(folder))] = p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                pass
    return out


def test_student_kit_holds_nothing_hidden_or_solved(student_kit):
    files = _texts(student_kit)
    assert {"README.md", "Makefile", "requirements.txt", f"assignments/{HW}/2_model.ipynb",
            "autograder/conftest.py", f"autograder/{HW}/cases.py"} <= set(files)
    assert not (student_kit / "solutions").exists()
    assert not (student_kit / "autograder" / "staff").exists()  # the bundle is chosen by folder
    assert not (student_kit / "autograder" / "references" / f"{HW}-calls.pt.xz").exists()  # staff-side
    assert (student_kit / "autograder" / "sandbox" / "worker.py").is_file()
    hidden, public = _hidden_and_public()
    snippets = solution_snippets(HW)
    assert any("box_a" in s for s in snippets) and len(snippets) > 50  # the model answers' own lines
    from autograder.grading import graded_tests
    hidden_tests = [t for t in graded_tests(HW) if not t.graded.public]
    hidden_titles = {t.graded.title for t in hidden_tests}
    hidden_functions = {t.__name__ for t in hidden_tests if t.__qualname__ == t.__name__}  # module level
    assert hidden_functions and hidden_titles
    for needle in {"BEGIN SOLUTION", "END SOLUTION", *hidden, *hidden_titles, *hidden_functions, *snippets}:
        escaped = json.dumps(needle)[1:-1]
        leaks = [name for name, text in files.items() if needle in text or escaped in text]
        assert not leaks, (needle, leaks)
    refs = torch.load(student_kit / "autograder" / "references" / f"{HW}.pt", weights_only=True)
    stored = {(unit, case) for unit, cases in refs.items() for case in cases}
    assert stored and stored <= public


def _pytest_in(kit: Path, tmp_path: Path, with_output: bool = False):
    results = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "autograder/", "-q", "-p", "no:cacheprovider",
                           "--results", str(results)], cwd=kit, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TOTAL" in proc.stdout
    data = json.loads(results.read_text())
    return (data, proc.stdout) if with_output else data


def test_student_kit_grades_public_checks_only(student_kit, tmp_path):
    stubs = _pytest_in(student_kit, tmp_path)
    assert stubs["score"] == 0 and stubs["max_score"] == _public_max()
    assert all(t["visibility"] == "visible" for t in stubs["tests"])
    work = tmp_path / "kit"
    shutil.copytree(student_kit, work)
    shutil.rmtree(work / "assignments" / HW)
    shutil.copytree(REPO_ROOT / "solutions" / HW, work / "assignments" / HW)
    solved = _pytest_in(work, tmp_path)
    assert solved["score"] == solved["max_score"] == _public_max()

    # Without the solutions the bundle cannot re-grade with the reference jaccard: it says what the
    # official grade re-grades, so the difference surprises nobody.
    set_answer(work / "assignments" / HW / "4_matching_nms.ipynb", "jaccard", BROKEN_JACCARD)
    slipped, output = _pytest_in(work, tmp_path, with_output=True)
    scores = scores_by_unit(slipped)
    assert scores["match"][0] < scores["match"][1]
    note = "a mistake is charged once: match"
    assert note in output and note in slipped["output"], output[-3000:]
    assert "lost points through your jaccard; the official grade re-grades" in output


def test_student_kit_refuses_a_hidden_case_it_cannot_remove(tmp_path):
    kit = tmp_path / "kit"
    for name in ("autograder", "assignments", "solutions", "detector", "data", "utils"):
        shutil.copytree(REPO_ROOT / name, kit / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "pytest.ini"):
        shutil.copy2(REPO_ROOT / name, kit / name)
    cases = kit / "autograder" / HW / "cases.py"
    cases.write_text(cases.read_text() + "\nSECRET = Case('x', None, public=False)\n")
    with pytest.raises(PackagingError, match="hidden Case outside"):
        student.build(HW, tmp_path / "out", root=kit)


@pytest.fixture(scope="module")
def gradescope_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("autograder")
    archive = gradescope.build(HW, root / "dist")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        zf.extractall(root / "source")
    assert {"setup.sh", "run_autograder", f"solutions/{HW}/4_matching_nms.ipynb"} <= names
    for script in ("setup.sh", "run_autograder"):
        path = root / "source" / script
        path.chmod(0o755)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    return root


def _run_autograder(root: Path, submission: Path) -> dict:
    if (root / "submission").exists():
        shutil.rmtree(root / "submission")
    shutil.copytree(submission, root / "submission")
    (root / "results" / "results.json").unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(root / "run_autograder")], capture_output=True, text=True, timeout=400,
                          env=dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert RESULT_KEYS <= set(results) and all(TEST_KEYS <= set(t) for t in results["tests"])
    return results


def test_gradescope_solutions_renamed_and_nested_get_full_marks(gradescope_root, tmp_path):
    sub = tmp_path / "sub" / "my work"
    sub.mkdir(parents=True)
    for nb in (REPO_ROOT / "solutions" / HW).glob("*.ipynb"):
        shutil.copy2(nb, sub / f"{nb.stem} (1).ipynb")
    results = _run_autograder(gradescope_root, tmp_path / "sub")
    assert results["score"] == results["max_score"] > _public_max()
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_due_date", "hidden"}
    [review] = [t for t in results["tests"] if t["visibility"] == "hidden"]  # staff only, no points
    assert review["max_score"] == 0 and review["output"] == "nothing found", review
    assert f"Public checks: {_public_max():g} / {_public_max():g} points." in results["output"]
    assert "graded 'my work/2_model (1).ipynb' as 2_model.ipynb" in results["output"]


def test_gradescope_stubs_get_zero(gradescope_root):
    results = _run_autograder(gradescope_root, REPO_ROOT / "assignments")
    assert results["score"] == 0 and results["max_score"] > _public_max()
    assert all(t["status"] == "failed" for t in graded_entries(results))


def test_gradescope_charges_a_broken_jaccard_once(gradescope_root, tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(REPO_ROOT / "solutions" / HW, sub)
    set_answer(sub / "4_matching_nms.ipynb", "jaccard", BROKEN_JACCARD)
    results = _run_autograder(gradescope_root, sub)
    scores = scores_by_unit(results)
    assert scores["jaccard"][0] < scores["jaccard"][1]
    assert scores["match"][0] == scores["match"][1] > 0
    match_outputs = [t["output"] for t in results["tests"] if t["name"].startswith("match:")]
    assert all("graded with the reference jaccard" in o for o in match_outputs), match_outputs
    assert "charged once" in results["output"]


def test_gradescope_without_notebooks_still_writes_results(gradescope_root, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("forgot the notebooks")
    results = _run_autograder(gradescope_root, tmp_path / "empty")
    assert results["score"] == 0 and "No notebook of this homework" in results["output"]


SOURCE_WITH_HIDDEN = '''
CASES = (
    Case("public one", make),
    Case("secret one", make, public=False),  # trailing comment kept
    Case("secret two",
         make, public=False),
)
SEEDED = tuple(Case(f"seed {s}", make, public=s < 2) for s in range(4))
ALL_SECRET = [Case(f"big {n}", make, public=False) for n in (1, 2)]
NAMES = ("public one", "secret one")
SECRET_NAME = "secret two"


@graded("u", 1, "public check")
def test_public(submission):
    pass


@graded("u", 1, "hidden check", False)
def test_hidden(submission):
    check(submission, ["secret one"])  # a hidden name inside a hidden test: the test goes whole


def factory(unit):
    @graded(unit, 1, "made hidden", public=False)
    def hidden(submission):
        pass
    return hidden
'''


def test_public_only_filter_removes_every_hidden_pattern():
    from utils.deploy.public_only import filter_source

    text, removed = filter_source(SOURCE_WITH_HIDDEN, "x.py", {"secret one", "secret two"})
    for secret in ("secret one", "secret two", "hidden check", "made hidden", "test_hidden", "big {n}"):
        assert secret not in text, secret
    assert "public one" in text and "public check" in text and "# trailing comment kept" in text
    assert "if (s < 2)" in text and "    hidden = None" in text
    ns = {"Case": lambda name, make, public=True: (name, public), "make": None,
          "graded": lambda *a, **k: (lambda fn: fn), "check": None}
    exec(compile(text, "x.py", "exec"), ns)
    assert ns["CASES"] == (("public one", True),) and ns["ALL_SECRET"] == ()
    assert [name for name, _ in ns["SEEDED"]] == ["seed 0", "seed 1"] and ns["NAMES"] == ("public one",)
    assert ns["factory"]("u") is None and ns["SECRET_NAME"] is None
    assert len(removed) == 9  # 2 tests, 4 cases, 3 names


@pytest.mark.parametrize("hw", ["dsfd", "tinaface", "rfcn"])
def test_every_homework_student_kit_builds_without_reference_code_and_grades(hw, tmp_path):
    """The other homeworks' bundles: their oracles and mistake models are replaying stubs, and the
    public checks, run on the recorded answers, give the solutions full public marks (none skipped)
    and the stubs 0."""
    from autograder.grading import graded_tests
    from autograder.recorded import is_reference_module

    archive = student.build(hw, tmp_path / "dist")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unpacked")
    kit = tmp_path / "unpacked" / f"{hw}-student"
    reference_files = [p for p in (kit / "autograder" / hw).glob("*.py") if is_reference_module(p.name)]
    assert reference_files and all("replay(" in p.read_text() and len(p.read_text().splitlines()) < 8
                                   for p in reference_files)
    public_max = sum(t.graded.points for t in graded_tests(hw) if t.graded.public)
    stubs = _pytest_in(kit, tmp_path)
    assert stubs["score"] == 0, [t["name"] for t in stubs["tests"] if t["score"]]
    shutil.rmtree(kit / "assignments" / hw)
    shutil.copytree(REPO_ROOT / "solutions" / hw, kit / "assignments" / hw)
    solved = _pytest_in(kit, tmp_path)
    not_full = [(t["name"], t["output"][:300]) for t in solved["tests"] if t["score"] != t["max_score"]]
    assert solved["score"] == solved["max_score"] == public_max, not_full


GIVEN_ANSWER = '''import torch


def overlap_ratio(box_a, box_b):
    """A helper a kit author might add: it happens to be the jaccard exercise."""
    lo = torch.maximum(box_a[:, None, :2], box_b[None, :, :2])
    hi = torch.minimum(box_a[:, None, 2:], box_b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=2)
    size_a = (box_a[:, 2:] - box_a[:, :2]).prod(dim=1)
    size_b = (box_b[:, 2:] - box_b[:, :2]).prod(dim=1)
    return inter / (size_a[:, None] + size_b[None, :] - inter)
'''


def test_student_kit_refuses_given_code_that_answers_an_exercise(tmp_path):
    """A shipped function with a graded answer's parameters that passes its public checks is a
    leak, whatever its name or text."""
    kit = tmp_path / "kit"
    for name in ("autograder", "assignments", "solutions", "detector", "data", "utils"):
        shutil.copytree(REPO_ROOT / name, kit / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "pytest.ini"):
        shutil.copy2(REPO_ROOT / name, kit / name)
    (kit / "utils" / "box_helpers.py").write_text(GIVEN_ANSWER)
    with pytest.raises(PackagingError, match=r"utils\.box_helpers\.overlap_ratio passes every public check "
                                             r"of jaccard") as err:
        student.build(HW, tmp_path / "out", root=kit)
    assert "of intersect" not in str(err.value)  # same parameters, other answer: its checks fail
