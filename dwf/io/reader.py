"""Open a weights file lazily: one read-only map, zero-copy views handed out on demand.

Opening reads the cfg and the header (the first 20 bytes) and nothing else. The body is mapped
read-only; a view of an array touches only that array's pages when its values are used.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import stat
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dwf.errors import (
    ArrayError,
    ArrayNotFoundError,
    CfgError,
    ClosedFileError,
    DwfError,
    FileChangedError,
    HeaderError,
    LayerNotFoundError,
    LayerNotInFileError,
    SizeMismatchError,
)
from dwf.format.dialects import Dialect, get_dialect
from dwf.format.header import Header, other_width, sniff
from dwf.format.planner import Plan, cfg_text
from dwf.format.planner import plan as plan_cfg
from dwf.format.records import F32, ArraySpec, LayerPlan, replace_offset
from dwf.io import extensions

if TYPE_CHECKING:
    from dwf.io import remote
    from dwf.tools.check import CheckReport
    from dwf.tools.stats import ArrayStats

Array = np.ndarray[Any, np.dtype[np.float32]]
Backend = Literal["mmap", "pread", "remote"]
# A string, not a compiled pattern: re compiles it on the first use (find_cfg), not at import.
_CHECKPOINT_SUFFIX = r"(_last|_best|_final|_\d+)$"
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


class Layer:
    """One layer of an open weights file.

    Arrays are read-only numpy views of the file, created when asked for; nothing is read
    until their values are used.

    Attributes:
        file: the open file it belongs to.
        plan: its :class:`dwf.LayerPlan`.
    """

    # A plain class, not an attrs one: it is on every open's path, and creating an attrs class
    # at import costs more than this whole class does (docs/benchmarks.md).
    __slots__ = ("file", "plan")

    file: WeightsFile
    plan: LayerPlan

    def __init__(self, file: WeightsFile, plan: LayerPlan) -> None:
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "plan", plan)

    def __setattr__(self, name: str, value: Any) -> None:
        # immutable, like the other records: a Layer always shows the layer it was made for
        raise AttributeError(f"can't set attribute {name!r}: a dwf.Layer is immutable")

    @property
    def index(self) -> int:
        """Darknet's 0-based layer index."""
        return self.plan.index

    @property
    def name(self) -> str:
        """``<kind>_<index>``, e.g. ``conv_12``."""
        return self.plan.name

    @property
    def type(self) -> str:
        """Canonical section type, e.g. ``convolutional``."""
        return self.plan.type

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(c, h, w)`` of the layer's output, as Darknet records it."""
        return self.plan.out_shape

    @property
    def span(self) -> tuple[int, int]:
        """``(start, stop)`` byte offsets of the layer's data in the file."""
        return self.plan.byte_span(self.file.header.size)

    @property
    def nbytes(self) -> int:
        """Bytes the layer holds in the file."""
        return 4 * self.plan.count

    @property
    def in_file(self) -> bool:
        """Whether the file holds all of this layer's arrays (``False`` past a partial end)."""
        return self.file.holds(self.plan)

    @property
    def arrays(self) -> dict[str, np.ndarray[Any, np.dtype[np.float32]]]:
        """Array name → read-only view, in file order.

        Raises:
            LayerNotInFileError: the file ends before this layer's data.
        """
        self.file._require(self.plan)
        return {a.name: self.file._view(a) for a in self.plan.arrays}

    def array(self, name: str) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The view of array ``name``, or ``None`` if the layer has no such array."""
        spec = self.plan.array(name)
        if spec is None:
            return None
        self.file._require(self.plan)
        return self.file._view(spec)

    @property
    def weights(self) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The ``weights`` view (conv: ``(n, c // groups, size, size)``), or ``None``."""
        return self.array("weights")

    @property
    def biases(self) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The ``biases`` view, or ``None``."""
        return self.array("biases")

    @property
    def scales(self) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """Batch-norm ``scales`` (gamma), or ``None`` without batch norm."""
        return self.array("scales")

    @property
    def rolling_mean(self) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """Batch-norm running mean, or ``None``."""
        return self.array("rolling_mean")

    @property
    def rolling_variance(self) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """Batch-norm running variance, or ``None``."""
        return self.array("rolling_variance")

    def fused(
        self, eps: float | None = None
    ) -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.ndarray[Any, np.dtype[np.float32]]]:
        """New ``(weights, biases)`` with batch norm folded in (conv and connected layers).

        ``w * scale / sqrt(var + eps)`` per output channel and
        ``bias - mean * scale / sqrt(var + eps)``; ``eps`` defaults to Darknet's 1e-5
        (the dialect's batch-norm epsilon). A layer without batch norm gives copies. The same
        as :func:`dwf.fuse` does to every layer of a file.
        """
        result: tuple[Array, Array] = extensions.call("fuse_layer", self.file, self.index, eps)
        return result

    def stats(self) -> dict[str, ArrayStats]:
        """Statistics of each array (min, max, mean, std, NaN/Inf counts, …), streaming."""
        result: dict[str, ArrayStats] = extensions.call("layer_stats", self)
        return result

    def plot(self, *, bins: int = 60) -> Any:
        """Histograms of the layer's arrays (conv filters also as an image grid); returns the
        matplotlib figure. Needs the ``plot`` extra."""
        return extensions.call("plot_layer", self, bins=bins)

    def _repr_html_(self) -> str:
        html: str = extensions.call("layer_html", self)
        return html

    def keys(self) -> list[str]:
        """Names of the layer's arrays, in file order."""
        return [a.name for a in self.plan.arrays]

    def __getitem__(self, name: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        view = self.array(name)
        if view is None:
            raise ArrayNotFoundError(
                f"{self.name} ({self.type}) has no array {name!r}; it has"
                f" {', '.join(self.keys()) or 'no arrays'}",
                key=name,
                layer=self.name,
                path=self.file.path,
            )
        return view

    def __repr__(self) -> str:
        c, h, w = self.out_shape
        arrays = ", ".join(f"{a.name}{list(a.shape)}" for a in self.plan.arrays) or "no arrays"
        where = "" if self.in_file else ", not in file"
        return f"<dwf.Layer {self.index} {self.name} {self.type} out {c}×{h}×{w}: {arrays}{where}>"


class WeightsFile:
    """An open ``.weights`` file: its header, its plan and lazy views of its arrays.

    Use :func:`dwf.open` to create one. Iterating gives the names of the layers that hold
    arrays in this file, in file order.

    Attributes:
        path: the weights file.
        header: the decoded :class:`dwf.Header`.
        plan: the :class:`dwf.Plan` the file was read with.
        size: the file's size in bytes.
        available_floats: how many float32 elements of the body the file holds.
        partial: the file ends exactly on a layer boundary before the end of the network
            (as ``darknet partial`` writes).
        mismatch: the file's size does not match the cfg (only with ``strict=False``).
        trailing_bytes: bytes after the last layer (only with ``strict=False``).
    """

    def __init__(
        self,
        path: str,
        plan: Plan,
        header: Header,
        size: int,
        *,
        partial: bool,
        mismatch: str | None,
        fd: int,
        backend: Backend = "mmap",
        source: remote.RemoteSource | None = None,
    ) -> None:
        self.path = path
        self.plan = plan
        self.header = header
        self.size = size
        body_floats = max(size - header.size, 0) // 4
        self.available_floats = min(body_floats, plan.total_floats)
        self.trailing_bytes = max(size - plan.expected_size(header.size), 0)
        self.partial = partial
        self.mismatch = mismatch
        self.backend = backend
        self._lock = threading.Lock()
        self._closed = False
        # Reads in flight on the descriptor: close() leaves the descriptor to the last of them,
        # so no thread can ever read through a number the system has since given another file.
        self._users = 0
        self._source = source
        if source is not None:
            self._init_remote(source)
            return
        # The descriptor stays open: fstat on it tells whether *the file we mapped* changed
        # (a rename over the path leaves our inode, and our map, intact).
        st = os.fstat(fd)
        if st.st_size != size:  # it changed since its size was checked: do not map it
            raise FileChangedError(
                f"{path}: the file changed while it was being opened (its size went from"
                f" {_fmt(size)} to {_fmt(st.st_size)} bytes); open it again",
                path=path,
                opened=(size, st.st_mtime_ns),
                now=(st.st_size, st.st_mtime_ns),
            )
        self._map: mmap.mmap | None = None
        self._body: np.ndarray[Any, np.dtype[np.float32]] | None = None
        if self.available_floats and backend == "mmap":
            try:
                self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                self._body = np.frombuffer(
                    self._map, dtype=F32, count=self.available_floats, offset=header.size
                )
            except (OSError, ValueError) as e:  # shrank just now, or cannot be mapped
                if self._map is not None:
                    self._map.close()
                raise FileChangedError(
                    f"{path}: cannot map the file ({e}); it may have changed while it was being"
                    ' opened: open it again, or with backend="pread"',
                    path=path,
                ) from None
        # Only now does this object own the descriptor (on an error above, open_weights closes
        # it; a finalizer registered earlier would close it a second time, maybe someone else's).
        self._fd = fd
        self._release_fd = weakref.finalize(self, os.close, fd)
        self._opened = (st.st_size, st.st_mtime_ns)
        # Layer objects are made when first asked for: opening a 10,000-layer network to look at
        # one layer makes one.
        self._layers: list[Layer | None] = [None] * len(plan.layers)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """A :class:`Layer` for every layer of the plan, in Darknet's order."""
        return tuple(self._layer(i) for i in range(len(self._layers)))

    def _layer(self, index: int) -> Layer:
        layer = self._layers[index]
        if layer is None:
            layer = self._layers[index] = Layer(self, self.plan.layers[index])
        return layer

    def _init_remote(self, source: remote.RemoteSource) -> None:
        """backend="remote": no descriptor and no map; the source checks the file's identity on
        every fetch (dwf/io/remote.py), and closing the file closes the source."""
        self.backend = "remote"
        self._fd = -1
        self._map = None
        self._body = None
        self._release_fd = weakref.finalize(self, source.close)  # type: ignore[call-arg,arg-type]
        self._opened = (self.size, 0)
        self._layers = [None] * len(self.plan.layers)

    # -- mapping protocol over the layers the file holds ----------------------------------------
    def keys(self) -> list[str]:
        """Names of the layers that hold arrays in this file, in file order."""
        return [lp.name for lp in self.plan.layers if lp.layout and self.holds(lp)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        """Whether ``f[key]`` works: any layer of the cfg the file holds — parameter-free ones
        included, unlike :meth:`keys`, which lists only the layers that store arrays."""
        try:
            lp = self.plan.layer(key)  # type: ignore[arg-type]
        except LayerNotFoundError:
            return False
        return self.holds(lp)

    def __getitem__(self, key: int | str) -> Layer:
        """A layer by name (``"conv_12"``) or Darknet index (``12``).

        Raises:
            LayerNotFoundError: no such layer in the cfg.
            LayerNotInFileError: the layer's arrays lie past the end of this file.
        """
        self._check_open()
        try:
            lp = self.plan.layer(key)
        except LayerNotFoundError as e:
            raise LayerNotFoundError(
                f"{self.path}: {e.message}", key=e.key, suggestions=e.suggestions, path=self.path
            ) from None
        self._require(lp)
        return self._layer(lp.index)

    def items(self) -> Iterator[tuple[str, Layer]]:
        """``(name, layer)`` for every layer holding arrays in this file."""
        for name in self.keys():
            yield name, self[name]

    # -- facts ---------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """The file holds every array the cfg plans."""
        return self.available_floats == self.plan.total_floats

    @property
    def last_layer(self) -> int:
        """Index of the last layer the file holds: every layer before the first one whose
        arrays are missing (-1 if the first stored layer is already missing)."""
        for lp in self.plan.layers:
            if lp.arrays and not self.holds(lp):
                return lp.index - 1
        return len(self.plan.layers) - 1

    @property
    def cfg_path(self) -> str | None:
        """The cfg file the plan came from."""
        return self.plan.cfg_path

    def arrays(self) -> Iterator[tuple[str, np.ndarray[Any, np.dtype[np.float32]]]]:
        """``("layer.array", view)`` for every array in the file, in file order."""
        for lp in self.plan.layers:
            if not self.holds(lp):
                break
            for a in lp.arrays:
                yield f"{lp.name}.{a.name}", self._view(a)

    def save(
        self,
        dst: str | os.PathLike[str],
        *,
        upto: int | None = None,
        replace: Mapping[str, Any] | None = None,
        header: Header | None = None,
    ) -> str:
        """Write this file's arrays to ``dst``, one array at a time (read with ``pread``).

        Args:
            dst: destination; written atomically. It must not be this file (by path, symlink
                or hard link) nor its cfg: writing over what is being read would destroy it.
            upto: keep only layers ``0..upto-1`` (a partial file, as ``darknet partial``).
            replace: ``{"conv_3.weights": array, ...}`` (or ``{"conv_3": {"weights": ...}}``):
                arrays to write instead of the file's, each of exactly the planned shape.
            header: a new header, e.g. ``attrs.evolve(f.header, seen=0)`` to restart
                training; default: this file's header, or with ``upto`` the header
                ``darknet partial`` writes (``seen`` reset to 0) — the rule of
                :func:`dwf.io.writer.header_to_write`,
                so ``f.save(dst, upto=n)``, ``dwf.save(dst, f.plan, f, upto=n)`` and
                ``dwf.cut(src, dst, n)`` write the same bytes.

        Returns the destination path.

        Raises:
            ArrayError: a replacement names an unknown array or has the wrong shape/dtype.
            LayerNotInFileError: a layer to write lies past the end of this file.
            DwfError: ``dst`` is this file or its cfg, or exists and is not a regular file.
        """
        from dwf.io import writer  # tempfile, shutil …: only when saving

        self._check_open()
        n = writer.check_upto(self.plan, upto)
        header = writer.header_to_write(
            header, upto=upto, dialect=self.plan.dialect, source=self.header
        )
        layers = self.plan.layers[:n]
        wanted = _flatten(replace)
        known = {f"{lp.name}.{a.name}": (lp, a) for lp in layers for a in lp.arrays}
        unknown = [k for k in wanted if k not in known]
        if unknown:
            later = [k for k in unknown if k.split(".", 1)[0] in self.plan.names()]
            hint = " (past upto)" if later and len(later) == len(unknown) else ""
            raise ArrayError(
                f"replace names arrays not in the written layers{hint}: {', '.join(unknown[:5])};"
                " names are '<layer>.<array>' such as 'conv_0.weights'"
            )
        checked = {k: writer.as_array(*known[k], v) for k, v in wanted.items()}
        for lp in layers:
            if lp.arrays and not any(f"{lp.name}.{a.name}" in checked for a in lp.arrays):
                self._require(lp)  # fail before writing anything if the source lacks a layer

        def get(lp: LayerPlan, a: ArraySpec) -> Any:
            key = f"{lp.name}.{a.name}"
            if key in checked:
                return checked[key]
            self._require(lp)
            # pread, not the map: a file truncated meanwhile raises instead of faulting
            return self.read_array(a)

        return writer.write_arrays(dst, self.plan, get, header=header, upto=n, inputs=self.sources)

    @property
    def sources(self) -> tuple[str | int | None, ...]:
        """What a write made from this file must never replace: the open file (its descriptor,
        so the same inode under any name), its path and its cfg's path."""
        if self._closed:
            return (self.path, self.plan.cfg_path)
        return (self._fd, self.path, self.plan.cfg_path)

    def fused(self, eps: float | None = None) -> dict[str, np.ndarray[Any, np.dtype[np.float32]]]:
        """``{"conv_0.weights": …, "conv_0.biases": …}`` with batch norm folded into every
        convolutional and connected layer the file holds (see :meth:`Layer.fused`)."""
        result: dict[str, Array] = dict(extensions.call("fused_arrays", self, eps))
        return result

    def check(self, *, extreme: float = 1e6) -> CheckReport:
        """Scan every array for anomalies (NaN/Inf, bad batch-norm variances, dead filters …),
        layer by layer in bounded memory; the same as :func:`dwf.check`."""
        report: CheckReport = extensions.call("check", self, extreme=extreme)
        return report

    def plot(self) -> Any:
        """Per-layer overview (parameters, weight std and norm); returns the matplotlib figure.
        Needs the ``plot`` extra."""
        return extensions.call("plot_file", self)

    def _repr_html_(self) -> str:
        html: str = extensions.call("file_html", self)
        return html

    def to_dict(self, layers: Iterable[LayerPlan] | None = None) -> dict[str, Any]:
        """What ``dwf info --json`` prints: header, sizes, state and one entry per layer (all,
        or ``layers``)."""
        h = self.header
        return {
            "path": self.path,
            "cfg": self.cfg_path,
            "dialect": self.plan.dialect,
            "header": h.to_dict(),
            "size": self.size,
            "expected_size": self.plan.expected_size(h.size),
            "total_floats": self.plan.total_floats,
            "complete": self.complete,
            "partial": self.partial,
            "last_layer": self.last_layer,
            "mismatch": self.mismatch,
            "warnings": list(self.plan.warnings),
            "layers": [
                {**lp.to_dict(h.size), "in_file": self.holds(lp)}
                for lp in (self.plan.layers if layers is None else layers)
            ],
        }

    # -- life cycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the map and the descriptor. Views already handed out stay valid (they keep
        the map alive). Safe while other threads read: each read either completes with the
        right values or raises :class:`dwf.ClosedFileError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._body = None
            m, self._map = self._map, None
            if self._users == 0:
                self._release_fd()
        if m is not None:
            # Views may still reference the map; it is then released when the last one goes.
            with contextlib.suppress(BufferError):
                m.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> WeightsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "complete"
        if self.partial:
            held = f"layers 0..{self.last_layer}" if self.last_layer >= 0 else "no layers"
            state = f"partial: {held}"
        elif self.mismatch:
            state = "SIZE MISMATCH"
        return (
            f"<dwf.WeightsFile {self.path!r} v{self.header.version} seen={self.header.seen}"
            f" {len(self.plan.layers)} layers, {_fmt(self.plan.total_floats)} floats ({state})>"
        )

    # -- internals -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedFileError(f"{self.path}: the file was closed", path=self.path)

    def holds(self, layer: LayerPlan | Layer) -> bool:
        """Whether the file holds all of the layer's arrays (``False`` past a partial end)."""
        lp = layer.plan if isinstance(layer, Layer) else layer
        return lp.stop <= self.available_floats

    @property
    def stored(self) -> tuple[LayerPlan, ...]:
        """The layers that store arrays *and* that this file holds, in file order."""
        return tuple(lp for lp in self.plan.stored if self.holds(lp))

    def _require(self, lp: LayerPlan) -> None:
        self._check_open()
        if self.holds(lp):
            return
        start, stop = lp.byte_span(self.header.size)
        what = (
            f"a partial file holding layers 0..{self.last_layer}"
            if self.partial
            else "shorter than the cfg needs"
        )
        raise LayerNotInFileError(
            f"{self.path}: layer {lp.index} ({lp.name}, {lp.type}) needs bytes"
            f" {_fmt(start)}..{_fmt(stop)}, but the file ends at byte {_fmt(self.size)}"
            f" ({what})",
            layer=lp.name,
            span=(start, stop),
            file_size=self.size,
            path=self.path,
        )

    @contextlib.contextmanager
    def _using_fd(self) -> Iterator[np.ndarray[Any, np.dtype[np.float32]] | None]:
        """Hold the descriptor open for one read (yields the mapped body, if any).

        Raises:
            ClosedFileError: the file was closed (now or before).
        """
        with self._lock:
            self._check_open()
            self._users += 1
            body = self._body
        try:
            yield body
        finally:
            with self._lock:
                self._users -= 1
                if self._closed and self._users == 0:
                    self._release_fd()

    def check_unchanged(self) -> None:
        """Raise :class:`dwf.FileChangedError` if the file's size or mtime changed since open.

        Every view handed out is checked first; call this to check explicitly.
        """
        if self._source is not None:  # checked by the source on each fetch
            self._check_open()
            return
        with self._using_fd():
            self._check_unchanged()

    def _check_unchanged(self) -> None:
        try:
            st = os.fstat(self._fd)
        except OSError as e:
            raise FileChangedError(
                f"{self.path}: cannot stat the open file: {e.strerror or e}", path=self.path
            ) from None
        now = (st.st_size, st.st_mtime_ns)
        if now != self._opened:
            what = (
                f"its size went from {_fmt(self._opened[0])} to {_fmt(now[0])} bytes"
                if now[0] != self._opened[0]
                else "it was rewritten (modification time changed)"
            )
            raise FileChangedError(
                f"{self.path}: the file changed since it was opened: {what}. Darknet rewrites"
                " *_last.weights in place during training; reopen the file, or open it with"
                ' backend="pread" to read copies that can never fault',
                path=self.path,
                opened=self._opened,
                now=now,
            )

    def _view(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]]:
        with self._using_fd() as body:
            if self._source is None:  # a remote source checks the file on each fetch
                self._check_unchanged()
            if self.backend != "mmap":
                return self._read_copy(spec)
        if body is None:
            body = np.empty(0, dtype=F32)
        return logical_view(body, spec, self.header.connected_transposed)

    def _read_copy(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]]:
        start = self.header.size + 4 * spec.offset
        if self._source is not None:
            data = self._source.pread(spec.nbytes, start)
        else:
            data = _pread(self._fd, spec.nbytes, start)
        if len(data) != spec.nbytes:
            raise FileChangedError(
                f"{self.path}: short read at bytes {_fmt(start)}..{_fmt(start + spec.nbytes)}:"
                " the file shrank since it was opened",
                path=self.path,
                opened=self._opened,
            )
        shifted = replace_offset(spec, 0)
        legacy = self.header.connected_transposed
        return logical_view(np.frombuffer(data, dtype=F32), shifted, legacy)

    # == streaming reads: bounded, reused buffers, never the map ===================================
    # Whole-file work (check, stats, diff, export, fuse, cut) reads through these methods, not
    # through views: a file truncated under them then gives a short read and FileChangedError —
    # touching a map past the new end would kill the process with SIGBUS — and the memory they
    # use is their buffers', whatever the size of the file. Views handed to users keep the map.

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
            if self._source is not None:
                data = self._source.pread(want, pos)
                view = memoryview(data)
                written = 0
                while written < len(data):
                    written += os.pwrite(out_fd, view[written:], dst + written)
                return len(data)
            n = 0
            if kernel:
                try:
                    if hasattr(os, "copy_file_range"):
                        n = os.copy_file_range(self._fd, out_fd, want, pos, dst)
                    else:  # pragma: no cover - macOS has neither; BSD has sendfile to sockets
                        os.lseek(out_fd, dst, os.SEEK_SET)
                        n = os.sendfile(out_fd, self._fd, pos, want)
                except OSError as e:
                    if e.errno not in _NO_KERNEL_COPY:
                        raise
                    return -1  # another file system, or not supported: copy by hand
            else:
                try:
                    data = os.pread(self._fd, want, pos)
                except OSError as e:
                    raise FileChangedError(
                        f"{self.path}: reading bytes {_fmt(pos)}..{_fmt(pos + want)} failed:"
                        f" {e.strerror or e}; the file may have changed",
                        path=self.path,
                        opened=self._opened,
                    ) from None
                n = len(data)
                if n:
                    view = memoryview(data)
                    written = 0
                    while written < n:
                        written += os.pwrite(out_fd, view[written:], dst + written)
            return n

    def _stream_start(self, spec: ArraySpec) -> None:
        self._check_open()
        if spec.stop > self.available_floats:
            lp = self._layer_of(spec)
            if lp is not None:
                self._require(lp)
            raise LayerNotInFileError(
                f"{self.path}: array {spec.name} lies past the end of the file",
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
                        data = _pread(self._fd, len(mv) - got, offset + got)
                        n = len(data)
                        mv[got : got + n] = data
                    if n == 0:
                        break
                    got += n
        except OSError as e:
            raise FileChangedError(
                f"{self.path}: reading bytes {_fmt(offset)}..{_fmt(offset + len(mv))}"
                f"{self._where(spec)} failed: {e.strerror or e}; the file may have changed",
                path=self.path,
                opened=self._opened,
            ) from None
        if got < len(mv):
            self._short(offset, offset + len(mv), got, spec)

    def _short(self, start: int, stop: int, got: int, spec: ArraySpec | None = None) -> None:
        try:
            st = os.fstat(self._fd)
            now = (st.st_size, st.st_mtime_ns)
        except OSError:
            now = (0, 0)
        raise FileChangedError(
            f"{self.path}: short read at bytes {_fmt(start)}..{_fmt(stop)}{self._where(spec)}:"
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


def _flatten(replace: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"conv_3": {"weights": a}}`` and ``{"conv_3.weights": a}`` alike, flat."""
    out: dict[str, Any] = {}
    for key, value in (replace or {}).items():
        if isinstance(value, Mapping):
            for name, v in value.items():
                out[f"{key}.{name}"] = v
        else:
            out[str(key)] = value
    return out


def logical_view(
    body: np.ndarray[Any, np.dtype[np.float32]], spec: ArraySpec, legacy_header: bool
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The zero-copy view of ``spec`` in ``body`` (the file's floats after the header), in its
    logical shape: stored-transposed arrays are returned as a transposed view, not a copy."""
    flat = body[spec.offset : spec.stop]
    shape = spec.shape
    if spec.stored_transposed(legacy_header) and len(shape) >= 2:
        rows = spec.count // shape[0] if shape[0] else 0
        view: np.ndarray[Any, np.dtype[np.float32]] = flat.reshape(rows, shape[0]).T
        return view.reshape(shape)
    return flat.reshape(shape)


def find_cfg(weights: str) -> tuple[str | None, list[str]]:
    """The cfg beside a weights file, by name: ``yolov4.weights`` → ``yolov4.cfg``.

    Also strips checkpoint suffixes (``yolov4_last``, ``yolov4_1000``) and partial-file
    suffixes (``darknet53.conv.74`` → ``darknet53.cfg``). Returns the cfg found (or ``None``)
    and the candidates looked for.
    """
    p = Path(weights)
    stems: list[str] = []
    name = p.name
    while True:
        stem, dot, _ = name.rpartition(".")
        if not dot or not stem:
            break
        stems.append(stem)
        name = stem
    if not stems:  # no extension at all: "yolov4" → yolov4.cfg
        stems.append(p.name)
    for s in list(stems):
        base = s
        while True:
            stripped = re.sub(_CHECKPOINT_SUFFIX, "", base)
            if stripped == base or not stripped:
                break
            stems.append(stripped)
            base = stripped
        if s.endswith(".conv"):
            stems.append(s[: -len(".conv")])
    seen: list[str] = []
    for s in stems:
        cand = str(p.with_name(s + ".cfg"))
        if cand not in seen:
            seen.append(cand)
    for cand in seen:
        if os.path.isfile(cand):
            return cand, seen
    return None, seen


def _resolve_plan(
    path: str, head: bytes, size: int, cfg: str | os.PathLike[str] | Plan | None, dialect: Dialect
) -> Plan:
    if isinstance(cfg, Plan):
        return cfg
    if cfg is None:
        found, looked = find_cfg(path)
        if found is None:
            folder = Path(path).parent
            try:
                others = sorted(x.name for x in folder.glob("*.cfg"))[:8]
            except OSError:
                others = []
            hint = f"; cfg files there: {', '.join(others)}" if others else ""
            from dwf.format.known import identify_head  # the table: only to explain

            ident = identify_head(path, head, size)
            if ident.matches:
                hint += "; by its size " + ident.explain().split("; ", 1)[1]
            raise CfgError(
                "no cfg given and none found beside the weights (looked for "
                + ", ".join(Path(c).name for c in looked)
                + f"); pass cfg=... (dwf: --cfg){hint}",
                path=path,
            )
        cfg = found
    return plan_cfg(cfg, dialect=dialect)


def open_weights(
    path: str | os.PathLike[str],
    cfg: str | os.PathLike[str] | Plan | None = None,
    *,
    dialect: str | Dialect = "alexeyab",
    strict: bool = True,
    header_size: int | None = None,
    backend: Backend = "mmap",
    copy: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> WeightsFile:
    """Open a Darknet weights file lazily.

    Args:
        path: the ``.weights`` file (or a partial ``*.conv.N`` file, or a ``.backup``).
        cfg: its cfg file, or a :class:`dwf.Plan`; ``None`` looks for the ``.cfg`` with the
            same stem beside the weights (also without ``_last``/``_1000``/``.conv.N``).
        dialect: ``"alexeyab"`` (default; also hank-ai) or ``"pjreddie"``.
        strict: raise :class:`dwf.SizeMismatchError` when the size does not fit the cfg;
            with ``False`` the file opens anyway and the layers it holds completely are
            readable.
        header_size: force a 16- or 20-byte header instead of Darknet's version rule.
        backend: ``"mmap"`` (default): one read-only map, zero-copy views. ``"pread"``: every
            access reads the array with ``os.pread`` into new (read-only) memory — slower, but
            it can never fault, even if the file is truncated while open.
        copy: ``True`` is the same as ``backend="pread"``.
        storage_options: for a URL (``https://``, ``s3://`` … any fsspec URL; the ``remote``
            extra): options passed to fsspec, e.g. ``{"key": …, "secret": …,
            "client_kwargs": {"endpoint_url": …}}``. A URL is read with ``backend="remote"``:
            only the bytes of the arrays used are fetched (range requests through a bounded
            cache), as owned read-only copies; ``cfg`` may be a URL too (docs/remote.md).

    Every view is handed out only after checking that the file did not change on disk since it
    was opened (:class:`dwf.FileChangedError` otherwise).

    Raises:
        CfgError: the cfg cannot be found, read or loaded.
        HeaderError: the file is not a Darknet weights file.
        SizeMismatchError: the file does not fit the cfg (``strict=True``).
    """
    spath = os.fspath(path)
    # "://" first: a local path never pays for importing the remote backend (regexes, fsspec)
    if backend == "remote" or ("://" in spath and _is_url(spath)):
        return _open_remote(spath, cfg, get_dialect(dialect), strict, header_size, storage_options)
    if copy:
        backend = "pread"
    if backend not in ("mmap", "pread"):
        raise DwfError(f"backend must be 'mmap' or 'pread', not {backend!r}")
    d = get_dialect(dialect)
    # The weights file is checked before the cfg is looked for, so a mistyped, unreadable or
    # non-weights path is reported as such rather than as "no cfg found beside it".
    fd = _open_fd(spath)
    try:
        size = os.fstat(fd).st_size
        head = _pread(fd, 512, 0)
        header = _decode_header(spath, head, d, header_size)
        plan = _resolve_plan(spath, head, size, cfg, d)
        header, partial, mismatch = _fit(spath, head, header, size, plan, d, header_size, strict)
        return WeightsFile(
            spath, plan, header, size, partial=partial, mismatch=mismatch, fd=fd, backend=backend
        )
    except BaseException:
        os.close(fd)
        raise


_seek_lock = threading.Lock()


def _pread(fd: int, n: int, offset: int) -> bytes:
    """``os.pread``, with a locked seek+read where the platform lacks it (Windows)."""
    if hasattr(os, "pread"):
        chunks = []
        while n > 0:
            chunk = os.pread(fd, n, offset)
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    with _seek_lock:  # pragma: no cover - Windows only
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


def _open_fd(path: str) -> int:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise DwfError(f"{path}: is a directory, not a weights file", path=path)
        if not stat.S_ISREG(st.st_mode):
            raise DwfError(f"{path}: not a regular file", path=path)
        # Non-blocking, then checked again: a FIFO swapped in after the stat cannot block.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DwfError(f"{path}: not a regular file", path=path)
        return fd
    except DwfError:  # a ValueError itself: must not be re-worded by the clause below
        raise
    except FileNotFoundError:
        raise DwfError(f"{path}: weights file not found", path=path) from None
    except PermissionError:
        raise DwfError(f"{path}: permission denied", path=path) from None
    except OSError as e:
        raise DwfError(f"{path}: cannot open: {e.strerror or e}", path=path) from None
    except ValueError as e:  # a NUL byte in the path
        raise DwfError(f"{path!r}: not a usable file name: {e}", path=path) from None


def _decode_header(path: str, head: bytes, d: Dialect, header_size: int | None) -> Header:
    what = sniff(head)
    if len(head) < 16 or what:
        raise HeaderError(
            f"{path}: not a Darknet weights file: {what or f'only {len(head)} bytes'}",
            path=path,
        )
    try:
        return Header.decode(head, dialect=d, size=header_size, path=path)
    except HeaderError:
        raise
    except Exception as e:  # pragma: no cover - decode only raises HeaderError
        raise HeaderError(f"{path}: unreadable header: {e}", path=path) from None


def _fit(
    path: str,
    head: bytes,
    header: Header,
    size: int,
    plan: Plan,
    d: Dialect,
    forced: int | None,
    strict: bool,
) -> tuple[Header, bool, str | None]:
    """Validate the header width against the file size (spec §1.6)."""
    n = plan.total_floats
    if size == header.size + 4 * n:
        return header, False, None
    other = other_width(header.size)
    if forced is None and size == other + 4 * n and len(head) >= other:
        note = (
            f"the version {header.version} implies a {header.size}-byte header, but the file"
            f" fits the cfg exactly with a {other}-byte one (a known Darknet writer bug);"
            f" read with {other} bytes"
        )
        return Header.decode(head, dialect=d, size=other, path=path, note=note), False, None
    body = size - header.size
    if 0 <= body < 4 * n and body % 4 == 0:
        floats = body // 4
        # 0 counts too: `darknet partial cfg weights out 0` writes a header and nothing else.
        if floats in plan.boundaries():
            return header, True, None
    from dwf.format.diagnosis import diagnose  # only when the size does not match

    diagnosis = diagnose(path, head, header, size, plan)
    message = diagnosis.explain()
    if strict:
        raise SizeMismatchError(
            message,
            path=path,
            expected_size=diagnosis.expected_size,
            actual_size=size,
            header_size=header.size,
            first_unfilled=diagnosis.first_unfilled,
            diagnosis=diagnosis,
        )
    return header, False, message



@contextlib.contextmanager
def opened(
    src: str | os.PathLike[str] | WeightsFile,
    cfg: str | os.PathLike[str] | Plan | None = None,
    **options: Any,
) -> Iterator[WeightsFile]:
    """``src`` if it is an open file (left open), else ``src`` opened with ``cfg`` and
    ``options`` as :func:`open_weights` takes them (and closed afterwards): how every verb that
    works on a file accepts either a path or an open file."""
    if isinstance(src, WeightsFile):
        yield src
        return
    with open_weights(src, cfg, **options) as f:
        yield f


# -- backend="remote" ---------------------------------------------------------------------------
def _is_url(path: str) -> bool:
    from dwf.io import remote

    return remote.is_url(path)


def _remote_plan(
    url: str,
    head: bytes,
    size: int,
    cfg: str | os.PathLike[str] | Plan | None,
    d: Dialect,
    storage_options: Mapping[str, Any] | None,
) -> Plan:
    """The plan of a remote file: ``cfg`` a Plan, a local path or a URL; or, when ``None``,
    the cfg beside it on the server, found by the same names as :func:`find_cfg`."""
    from dwf.format.known import identify_head
    from dwf.io import remote

    if isinstance(cfg, Plan):
        return cfg
    if cfg is None:
        base, _, name = url.rpartition("/")
        _, looked = find_cfg(name)
        candidates = [f"{base}/{c}" for c in looked]
        cfg = next(
            (c for c in candidates if remote.exists(c, storage_options=storage_options)), None
        )
        if cfg is None:
            ident = identify_head(url, head, size)
            hint = "; by its size " + ident.explain().split("; ", 1)[1] if ident.matches else ""
            raise CfgError(
                "no cfg given and none found beside the weights on the server (looked for "
                + ", ".join(looked)
                + f"); pass cfg=... (dwf: --cfg){hint}",
                path=url,
            )
    scfg = os.fspath(cfg)
    if not remote.is_url(scfg):
        return plan_cfg(scfg, dialect=d)
    data = remote.read_bytes(scfg, storage_options=storage_options)
    return Plan.from_text(cfg_text(data, scfg), dialect=d, path=scfg)


def _open_remote(
    url: str,
    cfg: str | os.PathLike[str] | Plan | None,
    d: Dialect,
    strict: bool,
    header_size: int | None,
    storage_options: Mapping[str, Any] | None,
) -> WeightsFile:
    from dwf.io import remote

    source = remote.RemoteSource(url, storage_options=storage_options)
    try:
        head = source.pread(512, 0)
        header = _decode_header(url, head, d, header_size)
        plan = _remote_plan(url, head, source.size, cfg, d, storage_options)
        header, partial, mismatch = _fit(url, head, header, source.size, plan, d, header_size,
                                         strict)
        return WeightsFile(
            url, plan, header, source.size, partial=partial, mismatch=mismatch, fd=-1,
            source=source,
        )
    except BaseException:
        source.close()
        raise
