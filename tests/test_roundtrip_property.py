"""Property tests: random valid Darknet networks plan contiguously and round-trip byte-exactly.

The networks come from the suite's one network strategy, :func:`fuzz.strategies.networks`: cfg
text built section by section while tracking every layer's output shape the way Darknet does
(spec §6), so each generated cfg is one Darknet loads, with a model — independent of dwf — of
each layer's name, stored float32 count (spec §4), output shape and the plan's warnings. The
planner is checked against that model, then files written with ``dwf.save`` are reopened,
compared byte by byte, re-saved and truncated.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz.strategies import Net, networks, option_warning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dwf

# Database-free and bounded: examples are small networks, each test runs in a few seconds.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
F32 = np.dtype("<f4")


@st.composite
def float_arrays(draw: st.DrawFn) -> tuple[int, str, str]:
    """(seed, value mode, layout) for random float32 contents."""
    seed = draw(st.integers(0, 2**32 - 1))
    mode = draw(st.sampled_from(["normal", "bits", "specials"]))
    layout = draw(st.sampled_from(["flat", "nested", "fortran"]))
    return seed, mode, layout


_SPECIALS = np.array(
    [0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000,
     0x00000001, 0x007FFFFF, 0x80000001, 0x7F7FFFFF, 0x00000000],
    dtype="<u4",
).view(F32)  # fmt: skip


def make_arrays(plan: dwf.Plan, seed: int, mode: str) -> dict[str, np.ndarray[Any, Any]]:
    """One C-contiguous float32 array per planned array, keyed ``layer.array``."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for lp, a in plan.arrays():
        if mode == "bits":
            flat = rng.integers(0, 2**32, size=a.count, dtype=np.uint32).view(F32)
        else:
            flat = rng.standard_normal(a.count).astype(F32)
            if mode == "specials" and a.count:
                k = max(1, a.count // 4)
                flat[rng.integers(0, a.count, size=k)] = rng.choice(_SPECIALS, size=k)
        out[f"{lp.name}.{a.name}"] = flat.reshape(a.shape)
    return out


def arrange(
    arrays: dict[str, np.ndarray[Any, Any]], layout: str
) -> dict[str, Any]:  # the same arrays in one of the input forms dwf.save accepts
    if layout == "nested":
        nested: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for key, arr in arrays.items():
            layer, _, name = key.partition(".")
            nested.setdefault(layer, {})[name] = arr
        return nested
    if layout == "fortran":
        return {k: np.asfortranarray(v) for k, v in arrays.items()}
    return dict(arrays)


def cbytes(a: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def stored_bytes(spec: dwf.ArraySpec, arr: np.ndarray[Any, Any]) -> bytes:
    """What the file must hold for ``arr`` (spec §4.1: ``flipped`` stores the transpose)."""
    if spec.storage == "transposed":
        return cbytes(arr.reshape(spec.shape[0], -1).T)
    return cbytes(arr)


HEADERS = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
DIALECTS = ["alexeyab", "pjreddie"]


def plan_of(net: Net) -> dwf.Plan:
    return dwf.Plan.from_text(net.text, dialect=net.dialect)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- (a) the plan ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@SETTINGS
@given(data=st.data())
def test_plan_matches_model_and_is_contiguous(dialect: str, data: st.DataObject) -> None:
    net = data.draw(networks(dialect), label="net")
    plan = plan_of(net)
    assert plan.dialect == dialect
    assert [lp.name for lp in plan] == [e.name for e in net.layers]
    assert [lp.count for lp in plan] == [e.count for e in net.layers]
    assert [lp.out_shape for lp in plan] == [e.out for e in net.layers]
    assert [lp.outputs for lp in plan] == [e.outputs for e in net.layers]
    assert [lp.known for lp in plan] == [e.known for e in net.layers]
    # Contiguity: every array starts where the previous one stopped; the first starts at 0.
    cursor = 0
    for lp in plan:
        assert lp.offset == cursor
        for a in lp.arrays:
            assert a.offset == cursor
            assert a.count == math.prod(a.shape)
            assert a.count > 0
            cursor = a.stop
        assert lp.stop == cursor
    assert plan.total_floats == cursor == sum(a.count for _, a in plan.arrays()) == net.total
    assert plan.expected_size(16) == 16 + 4 * net.total
    # Only unknown sections (and pjreddie deconv) are worth a warning in these networks; the
    # options a fork's parser does not read are checked in tests/test_options.py.
    about_layers = [w for w in plan.warnings if not option_warning(w)]
    assert len(about_layers) == net.warnings, plan.warnings
    assert plan[-1].name == net.layers[-1].name
    assert plan.layer(0) is plan[plan[0].name]


# -- (b) + (c) write, reopen, rewrite ------------------------------------------------------------


@pytest.mark.slow  # writes, reopens and rewrites 2 x 60 files per dialect (~3.5 s each)
@pytest.mark.parametrize("dialect", DIALECTS)
@SETTINGS
@given(data=st.data(), contents=float_arrays(), seen=HEADERS)
def test_save_open_roundtrip_is_byte_exact(
    dialect: str, data: st.DataObject, contents: tuple[int, str, str], seen: tuple[int, int]
) -> None:
    net = data.draw(networks(dialect), label="net")
    plan = plan_of(net)
    seed, mode, layout = contents
    arrays = make_arrays(plan, seed, mode)
    headers = [dwf.Header(0, 1, 0, seen[0], 16), dwf.Header(0, 2, 5, seen[1], 20)]
    with tempfile.TemporaryDirectory(prefix="dwf-prop-") as tmp:
        folder = Path(tmp)
        for header in headers:
            path = folder / f"net{header.size}.weights"
            dwf.save(path, plan, arrange(arrays, layout), header=header)
            raw = path.read_bytes()
            assert len(raw) == header.size + 4 * net.total
            assert raw[: header.size] == header.encode()
            # The layout on disk, independently of the reader: each array at its planned span.
            for lp, a in plan.arrays():
                start, stop = a.byte_span(header.size)
                assert raw[start:stop] == stored_bytes(a, arrays[f"{lp.name}.{a.name}"])
            with dwf.open(path, plan, dialect=dialect) as f:
                h = f.header
                assert (h.major, h.minor, h.revision, h.seen, h.size) == (
                    header.major,
                    header.minor,
                    header.revision,
                    header.seen,
                    header.size,
                )
                assert f.complete and not f.partial and f.mismatch is None
                assert f.size == len(raw)
                assert f.last_layer == len(plan) - 1
                assert f.keys() == [lp.name for lp in plan.stored]
                for lp, a in plan.arrays():
                    view = f[lp.name][a.name]
                    assert view.shape == a.shape
                    assert view.dtype == F32
                    assert not view.flags.writeable
                    assert cbytes(view) == cbytes(arrays[f"{lp.name}.{a.name}"])
                # (c) the open file is itself an array source; the rewrite is byte-identical.
                again = folder / f"again{header.size}.weights"
                dwf.save(again, plan, f, header=f.header)
                assert again.read_bytes() == raw
        assert not [p for p in folder.iterdir() if p.name.endswith(".dwf-tmp")]


# -- (d) truncated files -----------------------------------------------------------------------


def expected_last_layer(net: Net, floats: int) -> int:
    """Index of the last layer before the first stored layer the body cannot hold."""
    stop = 0
    for i, e in enumerate(net.layers):
        stop += e.count
        if e.count and stop > floats:
            return i - 1
    return len(net.layers) - 1


def held_layers(net: Net, floats: int) -> list[str]:
    names, stop = [], 0
    for e in net.layers:
        stop += e.count
        if e.count and stop <= floats:
            names.append(e.name)
    return names


def check_held_views(
    f: dwf.WeightsFile, plan: dwf.Plan, arrays: dict[str, np.ndarray[Any, Any]], floats: int
) -> None:
    for lp in plan.stored:
        if lp.stop <= floats:
            assert lp.name in f
            for a in lp.arrays:
                assert cbytes(f[lp.name][a.name]) == cbytes(arrays[f"{lp.name}.{a.name}"])
        else:
            assert lp.name not in f
            with pytest.raises(dwf.LayerNotInFileError) as info:
                f[lp.name]
            assert info.value.layer == lp.name
            assert info.value.file_size == f.size


@pytest.mark.slow  # a property test writing many files (~1 s each)
@pytest.mark.parametrize("dialect", DIALECTS)
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), wide=st.booleans())
def test_truncated_files(dialect: str, data: st.DataObject, seed: int, wide: bool) -> None:
    net = data.draw(networks(dialect), label="net")
    plan = plan_of(net)
    n = net.total
    if n == 0:
        return
    header = dwf.Header(0, 2, 5, 7, 20) if wide else dwf.Header(0, 1, 0, 7, 16)
    hs = header.size
    arrays = make_arrays(plan, seed, "normal")
    # A header alone is a partial file too ("darknet partial cfg weights out 0").
    boundaries = sorted(({0} | {lp.stop for lp in plan.stored}) - {n})
    with tempfile.TemporaryDirectory(prefix="dwf-prop-") as tmp:
        folder = Path(tmp)
        full = folder / "full.weights"
        dwf.save(full, plan, arrays, header=header)
        raw = full.read_bytes()

        # Cut exactly at a layer boundary: a partial file ("darknet partial").
        for b in boundaries:
            cut = write(folder / f"cut{b}.weights", raw[: hs + 4 * b])
            if hs == 20 and b == n - 1:
                # Also exactly a complete file with a 16-byte header: the values decide (spec
                # §1.5): the 16-byte reading with a note, the 20-byte partial file, or, when
                # nothing tells them apart (no batch norm), a refusal that gives both.
                try:
                    f = dwf.open(cut, plan, dialect=dialect)
                except dwf.SizeMismatchError as e:
                    assert "read with a 16-byte header" in str(e), str(e)
                    assert "read with a 20-byte header" in str(e), str(e)
                    continue
                with f:
                    assert (f.header.size == 16 and f.complete and f.header.note) or (
                        f.header.size == 20 and f.partial and f.available_floats == b
                    )
                continue
            with dwf.open(cut, plan, dialect=dialect) as f:
                assert f.partial and not f.complete and f.mismatch is None
                assert f.header.size == hs
                assert f.available_floats == b
                assert f.last_layer == expected_last_layer(net, b)
                assert f.keys() == held_layers(net, b)
                check_held_views(f, plan, arrays, b)

        # Cut inside an array (or mid-float): a size mismatch.
        pos = data.draw(st.integers(hs, hs + 4 * n - 1), label="cut byte")
        body = pos - hs
        if body % 4 == 0 and body // 4 in boundaries:
            body += 1 + data.draw(st.integers(0, 2), label="mid-float")
            pos = hs + body
        if hs == 20 and pos == 16 + 4 * n:
            pos += 1  # not a 16-byte-header file either
            body += 1
        cut = write(folder / "mid.weights", raw[:pos])
        with pytest.raises(dwf.SizeMismatchError) as info:
            dwf.open(cut, plan, dialect=dialect)
        err = info.value
        assert err.path == str(cut) and str(cut) in str(err)
        assert (err.expected_size, err.actual_size, err.header_size) == (hs + 4 * n, pos, hs)
        floats = body // 4
        first = next((lp, a) for lp, a in plan.arrays() if a.stop > floats)
        assert err.first_unfilled == (
            first[0].index,
            first[0].name,
            first[0].type,
            first[1].name,
            *first[1].byte_span(hs),
        )
        with dwf.open(cut, plan, dialect=dialect, strict=False) as f:
            assert not f.partial and not f.complete
            assert f.mismatch is not None and str(cut) in f.mismatch
            assert f.available_floats == floats
            assert f.keys() == held_layers(net, floats)
            check_held_views(f, plan, arrays, floats)
