"""The grading worker: the only process that runs student code.

Started once per submission by ``autograder.sandbox``. It loads every notebook of the homework
(given cells from the release, answer cells from the submission), then, for each unit it is asked
to run, forks a child from that loaded state. The child runs the unit's cases and writes the
outputs to a file; the worker kills it when it runs past the time limit. So a unit that loops
forever, exits the process, patches torch or exhausts memory loses only its own points, and every
unit starts from the same untouched state. Nothing here compares results: the scoring process
reads the outputs with ``torch.load(weights_only=True)``.

Messages to the parent are JSON lines on a private copy of the original stdout; the real stdout and
stderr are redirected to a log, so anything student code prints cannot corrupt the protocol.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

CASE_SEED = 0
POLL_SECONDS = 0.005
MAX_OUTPUT_CHARS = 3000


class _Protocol:
    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)

    def send(self, **message) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()


def _redirect_output(log_path: str) -> None:
    """Point file descriptors 1 and 2 (and so sys.stdout/stderr, and C-level output) at a log."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _short_error(err: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<")]
    where = "".join(f"\n    line {f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-3:])
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code!r}); a graded function must return, not exit" + where
    if isinstance(err, MemoryError):
        return "ran out of memory (MemoryError)" + where
    return f"{type(err).__name__}: {err}".strip() + where


def _run_cases(unit, namespace, device, workdir: Path) -> dict:
    """Run every case of ``unit`` (in the forked child); one record per case."""
    import numpy as np
    import torch

    from autograder.transfer import devices, wrap
    from autograder.units import to_device
    from utils import guard

    records = {}
    for case in unit.cases:
        torch.manual_seed(CASE_SEED)
        np.random.seed(CASE_SEED)
        random.seed(CASE_SEED)
        case_dir = workdir / f"case{len(records)}"
        case_dir.mkdir()
        try:
            inputs = to_device(case.make_inputs(case_dir), device)
        except Exception as err:  # the kit's own case builder: never blame the student
            records[case.name] = {"ok": False, "kind": "error",
                                  "message": f"the grader could not build this case (a kit bug, not "
                                             f"your code): {type(err).__name__}: {err}"}
            continue
        before = guard.snapshot()
        try:
            tree = wrap(unit.call(namespace, inputs, device))
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
        records[case.name] = record
    return records


def _child(unit, namespace, device_name: str, result_path: Path, memory_gb: float) -> None:
    """Body of the forked child; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # so the worker can kill anything this child starts
        _redirect_output(str(result_path) + ".log")
        if memory_gb > 0 and device_name == "cpu":
            current = resource.getrlimit(resource.RLIMIT_AS)[1]
            vsize = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limit = vsize + int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, current))
        import torch

        with tempfile.TemporaryDirectory(prefix="case-") as work:
            records = _run_cases(unit, namespace, torch.device(device_name), Path(work))
        sys.stdout.flush()
        sys.stderr.flush()
        log = Path(str(result_path) + ".log")
        output = log.read_text(errors="replace")[-MAX_OUTPUT_CHARS:] if log.exists() else ""
        tmp = result_path.with_suffix(".tmp")
        torch.save({"cases": records, "output": output}, tmp)
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


def _run_unit(unit, namespace, device: str, result_path: Path, timeout: float,
              memory_gb: float, protocol: _Protocol) -> None:
    result_path.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:
        _child(unit, namespace, device, result_path, memory_gb)
    protocol.send(event="started", unit=unit.grade_id, pid=pid)
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(POLL_SECONDS)
    else:
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
        protocol.send(event="done", unit=unit.grade_id, status="timeout",
                      detail=f"did not finish within {timeout:g} s (an endless loop?); "
                             f"the time limit is per unit")
        return
    try:
        os.killpg(pid, signal.SIGKILL)  # anything the child left running
    except (ProcessLookupError, PermissionError):
        pass
    if result_path.exists():
        protocol.send(event="done", unit=unit.grade_id, status="ok", detail="")
    else:
        protocol.send(event="done", unit=unit.grade_id, status="crashed", detail=_describe_exit(status))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", required=True)
    parser.add_argument("--submission", required=True, type=Path, help="folder with the notebooks")
    parser.add_argument("--release", required=True, type=Path, help="released notebooks' folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", default="", help="comma-separated grade_ids not to load")
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)

    protocol = _Protocol()
    _redirect_output(args.log)
    # Line-buffered streams over the redirected descriptors (never closing them).
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    import torch

    torch.set_num_threads(1)  # no OpenMP pool before fork(); small grading inputs need none
    from autograder.units import homework_units
    from utils.notebook import RELEASE_ENV, SKIP_ENV, load_notebook

    os.environ[RELEASE_ENV] = str(args.release.resolve())
    os.environ[SKIP_ENV] = args.skip
    units = homework_units(args.hw)
    skip = frozenset(s for s in args.skip.split(",") if s)
    modules, loads, problems = {}, {}, []
    # In order, so a notebook that imports an earlier one reuses the module loaded here.
    for nb in sorted({u.notebook for u in units.values()}):
        module = load_notebook(args.submission / nb, args.release / nb, skip=skip,
                               on_cell=lambda gid, nb=nb: protocol.send(event="loading", notebook=nb,
                                                                        unit=gid))
        report = module.__notebook_report__
        modules[nb] = module
        problems += report.problems
        loads.update({g: vars(u) for g, u in report.units.items()})
    for gid, unit in units.items():
        if gid not in loads:
            problems.append(f"{unit.notebook}: the release has no answer cell {gid!r} (kit error)")
            loads[gid] = {"grade_id": gid, "notebook": unit.notebook, "status": "missing",
                          "detail": "the released notebook has no such answer cell"}
    protocol.send(event="ready", loads=loads, problems=problems)

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        unit = units[command["unit"]]
        _run_unit(unit, modules[unit.notebook], args.device, Path(command["result"]),
                  float(command["timeout"]), args.memory_gb, protocol)


if __name__ == "__main__":
    main()
