"""How long grading takes: the whole autograder on the solutions, each unit, and a whole class.

    python -m bench.grading [--hw retinaface] [--baseline/--no-baseline]
    python -m bench.grading --class 40 [--jobs 2] [--serial-sample 40]
    python -m bench.grading --gradescope [--hw retinaface ...]

Prints (1) the wall time of ``pytest autograder/ --submission solutions`` as a TA runs it,
(2) the kit's sandbox: one worker start-up per submission, then one fork per unit, with the time of
each unit, and (3) the same units with a fresh worker per unit — the naive isolation that pays
start-up (importing torch, loading the notebooks) for every unit — and the ratio of the two.

``--gradescope`` instead times one submission through Gradescope's ``run_autograder`` (``python -m
autograder.staff.gradescope``) pinned to one core, for every homework (the target is 20 s each), on
the solutions and on the solutions with one slip that charge-once re-grades (tests.test_one_grade),
beside ``make grade`` (``pytest autograder/``) on the same submission and core.

``--class N`` instead grades a generated class of N submissions (correct, stubs, classic mistakes,
hostile: ``tests.classroom``) with ``python -m autograder.staff.batch --jobs J`` and, as the baseline, the
serial loop of ``make grade`` (one ``pytest autograder/`` per submission) on ``--serial-sample`` of
them (all by default; fewer are extrapolated linearly, and the output says so).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.sandbox.supervisor import REPO_ROOT, Sandbox
from autograder.units import HOMEWORKS, homework_units


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


GRADESCOPE_TARGET_S = 20.0
CLASS_MIX = {"correct": 0.4, "stub": 0.2, "mistake": 0.25, "hostile": 0.15}
CLASS_UNIT_TIMEOUT = "5"


def class_counts(n: int) -> dict[str, int]:
    counts = {kind: int(n * share) for kind, share in CLASS_MIX.items()}
    counts["correct"] += n - sum(counts.values())
    return counts


def grade_class(hw: str, n: int, jobs: int, serial_sample: int | None) -> None:
    """Batch grading of a generated class against the serial ``make grade`` loop."""
    from tests.classroom import make_class

    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        root = Path(tmp) / "submitted"
        counts = class_counts(n)
        names = make_class(root, hw, counts)
        print(f"class of {n}: {counts}; unit time limit {CLASS_UNIT_TIMEOUT} s; load average "
              f"{os.getloadavg()[0]:.2f}")
        started, cpu0 = time.monotonic(), _children_cpu()
        proc = subprocess.run([sys.executable, "-m", "autograder.staff.batch", "--submissions", str(root),
                               "--out", str(Path(tmp) / "batch"), "--hw", hw, "--jobs", str(jobs),
                               "--unit-timeout", CLASS_UNIT_TIMEOUT], cwd=REPO_ROOT, capture_output=True,
                              text=True)
        batch, batch_cpu = time.monotonic() - started, _children_cpu() - cpu0
        if proc.returncode != 0:
            raise SystemExit(f"batch grading failed:\n{proc.stderr[-3000:]}")
        print(f"python -m autograder.staff.batch --jobs {jobs}: {batch:.1f} s wall, {batch_cpu:.1f} s CPU "
              f"({batch_cpu / n:.2f} CPU s per submission)")
        sample = names[:: max(1, n // serial_sample)][:serial_sample] if serial_sample else names
        started, cpu0 = time.monotonic(), _children_cpu()
        for name in sample:
            subprocess.run([sys.executable, "-m", "pytest", "autograder/", "--submission", str(root / name),
                            "--hw", hw, "--unit-timeout", CLASS_UNIT_TIMEOUT, "-q", "-p", "no:cacheprovider",
                            "--results", str(Path(tmp) / "serial" / name / "results.json")],
                           cwd=REPO_ROOT, capture_output=True, text=True)
        serial = (time.monotonic() - started) * n / len(sample)
        serial_cpu = (_children_cpu() - cpu0) * n / len(sample)
        how = "measured" if len(sample) == n else f"extrapolated from {len(sample)} of them"
        print(f"serial `make grade` loop: {serial:.1f} s wall, {serial_cpu:.1f} s CPU ({how}; "
              f"{serial_cpu / n:.2f} CPU s per submission)")
        print(f"-> batch grading: {serial / batch:.1f}x less wall time, {serial_cpu / batch_cpu:.1f}x less "
              f"CPU; 400 submissions: about {400 * batch / n / 60:.1f} min at this run's pace, "
              f"{400 * batch_cpu / n / 60 / jobs:.1f} min of {jobs} fully available cores")


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``cmd`` run on core 0 with one thread."""
    started, cpu0 = time.monotonic(), _children_cpu()
    proc = subprocess.run(["taskset", "-c", "0", *cmd], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.monotonic() - started, _children_cpu() - cpu0


def gradescope_times(homeworks: list[str]) -> None:
    """run_autograder on one core for each homework, beside make grade on the same submission."""
    from tests.test_one_grade import _slip

    print(f"one core (taskset -c 0), OMP_NUM_THREADS=1; load average {os.getloadavg()[0]:.2f}")
    for hw in homeworks:
        for kind in ("solutions", "one slip"):
            with tempfile.TemporaryDirectory(prefix="bench-gradescope-") as tmp:
                root = Path(tmp)
                shutil.copytree(REPO_ROOT / "solutions" / hw, root / "submission")
                if kind == "one slip":
                    _slip(root / "submission", hw)
                wall, cpu = _timed([sys.executable, "-m", "autograder.staff.gradescope", "--root", str(root),
                                    "--hw", hw])
                grade_wall, _ = _timed([sys.executable, "-m", "pytest", "autograder/", "--submission",
                                        str(root / "submission"), "--hw", hw, "-q", "-p", "no:cacheprovider"])
            verdict = "within" if wall <= GRADESCOPE_TARGET_S else "OVER"
            print(f"{hw:<11} {kind:<9} run_autograder {wall:5.1f} s wall ({cpu:5.1f} s CPU; {verdict} the "
                  f"{GRADESCOPE_TARGET_S:g} s target); make grade {grade_wall:5.1f} s "
                  f"({grade_wall / wall:.2f}x run_autograder)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", default=None, help="homework (default retinaface; --gradescope: all)")
    parser.add_argument("--gradescope", action="store_true",
                        help="time run_autograder on one core for each homework instead")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a fresh worker per unit (slow)")
    parser.add_argument("--class", dest="class_size", type=int, default=0,
                        help="grade a generated class of this many submissions instead")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--serial-sample", type=int, default=None,
                        help="time the serial baseline on this many submissions (default all)")
    args = parser.parse_args(argv)
    if args.gradescope:
        gradescope_times([args.hw] if args.hw else list(HOMEWORKS))
        return
    args.hw = args.hw or "retinaface"
    if args.class_size:
        grade_class(args.hw, args.class_size, args.jobs, args.serial_sample)
        return
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
