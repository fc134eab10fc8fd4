"""Scan a weights file for anomalies: NaN/Inf, broken batch-norm variances, dead filters.

Real trained files contain oddities that are harmless — batch-norm variances of exactly 0 or
tiny negative denormals such as -7e-44 (rounding noise), denormal weights, large magnitudes — and
some that break inference. The scan tells them apart: Darknet normalises with
``sqrt(variance + 1e-5)``, so only a variance below -1e-5 (or a NaN/Inf anywhere) produces NaN
outputs; those findings are *errors*. Everything else is a warning or information.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

from dwf.format.planner import Plan
from dwf.format.records import ArraySpec, LayerPlan
from dwf.io import extensions
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile
from dwf.tools import batch
from dwf.tools.stats import (
    CHUNK,
    MISMATCH_CAUTION,
    ArrayScan,
    ArrayStats,
    file_array_scan,
    file_array_stats,
    file_rows,
)

BN_EPS = 1e-5


@attrs.frozen
class Finding:
    """One anomaly in one array.

    Attributes:
        index, layer, type: the layer's index, name and type.
        array: the array's name.
        kind: ``nan``, ``inf``, ``negative-variance``, ``small-negative-variance``,
            ``denormal-negative-variance``, ``zero-variance``, ``zero-filters``,
            ``dead-bn-channels``, ``extreme``, ``denormals``; about the whole file (``index``
            -1, ``layer`` and ``array`` empty): ``cut-short``
            (:attr:`dwf.WeightsFile.cut_short`), ``header-width`` (negative variances in a file
            read with the header width its version does not imply: a sign it is read one
            float off).
        severity: ``error`` (breaks inference), ``warning`` (probably a problem) or ``info``.
        count: how many elements (or filters/channels) are affected.
        message: a readable sentence.
        indices: the filters (or outputs, or channels: indices on the array's first axis)
            affected, for NaN/Inf values, all-zero filters, dead batch-norm channels and
            negative variances; ``()`` for the other kinds.
    """

    index: int
    layer: str
    type: str
    array: str
    kind: str
    severity: str
    count: int
    message: str
    indices: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf check --json``)."""
        d = attrs.asdict(self)
        d["indices"] = list(self.indices)
        return d


@attrs.frozen
class CheckReport(extensions.Shown):
    """Everything :func:`check` found.

    Attributes:
        path: the file scanned.
        findings: in file order.
        arrays: arrays scanned; floats: floats scanned.
        mismatch: the file's size mismatch explanation when it does not fit its cfg (opened
            with ``strict=False``): its arrays were read with the cfg's layout and may be
            misaligned, so findings may be artifacts of the mismatch.
        cfg_warnings: the plan's warnings (:attr:`dwf.Plan.warnings`): cfg lines Darknet
            accepts silently, and cfgs on which a stock Darknet build crashes (naming the build
            and the reason).
    """

    path: str
    findings: tuple[Finding, ...]
    arrays: int
    floats: int
    mismatch: str | None = None
    cfg_warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf check --json``)."""
        return {
            "path": self.path,
            "arrays": self.arrays,
            "floats": self.floats,
            "serious": self.serious,
            "mismatch": self.mismatch,
            "findings": [x.to_dict() for x in self.findings],
            "cfg_warnings": list(self.cfg_warnings),
        }

    @property
    def serious(self) -> bool:
        """Whether any finding is an error (the ``dwf check`` exit code is then 1)."""
        return any(f.severity == "error" for f in self.findings)

    def count(self, severity: str) -> int:
        """Number of findings of a severity."""
        return sum(1 for f in self.findings if f.severity == severity)

    def __str__(self) -> str:
        """:meth:`explain`: what ``dwf check`` prints."""
        return self.explain()

    def explain(self) -> str:
        """A readable report."""
        head = (
            f"{self.path}: scanned {counted(self.arrays, 'array')},"
            f" {counted(self.floats, 'float')}: {counted(self.count('error'), 'error')},"
            f" {counted(self.count('warning'), 'warning')}, {counted(self.count('info'), 'note')}"
        )
        lines = [head]
        if self.mismatch:
            lines.append("  " + MISMATCH_CAUTION.format(what="findings"))
        for f in self.findings:
            where = f"{f.layer}.{f.array}" if f.layer else "file"
            lines.append(f"  {f.severity:7} {where}: {f.message}")
        for w in self.cfg_warnings:
            lines.append(f"  cfg     {w}")
        return "\n".join(lines)


Add = Callable[..., None]  # (kind, severity, count, message, indices=())
Rows = Callable[..., tuple[int, ...]]  # (test, every=False) -> the rows where it holds
TINY = float(np.finfo(np.float32).tiny)
SHOWN = 10  # indices a message names; the finding keeps them all


def counted(n: int, noun: str) -> str:
    """``1 error``, ``2 errors``, ``27,202 floats``: a count and its noun, in agreement."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _row_noun(spec: ArraySpec) -> str:
    """What the rows of an array are called: the filters of weights (a convolution's, or a
    connected layer's outputs), the channels of a per-channel array."""
    return "channel" if len(spec.shape) < 2 else "filter"


def which(noun: str, indices: tuple[int, ...]) -> str:
    """``filter 7``, ``filters 3, 5``, ``channels 0, 1, … 9 (+22 more)``."""
    shown = ", ".join(str(i) for i in indices[:SHOWN])
    more = f" (+{len(indices) - SHOWN:,} more)" if len(indices) > SHOWN else ""
    return f"{noun}{'' if len(indices) == 1 else 's'} {shown}{more}"


def _value_findings(
    st: ArrayStats | ArrayScan, extreme: float, add: Add, rows: Rows, noun: str
) -> None:
    if st.nan:
        idx = rows(np.isnan)
        add("nan", "error", st.nan, f"{counted(st.nan, 'NaN value')} (in {which(noun, idx)})", idx)
    if st.inf:
        idx = rows(np.isinf)
        add(
            "inf",
            "error",
            st.inf,
            f"{counted(st.inf, 'infinite value')} (in {which(noun, idx)})",
            idx,
        )
    if st.extreme:
        add(
            "extreme",
            "warning",
            st.extreme,
            f"{counted(st.extreme, 'value')} with |x| > {extreme:g} (abs max {st.absmax:.3g})",
        )
    if st.denormals:
        add(
            "denormals",
            "info",
            st.denormals,
            f"{counted(st.denormals, 'denormal value')} (below 1.2e-38 in magnitude; harmless,"
            " but slow on some CPUs)",
        )


def _variance_findings(
    f: WeightsFile, spec: ArraySpec, add: Add, chunk: int, rows: Rows
) -> None:
    neg_real = neg_small = neg_tiny = zero = 0
    for c in f.iter_array_chunks(spec, chunk):
        c = c[np.isfinite(c)]
        neg_real += int(np.count_nonzero(c < -BN_EPS))
        neg_small += int(np.count_nonzero((c >= -BN_EPS) & (c <= -TINY)))
        neg_tiny += int(np.count_nonzero((c < 0) & (c > -TINY)))
        zero += int(np.count_nonzero(c == 0))
    if neg_real:
        idx = rows(lambda c: c < -BN_EPS)
        add(
            "negative-variance",
            "error",
            neg_real,
            f"{counted(neg_real, 'batch-norm variance')} below -{BN_EPS:g}"
            f" ({which('channel', idx)}): Darknet's sqrt(variance + {BN_EPS:g}) gives NaN"
            f" for {'that channel' if neg_real == 1 else 'those channels'}",
            idx,
        )
    if neg_small:
        add(
            "small-negative-variance",
            "warning",
            neg_small,
            f"{counted(neg_small, 'small negative batch-norm variance')} (≥ -{BN_EPS:g}; still"
            " finite after Darknet adds its epsilon)",
        )
    if neg_tiny:
        add(
            "denormal-negative-variance",
            "info",
            neg_tiny,
            f"{counted(neg_tiny, 'batch-norm variance')} {'is a' if neg_tiny == 1 else 'are'}"
            " tiny negative denormal (such as -7e-44): rounding noise real trained files"
            " contain, harmless",
        )
    if zero:
        add(
            "zero-variance",
            "info",
            zero,
            f"{counted(zero, 'batch-norm variance')} {'is' if zero == 1 else 'are'} exactly 0"
            " (unused channels; harmless with Darknet's epsilon)",
        )


def _record(
    found: list[Finding],
    lp: LayerPlan,
    array: str,
    kind: str,
    severity: str,
    count: int,
    message: str,
    indices: tuple[int, ...] = (),
) -> None:
    found.append(
        Finding(lp.index, lp.name, lp.type, array, kind, severity, count, message, indices)
    )


@batch.one_file
def check(
    src: str | os.PathLike[str] | WeightsFile,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str = "alexeyab",
    strict: bool = True,
    extreme: float = 1e6,
    chunk: int = CHUNK,
    progress: Callable[[int, int, str], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> CheckReport:
    """Scan every array the file holds, layer by layer, in bounded memory (``dwf check``).

    Many files: ``dwf.each(dwf.check, files, jobs=...)`` (docs/remote.md).

    Args:
        src: the weights file, open, by path or by URL.
        cfg, dialect, strict: how to open ``src`` when it is a path (see :func:`dwf.open`).
        extreme: magnitude above which values are reported as extreme.
        chunk: floats read per step (bounds memory).
        progress: called as ``progress(done_floats, total_floats, layer_name)`` after each array.
        storage_options: for URLs: options passed to fsspec.
    """
    with (
        opened(src, cfg, dialect=dialect, strict=strict, storage_options=storage_options) as f,
        f.consistent(),  # the report is of one version of the file, or FileChangedError
    ):
        return _check(f, extreme, chunk, progress)


def _check(
    f: WeightsFile, extreme: float, chunk: int, progress: Callable[[int, int, str], None] | None
) -> CheckReport:
    found: list[Finding] = []
    if f.cut_short:
        # the layers it holds may be fine, but the network the cfg describes is not there
        found.append(Finding(-1, "", "", "", "cut-short", "error", 1, f.cut_short))
    arrays = floats = 0
    total = sum(lp.count for lp in f.stored)
    for lp in f.plan.layers:
        if not lp.arrays or not f.holds(lp):
            continue
        for spec in lp.arrays:
            arrays += 1
            floats += spec.count
            leaf = spec.name.rpartition(".")[2]
            st: ArrayStats | ArrayScan
            if leaf == "rolling_variance":
                # one float per channel: the full statistics, whose minimum tells whether the
                # variance findings need their pass
                st = file_array_stats(
                    f, spec, extreme_threshold=extreme, chunk=chunk, negatives=False
                )
            else:
                # the screen: the counts findings are made of, no moments, no signs
                st = file_array_scan(f, spec, extreme_threshold=extreme, chunk=chunk)

            add = functools.partial(_record, found, lp, spec.name)
            # the rows (filters, channels) of a finding: a second pass, only for a finding
            rows = functools.partial(file_rows, f, spec, chunk=chunk)
            _value_findings(st, extreme, add, rows, _row_noun(spec))
            if isinstance(st, ArrayStats):  # a rolling_variance
                if st.zeros or st.min < 0:  # otherwise the statistics prove there is nothing
                    _variance_findings(f, spec, add, chunk, rows)
            elif leaf == "scales" and st.zeros:
                idx = rows(lambda c: c == 0)
                add(
                    "dead-bn-channels",
                    "warning",
                    st.zeros,
                    f"{st.zeros:,} of {counted(st.count, 'batch-norm channel')}"
                    f" ({which('channel', idx)}) {'has' if st.zeros == 1 else 'have'} scale 0"
                    f" ({'its' if st.zeros == 1 else 'their'} output is constant)",
                    idx,
                )
            elif (
                leaf == "weights"
                and len(spec.shape) >= 2
                and lp.type in ("convolutional", "connected", "deconvolutional")
                and spec.shape[0]
                # an all-zero filter takes a whole row of zeros: fewer zeros than a row holds
                # (none, usually) prove there is none, without a second pass
                and st.zeros >= spec.count // spec.shape[0]
            ):
                idx = rows(lambda c: c == 0, every=True)
                if idx:
                    noun = _row_noun(spec)
                    add(
                        "zero-filters",
                        "warning",
                        len(idx),
                        f"{len(idx):,} of {counted(spec.shape[0], noun)} ({which(noun, idx)})"
                        f" {'is' if len(idx) == 1 else 'are'} all zeros",
                        idx,
                    )
            if progress is not None:
                progress(floats, total, lp.name)
    bad = sum(x.count for x in found if x.kind == "negative-variance")
    h = f.header
    if bad and h.size != h.width_for(f.plan.dialect):
        # what reading a file one float off looks like (docs/format.md §1.5)
        found.append(
            Finding(
                -1,
                "",
                "",
                "",
                "header-width",
                "warning",
                bad,
                f"the file was read with a {h.size}-byte header although version {h.version}"
                f" implies {h.width_for(f.plan.dialect)}: {bad:,} negative batch-norm variances"
                " are what a file read one float off shows; try the other header width",
            )
        )
    return CheckReport(f.path, tuple(found), arrays, floats, f.mismatch, f.plan.warnings)
