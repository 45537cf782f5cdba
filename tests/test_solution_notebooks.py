"""Every homework's solution notebooks execute top to bottom (check cells included) in a tiny
configuration, so none can rot; every check cell passes on the solutions. ``make solutions HW=<hw>``
runs the same notebooks at full size."""
import nbformat
import pytest

from autograder.units import HOMEWORKS
from tests.notebooks import REPO_ROOT
from tests.trained_upload import PUBLIC_RETINAFACE, fine_tuned_retinaface
from data.synthetic import generate
from utils.homeworks import homework
from utils.run_notebooks import main as run_notebooks

# The final project's check cell scores the packed detector by AP on public pictures, which a
# 2-iteration run cannot reach: the test packs a RetinaFace MobileNet-0.25 fine-tuned from the
# published checkpoint instead (tests.trained_upload), and skips where ../shared/data is absent.

# Lines an executed notebook must print (the experiment tables' rows).
PRINTED_ROWS = {"tinaface": ("baseline", "+DIoU", "+Inception", "+IoU-aware", "+DCN", "BiFPN")}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    generate(root / "data", 4, 4, long_side=640, seed=1)  # seed 1: every setting has faces
    return root / "data"


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_solution_notebooks_execute(hw, tiny_data, tmp_path):
    params = {**homework(hw).tiny_params, "DATA_ROOT": str(tiny_data), "RUN_DIR": str(tmp_path / "runs")}
    if hw == "challenge":
        if not PUBLIC_RETINAFACE.is_file():
            pytest.skip(f"{PUBLIC_RETINAFACE} is absent (the final project's check needs a trained detector)")
        params["PACK_WEIGHTS"] = str(fine_tuned_retinaface())
    out = tmp_path / "executed"
    code = run_notebooks(["--hw", hw, "--out", str(out), *(f"--param={k}={v!r}" for k, v in params.items())])
    assert code == 0
    executed = sorted((out / hw).glob("*.ipynb"))
    assert [p.name for p in executed] == sorted(homework(hw).notebooks)
    printed = ""
    for path in executed:  # every check cell of the solutions passes
        for cell in nbformat.read(path, as_version=4).cells:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            assert "✗" not in text, f"{path.name}: a check fails on the solutions:\n{text}"
            printed += text
    for row in PRINTED_ROWS.get(hw, ()):
        assert f"\n{row:>11} " in printed or printed.startswith(f"{row:>11} "), row
