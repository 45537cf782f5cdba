"""How long grading takes: the whole autograder on the solutions, and each unit.

    python -m bench.grading [--hw retinaface] [--baseline/--no-baseline]

Prints (1) the wall time of ``pytest autograder/ --submission solutions`` as a TA runs it,
(2) the kit's sandbox: one worker start-up per submission, then one fork per unit, with the time of
each unit, and (3) the same units with a fresh worker per unit — the naive isolation that pays
start-up (importing torch, loading the notebooks) for every unit — and the ratio of the two.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from autograder.sandbox import REPO_ROOT, Sandbox
from autograder.units import homework_units


def pytest_wall_time(hw_dir: Path) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "autograder/", "--submission", str(hw_dir.parent),
                           "-q", "-p", "no:cacheprovider"], cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"grading the solutions failed:\n{proc.stdout[-3000:]}")
    return time.monotonic() - started


def one_worker(hw: str, folder: Path) -> tuple[float, float, dict[str, float]]:
    """(start-up seconds, total seconds, {unit: seconds}) with one worker for all units."""
    started = time.monotonic()
    sandbox = Sandbox(hw, folder, folder)
    try:
        sandbox.start()
        startup = time.monotonic() - started
        per_unit = {}
        for gid in homework_units(hw):
            run = sandbox.run(gid)
            if run.status != "ok":
                raise SystemExit(f"{gid}: {run.status}: {run.detail}")
            per_unit[gid] = run.seconds
    finally:
        sandbox.close()
    return startup, time.monotonic() - started, per_unit


def worker_per_unit(hw: str, folder: Path) -> float:
    """Total seconds with a fresh worker (start-up included) for every unit."""
    started = time.monotonic()
    for gid in homework_units(hw):
        sandbox = Sandbox(hw, folder, folder)
        try:
            sandbox.run(gid)
        finally:
            sandbox.close()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", default="retinaface")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a fresh worker per unit (slow)")
    args = parser.parse_args(argv)
    folder = REPO_ROOT / "solutions" / args.hw
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    wall = pytest_wall_time(folder)
    print(f"pytest autograder/ --submission solutions: {wall:.1f} s wall")
    startup, total, per_unit = one_worker(args.hw, folder)
    print(f"sandbox, one worker per submission: {total:.1f} s ({startup:.1f} s start-up, "
          f"{len(per_unit)} units)")
    for gid, seconds in sorted(per_unit.items(), key=lambda kv: -kv[1]):
        print(f"  {gid:<18} {seconds:6.2f} s")
    if args.baseline:
        naive = worker_per_unit(args.hw, folder)
        print(f"baseline, a fresh worker per unit: {naive:.1f} s -> the kit's sandbox is "
              f"{naive / total:.1f}x faster")


if __name__ == "__main__":
    main()
