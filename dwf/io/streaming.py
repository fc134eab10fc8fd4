"""Streaming reads of an open weights file's arrays: bounded, reused buffers, never the map.

Whole-file work (check, stats, diff, export, fuse, cut, save) reads through these methods, not
through views: a file truncated under them then gives a short read and
:class:`dwf.FileChangedError` — touching a map past the new end would kill the process with
SIGBUS — and the memory they use is their buffers', whatever the size of the file. Views handed
to users keep the map.

:class:`ArrayReads` is a part of :class:`dwf.WeightsFile` (its ``iter_array_chunks``,
``read_array`` … call it): it reads through the file's :class:`~dwf.io.source.ByteSource`, and
every read in pieces is one :meth:`~dwf.io.source.ByteSource.consistent` block, so the file is
checked before the first piece and after the last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dwf.errors import FileChangedError, LayerNotInFileError
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.format.records import F32, ArraySpec, LayerPlan, replace_offset
from dwf.io.source import ByteSource
from dwf.io.views import logical_view

# Streaming reads: 1 Mi floats (4 MiB) per chunk unless the caller asks for less.
STREAM_FLOATS = 1 << 20

Array = np.ndarray[Any, np.dtype[np.float32]]


def _fmt(n: int) -> str:
    return f"{n:,}"


class ArrayReads:
    """Bulk reads of the arrays of one open file (see the module's docstring).

    Args:
        source: where the bytes come from.
        plan, header: the file's layout.
        available_floats: how many floats of the body the file holds.
        require: raises :class:`dwf.LayerNotInFileError` (or ``ClosedFileError``) for a layer
            the file cannot give — the file's own rule and message.
    """

    def __init__(
        self,
        source: ByteSource,
        plan: Plan,
        header: Header,
        available_floats: int,
        require: Callable[[LayerPlan], None],
    ) -> None:
        self.source = source
        self.plan = plan
        self.header = header
        self.available_floats = available_floats
        self.require = require

    def iter_array_chunks(
        self, spec: ArraySpec, max_floats: int = STREAM_FLOATS, *, align: int = 1
    ) -> Iterator[Array]:
        """See :meth:`dwf.WeightsFile.iter_array_chunks`."""
        self._start(spec)
        step = max(1, int(max_floats))
        if 1 < align <= step:
            step -= step % align
        buf = np.empty(min(step, spec.count), dtype=F32)
        start = self.header.size + 4 * spec.offset
        with self.source.consistent():
            for first in range(0, spec.count, step):
                n = min(step, spec.count - first)
                chunk = buf[:n]
                self._fill(chunk, start + 4 * first, spec)
                out = chunk.view()
                out.flags.writeable = False
                yield out

    def iter_logical_chunks(
        self, spec: ArraySpec, max_floats: int = STREAM_FLOATS
    ) -> Iterator[Array]:
        """See :meth:`dwf.WeightsFile.iter_logical_chunks`."""
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
        with self.source.consistent():  # the passes over the array are one read
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

    def read_array(self, spec: ArraySpec) -> Array:
        """See :meth:`dwf.WeightsFile.read_array`."""
        self._start(spec)
        flat = np.empty(spec.count, dtype=F32)
        with self.source.consistent():
            self._fill(flat, self.header.size + 4 * spec.offset, spec)
        arr = logical_view(flat, replace_offset(spec, 0), self.header.connected_transposed)
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def copy_range_to(self, out_fd: int, start: int, stop: int, out_offset: int) -> None:
        """See :meth:`dwf.WeightsFile.copy_range_to`."""
        with self.source.consistent():
            if stop > self.source.size:
                self._short(start, stop, max(self.source.size - start, 0))
            copied = self.source.copy_to(out_fd, start, stop, out_offset)
            if copied < stop - start:
                self._short(start, stop, copied)

    # -- internals -----------------------------------------------------------------------------
    def _start(self, spec: ArraySpec) -> None:
        if spec.stop > self.available_floats or self.source.closed:
            lp = self._layer_of(spec)
            if lp is not None:
                self.require(lp)
            if spec.stop > self.available_floats:
                raise LayerNotInFileError(
                    f"array {spec.name} lies past the end of the file",
                    layer=lp.name if lp is not None else "",
                    span=spec.byte_span(self.header.size),
                    file_size=self.source.size,
                    path=self.source.name,
                )

    def _fill(self, out: Array, offset: int, spec: ArraySpec) -> None:
        """Fill ``out`` (contiguous) with the bytes at ``offset``; a short read means the file
        shrank under us."""
        if not out.size:
            return
        mv = out.data.cast("B")
        got = self.source.read_into(mv, offset)
        if got < len(mv):
            self._short(offset, offset + len(mv), got, spec)

    def _short(self, start: int, stop: int, got: int, spec: ArraySpec | None = None) -> None:
        was = self.source.identity
        now = self.source.now()
        size = now.size if now is not None else 0
        raise FileChangedError(
            f"short read at bytes {_fmt(start)}..{_fmt(stop)}{self._where(spec)}:"
            f" (got {_fmt(got)} of {_fmt(stop - start)} bytes): the file shrank since it was opened"
            f" ({_fmt(was.size)} → {_fmt(size)} bytes). Darknet rewrites"
            " *_last.weights in place during training; reopen the file",
            path=self.source.name,
            opened=was.pair,
            now=now.pair if now is not None else (0, 0),
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
