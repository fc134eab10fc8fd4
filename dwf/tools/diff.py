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
from dwf.format.records import ArraySpec, LayerPlan
from dwf.io import extensions
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile
from dwf.tools import batch, walk
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
class DiffReport(extensions.Shown):
    """Everything :func:`diff` measured.

    Attributes:
        a, b: the two files' paths.
        seen_a, seen_b: their headers' ``seen`` (images seen in training).
        arrays: per-array differences, in file order.
        only_a, only_b: layer names held by only one of the files (partial files, or
            different networks).
        shape_mismatch: ``layer.array`` names held by both that were not compared: their
            shapes differ, or (different networks) their layer differs.
        warnings: what the numbers do not say: ``seen`` goes backwards from ``a`` to ``b``;
            the two files are different networks (then only the layers whose arrays have the
            same names and shapes are compared).
    """

    a: str
    b: str
    seen_a: int
    seen_b: int
    arrays: tuple[ArrayDiff, ...]
    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    shape_mismatch: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

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
            "warnings": list(self.warnings),
            "arrays": [d.to_dict() for d in self.arrays],
        }

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
    with (
        opened(a, cfg, **options) as fa,
        opened(b, cfg, **options) as fb,
        fa.consistent(),  # one version of each file, or FileChangedError
        fb.consistent(),
    ):
        return _diff(fa, fb, chunk, progress)


def _layout(lp: LayerPlan) -> tuple[Any, ...]:
    return (lp.type, tuple((spec.name, spec.shape) for spec in lp.arrays))


def _different_networks(a: Plan, b: Plan) -> bool:
    """Whether two plans describe different networks: a layer both have differs in name,
    type or arrays. A cfg cut short (a backbone's) is the same network as the whole one."""
    return any(
        x.name != y.name or _layout(x) != _layout(y)
        for x, y in zip(a.layers, b.layers, strict=False)
    )


def _diff(a: WeightsFile, b: WeightsFile, chunk: int, progress: Progress | None) -> DiffReport:
    held_a = {lp.name for lp in a.stored}
    held_b = {lp.name for lp in b.stored}
    by_name_b = {lp.name: lp for lp in b.plan.layers}
    different = _different_networks(a.plan, b.plan)
    pairs = [lp for lp in a.plan.layers if lp.name in held_a and lp.name in held_b]
    if different:  # a layer is compared whole, or not at all
        skipped = [lp for lp in pairs if _layout(lp) != _layout(by_name_b[lp.name])]
        pairs = [lp for lp in pairs if lp not in skipped]
    else:
        skipped = []
    total = sum(lp.count for lp in pairs)
    done = 0
    out: list[ArrayDiff] = []
    mismatch = [f"{lp.name}.{spec.name}" for lp in skipped for spec in lp.arrays]
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
    warnings: list[str] = []
    seen_a, seen_b = a.header.seen, b.header.seen
    if 0 < seen_b < seen_a:  # seen 0: not a checkpoint (darknet partial, dwf cut write 0)
        warnings.append(
            f"seen goes backwards: {a.path} has seen {seen_a:,}, {b.path} after it {seen_b:,};"
            " a later checkpoint compared with an earlier one (a folder is ordered by seen)"
        )
    if different:
        warnings.append(_networks_warning(a, b, [lp.name for lp in pairs]))
    return DiffReport(
        a.path,
        b.path,
        seen_a,
        seen_b,
        tuple(out),
        tuple(n for n in order if n in held_a and n not in held_b),
        tuple(lp.name for lp in b.plan.layers if lp.name in held_b and lp.name not in held_a),
        tuple(mismatch),
        tuple(warnings),
    )


def _networks_warning(a: WeightsFile, b: WeightsFile, compared: Sequence[str]) -> str:
    def what(f: WeightsFile) -> str:
        cfg = os.path.basename(f.plan.cfg_path) if f.plan.cfg_path else "its plan"
        return f"{cfg}: {len(f.plan.layers)} layers, {f.plan.total_floats:,} floats"

    shown = ", ".join(compared[:6]) + (" …" if len(compared) > 6 else "")
    which = (
        f"compared only the {len(compared)} {'layer' if len(compared) == 1 else 'layers'} whose"
        f" arrays have the same names and shapes ({shown})"
        if compared
        else "no layer has arrays of the same names and shapes: nothing was compared"
    )
    return (
        f"{a.path} and {b.path} are different networks ({what(a)}; {what(b)}): {which};"
        " their differences say little"
    )


def drift(
    series: str | os.PathLike[str] | Sequence[str | os.PathLike[str] | WeightsFile],
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    chunk: int = CHUNK,
    progress: Progress | None = None,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[DiffReport]:
    """Differences between consecutive checkpoints of one series: ``[0]→[1]``, ``[1]→[2]``, …
    (``dwf diff A B C …``, ``dwf diff backup/``).

    ``series`` is one run's checkpoints: a folder or a glob (local or remote:
    ``s3://run-1/yolov4_*.weights``), or a list of files (open or by path), folders and
    globs. The files of a folder or a glob are put in training order — by the ``seen`` in
    their headers, then the iteration in their names, then their modification times — and
    files named one by one keep the order given (a pair whose ``seen`` goes backwards carries
    a warning). Each pair is compared by :func:`diff`; with an ``executor`` (or ``jobs`` > 1: a
    process pool) the pairs run in parallel, streamed back in order. A file that cannot be read
    raises (a series with a gap would be misleading).
    """
    if isinstance(series, (str, os.PathLike)):
        series = [series]
    files: list[Any] = []
    pending: list[str | os.PathLike[str]] = []
    for x in list(series):
        if isinstance(x, WeightsFile):
            files += walk.checkpoints(pending, dialect=dialect, storage_options=storage_options)
            pending = []
            files.append(x)
        else:
            pending.append(x)
    files += walk.checkpoints(pending, dialect=dialect, storage_options=storage_options)
    options: dict[str, Any] = {
        "cfg": cfg,
        "dialect": dialect,
        "chunk": chunk,
        "storage_options": storage_options,
    }
    if executor is None and (jobs is None or jobs == 1):
        return [diff(x, y, progress=progress, **options) for x, y in itertools.pairwise(files)]
    one = functools.partial(_diff_pair, **options)
    out: list[DiffReport] = []
    pairs = list(itertools.pairwise(files))
    for row in batch.run(one, pairs, executor=executor, jobs=jobs, key=_pair_name):
        if row.result is None:
            raise DwfError(row.error or f"{row.path}: failed")
        out.append(row.result)
    return out


def _pair_name(pair: tuple[Any, Any]) -> str:
    return f"{batch.path_of(pair[0])} → {batch.path_of(pair[1])}"


def _diff_pair(pair: tuple[str, str], **options: Any) -> DiffReport:
    return diff(pair[0], pair[1], **options)
