"""The grading worker: the only process that runs student code.

Started once per submission by ``autograder.sandbox.supervisor``. It loads every notebook of the homework
(given cells from the release, answer cells from the submission), then, for each unit it is asked
to run, forks a child from that loaded state. The child runs the unit's cases and writes the
outputs to a file; the worker kills it when it runs past the time limit. So a unit that loops
forever, exits the process, patches torch or exhausts memory loses only its own points, and every
unit starts from the same untouched state. Nothing here compares results: the scoring process
reads the outputs with ``torch.load(weights_only=True)``.

Before any student code runs the worker confines itself (``autograder.sandbox.isolation``: a view of
the machine holding only Python, the system's libraries, the kit's student-facing code, its
submission and its own folders, read-only; no network; its own PID namespace; an unprivileged uid
when started as root);
after the notebooks load and after every unit it kills every process student code left
(``autograder.sandbox.reaping``). While a unit runs, calls to the library ops its exercise asks for are
watched (``autograder.sandbox.forbidden``).

Messages to the parent are JSON lines on a private copy of the original stdout; the worker's own
stdout and stderr go to the parent's log pipe. A unit's output goes through a pipe of which the
worker keeps only the tail, so a print flood costs neither disk nor memory.
"""
from __future__ import annotations

import _thread
import argparse
import json
import os
import random
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from autograder.sandbox import isolation, reaping

CASE_SEED = 0
POLL_SECONDS = 0.005
MAX_OUTPUT_CHARS = 3000
OUTPUT_CHUNK = 1 << 16
MAX_FILE_BYTES = 256 * 2**20   # no file student code writes may grow past this (RLIMIT_FSIZE)
SCRATCH_BYTES = 2**30          # all that student code may write in its scratch folder, files together


class _Protocol:
    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)

    def send(self, **message) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()


def _redirect_output(fd: int) -> None:
    """Point file descriptors 1 and 2 (and so sys.stdout/stderr, and C-level output) at ``fd``."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


class _Tail:
    """The last ``limit`` bytes of what was read from a pipe (bounded memory, no disk)."""

    def __init__(self, fd: int, limit: int = 4 * MAX_OUTPUT_CHARS) -> None:
        self.fd, self.limit, self.data, self.total = fd, limit, b"", 0
        os.set_blocking(fd, False)

    def drain(self, timeout: float) -> None:
        """Read what is there, waiting up to ``timeout`` for it, and for no longer than
        ``timeout`` (at least one chunk) while a flood keeps coming."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        until = time.monotonic() + timeout
        while ready:
            try:
                chunk = os.read(self.fd, OUTPUT_CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                time.sleep(timeout)  # every writer is gone; nothing more will come
                return
            self.total += len(chunk)
            self.data = (self.data + chunk)[-self.limit:]
            if timeout and time.monotonic() > until:
                return

    def text(self) -> str:
        text = self.data.decode(errors="replace")[-MAX_OUTPUT_CHARS:]
        if self.total > len(self.data):
            text = f"[... {self.total - len(self.data)} earlier bytes of output dropped]\n" + text
        return text


def _short_error(err: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<")]
    where = "".join(f"\n    line {f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-3:])
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code!r}); a graded function must return, not exit" + where
    if isinstance(err, MemoryError):
        return "ran out of memory (MemoryError)" + where
    return f"{type(err).__name__}: {err}".strip() + where


def _run_cases(unit, namespace, device, inputs_dir: Path, charged_elsewhere: dict) -> dict:
    """Run every case of ``unit`` (in the forked child) on the inputs the scoring side built
    (``inputs_dir/<unit>/case<k>.pt``); one record per case. ``charged_elsewhere``:
    {answer cell of a unit ``unit`` calls: the ops that unit forbids} (a call made there is charged
    to that unit, once, not again to every unit that calls it)."""
    import numpy as np
    import torch

    from autograder.sandbox.forbidden import ForbiddenCalls
    from autograder.sandbox.transfer import devices, wrap
    from autograder.units import to_device
    from utils import guard

    watch = ForbiddenCalls(unit.forbidden, charged_elsewhere)
    watch.install()
    watch.remove_kernels()  # this child only: the library's kernel for the exercise is not there
    records = {}
    for k, case in enumerate(unit.cases):
        try:  # written by the scoring side (trusted), in a folder this process cannot write
            payload = torch.load(inputs_dir / unit.grade_id / f"case{k}.pt", weights_only=False)
        except Exception as err:
            payload = {"error": f"the grader could not read this case (a kit bug, not your code): "
                                f"{type(err).__name__}: {err}"}
        if "error" in payload:
            records[case.name] = {"ok": False, "kind": "error", "message": payload["error"]}
            continue
        inputs = to_device(payload["inputs"], device)
        torch.manual_seed(CASE_SEED)
        np.random.seed(CASE_SEED)
        random.seed(CASE_SEED)
        before = guard.snapshot()
        watch.calls.clear()
        try:
            with watch:
                result = unit.call(namespace, inputs, device)
            tree = wrap(result)
            record = {"ok": True, "value": tree, "devices": sorted(devices(tree))}
        except NotImplementedError as err:
            record = {"ok": False, "kind": "not_implemented", "message": _short_error(err)}
        except (Exception, SystemExit) as err:
            record = {"ok": False, "kind": "error", "message": _short_error(err)}
        patched = guard.restore_changes(before)
        if patched:
            record = {"ok": False, "kind": "tampered",
                      "message": f"reassigns library functions ({', '.join(patched)}); grading "
                                 f"does not accept code that patches torch/numpy"}
        if watch.calls:
            record = {"ok": False, "kind": "forbidden",
                      "message": f"calls {'; '.join(watch.calls)}: this exercise asks you to write "
                                 f"that computation yourself, not to call the library's version"}
        records[case.name] = record
    return records


def cap_memory(memory_gb: float, hard: bool = False) -> None:
    """Let this process allocate at most ``memory_gb`` more than it holds now (address space, CPU
    only: CUDA reserves huge virtual ranges). ``hard`` also lowers the hard limit to twice that, so
    code running here can never lift the cap past it (the forked units set their own soft limit)."""
    vsize = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    budget = int(memory_gb * 2**30)
    current = resource.getrlimit(resource.RLIMIT_AS)[1]
    ceiling = vsize + 2 * budget if hard else current
    if current != resource.RLIM_INFINITY:
        ceiling = min(ceiling, current)
    resource.setrlimit(resource.RLIMIT_AS, (min(vsize + budget, ceiling), ceiling))


def _child(unit, namespace, device_name: str, result_path: Path, output_fd: int, memory_gb: float,
           charged_elsewhere: dict, inputs_dir: Path) -> None:
    """Body of the forked child; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        _redirect_output(output_fd)
        if memory_gb > 0 and device_name == "cpu":
            cap_memory(memory_gb)
        import torch

        records = _run_cases(unit, namespace, torch.device(device_name), inputs_dir, charged_elsewhere)
        tmp = result_path.with_suffix(".tmp")
        torch.save({"cases": records}, tmp)
        os.replace(tmp, result_path)
        code = 0
    except BaseException:  # report through the exit code; the parent explains it
        traceback.print_exc()
    finally:
        os._exit(code)


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (the system's out-of-memory killer?)" if sig == signal.SIGKILL else ""
        return f"the process running your code was killed by {name}{hint}"
    return (f"your code ended the process (exit code {os.WEXITSTATUS(status)}, e.g. os._exit); "
            f"a graded function must return its result")


class _ThreadWatch:
    """Refuses an answer cell that leaves a thread running after it loads: such a thread would
    keep running in the worker, outside every unit (and outside its watch for forbidden calls).
    The worker then ends; the scoring side restarts it without that cell."""

    def __init__(self, protocol: _Protocol) -> None:
        self.protocol, self.baseline, self.last = protocol, _thread._count(), None

    def check(self) -> None:
        if self.last is not None and _thread._count() > self.baseline:
            self.protocol.send(event="refused", unit=self.last,
                               why="left a thread running after it loaded (code outside a graded "
                                   "function may not keep running)")
            os._exit(3)

    def next_cell(self, notebook: str, grade_id: str) -> None:
        self.check()
        self.last = grade_id
        self.protocol.send(event="loading", notebook=notebook, unit=grade_id)


class _Worker:
    """What every unit shares: the confinement, the protocol, the memory limit."""

    def __init__(self, confinement: isolation.Confinement, protocol: _Protocol, memory_gb: float,
                 scratch: Path) -> None:
        self.confinement, self.protocol, self.memory_gb = confinement, protocol, memory_gb
        self.scratch = scratch
        self.subreaper = not confinement.pid_namespace and reaping.become_subreaper()

    def clean_up(self, group: int | None = None) -> None:
        """Kill every process student code left running (and the unit's group ``group``)."""
        reaping.kill_descendants(self.confinement.pid_namespace, self.subreaper, group)

    def run_unit(self, unit, namespace, device: str, result_path: Path, timeout: float,
                 charged_elsewhere: dict, inputs_dir: Path) -> None:
        result_path.unlink(missing_ok=True)
        result_path.with_suffix(".tmp").unlink(missing_ok=True)
        unit_dir = self.scratch / f"unit-{unit.grade_id}"  # the unit's temporary files, removed after it
        shutil.rmtree(unit_dir, ignore_errors=True)
        unit_dir.mkdir()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.environ["TMPDIR"] = str(unit_dir)
            tempfile.tempdir = None
            _child(unit, namespace, device, result_path, write_fd, self.memory_gb, charged_elsewhere, inputs_dir)
        os.close(write_fd)
        self.protocol.send(event="started", unit=unit.grade_id, pid=pid)
        try:
            status, detail, output = self._wait(pid, read_fd, result_path, timeout)
        finally:
            os.close(read_fd)
            shutil.rmtree(unit_dir, ignore_errors=True)
        self.protocol.send(event="done", unit=unit.grade_id, status=status, detail=detail, output=output)

    def _wait(self, pid: int, read_fd: int, result_path: Path, timeout: float) -> tuple[str, str, str]:
        """(status, detail, output tail) of the unit's child once it and all it started are gone."""
        output = _Tail(read_fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            output.drain(POLL_SECONDS)
        else:
            self.clean_up(group=pid)
            return ("timeout", f"did not finish within {timeout:g} s (an endless loop?); the time limit "
                               f"is per unit", output.text())
        self.clean_up(group=pid)  # anything the child left running
        output.drain(0)
        if result_path.is_file() and not result_path.is_symlink():
            return "ok", "", output.text()
        return "crashed", _describe_exit(status), output.text()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", required=True)
    parser.add_argument("--submission", required=True, type=Path, help="folder with the notebooks")
    parser.add_argument("--release", required=True, type=Path, help="released notebooks' folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", default="", help="comma-separated grade_ids not to load")
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--scratch", required=True, type=Path, help="the only folder student code may write")
    parser.add_argument("--inputs", required=True, type=Path, help="the cases' inputs, built by the scoring side")
    parser.add_argument("--results", required=True, type=Path, help="folder of the units' result files")
    parser.add_argument("--hide", action="append", default=[], type=Path, help="a folder it may not read")
    args = parser.parse_args(argv)
    for name in ("submission", "release", "scratch", "results", "inputs"):  # it will work from its scratch folder
        setattr(args, name, getattr(args, name).resolve())

    protocol = _Protocol()
    _redirect_output(2)  # the worker's own output goes to the parent's log pipe
    # Line-buffered streams over the redirected descriptors (never closing them).
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    repo = Path(__file__).resolve().parents[2]
    confinement = isolation.confine([args.scratch, args.results],
                                    [*isolation.kit_view(repo, args.hw), args.submission, args.release, args.inputs],
                                    args.hide, capped={args.scratch: SCRATCH_BYTES}, view=True, outside=repo)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails, not the process
    os.environ.update(TMPDIR=str(args.scratch), HOME=str(args.scratch))
    tempfile.tempdir = None
    os.chdir(args.scratch)
    worker = _Worker(confinement, protocol, args.memory_gb, args.scratch)
    try:
        _serve(args, worker, protocol)
    finally:
        worker.clean_up()


def _serve(args, worker: _Worker, protocol: _Protocol) -> None:
    import torch

    torch.set_num_threads(1)  # no OpenMP pool before fork(); small grading inputs need none
    if args.device == "cpu" and args.memory_gb > 0:  # the answer cells' top-level code is capped too
        cap_memory(args.memory_gb, hard=True)
    from autograder.explain import dependency_chain
    from autograder.units import homework_units
    from utils.notebook import RELEASE_ENV, SKIP_ENV, load_notebook

    os.environ[RELEASE_ENV] = str(args.release.resolve())
    os.environ[SKIP_ENV] = args.skip
    from autograder import replayed
    if (args.submission / replayed.CALLS_NAME).is_file():  # a charge-once re-grade: stand-ins replay from it
        replayed.CALLS_FILE = args.submission / replayed.CALLS_NAME
    units = homework_units(args.hw)
    skip = frozenset(s for s in args.skip.split(",") if s)
    modules, loads, problems = {}, {}, []
    # In order, so a notebook that imports an earlier one reuses the module loaded here.
    threads = _ThreadWatch(protocol)
    for nb in sorted({u.notebook for u in units.values()}):
        module = load_notebook(args.submission / nb, args.release / nb, skip=skip,
                               on_cell=lambda gid, nb=nb: threads.next_cell(nb, gid))
        threads.check()
        report = module.__notebook_report__
        modules[nb] = module
        problems += report.problems
        loads.update({g: vars(u) for g, u in report.units.items()})
    worker.clean_up()  # nothing started while loading may outlive the loading
    for gid, unit in units.items():
        if gid not in loads:
            problems.append(f"{unit.notebook}: the release has no answer cell {gid!r} (kit error)")
            loads[gid] = {"grade_id": gid, "notebook": unit.notebook, "status": "missing",
                          "detail": "the released notebook has no such answer cell"}
    confinement = worker.confinement
    protocol.send(event="ready", loads=loads, problems=problems, isolation={
        "mode": confinement.mode, "files": confinement.files, "view": confinement.view, "network": confinement.network,
        "pid_namespace": confinement.pid_namespace, "uid": confinement.uid, "note": confinement.note})

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        unit = units[command["unit"]]
        charged_elsewhere = {dep: units[dep].forbidden for dep, _ in dependency_chain(units, unit.grade_id)
                             if units[dep].forbidden}
        worker.run_unit(unit, modules[unit.notebook], args.device,
                        args.results / f"{command['unit']}.pt", float(command["timeout"]), charged_elsewhere,
                        args.inputs)


if __name__ == "__main__":
    main()
