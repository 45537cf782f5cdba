"""The scoring side of the sandbox: starts the worker once per submission and asks it for units.

The process that compares outputs and scores never imports student code. It starts
``autograder.sandbox.worker`` (one start-up per submission), reads its JSON-line messages with deadlines,
and reads each unit's outputs with ``torch.load(weights_only=True)``. If a cell kills or hangs the
worker while the notebooks load, that cell is skipped and the worker restarted; if a unit kills
the worker itself, the unit is charged and the next unit gets a fresh worker.

The worker confines itself (``autograder.sandbox.isolation``); this side gives it a scratch folder and a
results folder of its own (inside a private folder the scoring side owns), tells it what to hide
(the reference tensors, the solutions, the git object store), reads each unit's result file
without following links, and keeps only the tail of the worker's own output.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autograder.sandbox.transfer import unwrap

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_UNIT_TIMEOUT = 60.0     # seconds one graded unit may run: every grading view's default
DEFAULT_MEMORY_GB = 4.0         # memory one graded unit may allocate on CPU: every view's default
START_TIMEOUT = 120.0        # importing torch and loading the notebooks' given cells
WORKER_MARGIN = 30.0         # extra wait beyond a unit's own limit before the worker is presumed lost
LOG_TAIL_BYTES = 1 << 16     # of the worker's own output, only this much is kept
MAX_RESULT_BYTES = 256 * 2**20
CASE_SEED = 0                # the global generators' seed while a case's inputs are built
# What the worker's environment keeps of the grader's (worker_environment).
WORKER_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "OMP_NUM_THREADS",
              "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
              "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES")


@dataclass
class CaseResult:
    ok: bool
    value: Any = None
    kind: str = ""            # not_implemented | error | tampered (when not ok)
    message: str = ""
    devices: tuple[str, ...] = ()


@dataclass
class UnitRun:
    """Everything the worker said about one unit."""

    grade_id: str
    load: dict
    status: str               # ok | load_failed | timeout | crashed
    detail: str = ""
    cases: dict[str, CaseResult] = field(default_factory=dict)
    output: str = ""
    seconds: float = 0.0


class _LineReader:
    """Protocol lines from the worker's stdout; meanwhile its log pipe is drained into a tail."""

    def __init__(self, stream, log) -> None:
        self.fd, self.log_fd = stream.fileno(), log.fileno()
        self.buffer, self.log = b"", b""

    def readline(self, timeout: float) -> str | None:
        """One line, or None at end of stream; raises TimeoutError past ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            watched = [self.fd] + ([self.log_fd] if self.log_fd is not None else [])
            ready, _, _ = select.select(watched, [], [], left)
            if self.log_fd in ready:
                chunk = os.read(self.log_fd, 65536)
                if chunk:
                    self.log = (self.log + chunk)[-LOG_TAIL_BYTES:]
                else:
                    self.log_fd = None
            if self.fd not in ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def hidden_paths(submission: Path, release: Path) -> list[Path]:
    """What student code may not read: the reference tensors, the solutions (unless they are what
    is being graded) and the git object store (which holds both)."""
    hidden = [REPO_ROOT / "autograder" / "references"]
    solutions = (REPO_ROOT / "solutions").resolve()
    if not any(p.resolve() == solutions or solutions in p.resolve().parents for p in (submission, release)):
        hidden.append(solutions)
    git = REPO_ROOT / ".git"
    if git.is_file() and git.read_text().startswith("gitdir:"):  # a worktree: objects are elsewhere
        gitdir = Path(git.read_text().split(":", 1)[1].strip())
        common = gitdir / (gitdir / "commondir").read_text().strip() if (gitdir / "commondir").is_file() else gitdir
        hidden.append(common.resolve() / "objects")
    elif git.is_dir():
        hidden.append(git)
    return [p for p in hidden if p.is_dir()]


@contextlib.contextmanager
def seeded(seed: int):
    """Python's, numpy's and torch's global generators seeded for a block, then as they were."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def worker_environment() -> dict[str, str]:
    """The environment the worker is given (not inherited): where programs and libraries are, the
    locale, the thread and GPU settings that change results or speed; no secrets of the grader's
    (tokens, paths of other submissions, credentials)."""
    env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1")
    return env


def read_result(path: Path) -> dict | None:
    """A unit's result file as the worker wrote it, or None (missing, a link, not a file, too big)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RESULT_BYTES:
            return None
        data = f.read()
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - whatever a forged file holds, it is no result
        return None


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


class Sandbox:
    """Runs one submission's units in a worker process; results are cached per unit."""

    def __init__(self, hw: str, submission: Path, release: Path, device: str = "cpu",
                 unit_timeout: float = DEFAULT_UNIT_TIMEOUT, memory_gb: float = DEFAULT_MEMORY_GB) -> None:
        self.hw, self.submission, self.release = hw, Path(submission), Path(release)
        self.device, self.unit_timeout, self.memory_gb = device, unit_timeout, memory_gb
        self._tmp = tempfile.TemporaryDirectory(prefix="grading-")
        self.workdir = Path(self._tmp.name)
        self.workdir.chmod(0o711)  # the worker's uid may enter, not list
        self.scratch, self.results = self.workdir / "scratch", self.workdir / "results"
        self.inputs = self.workdir / "inputs"  # built here, read by the worker (never written by it)
        self.inputs.mkdir(mode=0o755)
        self.isolation: dict = {}
        self.skip: set[str] = set()
        self.loads: dict[str, dict] = {}
        self.problems: list[str] = []
        self.runs: dict[str, UnitRun] = {}
        self.worker_starts = 0
        self.start_error: str | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: _LineReader | None = None
        self._ready = False

    # -- worker life cycle -------------------------------------------------------------------
    def _spawn(self) -> None:
        self.worker_starts += 1
        for folder in (self.scratch, self.results):  # fresh for every worker: nothing left over
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
        cmd = [sys.executable, "-m", "autograder.sandbox.worker", "--hw", self.hw,
               "--submission", str(self.submission), "--release", str(self.release),
               "--device", self.device, "--skip", ",".join(sorted(self.skip)),
               "--memory-gb", str(self.memory_gb), "--scratch", str(self.scratch), "--inputs", str(self.inputs),
               "--results", str(self.results)]
        for path in hidden_paths(self.submission, self.release):
            cmd += ["--hide", str(path)]
        env = worker_environment()
        self._proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env, start_new_session=True)
        self._reader = _LineReader(self._proc.stdout, self._proc.stderr)
        self._ready = False

    def _kill(self) -> None:
        if self._proc is not None:
            for pid in _children(self._proc.pid):  # the worker proper, process 1 of its namespace
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                stream.close()
            self._proc = None
            self._ready = False

    def _worker_log_tail(self) -> str:
        return self._reader.log.decode(errors="replace")[-1500:] if self._reader else ""

    @property
    def isolation_note(self) -> str:
        """One line when student code ran without file isolation ('' when it had it)."""
        return self.isolation.get("note", "")

    def spawn(self) -> None:
        """Launch the worker without waiting for it, so its start-up overlaps the caller's work;
        ``start`` (or the first ``run``) waits until it is ready."""
        if self._proc is None:
            self._spawn()

    def start(self) -> None:
        """Wait until the worker has loaded every notebook (starting it if needed, and restarting
        it without any answer cell that kills or hangs it while loading)."""
        while not self._ready:
            if self._proc is None:
                self._spawn()
            loading, refused, started = None, None, time.monotonic()
            while True:
                try:
                    line = self._reader.readline(self.unit_timeout if loading else START_TIMEOUT)
                except TimeoutError:
                    line, why = None, "did not finish loading"
                else:
                    why = "ended the grading worker while loading"
                if line is None:
                    self._kill()
                    why = refused or why
                    if loading is None or loading in self.skip:
                        self.start_error = f"the grading worker failed to start:\n{self._worker_log_tail()}"
                        raise RuntimeError(self.start_error)
                    self.skip.add(loading)
                    self.problems.append(f"answer cell {loading!r} {why} (after "
                                         f"{time.monotonic() - started:.0f} s); it was skipped")
                    break
                msg = json.loads(line)
                if msg["event"] == "loading":
                    loading = msg["unit"]
                elif msg["event"] == "refused":  # the worker ends next, naming why
                    loading, refused = msg["unit"], msg["why"]
                elif msg["event"] == "ready":
                    self.loads = msg["loads"]
                    self.isolation = msg["isolation"]
                    self.problems += msg["problems"]
                    self._ready = True
                    return

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.stdin.write(b'{"cmd": "quit"}\n')
                self._proc.stdin.flush()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        self._tmp.cleanup()

    # -- units -----------------------------------------------------------------------------
    def _write_inputs(self, grade_id: str) -> None:
        """Build the unit's case inputs here and leave them, read-only, where the worker reads them
        (``inputs/<unit>/case<k>.pt``; files a case writes go next to it): the worker never runs a
        case builder, so it never imports an oracle. Built once per submission."""
        folder = self.inputs / grade_id
        if folder.is_dir():
            return
        from autograder.units import homework_units

        folder.mkdir(mode=0o755)
        for k, case in enumerate(homework_units(self.hw)[grade_id].cases):
            case_dir = folder / f"case{k}"
            case_dir.mkdir(mode=0o755)
            with seeded(CASE_SEED):
                try:
                    payload = {"inputs": case.make_inputs(case_dir)}
                except Exception as err:  # the kit's own case builder: never blame the student
                    payload = {"error": f"the grader could not build this case (a kit bug, not your code): "
                                        f"{type(err).__name__}: {err}"}
            torch.save(payload, folder / f"case{k}.pt")
        for path in folder.rglob("*"):  # readable by the worker's own uid
            path.chmod(0o755 if path.is_dir() else 0o644)

    def _own_timeout(self, grade_id: str) -> float:
        """The unit's own time limit (``Unit.timeout``; 0 when it has none)."""
        from autograder.units import homework_units

        try:
            return float(homework_units(self.hw)[grade_id].timeout)
        except (ValueError, KeyError, ImportError):
            return 0.0

    def run(self, grade_id: str) -> UnitRun:
        """The unit's outputs on all its cases (run once, then cached)."""
        if grade_id not in self.runs:
            self.runs[grade_id] = self._run(grade_id)
        return self.runs[grade_id]

    def _run(self, grade_id: str) -> UnitRun:
        if self.start_error is not None:
            return UnitRun(grade_id, {"status": "error"}, "crashed", self.start_error)
        if not self._ready:
            try:
                self.start()
            except RuntimeError:
                return UnitRun(grade_id, {"status": "error"}, "crashed", self.start_error)
        load = self.loads.get(grade_id, {"status": "missing", "detail": f"unknown unit {grade_id!r}"})
        if load["status"] != "ok":
            return UnitRun(grade_id, load, "load_failed", load.get("detail", ""))
        result_path = self.results / f"{grade_id}.pt"
        self._write_inputs(grade_id)
        timeout = max(self.unit_timeout, self._own_timeout(grade_id))
        started = time.monotonic()
        command = {"cmd": "run", "unit": grade_id, "timeout": timeout}
        try:
            self._proc.stdin.write((json.dumps(command) + "\n").encode())
            self._proc.stdin.flush()
            while True:
                line = self._reader.readline(timeout + WORKER_MARGIN)
                if line is None:
                    raise EOFError
                msg = json.loads(line)
                if msg["event"] == "done":
                    break
        except (TimeoutError, EOFError, OSError):
            self._kill()  # the next unit gets a fresh worker
            return UnitRun(grade_id, load, "crashed", "the grading worker stopped answering while "
                           "running this unit", seconds=time.monotonic() - started)
        run = UnitRun(grade_id, load, msg["status"], msg["detail"], output=msg.get("output", ""),
                      seconds=time.monotonic() - started)
        data = read_result(result_path) if run.status == "ok" else None
        result_path.unlink(missing_ok=True)
        if run.status == "ok" and (not isinstance(data, dict) or not isinstance(data.get("cases"), dict)):
            run.status, run.detail = "crashed", "the unit's result file was missing or unreadable"
        if run.status == "ok":
            for name, rec in data["cases"].items():
                if rec["ok"]:
                    run.cases[name] = CaseResult(True, unwrap(rec["value"]), devices=tuple(rec["devices"]))
                else:
                    run.cases[name] = CaseResult(False, kind=rec["kind"], message=rec["message"])
        return run
