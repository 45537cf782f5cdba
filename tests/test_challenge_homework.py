"""The final project registered as the kit's fifth homework (``challenge``): its registry entry, the
staging of the upload, the unit's own time limit, and grading through the one pipeline
(``pytest autograder/ --hw challenge``): the solution with a trained detector packed beside it gets
full marks, the release gets 0.

The solution notebook's own run in ``make test`` is 2 iterations (numbers meaningless), so the graded
solution packs a RetinaFace MobileNet-0.25 fine-tuned from the published checkpoint
(``tests.trained_upload``; the published one as it is is refused) with the solutions' notebooks;
those tests skip without ``../shared/data``.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.sandbox.supervisor import Sandbox
from autograder.submissions import extract_notebooks, stage
from tests.notebooks import REPO_ROOT
from tests.trained_upload import fine_tuned_retinaface, needs_checkpoint
from utils.detectors import ADAPTERS
from utils.homeworks import NAMES, given_code, homework, of_another_homework

HW = "challenge"


def test_the_registry_entry_has_no_adapter_and_uses_every_homeworks_code():
    entry = homework(HW)
    assert entry.adapter is None and HW not in ADAPTERS and entry.all_given and entry.upload == "challenge.pt"
    assert not of_another_homework(Path("utils/detectors/dsfd.py"), HW)
    assert of_another_homework(Path("utils/challenge.py"), "retinaface")   # the pack tool ships with the project
    given = {p.relative_to(REPO_ROOT).as_posix() for p in given_code(REPO_ROOT, HW)}
    assert {"detector", "data", "utils"} <= given
    assert {f"assignments/{hw}" for hw in NAMES if hw != HW} <= given


def test_the_leaderboard_split_is_shown_before_the_due_date_the_shifted_one_after():
    """'similar' (the leaderboard's) is hidden data with visible results; 'shifted' is a private
    leaderboard; the public pictures run in the check cell. Thresholds rise within each split."""
    from autograder.grading import graded_tests

    shown = {t.graded.title: (t.graded.public, t.graded.shown_now) for t in graded_tests(HW)}
    assert [v for k, v in shown.items() if "similar" in k] == [(False, True)] * 3
    assert [v for k, v in shown.items() if "shifted" in k] == [(False, False)] * 2
    assert [v for k, v in shown.items() if k.startswith("public")] == [(True, True)]
    for split in ("similar", "shifted"):
        needed = [float(k.rsplit(">= ", 1)[1]) for k in shown if split in k]
        assert needed == sorted(needed) and len(set(needed)) == len(needed)


def test_the_unit_has_its_own_time_limit(tmp_path):
    sandbox = Sandbox(HW, tmp_path, REPO_ROOT / "assignments" / HW, unit_timeout=60)
    try:
        assert sandbox._own_timeout("challenge") == 180.0
        assert Sandbox("retinaface", tmp_path, REPO_ROOT / "assignments" / "retinaface")._own_timeout("jaccard") == 0
    finally:
        sandbox._tmp.cleanup()


def _upload(root: Path) -> Path:
    """A student's folder: the notebook at the top, the packed upload nested with its model folder."""
    root.mkdir(parents=True)
    (root / "1_final_project (1).ipynb").write_text((REPO_ROOT / "solutions" / HW / "1_final_project.ipynb").read_text())
    packed = root / "upload"
    (packed / "retinaface").mkdir(parents=True)
    (packed / "challenge.pt").write_bytes(b"weights")
    (packed / "retinaface" / "2_model.ipynb").write_text("{}")
    (packed / "notes").mkdir()
    (packed / "notes" / "x.txt").write_text("not copied")
    return root


def test_staging_keeps_the_upload_and_its_notebook_folders(tmp_path):
    staged = stage(_upload(tmp_path / "alice"), REPO_ROOT / "assignments" / HW, tmp_path / "staged")
    folder = tmp_path / "staged" / HW
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1_final_project.ipynb", "challenge.pt", "retinaface/2_model.ipynb"]
    assert staged.chosen["challenge.pt"] == "upload/challenge.pt"
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "1_final_project.ipynb").write_text((REPO_ROOT / "solutions" / HW / "1_final_project.ipynb").read_text())
    assert "no challenge.pt in the submission" in stage(tmp_path / "carol", REPO_ROOT / "assignments" / HW,
                                                         tmp_path / "staged-carol").notes


def test_a_zip_keeps_challenge_pt(tmp_path):
    archive = tmp_path / "dave.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dave/1_final_project.ipynb", "{}")
        zf.writestr("dave/upload/challenge.pt", b"weights")
        zf.writestr("dave/upload/retinaface/2_model.ipynb", "{}")
        zf.writestr("dave/upload/big.bin", b"x")
    out = extract_notebooks(archive, tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "dave/1_final_project.ipynb", "dave/upload/challenge.pt", "dave/upload/retinaface/2_model.ipynb"]


def test_the_student_side_of_the_unit_never_names_the_staff_seed():
    """cases.py (in the worker's view and the student bundle) reaches staff/ only by module name."""
    for name in ("cases.py", "checks.py", "scoring.py", "test_final_project.py"):
        tree = ast.parse((REPO_ROOT / "autograder" / HW / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m and m.startswith("autograder.staff") for m in imported), name


def _grade(submission: Path, results: Path) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "autograder/", "--hw", HW, "--submission", str(submission),
                           "--results", str(results), "-q", "-p", "no:cacheprovider"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    return json.loads(results.read_text()), proc.stdout + proc.stderr


@needs_checkpoint
def test_the_solution_with_a_trained_detector_gets_full_marks(tmp_path):
    folder = tmp_path / "sub" / HW
    folder.mkdir(parents=True)
    (folder / "1_final_project.ipynb").write_text((REPO_ROOT / "solutions" / HW / "1_final_project.ipynb").read_text())
    subprocess.run([sys.executable, "-m", "utils.challenge", "pack", "--model", "retinaface", "--cfg", "mobilenet0.25",
                    "--weights", str(fine_tuned_retinaface()), "--out", str(folder), "--impl", "solutions"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    results, output = _grade(tmp_path / "sub", tmp_path / "results.json")
    assert results["score"] == results["max_score"] == 12, output
    assert all(t["status"] == "passed" for t in results["tests"] if t["max_score"]), output
    assert [e["name"] for e in results["leaderboard"]] == ["AP hard", "AP medium", "AP easy", "images/s", "parameters"]
    assert results["leaderboard"][0]["value"] >= 0.55 and results["leaderboard"][3]["value"] > 0


def test_the_release_gets_zero(tmp_path):
    folder = tmp_path / "sub" / HW
    folder.mkdir(parents=True)
    (folder / "1_final_project.ipynb").write_text((REPO_ROOT / "assignments" / HW / "1_final_project.ipynb").read_text())
    results, output = _grade(tmp_path / "sub", tmp_path / "results.json")
    assert results["score"] == 0 and results["max_score"] == 12, output
    assert "not implemented yet" in output
