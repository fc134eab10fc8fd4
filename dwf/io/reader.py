"""An open weights file (:class:`WeightsFile`) and its layers (:class:`Layer`): one read-only
map, zero-copy views handed out on demand, change detection, and close() that is safe while
other threads read.

Where the bytes come from (a local file or a URL, its identity, reads at an offset) is the
file's :class:`~dwf.io.source.ByteSource`; opening (finding the cfg, the header, fitting the
size) is :mod:`dwf.io.opening`; bulk reads through bounded buffers are
:mod:`dwf.io.streaming`; the view itself is made in :mod:`dwf.io.views`. The memory map is made
in one place, :meth:`WeightsFile._map_body`, under a lease (:mod:`dwf.io.guard`: a view held
keeps its values whatever another process does to the file). This module is longer than the
~500 lines a module here usually has: it is the one class users hold, and its small methods
(the mapping protocol, the facts, the life cycle) read best together.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NoReturn, SupportsIndex

import numpy as np

from dwf.errors import (
    ArrayError,
    ArrayNotFoundError,
    ClosedFileError,
    DwfError,
    FileChangedError,
    LayerNotFoundError,
    LayerNotInFileError,
)
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.format.records import F32, ArraySpec, LayerPlan, replace_offset
from dwf.io import extensions
from dwf.io.source import ByteSource
from dwf.io.streaming import STREAM_FLOATS, ArrayReads
from dwf.io.views import logical_view

if TYPE_CHECKING:
    from dwf.interfaces.graph import Graph, Highlight
    from dwf.io.guard import GuardedMap, Refusal
    from dwf.tools.check import CheckReport
    from dwf.tools.stats import ArrayStats

Array = np.ndarray[Any, np.dtype[np.float32]]
Backend = Literal["mmap", "pread", "remote"]


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
        self.file.require(self.plan)
        return {a.name: self.file._view(a) for a in self.plan.arrays}

    def array(self, name: str) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The view of array ``name``, or ``None`` if the layer has no such array."""
        spec = self.plan.array(name)
        if spec is None:
            return None
        self.file.require(self.plan)
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

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise _stays(self.file.path, f"layer {self.name} of an open file", self.name)


class WeightsFile:
    """An open ``.weights`` file: its header, its plan and lazy views of its arrays.

    Use :func:`dwf.open` to create one. Iterating gives the names of the layers that hold
    arrays in this file, in file order.

    Attributes:
        path: the weights file (a URL with its credentials redacted).
        header: the decoded :class:`dwf.Header`.
        plan: the :class:`dwf.Plan` the file was read with.
        size: the file's size in bytes.
        available_floats: how many float32 elements of the body the file holds.
        partial: the file ends exactly on a layer boundary before the end of the network
            (as ``darknet partial`` writes).
        mismatch: the file's size does not match the cfg (only with ``strict=False``).
        trailing_bytes: bytes after the last layer (only with ``strict=False``).
        source: where its bytes come from (:class:`dwf.io.source.ByteSource`: a local file or
            a URL).
    """

    def __init__(
        self,
        plan: Plan,
        header: Header,
        source: ByteSource,
        *,
        partial: bool,
        mismatch: str | None,
        backend: Backend = "mmap",
    ) -> None:
        self.source = source
        self.path = source.name
        self.plan = plan
        self.header = header
        self.size = size = source.size
        body_floats = max(size - header.size, 0) // 4
        self.available_floats = min(body_floats, plan.total_floats)
        self.trailing_bytes = max(size - plan.expected_size(header.size), 0)
        self.partial = partial
        self.mismatch = mismatch
        self.backend = backend
        self._lock = threading.Lock()
        self._closed = False
        # The map is made with the first view, under a lease (dwf/io/guard.py); where no lease
        # can be had, views are owned copies.
        self._guard: GuardedMap | None = None
        self._refusal: Refusal | None = None
        self._guard_lock = threading.Lock()
        try:
            source.check_unchanged()  # since its size was read: then it is not mapped, or read
        except FileChangedError as e:
            raise FileChangedError(
                f"the file changed while it was being opened (its size went from"
                f" {_fmt(e.opened[0])} to {_fmt(e.now[0])} bytes); open it again",
                path=self.path,
                opened=e.opened,
                now=e.now,
            ) from None
        self._reads = ArrayReads(source, plan, header, self.available_floats, self.require)
        # Layer objects are made when first asked for: opening a 10,000-layer network to look at
        # one layer makes one.
        self._layers: list[Layer | None] = [None] * len(plan.layers)

    def _map_body(self, *, private: bool = False) -> GuardedMap | Refusal:
        """The one place a memory map of the file is made: read-only (the views), or ``private``
        (copy-on-write: writes stay in this process), always under a lease, so that what is
        made of it keeps its values whatever another process does to the file
        (:mod:`dwf.io.guard`); or why that cannot be (then views are owned copies). A file
        that changed since it was opened is never mapped.

        Raises:
            FileChangedError: the file changed since it was opened.
        """
        from dwf.io import guard  # ctypes, fcntl, the watcher: with the first view only

        fd = self.source.fileno()
        if fd is None:
            return guard.Refusal("a URL is not mapped", True)
        with self.source.in_use():
            self.source.check_unchanged()
            return guard.GuardedMap.open(fd, self.size, self.source.identity.pair, private=private)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """A :class:`Layer` for every layer of the plan, in Darknet's order."""
        return tuple(self._layer(i) for i in range(len(self._layers)))

    def _layer(self, index: int) -> Layer:
        layer = self._layers[index]
        if layer is None:
            layer = self._layers[index] = Layer(self, self.plan.layers[index])
        return layer

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
                e.reason, key=e.key, suggestions=e.suggestions, path=self.path
            ) from None
        self.require(lp)
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
    def cut_short(self) -> str | None:
        """Why the file was probably cut short, when it ends on a layer boundary but its
        ``seen`` is not 0 (Darknet's ``partial`` and ``dwf cut`` write 0; old tools wrote such
        backbones, so it still opens): else ``None``."""
        if not self.partial or not self.header.seen:
            return None
        held = f"layers 0..{self.last_layer}" if self.last_layer >= 0 else "no layer"
        return (
            f"the file ends at a layer boundary ({held} of {len(self.plan.layers)}), but seen ="
            f" {self.header.seen:,}; Darknet's `partial` writes 0 — probably cut short"
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """The plan's warnings (:attr:`dwf.Plan.warnings`: cfg lines Darknet warns about or
        accepts silently), then the file's own (:attr:`cut_short`)."""
        own = self.cut_short
        return self.plan.warnings if own is None else (*self.plan.warnings, own)

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
                f"replace names arrays not in the written layers{hint}: {', '.join(unknown[:5])}"
                f"{writer.did_you_mean(self.plan, unknown)}; names are '<layer>.<array>' such as"
                " 'conv_0.weights'"
            )
        checked = {k: writer.as_array(*known[k], v) for k, v in wanted.items()}
        for lp in layers:
            if lp.arrays and not any(f"{lp.name}.{a.name}" in checked for a in lp.arrays):
                self.require(lp)  # fail before writing anything if the source lacks a layer

        def get(lp: LayerPlan, a: ArraySpec) -> Any:
            key = f"{lp.name}.{a.name}"
            if key in checked:
                return checked[key]
            self.require(lp)
            # pread, not the map: a file truncated meanwhile raises instead of faulting
            return self.read_array(a)

        return writer.write_arrays(
            dst,
            self.plan,
            get,
            header=header,
            upto=n,
            inputs=self.sources,
            reading=self.consistent(),
        )

    @property
    def sources(self) -> tuple[str | int | None, ...]:
        """What a write made from this file must never replace: the open file (its descriptor,
        so the same inode under any name), its path and its cfg's path."""
        local = self.source.local_path
        if self._closed or local is None:
            return (local, self.plan.cfg_path)
        return (self.source.fileno(), local, self.plan.cfg_path)

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

    def graph(self, *, highlight: Highlight | None = None, cut: int | None = None) -> Graph:
        """A picture of the network (layers as boxes, routes and shortcuts as edges) that
        displays inline in a notebook; the same as :func:`dwf.graph`."""
        picture: Graph = extensions.call("graph", self, highlight=highlight, cut=cut)
        return picture

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
            "total_params": self.plan.total_params,
            "total_trainable": self.plan.total_trainable,
            "total_bflops": self.plan.total_bflops,
            "total_output_bytes": self.plan.total_output_bytes,
            "complete": self.complete,
            "partial": self.partial,
            "last_layer": self.last_layer,
            "mismatch": self.mismatch,
            "warnings": list(self.warnings),
            "layers": [
                {**lp.to_dict(h.size), "in_file": self.holds(lp)}
                for lp in (self.plan.layers if layers is None else layers)
            ],
        }

    # -- life cycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the descriptor. Views already handed out stay valid and keep their values
        (they keep the map, its lease and its own descriptor alive). Safe while other threads
        read: each read either completes with the right values or raises
        :class:`dwf.ClosedFileError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Views keep the map, its lease and its own descriptor; the last one releases them.
            self._guard = None
        self.source.close()  # released now, or by the last read in flight

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

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # what pickle, copy.copy and copy.deepcopy call: a clear refusal, not a lock's TypeError
        raise _stays(self.path, "an open file")

    # -- internals -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedFileError("the file was closed", path=self.path)

    def holds(self, layer: LayerPlan | Layer) -> bool:
        """Whether the file holds all of the layer's arrays (``False`` past a partial end)."""
        lp = layer.plan if isinstance(layer, Layer) else layer
        return lp.stop <= self.available_floats

    @property
    def stored(self) -> tuple[LayerPlan, ...]:
        """The layers that store arrays *and* that this file holds, in file order."""
        return tuple(lp for lp in self.plan.stored if self.holds(lp))

    def require(self, layer: LayerPlan | Layer) -> None:
        """Raise unless the file can give all of the layer's arrays.

        Raises:
            ClosedFileError: the file was closed.
            LayerNotInFileError: the layer's data lie past the end of this (partial or short)
                file.
        """
        self._check_open()
        lp = layer.plan if isinstance(layer, Layer) else layer
        if self.holds(lp):
            return
        start, stop = lp.byte_span(self.header.size)
        what = (
            f"a partial file holding layers 0..{self.last_layer}"
            if self.partial
            else "shorter than the cfg needs"
        )
        raise LayerNotInFileError(
            f"layer {lp.index} ({lp.name}, {lp.type}) needs bytes"
            f" {_fmt(start)}..{_fmt(stop)}, but the file ends at byte {_fmt(self.size)}"
            f" ({what})",
            layer=lp.name,
            span=(start, stop),
            file_size=self.size,
            path=self.path,
        )

    def check_unchanged(self) -> None:
        """Raise :class:`dwf.FileChangedError` if the file changed since it was opened: for a
        local file, its size, modification time or inode; a URL's every response is checked
        as it arrives.

        Every view handed out is checked first; call this to check explicitly.
        """
        self._check_open()
        self._check_guard()
        self.source.check_unchanged()

    def _check_guard(self) -> None:
        """Raise if another process opened the file for writing (or truncated it) since the
        map was made: the views were moved off the file, which is no longer the one opened,
        even if its size and time have not moved yet."""
        guard = self._guard
        if guard is not None and guard.detached is not None:
            raise FileChangedError(
                f"the file changed since it was opened: {guard.detached}. Darknet rewrites"
                " *_last.weights in place during training; views already made keep their"
                " values; reopen the file to see the new one",
                path=self.path,
                opened=self.source.identity.pair,
            )

    def consistent(self) -> contextlib.AbstractContextManager[None]:
        """A block whose reads all come from one version of the file::

            with f.consistent():
                for spec in ...:
                    f.iter_array_chunks(spec) ...

        The file is checked before the first read and after the last — and where its
        modification time cannot be trusted (it was modified seconds before), the bytes read
        are read again and compared — so a file rewritten meanwhile raises
        :class:`dwf.FileChangedError` at the end of the block instead of giving a result made
        of two versions. Every whole-file verb reads inside one (docs/robustness.md). Views are
        not reads: a view keeps the values it had when it was made (dwf/io/guard.py).
        """
        return self.source.consistent()

    def private_body(self) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """A writable float32 array of the file's body over a private copy-on-write map:
        writes land in this process's memory, never in the file; pages are shared with the
        page cache until written, so nothing is copied up front. Guarded like the views: when
        another process is about to change the file, the map is moved to private memory first
        (writes kept). ``None`` where it cannot be guarded (a URL, a file being written, a
        network file system, not Linux …): then read owned copies.

        Raises:
            FileChangedError: the file changed since it was opened.
        """
        from dwf.io.guard import GuardedMap

        self._check_open()
        got = self._map_body(private=True)
        if not isinstance(got, GuardedMap):
            return None
        return got.floats(self.header.size, self.available_floats)

    # -- streaming reads (dwf/io/streaming.py) -------------------------------------------------
    def iter_array_chunks(
        self, spec: ArraySpec, max_floats: int = STREAM_FLOATS, *, align: int = 1
    ) -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
        """The elements of ``spec`` in storage order, as read-only 1-D float32 chunks of at most
        ``max_floats`` elements, read into one buffer reused from chunk to chunk (never through
        the map).

        A chunk is valid only until the next one is asked for: copy what must be kept. With
        ``align`` ≤ ``max_floats`` every chunk but the last holds a multiple of ``align``
        elements (whole rows of a matrix of ``align`` columns). The chunks are one
        :meth:`consistent` read.

        Raises:
            FileChangedError: the file changed since it was opened, or ends early (a short read).
            LayerNotInFileError: the array lies past the end of this (partial) file.
        """
        return self._reads.iter_array_chunks(spec, max_floats, align=align)

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
        return self._reads.iter_logical_chunks(spec, max_floats)

    def read_array(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A new, writable array holding ``spec``'s values in its logical shape, read into
        memory it owns (never through the map). Meant for arrays that fit in memory comfortably
        (biases, batch-norm vectors, one layer); use :meth:`iter_array_chunks` for whole files.

        Raises:
            FileChangedError: the file changed since it was opened, or ends early.
        """
        return self._reads.read_array(spec)

    def copy_range_to(self, out_fd: int, start: int, stop: int, out_offset: int) -> None:
        """Copy bytes ``start..stop`` of this file to ``out_fd`` at ``out_offset``, in the kernel
        where it can (``os.copy_file_range``, else ``os.sendfile``), else through a bounded
        buffer. Used by :func:`dwf.cut`.

        Raises:
            FileChangedError: the file changed since it was opened, or ends before ``stop``.
        """
        self._reads.copy_range_to(out_fd, start, stop, out_offset)

    # -- internals -----------------------------------------------------------------------------
    def _view(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]]:
        self._check_open()
        self._check_guard()
        self.source.check_unchanged()
        flat = self._guarded(spec) if self.backend == "mmap" else None
        if flat is None:
            return self._read_copy(spec)
        return logical_view(flat, replace_offset(spec, 0), self.header.connected_transposed)

    def _guarded(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The zero-copy floats of ``spec`` from the guarded map (made with the first view), or
        ``None`` where no lease can be had: the view is then an owned copy."""
        guard = self._guard
        if guard is None:
            if self._refusal is not None and self._refusal.lasting:
                return None
            from dwf.io.guard import GuardedMap

            with self._guard_lock:
                if self._guard is None:
                    got = self._map_body()
                    if not isinstance(got, GuardedMap):
                        self._refusal = got
                        return None
                    with self._lock:
                        if not self._closed:  # closed meanwhile: the view alone keeps it
                            self._guard, self._refusal = got, None
                    guard = got
                else:
                    guard = self._guard
        flat = guard.floats(self.header.size + 4 * spec.offset, spec.count)
        if flat is None:
            self._check_guard()  # detached: the file is being rewritten
        return flat

    @property
    def view_mode(self) -> str:
        """How views are made now: ``"zero-copy (guarded by a file lease)"``, or ``"owned
        copies: <why>"`` (``backend="pread"``, a file being written, a network file system,
        another platform …), or, once another process opened the file for writing,
        ``"none: <why>"`` (views already made keep their values). See docs/robustness.md."""
        if self.backend != "mmap":
            return f"owned copies: backend={self.backend!r}"
        guard, refusal = self._guard, self._refusal
        if guard is not None:
            if guard.detached is not None:
                return f"none: {guard.detached}; views already made keep their values"
            return "zero-copy (guarded by a file lease)"
        if refusal is not None:
            return f"owned copies: {refusal.reason}"
        from dwf.io import leases

        fd = None if self._closed else self.source.fileno()
        why = leases.unsupported(fd) if fd is not None else "the file is closed"
        return f"owned copies: {why}" if why else "zero-copy (guarded by a file lease)"

    def _read_copy(self, spec: ArraySpec) -> np.ndarray[Any, np.dtype[np.float32]]:
        start = self.header.size + 4 * spec.offset
        flat = np.empty(spec.count, dtype=F32)
        with self.source.consistent():  # the same file after the read as before it
            got = self.source.read_into(flat.data.cast("B"), start) if spec.count else 0
        if got != spec.nbytes:
            raise FileChangedError(
                f"short read at bytes {_fmt(start)}..{_fmt(start + spec.nbytes)}:"
                " the file shrank since it was opened",
                path=self.path,
                opened=self.source.identity.pair,
            )
        flat.flags.writeable = False  # a copy, but read-only as every view is
        shifted = replace_offset(spec, 0)
        legacy = self.header.connected_transposed
        return logical_view(flat, shifted, legacy)


def _stays(path: str, what: str, layer: str | None = None) -> DwfError:
    """Why an open file (or one of its layers) cannot be pickled or copied."""
    then = f', then f["{layer}"]' if layer else ""
    return DwfError(
        f"{what} cannot be pickled or copied: it holds the file's descriptor and map, which"
        f" stay in this process; send its path and plan and open it there (dwf.open(f.path,"
        f" cfg=f.plan){then})",
        path=path,
    )


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
