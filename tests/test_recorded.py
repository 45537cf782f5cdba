"""Recorded reference answers (autograder.recorded): fingerprints that ignore last-bit noise but not
a real difference, answers that come back as the reference code returned them, and a call the
bundle never recorded skipped (not failed, not passed)."""
import dataclasses
import types

import numpy as np
import pytest
import torch

from autograder import recorded
from autograder.grading import Graded
from autograder.results import SKIPPED, check_result
from autograder.staff.record_oracles import Recorder


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(source, module.__dict__)
    return module


def _replaying(name: str, payload: dict, tmp_path, monkeypatch) -> types.ModuleType:
    """The student bundle's stub of module ``name``, replaying ``payload``."""
    path = tmp_path / "fakehw-oracles.pt.xz"
    recorded.save_recordings(payload, path)
    monkeypatch.setattr(recorded, "recordings_path", lambda hw: path)
    monkeypatch.setattr(recorded, "_LOADED", {})
    return _module(name, recorded.stub_source(name))


def test_fingerprint_ignores_last_bit_noise_but_not_a_difference():
    x = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noisy = x * (1 + 2.0 ** -50)                                      # another machine's rounding
    assert recorded.fingerprint("f", (x,), {}) == recorded.fingerprint("f", (noisy,), {})
    assert recorded.fingerprint("f", (x,), {}) != recorded.fingerprint("f", (x + 1e-3,), {})
    assert recorded.fingerprint("f", (x,), {}) != recorded.fingerprint("f", (x.float(),), {})  # dtype
    assert recorded.fingerprint("f", (x,), {}) != recorded.fingerprint("g", (x,), {})          # function
    assert recorded.fingerprint("f", (x,), {"k": 1}) != recorded.fingerprint("f", (x,), {"k": 2})
    assert recorded.fingerprint("f", (torch.tensor([-0.0]),), {}) == recorded.fingerprint("f", (torch.tensor([0.0]),), {})
    assert recorded.fingerprint("f", (torch.arange(3),), {}) != recorded.fingerprint("f", (torch.arange(3) + 1,), {})
    with pytest.raises(TypeError, match="cannot fingerprint"):
        recorded.fingerprint("f", (object(),), {})


@dataclasses.dataclass
class _Match:
    labels: torch.Tensor
    count: int


def test_answers_round_trip():
    value = {"a": (torch.arange(4), np.ones(3)), "b": [1.5, None, "x", True], "s": torch.Size([2, 3]),
             "m": _Match(torch.zeros(2), 3)}
    back = recorded.decode(recorded.encode(value))
    assert torch.equal(back["a"][0], value["a"][0]) and isinstance(back["a"], tuple)
    assert isinstance(back["a"][1], np.ndarray) and back["b"] == value["b"] and back["s"] == torch.Size([2, 3])
    assert back["m"].count == 3 and torch.equal(back["m"].labels, torch.zeros(2))  # fields as attributes


def test_record_then_replay_and_a_miss_is_skipped(tmp_path, monkeypatch):
    oracle = _module("autograder.fakehw.oracles", "SCALE = 2.0\n"
                     "def helper(x):\n    return x * SCALE\n"
                     "def answer(x, k=1):\n    return helper(x) + k\n")
    recorder = Recorder([oracle])
    recorder.active = True
    x = torch.randn(5)
    want = oracle.answer(x, k=3)
    assert torch.equal(want, x * 2 + 3)
    assert recorder.functions["autograder.fakehw.oracles"] == ["answer", "helper"]
    assert len(recorder.calls) == 1  # the inner helper() call is part of answer(), not recorded apart

    stub = _replaying("autograder.fakehw.oracles", recorder.payload(), tmp_path, monkeypatch)
    assert torch.equal(stub.answer(x.clone(), k=3), want) and stub.SCALE == 2.0
    with pytest.raises(recorded.NotRecorded, match="official grader"):
        stub.answer(x + 1, k=3)
    with pytest.raises(AttributeError, match="student bundle"):
        stub.solution
    try:
        stub.answer(x, k=4)
    except recorded.NotRecorded as err:
        result = check_result(Graded("u", 2, "t"), err, 0.1)
    assert result.kind == SKIPPED and result.score == 0


def test_an_out_argument_is_filled_again_on_replay(tmp_path, monkeypatch):
    oracle = _module("autograder.fakehw.oracles", "def loss(x, counts=None):\n"
                     "    if counts is not None:\n        counts.update(pos=int((x > 0).sum()))\n"
                     "    return x.sum()\n")
    recorder = Recorder([oracle])
    recorder.active = True
    x, counts = torch.tensor([1.0, -2.0, 3.0]), {}
    assert oracle.loss(x, counts=counts) == 2.0 and counts == {"pos": 2}
    stub = _replaying("autograder.fakehw.oracles", recorder.payload(), tmp_path, monkeypatch)
    again = {}
    assert stub.loss(x, counts=again) == 2.0 and again == {"pos": 2}


def test_a_miss_while_naming_a_found_mistake_keeps_the_failure(tmp_path, monkeypatch):
    from autograder.feedback import GradingFailure
    oracle = _module("autograder.fakehw.mistakes", "def hint(got):\n    return 'you forgot the +1'\n")
    stub = _replaying("autograder.fakehw.mistakes", Recorder([oracle]).payload(), tmp_path, monkeypatch)  # none

    def check():
        try:
            raise GradingFailure("case 'a': differs", "wrong answer", ("jaccard",))
        except GradingFailure:
            stub.hint(torch.ones(2))  # depends on the answer: not recorded
    with pytest.raises(GradingFailure, match="differs.*cannot") as err:
        check()
    assert err.value.kind == "wrong answer" and err.value.dependencies == ("jaccard",)
