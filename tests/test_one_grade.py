"""One submission, one grade: ``make grade`` (``pytest autograder/``), Gradescope's ``run_autograder``
and class grading (``autograder.staff.batch``) give the same results.json (execution time aside).

For every homework the submission is the solutions with one realistic slip in a unit that other
units call, so the charge-once rule matters: the slipped unit loses points, and the units that call
it are re-graded with the reference and keep theirs, through every path.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.notebooks import REPO_ROOT, edit_cells, grade, scores_by_unit

# hw -> (notebook, unit, text in the solution, the slip, a unit that calls it)
SLIPS = {
    "retinaface": ("4_matching_nms.ipynb", "jaccard", "(box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1])",
                   "(box_a[:, 2] - box_a[:, 0] + 1) * (box_a[:, 3] - box_a[:, 1] + 1)", "match"),
    "dsfd": ("1_model.ipynb", "l2norm", ".sum(dim=1, keepdim=True).sqrt() + self.eps",
             ".sum(dim=1, keepdim=True) + self.eps", "dsfd"),
    "tinaface": ("1_model.ipynb", "fast_normalized_fusion", "w = torch.relu(weights)\n    w = w / (eps + w.sum())",
                 "w = torch.softmax(weights, dim=0)", "bifpn_layer"),
    "rfcn": ("1_anchors_boxes.ipynb", "bbox_transform", "rois[:, 1] + 0.5 * h", "rois[:, 1] + 0.5 * w",
             "anchor_target_layer"),
}


def _slip(folder: Path, hw: str) -> None:
    notebook, unit, right, wrong, _ = SLIPS[hw]

    def edit(cells):
        hits = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == unit]
        source = "".join(hits[0]["source"])
        assert right in source, f"{hw}/{notebook}: the solution of {unit} no longer holds {right!r}"
        hits[0]["source"] = source.replace(right, wrong)
    edit_cells(folder / notebook, edit)


def _without_time(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "execution_time"}


def _run(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("hw", list(SLIPS))
def test_every_path_gives_the_same_results(hw, tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(REPO_ROOT / "solutions" / hw, sub / hw)
    _slip(sub / hw, hw)

    by_pytest, output, code = grade(sub, tmp_path / "pytest.json", "--hw", hw, timeout=900)
    assert code == 1, output  # the slipped unit's checks fail; nothing errors

    gradescope_root = tmp_path / "gradescope"
    shutil.copytree(sub / hw, gradescope_root / "submission")
    _run(["autograder.staff.gradescope", "--root", str(gradescope_root), "--hw", hw])
    by_gradescope = json.loads((gradescope_root / "results" / "results.json").read_text())

    shutil.copytree(sub, tmp_path / "class" / "alice")
    _run(["autograder.staff.batch", "--submissions", str(tmp_path / "class"), "--out", str(tmp_path / "grades"),
          "--hw", hw, "--jobs", "1"])
    by_batch = json.loads((tmp_path / "grades" / "students" / "alice" / "results.json").read_text())

    assert _without_time(by_pytest) == _without_time(by_gradescope) == _without_time(by_batch)
    _, unit, _, _, caller = SLIPS[hw]
    scores = scores_by_unit(by_pytest)
    assert scores[unit][0] < scores[unit][1], scores
    assert scores[caller][0] == scores[caller][1], (caller, scores)  # charged once, not twice
    assert f"graded with the reference {unit}" in by_pytest["output"], by_pytest["output"]
    assert f"graded with the reference {unit}" in output  # the terminal table says so too
