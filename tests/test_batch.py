"""Grading a small class with ``python -m autograder.staff.batch``: the gradebook, each student's files,
the summary, written answers by question, manual scores merged, reruns skipped, and one clear line
(exit 2) for every user mistake.

One class, graded once (module fixture): a correct student (nbgrader layout), the release stubs, a
student whose jaccard forgets the union (renamed notebooks directly in the folder), a correct
student as a zip, a hostile one (ends the worker while loading bbox_head, loops forever in nms) and
one with no notebook at all.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from autograder.staff import batch
from autograder.grading import graded_tests
from tests.classroom import IOU_WITHOUT_UNION
from tests.notebooks import REPO_ROOT, set_answer

HW = "retinaface"
UNIT_TIMEOUT = "20"   # generous: the shared CI machine can be slow; the endless loop costs this once


def _max_score():
    return sum(t.graded.points for t in graded_tests(HW))


def _run(*args, timeout=600):
    cmd = [sys.executable, "-m", "autograder.staff.batch", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    sub = root / "submitted"
    shutil.copytree(REPO_ROOT / "solutions" / HW, sub / "alice" / HW)
    shutil.copytree(REPO_ROOT / "assignments" / HW, sub / "bob" / HW)
    (sub / "carol").mkdir(parents=True)
    for nb in (REPO_ROOT / "solutions" / HW).glob("*.ipynb"):
        shutil.copy2(nb, sub / "carol" / f"{nb.stem} (1).ipynb")
    set_answer(sub / "carol" / "4_matching_nms (1).ipynb", "jaccard", IOU_WITHOUT_UNION)
    with zipfile.ZipFile(sub / "dave.zip", "w") as zf:
        for nb in (REPO_ROOT / "solutions" / HW).glob("*.ipynb"):
            zf.write(nb, f"dave-{HW}/{nb.name}")
    shutil.copytree(REPO_ROOT / "solutions" / HW, sub / "mallory" / HW)
    set_answer(sub / "mallory" / HW / "2_model.ipynb", "bbox_head", "import os\nos._exit(3)\n")
    set_answer(sub / "mallory" / HW / "4_matching_nms.ipynb", "nms", "import gc\ndef nms(dets, thresh):\n    while True:\n        pass\n")
    (sub / "erin").mkdir()
    (sub / "erin" / "answers.txt").write_text("I wrote my answers here")
    out = root / "grades"
    proc = _run("--submissions", root, "--out", out, "--hw", HW, "--jobs", "2", "--unit-timeout", UNIT_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, proc


def _gradebook(out):
    with open(out / "gradebook.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_gradebook_scores_every_student_in_isolation(graded_class):
    _, out, _ = graded_class
    book = _gradebook(out)
    full = _max_score()
    assert set(book) == {"alice", "bob", "carol", "dave", "erin", "mallory"}
    assert float(book["alice"]["total"]) == float(book["dave"]["total"]) == full
    assert float(book["bob"]["total"]) == 0
    assert float(book["carol"]["jaccard"]) < 5 and float(book["carol"]["match"]) == float(book["alice"]["match"])
    assert float(book["mallory"]["bbox_head"]) == 0 and float(book["mallory"]["nms"]) == 0
    for unit in ("landmark_head", "intersect", "jaccard", "match", "focal_loss"):
        assert book["mallory"][unit] == book["alice"][unit], unit
    assert book["erin"]["status"] == "no notebooks" and float(book["erin"]["total"]) == 0
    assert book["mallory"]["review"] == "1" and book["alice"]["review"] == "0"  # staff review, no points


def test_each_student_gets_results_and_feedback(graded_class):
    _, out, _ = graded_class
    results = json.loads((out / "students" / "carol" / "results.json").read_text())
    assert {"score", "max_score", "execution_time", "output", "tests"} <= set(results)
    assert results["max_score"] == _max_score()
    feedback = (out / "students" / "carol" / "feedback.txt").read_text()
    assert "graded with the reference jaccard" in feedback and "graded '4_matching_nms (1).ipynb'" in feedback
    mallory = (out / "students" / "mallory" / "feedback.txt").read_text()
    assert "time limit" in mallory and "'bbox_head' ended the grading worker while loading" in mallory


def test_summary_plots_and_written_answers(graded_class):
    _, out, _ = graded_class
    summary = (out / "summary.md").read_text()
    assert "| nms |" in summary and "no notebooks" in summary and "erin" in summary
    assert "## To review by hand" in summary
    assert "- mallory: nms (4_matching_nms.ipynb, line 1): imports gc" in summary
    for plot in ("score_histogram.png", "unit_pass_rate.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    page = (out / "written" / "q_softmax_vs_sigmoid.html").read_text()
    assert "sigma(z_1 - z_0)" in page  # the model answer
    assert page.count("YOUR ANSWER HERE") == 1  # bob's untouched cell; the others hold the answer
    with open(out / "manual_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["student"] for r in rows} >= {"alice", "bob", "carol"} and "q_softmax_vs_sigmoid" in rows[0]


def test_rerun_skips_graded_students_and_merges_manual_scores(graded_class):
    root, out, _ = graded_class
    report = out / "students" / "alice" / "report.json"
    before = report.stat().st_mtime_ns
    with open(out / "manual_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["student"] == "alice":
            row["q_softmax_vs_sigmoid"] = "2"
    with open(out / "manual_scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = _run("--submissions", root, "--out", out, "--hw", HW)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0 to grade" in proc.stderr and report.stat().st_mtime_ns == before
    book = _gradebook(out)
    assert book["alice"]["q_softmax_vs_sigmoid"] == "2" and float(book["alice"]["total"]) == _max_score() + 2
    rows[0]["q_softmax_vs_sigmoid"] = "200"
    with open(out / "manual_scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SystemExit) as exc:
        batch.main(["--submissions", str(root), "--out", str(out), "--hw", HW])
    assert exc.value.code == 2


@pytest.mark.parametrize("case", ["missing", "file", "empty", "one-student", "no-notebooks", "bad-hw"])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, case):
    sub = tmp_path / "sub"
    args = ["--submissions", str(sub), "--out", str(tmp_path / "out")]
    if case == "file":
        sub.write_text("not a folder")
    elif case == "empty":
        sub.mkdir()
    elif case == "one-student":
        shutil.copytree(REPO_ROOT / "assignments" / HW, sub)
    elif case == "no-notebooks":
        (sub / "alice").mkdir(parents=True)
        (sub / "alice" / "notes.txt").write_text("x")
    elif case == "bad-hw":
        shutil.copytree(REPO_ROOT / "assignments" / HW, sub / "alice" / HW)
        args += ["--hw", "no_such_hw"]
    with pytest.raises(SystemExit) as exc:
        batch.main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    with pytest.raises(SystemExit):
        batch.main(args + ["--debug"])
    assert "Traceback" in capsys.readouterr().err


def test_staging_matches_by_the_ids_only_one_released_notebook_has(tmp_path):
    """An unreadable 2_model.ipynb is still 2_model: 7_cascade_regression shares a given cell's id
    with it, which must not make it the better match (it was staged as 2_model and 'not submitted')."""
    from autograder.submissions import stage

    sub = tmp_path / "sub"
    shutil.copytree(REPO_ROOT / "solutions" / HW, sub)
    (sub / "2_model.ipynb").write_text('{"cells": [')
    (sub / "1_data.ipynb").rename(sub / "1_data (1).ipynb")
    staged = stage(sub, REPO_ROOT / "assignments" / HW, tmp_path / "staged")
    assert staged.chosen == {p.name: p.name for p in (REPO_ROOT / "assignments" / HW).glob("*.ipynb")
                             if p.name != "1_data.ipynb"} | {"1_data.ipynb": "1_data (1).ipynb"}
    assert staged.notes == ["graded '1_data (1).ipynb' as 1_data.ipynb"]
