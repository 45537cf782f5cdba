"""utils.training (the loop and its parts): exact resume after kill -9, torchrun 1 vs 2 processes,
NaN stop, atomic checkpoints, schedules, clipping, AMP, channels_last, the CSV log, loaders and the
CLI."""
from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from detector.weights import read_state_dict
from utils.training.batches import ShardedBatchSampler, build_epoch_loader
from utils.training.checkpoint import (CheckpointStore, atomic_save, load_model_weights,
                                       load_training_checkpoint)
from utils.training.config import TrainConfig, add_train_args, config_from_args
from utils.training.log import CsvTrainLog
from utils.training.optim import cosine_factor, step_factor
from utils.training.rng_state import capture_rng_state, restore_rng_state
from utils.training.train import NonFiniteLossError, fit


def _load_tiny_job():
    spec = importlib.util.spec_from_file_location("tiny_job", Path(__file__).with_name("tiny_job.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_job"] = module  # DataLoader workers look classes up by module name
    spec.loader.exec_module(module)
    return module


tiny = _load_tiny_job()
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PUBLIC_CHECKPOINT = SHARED_DATA / "checkpoints" / "retinaface_mobilenet0.25.pth"
SUBPROCESS_TIMEOUT_S = 180
ITERATIONS_PER_EPOCH = 8  # 32 samples / global batch 4
WEIGHT_TOL = {"rtol": 1e-4, "atol": 1e-6}  # other thread counts / reduction orders than in-process


# ---- helpers ----------------------------------------------------------------------------------
def job_args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--epochs", "3", "--log-every", "0", *extra]


def run_job(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    """tests/tiny_job.py in a fresh interpreter (under torchrun when nproc > 1)."""
    cmd = [sys.executable, str(REPO_ROOT / "tests" / "tiny_job.py"), *args]
    if nproc > 1:
        cmd[1:1] = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                    "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / tiny.FINAL_WEIGHTS, weights_only=True)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_log(out: Path) -> list[dict[str, str]]:
    return read_rows(out / "train_log.csv")


def loss_columns(rows: list[dict[str, str]]) -> torch.Tensor:
    return torch.tensor([[float(r[k]) for k in ("loss", "box", "face")] for r in rows])


def tiny_fit(out: Path, criterion=None, model=None, dataset_size: int = 32, **config):
    config = TrainConfig(**{"epochs": 3, "batch_size": 4, "lr": 0.05, "out_dir": str(out),
                            "log_every": 0, **config})
    torch.manual_seed(config.seed)
    model = model if model is not None else tiny.TinyNet()
    result = fit(model, criterion or tiny.tiny_criterion, tiny.TinyFaces(dataset_size, config.seed),
                 config, collate_fn=tiny.tiny_collate)
    return result, model


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """One uninterrupted single-process run (global batch 4, no dropout), in this process."""
    out = tmp_path_factory.mktemp("reference")
    tiny.main(job_args(out, "--batch-size", "4"))
    return out


# ---- kill -9, resume, torchrun ----------------------------------------------------------------
def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    # Dropout on: the resumed run also needs the torch RNG state, not just the data order.
    flags = ["--batch-size", "4", "--ckpt-every", "5", "--dropout", "0.3"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "tiny_job.py"),
                             *job_args(killed, *flags, "--hang-at-iteration", "13")],
                            cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
        while not (killed / tiny.HANG_MARKER).exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the job never reached iteration 13"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    store = CheckpointStore(killed / "checkpoints", keep_last=3)
    latest = load_training_checkpoint(store.latest())
    assert latest["progress"]["iteration"] == 10 and latest["progress"]["batch_in_epoch"] == 2
    assert len(read_log(killed)) == 12  # iterations 11 and 12 were done and will be redone
    (store.folder / ".ckpt_00000015.pt.1234.dead.tmp").write_bytes(b"torn")  # a killed writer's

    tiny.main(job_args(killed, *flags, "--resume"))  # a fresh process is not needed to resume
    reference = tmp_path / "uninterrupted"
    tiny.main(job_args(reference, *flags))

    torch.testing.assert_close(final_weights(killed), final_weights(reference), **WEIGHT_TOL)
    resumed_rows, reference_rows = read_log(killed), read_log(reference)
    assert [int(r["iteration"]) for r in resumed_rows] == list(range(1, 25))
    torch.testing.assert_close(loss_columns(resumed_rows), loss_columns(reference_rows), **WEIGHT_TOL)
    assert temporaries(store.folder) == []


def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(tmp_path, reference_run):
    out = tmp_path / "ddp"
    run_job(job_args(out, "--batch-size", "2", "--ckpt-every", "5"), nproc=2)
    torch.testing.assert_close(final_weights(out), final_weights(reference_run), **WEIGHT_TOL)
    rows = read_log(out)  # rank 0 alone writes; the logged loss is the mean over processes
    assert [int(r["iteration"]) for r in rows] == list(range(1, 25))
    torch.testing.assert_close(loss_columns(rows), loss_columns(read_log(reference_run)), **WEIGHT_TOL)
    ckpt = load_training_checkpoint(CheckpointStore(out / "checkpoints", 3).latest())
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])


def test_torchrun_resumes_a_mid_epoch_checkpoint_on_every_rank(tmp_path, reference_run):
    out = tmp_path / "resumed"
    # The step schedule does not depend on the run length, so 10 iterations = the reference's first 10.
    tiny.main(job_args(out, "--batch-size", "4", "--iterations", "10", "--ckpt-every", "5"))
    assert load_training_checkpoint(CheckpointStore(out / "checkpoints", 3).latest())[
        "progress"]["batch_in_epoch"] == 2
    run_job(job_args(out, "--batch-size", "2", "--resume", "auto"), nproc=2)
    torch.testing.assert_close(final_weights(out), final_weights(reference_run), **WEIGHT_TOL)
    assert [int(r["iteration"]) for r in read_log(out)] == list(range(1, 25))


# ---- NaN, checkpoints -------------------------------------------------------------------------
def test_nan_loss_stops_with_iteration_and_part_and_the_last_checkpoint_stays_good(tmp_path):
    criterion = tiny.FaultyCriterion(str(tmp_path), nan_at=7, nan_part="box")
    with pytest.raises(NonFiniteLossError, match=r"iteration 7: loss part 'box' = nan") as err:
        tiny_fit(tmp_path, criterion=criterion, ckpt_every=3)
    folder = tmp_path / "checkpoints"
    assert err.value.last_checkpoint == folder / "ckpt_00000006.pt"
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt_00000003.pt", "ckpt_00000006.pt"]
    ckpt = load_training_checkpoint(err.value.last_checkpoint)
    assert ckpt["progress"]["iteration"] == 6
    assert len(read_log(tmp_path)) == 6
    model = tiny.TinyNet()
    load_model_weights(model, err.value.last_checkpoint)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_nan_loss_leaves_the_trained_model_at_the_last_good_step(tmp_path):
    torch.manual_seed(0)
    model = tiny.TinyNet()
    config = TrainConfig(epochs=1, batch_size=4, lr=0.05, out_dir=str(tmp_path), ckpt_every=2,
                         log_every=0)
    with pytest.raises(NonFiniteLossError, match="iteration 5: loss part 'face'"):
        fit(model, tiny.FaultyCriterion(str(tmp_path), nan_at=5), tiny.TinyFaces(), config,
            collate_fn=tiny.tiny_collate)
    saved = load_training_checkpoint(tmp_path / "checkpoints" / "ckpt_00000004.pt")["model"]
    torch.testing.assert_close(model.state_dict(), saved, rtol=0, atol=0)


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"w": torch.ones(3)}, path)

    def write_half_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    torch.testing.assert_close(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_keep_last_k_and_best_from_evaluate_fn(tmp_path):
    scores = iter([0.5, 0.9, 0.1])  # epoch 2 is the best
    config = TrainConfig(epochs=3, batch_size=4, lr=0.05, out_dir=str(tmp_path), ckpt_every=3,
                         keep_last=2, log_every=0)
    torch.manual_seed(0)
    result = fit(tiny.TinyNet(), tiny.tiny_criterion, tiny.TinyFaces(), config,
                 collate_fn=tiny.tiny_collate, evaluate_fn=lambda model: next(scores))
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "ckpt_00000021.pt",
                                                        "ckpt_00000024.pt"]
    best = load_training_checkpoint(result.best_checkpoint)
    assert best["progress"]["iteration"] == 2 * ITERATIONS_PER_EPOCH
    assert best["progress"]["best_score"] == 0.9
    assert result.last_checkpoint == folder / "ckpt_00000024.pt"
    assert (result.iterations, result.epochs_completed) == (24, 3)


def test_best_without_evaluate_fn_is_the_lowest_mean_epoch_loss(tmp_path):
    result, _ = tiny_fit(tmp_path, epochs=4, lr=0.2)
    rows = read_log(tmp_path)
    means = [np.mean([float(r["loss"]) for r in rows if r["epoch"] == str(e)]) for e in range(1, 5)]
    best = load_training_checkpoint(result.best_checkpoint)["progress"]
    assert best["best_iteration"] == (int(np.argmin(means)) + 1) * ITERATIONS_PER_EPOCH
    assert best["best_score"] == pytest.approx(-min(means), rel=1e-6)


def test_resume_checks(tmp_path):
    tiny_fit(tmp_path, epochs=1)
    with pytest.raises(FileExistsError, match="--resume auto"):
        tiny_fit(tmp_path, epochs=1)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        tiny_fit(tmp_path, resume=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="global batch 4"):
        tiny_fit(tmp_path, batch_size=2, resume="auto")
    done, _ = tiny_fit(tmp_path, epochs=1, resume="auto")  # finished already: nothing to do
    assert done.iterations == ITERATIONS_PER_EPOCH and len(read_log(tmp_path)) == ITERATIONS_PER_EPOCH
    fresh, _ = tiny_fit(tmp_path / "new", epochs=1, resume="auto")  # nothing to resume: fresh start
    assert fresh.iterations == ITERATIONS_PER_EPOCH


def test_load_model_weights_takes_training_checkpoints_and_ddp_state_dicts(tmp_path):
    result, model = tiny_fit(tmp_path, epochs=1)
    other = tiny.TinyNet(width=8)
    load_model_weights(other, result.last_checkpoint)
    torch.testing.assert_close(other.state_dict(), model.state_dict(), rtol=0, atol=0)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pth")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "wrapped.pth")
    for name in ("ddp.pth", "wrapped.pth"):
        fresh = tiny.TinyNet()
        load_model_weights(fresh, tmp_path / name)
        torch.testing.assert_close(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    torch.save([1, 2], tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="junk.pth: expected a state_dict"):
        load_model_weights(tiny.TinyNet(), tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_training_checkpoint(tmp_path / "ddp.pth")


@pytest.mark.skipif(not PUBLIC_CHECKPOINT.is_file(), reason="../shared/data checkpoint absent")
def test_read_state_dict_of_the_public_retinaface_checkpoint(tmp_path):
    weights = read_state_dict(PUBLIC_CHECKPOINT)
    assert len(weights) == 300 and "body.stage1.0.0.weight" in weights
    torch.save({f"module.{k}": v for k, v in weights.items()}, tmp_path / "prefixed.pth")
    assert list(read_state_dict(tmp_path / "prefixed.pth")) == list(weights)


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    atomic_save({"rng": state}, tmp_path / "rng.pt")
    torch.manual_seed(123), np.random.seed(5), random.seed(7)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    torch.testing.assert_close(again[0], expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(again[1], expected[1])
    assert again[2:] == expected[2:]


# ---- schedules, clipping, precision, memory format -----------------------------------------
def test_step_schedule_known_lrs_in_the_log(tmp_path):
    tiny_fit(tmp_path, lr=0.1, milestones=(1, 2), gamma=0.1, warmup_iterations=4, warmup_ratio=0.2)
    lrs = [float(r["lr"]) for r in read_log(tmp_path)]  # row i uses the factor of iteration i - 1
    expected = {1: 0.02, 2: 0.04, 3: 0.06, 4: 0.08, 5: 0.1, 8: 0.1, 9: 0.01, 16: 0.01, 17: 0.001,
                24: 0.001}
    for row, lr in expected.items():
        assert lrs[row - 1] == pytest.approx(lr, rel=1e-9), row
    assert step_factor(0, [], 0.1) == 1.0 and step_factor(100, [10, 20], 0.5) == 0.25


def test_cosine_schedule_known_lrs(tmp_path):
    assert cosine_factor(0, 24, 4, 0.1, 0.01) == pytest.approx(0.1)
    assert cosine_factor(2, 24, 4, 0.1, 0.01) == pytest.approx(0.55)
    assert cosine_factor(4, 24, 4, 0.1, 0.01) == pytest.approx(1.0)
    assert cosine_factor(14, 24, 4, 0.1, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine_factor(9, 24, 4, 0.1, 0.01) == pytest.approx(0.01 + 0.99 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_factor(24, 24, 4, 0.1, 0.01) == pytest.approx(0.01)
    tiny_fit(tmp_path, lr=0.1, optimizer="adamw", schedule="cosine", warmup_iterations=4,
             warmup_ratio=0.1, min_lr_ratio=0.01)
    lrs = [float(r["lr"]) for r in read_log(tmp_path)]
    assert lrs[0] == pytest.approx(0.01) and lrs[14] == pytest.approx(0.1 * (0.01 + 0.99 * 0.5))
    assert lrs == sorted(lrs[:5]) + sorted(lrs[5:], reverse=True)


def test_a_callers_lr_schedule_replaces_the_configs(tmp_path):
    """fit(..., lr_schedule=f): step k runs at lr x f(k, iterations_per_epoch, 1.0) (how the TinaFace
    notebook's warmup_cosine_lr drives the engine, which holds no copy of it)."""
    calls = set()

    def saw_tooth(iteration, iterations_per_epoch, base_lr):
        calls.add((iterations_per_epoch, base_lr))
        return base_lr * (iteration % iterations_per_epoch + 1) / iterations_per_epoch

    config = TrainConfig(epochs=3, batch_size=4, lr=0.05, out_dir=str(tmp_path), log_every=0, schedule="step",
                         milestones=(1,), gamma=0.1)
    torch.manual_seed(0)
    fit(tiny.TinyNet(), tiny.tiny_criterion, tiny.TinyFaces(32, 0), config, collate_fn=tiny.tiny_collate,
        lr_schedule=saw_tooth)
    lrs = [float(r["lr"]) for r in read_log(tmp_path)]
    assert calls == {(8, 1.0)} and len(lrs) == 24
    assert lrs == pytest.approx([0.05 * (k % 8 + 1) / 8 for k in range(24)], rel=1e-12)


@pytest.mark.parametrize("clip", [1e-3, None])
def test_gradient_clipping_bounds_the_step(tmp_path, clip):
    # Plain SGD with lr 1: the step is minus the (clipped) gradient, so its norm is the clip value.
    torch.manual_seed(0)
    model = tiny.TinyNet()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    tiny_fit(tmp_path, model=model, max_iterations=1, lr=1.0, momentum=0.0, weight_decay=0.0,
             clip_grad_norm=clip)
    step = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    if clip is None:
        assert step.norm() > 100 * 1e-3
    else:
        assert step.norm().item() == pytest.approx(clip, rel=1e-4)


def test_bf16_autocast_on_cpu(tmp_path):
    seen = []

    def criterion(outputs, targets):
        seen.append(outputs.dtype)
        return tiny.tiny_criterion(outputs, targets)

    result, _ = tiny_fit(tmp_path, criterion=criterion, amp="bf16", max_iterations=4, device="cpu")
    assert seen == [torch.bfloat16] * 4
    assert all(math.isfinite(float(r["loss"])) for r in read_log(tmp_path))
    assert all(v.dtype == torch.float32 for v in result.model.state_dict().values())
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        tiny_fit(tmp_path / "fp16", amp="fp16", device="cpu")


def test_channels_last_matches_the_default_layout(tmp_path):
    seen = []

    class Spy(tiny.TinyNet):
        def forward(self, images):
            seen.append(images.is_contiguous(memory_format=torch.channels_last))
            return super().forward(images)

    torch.manual_seed(0)
    _, model = tiny_fit(tmp_path / "nhwc", model=Spy(), channels_last=True, max_iterations=4)
    assert seen == [True] * 4
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    _, plain = tiny_fit(tmp_path / "nchw", max_iterations=4)
    torch.testing.assert_close(model.state_dict(), plain.state_dict(), rtol=1e-4, atol=1e-6)


def test_a_view_that_breaks_under_channels_last_is_named(tmp_path):
    class Viewing(tiny.TinyNet):     # flattens channels with pixels by .view, as NCHW code often does
        def forward(self, images):
            x = self.conv(images)
            return self.head(x.view(x.shape[0], -1)[:, :self.head.in_features])

    torch.manual_seed(0)
    tiny_fit(tmp_path / "nchw", model=Viewing(), max_iterations=2)      # fine in the default layout
    with pytest.raises(RuntimeError, match=r"channels-last.*\.reshape.*channels_last=False") as raised:
        tiny_fit(tmp_path / "nhwc", model=Viewing(), channels_last=True, max_iterations=2)
    assert "view size is not compatible" in str(raised.value)            # torch's own words kept


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_mixed_precision_channels_last(tmp_path, amp):
    result, _ = tiny_fit(tmp_path, amp=amp, channels_last=True, device="cuda", max_iterations=6,
                         clip_grad_norm=1.0)
    assert all(math.isfinite(float(r["loss"])) for r in read_log(tmp_path))
    assert next(result.model.parameters()).is_cuda


# ---- log, priors, loaders, CLI ----------------------------------------------------------------
def test_csv_has_one_row_per_iteration_with_the_loss_parts(tmp_path):
    result, _ = tiny_fit(tmp_path, epochs=2)
    with open(result.history_path, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["iteration", "epoch", "lr", "images_per_s", "loss", "box", "face"]
    rows = read_log(tmp_path)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 17))
    assert [int(r["epoch"]) for r in rows] == [1] * 8 + [2] * 8
    for r in rows:
        assert float(r["loss"]) == pytest.approx(float(r["box"]) + float(r["face"]), rel=1e-6)
        assert float(r["images_per_s"]) > 0


def test_resumed_log_cuts_rows_past_the_checkpoint_and_torn_rows(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("iteration,epoch,lr,images_per_s,loss,a\n1,1,0.1,5.0,2.0,2.0\n"
                    "2,1,0.1,5.0,1.5,1.5\n3,1,0.1,5.0,1.0,1.0\n4,1,0.1")  # killed mid-row
    log = CsvTrainLog(path, resume_iteration=2)
    log.write({"iteration": 3, "epoch": 1, "lr": 0.1, "images_per_s": 6.0, "loss": 0.5, "a": 0.5})
    log.close()
    assert log.dropped_rows == 2
    assert [r["iteration"] for r in read_rows(path)] == ["1", "2", "3"]
    assert read_rows(path)[-1]["loss"] == "0.5"
    log = CsvTrainLog(path, resume_iteration=3)
    with pytest.raises(ValueError, match="same loss parts"):
        log.write({"iteration": 4, "epoch": 1, "lr": 0.1, "images_per_s": 6.0, "loss": 0.5, "b": 0.5})
    log.close()


def test_prior_fn_is_called_once_per_input_size_and_passed_to_the_criterion(tmp_path):
    sizes = []

    def prior_fn(size):
        sizes.append(size)
        return torch.full((7, 4), 0.5)

    def criterion(outputs, targets, priors):
        assert priors.shape == (7, 4) and priors.device == outputs.device
        return tiny.tiny_criterion(outputs, targets)

    config = TrainConfig(max_iterations=5, batch_size=4, out_dir=str(tmp_path), log_every=0)
    fit(tiny.TinyNet(), criterion, tiny.TinyFaces(), config, collate_fn=tiny.tiny_collate,
        prior_fn=prior_fn)
    assert sizes == [(tiny.IMAGE_SIZE, tiny.IMAGE_SIZE)]


def test_criterion_must_return_named_scalar_parts(tmp_path):
    with pytest.raises(TypeError, match="non-empty dict"):
        tiny_fit(tmp_path / "a", criterion=lambda o, t: o.sum(), max_iterations=1)
    with pytest.raises(ValueError, match="reserved log column"):
        tiny_fit(tmp_path / "b", criterion=lambda o, t: {"loss": o.sum()}, max_iterations=1)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        tiny_fit(tmp_path / "c", dataset_size=3)


def _epoch_batches(num_workers: int, **kwargs):
    dataset = tiny.TinyFaces(32, seed=3)
    dataset.set_epoch(1)
    loader = build_epoch_loader(dataset, 4, seed=3, epoch=1, num_workers=num_workers,
                                collate_fn=tiny.tiny_collate, **kwargs)
    return list(loader)


def test_zero_and_two_workers_give_identical_batches():
    for (img0, tgt0), (img2, tgt2) in zip(_epoch_batches(0), _epoch_batches(2), strict=True):
        torch.testing.assert_close(img0, img2, rtol=0, atol=0)
        for a, b in zip(tgt0, tgt2, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    tail = _epoch_batches(0, start_batch=5)  # a mid-epoch resume continues the same order
    torch.testing.assert_close(torch.cat([b[0] for b in tail]),
                               torch.cat([b[0] for b in _epoch_batches(0)[5:]]), rtol=0, atol=0)


def test_sharded_batches_union_to_the_single_process_batch():
    single = list(ShardedBatchSampler(30, 6, seed=1, epoch=2))
    shards = [list(ShardedBatchSampler(30, 2, seed=1, epoch=2, rank=r, world_size=3)) for r in range(3)]
    assert len(single) == 5 and all(len(s) == 5 for s in shards)
    for step, batch in enumerate(single):
        assert sorted(batch) == sorted(i for shard in shards for i in shard[step])
    epochs = [sorted(i for b in ShardedBatchSampler(32, 4, 1, e) for i in b) for e in range(2)]
    assert epochs[0] == list(range(32)) and list(ShardedBatchSampler(32, 4, 1, 0)) != \
        list(ShardedBatchSampler(32, 4, 1, 1))


def test_cli_flags_round_trip_to_the_config():
    parser = add_train_args(argparse.ArgumentParser(), TrainConfig(lr=0.01, milestones=(190, 220)))
    config = config_from_args(parser.parse_args(
        ["--iterations", "100", "--batch-size", "16", "--optimizer", "adamw", "--schedule",
         "cosine", "--warmup", "500", "--clip", "2.5", "--amp", "bf16", "--channels-last",
         "--workers", "2", "--seed", "9", "--device", "cpu", "--out", "o", "--ckpt-every", "50",
         "--keep-last", "2", "--resume"]))
    assert (config.max_iterations, config.batch_size, config.optimizer, config.schedule) == \
        (100, 16, "adamw", "cosine")
    assert (config.warmup_iterations, config.clip_grad_norm, config.amp, config.channels_last) == \
        (500, 2.5, "bf16", True)
    assert (config.num_workers, config.seed, config.device, config.out_dir) == (2, 9, "cpu", "o")
    assert (config.ckpt_every, config.keep_last, config.resume) == (50, 2, "auto")
    assert (config.lr, config.milestones) == (0.01, (190, 220))
    assert config_from_args(parser.parse_args(["--resume", "x.pt"])).resume == "x.pt"
    for bad in ({"optimizer": "adam"}, {"amp": "fp8"}, {"batch_size": 0}, {"milestones": (5, 2)},
                {"clip_grad_norm": 0.0}, {"gamma": 2.0}):
        with pytest.raises(ValueError, match="TrainConfig"):
            TrainConfig(**bad)
