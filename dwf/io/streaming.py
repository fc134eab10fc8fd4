"""Streaming reads of an open weights file: bounded, reused buffers, never the map.

Whole-file work (check, stats, diff, export, fuse, cut) reads through these methods, not through
views: a file truncated under them then gives a short read and :class:`dwf.FileChangedError` —
touching a map past the new end would kill the process with SIGBUS — and the memory they use is
their buffers', whatever the size of the file. Views handed to users keep the map.

The methods are a mixin of :class:`dwf.WeightsFile` (they use its descriptor, guarded against a
concurrent ``close()``, or its remote source); they live here so that the reader module holds
the file and its views, and this one the bulk reading.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from dwf.errors import FileChangedError, LayerNotInFileError
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.format.records import F32, ArraySpec, LayerPlan, replace_offset
from dwf.io.views import logical_view, pread_all

if TYPE_CHECKING:
    from dwf.io import remote

# Streaming reads: 1 Mi floats (4 MiB) per chunk unless the caller asks for less.
STREAM_FLOATS = 1 << 20
# Bytes per kernel copy call: large enough to be cheap, small enough to notice a change soon.
_COPY_STEP = 64 << 20
# copy_file_range refuses across file systems (EXDEV, old kernels), on some file systems
# (EINVAL, EOPNOTSUPP) or under seccomp (ENOSYS, EPERM): copy through a buffer instead.
_NO_KERNEL_COPY = {
    getattr(errno, name)
    for name in ("EXDEV", "EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "EPERM")
    if hasattr(errno, name)
}


def _fmt(n: int) -> str:
    return f"{n:,}"


class StreamingReads:
    """Bulk reads of a :class:`dwf.WeightsFile` (see the module's docstring)."""

    # What the mixin uses of WeightsFile (set by its __init__).
    path: str
    plan: Plan
    header: Header
    size: int
    available_floats: int
    _fd: int
    _opened: tuple[int, int]
    _source: remote.RemoteSource | None

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _require(self, lp: LayerPlan) -> None: ...

        def check_unchanged(self) -> None: ...

        def _using_fd(self) -> contextlib.AbstractContextManager[Any]: ...

    def iter_array_chunks(
        self, spec: ArraySpec, max_floats: int = STREAM_FLOATS, *, align: int = 1
    ) -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
        """The elements of ``spec`` in storage order, as read-only 1-D float32 chunks of at most
        ``max_floats`` elements, read with ``pread`` into one buffer reused from chunk to chunk.

        A chunk is valid only until the next one is asked for: copy what must be kept. With
        ``align`` ≤ ``max_floats`` every chunk but the last holds a multiple of ``align``
        elements (whole rows of a matrix of ``align`` columns).

        Raises:
            FileChangedError: the file changed since it was opened, or ends early (a short read).
            LayerNotInFileError: the array lies past the end of this (partial) file.
        """
        self._stream_start(spec)
        step = max(1, int(max_floats))
        if 1 < align <= step:
            step -= step % align
        buf = np.empty(min(step, spec.count), dtype=F32)
        start = self.header.size + 4 * spec.offset
        for first in range(0, spec.count, step):
            n = min(step, spec.count - first)
            chunk = buf[:n]
            self._stream_into(chunk, start + 4 * first, spec)
            out = chunk.view()
            out.flags.writeable = False
            yield out

    def iter_logical_chunks(
        self, spec: ArraySpec, max_floats: int = STREAM_FLOATS
    ) -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
        """The elements of ``spec`` in its *logical* C order (the order of ``np.ravel`` of its
        view), as 1-D float32 chunks, each valid only until the next is asked for.

        For arrays stored as they are seen this is :meth:`iter_array_chunks`. A stored-transposed
        array (conv ``flipped=1``, connected weights in legacy files) is regrouped by whole
        logical rows: each block of rows needs one pass over the array, so an array of ``S``
        floats costs ``ceil(S / max_floats)`` passes and ``2 · max_floats`` floats of memory.
        Such arrays are small in practice (one pass); a single logical row longer than
        ``max_floats`` is read whole.
        """
        if not spec.stored_transposed(self.header.connected_transposed) or len(spec.shape) < 2:
            yield from self.iter_array_chunks(spec, max_floats)
            return
        rows = spec.shape[0]
        cols = spec.count // rows if rows else 0
        if not rows or not cols:
            return
        per = max(1, max_floats // cols)  # logical rows per block
        step = max(max_floats, rows)  # whole stored rows per chunk, however long
        block = np.empty((min(per, rows), cols), dtype=F32)
        for r0 in range(0, rows, per):
            r1 = min(rows, r0 + per)
            out = block[: r1 - r0]
            # The bytes hold the (cols, rows) matrix: logical row r is stored column r.
            done = 0
            for chunk in self.iter_array_chunks(spec, step, align=rows):
                k = chunk.size // rows
                out[:, done : done + k] = chunk.reshape(k, rows)[:, r0:r1].T
                done += k
            yield out.reshape(-1)

    def read_array(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A new, writable array holding ``spec``'s values in its logical shape, read with
        ``pread`` (never through the map). Meant for arrays that fit in memory comfortably
        (biases, batch-norm vectors, one layer); use :meth:`iter_array_chunks` for whole files.

        Raises:
            FileChangedError: the file changed since it was opened, or ends early.
        """
        self._stream_start(spec)
        flat = np.empty(spec.count, dtype=F32)
        self._stream_into(flat, self.header.size + 4 * spec.offset, spec)
        arr = logical_view(flat, replace_offset(spec, 0), self.header.connected_transposed)
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def copy_range_to(self, out_fd: int, start: int, stop: int, out_offset: int) -> None:
        """Copy bytes ``start..stop`` of this file to ``out_fd`` at ``out_offset``, in the kernel
        where it can (``os.copy_file_range``, else ``os.sendfile``), else through a bounded
        buffer. Used by :func:`dwf.cut`.

        Raises:
            FileChangedError: the file changed since it was opened, or ends before ``stop``.
        """
        self.check_unchanged()
        if stop > self.size:
            self._short(start, stop, max(self.size - start, 0))
        pos, dst = start, out_offset
        kernel = hasattr(os, "copy_file_range") or hasattr(os, "sendfile")
        while pos < stop:
            want = min(stop - pos, _COPY_STEP)
            n = self._copy_step(out_fd, pos, dst, want, kernel)
            if n < 0:  # no kernel copy here: by hand from now on
                kernel = False
                continue
            if n == 0:
                self._short(start, stop, pos - start)
            pos += n
            dst += n
        self.check_unchanged()  # a rewrite in place (same size) is caught too

    def _copy_step(self, out_fd: int, pos: int, dst: int, want: int, kernel: bool) -> int:
        """One step of :meth:`copy_range_to`: bytes copied (0 at the end of the file), or -1
        when the kernel cannot copy between these files. Holds the descriptor meanwhile."""
        with self._using_fd():
            if kernel and self._source is None:
                try:
                    if hasattr(os, "copy_file_range"):
                        return os.copy_file_range(self._fd, out_fd, want, pos, dst)
                    # no copy_file_range (not Linux): sendfile, where it copies between files
                    os.lseek(out_fd, dst, os.SEEK_SET)
                    return os.sendfile(out_fd, self._fd, pos, want)
                except OSError as e:
                    if e.errno not in _NO_KERNEL_COPY:
                        raise
                    return -1  # another file system, or not supported: copy by hand
            try:
                if self._source is not None:
                    data = self._source.pread(want, pos)
                else:
                    data = os.pread(self._fd, want, pos)
            except OSError as e:
                raise self._read_failed(pos, pos + want, e) from None
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += os.pwrite(out_fd, view[written:], dst + written)
            return len(view)

    def _stream_start(self, spec: ArraySpec) -> None:
        self._check_open()
        if spec.stop > self.available_floats:
            lp = self._layer_of(spec)
            if lp is not None:
                self._require(lp)
            raise LayerNotInFileError(
                f"array {spec.name} lies past the end of the file",
                layer=lp.name if lp is not None else "",
                span=spec.byte_span(self.header.size),
                file_size=self.size,
                path=self.path,
            )
        self.check_unchanged()

    def _stream_into(
        self, out: np.ndarray[Any, np.dtype[np.float32]], offset: int, spec: ArraySpec
    ) -> None:
        """Fill ``out`` (contiguous) with the bytes at ``offset``; a short read means the file
        shrank under us."""
        self._check_open()
        if not out.size:
            return
        mv = out.data.cast("B")
        got = 0
        try:
            # The descriptor is held for the read: close() in another thread waits for it.
            with self._using_fd():
                if self._source is not None:  # backend="remote": one ranged fetch
                    data = self._source.pread(len(mv), offset)
                    got = len(data)
                    mv[:got] = data
                while self._source is None and got < len(mv):
                    if hasattr(os, "preadv"):
                        n = os.preadv(self._fd, [mv[got:]], offset + got)
                    else:  # pragma: no cover - Windows
                        data = pread_all(self._fd, len(mv) - got, offset + got)
                        n = len(data)
                        mv[got : got + n] = data
                    if n == 0:
                        break
                    got += n
        except OSError as e:
            raise self._read_failed(offset, offset + len(mv), e, spec) from None
        if got < len(mv):
            self._short(offset, offset + len(mv), got, spec)

    def _read_failed(
        self, start: int, stop: int, e: OSError, spec: ArraySpec | None = None
    ) -> FileChangedError:
        """The error for a read of bytes ``start..stop`` that the system refused."""
        return FileChangedError(
            f"reading bytes {_fmt(start)}..{_fmt(stop)}{self._where(spec)} failed:"
            f" {e.strerror or e}; the file may have changed",
            path=self.path,
            opened=self._opened,
        )

    def _short(self, start: int, stop: int, got: int, spec: ArraySpec | None = None) -> None:
        try:
            st = os.fstat(self._fd)
            now = (st.st_size, st.st_mtime_ns)
        except OSError:
            now = (0, 0)
        raise FileChangedError(
            f"short read at bytes {_fmt(start)}..{_fmt(stop)}{self._where(spec)}:"
            f" (got {_fmt(got)} of {_fmt(stop - start)} bytes): the file shrank since it was opened"
            f" ({_fmt(self._opened[0])} → {_fmt(now[0])} bytes). Darknet rewrites"
            " *_last.weights in place during training; reopen the file",
            path=self.path,
            opened=self._opened,
            now=now,
        )

    def _layer_of(self, spec: ArraySpec) -> LayerPlan | None:
        for lp in self.plan.layers:
            if spec in lp.arrays:
                return lp
        return None

    def _where(self, spec: ArraySpec | None) -> str:
        lp = None if spec is None else self._layer_of(spec)
        if lp is None or spec is None:
            return ""
        return f" (layer {lp.index}, {lp.name}, {lp.type}, array {spec.name})"
