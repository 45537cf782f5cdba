"""utils.published_weights: the fingerprint of the published RetinaFace checkpoint, and the distances
that decide "the published weights" (refused) and "fine-tuned from them" (listed for staff)."""
import json

import pytest
import torch

from tests.trained_upload import PUBLIC_RETINAFACE, fine_tuned_retinaface, needs_checkpoint
from utils import published_weights as pw
from utils.detectors import load_model

NAME = "retinaface-mobilenet0.25-public"


@pytest.fixture(scope="module")
def published():
    if not PUBLIC_RETINAFACE.is_file():
        pytest.skip(f"{PUBLIC_RETINAFACE} is absent")
    return load_model("retinaface", "mobilenet0.25", "solutions", weights=PUBLIC_RETINAFACE).state_dict()


def test_the_stored_fingerprint_is_the_published_checkpoints(published):
    stored = pw.load_fingerprints()[NAME]
    assert stored["tensors"] == json.loads(json.dumps(pw.fingerprint(published)))
    assert len(stored["tensors"]) == sum(1 for v in published.values() if v.dim() >= 2) == 56
    assert all(len(t["values"]) == pw.SAMPLES for t in stored["tensors"].values())


def test_the_published_weights_are_the_same_in_any_precision(published):
    for state in (published, {k: v.half() for k, v in published.items()},
                  {k: v.double() for k, v in published.items()}):
        match = pw.same_as_published(state)
        assert match is not None and match.name == NAME and match.matched == 56
    assert "not a detector you trained" in pw.refusal(pw.same_as_published(published))


def test_independent_weights_are_far_and_other_models_are_not_compared(published):
    [random] = pw.distance(load_model("retinaface", "mobilenet0.25", "solutions", seed=0).state_dict())
    assert random.median > 1.0 and not random.starts_from          # measured 1.19
    assert pw.distance(load_model("tinaface", "lite", "solutions", seed=0).state_dict()) == []
    renamed = {f"x.{k}": v for k, v in published.items()}          # names must match to compare
    assert pw.distance(renamed) == []
    partial = {k: v for i, (k, v) in enumerate(published.items()) if i % 3}   # under MIN_MATCHED of the tensors
    assert pw.distance(partial) == []


@needs_checkpoint
def test_a_few_steps_of_fine_tuning_start_from_it_without_being_it():
    [match] = pw.distance(torch.load(fine_tuned_retinaface(), weights_only=True))
    assert pw.SAME < match.median < 0.05 and match.starts_from and not match.same   # measured 0.003


def test_one_tensor_changed_is_still_the_published_checkpoint(published):
    """The median decides: replacing a few tensors does not make the weights someone's own."""
    state = dict(published)
    for key in [k for k, v in published.items() if v.dim() >= 2][:5]:
        state[key] = torch.randn_like(published[key])
    assert pw.same_as_published(state) is not None
