"""The GPU path, checked on a machine with CUDA: grading on the GPU, mixed-precision training of every
homework's full config, and SyncBatchNorm data-parallel training against one process.

    python -m bench.gpu_check [--data outputs/data] [--iterations 50] [--batch-size 8] [--skip-grading]

1. ``pytest autograder/ --submission solutions --device cuda`` for every homework: the score must equal
   the CPU score (the same references, compared with tolerances);
2. each homework's FULL config trains ``--iterations`` steps on the embedded data with fp16 + grad
   scaler, bf16, and bf16 + channels_last; images/s printed beside the CPU lite config's images/s;
3. with two or more GPUs: RetinaFace MobileNet-0.25, 2 processes x batch 2 with ``--sync-bn`` against
   1 process x batch 4 for 8 iterations; prints the largest parameter difference (and without
   ``--sync-bn`` for contrast: per-process BatchNorm statistics).
Prints a report; exits 1 if a check fails. Without CUDA it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from autograder.units import HOMEWORKS
from detector.weights import read_state_dict
from utils.detectors import ADAPTERS, adapter, config
from utils.experiment import train_detector
from utils.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
AMP_RUNS = (("fp16", False), ("bf16", False), ("bf16", True))   # (amp, channels_last)
CPU_ITERATIONS = 5
SYNC_BN_ITERATIONS = 8


def grade(device: str, hw: str, results: Path) -> tuple[float, float]:
    subprocess.run([sys.executable, "-m", "pytest", "autograder/", "--submission", "solutions", "--hw", hw,
                    "--device", device, "--results", str(results), "-q"], cwd=REPO_ROOT,
                   capture_output=True, text=True, timeout=1800)
    data = json.loads(results.read_text())
    return data["score"], data["max_score"]


def images_per_s(model: str, cfg_name: str, data: Path, out: Path, iterations: int, batch_size: int,
                 device: str, amp: str | None = None, channels_last: bool = False) -> float:
    cfg = config(model, cfg_name, image_size=adapter(model).DEMO["image_size"])
    settings = TrainConfig(max_iterations=iterations, batch_size=batch_size, lr=1e-3, device=device, amp=amp,
                           channels_last=channels_last, out_dir=str(out), num_workers=2, log_every=10**6)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.monotonic()
    train_detector(model, cfg, data, settings)
    if device == "cuda":
        torch.cuda.synchronize()
    return iterations * batch_size / (time.monotonic() - started)


def sync_bn_check(data: Path, tmp: Path) -> list[str]:
    """Final weights of 2 x 2 (with and without --sync-bn) against 1 x 4, largest difference."""
    def train(out: Path, nproc: int, batch: int, sync: bool) -> dict:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "-m",
               "utils.experiment", "train", "--data", str(data), "--out", str(out), "--iterations",
               str(SYNC_BN_ITERATIONS), "--batch-size", str(batch), "--device", "cuda", "--workers", "0",
               "--image-size", "320", "--lr", "0.01", "--ckpt-every", str(SYNC_BN_ITERATIONS)]
        subprocess.run(cmd + (["--sync-bn"] if sync else []), cwd=REPO_ROOT, check=True, timeout=1200)
        return read_state_dict(out / "checkpoints" / "best.pt")

    one = train(tmp / "one", 1, 4, False)
    lines = []
    for sync in (True, False):
        two = train(tmp / f"two-sync{sync}", 2, 2, sync)
        diff = max((one[k].float() - two[k].float()).abs().max().item() for k in one if one[k].is_floating_point())
        lines.append(f"2 x 2 {'with' if sync else 'without'} --sync-bn vs 1 x 4: largest parameter difference {diff:.2e}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("outputs/data"))
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-grading", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (run this on a machine with a GPU)")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}; torch {torch.__version__}")
    failures = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_grading:
            for hw in HOMEWORKS:
                cpu = grade("cpu", hw, tmp / f"{hw}-cpu.json")
                cuda = grade("cuda", hw, tmp / f"{hw}-cuda.json")
                ok = cuda == cpu and cuda[0] == cuda[1]
                failures += [] if ok else [f"grading {hw}"]
                print(f"grading {hw}: cuda {cuda[0]:g}/{cuda[1]:g}, cpu {cpu[0]:g}/{cpu[1]:g} {'ok' if ok else 'FAIL'}")
        for model in ADAPTERS:
            module = adapter(model)
            cpu = images_per_s(model, module.LITE, args.data, tmp / f"{model}-cpu", CPU_ITERATIONS, args.batch_size, "cpu")
            line = [f"{model}: cpu {module.LITE} {cpu:.1f} images/s"]
            for amp, channels_last in AMP_RUNS:
                try:
                    speed = images_per_s(model, module.FULL, args.data, tmp / f"{model}-{amp}-{channels_last}",
                                         args.iterations, args.batch_size, "cuda", amp, channels_last)
                    line.append(f"cuda {module.FULL} {amp}{' channels_last' if channels_last else ''} {speed:.1f} images/s")
                except Exception as err:  # report and go on: one failing mode must not hide the others
                    failures.append(f"{model} {amp} channels_last={channels_last}")
                    line.append(f"cuda {amp}{' channels_last' if channels_last else ''} FAILED: {type(err).__name__}: {err}")
            print("; ".join(line))
        if torch.cuda.device_count() >= 2:
            for line in sync_bn_check(args.data, tmp):
                print(line)
        else:
            print("sync-bn: needs 2 GPUs (NCCL cannot put two ranks on one device); not run")
    print("all GPU checks passed" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
