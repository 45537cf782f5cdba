"""The TinaFace solution notebooks execute top to bottom (check cells included) in a tiny
configuration, so none can rot; every check cell passes on the solutions."""
import nbformat
import pytest

from data.synthetic import generate
from tests.notebooks import REPO_ROOT
from utils.run_notebooks import main as run_notebooks

TINY = {"IMAGE_SIZE": 64, "BATCH_SIZE": 2, "ITERATIONS": 2, "TIMING_SIZE": 8, "TIMING_REPEATS": 1,
        "NECK_CONFIGS": ("lite",)}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinaface_notebooks")
    generate(root / "data", 4, 4, long_side=640, seed=1)  # seed 1: every setting has faces
    return root


def test_tinaface_notebooks_execute(tiny_dirs):
    params = {**TINY, "DATA_ROOT": str(tiny_dirs / "data"), "RUN_DIR": str(tiny_dirs / "runs")}
    out = tiny_dirs / "executed"
    code = run_notebooks(["--hw", "tinaface", "--out", str(out),
                          *(f"--param={k}={v!r}" for k, v in params.items())])
    assert code == 0
    executed = sorted((out / "tinaface").glob("*.ipynb"))
    assert [p.name for p in executed] == sorted(p.name for p in (REPO_ROOT / "solutions" / "tinaface").glob("*.ipynb"))
    for path in executed:
        for cell in nbformat.read(path, as_version=4).cells:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            assert "✗" not in text, f"{path.name}: a check fails on the solutions:\n{text}"
    ablation = nbformat.read(out / "tinaface" / "3_experiments.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in ablation.cells for o in c.get("outputs", []))
    for row in ("baseline", "+DIoU", "+Inception", "+IoU-aware", "+DCN", "BiFPN"):
        assert f"\n{row:>11} " in printed or printed.startswith(f"{row:>11} "), row
