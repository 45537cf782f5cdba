"""End-to-end grading: solutions get full marks, the release gets 0, and student code that
misbehaves loses only its own unit's points while the run always finishes and writes results.json.

Each test grades a real submission folder with ``pytest autograder/`` in a subprocess, as a TA
would. The misbehaving code sits in ``nms``, which no other unit calls, so every other unit must
keep full marks.
"""
import re
import shutil
import subprocess
import sys

import pytest

from tests.notebooks import REPO_ROOT, copy_homework, edit_cells, grade, graded_entries, scores_by_unit, set_answer
from tests.trained_upload import PUBLIC_RETINAFACE, fine_tuned_retinaface

NOTEBOOK = "retinaface/4_matching_nms.ipynb"
UNIT_TIMEOUT = "15"  # seconds; the retinaface unit needs ~1 s on an idle CPU, several on a busy one


def _assert_only_nms_lost(results, kind_text):
    """nms scores 0; every unit but nms and its caller postprocess (Part 8) keeps full marks."""
    scores = scores_by_unit(results)
    assert scores["nms"][0] == 0, scores
    for unit, (score, max_score) in scores.items():
        if unit not in ("nms", "postprocess"):
            assert score == max_score > 0, (unit, scores)
    nms_outputs = " ".join(t["output"] for t in results["tests"] if t["name"].startswith("nms"))
    assert kind_text in nms_outputs, nms_outputs


def _grade_with_nms(tmp_path, source, *extra):
    sub = copy_homework(tmp_path / "sub")
    set_answer(sub / NOTEBOOK, "nms", source)
    results, output, code = grade(sub, tmp_path / "results.json", "--unit-timeout", UNIT_TIMEOUT, *extra)
    assert results, f"results.json was not written:\n{output}"
    return results, output, code


def _solutions_with_a_packed_detector(dest):
    """solutions/ as submitted: the final project (challenge) is graded on the detector packed beside
    its notebook, which solutions/ does not hold (the notebook trains and packs it when run): a
    RetinaFace MobileNet-0.25 fine-tuned from the published checkpoint is packed there
    (``tests.trained_upload``), or, without ../shared/data, the challenge is left out."""
    shutil.copytree(REPO_ROOT / "solutions", dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if PUBLIC_RETINAFACE.is_file():
        subprocess.run([sys.executable, "-m", "utils.challenge", "pack", "--model", "retinaface", "--cfg",
                        "mobilenet0.25", "--weights", str(fine_tuned_retinaface()), "--out",
                        str(dest / "challenge"), "--impl", "solutions"],
                       cwd=REPO_ROOT, check=True, capture_output=True)
    else:
        shutil.rmtree(dest / "challenge")
    return dest


def test_solutions_get_full_marks(tmp_path):
    results, output, code = grade(_solutions_with_a_packed_detector(tmp_path / "solutions"), tmp_path / "r.json")
    assert code == 0, output
    assert results["score"] == results["max_score"] > 0
    assert {"intersect", "jaccard", "nms"} <= set(scores_by_unit(results))
    assert "TOTAL" in output


def test_untouched_release_gets_zero_with_every_unit_reported(tmp_path):
    results, output, code = grade(REPO_ROOT / "assignments", tmp_path / "r.json")
    assert code == 1, output  # tests failed; no collection or internal errors
    summary = output.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ failed in [\d.]+s( \(\d+:\d\d:\d\d\))?", summary), summary  # no errors, nothing skipped
    assert results["score"] == 0 and results["max_score"] > 0
    scores = scores_by_unit(results)
    assert {"intersect", "jaccard", "nms"} <= set(scores)
    assert all(t["output"].startswith("not implemented yet") for t in graded_entries(results)), results["tests"]


def test_monkeypatched_comparisons_score_zero(tmp_path):
    source = ("def nms(dets, thresh):\n"
              "    import torch, numpy\n"
              "    torch.allclose = lambda *a, **k: True\n"
              "    torch.equal = lambda *a, **k: True\n"
              "    torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)\n"
              "    numpy.testing.assert_allclose = lambda *a, **k: None\n"
              "    return torch.zeros(0, dtype=torch.long)\n")
    results, _, _ = _grade_with_nms(tmp_path, source)
    _assert_only_nms_lost(results, "tampered")


def test_sys_exit_scores_zero(tmp_path):
    results, _, _ = _grade_with_nms(tmp_path, "def nms(dets, thresh):\n    import sys\n    sys.exit(0)\n")
    _assert_only_nms_lost(results, "sys.exit")


def test_os_exit_scores_zero(tmp_path):
    results, _, _ = _grade_with_nms(tmp_path, "def nms(dets, thresh):\n    import os\n    os._exit(0)\n")
    _assert_only_nms_lost(results, "ended the process")


def test_endless_loop_hits_the_time_limit(tmp_path):
    results, _, _ = _grade_with_nms(tmp_path, "def nms(dets, thresh):\n    while True:\n        pass\n")
    _assert_only_nms_lost(results, "time limit")


def test_exception_scores_zero_with_the_failing_line(tmp_path):
    source = "def nms(dets, thresh):\n    boxes = dets[:, :4]\n    return boxes.nonexistent()\n"
    results, _, _ = _grade_with_nms(tmp_path, source)
    _assert_only_nms_lost(results, "boxes.nonexistent()")


def test_huge_allocation_scores_zero(tmp_path):
    source = "def nms(dets, thresh):\n    import torch\n    return torch.ones(2**40, dtype=torch.long)\n"
    results, _, _ = _grade_with_nms(tmp_path, source, "--unit-memory-gb", "1")
    _assert_only_nms_lost(results, "error")


def test_exit_while_loading_skips_only_that_cell(tmp_path):
    results, output, _ = _grade_with_nms(tmp_path, "import os\nos._exit(1)\n")
    _assert_only_nms_lost(results, "crashed")
    assert "'nms' ended the grading worker while loading" in results["output"]


def test_endless_loop_while_loading_skips_only_that_cell(tmp_path):
    results, _, _ = _grade_with_nms(tmp_path, "while True:\n    pass\n")
    _assert_only_nms_lost(results, "crashed")
    assert "'nms' did not finish loading" in results["output"]


def test_patching_torch_at_load_is_undone(tmp_path):
    source = "import torch\ntorch.min = torch.max\ndef nms(dets, thresh):\n    return None\n"
    results, _, _ = _grade_with_nms(tmp_path, source)
    _assert_only_nms_lost(results, "tampered")  # intersect uses torch.min and must not notice


def test_prints_and_warnings_cost_nothing(tmp_path):
    sub = copy_homework(tmp_path / "sub")
    notebook = sub / NOTEBOOK

    def add_noise(cells):
        for c in cells:
            if c.get("metadata", {}).get("nbgrader", {}).get("solution") and c["cell_type"] == "code":
                src = "".join(c["source"])
                noise = ("import warnings, sys\nprint('debug print at load')\n"
                         "print('to stderr', file=sys.stderr)\nwarnings.warn('a torch-like warning')\n")
                body_noise = "    print('debug print in call'); warnings.warn('called')\n"
                c["source"] = noise + src.replace('"""\n    ', '"""\n' + body_noise + "    ", 1)
    edit_cells(notebook, add_noise)
    results, output, code = grade(sub, tmp_path / "r.json")
    assert code == 0, output
    assert results["score"] == results["max_score"] > 0


def test_edited_locked_cell_changes_nothing(tmp_path):
    sub = copy_homework(tmp_path / "sub")

    def sabotage_given(cells):
        for c in cells:
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "given_setup":
                c["source"] = "raise SystemExit('a student broke the setup cell')\n"
    edit_cells(sub / NOTEBOOK, sabotage_given)
    results, output, code = grade(sub, tmp_path / "r.json")
    assert code == 0, output
    assert results["score"] == results["max_score"] > 0


def test_deleted_answer_cell_is_missing(tmp_path):
    sub = copy_homework(tmp_path / "sub")
    edit_cells(sub / NOTEBOOK, lambda cells: cells.remove(next(
        c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "nms")))
    results, _, _ = grade(sub, tmp_path / "r.json")
    _assert_only_nms_lost(results, "missing")


def test_duplicated_grade_id_is_reported(tmp_path):
    sub = copy_homework(tmp_path / "sub")

    def duplicate(cells):
        nms = next(c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "nms")
        copy = dict(nms, id="duplicate-nms", source="def nms(dets, thresh):\n    raise ValueError('old')\n")
        cells.insert(cells.index(nms), copy)
    edit_cells(sub / NOTEBOOK, duplicate)
    results, output, code = grade(sub, tmp_path / "r.json")
    assert code == 0, output  # the last copy (the real answer) is graded
    assert "'nms' appears in 2 cells" in results["output"]


@pytest.mark.parametrize("layout", ["flat", "missing"])
def test_other_layouts(tmp_path, layout):
    sub = tmp_path / "sub"
    if layout == "flat":  # notebooks directly in the folder, as a Gradescope upload often is
        copy_homework(tmp_path / "tmp")
        (tmp_path / "tmp" / "retinaface").rename(sub)
    else:  # with --hw an empty folder grades as all missing (without it: one line, exit 2, test_cli)
        sub.mkdir()
    results, output, code = grade(sub, tmp_path / "r.json", *(["--hw", "retinaface"] if layout == "missing" else []))
    assert results["max_score"] > 0
    if layout == "flat":
        assert results["score"] == results["max_score"], output
    else:
        assert results["score"] == 0 and all("missing" in t["output"] for t in graded_entries(results))


def test_reference_model_names_are_the_public_checkpoints():
    """The graded state_dict names and shapes (the solution's) load the published weights."""
    checkpoint = REPO_ROOT.parent / "shared" / "data" / "checkpoints" / "retinaface_mobilenet0.25.pth"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is absent (development data only)")
    from autograder.grading import Submission
    from detector.weights import read_state_dict
    published = {name: list(t.shape) for name, t in read_state_dict(checkpoint).items()}
    assert Submission("retinaface").reference("retinaface", "parameter names, mobilenet0.25") == published
