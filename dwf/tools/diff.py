"""Compare checkpoints: how much each array changed between two weights files.

Typical use is two checkpoints of one training run (``yolov4_1000.weights`` and
``yolov4_2000.weights``). Arrays are matched by layer name and array name; both files may have
16- or 20-byte headers and may be partial — what both hold is compared. Everything streams in
chunks read with ``pread`` into reused buffers, so two multi-GB files compare in bounded memory
and a file truncated meanwhile gives :class:`dwf.FileChangedError`, not a crash.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from dwf.errors import DwfError
from dwf.format.planner import Plan
from dwf.format.records import ArraySpec
from dwf.io import extensions
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile
from dwf.tools import batch
from dwf.tools.stats import CHUNK, blas_dot, finite_or_none

Progress = Callable[[int, int, str], None]


@attrs.frozen
class ArrayDiff:
    """How one array changed from file A to file B.

    Attributes:
        index, layer, type: the layer's index, name and type.
        array: the array's name.
        count: number of elements.
        identical: bit-for-bit equal.
        max_abs: largest ``|b - a|`` over elements where both are finite (NaN if none).
        rel_l2: ``||b - a|| / ||a||`` (``inf`` when ``a`` is all zeros and ``b`` is not).
        cosine: cosine similarity of ``a`` and ``b`` (NaN when either is all zeros).
    """

    index: int
    layer: str
    type: str
    array: str
    count: int
    identical: bool
    max_abs: float
    rel_l2: float
    cosine: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf diff --json``); NaN and ±inf become ``None``."""
        return {k: finite_or_none(v) for k, v in attrs.asdict(self).items()}


@attrs.frozen
class DiffReport:
    """Everything :func:`diff` measured.

    Attributes:
        a, b: the two files' paths.
        seen_a, seen_b: their headers' ``seen`` (images seen in training).
        arrays: per-array differences, in file order.
        only_a, only_b: layer names held by only one of the files (partial files).
        shape_mismatch: ``layer.array`` names whose shapes differ (different cfgs).
    """

    a: str
    b: str
    seen_a: int
    seen_b: int
    arrays: tuple[ArrayDiff, ...]
    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    shape_mismatch: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf diff --json``)."""
        return {
            "a": self.a,
            "b": self.b,
            "seen_a": self.seen_a,
            "seen_b": self.seen_b,
            "identical": self.identical,
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
            "shape_mismatch": list(self.shape_mismatch),
            "arrays": [d.to_dict() for d in self.arrays],
        }

    def __str__(self) -> str:
        """What ``dwf diff A B`` prints: the files, the counts, a row per changed array."""
        text: str = extensions.call("report_text", self)
        return text

    def _repr_html_(self) -> str:
        html: str = extensions.call("report_html", self)
        return html

    @property
    def identical(self) -> bool:
        """Every compared array is bit-for-bit equal and nothing is held by one file only."""
        return (
            all(d.identical for d in self.arrays)
            and not self.only_a
            and not self.only_b
            and not self.shape_mismatch
        )

    @property
    def changed(self) -> tuple[ArrayDiff, ...]:
        """The arrays that are not identical."""
        return tuple(d for d in self.arrays if not d.identical)

    def layers(self) -> list[tuple[int, str, str, float, float]]:
        """Per layer: ``(index, name, type, max_abs, rel_l2)`` over all its arrays."""
        out: dict[str, list[ArrayDiff]] = {}
        for d in self.arrays:
            out.setdefault(d.layer, []).append(d)
        rows = []
        for name, ds in out.items():
            max_abs = max((d.max_abs for d in ds if not math.isnan(d.max_abs)), default=0.0)
            rows.append((ds[0].index, name, ds[0].type, max_abs, max(d.rel_l2 for d in ds)))
        return rows


class _DiffAccumulator:
    """Differences of two arrays fed to it as pairs of equally long chunks (in any order the
    two share: every measure is order-independent). Each chunk is widened to float64 in reused
    buffers and its sums of products are blocked single-threaded BLAS dots
    (:func:`dwf.tools.stats.blas_dot`), so a busy machine cannot stall them and the result is
    float64-accurate and independent of the chunk size; pairs where either value is NaN or
    infinite are left out of every measure."""

    def __init__(self) -> None:
        self.identical = True
        self.max_abs = -1.0
        self.dd = self.aa = self.bb = self.ab = 0.0
        self.size = 0
        self._buf = np.empty((3, 0), dtype=np.float64)

    def _scratch(self, k: int) -> tuple[np.ndarray[Any, Any], ...]:
        # reused buffers: a fresh allocation per chunk costs page faults every time
        if self._buf.shape[1] < k:
            self._buf = np.empty((3, k), dtype=np.float64)
        return tuple(row[:k] for row in self._buf)

    def add(self, ca: np.ndarray[Any, Any], cb: np.ndarray[Any, Any]) -> None:
        self.size += int(ca.size)
        if ca.size == 0:
            return
        if self.identical and not np.array_equal(ca.view(np.uint32), cb.view(np.uint32)):
            self.identical = False
        finite = all(math.isfinite(float(e)) for e in (ca.min(), ca.max(), cb.min(), cb.max()))
        if not finite:  # rare (a damaged file): only the pairs finite on both sides count
            ok = np.isfinite(ca) & np.isfinite(cb)
            ca, cb = ca[ok], cb[ok]
        k = int(ca.size)
        if k == 0:
            return
        a64, b64, d64 = self._scratch(k)
        np.copyto(a64, ca)
        np.copyto(b64, cb)
        if self.identical:  # bit-equal: a difference of 0, and the norms
            s = blas_dot(a64, a64)
            self.aa += s
            self.bb += s
            self.ab += s
            self.max_abs = max(self.max_abs, 0.0)
            return
        np.subtract(b64, a64, out=d64)
        self.max_abs = max(self.max_abs, -float(d64.min()), float(d64.max()))
        self.dd += blas_dot(d64, d64)
        self.aa += blas_dot(a64, a64)
        self.bb += blas_dot(b64, b64)
        self.ab += blas_dot(a64, b64)

    def result(self) -> tuple[bool, float, float, float]:
        max_abs = self.max_abs
        if max_abs < 0:
            max_abs = float("nan") if self.size else 0.0
        dd, aa, bb, ab = self.dd, self.aa, self.bb, self.ab
        rel = math.sqrt(dd / aa) if aa > 0 else (0.0 if dd == 0 else math.inf)
        cosine = ab / math.sqrt(aa * bb) if aa > 0 and bb > 0 else float("nan")
        cosine = min(max(cosine, -1.0), 1.0)  # rounding can step just past ±1; NaN stays NaN
        return self.identical, max_abs, rel, cosine


def _array_diff(
    a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], chunk: int
) -> tuple[bool, float, float, float]:
    fa = np.ravel(a, order="C")
    fb = np.ravel(b, order="C")
    acc = _DiffAccumulator()
    for start in range(0, fa.size, chunk):
        acc.add(fa[start : start + chunk], fb[start : start + chunk])
    return acc.result()


def _file_array_diff(
    a: WeightsFile, sa: ArraySpec, b: WeightsFile, sb: ArraySpec, chunk: int
) -> tuple[bool, float, float, float]:
    """Differences of one array of two open files, both read with ``pread`` in bounded
    buffers. Stored alike (the usual case), they are compared in storage order; when one file
    stores the array transposed and the other not (a legacy header against a current one),
    both are read in logical order, by blocks of whole rows."""
    acc = _DiffAccumulator()
    ta = sa.stored_transposed(a.header.connected_transposed)
    tb = sb.stored_transposed(b.header.connected_transposed)
    if ta == tb or len(sa.shape) < 2 or not sa.shape[0]:
        pairs = zip(a.iter_array_chunks(sa, chunk), b.iter_array_chunks(sb, chunk), strict=True)
    else:
        cols = max(1, sa.count // sa.shape[0])
        step = max(1, chunk // cols) * cols  # both sides then yield blocks of the same rows
        pairs = zip(
            a.iter_logical_chunks(sa, step), b.iter_logical_chunks(sb, step), strict=True
        )
    for ca, cb in pairs:
        acc.add(ca, cb)
    return acc.result()


def diff(
    a: str | os.PathLike[str] | WeightsFile,
    b: str | os.PathLike[str] | WeightsFile,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    chunk: int = CHUNK,
    progress: Progress | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> DiffReport:
    """Compare every array both files hold (``dwf diff A B``).

    Args:
        a, b: weights files, open or by path (usually two checkpoints of one cfg).
        cfg, dialect: how to open ``a`` and ``b`` when they are paths (by default each finds
            the cfg beside it).
        chunk: floats compared per step (bounds memory).
        progress: called as ``progress(done_floats, total_floats, layer_name)``.
        storage_options: for URLs: options passed to fsspec.
    """
    options: dict[str, Any] = {"dialect": dialect, "storage_options": storage_options}
    with opened(a, cfg, **options) as fa, opened(b, cfg, **options) as fb:
        return _diff(fa, fb, chunk, progress)


def _diff(a: WeightsFile, b: WeightsFile, chunk: int, progress: Progress | None) -> DiffReport:
    held_a = {lp.name for lp in a.stored}
    held_b = {lp.name for lp in b.stored}
    by_name_b = {lp.name: lp for lp in b.plan.layers}
    pairs = [lp for lp in a.plan.layers if lp.name in held_a and lp.name in held_b]
    total = sum(lp.count for lp in pairs)
    done = 0
    out: list[ArrayDiff] = []
    mismatch: list[str] = []
    for lp in pairs:
        specs_b = {s.name: s for s in by_name_b[lp.name].arrays}
        for spec in lp.arrays:
            other = specs_b.get(spec.name)
            if other is None or other.shape != spec.shape:
                mismatch.append(f"{lp.name}.{spec.name}")
                continue
            same, max_abs, rel, cos = _file_array_diff(a, spec, b, other, chunk)
            out.append(
                ArrayDiff(
                    lp.index, lp.name, lp.type, spec.name, spec.count, same, max_abs, rel, cos
                )
            )
            done += spec.count
            if progress is not None:
                progress(done, total, lp.name)
    order = [lp.name for lp in a.plan.layers]
    return DiffReport(
        a.path,
        b.path,
        a.header.seen,
        b.header.seen,
        tuple(out),
        tuple(n for n in order if n in held_a and n not in held_b),
        tuple(lp.name for lp in b.plan.layers if lp.name in held_b and lp.name not in held_a),
        tuple(mismatch),
    )


def drift(
    files: Sequence[str | os.PathLike[str] | WeightsFile],
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    chunk: int = CHUNK,
    progress: Progress | None = None,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[DiffReport]:
    """Differences between consecutive checkpoints: ``files[0]→files[1]``, ``[1]→[2]``, …
    (``dwf diff A B C …``).

    ``files`` may name folders and globs, local or remote (``s3://run-1/yolov4_*.weights``):
    they are expanded and sorted naturally (``_2000`` before ``_10000``). With an ``executor``
    (or ``jobs`` > 1: a process pool) each pair is one task, streamed back in order. A file
    that cannot be read raises (a series with a gap would be misleading).
    """
    if executor is None and (jobs is None or jobs == 1):
        if any(not isinstance(x, WeightsFile) for x in files):
            files = _expanded(files, storage_options)
        return [
            diff(
                x,
                y,
                cfg=cfg,
                dialect=dialect,
                chunk=chunk,
                progress=progress,
                storage_options=storage_options,
            )
            for x, y in itertools.pairwise(files)
        ]
    paths = _expanded(files, storage_options)
    pairs = list(itertools.pairwise(paths))
    one = functools.partial(
        _diff_pair, cfg=cfg, dialect=dialect, chunk=chunk, storage_options=storage_options
    )
    keys = [f"{a}\n{b}" for a, b in pairs]
    out: list[DiffReport] = []
    for row in batch.each(one, keys, executor=executor, jobs=jobs):
        if row.result is None:
            raise DwfError(row.error or f"{row.path}: failed")
        out.append(row.result)
    return out


def _expanded(
    files: Sequence[str | os.PathLike[str] | WeightsFile], storage_options: Mapping[str, Any] | None
) -> list[Any]:
    out: list[Any] = []
    for x in files:
        if isinstance(x, WeightsFile):
            out.append(x)
        else:
            out.extend(batch.expand([x], storage_options=storage_options))
    return out


def _diff_pair(pair: str, **options: Any) -> DiffReport:
    a, b = pair.split("\n", 1)
    return diff(a, b, **options)
