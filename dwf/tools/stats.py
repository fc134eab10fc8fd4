"""Streaming statistics of arrays in a weights file, in bounded memory.

Each array is read once, in chunks of at most ``CHUNK`` floats, so the memory used does not
grow with the file: the map's pages are read by the kernel as the chunks are touched and can be
dropped again, and the temporaries are chunk-sized.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, overload

import attrs
import numpy as np

from dwf.format.planner import Plan
from dwf.io.reader import Layer, WeightsFile, opened
from dwf.tools import batch
from dwf.tools.batch import Many, Row

# 64 Ki floats = 256 KiB per chunk: each of the few passes over a chunk runs from cache.
CHUNK = 1 << 16
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
class StatsReport:
    """What :func:`stats` measured: one entry per array, in file order."""

    path: str
    arrays: tuple[LayerArrayStats, ...]

    def __getitem__(self, name: str) -> ArrayStats:
        """The statistics of ``"layer.array"`` (``report["conv_0.weights"]``)."""
        for e in self.arrays:
            if f"{e.layer}.{e.array}" == name:
                return e.stats
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf stats --json``)."""
        return {"path": self.path, "arrays": [e.to_dict() for e in self.arrays]}


# |x| below this keeps k·(2x)² within float32 for chunks of up to ~10^8 floats.
_F32_SAFE = 1e15


def array_stats(
    view: np.ndarray[Any, Any], *, extreme_threshold: float = 1e6, chunk: int = CHUNK
) -> ArrayStats:
    """Statistics of ``view`` in one streaming pass over chunks of ``chunk`` floats.

    Per chunk: min and max first (a NaN makes them NaN, so non-finite values are found without
    a pass of their own), a float32 pairwise sum for the chunk mean and a float32 BLAS dot of
    the centred chunk for its squared deviations, merged across chunks in float64 (Chan et al.'s
    pairwise update). Mean and std are accurate to about 1e-7 relative (float32 rounding inside
    a 64 Ki-element chunk), far below the 4 significant digits dwf displays; a float64 sum would
    halve the throughput.
    """
    flat = view.reshape(-1) if view.flags.c_contiguous else np.ravel(view, order="K")
    n = int(flat.size)
    nan = inf = zeros = small = negatives = extreme = 0
    finite = 0
    mean = m2 = 0.0
    lo, hi = math.inf, -math.inf
    for start in range(0, n, chunk):
        c = flat[start : start + chunk]
        cmin, cmax = float(c.min()), float(c.max())
        if not (math.isfinite(cmin) and math.isfinite(cmax)):
            isnan = np.isnan(c)
            ok = np.isfinite(c)
            cnan = int(np.count_nonzero(isnan))
            nan += cnan
            inf += int(c.size - np.count_nonzero(ok)) - cnan
            c = c[ok]
            if c.size == 0:
                continue
            cmin, cmax = float(c.min()), float(c.max())
        k = int(c.size)
        # Squares of values this large overflow a float32 sum (std would be inf): such chunks
        # (corrupt or extreme files) are summed in float64; the rest keeps the float32 path.
        acc = np.float64 if max(-cmin, cmax) > _F32_SAFE else np.float32
        cmean = float(c.sum(dtype=acc)) / k
        d = c.astype(acc, copy=False) - acc(cmean)
        cm2 = float(np.dot(d, d))
        total = finite + k
        delta = cmean - mean
        mean += delta * k / total
        m2 += cm2 + delta * delta * finite * k / total
        finite = total
        lo, hi = min(lo, cmin), max(hi, cmax)
        negatives += int(np.count_nonzero(c < 0))
        # Zeros and denormals are rare: one cheap min(|x|) decides whether to count them.
        if float(np.abs(c).min()) < FLOAT32_TINY:
            zeros += int(np.count_nonzero(c == 0))
            small += int(np.count_nonzero((c > -FLOAT32_TINY) & (c < FLOAT32_TINY)))
        if max(-cmin, cmax) > extreme_threshold:
            extreme += int(np.count_nonzero((c > extreme_threshold) | (c < -extreme_threshold)))
    if finite:
        std = math.sqrt(max(m2, 0.0) / finite)
        absmax = max(abs(lo), abs(hi))
    else:
        mean = std = absmax = lo = hi = math.nan
    return ArrayStats(
        n, nan, inf, zeros, small - zeros, negatives, lo, hi, mean, std, absmax, extreme
    )


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


def layer_stats(layer: Layer) -> dict[str, ArrayStats]:
    """Statistics of each array of one layer (``layer.stats()``)."""
    return {name: array_stats(view) for name, view in layer.arrays.items()}


@overload
def stats(
    src: str | os.PathLike[str] | WeightsFile,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    strict: bool = True,
    layers: Iterable[int | str] | None = None,
    extreme: float = 1e6,
    progress: Callable[[int, int, str], None] | None = None,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> StatsReport: ...


@overload
def stats(
    src: Many,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    strict: bool = True,
    layers: Iterable[int | str] | None = None,
    extreme: float = 1e6,
    progress: Callable[[int, int, str], None] | None = None,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[Row[StatsReport]]: ...


def stats(
    src: str | os.PathLike[str] | WeightsFile | Many,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    strict: bool = True,
    layers: Iterable[int | str] | None = None,
    extreme: float = 1e6,
    progress: Callable[[int, int, str], None] | None = None,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> StatsReport | Iterator[Row[StatsReport]]:
    """Statistics of every array the file holds (``dwf stats``), streaming in bounded memory.

    Args:
        src: the weights file, open, by path or by URL; or a list of files, folders and globs:
            then an iterator of :class:`dwf.Row` s, one per file in order (as :func:`dwf.check`).
        cfg, dialect, strict: how to open ``src`` when it is a path (see :func:`dwf.open`).
        layers: only these layers (indices or names); default all that hold arrays.
        extreme: magnitude above which values count as extreme.
        progress: called as ``progress(done_floats, total_floats, layer_name)`` (one file only).
        executor, jobs: where a list runs (as :func:`dwf.check`).
        storage_options: for URLs: options passed to fsspec.
    """
    if isinstance(src, (list, tuple)):
        one = functools.partial(
            stats,
            cfg=cfg,
            dialect=dialect,
            strict=strict,
            layers=None if layers is None else list(layers),
            extreme=extreme,
            storage_options=storage_options,
        )
        paths = batch.expand(src, storage_options=storage_options)
        return batch.each(one, paths, executor=executor, jobs=jobs)
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
        for lp in chosen:
            layer = f[lp.index]
            for a in lp.arrays:
                st = array_stats(layer[a.name], extreme_threshold=extreme)
                out.append(LayerArrayStats(lp.index, lp.name, lp.type, a.name, a.shape, st))
                done += a.count
                if progress is not None:
                    progress(done, total, lp.name)
        return StatsReport(f.path, tuple(out))
