"""Every DSFD solution notebook executes top to bottom (check cells included) in a tiny
configuration, so none can rot; ``make solutions`` runs the same notebooks at full size."""
import nbformat
import pytest

from data.synthetic import generate
from tests.notebooks import REPO_ROOT
from utils.run_notebooks import main as run_notebooks

TINY_PARAMS = {"ITERATIONS": 1, "BATCH_SIZE": 2, "IMAGE_SIZE": 128, "MAX_PHI": 1, "COMPENSATION_IMAGES": 4}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsfd_notebooks")
    generate(root / "data", 4, 4, long_side=640, seed=1)  # seed 1: every setting has faces
    return root


def test_dsfd_notebooks_execute(tiny_dirs):
    params = {**TINY_PARAMS, "DATA_ROOT": str(tiny_dirs / "data"), "RUN_DIR": str(tiny_dirs / "runs")}
    out = tiny_dirs / "executed"
    code = run_notebooks(["--hw", "dsfd", "--out", str(out), *(f"--param={k}={v!r}" for k, v in params.items())])
    assert code == 0
    executed = sorted((out / "dsfd").glob("*.ipynb"))
    assert [p.name for p in executed] == sorted(p.name for p in (REPO_ROOT / "solutions" / "dsfd").glob("*.ipynb"))
    for path in executed:  # every check cell of the solutions passes
        for cell in nbformat.read(path, as_version=4).cells:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            assert "✗" not in text, f"{path.name}: a check fails on the solutions:\n{text}"
    assert (tiny_dirs / "runs" / "results.json").is_file()
