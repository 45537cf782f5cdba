"""Charge-once without reference code (autograder.replayed): a failing dependency's cell becomes a
stand-in that answers the calls the solution made, matched by fingerprint or by value; a class
becomes a module with the reference's parameters whose methods replay (gradients of a loss too); a
call the solution never made fails that re-grade (the unit keeps its own score); no model answer's
code reaches the re-graded worker."""
import json
import shutil

import pytest
import torch

from autograder import replayed
from autograder.engine import with_replayed_cells
from autograder.modules import deterministic_weights
from autograder.recorded import encode, fingerprint, record_call, save_recordings
from autograder.staff.record_calls import _wrap_class
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


def test_stand_in_replaces_functions_and_classes():
    assert replayed.stand_in("def jaccard(a, b):\n    return 1\n") == replayed.stand_in_source(["jaccard"])
    cell = ("class Head(nn.Module):\n    def __init__(self):\n        pass\n    def forward(self, x):\n"
            "        return x\n    @property\n    def size(self):\n        return 1\n"
            "def helper(x):\n    return x\n")
    assert replayed.stand_in(cell) == replayed.stand_in_source(["helper"], {"Head": ["forward"]})
    assert "Head = replayed_module('Head', ['forward'])" in replayed.stand_in(cell)
    assert replayed.stand_in("x = 1\n") is None


class _Head(torch.nn.Module):
    """A small module like the homeworks' heads: a conv, a batch norm (buffers, one of them not
    persistent), a public attribute, a forward and a second method."""

    def __init__(self, channels, anchors=2):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, anchors * 4, 1)
        self.norm = torch.nn.Sequential(torch.nn.BatchNorm2d(anchors * 4))
        self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)
        self.anchors = anchors

    def forward(self, x):
        return self.norm(self.conv(x)).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4) * self.scale

    def boxes(self, x, counts):
        counts["calls"] = counts.get("calls", 0) + 1
        return self(x)[:, :3]


class _Loss(torch.nn.Module):
    def forward(self, pred, target):
        return ((pred - target) ** 2).sum(), (pred.abs() * target).mean()


def _recorded_module(tmp_path, monkeypatch, cls, methods, run):
    """``run(cls)`` with ``cls`` recorded (as ``record_calls`` records a dependency's class), then
    the recordings given to the replay as a worker gets them; returns ``run``'s answer."""
    recorded = type(cls.__name__, (cls,), {})  # patched in place: a subclass keeps the test's class clean
    recorded.__init__, recorded.__qualname__ = cls.__init__, cls.__name__
    for m in methods:
        setattr(recorded, m, getattr(cls, m))
    calls = {}
    _wrap_class(recorded, methods, calls)
    answer = run(recorded)
    path = tmp_path / replayed.CALLS_NAME
    save_recordings(calls, path)
    monkeypatch.setattr(replayed, "CALLS_FILE", path)
    monkeypatch.setattr(replayed, "_LOADED", None)
    return answer


def test_a_replayed_module_has_the_reference_structure_and_answers_its_recorded_calls(tmp_path, monkeypatch):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)

    def run(cls):
        head = deterministic_weights(cls(3).double()).eval()
        counts = {}
        return head.state_dict(), head(x), head.boxes(x, counts), counts

    state, out, boxes, counts = _recorded_module(tmp_path, monkeypatch, _Head, ["forward", "boxes"], run)
    Head = replayed.replayed_module("_Head", ["forward", "boxes"])
    fresh = Head(3)
    reference = _Head(3)
    assert list(fresh.state_dict()) == list(reference.state_dict())        # names and order
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert fresh.anchors == 2 and torch.equal(fresh.scale, torch.full((1,), 2.0))
    assert [n for n, _ in fresh.named_modules()] == [n for n, _ in reference.named_modules()]
    head = deterministic_weights(fresh.double()).eval()
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), state.values()))
    assert torch.equal(head(x), out)
    filled = {}
    assert torch.equal(head.boxes(x, filled), boxes) and filled == counts == {"calls": 1}
    with pytest.raises(replayed.NotReplayed):
        head.train()(x)                                       # another training flag: not recorded
    with pytest.raises(replayed.NotReplayed):
        head.eval()(x + 1)                                    # another input
    with pytest.raises(replayed.NotReplayed):
        Head(4)                                               # another construction
    with torch.no_grad():
        next(head.parameters()).add_(1)
    with pytest.raises(replayed.NotReplayed):
        head(x)                                               # other weights


def test_a_replayed_loss_carries_the_reference_gradients(tmp_path, monkeypatch):
    pred, target = torch.randn(5, 4, dtype=torch.float64), torch.rand(5, 4, dtype=torch.float64)

    def run(cls):
        p = pred.clone().requires_grad_(True)
        a, b = cls()(p, target)
        return (a, b, *torch.autograd.grad(3 * a + b, p))

    a, b, grad = _recorded_module(tmp_path, monkeypatch, _Loss, ["forward"], run)
    p = pred.clone().requires_grad_(True)
    got_a, got_b = replayed.replayed_module("_Loss", ["forward"])()(p, target)
    assert torch.equal(got_a, a) and torch.equal(got_b, b)
    assert torch.allclose(torch.autograd.grad(3 * got_a + got_b, p)[0], grad, rtol=1e-12, atol=0)


def test_a_regrade_holds_no_model_answer_code(tmp_path):
    """The stubs with jaccard (functions) and bbox_head (a class) re-graded: their cells are the
    stand-ins, the recorded calls sit beside them, and no line of the model answers is in the
    worker's notebooks that the stubs did not already hold."""
    hw, units = "retinaface", homework_units("retinaface")
    folder = tmp_path / "stubs"
    shutil.copytree(REPO_ROOT / "assignments" / hw, folder)
    hybrid = with_replayed_cells(folder, tmp_path / "hybrid", ("bbox_head", "jaccard"), units,
                                 REPO_ROOT / "solutions" / hw, replayed.calls_path(hw))
    assert (hybrid / replayed.CALLS_NAME).is_file()
    for gid, expected in (("jaccard", replayed.stand_in_source(["jaccard"])),
                          ("bbox_head", replayed.stand_in_source([], {"BboxHead": ["forward"]}))):
        nb = json.loads((hybrid / units[gid].notebook).read_text())
        [cell] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid]
        assert "".join(cell["source"]) == expected
    text = "\n".join(p.read_text() for p in hybrid.glob("*.ipynb"))
    stubs = "\n".join(p.read_text() for p in folder.glob("*.ipynb"))

    def holds(s, t):
        return s in t or json.dumps(s)[1:-1] in t
    answer = solution_snippets(hw)
    assert [s for s in answer if "area_a" in s] and not [s for s in answer if holds(s, text) and not holds(s, stubs)]


SLIPPED_FORWARD = '''
def _slipped(value):
    if isinstance(value, torch.Tensor):
        return value * 1.5 if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_slipped(v) for v in value)
    return value
_forward = {cls}.forward
{cls}.forward = lambda self, *a, **k: _slipped(_forward(self, *a, **k))
'''


@pytest.mark.parametrize("hw, dependency, cls, caller", [
    ("retinaface", "multibox_loss", "MultiBoxLoss", "cascade_loss"),          # a loss: its gradients replayed
    ("dsfd", "efficientnet_sources", "EfficientNetSources", "dsfd"),        # built from a module argument
])
def test_a_class_dependency_is_replayed_in_the_regrade(hw, dependency, cls, caller, tmp_path):
    """The solutions with the class's forward slipped (answers x 1.5): the class's unit fails, its
    caller fails with it, and charge-once, with the class replayed, gives the caller full marks."""
    from autograder import engine
    from autograder.results import Report

    units = homework_units(hw)
    folder = tmp_path / hw
    shutil.copytree(REPO_ROOT / "solutions" / hw, folder)
    path = folder / units[dependency].notebook
    nb = json.loads(path.read_text())
    [cell] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == dependency]
    cell["source"] = "".join(cell["source"]) + SLIPPED_FORWARD.format(cls=cls)
    path.write_text(json.dumps(nb))
    options = engine.Options(reference_dir=REPO_ROOT / "solutions" / hw)
    checks, notes = engine.run_checks(hw, folder, options, units={dependency, caller})
    report = Report(hw, checks, notes)
    before = report.unit_scores()
    assert before[dependency][0] < before[dependency][1] and before[caller][0] < before[caller][1], before
    engine.charge_once(report, folder, options)
    after = report.unit_scores()
    assert after[caller][0] == after[caller][1], (after, [c.feedback for c in report.checks if c.unit == caller])
    assert [(r.unit, r.applied) for r in report.regrades] == [(caller, True)]
