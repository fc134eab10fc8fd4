"""Zero-copy views that no other process can take away: a file map guarded by a Linux lease.

A view of a memory-mapped file is a window onto the file: when another process truncates the
file, touching the view kills this process with SIGBUS, and when it rewrites the file in place,
the view silently shows the new bytes. :class:`GuardedMap` maps a file only under a read lease
(:mod:`dwf.io.leases`). Before any other process may open the file for writing or truncate it,
the kernel tells dwf's watcher thread and holds the writer back; the watcher copies the byte
ranges that views were made of into private memory, swaps that memory in at the same addresses
(:func:`dwf.io.filemap.copy_out`), and gives the lease up. Views made before keep exactly the
values they had; no new view is made from the map afterwards (:meth:`GuardedMap.floats` returns
``None`` and the reader raises :class:`dwf.FileChangedError`). A rename over the path or an
unlink needs nothing: the open file keeps its data.

Where a lease cannot be had — the file is open for writing right now, it is on a network or
FUSE file system, this process is not its owner and lacks CAP_LEASE, or the system is not Linux
— :meth:`GuardedMap.open` says why, and the reader hands out owned copies instead.

The map lives as long as anything made from it: it is the numpy ``base`` of every array
:meth:`GuardedMap.floats` returns, and when the last of them is gone its finalizer unmaps it,
gives the lease up and closes its own descriptor (a duplicate, so closing the file does not end
the protection of views still held). The watcher's swap and the finalizer's unmap take the same
lock, so they can never overlap.

If the swap comes too late — this process did not get to run for the whole
``/proc/sys/fs/lease-break-time`` (45 s by default; it was stopped, or a C extension held the
GIL that long), after which the kernel lets the writer go on — the copied ranges read as NaN
rather than a mix of two files; a view touched before the watcher gets to run, in that case
only, can still fault (docs/robustness.md lists this limit).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import numpy as np

from dwf.io import filemap, leases
from dwf.io.source import stat_identity


class Refusal:
    """Why a file cannot be mapped under a lease now (:meth:`GuardedMap.open`).

    Attributes:
        reason: a sentence, e.g. "the file is open for writing (it is being written)".
        lasting: ``False`` when it may pass (the file is being written now): try again later.
    """

    __slots__ = ("lasting", "reason")

    def __init__(self, reason: str, lasting: bool) -> None:
        self.reason = reason
        self.lasting = lasting

    def __repr__(self) -> str:
        return f"Refusal({self.reason!r}, lasting={self.lasting})"


class _State:
    """What the watcher thread and the finalizer share: the address, the descriptor, the byte
    ranges views were made of and the life cycle, under one lock. It holds no reference to the
    :class:`GuardedMap`, so that the map's arrays alone keep it alive."""

    def __init__(self, fd: int, length: int, identity: tuple[int, int], private: bool) -> None:
        # Re-entrant: a garbage collection in the watcher, mid-swap, may run this state's
        # finalizer in the same thread (it then leaves the unmap to the swap; see close()).
        self.lock = threading.RLock()
        self.fd = fd
        self.length = length
        self.identity = identity
        self.private = private
        self.addr = 0
        self.spans: set[tuple[int, int]] = set()
        self.detached: str | None = None
        self.swapping = False
        self.unmap_after_swap = False
        self.closed = False

    def unchanged(self) -> bool:
        try:
            st = os.fstat(self.fd)
        except OSError:
            return False
        return stat_identity(st).pair == self.identity

    def check_break(self) -> None:
        """The watcher's call: if a writer is waiting, detach the views, then let it go on."""
        with self.lock:
            if self.closed or self.detached is not None or not leases.breaking(self.fd):
                return
            self.swapping = True
            try:
                intact = filemap.copy_out(
                    self.addr,
                    self.length,
                    self.fd,
                    self.spans,
                    self.unchanged,
                    private=self.private,
                )
                self.detached = (
                    "another process opened the file for writing or truncated it"
                    if intact
                    else "the file changed before dwf could copy what views hold (they read NaN)"
                )
            except OSError as e:  # no memory for the copy: the views stay on the file
                self.detached = f"could not detach the views from the file ({e})"
            finally:
                self.swapping = False
                leases.give_up(self.fd)
                leases.unwatch(self)
                os.close(self.fd)  # nothing is read from the file any more
                self.fd = -1
            if self.unmap_after_swap:
                self._release()

    def route(self, tid: int) -> None:
        """The watcher's call when it starts: direct this lease's breaks at it."""
        with self.lock:
            if not self.closed and self.detached is None and self.fd >= 0:
                leases.set_owner(self.fd, tid)

    def close(self) -> None:
        """The finalizer's call, once nothing made from the map is left."""
        with self.lock:
            if self.swapping:  # re-entered from the swap (see __init__)
                self.unmap_after_swap = True
                return
            self._release()

    def _release(self) -> None:
        if self.closed:
            return
        self.closed = True
        leases.unwatch(self)
        _states.pop(id(self), None)
        if self.fd >= 0:
            leases.give_up(self.fd)
            os.close(self.fd)
            self.fd = -1
        if self.addr:
            filemap.unmap(self.addr, self.length)

    def after_fork(self) -> None:
        """In a forked child: the map was inherited, but the lease belongs to the parent (its
        breaks go to the parent's watcher, and giving it up would end the parent's). Open the
        file anew — a description of the child's own — and take a lease on it; if that cannot
        be done, detach the views now."""
        if self.closed or self.detached is not None:
            return
        inherited = self.fd
        try:
            fd = os.open(f"/proc/self/fd/{inherited}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        refused = leases.take(fd) if fd >= 0 else ("cannot open the file again", True)
        if refused is None:
            self.fd = fd
            if self.unchanged():
                os.close(inherited)
                return
            leases.give_up(fd)
        if fd >= 0:
            os.close(fd)
        self.fd = inherited
        try:
            filemap.copy_out(
                self.addr,
                self.length,
                inherited,
                self.spans,
                self.unchanged,
                private=self.private,
            )
            self.detached = "detached in a forked child that could not take a lease of its own"
        except OSError as e:
            self.detached = f"could not detach the views from the file ({e})"
        leases.unwatch(self)
        os.close(inherited)  # the parent's description (and lease) stay the parent's
        self.fd = -1


class GuardedMap:
    """A whole file, mapped read-only under a lease; the numpy base of the views made from it.

    Use :meth:`open`; :meth:`floats` makes the views.
    """

    __slots__ = ("__array_interface__", "__weakref__", "_state")

    def __init__(self, state: _State) -> None:
        self._state = state
        self.__array_interface__: dict[str, Any] = {
            "shape": (state.length,),
            "typestr": "|u1",
            "data": (state.addr, not state.private),  # read-only unless private
            "version": 3,
        }
        # Not at exit: a daemon thread may still touch a view while the interpreter ends, and
        # the process's end releases the map, the lease and the descriptor anyway.
        weakref.finalize(self, state.close).atexit = False

    @classmethod
    def open(
        cls, fd: int, length: int, identity: tuple[int, int], *, private: bool = False
    ) -> GuardedMap | Refusal:
        """Map the file open on ``fd`` (read-only), ``length`` bytes, under a lease.

        ``identity`` is ``(size, mtime_ns)`` as the file was opened: if the file is no longer
        that, there is nothing to guard (a :class:`Refusal` that does not last; the reader's
        own check then reports the change). ``private``: a writable copy-on-write map, whose
        views' writes stay in this process (and are kept by the swap); for state dicts whose
        tensors must be writable.
        """
        why = leases.unsupported(fd)
        if why is not None:
            return Refusal(why, True)
        try:
            own = os.dup(fd)
        except OSError as e:  # too many open files: views are copies until some are closed
            return Refusal(f"cannot duplicate the file's descriptor: {e.strerror or e}", False)
        state = _State(own, length, identity, private)
        with state.lock:
            _states[id(state)] = state
            leases.watch(state)
            refused = leases.take(state.fd)
            if refused is None and not state.unchanged():
                refused = "the file changed since it was opened", False
            if refused is None:
                try:
                    state.addr = filemap.map_file(state.fd, length, private=private)
                except OSError as e:
                    refused = f"cannot map the file: {e.strerror or e}", True
            if refused is not None:
                state._release()
                return Refusal(*refused)
            return cls(state)

    def floats(self, start: int, count: int) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """A zero-copy float32 view of ``count`` floats from byte ``start`` (read-only, or
        writable for a private map); or ``None`` once the map was detached from the file (it
        changed: make no new views)."""
        state = self._state
        stop = start + 4 * count
        with state.lock:
            if state.detached is not None or state.closed:
                return None
            # Recorded before the view exists, under the lock the swap takes: a swap either
            # comes first (then no view) or copies this range.
            state.spans.add((start, stop))
        whole: np.ndarray[Any, np.dtype[np.uint8]] = np.asarray(self)
        return whole[start:stop].view("<f4")

    @property
    def detached(self) -> str | None:
        """Why the views were moved off the file (another process was about to change it), or
        ``None`` while the map still shows the file."""
        return self._state.detached


# -- fork ----------------------------------------------------------------------------------------
# Every live state, for fork: os.fork() waits until no state's lock is held (no swap half done),
# and the child re-guards each map it inherited.
_states: dict[int, _State] = {}


def _locked_states() -> list[_State]:
    while True:
        try:
            return sorted(_states.values(), key=id)
        except RuntimeError:  # changed while being copied: copy again
            continue


_held: list[_State] = []


def _before_fork() -> None:
    _held[:] = _locked_states()
    for state in _held:
        state.lock.acquire()


def _after_fork_in_parent() -> None:
    for state in reversed(_held):
        state.lock.release()
    _held.clear()


def _after_fork_in_child() -> None:
    for state in _held:
        try:
            state.after_fork()
        except Exception:  # one map that cannot be re-guarded must not stop the others
            continue
    _after_fork_in_parent()


if hasattr(os, "register_at_fork"):
    # After dwf.io.leases' own hooks: forks take the states' locks before the watcher's start
    # lock (the order GuardedMap.open takes them in), and the child's leases find the start lock
    # free.
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
