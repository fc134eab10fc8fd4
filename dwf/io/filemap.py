"""A file mapped by dwf itself, and the swap that makes it private.

Python's :class:`mmap.mmap` unmaps its memory when it is deallocated, in whatever thread drops
the last reference; memory dwf swaps under live views (below) must instead be unmapped only by
its owner, under its owner's lock, or the swap could land on an address the system has since
given to something else. So the map is made and unmade here, with the C library's ``mmap``,
``mremap`` and ``munmap`` through :mod:`ctypes`, and its owner (:class:`dwf.io.guard.GuardedMap`)
decides when.

The swap (:func:`copy_out`): copy the byte ranges views use into anonymous memory, then move
that memory over the file's map with ``mremap(MREMAP_FIXED)`` — one atomic step of the kernel:
a thread reading a view meanwhile sees the file's pages or their copies, which hold the same
bytes, and nothing in between. Afterwards the views are ordinary private memory, which no
truncation of the file can take away. The copy reads the file with ``pread``, not through the
map: a read past a new end of file is a short read, never a signal.

``MAP_PRIVATE`` would not do the same: a private page that was never written is still the
file's page, and touching it past a new end of the file faults like a shared one.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterable

PAGE = mmap.PAGESIZE
_MREMAP_MAYMOVE = 1
_MREMAP_FIXED = 2
_FAILED = ctypes.c_void_p(-1).value
# Every copied byte of a swap that came too late (the file had changed already) reads as NaN.
_POISON = 0xFF


def page_span(start: int, stop: int, length: int) -> tuple[int, int]:
    """``start..stop`` widened to whole pages, within a map of ``length`` bytes."""
    return start - start % PAGE, min(-(-stop // PAGE) * PAGE, rounded(length))


def rounded(length: int) -> int:
    """``length`` up to a whole number of pages: the length of the map's address range."""
    return -(-length // PAGE) * PAGE


def merged(spans: Iterable[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Byte ranges widened to pages, sorted, with overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted(page_span(a, b, length) for a, b in spans if b > a):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def map_file(fd: int, length: int, *, private: bool = False) -> int:
    """Map ``length`` bytes of ``fd`` from offset 0; the address. Read-only and shared, or
    ``private``: writable copy-on-write (writes stay in this process, never reach the file)."""
    if private:
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE
    else:
        prot, flags = mmap.PROT_READ, mmap.MAP_SHARED
    addr = _c().mmap(None, length, prot, flags, fd, 0)
    if addr in (None, _FAILED):
        raise _error("mmap")
    return int(addr)


def unmap(addr: int, length: int) -> None:
    """Unmap what :func:`map_file` (or :func:`copy_out`) left at ``addr``."""
    if _c().munmap(addr, rounded(length)) != 0:
        raise _error("munmap")


def copy_out(
    addr: int,
    length: int,
    fd: int,
    spans: Iterable[tuple[int, int]],
    unchanged: Callable[[], bool],
    *,
    private: bool = False,
) -> bool:
    """Replace the map at ``addr`` by private memory holding the same bytes in ``spans``.

    ``spans`` are byte ranges of the file (the parts views were made of); the rest of the
    address range becomes zero pages, which cost no memory. Call it while the file cannot
    change (a lease is being broken, the writer waits). ``unchanged`` says whether that held:
    if the file had changed already (or a read came up short), the copied ranges are filled
    with NaN instead of a mix of two files' bytes, and the result is ``False``.

    A ``private`` map (see :func:`map_file`) may hold this process's own writes: its bytes are
    copied from the map itself, through ``/proc/self/mem`` — a read of a page past a new end
    of the file there is an error, not a signal — and the copy stays writable.

    Raises:
        OSError: memory could not be had, or the swap failed; the map is then as it was.
    """
    c = _c()
    size = rounded(length)
    anon = c.mmap(
        None,
        size,
        mmap.PROT_READ | mmap.PROT_WRITE,
        mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
        -1,
        0,
    )
    if anon in (None, _FAILED):
        raise _error("mmap")
    anon = int(anon)
    memory = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC) if private else -1
    try:
        ranges = merged(spans, length)
        whole = True
        for start, stop in ranges:
            n = min(stop, length) - start
            if private:
                whole &= _pread_into(memory, anon + start, n, addr + start)
            else:
                whole &= _pread_into(fd, anon + start, n, start)
        if not (whole and unchanged()):
            for start, stop in ranges:
                ctypes.memset(anon + start, _POISON, stop - start)
            whole = False
        if not private and c.mprotect(anon, size, mmap.PROT_READ) != 0:
            raise _error("mprotect")
        moved = c.mremap(anon, size, size, _MREMAP_MAYMOVE | _MREMAP_FIXED, addr)
        if moved in (None, _FAILED) or int(moved) != addr:
            raise _error("mremap")
    except BaseException:
        c.munmap(anon, size)
        raise
    finally:
        if memory >= 0:
            os.close(memory)
    return whole


def _pread_into(fd: int, addr: int, n: int, offset: int) -> bool:
    """Read ``n`` bytes at ``offset`` of ``fd`` into memory at ``addr``; whether all came."""
    view = memoryview((ctypes.c_char * n).from_address(addr)).cast("B")
    done = 0
    while done < n:
        try:
            got = os.preadv(fd, [view[done:]], offset + done)
        except OSError:
            return False
        if got <= 0:
            return False
        done += got
    return True


def _error(call: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{call}: {os.strerror(err)}")


_LIBC: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    """The C library, with the prototypes of the calls used here."""
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        vp, size_t, cint = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        libc.mmap.restype = vp
        libc.mmap.argtypes = [vp, size_t, cint, cint, cint, ctypes.c_long]
        libc.munmap.restype = cint
        libc.munmap.argtypes = [vp, size_t]
        libc.mprotect.restype = cint
        libc.mprotect.argtypes = [vp, size_t, cint]
        libc.mremap.restype = vp
        libc.mremap.argtypes = [vp, size_t, size_t, cint, vp]
        _LIBC = libc
    return _LIBC
