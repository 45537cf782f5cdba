"""utils.compare's baselines on a tiny generated dataset: OpenCV's Haar cascade scores in [0, 1], the
table has one row per detector that can run here and one skip line per absent one, the PR-curve
figure is written, and training options without --iterations are a one-line user error."""
from __future__ import annotations

import importlib.util
import json

import cv2
import pytest
import torch

from data.synthetic import generate
from utils import compare
from utils.cli import run
from utils.detectors import ADAPTERS, adapter, config, load_model

DEMO_PRESENT = "retinaface"      # the test writes this model's demo checkpoint; the others stay absent


def haar_available() -> bool:
    try:
        compare.haar_baseline()
    except compare.Skip:
        return False
    return True


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "data"
    generate(root, 0, 4, long_side=320, seed=1)      # val only: 4 pictures with easy/medium/hard faces
    return root


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """A make-demo layout holding only RetinaFace's checkpoint (untrained weights, seed 0)."""
    root = tmp_path_factory.mktemp("demo-root")
    path = compare.demo_checkpoint(DEMO_PRESENT, root)
    path.parent.mkdir(parents=True)
    module = adapter(DEMO_PRESENT)
    net = load_model(DEMO_PRESENT, config(DEMO_PRESENT, module.LITE, image_size=module.DEMO["image_size"]))
    torch.save(net.state_dict(), path)
    return root


@pytest.fixture(scope="module")
def result(data, demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare-out")
    assert run(compare.main, ["--data", str(data), "--out", str(out), "--demo-root", str(demo_root),
                                "--threads", "1"]) == 0
    return out, json.loads((out / "baselines.json").read_text()), (out / "baselines.md").read_text()


def expected_present() -> tuple[list[str], list[str]]:
    """(rows, skipped) in table order for this machine."""
    present = {"haar": haar_available(),
               "retinaface-public": compare.PUBLIC_WEIGHTS.is_file(),
               "mtcnn": importlib.util.find_spec("facenet_pytorch") is not None}
    present.update({f"{m}-demo": m == DEMO_PRESENT for m in ADAPTERS})
    order = ["haar", "retinaface-public", *(f"{m}-demo" for m in ADAPTERS), "mtcnn"]
    return [n for n in order if present[n]], [n for n in order if not present[n]]


def test_haar_baseline_scores_in_unit_interval(result):
    if not haar_available():
        pytest.skip(f"OpenCV {cv2.__version__} has no Haar cascade (cv2.CascadeClassifier and the XML "
                    f"files left the main package in OpenCV 5)")
    _, summary, table = result
    haar = next(r for r in summary["rows"] if r["name"] == "haar")
    assert set(haar["ap"]) == {"easy", "medium", "hard"}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in haar["ap"].values()), haar["ap"]
    assert haar["images_per_s"] > 0 and "stumps" in haar["parameters"]
    assert "| haar | haarcascade_frontalface_default.xml" in table


def test_one_row_per_present_detector_and_one_skip_line_per_absent(result):
    out, summary, table = result
    rows, skipped = expected_present()
    assert [r["name"] for r in summary["rows"]] == rows
    assert [line.split(":")[0] for line in summary["skipped"]] == skipped
    table_rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0][2:] for line in table_rows] == rows
    for row in summary["rows"]:
        assert all(0.0 <= v <= 1.0 for v in row["ap"].values()), row
    skip_lines = [line for line in table.splitlines() if line.startswith("- ")]
    assert len(skip_lines) == len(skipped)
    for name, line in zip(skipped, skip_lines):
        assert line.startswith(f"- {name}: skipped, ") and "\n" not in line
        if name.endswith("-demo"):
            assert f"`make demo MODEL={name[:-len('-demo')]}`" in line, line
    assert f"{DEMO_PRESENT}-demo" in rows


def test_pr_curve_figure_is_written(result):
    out, _, _ = result
    figure = out / "baselines_pr_curves.png"
    assert figure.stat().st_size > 0
    assert cv2.imread(str(figure)) is not None
    assert (out / f"{DEMO_PRESENT}-demo" / "predictions").is_dir()


def test_training_options_need_iterations_and_a_scored_split(data, tmp_path, capsys):
    assert run(compare.main, ["--data", str(data), "--batch-size", "4"]) == 2
    assert "add --iterations N to train" in capsys.readouterr().err
    assert run(compare.main, ["--data", str(data), "--split", "train", "--out", str(tmp_path)]) == 2
    assert "train/ground_truth not found" in capsys.readouterr().err
