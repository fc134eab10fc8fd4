"""The diff maths, directly: ``dwf.tools.diff._array_diff`` on constructed arrays and ``dwf.diff``
on small files written with ``dwf.save``.

What each number means is documented in docs/api.md (``dwf.ArrayDiff``): ``identical`` is
bit-for-bit equality; ``max_abs`` the largest ``|b - a|`` over the values finite in both (NaN if
there are none); ``rel_l2 = ||b - a|| / ||a||`` (``inf`` when ``a`` is all zeros and ``b`` is
not); ``cosine`` between -1 and 1 (NaN when either is all zeros). The references below compute
those definitions in float64 with numpy (or exactly with ``math.fsum``), independently of the
chunked streaming code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dwf
from dwf.tools.diff import ArrayDiff, DiffReport, _array_diff
from dwf.tools.stats import CHUNK

F32 = np.dtype("<f4")
Arr = np.ndarray[Any, Any]
NAN = float("nan")
INF = float("inf")

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def f32(*values: float) -> Arr:
    return np.array(values, dtype=F32)


def bits(*words: int) -> Arr:
    """float32 values with exactly these bit patterns (NaN payloads survive)."""
    return np.array(words, dtype="<u4").view(F32)


def diff(a: Arr, b: Arr, chunk: int = CHUNK) -> tuple[bool, float, float, float]:
    return _array_diff(a, b, chunk)


def same(x: float, y: float, rel: float = 0.0, abs_: float = 0.0) -> bool:
    """Equal numbers, NaN equal to NaN, inf to inf of the same sign; within a tolerance."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_) if rel or abs_ else x == y


def reference(a: Arr, b: Arr) -> tuple[bool, float, float, float]:
    """The documented definitions, over the whole arrays at once, in float64."""
    identical = a.tobytes() == b.tobytes()
    ok = np.isfinite(a) & np.isfinite(b)
    a64, b64 = a[ok].astype(np.float64), b[ok].astype(np.float64)
    d = b64 - a64
    max_abs = float(np.max(np.abs(d))) if d.size else NAN
    dd, aa, bb, ab = (float(np.dot(x, y)) for x, y in ((d, d), (a64, a64), (b64, b64), (a64, b64)))
    rel = math.sqrt(dd / aa) if aa > 0 else (0.0 if dd == 0 else INF)
    cos = ab / math.sqrt(aa * bb) if aa > 0 and bb > 0 else NAN
    return identical, max_abs, rel, min(max(cos, -1.0), 1.0)


# -- identical -------------------------------------------------------------------------------------
def test_equal_arrays_are_identical() -> None:
    a = np.random.default_rng(1).standard_normal(1000).astype(F32)
    identical, max_abs, rel, cos = diff(a, a.copy())
    assert identical and max_abs == 0.0 and rel == 0.0
    assert cos == pytest.approx(1.0, abs=1e-12) and cos <= 1.0


def test_identity_is_bitwise_nan_payloads_included() -> None:
    quiet, payload, negative = 0x7FC00000, 0x7FC00001, 0xFFC00000
    one = 0x3F800000
    assert diff(bits(one, quiet), bits(one, quiet))[0]
    # NaN != NaN as numbers, but the same bits are the same array
    assert diff(bits(one, payload), bits(one, payload))[0]
    # another payload or sign is another bit pattern: not identical, though both are NaN
    for other in (payload, negative):
        identical, max_abs, rel, cos = diff(bits(one, quiet), bits(one, other))
        assert not identical
        # the only finite pair is equal: nothing moved
        assert (max_abs, rel) == (0.0, 0.0) and cos == pytest.approx(1.0)


def test_signed_zeros_are_not_identical_but_do_not_differ() -> None:
    """-0.0 == +0.0 numerically, but ``identical`` is documented as bit-for-bit."""
    identical, max_abs, rel, cos = diff(f32(1.0, 0.0), f32(1.0, -0.0))
    assert not identical
    assert (max_abs, rel, cos) == (0.0, 0.0, 1.0)
    # all zeros on both sides: nothing moved (rel 0), but there is no direction (cosine NaN)
    identical, max_abs, rel, cos = diff(f32(0.0, 0.0), f32(-0.0, 0.0))
    assert not identical and max_abs == 0.0 and rel == 0.0 and math.isnan(cos)


# -- max_abs ---------------------------------------------------------------------------------------
def test_max_abs_over_pairs_finite_in_both() -> None:
    a = f32(1.0, NAN, 5.0, INF, -2.0, 0.0)
    b = f32(1.5, 100.0, NAN, 3.0, -2.25, -INF)
    identical, max_abs, _, _ = diff(a, b)
    assert not identical
    assert max_abs == 0.5  # pairs 0 and 4 only; the 100 opposite a NaN does not count


def test_max_abs_without_a_finite_pair_is_nan() -> None:
    _, max_abs, rel, cos = diff(f32(NAN, INF, 1.0), f32(2.0, 3.0, NAN))
    assert math.isnan(max_abs)
    assert rel == 0.0 and math.isnan(cos)  # nothing to measure


# Found by this file: a bit-identical chunk used to set max_abs to 0.0 even when it held no
# finite pair, so the result depended on the chunk size.
@pytest.mark.parametrize(
    ("a", "b", "chunk"),
    [
        (bits(0x7FC00000, 0x7F800000), bits(0x7FC00000, 0x7F800000), CHUNK),  # NaN, inf
        (f32(NAN, 1.0), f32(NAN, INF), 1),  # chunk=2 gives NaN, chunk=1 gives 0.0
    ],
    ids=["identical-without-finite-values", "chunk-dependent"],
)
def test_max_abs_is_nan_without_finite_pairs_whatever_the_chunks(
    a: Arr, b: Arr, chunk: int
) -> None:
    assert math.isnan(diff(a, b, chunk)[1])


# -- rel_l2 ----------------------------------------------------------------------------------------
def test_rel_l2_is_the_norm_ratio() -> None:
    a, b = f32(3.0, 4.0), f32(3.0, 4.5)  # ||b - a|| = 0.5, ||a|| = 5
    identical, max_abs, rel, _ = diff(a, b)
    assert not identical and max_abs == 0.5 and rel == pytest.approx(0.1, rel=1e-15)
    assert diff(b, a)[2] == pytest.approx(0.5 / math.hypot(3.0, 4.5), rel=1e-15)


def test_rel_l2_from_all_zeros() -> None:
    assert diff(f32(0.0, 0.0), f32(0.0, 1e-30))[2] == INF
    assert diff(f32(0.0, -0.0), f32(0.0, 0.0))[2] == 0.0
    assert diff(f32(0.0, 0.0), f32(0.0, 0.0))[2] == 0.0


# -- cosine ----------------------------------------------------------------------------------------
def test_cosine_values() -> None:
    assert diff(f32(1.0, 0.0), f32(0.0, 2.0))[3] == 0.0
    assert diff(f32(1.0, 2.0), f32(-2.0, -4.0))[3] == pytest.approx(-1.0, abs=1e-15)
    assert diff(f32(3.0, 4.0), f32(4.0, 3.0))[3] == pytest.approx(24 / 25, rel=1e-15)


@pytest.mark.parametrize(("a", "b"), [((0.0, 0.0), (1.0, 2.0)), ((1.0, 2.0), (0.0, -0.0))])
def test_cosine_of_a_zero_vector_is_nan(a: tuple[float, ...], b: tuple[float, ...]) -> None:
    assert math.isnan(diff(f32(*a), f32(*b))[3])


def test_cosine_is_clamped_to_one() -> None:
    """Nearly parallel vectors (``b = ±3a`` rounded to float32) whose float64 cosine rounds past
    ±1: the result stays in [-1, 1]."""
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(400):
        a = rng.standard_normal(rng.integers(2, 50)).astype(F32)
        for b in (a * np.float32(3), a * np.float32(-3)):
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            raw = float(np.dot(a64, b64)) / math.sqrt(float(np.dot(a64, a64) * np.dot(b64, b64)))
            cos = diff(a, b)[3]
            assert -1.0 <= cos <= 1.0
            assert cos == pytest.approx(math.copysign(1.0, raw), abs=1e-12)
            found += abs(raw) > 1.0
    assert found, "no example rounded past ±1: the clamp was not exercised"


# -- chunks and accuracy ---------------------------------------------------------------------------
ELEMENTS = st.one_of(
    st.floats(width=32, min_value=-1e6, max_value=1e6),
    st.sampled_from([0.0, -0.0, NAN, INF, -INF, 1e-45, 3e38, -3e38]),
)


@st.composite
def array_pairs(draw: st.DrawFn) -> tuple[Arr, Arr]:
    """Two float32 arrays of one length; ``b`` is often ``a`` with a few values changed, so that
    some chunks are bit-identical and others are not."""
    n = draw(st.integers(1, 200))
    a = draw(hnp.arrays(F32, n, elements=ELEMENTS))
    if draw(st.booleans()):
        b = draw(hnp.arrays(F32, n, elements=ELEMENTS))
    else:
        b = a.copy()
        for i in draw(st.lists(st.integers(0, n - 1), max_size=4)):
            b[i] = draw(ELEMENTS)
    return a, b


@SETTINGS
@given(pair=array_pairs(), chunk=st.integers(1, 256))
def test_results_do_not_depend_on_the_chunk_size(pair: tuple[Arr, Arr], chunk: int) -> None:
    a, b = pair
    whole = diff(a, b, max(a.size, 1))
    part = diff(a, b, chunk)
    assert part[0] == whole[0]
    assert same(part[1], whole[1]), (part, whole)
    assert same(part[2], whole[2], rel=1e-9), (part, whole)
    assert same(part[3], whole[3], abs_=1e-9), (part, whole)


@SETTINGS
@given(pair=array_pairs(), chunk=st.sampled_from([1, 3, 64, CHUNK]))
def test_agrees_with_a_float64_reference(pair: tuple[Arr, Arr], chunk: int) -> None:
    a, b = pair
    got, want = diff(a, b, chunk), reference(a, b)
    assert got[0] == want[0]
    if not math.isnan(want[1]):
        assert got[1] == want[1], (got, want)
    assert same(got[2], want[2], rel=1e-9), (got, want)
    assert same(got[3], want[3], abs_=1e-9), (got, want)
    assert math.isnan(got[3]) or -1.0 <= got[3] <= 1.0


def test_sums_are_float64_not_float32() -> None:
    """Squares of float32 values near 1e30 overflow float32; a million terms lose digits in a
    float32 sum. The results must match exact (``math.fsum``) sums."""
    identical, max_abs, rel, cos = diff(f32(1e30, 2e30), f32(1e30, 3e30))
    a64 = np.array([1e30, 2e30], dtype=F32).astype(np.float64)
    b64 = np.array([1e30, 3e30], dtype=F32).astype(np.float64)
    assert not identical and max_abs == float(b64[1] - a64[1])
    assert rel == pytest.approx(abs(b64[1] - a64[1]) / math.hypot(*a64), rel=1e-12)
    assert cos == pytest.approx(float(a64 @ b64) / math.hypot(*a64) / math.hypot(*b64), rel=1e-12)

    rng = np.random.default_rng(3)
    a = (1.0 + rng.random(1 << 20)).astype(F32)
    b = (a + rng.standard_normal(a.size).astype(F32) * np.float32(1e-3)).astype(F32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = math.sqrt(math.fsum((b64 - a64) ** 2) / math.fsum(a64**2))
    rel = diff(a, b, 1 << 16)[2]
    assert rel == pytest.approx(exact, rel=1e-12)
    # the same ratio summed in float32 is visibly off: this test tells the two apart
    d32 = b - a
    in32 = math.sqrt(float(np.cumsum(d32 * d32)[-1]) / float(np.cumsum(a * a)[-1]))
    assert abs(in32 - exact) / exact > 1e-6


# -- files: dwf.diff -------------------------------------------------------------------------------
CFG = """[net]
width=4
height=4
channels=2

[convolutional]
filters=3
size=3
pad=1
batch_normalize=1

[maxpool]
size=2
stride=2

[convolutional]
filters=2
size=1

[connected]
output=5
"""


def arrays_for(plan: dwf.Plan, seed: int) -> dict[str, Arr]:
    rng = np.random.default_rng(seed)
    return {
        f"{lp.name}.{a.name}": rng.standard_normal(a.shape).astype(F32) for lp, a in plan.arrays()
    }


@pytest.fixture
def plan() -> dwf.Plan:
    return dwf.Plan.from_text(CFG)


def write(path: Path, plan: dwf.Plan, arrays: dict[str, Arr], seen: int = 0) -> Path:
    dwf.save(path, plan, arrays, header=dwf.Header(seen=seen))
    return path


def test_diff_of_two_files_array_by_array(tmp_path: Path, plan: dwf.Plan) -> None:
    arrays = arrays_for(plan, 1)
    later = dict(arrays)
    later["conv_2.weights"] = arrays["conv_2.weights"] + np.float32(0.25)
    later["connected_3.biases"] = np.zeros(5, dtype=F32)
    a = write(tmp_path / "a.weights", plan, arrays, seen=100)
    b = write(tmp_path / "b.weights", plan, later, seen=200)
    calls: list[tuple[int, int, str]] = []
    with dwf.open(a, plan) as fa, dwf.open(b, plan) as fb:
        report = dwf.diff(fa, fb, chunk=7, progress=lambda *p: calls.append(p))
    assert (report.a, report.b, report.seen_a, report.seen_b) == (str(a), str(b), 100, 200)
    assert [(d.layer, d.array) for d in report.arrays] == [
        (lp.name, s.name) for lp, s in plan.arrays()
    ]
    assert not report.identical and not report.only_a and not report.only_b
    assert [(d.layer, d.array) for d in report.changed] == [
        ("conv_2", "weights"),
        ("connected_3", "biases"),
    ]
    by = {(d.layer, d.array): d for d in report.arrays}
    w = by["conv_2", "weights"]
    assert (w.index, w.type, w.count) == (2, "convolutional", 6)
    want = reference(arrays["conv_2.weights"].ravel(), later["conv_2.weights"].ravel())
    assert w.max_abs == want[1] and w.rel_l2 == pytest.approx(want[2], rel=1e-12)
    assert w.cosine == pytest.approx(want[3], abs=1e-12)
    zeroed = by["connected_3", "biases"]
    assert zeroed.rel_l2 == pytest.approx(1.0) and math.isnan(zeroed.cosine)
    assert calls[-1][:2] == (plan.total_floats, plan.total_floats) and len(calls) == len(by)


def test_diff_of_a_file_and_itself(tmp_path: Path, plan: dwf.Plan) -> None:
    a = write(tmp_path / "a.weights", plan, arrays_for(plan, 2))
    report = dwf.diff(a, a, cfg=plan)
    assert report.identical and report.changed == ()
    assert all(d.identical and d.max_abs == 0.0 and d.rel_l2 == 0.0 for d in report.arrays)


def test_partial_files_compare_what_both_hold(tmp_path: Path, plan: dwf.Plan) -> None:
    arrays = arrays_for(plan, 3)
    full = write(tmp_path / "full.weights", plan, arrays)
    cut = tmp_path / "cut.weights"
    dwf.save(cut, plan, {k: v for k, v in arrays.items() if k.startswith("conv_0.")}, upto=1)
    report = dwf.diff(full, cut, cfg=plan)
    assert report.only_a == ("conv_2", "connected_3") and report.only_b == ()
    assert {d.layer for d in report.arrays} == {"conv_0"}
    assert all(d.identical for d in report.arrays)
    assert not report.identical  # the layers only one file holds are a difference
    flipped = dwf.diff(cut, full, cfg=plan)
    assert flipped.only_a == () and flipped.only_b == ("conv_2", "connected_3")


def test_shape_mismatch_between_cfgs(tmp_path: Path, plan: dwf.Plan) -> None:
    other = dwf.Plan.from_text(CFG.replace("output=5", "output=4"))
    a = write(tmp_path / "a.weights", plan, arrays_for(plan, 4))
    b = write(tmp_path / "b.weights", other, arrays_for(other, 4))
    with dwf.open(a, plan) as fa, dwf.open(b, other) as fb:
        report = dwf.diff(fa, fb)
    assert report.shape_mismatch == ("connected_3.biases", "connected_3.weights")
    assert all(d.layer != "connected_3" for d in report.arrays)
    assert all(d.identical for d in report.arrays)  # same seed, same shapes: same values
    assert not report.identical


# -- the report ------------------------------------------------------------------------------------
def _d(index: int, layer: str, array: str, max_abs: float, rel: float, cos: float) -> ArrayDiff:
    return ArrayDiff(index, layer, "convolutional", array, 4, False, max_abs, rel, cos)


def test_layers_aggregate_the_largest_change_per_layer() -> None:
    report = DiffReport(
        "a.weights",
        "b.weights",
        1,
        2,
        (
            _d(0, "conv_0", "biases", 0.5, 0.1, 0.9),
            _d(0, "conv_0", "weights", 0.25, 0.3, 0.8),
            _d(2, "conv_2", "biases", NAN, 0.0, NAN),
            _d(2, "conv_2", "weights", 2.0, INF, NAN),
            _d(5, "conv_5", "weights", NAN, 0.0, NAN),
        ),
    )
    assert report.layers() == [
        (0, "conv_0", "convolutional", 0.5, 0.3),
        (2, "conv_2", "convolutional", 2.0, INF),  # NaN max_abs is skipped, inf rel kept
        (5, "conv_5", "convolutional", 0.0, 0.0),  # no finite value anywhere: 0.0
    ]


def test_to_dict_is_strict_json() -> None:
    d = _d(3, "conv_3", "weights", NAN, INF, NAN)
    assert d.to_dict() == {
        "index": 3,
        "layer": "conv_3",
        "type": "convolutional",
        "array": "weights",
        "count": 4,
        "identical": False,
        "max_abs": None,
        "rel_l2": None,
        "cosine": None,
    }
    finite = _d(1, "conv_1", "biases", 0.5, 0.25, -1.0).to_dict()
    assert (finite["max_abs"], finite["rel_l2"], finite["cosine"]) == (0.5, 0.25, -1.0)
    report = DiffReport("a", "b", 1, 2, (d,), only_a=("x_9",), shape_mismatch=("y_1.weights",))
    doc = report.to_dict()
    assert doc == json.loads(json.dumps(doc, allow_nan=False))
    assert doc["identical"] is False and doc["only_a"] == ["x_9"] and doc["only_b"] == []
    assert doc["shape_mismatch"] == ["y_1.weights"] and doc["arrays"] == [d.to_dict()]
    assert (doc["a"], doc["b"], doc["seen_a"], doc["seen_b"]) == ("a", "b", 1, 2)


def test_drift_compares_consecutive_files(tmp_path: Path, plan: dwf.Plan) -> None:
    arrays = arrays_for(plan, 5)
    one = write(tmp_path / "1.weights", plan, arrays)
    two = write(
        tmp_path / "2.weights", plan, {**arrays, "conv_0.biases": arrays["conv_0.biases"] * 2}
    )
    reports = dwf.drift([one, two, one], cfg=plan)
    assert [(r.a, r.b) for r in reports] == [(str(one), str(two)), (str(two), str(one))]
    assert [[(d.layer, d.array) for d in r.changed] for r in reports] == [
        [("conv_0", "biases")]
    ] * 2


@pytest.mark.parametrize("where", ["a", "b"])
def test_one_nan_leaves_the_other_pairs_measured(where: str) -> None:
    # Found in review: a NaN in B only went down the float32 path (Python's min(1.0, nan) is
    # 1.0) and made every measure NaN.
    a = np.ones(10, dtype=np.float32)
    b = a.copy()
    b[4] = 2.0
    (b if where == "b" else a)[3] = np.nan
    same_, max_abs, rel, cos = diff(a, b, CHUNK)
    assert not same_ and max_abs == 1.0
    assert rel == pytest.approx(1 / 3) and 0.9 < cos < 1.0
