"""Charge-once without reference code (autograder.replayed): a failing dependency's cell becomes a
stand-in that answers the calls the solution made, matched by fingerprint or by value; a call the
solution never made fails that re-grade (the unit keeps its own score); no model answer's code
reaches the re-graded worker."""
import json
import shutil

import pytest
import torch

from autograder import replayed
from autograder.engine import with_reference_cells
from autograder.recorded import encode, fingerprint, record_call, save_recordings
from autograder.units import homework_units
from tests.notebooks import REPO_ROOT
from utils.deploy.bundle import solution_snippets


def _fill(x, out):
    out.copy_(x * 2)
    return x.sum()


@pytest.fixture
def recorded_fill(tmp_path, monkeypatch):
    x = torch.tensor([1.0, 2.0, 3.0])
    out = torch.zeros(3)
    arguments = encode(((x, out), {}))
    _, recording = record_call(_fill, (x, out), {})
    path = tmp_path / replayed.CALLS_NAME
    save_recordings({"fill": {fingerprint("fill", (x, torch.zeros(3)), {}): {"arguments": arguments, **recording}}},
                    path)
    monkeypatch.setattr(replayed, "CALLS_FILE", path)
    monkeypatch.setattr(replayed, "_LOADED", None)
    return x


def test_a_recorded_call_is_answered_and_its_out_argument_filled(recorded_fill):
    fill = replayed.replayed("fill")
    out = torch.zeros(3)
    assert fill(recorded_fill, out) == 6.0 and torch.equal(out, recorded_fill * 2)
    nearly = recorded_fill * (1 + 1e-7)                      # a correct caller's rounding: matched by value
    assert fill(nearly, torch.zeros(3)) == 6.0
    with pytest.raises(replayed.NotReplayed, match="never passed"):
        fill(recorded_fill + 1, torch.zeros(3))


def test_stand_in_replaces_a_cell_of_functions_not_a_class():
    assert replayed.stand_in("def jaccard(a, b):\n    return 1\n") == replayed.stand_in_source(["jaccard"])
    assert replayed.stand_in("class Head(nn.Module):\n    pass\n") is None
    assert replayed.stand_in("x = 1\n") is None


def test_a_regrade_holds_no_model_answer_code(tmp_path):
    """The stubs with jaccard re-graded: the hybrid's jaccard cell is the stand-in, the recorded calls
    sit beside it, and no line of jaccard's model answer is in the worker's notebooks."""
    hw, units = "retinaface", homework_units("retinaface")
    folder = tmp_path / "stubs"
    shutil.copytree(REPO_ROOT / "assignments" / hw, folder)
    hybrid = with_reference_cells(folder, tmp_path / "hybrid", ("jaccard",), units, REPO_ROOT / "solutions" / hw,
                                  replayed.calls_path(hw))
    assert (hybrid / replayed.CALLS_NAME).is_file()
    nb = json.loads((hybrid / units["jaccard"].notebook).read_text())
    [cell] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "jaccard"]
    assert "".join(cell["source"]) == replayed.stand_in_source(["jaccard"])
    text = "\n".join(p.read_text() for p in hybrid.glob("*.ipynb"))
    answer = [s for s in solution_snippets(hw) if "area_a" in s or "area_b" in s]
    assert answer and not [s for s in answer if s in text or json.dumps(s)[1:-1] in text]
