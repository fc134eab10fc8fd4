"""Streaming statistics of arrays in a weights file, in bounded memory.

Each array of a file is read once, with ``pread`` into one reused buffer of at most ``CHUNK``
floats for a check's screen and ``STATS_CHUNK`` for the full statistics (never through the map),
so the memory used does not grow with the file, a file truncated meanwhile gives
:class:`dwf.FileChangedError` rather than SIGBUS, and every pass over a chunk runs from the CPU
cache.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from dwf.format.planner import Plan
from dwf.format.records import ArraySpec
from dwf.io import extensions
from dwf.io.opening import opened
from dwf.io.reader import Layer, WeightsFile
from dwf.tools import batch

# 64 Ki floats = 256 KiB per chunk: each of the few passes over a chunk runs from cache.
CHUNK = 1 << 16
# What a report of a file that does not fit its cfg (opened with strict=False) says first.
MISMATCH_CAUTION = (
    "caution: the file does not fit its cfg (opened with strict=False); its arrays were read"
    " with the cfg's layout and may be misaligned, so these {what} may be artifacts of the"
    " mismatch"
)
# The full statistics make ~8 numpy calls per chunk, ~1 µs of overhead each: twice as many
# floats per chunk halve that share, and 512 KiB (with the scratch) still fits a 1 MiB L2.
# Measured on 256 MiB: 128 Ki 10 % faster than 64 Ki, 256 Ki 40 % slower (out of L2).
STATS_CHUNK = 1 << 17
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32


@attrs.frozen
class ArrayStats:
    """Statistics of one array.

    Attributes:
        count: number of elements.
        nan, inf: non-finite counts.
        zeros: exact zeros (+0.0 and -0.0).
        denormals: non-zero values smaller in magnitude than the smallest normal float32.
        negatives: values < 0.
        min, max, mean, std, absmax: over finite values (NaN when there are none).
        extreme: values with ``|x| > extreme_threshold``.
    """

    count: int
    nan: int
    inf: int
    zeros: int
    denormals: int
    negatives: int
    min: float
    max: float
    mean: float
    std: float
    absmax: float
    extreme: int

    @property
    def zero_fraction(self) -> float:
        """Fraction of exact zeros."""
        return self.zeros / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (NaN and ±inf become ``None``, as JSON has neither)."""
        d = {k: finite_or_none(v) for k, v in attrs.asdict(self).items()}
        d["zero_fraction"] = self.zero_fraction
        return d

    as_dict = to_dict  # the 0.1 name


def finite_or_none(x: Any) -> Any:
    """``x``, except that NaN and ±inf become ``None`` (JSON has neither)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@attrs.frozen
class LayerArrayStats:
    """Statistics of one array of a file, with where it is.

    Attributes:
        index, layer, type: the layer's index, name and type.
        array: the array's name; shape: its shape.
        stats: the :class:`ArrayStats`.
    """

    index: int
    layer: str
    type: str
    array: str
    shape: tuple[int, ...]
    stats: ArrayStats

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, the statistics flattened in (``dwf stats --json``)."""
        return {
            "index": self.index,
            "layer": self.layer,
            "type": self.type,
            "array": self.array,
            "shape": list(self.shape),
            **self.stats.to_dict(),
        }


@attrs.frozen
class StatsReport(extensions.Shown):
    """What :func:`stats` measured: one entry per array, in file order.

    Attributes:
        path: the file.
        arrays: one entry per array, in file order.
        mismatch: the file's size mismatch explanation when it does not fit its cfg (opened
            with ``strict=False``): its arrays were read with the cfg's layout and may be
            misaligned, so the statistics may be artifacts of the mismatch (as
            :attr:`dwf.CheckReport.mismatch`).
    """

    path: str
    arrays: tuple[LayerArrayStats, ...]
    mismatch: str | None = None

    def __getitem__(self, name: str) -> ArrayStats:
        """The statistics of ``"layer.array"`` (``report["conv_0.weights"]``)."""
        for e in self.arrays:
            if f"{e.layer}.{e.array}" == name:
                return e.stats
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf stats --json``)."""
        return {
            "path": self.path,
            "mismatch": self.mismatch,
            "arrays": [e.to_dict() for e in self.arrays],
        }


# |x| below this keeps a block's sum of squares (BLAS_BLOCK values, float32) far from overflow.
_F32_SAFE = 1e15
# A chunk whose largest |x| is below this has squares of at most 1e-36, near the smallest normal
# float32 (1.2e-38): summed in float32 they would lose precision or flush to 0, so float64.
_F32_UNDER = 1e-18
# OpenBLAS runs a dot product on one thread up to 10,000 elements and on every core above:
# dots are taken on blocks of at most this many, so a busy machine cannot stall them.
BLAS_BLOCK = 8192
_ABS_BITS = np.uint32(0x7FFFFFFF)
_TINY_BITS = np.uint32(0x00800000)  # bit pattern of the smallest normal float32
_INF_BITS = 0x7F800000  # magnitude bits at or above this: ±inf or NaN
_SIGN = 1 << 31
_ONES = np.ones(BLAS_BLOCK, dtype=np.float32)
_ONES.flags.writeable = False
_U32, _F32 = struct.Struct("<I"), struct.Struct("<f")
# numpy ≥ 2.0: a gufunc taking one dot per row (each a single-threaded BLAS call for float32)
_VECDOT: Callable[..., np.ndarray[Any, Any]] | None = getattr(np, "vecdot", None)


def blas_dot(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """``a · b`` for 1-D contiguous arrays of one dtype, by blocks of :data:`BLAS_BLOCK`
    elements (each a single-threaded BLAS call), summed in float64."""
    n = int(a.size)
    if n <= BLAS_BLOCK:
        return float(np.dot(a, b))
    total = 0.0
    for i in range(0, n, BLAS_BLOCK):
        total += float(np.dot(a[i : i + BLAS_BLOCK], b[i : i + BLAS_BLOCK]))
    return total


def _row_dots(rows: np.ndarray[Any, Any], other: np.ndarray[Any, Any]) -> float:
    """Sum in float64 of the dot products of each row of ``rows`` with ``other`` (a vector,
    or as many rows): one ``np.vecdot`` call (numpy ≥ 2), else one ``np.dot`` per row."""
    if _VECDOT is not None:
        return float(sum(_VECDOT(rows, other).tolist()))
    others = other if other.ndim == 2 else (other,) * len(rows)
    return sum(float(np.dot(r, o)) for r, o in zip(rows, others, strict=True))


def sum_and_squares(c: np.ndarray[Any, Any]) -> tuple[float, float]:
    """``(Σc, Σc²)`` of a 1-D contiguous float32 vector, summed in float64 over blocks of
    :data:`BLAS_BLOCK` elements.

    Each block is one single-threaded BLAS dot (with itself, and with a vector of ones); all
    the blocks go through ``np.vecdot`` on a ``(blocks, BLAS_BLOCK)`` view, one call for all
    of them: per-call overhead, not arithmetic, is what dominates at this size. A block sums
    8,192 values in float32 with BLAS's many SIMD accumulators (about 1e-7 relative).
    """
    n = int(c.size)
    whole = n - n % BLAS_BLOCK
    s = ss = 0.0
    if whole:
        rows = c[:whole].reshape(-1, BLAS_BLOCK)
        s = _row_dots(rows, _ONES)
        ss = _row_dots(rows, rows)
    if whole < n:
        tail = c[whole:]
        s += float(np.dot(tail, _ONES[: n - whole]))
        ss += float(np.dot(tail, tail))
    return s, ss


def _magnitude_of(bits: int) -> float:
    """The float32 whose bit pattern is ``bits`` (a magnitude: sign bit clear)."""
    return float(_F32.unpack(_U32.pack(bits))[0])


def _bit_extrema(c: np.ndarray[Any, Any]) -> tuple[float, float, bool, bool]:
    """``(min, max, non-finite, small)`` of a float32 vector from four integer reductions of its
    bit patterns (faster than float ones, and they write nothing): ``non-finite`` whether it
    holds a NaN or ±inf (``min`` and ``max`` are then meaningless), ``small`` whether it holds
    a zero or a denormal (a magnitude below the smallest normal float32).

    Read as uint32, a value with the sign bit clear is its magnitude and one with the sign bit
    set is ``2**31 +`` its magnitude; read as int32, the latter is ``-2**31 +`` its magnitude.
    So the uint32 maximum and the int32 minimum give the largest and the smallest magnitude of
    the negative-signed values, the int32 maximum and the uint32 minimum those of the
    positive-signed ones (NaN patterns are the largest magnitudes, above inf's).
    """
    u, i = c.view(np.uint32), c.view(np.int32)
    umax, umin = int(np.maximum.reduce(u)), int(np.minimum.reduce(u))
    imax, imin = int(np.maximum.reduce(i)), int(np.minimum.reduce(i))
    tiny = int(_TINY_BITS)
    has_neg, has_pos = umax >= _SIGN, umin < _SIGN
    non_finite = small = False
    lo = hi = 0.0
    if has_pos:  # magnitudes imax (largest), umin (smallest)
        non_finite = imax >= _INF_BITS
        small = umin < tiny
        hi, lo = _magnitude_of(imax), _magnitude_of(umin)
    if has_neg:  # magnitudes umax - 2**31 (largest), imin + 2**31 (smallest)
        non_finite = non_finite or umax - _SIGN >= _INF_BITS
        small = small or imin + _SIGN < tiny
        lo = -_magnitude_of(umax - _SIGN)
        if not has_pos:
            hi = -_magnitude_of(imin + _SIGN)
    return lo, hi, non_finite, small


def _finite_part(c: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], int, int]:
    """The finite values of ``c`` (a contiguous copy), and how many NaN and ±inf it holds: the
    rare chunk a screen found non-finite values in."""
    ok = np.isfinite(c)
    nan = int(np.count_nonzero(np.isnan(c)))
    inf = int(c.size - np.count_nonzero(ok)) - nan
    return np.ascontiguousarray(c[ok]), nan, inf


class StatsAccumulator:
    """Statistics of an array fed to it in chunks (any order: they do not depend on it).

    Per chunk, the cheap passes decide which costly ones are needed. Four integer reductions
    of the bit patterns (:func:`_bit_extrema`, no write) give min and max and tell whether
    there are non-finite values and zeros or denormals, which then, and only then, are counted;
    the sum and the sum of squares are single-threaded BLAS dots (:func:`sum_and_squares`);
    negatives are counted only when the minimum is negative, extremes only past the threshold.
    Chunk moments are merged in float64 (Chan et al.). A chunk whose mean is large against its
    spread is centred first (two-pass), so the variance never suffers cancellation; a chunk of
    magnitudes whose squares would overflow or underflow float32 is summed in float64.
    """

    def __init__(self, extreme_threshold: float = 1e6, *, negatives: bool = True) -> None:
        self.extreme_threshold = extreme_threshold
        self.count_negatives = negatives  # False: skip that pass (``negatives`` stays 0)
        self.count = self.nan = self.inf = self.zeros = self.small = 0
        self.negatives = self.extreme = self.finite = 0
        self.mean = self.m2 = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self._tmp: np.ndarray[Any, Any] = np.empty(0, dtype=np.float32)
        self._mask: np.ndarray[Any, Any] = np.empty(0, dtype=bool)

    def _scratch(self, k: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        if self._tmp.size < k:
            self._tmp = np.empty(k, dtype=np.float32)
            self._mask = np.empty(k, dtype=bool)
        return self._tmp[:k], self._mask[:k]

    def add(self, chunk: np.ndarray[Any, Any]) -> None:
        """Take in the values of ``chunk`` (any shape; float32)."""
        c = chunk.reshape(-1) if chunk.flags.c_contiguous else np.ravel(chunk)
        if c.dtype != np.float32:
            c = c.astype(np.float32)
        self.count += int(c.size)
        if c.size == 0:
            return
        cmin, cmax, non_finite, small = _bit_extrema(c)
        if non_finite:
            c, nan, inf = _finite_part(c)
            self.nan += nan
            self.inf += inf
            if c.size == 0:
                return
            cmin, cmax, _, small = _bit_extrema(c)
        k = int(c.size)
        tmp, mask = self._scratch(k)
        big = max(-cmin, cmax)
        if big > _F32_SAFE or big < _F32_UNDER:  # squares would leave float32: float64
            c64 = c.astype(np.float64)
            cmean = float(c64.sum()) / k
            d = c64 - cmean
            cm2 = blas_dot(d, d)
        else:
            s, ss = sum_and_squares(c)
            cmean = s / k
            cm2 = ss - s * cmean
            if not cm2 * 4 > ss:  # mean² ≳ variance/3: centre first (no cancellation)
                shift = np.float32(cmean)
                np.subtract(c, shift, out=tmp)
                sd, ssd = sum_and_squares(tmp)
                # the residual sum corrects both the mean and the squares (two-pass algorithm)
                cmean = float(shift) + sd / k
                cm2 = ssd - sd * sd / k
        total = self.finite + k
        delta = cmean - self.mean
        self.mean += delta * k / total
        self.m2 += max(cm2, 0.0) + delta * delta * self.finite * k / total
        self.finite = total
        self.lo, self.hi = min(self.lo, cmin), max(self.hi, cmax)
        if cmin < 0 and self.count_negatives:
            self.negatives += k if cmax < 0 else int(np.count_nonzero(np.less(c, 0, out=mask)))
        # Zeros and denormals are rare: the smallest magnitude decides whether to count them.
        if small:
            bits = tmp.view(np.uint32)
            np.bitwise_and(c.view(np.uint32), _ABS_BITS, out=bits)
            self.zeros += int(np.count_nonzero(np.equal(c, 0, out=mask)))
            self.small += int(np.count_nonzero(np.less(bits, _TINY_BITS, out=mask)))
        if big > self.extreme_threshold:
            t = self.extreme_threshold
            self.extreme += int(np.count_nonzero((c > t) | (c < -t)))

    def result(self) -> ArrayStats:
        """The statistics of everything added so far."""
        if self.finite:
            mean = self.mean
            std = math.sqrt(max(self.m2, 0.0) / self.finite)
            lo, hi = self.lo + 0.0, self.hi + 0.0  # + 0.0: -0.0 becomes 0.0, whatever the chunks
            absmax = max(abs(lo), abs(hi))
        else:
            mean = std = absmax = lo = hi = math.nan
        return ArrayStats(
            self.count,
            self.nan,
            self.inf,
            self.zeros,
            self.small - self.zeros,
            self.negatives,
            lo,
            hi,
            mean,
            std,
            absmax,
            self.extreme,
        )


@attrs.frozen
class ArrayScan:
    """What :func:`dwf.check` needs of one array (:func:`file_array_scan`): the counts of
    :class:`ArrayStats` that make findings, without the moments, extrema and signs.

    Attributes:
        count, nan, inf, zeros, denormals, extreme: as in :class:`ArrayStats`.
        absmax: the largest finite magnitude (NaN when there is none).
    """

    count: int
    nan: int
    inf: int
    zeros: int
    denormals: int
    absmax: float
    extreme: int


class ScanAccumulator:
    """:class:`ArrayScan` of an array fed to it in chunks: a screen that proves most passes
    unnecessary, with results identical to :class:`StatsAccumulator`'s.

    Per chunk, one pass writes the magnitude bits (``raw & 0x7FFFFFFF``) and two integer
    reductions read them: their maximum is the largest magnitude (at or above the bits of inf:
    NaN or ±inf present, then counted exactly and set aside), their minimum the smallest
    (below the smallest normal float32: zeros or denormals present, then counted). Extremes
    are counted only in a chunk whose largest magnitude passes the threshold. No float
    arithmetic touches the values, so signalling NaNs stay quiet.
    """

    def __init__(self, extreme_threshold: float = 1e6) -> None:
        self.extreme_threshold = extreme_threshold
        self.count = self.nan = self.inf = self.zeros = self.small = self.extreme = 0
        self.top = -1  # largest finite magnitude's bits; -1: no finite value yet
        self._bits: np.ndarray[Any, Any] = np.empty(0, dtype=np.uint32)
        self._mask: np.ndarray[Any, Any] = np.empty(0, dtype=bool)

    def add(self, chunk: np.ndarray[Any, Any]) -> None:
        """Take in the values of ``chunk`` (any shape; float32)."""
        c = chunk.reshape(-1) if chunk.flags.c_contiguous else np.ravel(chunk)
        if c.dtype != np.float32:
            c = c.astype(np.float32)
        k = int(c.size)
        self.count += k
        if k == 0:
            return
        if self._bits.size < k:
            self._bits = np.empty(k, dtype=np.uint32)
            self._mask = np.empty(k, dtype=bool)
        bits, mask = self._bits[:k], self._mask[:k]
        np.bitwise_and(c.view(np.uint32), _ABS_BITS, out=bits)
        top = int(np.maximum.reduce(bits))
        if top >= _INF_BITS:  # NaN or ±inf: count them, then screen the finite values
            c, nan, inf = _finite_part(c)
            self.nan += nan
            self.inf += inf
            k = int(c.size)
            if k == 0:
                return
            bits, mask = bits[:k], mask[:k]
            np.bitwise_and(c.view(np.uint32), _ABS_BITS, out=bits)
            top = int(np.maximum.reduce(bits))
        if int(np.minimum.reduce(bits)) < int(_TINY_BITS):  # zeros or denormals: count them
            self.zeros += int(np.count_nonzero(np.equal(bits, 0, out=mask)))
            self.small += int(np.count_nonzero(np.less(bits, _TINY_BITS, out=mask)))
        self.top = max(self.top, top)
        if _magnitude_of(top) > self.extreme_threshold:
            t = self.extreme_threshold
            self.extreme += int(np.count_nonzero((c > t) | (c < -t)))

    def result(self) -> ArrayScan:
        """The scan of everything added so far."""
        absmax = _magnitude_of(self.top) if self.top >= 0 else math.nan
        return ArrayScan(
            self.count,
            self.nan,
            self.inf,
            self.zeros,
            self.small - self.zeros,
            absmax,
            self.extreme,
        )


def file_array_scan(
    f: WeightsFile, spec: ArraySpec, *, extreme_threshold: float = 1e6, chunk: int = CHUNK
) -> ArrayScan:
    """:class:`ArrayScan` of one array of an open file, read as :func:`file_array_stats` reads
    (``pread`` into one reused buffer, never through the map): what :func:`dwf.check` needs,
    in three passes over each chunk (the full statistics take about eight)."""
    acc = ScanAccumulator(extreme_threshold)
    for c in f.iter_array_chunks(spec, chunk):
        acc.add(c)
    return acc.result()


def array_stats(
    view: np.ndarray[Any, Any], *, extreme_threshold: float = 1e6, chunk: int = STATS_CHUNK
) -> ArrayStats:
    """Statistics of ``view`` in one streaming pass over chunks of ``chunk`` floats (see
    :class:`StatsAccumulator`). Mean and std are accurate to about 1e-7 relative, far below the
    4 significant digits dwf displays."""
    flat = view.reshape(-1) if view.flags.c_contiguous else np.ravel(view, order="K")
    acc = StatsAccumulator(extreme_threshold)
    chunk = max(1, int(chunk))
    for start in range(0, int(flat.size), chunk):
        acc.add(flat[start : start + chunk])
    return acc.result()


def file_array_stats(
    f: WeightsFile,
    spec: ArraySpec,
    *,
    extreme_threshold: float = 1e6,
    chunk: int = STATS_CHUNK,
    negatives: bool = True,
) -> ArrayStats:
    """Statistics of one array of an open file, read with ``pread`` in chunks of ``chunk``
    floats into one reused buffer (never through the map): bounded memory, and a file
    truncated meanwhile gives :class:`dwf.FileChangedError`, not a crash. ``negatives=False``
    skips counting negative values (a pass :func:`dwf.check` does not need)."""
    acc = StatsAccumulator(extreme_threshold, negatives=negatives)
    for c in f.iter_array_chunks(spec, chunk):
        acc.add(c)
    return acc.result()


def zero_rows(view: np.ndarray[Any, Any], chunk: int = CHUNK) -> int:
    """How many rows (first axis: filters, output units) are entirely zero."""
    if view.ndim < 2 or view.shape[0] == 0:
        return 0
    rows = view.reshape(view.shape[0], -1)
    per = max(1, chunk // max(rows.shape[1], 1))
    found = 0
    for start in range(0, rows.shape[0], per):
        block = rows[start : start + per]
        with np.errstate(invalid="ignore"):  # signalling NaNs (corrupt data) are non-zero too
            found += int(np.count_nonzero(~block.any(axis=1)))
    return found


def file_zero_rows(f: WeightsFile, spec: ArraySpec, chunk: int = CHUNK) -> int:
    """:func:`zero_rows` of an array of an open file, streamed with ``pread``."""
    return len(file_rows(f, spec, lambda b: b == 0, every=True, chunk=chunk))


def file_rows(
    f: WeightsFile,
    spec: ArraySpec,
    test: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]],
    *,
    every: bool = False,
    chunk: int = CHUNK,
) -> tuple[int, ...]:
    """The rows (indices on the first logical axis: filters, outputs, channels) of an array of
    an open file in which the elementwise ``test`` holds for some value (for every value with
    ``every``), streamed with ``pread``.

    Stored as it is seen, the rows are read in blocks of whole rows. Stored transposed (conv
    ``flipped=1``, connected weights of legacy files), a logical row is a stored *column*: the
    stored rows stream by, and one flag per logical row is all that is kept — no copy of the
    array, whatever its size.
    """
    if not spec.shape or spec.shape[0] == 0 or spec.count == 0:
        return ()
    n = spec.shape[0]
    width = spec.count // n
    if len(spec.shape) >= 2 and spec.stored_transposed(f.header.connected_transposed):
        hit = np.full(n, every, dtype=bool)
        for c in f.iter_array_chunks(spec, max(chunk, n), align=n):
            with np.errstate(invalid="ignore"):
                t = test(c.reshape(-1, n))
            hit = hit & t.all(axis=0) if every else hit | t.any(axis=0)
        return tuple(int(i) for i in np.flatnonzero(hit))
    found: list[int] = []
    row = 0
    for c in f.iter_array_chunks(spec, max(chunk, width), align=width):
        block = c.reshape(-1, width)
        with np.errstate(invalid="ignore"):
            t = test(block)
        rows = t.all(axis=1) if every else t.any(axis=1)
        found += (row + np.flatnonzero(rows)).tolist()
        row += block.shape[0]
    return tuple(found)


def layer_stats(layer: Layer) -> dict[str, ArrayStats]:
    """Statistics of each array of one layer (``layer.stats()``), streamed with ``pread``."""
    layer.file.require(layer.plan)
    with layer.file.consistent():
        return {a.name: file_array_stats(layer.file, a) for a in layer.plan.arrays}


@batch.one_file
def stats(
    src: str | os.PathLike[str] | WeightsFile,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    strict: bool = True,
    layers: Iterable[int | str] | None = None,
    extreme: float = 1e6,
    progress: Callable[[int, int, str], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> StatsReport:
    """Statistics of every array the file holds (``dwf stats``), streaming in bounded memory.

    Many files: ``dwf.each(dwf.stats, files, jobs=...)``.

    Args:
        src: the weights file, open, by path or by URL.
        cfg, dialect, strict: how to open ``src`` when it is a path (see :func:`dwf.open`).
        layers: only these layers (indices or names); default all that hold arrays.
        extreme: magnitude above which values count as extreme.
        progress: called as ``progress(done_floats, total_floats, layer_name)``.
        storage_options: for URLs: options passed to fsspec.
    """
    with opened(src, cfg, dialect=dialect, strict=strict, storage_options=storage_options) as f:
        wanted = None if layers is None else {f.plan.layer(k).index for k in layers}
        chosen = [
            lp
            for lp in f.plan.layers
            if lp.arrays and f.holds(lp) and (wanted is None or lp.index in wanted)
        ]
        total = sum(lp.count for lp in chosen)
        done = 0
        out: list[LayerArrayStats] = []
        with f.consistent():  # the report is of one version of the file, or FileChangedError
            for lp in chosen:
                for a in lp.arrays:
                    st = file_array_stats(f, a, extreme_threshold=extreme)
                    out.append(LayerArrayStats(lp.index, lp.name, lp.type, a.name, a.shape, st))
                    done += a.count
                    if progress is not None:
                        progress(done, total, lp.name)
        return StatsReport(f.path, tuple(out), f.mismatch)
