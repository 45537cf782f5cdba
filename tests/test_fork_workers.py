"""Class grading with workers forked from a preloaded server (the default) and two graders at once:
no unit of a well-behaved student is ever charged as crashed or out of time, run after run.

Forked workers were once killed by the kit's own "the scoring process is gone" check: a worker that
confined itself before its double-fork's middle process had exited took that process for the
scoring process (``autograder.sandbox.forkserver``). Two graders on two cores widened the window.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from autograder import feedback as fb
from tests.classroom import make_class
from tests.notebooks import REPO_ROOT

HW = "retinaface"
COUNTS = {"correct": 8, "stub": 4, "mistake": 5, "hostile": 3}
RUNS = 2
UNIT_TIMEOUT = "10"


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("fork") / "submitted"
    return root, make_class(root, HW, COUNTS)


@pytest.mark.parametrize("run", range(RUNS))
def test_two_graders_at_once_never_charge_a_crash_to_a_well_behaved_student(submitted, tmp_path, run):
    root, names = submitted
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "autograder.staff.batch", "--submissions", str(root),
                           "--out", str(out), "--hw", HW, "--jobs", "2", "--unit-timeout", UNIT_TIMEOUT],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = None
    for name in names:
        report = json.loads((out / "students" / name / "report.json").read_text())
        assert report["status"] == "graded", (name, report["notes"])
        if name.startswith("hostile"):
            continue
        lost = [(c["unit"], c["kind"], c["feedback"][:200]) for c in report["checks"]
                if c["kind"] in (fb.CRASHED, fb.TIMEOUT)]
        assert not lost, (name, lost, report["notes"])
        if name.startswith("correct"):
            total = sum(c["points"] for c in report["checks"] if c["kind"] != "skipped")
            assert sum(c["score"] for c in report["checks"]) == total > 0, name
            full = total if full is None else full
            assert total == full, name
