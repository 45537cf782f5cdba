"""Confine the grading worker before any student code runs (Linux namespaces, a dedicated uid).

``confine`` is the worker's first act. Where the kernel allows it, the worker moves into new
mount, network and PID namespaces and forks: the child becomes process 1 of the new PID namespace
and goes on as the worker, the parent only waits for it. In the child's private view of the file
system every mount is read-only except its scratch folder and its results folder; the reference
tensors, the solutions and the git object store are covered by empty folders; the network has only
a loopback interface that is down. As root (Gradescope, Docker, CI) it then becomes a dedicated
unprivileged uid (``UID_BASE`` + its pid, so two workers never share one), with the folders that
Python and the kit need made traversable for it; as an ordinary user the namespaces come from an
unprivileged user namespace. Either way it keeps no capability and cannot gain one (no_new_privs),
so student code cannot undo the mounts. When process 1 of a PID namespace ends, the kernel kills
everything left in it, and ``autograder.sandbox.reaping`` kills the rest after each unit.

As root where namespaces are forbidden (some containers), it still becomes the dedicated uid, and
the hidden folders become readable by root only; the result notes that the network is open
(``NETWORK_NOTE``). Where none of this exists (macOS, a kernel without user namespaces, an ordinary
user without them) grading still works and the result says, in one line (``FILES_NOTE``), that file
isolation is off.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from utils.homeworks import given_code

UID_BASE = 1_000_000_000       # root mode: the worker runs as UID_BASE + its pid
ORPHAN_POLL_SECONDS = 0.2
FILES_NOTE = ("file isolation is off on this machine (no Linux namespaces): student code could "
              "write the kit and read the references; grade official submissions on Linux")

NETWORK_NOTE = ("network isolation is off on this machine (no Linux namespaces): student code could "
                "open connections; files are protected by an unprivileged uid")

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUSER = 0x20000, 0x40000000, 0x20000000, 0x10000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 1
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = 1, 0o2000000, 4
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442   # same on x86_64 and aarch64
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155 if os.uname().machine == "x86_64" else 41   # aarch64: 41
# What the worker's view holds besides Python, the kit's student-facing code, the submission, the
# release and its own folders: the system's programs and libraries (no user data lives there), the
# few files of /etc that the dynamic loader and the C library read, and harmless devices.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd",
             "/etc/group", "/etc/nsswitch.conf", "/etc/fonts", "/etc/alternatives", "/etc/matplotlibrc")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
GPU_DEVICE_PREFIX = "/dev/nvidia"   # CUDA's device nodes (and then /sys, which CUDA reads)
VIEW_NOTE = "the worker's view could not be limited to what it needs ({err}); it sees the machine " \
            "read-only, less the hidden folders"
CAPABILITY_VERSION_3 = 0x20080522


@dataclass
class Confinement:
    """What ``confine`` achieved. ``files``: writes outside scratch/results are refused and the
    hidden paths unreadable; ``pid_namespace``: this process is process 1 of its own namespace;
    ``note``: one line for the score table when file isolation is off ('' otherwise)."""

    mode: str                 # root | user | uid (root without namespaces) | off
    files: bool = False
    network: bool = False
    pid_namespace: bool = False
    view: bool = False        # it sees only what it was given (a new root), not the machine less a list
    uid: int | None = None
    note: str = ""


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
    _check(libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                      ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _set_readonly(libc, path: str, readonly: bool, recursive: bool) -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE if recursive else 0,
                        ctypes.byref(attr), ctypes.sizeof(attr)), f"mount_setattr {path}")


def _fork_into_namespace() -> None:
    """Fork; the parent waits for the child (process 1 of the new PID namespace) and leaves with
    its status, so whoever started the worker sees one process that ends when the worker ends.
    If the scoring process dies first, the parent kills the child (and so the whole namespace)."""
    pid = os.fork()
    if pid == 0:
        return
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    parent = os.getppid()
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            os._exit(1)
        if done:
            break
        if os.getppid() != parent:  # the scoring process is gone: so is the worker, and all in it
            os.kill(pid, signal.SIGKILL)
        time.sleep(ORPHAN_POLL_SECONDS)
    os._exit(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _blocking_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` that a user outside its owner and group cannot enter."""
    for ancestor in reversed(path.parents):
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _expose(libc, needed: list[Path]) -> None:
    """Root mode: make each needed path reachable for the unprivileged uid. A closed ancestor
    (e.g. /root, mode 700, holding pyenv's Python) is replaced by an empty tmpfs into which only
    the needed subtrees are moved back."""
    by_ancestor: dict[Path, list[Path]] = {}
    for path in needed:
        if path.exists():
            top = _blocking_ancestor(path)
            if top is not None:
                by_ancestor.setdefault(top, []).append(path)
    for top, paths in by_ancestor.items():
        paths = [p for p in paths if not any(q != p and q in p.parents for q in paths)]
        trees = [(p, _check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(p).encode(),
                                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
                            f"open_tree {p}")) for p in paths]
        _mount(libc, "tmpfs", str(top), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for path, fd in trees:
            path.mkdir(parents=True, exist_ok=True)
            _check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, str(path).encode(),
                                MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {path}")
            os.close(fd)


def _hide(libc, paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            _mount(libc, "tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555")


def _place(libc, source: Path, root: Path) -> None:
    """Make ``source`` appear at the same path under ``root``: a symlink is copied as a symlink, a
    folder or file is bind-mounted (with everything mounted below it)."""
    target = root / source.relative_to("/")
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    if source.is_dir():
        target.mkdir()
    else:
        target.touch()
    _mount(libc, str(source), str(target), None, MS_BIND | MS_REC)


def _enter_view(libc, paths: list[Path], writable: list[Path], base: Path) -> None:
    """Make a new root holding only ``paths`` (and what Python and the C library need) and move
    into it (pivot_root): nothing else of the machine exists for this process any more."""
    root = base / "view"
    root.mkdir(exist_ok=True)
    _mount(libc, "tmpfs", str(root), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    system = [Path(p) for p in (*SYSTEM_PATHS, *ETC_FILES, *DEVICES) if os.path.lexists(p)]
    gpu = sorted(Path("/dev").glob(Path(GPU_DEVICE_PREFIX).name + "*"))
    for path in sorted(set(system + gpu + ([Path("/sys")] if gpu else []) + paths + writable), key=str):
        if os.path.lexists(path):
            _place(libc, path, root)
    (root / "proc").mkdir(exist_ok=True)
    _mount(libc, "proc", str(root / "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in ("tmp", "dev/shm"):  # empty and private: TMPDIR points at the scratch folder anyway
        if not (root / name).exists():  # (a placed folder may live under /tmp: keep it visible)
            (root / name).mkdir(parents=True)
            _mount(libc, "tmpfs", str(root / name), "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    old = root / "old-root"
    old.mkdir()
    _check(libc.syscall(SYS_PIVOT_ROOT, str(root).encode(), str(old).encode()), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/old-root", MNT_DETACH), "umount old root")
    os.rmdir("/old-root")


# A homework's grading modules the worker imports: what its units are and how they are called. Not
# its oracles, mistake models, checks or graded tests (the scoring side builds the inputs with them).
WORKER_MODULES = ("__init__.py", "cases*.py", "inputs.py", "library_ops.py")


def kit_view(repo: Path, hw: str) -> list[Path]:
    """The kit's files a grading worker of ``hw`` reads: the given packages without the other
    homeworks' parts (``utils.homeworks.given_code``), the grading core, the sandbox and the
    homework's ``WORKER_MODULES``; never the solutions, the references, ``staff/``, the homework's
    oracles, checks or tests, other homeworks' grading or given code, the outputs or the git store."""
    grading = repo / "autograder"
    own = sorted({p for pattern in WORKER_MODULES for p in (grading / hw).glob(pattern)})
    return given_code(repo, hw) + sorted(grading.glob("*.py")) + [grading / "sandbox", *own]


def _drop_privileges(libc, uid: int | None) -> None:
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    header, data = _CapHeader(CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # student processes of the same uid cannot trace it


def _map_user(uid: int, gid: int) -> None:
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def _uid_only(libc, writable: list[Path], readable: list[Path], hidden: list[Path]) -> Confinement:
    """Root without namespaces (a container that forbids them): an unprivileged uid still keeps
    student code out of files it does not own; the hidden folders become readable by root only
    (their mode changes on disk). Python and the kit must be reachable for that uid."""
    needed = python_paths() + [p.resolve() for p in readable + writable]
    if any(_blocking_ancestor(p) is not None for p in needed if p.exists()):
        return Confinement("off", note=FILES_NOTE)
    uid = UID_BASE + os.getpid()
    for folder in writable:
        os.chown(folder, uid, uid)
    for path in hidden:
        path.chmod(path.stat().st_mode & ~0o077)
    _drop_privileges(libc, uid)
    return Confinement("uid", files=True, uid=uid, note=NETWORK_NOTE)


def python_paths(outside: Path | None = None) -> list[Path]:
    """Where this interpreter and its packages live (the worker must keep importing from them).
    ``outside``: leave out this folder and its ancestors (the kit's root, which ``sys.path`` names
    but whose student-facing parts come in one by one)."""
    found = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix)}
    found |= {Path(p).resolve() for p in sys.path if p and Path(p).is_dir()}
    if outside is not None:
        outside = outside.resolve()
        found = {p for p in found if p != outside and p not in outside.parents}
    return sorted(found)


def confine(writable: list[Path], readable: list[Path], hidden: list[Path],
            capped: dict[Path, int] | None = None, view: bool = False, outside: Path | None = None) -> Confinement:
    """Confine this process (call it before importing anything big: it must be single-threaded).

    writable: folders student code may write (the scratch folder, the results folder), created by
        the caller. readable: folders it must read (the kit, the submission, the release; Python's
        own are added). hidden: folders it must not read. capped: {writable folder: bytes}: such a
        folder becomes a private file system of that size (its content is this process's alone; the
        caller never reads it). view: the process sees only ``readable``, ``writable``, Python and
        the system's libraries (an allowlist: a new root), not the machine less ``hidden``;
        ``outside``: a folder ``sys.path`` names that must not come in whole (the kit's root).
        Never raises: what cannot be done is reported in the returned Confinement.
    """
    if not sys.platform.startswith("linux"):
        return Confinement("off", note=FILES_NOTE)
    libc = _libc()
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | (0 if root else CLONE_NEWUSER)
    try:
        _check(libc.unshare(flags), "unshare")
        if not root:
            _map_user(uid, gid)
    except OSError:
        return _uid_only(libc, writable, readable, hidden) if root else Confinement("off", note=FILES_NOTE)
    worker_uid = UID_BASE + os.getpid() if root else None
    _fork_into_namespace()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    done = Confinement("root" if root else "user", network=True, pid_namespace=True, uid=worker_uid)
    try:
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if root:
            for folder in writable:
                os.chown(folder, worker_uid, worker_uid)
        allowed = python_paths(outside) + [p.resolve() for p in readable]
        entered = False
        if view:
            try:
                _enter_view(libc, allowed, [p.resolve() for p in writable], writable[0].resolve().parent)
                entered = True
            except OSError as err:
                done.note = VIEW_NOTE.format(err=err)
        if root and not entered:
            _expose(libc, allowed + [p.resolve() for p in writable])
        _hide(libc, [p.resolve() for p in hidden if p.resolve().exists()])
        for folder in writable:
            size = (capped or {}).get(folder)
            if size:  # a total cap on what student code may write there, not only per file
                owner = f",uid={worker_uid},gid={worker_uid}" if root else ""
                _mount(libc, "tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV,
                       f"size={size},mode=700{owner}")
            else:
                _mount(libc, str(folder), str(folder), None, MS_BIND)
        _set_readonly(libc, "/", True, recursive=True)
        for folder in writable:
            _set_readonly(libc, str(folder), False, recursive=False)
        done.files = True
        done.view = entered
    except OSError as err:
        done.note = f"file isolation is off ({err}); grade official submissions where it works"
    _drop_privileges(libc, worker_uid if done.files else None)
    return done
