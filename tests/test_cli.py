"""The model-agnostic command lines (utils.experiment, utils.compare, pytest autograder/): a tiny run
end to end, and user mistakes reported in one line with exit code 2 (no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from data.synthetic import generate
from tests.notebooks import REPO_ROOT
from utils import compare, experiment
from utils.cli import run
from utils.detectors import ADAPTERS, adapter

TINY = ["--iterations", "2", "--batch-size", "2", "--image-size", "96"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "data"
    generate(root, 4, 4, long_side=320, seed=1)
    return root


@pytest.mark.parametrize("model", sorted(ADAPTERS))
def test_experiment_train_then_evaluate(model, data, tmp_path, capsys):
    out = tmp_path / "run"
    variant = ["--variant", "focal=True"] if model == "retinaface" else []
    size = str(max(96, adapter(model).DEMO["image_size"] // 2))
    assert run(experiment.main, ["train", "--model", model, "--data", str(data), "--out", str(out),
                                 "--workers", "0", *variant, *TINY[:-1], size]) == 0
    checkpoint = out / "checkpoints" / "best.pt"
    assert checkpoint.is_file()
    assert run(experiment.main, ["evaluate", "--model", model, "--data", str(data), "--weights", str(checkpoint),
                                 "--out", str(tmp_path / "eval"), "--json"]) == 0
    ap = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(ap) == {"easy", "medium", "hard"} and all(0 <= v <= 1 for v in ap.values())


def test_experiment_user_mistakes(data, tmp_path, capsys):
    cases = [
        (["train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r")], "not a dataset in the WIDER layout"),
        (["train", "--data", str(data), "--variant", "mixup=True", *TINY], "--variant mixup: not a switch of retinaface"),
        (["train", "--data", str(data), "--cfg", "vgg99", *TINY], "unknown --model retinaface config 'vgg99'"),
        (["evaluate", "--data", str(data), "--weights", str(tmp_path / "no.pt"), "--out", str(tmp_path / "e")],
         "no.pt: checkpoint not found"),
    ]
    for argv, message in cases:
        assert run(experiment.main, argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_compare_writes_the_table_and_curves(data, tmp_path, capsys):
    out = tmp_path / "compare"
    assert run(compare.main, ["--models", "retinaface", "--data", str(data), "--out", str(out), *TINY]) == 0
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["model"] for r in rows] == ["retinaface"] and rows[0]["parameters"] > 0
    assert "| retinaface | mobilenet0.25 |" in (out / "comparison.md").read_text()
    assert (out / "pr_curves.png").stat().st_size > 0
    assert run(compare.main, ["--models", "yolo", "--data", str(data)]) == 2
    assert "unknown yolo" in capsys.readouterr().err


@pytest.mark.parametrize("submission, message", [("no/such/dir", "no such folder"),
                                                 ("tests", "no homework notebook found")])
def test_grading_a_wrong_folder_is_one_line_and_exit_2(submission, message):
    proc = subprocess.run([sys.executable, "-m", "pytest", "autograder/", "--submission", submission, "-q"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert message in proc.stdout + proc.stderr
    assert "missing" not in proc.stdout  # not one "missing answer cell" per test
