"""Grading workers forked from a clean, preloaded process instead of started from scratch.

Starting ``python -m autograder.sandbox.worker`` costs seconds per submission (the interpreter, torch, the
kit). A ``ForkServer`` is forked from a process that has imported torch and the kit but has never
loaded a reference, a result or student code; on request it forks a grading worker that runs
``autograder.sandbox.worker.main`` with the arguments, folder and environment of the command that
``Sandbox._spawn`` builds, so the worker starts with everything imported and nothing secret in memory (the scoring process, which does hold the references, is
never the one that forks a worker).

Each worker is double-forked and re-parented to the process that owns the server (a Linux child
subreaper), so ``ForkedSandbox`` can wait for and kill it like the child process ``Sandbox`` starts;
it starts only once re-parented, since ``autograder.sandbox.isolation`` takes the parent it sees for the
scoring process.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import types

from autograder.sandbox import supervisor as sandbox_module
from autograder.sandbox.supervisor import REPO_ROOT, Sandbox

PR_SET_CHILD_SUBREAPER = 36
MESSAGE_BYTES = 65536
POLL_SECONDS = 0.01


def _set_child_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


class ForkedProcess:
    """The part of ``subprocess.Popen`` that ``Sandbox`` uses, for a worker forked by the server."""

    def __init__(self, pid: int, stdin, stdout, stderr=None) -> None:
        self.pid, self.stdin, self.stdout, self.stderr = pid, stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done, status = self.pid, 0
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("autograder.sandbox.worker", timeout)
            time.sleep(POLL_SECONDS)
        for stream in (self.stdin, self.stdout, self.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return self.returncode


class ForkServer:
    """Forks itself now (call it before loading anything secret); ``spawn`` then forks workers."""

    def __init__(self) -> None:
        _set_child_subreaper()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _serve(theirs)
        theirs.close()
        self.pid, self._sock = pid, ours

    def spawn(self, argv: list[str], cwd: str, env: dict[str, str], stderr_pipe: bool = False) -> ForkedProcess:
        """A worker running ``autograder.sandbox.worker.main(argv)`` in ``cwd`` with environment ``env``,
        with pipes for stdin and stdout (and stderr if ``stderr_pipe``, else /dev/null)."""
        to_worker, from_server = os.pipe()
        to_server, from_worker = os.pipe()
        err_read, err_write = os.pipe() if stderr_pipe else (None, os.open(os.devnull, os.O_WRONLY))
        request = json.dumps({"argv": argv, "cwd": str(cwd), "env": dict(env)}).encode()
        try:
            socket.send_fds(self._sock, [request], [to_worker, from_worker, err_write])
            reply = self._sock.recv(MESSAGE_BYTES)
        finally:
            for fd in (to_worker, from_worker, err_write):
                os.close(fd)
        if not reply:
            raise RuntimeError("the fork server stopped")
        stderr = os.fdopen(err_read, "rb", buffering=0) if err_read is not None else None
        return ForkedProcess(int(reply), os.fdopen(from_server, "wb", buffering=0),
                             os.fdopen(to_server, "rb", buffering=0), stderr)

    def close(self) -> None:
        self._sock.close()  # the server sees the end of its socket and exits
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _serve(sock: socket.socket) -> None:
    """The server's loop (in the forked server); never returns."""
    try:
        while True:
            message, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 3)
            if not message:
                break
            request = json.loads(message)
            read_pid, write_pid = os.pipe()
            middle = os.fork()
            if middle == 0:  # forks the worker and exits, so the worker is re-parented
                os.close(read_pid)
                middle = os.getpid()
                worker = os.fork()
                if worker == 0:
                    os.close(write_pid)
                    _become_worker(request, fds, sock, middle)
                os.write(write_pid, str(worker).encode())
                os._exit(0)
            os.close(write_pid)
            for fd in fds:
                os.close(fd)
            pid = os.read(read_pid, 64)
            os.close(read_pid)
            os.waitpid(middle, 0)
            sock.send(pid)
    finally:
        os._exit(0)


def _become_worker(request: dict, fds: list[int], sock: socket.socket, middle: int) -> None:
    """Turn this forked process into ``python -m autograder.sandbox.worker ARGV``; never returns."""
    code = 1
    try:
        sock.close()
        # Go on only once re-parented to the scoring process, the parent a started command has from
        # its first instruction: autograder.sandbox.isolation takes the parent it sees for the scoring process
        # and kills the worker when that parent changes (seen with --jobs 2, as the middle process
        # exited after the worker had looked).
        while os.getppid() == middle:
            time.sleep(POLL_SECONDS / 10)
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):  # stdin, stdout, stderr
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        from autograder.sandbox import worker

        sys.argv = [worker.__file__, *request["argv"]]

        worker.main(request["argv"])
        code = 0
    except SystemExit as err:  # argparse and explicit exits, as the command would end
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:  # an uncaught error: its traceback in the worker's log, as the command's
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


class ForkedSandbox(Sandbox):
    """``Sandbox`` whose workers come from a ``ForkServer``: ``Sandbox._spawn`` builds the worker's
    command as always, and the command is forked instead of executed. A command this cannot
    reproduce (another program, a ``preexec_fn``, other pipes) is started as a real process."""

    def __init__(self, *args, server: ForkServer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._server = server

    def _spawn(self) -> None:
        real = sandbox_module.subprocess
        sandbox_module.subprocess = types.SimpleNamespace(**{**vars(real), "Popen": self._popen})
        try:
            super()._spawn()
        finally:
            sandbox_module.subprocess = real

    def _popen(self, cmd, **kwargs):
        expected = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "start_new_session": True}
        forkable = (list(cmd[:3]) == [sys.executable, "-m", "autograder.sandbox.worker"]
                    and set(kwargs) <= {*expected, "stderr", "cwd", "env"}
                    and all(kwargs.get(k) == v for k, v in expected.items())
                    and kwargs.get("stderr") in (subprocess.PIPE, subprocess.DEVNULL))
        if not forkable:
            return subprocess.Popen(cmd, **kwargs)
        return self._server.spawn(list(cmd[3:]), kwargs.get("cwd") or REPO_ROOT,
                                  kwargs.get("env") or dict(os.environ),
                                  stderr_pipe=kwargs["stderr"] == subprocess.PIPE)
