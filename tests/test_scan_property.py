"""Property tests pinning what the scans compute, whatever shortcuts their kernels take.

``dwf.check`` and ``dwf stats`` read each array in chunks and let cheap passes over a chunk
decide which costly ones are needed. These tests compare them with a plain numpy reference
computed on the whole array at once (float64 for the moments) on adversarial values — NaN
(quiet and signalling, both signs), ±inf, ±0, denormals of both signs, the smallest normals,
values at and around the extreme threshold, all-zero rows — and with small ``chunk`` values so
every chunk boundary is crossed: the findings must be exactly the reference's, the counts and
extremes exact, mean and std within float32 rounding.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dwf
from dwf.format.header import Header
from dwf.tools.check import BN_EPS, check
from dwf.tools.stats import CHUNK, array_stats

SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=os.environ.get("DWF_FUZZ_RANDOM") is None,
    suppress_health_check=list(HealthCheck),
)

TINY = float(np.finfo(np.float32).tiny)


def bits(x: float) -> int:
    return int(np.array(x, dtype=np.float32).view(np.uint32))


# Bit patterns the shortcuts must not get wrong (signalling NaNs cannot travel as Python floats).
SPECIAL = [
    0x7FC00000,  # NaN
    0xFFC00000,  # -NaN
    0x7F800001,  # signalling NaN
    0xFF800001,  # negative signalling NaN
    0x7FFFFFFF,  # NaN with every mantissa bit
    0x7F800000,  # inf
    0xFF800000,  # -inf
    0x00000000,  # +0
    0x80000000,  # -0
    0x00000001,  # smallest denormal
    0x80000001,
    0x007FFFFF,  # largest denormal
    0x807FFFFF,
    0x00800000,  # smallest normal
    0x80800000,
    0x7F7FFFFF,  # largest finite
    0xFF7FFFFF,
    bits(-7e-44),  # the rounding noise real batch-norm variances hold
    bits(-1e-5),
    bits(-1.0000001e-5),
    bits(-0.5),
]
THRESHOLDS = [1e6, 0.1, 0.45, 1.0, 1e-40, 0.0]  # 0.1 rounds up in float32, 0.45 down


def near(t: float) -> list[int]:
    """Bit patterns of float32 values at and next to ``±t``."""
    f = np.float32(t)
    vals = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(0))]
    return [bits(float(v)) for v in vals] + [bits(-float(v)) for v in vals]


NEAR = sorted({b for t in THRESHOLDS for b in near(t)})

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
ordinary = st.floats(-2.0, 2.0, width=32)
element_bits = st.one_of(
    ordinary.map(bits),
    ordinary.map(bits),
    finite32.map(bits),
    st.sampled_from(SPECIAL),
    st.sampled_from(NEAR),
)


def as_f32(patterns: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(patterns, dtype=np.uint32).view(np.float32)


# -- the reference: whole-array numpy, no shortcut ------------------------------------------------
def reference(a: np.ndarray[Any, Any], extreme: float) -> dict[str, Any]:
    """What the statistics of ``a`` (float32) are, from numpy on the whole array."""
    a = a.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        nan = int(np.count_nonzero(np.isnan(a)))
        inf = int(np.count_nonzero(np.isinf(a)))
        fin = a[np.isfinite(a)]
        mag = np.abs(fin)
        t = np.float32(extreme)  # numpy compares float32 arrays with a float32 threshold
        out: dict[str, Any] = {
            "count": int(a.size),
            "nan": nan,
            "inf": inf,
            "zeros": int(np.count_nonzero(fin == 0)),
            "denormals": int(np.count_nonzero((mag > 0) & (mag < np.float32(TINY)))),
            "negatives": int(np.count_nonzero(fin < 0)),
            "extreme": int(np.count_nonzero(mag > t)) if fin.size else 0,
        }
        if fin.size:
            f64 = fin.astype(np.float64)
            out.update(
                min=float(f64.min()),
                max=float(f64.max()),
                absmax=float(np.abs(f64).max()),
                mean=float(f64.mean()),
                std=float(f64.std()),
                spread=float(np.abs(f64).max()),
            )
        else:
            out.update(min=math.nan, max=math.nan, absmax=math.nan, mean=math.nan, std=math.nan)
    return out


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


def assert_stats_match(a: np.ndarray[Any, Any], extreme: float, chunk: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # signalling NaNs must stay quiet
        got = array_stats(a, extreme_threshold=extreme, chunk=chunk)
    ref = reference(a, extreme)
    for k in ("count", "nan", "inf", "zeros", "denormals", "negatives", "extreme"):
        assert getattr(got, k) == ref[k], (k, getattr(got, k), ref[k], chunk)
    for k in ("min", "max", "absmax"):
        assert same(getattr(got, k), ref[k]), (k, getattr(got, k), ref[k], chunk)
    if math.isnan(ref["mean"]):
        assert math.isnan(got.mean) and math.isnan(got.std)
        return
    # float32 sums inside a chunk, float64 across chunks: the mean is within a few float32
    # roundings of the largest magnitude (not of the mean, which may be 0); std within 1e-5 of
    # itself, even for a mean large against the spread (centred, two-pass).
    scale = ref["spread"]
    assert abs(got.mean - ref["mean"]) <= 1e-6 * scale, (got.mean, ref["mean"], chunk)
    assert abs(got.std - ref["std"]) <= 1e-5 * ref["std"], (
        got.std,
        ref["std"],
        chunk,
    )


# -- statistics of arrays ------------------------------------------------------------------------
@settings(SETTINGS, max_examples=300)
@given(
    st.lists(element_bits, min_size=0, max_size=80),
    st.sampled_from(THRESHOLDS),
)
def test_small_array_statistics_match_numpy(patterns: list[int], extreme: float) -> None:
    a = as_f32(patterns)
    for chunk in (1, 2, 3, 7, 64, CHUNK):
        assert_stats_match(a, extreme, chunk)


@settings(SETTINGS, max_examples=60)
@given(
    n=st.integers(1, 40_000),
    seed=st.integers(0, 2**32 - 1),
    offset=st.sampled_from([0.0, 1.0, -3.0, 1e4, -1e6]),
    scale=st.sampled_from([1e-3, 0.05, 1.0, 1e3, 1e20]),
    inject=st.lists(st.tuples(st.integers(0, 39_999), element_bits), max_size=12),
    extreme=st.sampled_from(THRESHOLDS),
)
def test_large_array_statistics_match_numpy(
    n: int,
    seed: int,
    offset: float,
    scale: float,
    inject: list[tuple[int, int]],
    extreme: float,
) -> None:
    """Arrays longer than the blocks the kernels work in (8,192 floats), with a large mean
    against a small spread (cancellation) and huge magnitudes (float32 overflow of squares)."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(n) * scale + offset).astype(np.float32)
    u = a.view(np.uint32)
    for i, b in inject:
        u[i % n] = b
    for chunk in (8192, 10_001, 16_384 + 3, CHUNK):
        assert_stats_match(a, extreme, chunk)


# -- the scan's findings -------------------------------------------------------------------------
CFG = """[net]
width=4
height=4
channels=2

[convolutional]
batch_normalize=1
filters=3
size=2
activation=leaky

[convolutional]
filters=2
size=1
activation=linear

[connected]
output=4
activation=linear
"""
PLAN = dwf.Plan.from_text(CFG)


def reference_findings(body: np.ndarray[Any, Any], extreme: float) -> list[tuple[Any, ...]]:
    """(layer, array, kind, severity, count, message) of what the scan must report, from numpy
    on whole arrays, in file order."""
    out: list[tuple[Any, ...]] = []
    for lp in PLAN.layers:
        for spec in lp.arrays:
            v = body[spec.offset : spec.offset + spec.count]
            r = reference(v, extreme)

            def add(kind: str, sev: str, n: int, msg: str | None = None) -> None:
                out.append((lp.name, spec.name, kind, sev, n, msg))  # noqa: B023

            if r["nan"]:
                add("nan", "error", r["nan"])
            if r["inf"]:
                add("inf", "error", r["inf"])
            if r["extreme"]:
                n = r["extreme"]
                msg = (
                    f"{n:,} value{'s' * (n != 1)} with |x| > {extreme:g}"
                    f" (abs max {r['absmax']:.3g})"
                )
                add("extreme", "warning", r["extreme"], msg)
            if r["denormals"]:
                add("denormals", "info", r["denormals"])
            fin = v[np.isfinite(v)]
            if spec.name == "rolling_variance":
                kinds = [
                    ("negative-variance", "error", fin < -BN_EPS),
                    ("small-negative-variance", "warning", (fin >= -BN_EPS) & (fin <= -TINY)),
                    ("denormal-negative-variance", "info", (fin < 0) & (fin > -TINY)),
                    ("zero-variance", "info", fin == 0),
                ]
                for kind, sev, mask in kinds:
                    if np.count_nonzero(mask):
                        add(kind, sev, int(np.count_nonzero(mask)))
            elif spec.name == "scales" and r["zeros"]:
                add("dead-bn-channels", "warning", r["zeros"])
            elif spec.name == "weights":
                rows = v.reshape(spec.shape[0], -1)
                with np.errstate(invalid="ignore"):
                    dead = int(np.count_nonzero(~rows.any(axis=1)))
                if dead:
                    add("zero-filters", "warning", dead)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scan")


@pytest.mark.slow  # a property test of whole-file scans (~3 s)
@settings(SETTINGS, max_examples=200)
@given(
    base=st.lists(ordinary.map(bits), min_size=PLAN.total_floats, max_size=PLAN.total_floats),
    inject=st.lists(st.tuples(st.integers(0, PLAN.total_floats - 1), element_bits), max_size=30),
    dead=st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 3)), max_size=4),
    extreme=st.sampled_from(THRESHOLDS),
)
def test_check_findings_match_numpy(
    folder: Path,
    base: list[int],
    inject: list[tuple[int, int]],
    dead: list[tuple[int, int]],
    extreme: float,
) -> None:
    body = np.array(base, dtype=np.uint32)
    for i, b in inject:
        body[i] = b
    for layer, row in dead:  # all-zero filters / output units, some with a -0.0 among them
        spec = PLAN.layers[layer].array("weights")
        assert spec is not None
        width = spec.count // spec.shape[0]
        start = spec.offset + (row % spec.shape[0]) * width
        body[start : start + width] = 0
        if row % 2:
            body[start] = 0x80000000
    values = as_f32(body)
    path = folder / "scan.weights"
    path.write_bytes(Header().encode() + values.astype("<f4").tobytes())
    expected = reference_findings(values, extreme)
    reports = []
    with dwf.open(path, PLAN) as f:
        for chunk in (1, 2, 5, 16, CHUNK):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                reports.append(check(f, extreme=extreme, chunk=chunk))
    assert all(r == reports[0] for r in reports[1:])
    got = [
        (x.layer, x.array, x.kind, x.severity, x.count, x.message if x.kind == "extreme" else None)
        for x in reports[0].findings
    ]
    assert got == expected


def test_sums_without_vecdot(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy 1.x has no ``np.vecdot``: the per-block sums then take one ``np.dot`` per block,
    with the same results."""
    import dwf.tools.stats as stats_module

    rng = np.random.default_rng(7)
    for n in (5, 8192, 3 * 8192 + 17, CHUNK + 1):
        a = (rng.standard_normal(n) * 0.05 + 3.0).astype(np.float32)
        with_vecdot = stats_module.sum_and_squares(a)
        monkeypatch.setattr(stats_module, "_VECDOT", None)
        assert stats_module.sum_and_squares(a) == pytest.approx(with_vecdot, rel=1e-6)
        assert_stats_match(a, 1e6, 10_000)
        monkeypatch.undo()
