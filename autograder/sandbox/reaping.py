"""Leave no process behind: kill everything the grading worker's children started, however detached.

In its own PID namespace the worker is process 1: ``kill(-1, SIGKILL)`` reaches every other process
of the namespace, including double-forked ``setsid`` daemons, which the kernel re-parents to it.
Without a PID namespace (Linux) the worker is a child subreaper, so orphans are re-parented to it
and it kills its children, round after round, until none is left. Elsewhere only the unit's
process group can be killed.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
MAX_ROUNDS = 1000   # a fork bomb re-parents its children to us; each round kills one generation


def become_subreaper() -> bool:
    """Linux: orphans of this process's descendants become its children (not init's)."""
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _children() -> list[int]:
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(pid_namespace: bool, subreaper: bool, group: int | None = None) -> None:
    """SIGKILL and reap every descendant of this process (and process group ``group``)."""
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if pid_namespace:
        try:
            os.kill(-1, signal.SIGKILL)   # every process of the namespace but process 1 (us)
        except ProcessLookupError:
            pass
        _reap(block=True)
        return
    if subreaper:
        for _ in range(MAX_ROUNDS):
            children = _children()
            if not children:
                break
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
    _reap(block=False)
