"""utils.challenge: pack a RetinaFace lite model with seeded random weights (a plain state dict and a
kit training checkpoint), validate the folder as the grader will, then one refused file per problem
(each made by editing the good one), every refusal one line with exit code 2."""
from __future__ import annotations

import fractions
import subprocess
import sys

import pytest
import torch

from tests.notebooks import REPO_ROOT
from utils.challenge import FILE_NAME, KEYS, MAX_BYTES, Challenge, ChallengeError, main, validate
from utils.cli import run
from utils.detectors import ADAPTERS, adapter, load_model
from utils.homeworks import homework

MODEL = "retinaface"
LITE = adapter(MODEL).LITE


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[dict, object]:
    """A plain state dict of seeded random weights of the lite RetinaFace, and its file."""
    folder = tmp_path_factory.mktemp("weights")
    net = load_model(MODEL, LITE, "solutions", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    state = net.state_dict()
    torch.save(state, folder / "weights.pt")
    return state, folder / "weights.pt"


@pytest.fixture(scope="module")
def packed(weights, tmp_path_factory):
    """The folder ``pack`` wrote from the plain state dict (the solutions' notebooks)."""
    out = tmp_path_factory.mktemp("upload")
    assert run(main, ["pack", "--model", MODEL, "--weights", str(weights[1]), "--out", str(out),
                      "--impl", "solutions"]) == 0
    return out


@pytest.fixture
def good(packed) -> dict:
    """A fresh copy of the packed payload, to edit."""
    return torch.load(packed / FILE_NAME, map_location="cpu", weights_only=True)


def refused(path, capsys, *words: str) -> str:
    """``check path`` exits 2 with one line on stderr naming the file and every one of ``words``."""
    capsys.readouterr()
    assert run(main, ["check", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and not captured.out, captured
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    with pytest.raises(ChallengeError):
        validate(path)
    return lines[0]


def save(payload, packed, name: str):
    """``payload`` written beside the packed notebooks (so the model is built from them)."""
    torch.save(payload, packed / name)
    return packed / name


def test_pack_writes_a_file_the_grader_accepts(packed, weights, capsys):
    path = packed / FILE_NAME
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert set(payload) == set(KEYS) and payload["model"] == MODEL and payload["cfg"] == LITE
    assert path.stat().st_size <= MAX_BYTES
    for name in homework(MODEL).notebooks:
        assert (packed / MODEL / name).read_bytes() == (REPO_ROOT / "solutions" / MODEL / name).read_bytes()
    challenge = validate(path)
    assert isinstance(challenge, Challenge) and (challenge.model, challenge.cfg) == (MODEL, LITE)
    assert challenge.size == path.stat().st_size and challenge.impl == packed
    state = weights[0]
    assert list(challenge.state_dict) == list(state)
    assert all(torch.equal(challenge.state_dict[k], state[k]) for k in state)
    net = challenge.load()               # every kit tool reads the file as its --weights
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    capsys.readouterr()
    assert run(main, ["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {path}: {MODEL} {LITE}")


def test_pack_reads_a_kit_training_checkpoint(packed, weights, tmp_path):
    state, _ = weights
    checkpoint = {"format": "face-kit-training-checkpoint/1", "model": state,
                  "optimizer": {"state": {}, "param_groups": []}, "progress": {"iteration": 3}}
    torch.save(checkpoint, tmp_path / "best.pt")
    # into the same folder: its notebooks are already loaded (the same files)
    assert run(main, ["pack", "--model", MODEL, "--cfg", LITE, "--weights", str(tmp_path / "best.pt"),
                      "--out", str(packed), "--impl", "solutions"]) == 0
    challenge = validate(packed / FILE_NAME)
    assert all(torch.equal(challenge.state_dict[k], state[k]) for k in state)


def test_pack_refuses_and_writes_nothing(weights, tmp_path, capsys):
    state = dict(weights[0])
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    out = tmp_path / "upload"
    capsys.readouterr()
    assert run(main, ["pack", "--model", MODEL, "--weights", str(tmp_path / "nan.pt"), "--out", str(out),
                      "--impl", "solutions"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"parameter {key!r} holds 1 NaN" in err[0], err
    assert not out.exists()
    assert run(main, ["pack", "--model", MODEL, "--cfg", "tiny", "--weights", str(tmp_path / "nan.pt"),
                      "--out", str(out), "--impl", "solutions"]) == 2
    assert "unknown config 'tiny' for model retinaface" in capsys.readouterr().err


def test_refuses_no_file(packed, capsys):
    refused(packed / "missing.pt", capsys, "no such file")


def test_refuses_a_folder(packed, capsys):
    refused(packed / MODEL, capsys, "not a file")


def test_refuses_a_file_torch_cannot_load(packed, capsys):
    path = packed / "truncated.pt"
    path.write_bytes((packed / FILE_NAME).read_bytes()[:1000])
    refused(path, capsys, "not loadable with torch.load(weights_only=True)")


def test_refuses_pickled_objects(good, packed, capsys):
    good["note"] = fractions.Fraction(1, 3)       # any class beyond tensors and plain values
    refused(save(good, packed, "pickled.pt"), capsys, "not loadable with torch.load(weights_only=True)",
            "fractions.Fraction")


@pytest.mark.parametrize("key", KEYS)
def test_refuses_a_missing_key(key, good, packed, capsys):
    del good[key]
    refused(save(good, packed, f"no_{key}.pt"), capsys, f"missing key {key!r}")


def test_refuses_a_bare_state_dict(good, packed, capsys):
    refused(save(good["state_dict"], packed, "bare.pt"), capsys, "missing keys 'model', 'cfg', 'state_dict'",
            "python -m utils.challenge pack")


def test_refuses_an_unknown_model(good, packed, capsys):
    good["model"] = "yolo"
    refused(save(good, packed, "yolo.pt"), capsys, "unknown model 'yolo'", f"known models: {', '.join(ADAPTERS)}")


def test_refuses_an_unknown_config(good, packed, capsys):
    good["cfg"] = "mobilenet1.0"
    refused(save(good, packed, "cfg.pt"), capsys, "unknown config 'mobilenet1.0' for model retinaface",
            f"its configs: {', '.join(adapter(MODEL).CONFIGS)}")


def test_refuses_a_tensor_of_another_shape(good, packed, capsys):
    key, value = next(iter(good["state_dict"].items()))
    good["state_dict"][key] = torch.zeros(value.shape[0] + 1, *value.shape[1:])
    wrong = (value.shape[0] + 1, *value.shape[1:])
    refused(save(good, packed, "shape.pt"), capsys, f"{key!r} has shape {wrong} in the file, "
            f"{tuple(value.shape)} in the model", "does not fit retinaface with config 'mobilenet0.25'")


def test_refuses_a_missing_parameter(good, packed, capsys):
    key = list(good["state_dict"])[7]
    del good["state_dict"][key]
    refused(save(good, packed, "missing_param.pt"), capsys, f"missing key {key!r} (1 missing)")


def test_refuses_an_unexpected_parameter(good, packed, capsys):
    good["state_dict"]["head.extra.weight"] = torch.zeros(3)
    refused(save(good, packed, "unexpected.pt"), capsys, "unexpected key 'head.extra.weight' (1 unexpected)")


def test_refuses_the_weights_of_another_config(good, packed, capsys):
    good["cfg"] = adapter(MODEL).FULL          # a known config whose model has other parameters
    refused(save(good, packed, "other_cfg.pt"), capsys, "does not fit retinaface with config 'resnet50'")


@pytest.mark.parametrize("value, word", [(float("nan"), "1 NaN"), (float("-inf"), "1 inf")])
def test_refuses_non_finite_weights(value, word, good, packed, capsys):
    key = list(good["state_dict"])[3]
    good["state_dict"][key].view(-1)[-1] = value
    refused(save(good, packed, f"{word[2:]}.pt"), capsys, f"parameter {key!r} holds {word}")


def test_refuses_a_file_over_50_mb(good, packed, capsys):
    good["state_dict"]["padding"] = torch.zeros(MAX_BYTES // 4 + 1000)
    line = refused(save(good, packed, "large.pt"), capsys, "too large: 51.", "over the 50 MB limit")
    assert "padding" not in line                # refused by its size, before it is loaded


def test_the_command_line(packed):
    """``python -m utils.challenge check``: a refusal is one line on stderr and exit code 2."""
    missing = packed / "missing.pt"
    done = subprocess.run([sys.executable, "-m", "utils.challenge", "check", str(missing)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: {missing}: no such file (--debug shows the traceback)"]
