"""Every homework's solution notebooks execute top to bottom (check cells included) in a tiny
configuration, so none can rot; every check cell passes on the solutions. ``make solutions HW=<hw>``
runs the same notebooks at full size."""
import nbformat
import pytest

from autograder.units import HOMEWORKS
from data.synthetic import generate
from tests.notebooks import REPO_ROOT
from utils.run_notebooks import main as run_notebooks

# Each homework's parameters cell, shrunk to seconds (names the notebook does not define are ignored).
TINY_PARAMS = {
    "retinaface": {"TRAIN_IMAGES": 4, "VAL_IMAGES": 4, "IMAGE_SIZE": 96, "BATCH_SIZE": 2, "EPOCHS": 1,
                   "COMPARE_ITERATIONS": 2, "FINETUNE_ITERATIONS": 2, "CASCADE_ITERATIONS": 2},
    "dsfd": {"ITERATIONS": 1, "BATCH_SIZE": 2, "IMAGE_SIZE": 128, "MAX_PHI": 1, "COMPENSATION_IMAGES": 4},
    "tinaface": {"IMAGE_SIZE": 64, "BATCH_SIZE": 2, "ITERATIONS": 2, "TIMING_SIZE": 8, "TIMING_REPEATS": 1,
                 "NECK_CONFIGS": ("lite",)},
    "rfcn": {"IMAGE_SIZE": 96, "BATCH_SIZE": 2, "ITERATIONS": 2, "TIMING_IMAGES": 1,
             "VARIANTS": ("weighted", "ohem")},
}
# Lines an executed notebook must print (the experiment tables' rows).
PRINTED_ROWS = {"tinaface": ("baseline", "+DIoU", "+Inception", "+IoU-aware", "+DCN", "BiFPN")}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    generate(root / "data", 4, 4, long_side=640, seed=1)  # seed 1: every setting has faces
    return root / "data"


def test_every_homework_has_tiny_parameters():
    assert set(TINY_PARAMS) == set(HOMEWORKS)


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_solution_notebooks_execute(hw, tiny_data, tmp_path):
    params = {**TINY_PARAMS.get(hw, {}), "DATA_ROOT": str(tiny_data), "RUN_DIR": str(tmp_path / "runs")}
    out = tmp_path / "executed"
    code = run_notebooks(["--hw", hw, "--out", str(out), *(f"--param={k}={v!r}" for k, v in params.items())])
    assert code == 0
    executed = sorted((out / hw).glob("*.ipynb"))
    assert [p.name for p in executed] == sorted(p.name for p in (REPO_ROOT / "solutions" / hw).glob("*.ipynb"))
    printed = ""
    for path in executed:  # every check cell of the solutions passes
        for cell in nbformat.read(path, as_version=4).cells:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            assert "✗" not in text, f"{path.name}: a check fails on the solutions:\n{text}"
            printed += text
    for row in PRINTED_ROWS.get(hw, ()):
        assert f"\n{row:>11} " in printed or printed.startswith(f"{row:>11} "), row
