"""Linux file leases: being told before another process may change a file.

A read lease (``fcntl(fd, F_SETLEASE, F_RDLCK)`` on a descriptor opened read-only) can be taken
only while no process has the file open for writing — so a refused lease is itself the sign that
the file is being written. Once it is taken, the kernel holds back every other process's open
of the file for writing (Darknet's ``fopen(name, "wb")``) and every truncation, and tells the
holder with a signal; the other process waits until the holder gives the lease up, or until
``/proc/sys/fs/lease-break-time`` (45 s by default) has passed. :mod:`dwf.io.guard` uses that
moment to move the pages its views use into private memory. A rename over the path or an
unlink does not break a lease, and needs nothing: the open file keeps its data.

**The signal.** The kernel signals the file's owner (``F_SETOWN_EX``) with the signal chosen by
``F_SETSIG``. dwf directs it at one thread of its own, which blocks it and waits for it
(``sigtimedwait``): no other thread is interrupted, and no signal disposition of the process is
changed. The signal is SIGURG, whose default action is to do nothing. SIGIO (the kernel's
default) and the real-time signals terminate a process that does not handle them, so one that
reached another thread — the lease is set before its owner can be — would kill it; SIGURG is
discarded there instead, and the lease itself still says that it is being broken
(``F_GETLEASE``), which :func:`take` reads back once the owner is set, and the watcher reads
for every lease it holds whenever it wakes up. The watcher is started with the first lease and
not waited for; leases taken before it runs keep the process as their owner until it starts,
directs each at itself and looks at it. SIGURG is also not a real-time signal, so it
never queues: a full signal queue cannot make the kernel fall back to SIGIO.

**Where leases can be trusted.** A lease only sees what passes through this kernel. On a network
or FUSE file system another machine, or the FUSE server, changes the file without it, so
:func:`unsupported` accepts only local file systems, by their ``statfs`` type.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import errno
import os
import signal
import struct
import sys
import threading
from typing import Protocol

if sys.platform == "linux":  # elsewhere unsupported() answers before anything below is used
    import fcntl

# <linux/fcntl.h>; the Python module lacks the F_SETOWN_EX pair.
F_SETOWN_EX = 15
F_OWNER_TID = 0
BREAK_SIGNAL: int = getattr(signal, "SIGURG", 0)
# How often the watcher looks at every lease without being signalled: a safety net only.
POLL_SECONDS = 5.0

# statfs f_type of the file systems whose every write passes through this kernel (the values of
# <linux/magic.h>). Overlay was measured: a writer's open through it breaks the lease, also when
# it copies a lower file up.
LOCAL_FILE_SYSTEMS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0xF2F52010: "f2fs",
    0x794C7630: "overlay",
    0x2FC12FC1: "zfs",
    0xCA451A4E: "bcachefs",
    0x3153464A: "jfs",
    0x52654973: "reiserfs",
    0x4D44: "vfat",
    0x2011BAB0: "exfat",
}
# Named only to explain a refusal.
OTHER_FILE_SYSTEMS = {
    0x6969: "nfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x517B: "smb",
    0x65735546: "fuse",
    0x01021997: "9p (e.g. WSL's /mnt/c)",
    0x00C36400: "ceph",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x5346414F: "afs",
}


class Watched(Protocol):
    """What the watcher calls, in its own thread."""

    def check_break(self) -> None:
        """Look whether this object's lease is being broken, and if so act and give it up
        (called each time the watcher wakes up)."""

    def route(self, tid: int) -> None:
        """Direct this object's lease breaks at thread ``tid`` (:func:`set_owner`): called once
        by a watcher that has just started, for leases taken before it could say its id."""


def unsupported(fd: int) -> str | None:
    """Why a lease on ``fd`` could not be trusted to announce every change of its file, or
    ``None`` if it can (Linux, a local file system)."""
    if sys.platform != "linux":
        where = "macOS" if sys.platform == "darwin" else sys.platform
        return f"{where} has no file leases"
    if _break_time() < 1:
        return "/proc/sys/fs/lease-break-time is 0: a writer would not wait for dwf"
    kind = _fs_type(fd)
    if kind is None:
        return "cannot tell the file system (fstatfs failed)"
    if kind not in LOCAL_FILE_SYSTEMS:
        name = OTHER_FILE_SYSTEMS.get(kind, f"type {kind:#x}")
        return (
            f"the file is on {name}, not a local file system: a lease would not see writes"
            " made elsewhere"
        )
    return None


_BREAK_TIME: list[int] = []


def _break_time() -> int:
    """``/proc/sys/fs/lease-break-time``: how long a writer waits for a lease holder (read once;
    45 s by default)."""
    if not _BREAK_TIME:
        try:
            with open("/proc/sys/fs/lease-break-time", encoding="ascii") as fh:
                _BREAK_TIME.append(int(fh.read().strip()))
        except (OSError, ValueError):
            _BREAK_TIME.append(45)
    return _BREAK_TIME[0]


def file_system(fd: int) -> str:
    """The name of the file system ``fd`` lives on (for messages)."""
    kind = _fs_type(fd)
    if kind is None:
        return "unknown"
    return LOCAL_FILE_SYSTEMS.get(kind) or OTHER_FILE_SYSTEMS.get(kind) or f"type {kind:#x}"


def _fs_type(fd: int) -> int | None:
    libc = _libc()
    buf = ctypes.create_string_buffer(512)  # struct statfs, whose first field is f_type
    if libc.fstatfs(fd, buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def take(fd: int) -> tuple[str, bool] | None:
    """Take a read lease on ``fd`` (opened read-only), its breaks signalled to the watcher.

    Returns ``None`` when the lease is held, else why not and whether that lasts (``False``:
    the file is open for writing now, try again later).
    """
    try:
        tid = _watcher_thread()
    except RuntimeError as e:  # no thread can be started (a limit on threads)
        return f"cannot start the thread that watches leases: {e}", False
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, BREAK_SIGNAL)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return _refusal(e)
    try:
        # The owner is set after the lease (setting a lease makes the whole process the owner
        # on some kernels), or by the watcher when it starts (tid None: it is starting). A break
        # that began before signalled nobody that waits for it, so the lease itself is asked.
        if tid is not None:
            set_owner(fd, tid)
        if breaking(fd):
            give_up(fd)
            return "the file is being opened for writing", False
    except OSError as e:
        give_up(fd)
        return _refusal(e)
    return None


def _refusal(e: OSError) -> tuple[str, bool]:
    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return "the file is open for writing (it is being written)", False
    if e.errno == errno.EACCES:
        return "a lease needs the file's owner or the CAP_LEASE capability", True
    if e.errno == errno.EINVAL:
        return "the file system refuses leases (or /proc/sys/fs/leases-enable is 0)", True
    return f"cannot take a file lease: {e.strerror or e}", True


def set_owner(fd: int, tid: int) -> None:
    """Send the breaks of the lease on ``fd`` to thread ``tid`` (a native thread id) alone."""
    fcntl.fcntl(fd, F_SETOWN_EX, struct.pack("ii", F_OWNER_TID, tid))


def breaking(fd: int) -> bool:
    """Whether the lease on ``fd`` is being broken (or is gone): a writer is waiting."""
    return fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK


def give_up(fd: int) -> None:
    """Release the lease on ``fd``; a writer waiting for it goes on."""
    with contextlib.suppress(OSError):  # already gone (broken by the timeout, or never taken)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)


# -- the watcher ---------------------------------------------------------------------------------
_watched: dict[int, Watched] = {}
_start_lock = threading.Lock()
# (pid, the watcher's native thread id, or None while it starts): a forked child starts anew.
_watcher: tuple[int, int | None] | None = None


def watch(item: Watched) -> None:
    """Have the watcher call ``item.check_break()`` whenever it wakes up, until :func:`unwatch`.
    Call it before taking the lease, so that a break right after finds the item."""
    _watched[id(item)] = item


def unwatch(item: Watched) -> None:
    """Stop watching ``item`` (no effect if it is not watched)."""
    _watched.pop(id(item), None)


def watched() -> list[Watched]:
    """What the watcher looks at, now."""
    while True:
        try:
            return list(_watched.values())
        except RuntimeError:  # changed while being copied (a finalizer ran): copy again
            continue


def _watcher_thread() -> int | None:
    """The native id of the thread that waits for lease breaks, or ``None`` while it starts.

    It is started on first use and not waited for (on a busy machine a new thread may wait
    milliseconds for a core): once running, it routes every lease taken meanwhile to itself and
    looks at each (:func:`_run`).

    Raises:
        RuntimeError: no thread can be started.
    """
    global _watcher
    with _start_lock:
        if _watcher is not None and _watcher[0] == os.getpid():
            return _watcher[1]
        _thread.start_new_thread(_run, ())  # threading's start() would wait for it to run
        _watcher = (os.getpid(), None)
        return None


def _run() -> None:
    global _watcher
    signal.pthread_sigmask(signal.SIG_BLOCK, {BREAK_SIGNAL})
    tid = threading.get_native_id()
    threading.current_thread().name = "dwf-lease-watcher"
    with _start_lock:
        _watcher = (os.getpid(), tid)
    for item in watched():  # leases taken before the id was known: route them here, look
        try:
            item.route(tid)
            item.check_break()
        except Exception:  # one bad item must not stop the watch of the others
            continue
    _watch()


def watcher_id() -> int | None:
    """The native id of this process's watcher thread, if it runs (for tests)."""
    w = _watcher
    return w[1] if w is not None and w[0] == os.getpid() else None


def _before_fork() -> None:
    _start_lock.acquire()


def _after_fork_in_parent() -> None:
    _start_lock.release()


def _after_fork_in_child() -> None:
    # The watcher thread does not exist in the child; the next lease taken there starts one.
    global _watcher
    _watcher = None
    _start_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _watch() -> None:
    while True:
        signal.sigtimedwait({BREAK_SIGNAL}, POLL_SECONDS)
        for item in watched():
            try:
                item.check_break()
            except Exception:  # one bad item must not stop the watch of the others
                continue


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC
