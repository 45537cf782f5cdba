"""Every Face R-FCN solution notebook executes top to bottom (check cells included) in a tiny
configuration, so none can rot. ``make solutions`` runs the same notebooks at full size."""
import nbformat
import pytest

from data.synthetic import generate
from tests.notebooks import REPO_ROOT
from utils.run_notebooks import main as run_notebooks

SMOKE_PARAMS = {"IMAGE_SIZE": 96, "BATCH_SIZE": 2, "ITERATIONS": 2, "TIMING_IMAGES": 1,
                "VARIANTS": ("weighted", "ohem")}


@pytest.fixture(scope="module")
def smoke_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rfcn-notebooks")
    generate(root / "data", 4, 4, long_side=640, seed=1)  # seed 1: every setting has faces
    return root


def test_rfcn_notebooks_execute(smoke_dirs):
    params = {**SMOKE_PARAMS, "DATA_ROOT": str(smoke_dirs / "data"), "RUN_DIR": str(smoke_dirs / "runs")}
    out = smoke_dirs / "executed"
    code = run_notebooks(["--hw", "rfcn", "--out", str(out), *(f"--param={k}={v!r}" for k, v in params.items())])
    assert code == 0
    executed = sorted((out / "rfcn").glob("*.ipynb"))
    assert [p.name for p in executed] == sorted(p.name for p in (REPO_ROOT / "solutions" / "rfcn").glob("*.ipynb"))
    for path in executed:
        for cell in nbformat.read(path, as_version=4).cells:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            assert "✗" not in text, f"{path.name}: a check fails on the solutions:\n{text}"
