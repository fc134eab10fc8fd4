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
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile
from dwf.tools import batch
from dwf.tools.stats import (
    CHUNK,
    ArrayScan,
    ArrayStats,
    file_array_scan,
    file_array_stats,
    file_zero_rows,
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
    """

    index: int
    layer: str
    type: str
    array: str
    kind: str
    severity: str
    count: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf check --json``)."""
        return attrs.asdict(self)


@attrs.frozen
class CheckReport:
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

    def explain(self) -> str:
        """A readable report."""
        head = (
            f"{self.path}: scanned {self.arrays:,} arrays, {self.floats:,} floats:"
            f" {self.count('error')} errors, {self.count('warning')} warnings,"
            f" {self.count('info')} notes"
        )
        lines = [head]
        if self.mismatch:
            lines.append(
                "  caution: the file does not fit its cfg (opened with strict=False); its arrays"
                " were read with the cfg's layout and may be misaligned, so these findings may be"
                " artifacts of the mismatch"
            )
        for f in self.findings:
            where = f"{f.layer}.{f.array}" if f.layer else "file"
            lines.append(f"  {f.severity:7} {where}: {f.message}")
        for w in self.cfg_warnings:
            lines.append(f"  cfg     {w}")
        return "\n".join(lines)


Add = Callable[[str, str, int, str], None]
TINY = float(np.finfo(np.float32).tiny)


def _value_findings(st: ArrayStats | ArrayScan, extreme: float, add: Add) -> None:
    if st.nan:
        add("nan", "error", st.nan, f"{st.nan:,} NaN values")
    if st.inf:
        add("inf", "error", st.inf, f"{st.inf:,} infinite values")
    if st.extreme:
        add(
            "extreme",
            "warning",
            st.extreme,
            f"{st.extreme:,} values with |x| > {extreme:g} (abs max {st.absmax:.3g})",
        )
    if st.denormals:
        add(
            "denormals",
            "info",
            st.denormals,
            f"{st.denormals:,} denormal values (below 1.2e-38 in magnitude; harmless, but slow"
            " on some CPUs)",
        )


def _variance_findings(f: WeightsFile, spec: ArraySpec, add: Add, chunk: int) -> None:
    neg_real = neg_small = neg_tiny = zero = 0
    for c in f.iter_array_chunks(spec, chunk):
        c = c[np.isfinite(c)]
        neg_real += int(np.count_nonzero(c < -BN_EPS))
        neg_small += int(np.count_nonzero((c >= -BN_EPS) & (c <= -TINY)))
        neg_tiny += int(np.count_nonzero((c < 0) & (c > -TINY)))
        zero += int(np.count_nonzero(c == 0))
    if neg_real:
        add(
            "negative-variance",
            "error",
            neg_real,
            f"{neg_real:,} batch-norm variances below -{BN_EPS:g}: Darknet's"
            f" sqrt(variance + {BN_EPS:g}) gives NaN for those channels",
        )
    if neg_small:
        add(
            "small-negative-variance",
            "warning",
            neg_small,
            f"{neg_small:,} small negative batch-norm variances (≥ -{BN_EPS:g}; still finite"
            " after Darknet adds its epsilon)",
        )
    if neg_tiny:
        add(
            "denormal-negative-variance",
            "info",
            neg_tiny,
            f"{neg_tiny:,} batch-norm variances are tiny negative denormals (such as -7e-44):"
            " rounding noise real trained files contain, harmless",
        )
    if zero:
        add(
            "zero-variance",
            "info",
            zero,
            f"{zero:,} batch-norm variances are exactly 0 (unused channels; harmless with"
            " Darknet's epsilon)",
        )


def _record(
    found: list[Finding],
    lp: LayerPlan,
    array: str,
    kind: str,
    severity: str,
    count: int,
    message: str,
) -> None:
    found.append(Finding(lp.index, lp.name, lp.type, array, kind, severity, count, message))


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
            _value_findings(st, extreme, add)
            if isinstance(st, ArrayStats):  # a rolling_variance
                if st.zeros or st.min < 0:  # otherwise the statistics prove there is nothing
                    _variance_findings(f, spec, add, chunk)
            elif leaf == "scales" and st.zeros:
                add(
                    "dead-bn-channels",
                    "warning",
                    st.zeros,
                    f"{st.zeros:,} of {st.count:,} batch-norm channels have scale 0 (their"
                    " output is constant)",
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
                zr = file_zero_rows(f, spec, chunk)
                if zr:
                    add(
                        "zero-filters",
                        "warning",
                        zr,
                        f"{zr:,} of {spec.shape[0]:,} filters are all zeros",
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
