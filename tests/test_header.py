"""Spec §1: decoding the header, and files whose header width or storage order is unusual.

Everything here is built by hand in the test; ../shared is not needed.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dwf
from dwf import Header, Plan

LEGACY = (0.001, 0.9, 0.0005)  # learning rate, momentum, decay of a pre-2015 header
LEGACY_VERSION: tuple[int, int, int] = struct.unpack("<iii", struct.pack("<fff", *LEGACY))
BIG_SEEN = 2**40 + 12345  # does not fit 32 bits: shows which width was read


def _tail(n: int = 64) -> bytes:
    """Body bytes that follow a header (a recognisable pattern)."""
    return bytes(range(n))


# --------------------------------------------------------------------------------------------
# Decoding rules (spec §1.2–§1.4)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_v025_has_20_byte_header(dialect: str) -> None:
    h = Header.decode(struct.pack("<iiiQ", 0, 2, 5, BIG_SEEN) + _tail(), dialect=dialect)
    assert (h.major, h.minor, h.revision) == (0, 2, 5)
    assert h.size == 20 and h.seen == BIG_SEEN
    assert h.version == "0.2.5" and not h.transpose and h.legacy_floats is None
    assert h.note is None


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_v010_has_16_byte_header(dialect: str) -> None:
    data = struct.pack("<iiiI", 0, 1, 0, 4242) + b"\xff" * 8
    h = Header.decode(data, dialect=dialect)
    assert h.size == 16 and h.seen == 4242  # the 0xff body bytes are not part of seen
    assert not h.transpose


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_v020_has_20_byte_header(dialect: str) -> None:
    h = Header.decode(struct.pack("<iiiQ", 0, 2, 0, BIG_SEEN), dialect=dialect)
    assert h.size == 20 and h.seen == BIG_SEEN


def test_v000_and_negative_versions_have_16_byte_header() -> None:
    for version in [(0, 0, 0), (0, 0, 9), (-1, 5, 0), (0, 1, 99)]:
        h = Header.decode(struct.pack("<iiiI", *version, 7) + _tail())
        assert h.size == 16, version


def test_major_1000_exactly_depends_on_dialect() -> None:
    data = struct.pack("<iiiQ", 1000, 0, 0, BIG_SEEN)
    ab = Header.decode(data, dialect="alexeyab")
    pj = Header.decode(data, dialect="pjreddie")
    assert ab.size == 20 and ab.seen == BIG_SEEN
    assert pj.size == 16 and pj.seen == BIG_SEEN & 0xFFFFFFFF
    assert not ab.transpose and not pj.transpose  # 1000 is not > 1000


def test_minor_1000_exactly_depends_on_dialect() -> None:
    data = struct.pack("<iiiQ", 0, 1000, 0, 5)
    assert Header.decode(data, dialect="alexeyab").size == 20
    assert Header.decode(data, dialect="pjreddie").size == 16
    assert not Header.decode(data).transpose


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_legacy_float_header(dialect: str) -> None:
    data = struct.pack("<fff", *LEGACY) + struct.pack("<I", 777) + _tail()
    h = Header.decode(data, dialect=dialect)
    assert h.size == 16 and h.seen == 777
    assert h.transpose
    assert (h.major, h.minor, h.revision) == LEGACY_VERSION
    assert h.legacy_floats == pytest.approx(LEGACY, rel=1e-6)


def test_transpose_rule() -> None:
    assert Header(1001, 0, 0, size=16).transpose
    assert Header(0, 1001, 0, size=16).transpose
    assert not Header(1000, 1000, 0, size=20).transpose
    assert not Header(0, 2, 5).transpose


@pytest.mark.parametrize(
    "header",
    [
        Header(),
        Header(0, 2, 5, seen=BIG_SEEN, size=20),
        Header(0, 1, 0, seen=2**32 - 1, size=16),
        Header(0, 2, 0, seen=0, size=20),
        Header(*LEGACY_VERSION, seen=99, size=16),
    ],
)
def test_encode_round_trips(header: Header) -> None:
    data = header.encode()
    assert len(data) == header.size
    assert Header.decode(data + _tail(), size=header.size) == header
    assert Header.decode(data + _tail()) == header  # the version's own rule agrees


def test_encode_layout() -> None:
    assert Header(0, 2, 5, seen=3).encode() == struct.pack("<iiiQ", 0, 2, 5, 3)
    assert Header(0, 1, 0, seen=3, size=16).encode() == struct.pack("<iiiI", 0, 1, 0, 3)
    assert Header().encode() == struct.pack("<iiiQ", 0, 2, 5, 0)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 4, b"\x00" * 11, struct.pack("<iii", 0, 2, 5) + b"\x00" * 7],
)
def test_too_short_raises(data: bytes) -> None:
    with pytest.raises(dwf.HeaderError):
        Header.decode(data)


def test_too_short_for_16_byte_header() -> None:
    with pytest.raises(dwf.HeaderError):
        Header.decode(struct.pack("<iii", 0, 1, 0) + b"\x00\x00")


@pytest.mark.parametrize("size", [0, 12, 17, 24])
def test_bad_size_raises(size: int) -> None:
    with pytest.raises(dwf.HeaderError):
        Header(size=size)
    with pytest.raises(dwf.HeaderError):
        Header.decode(struct.pack("<iiiQ", 0, 2, 5, 0), size=size)


def test_seen_must_fit() -> None:
    with pytest.raises(dwf.HeaderError):
        Header(0, 1, 0, seen=2**32, size=16)
    with pytest.raises(dwf.HeaderError):
        Header(seen=-1)


def test_header_error_is_value_error() -> None:
    assert issubclass(dwf.HeaderError, ValueError)


# --------------------------------------------------------------------------------------------
# Files: wrong header widths (spec §1.5/§1.6), overrides, transposed storage (§1.3, §4.1)
# --------------------------------------------------------------------------------------------

SMALL_CFG = """
[net]
width=6
height=6
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=5
size=1
activation=linear
"""


def _arrays(plan: Plan, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Values like a trained file's: batch-norm variances positive (what decides a header width
    the size cannot: docs/format.md §1.5)."""
    rng = np.random.default_rng(seed)
    out = {}
    for lp, a in plan.arrays():
        values = rng.standard_normal(a.shape)
        if a.name == "rolling_variance":
            values = np.abs(values) + 0.1
        out[f"{lp.name}.{a.name}"] = values.astype("<f4")
    return out


def _plain_body(plan: Plan, arrays: dict[str, np.ndarray[Any, Any]]) -> bytes:
    """The body of a file holding ``arrays`` (all stored plainly), built without dwf."""
    parts = []
    for lp, a in plan.arrays():
        assert a.storage == "plain"
        parts.append(np.ascontiguousarray(arrays[f"{lp.name}.{a.name}"], dtype="<f4").tobytes())
    return b"".join(parts)


def _assert_arrays(f: dwf.WeightsFile, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    got = dict(f.arrays())
    assert list(got) == list(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_v025_file_with_16_byte_header(tmp_path: Path) -> None:
    """AlexeyAB 0cf56d1c wrote 0.2.5 with a 4-byte seen: the size says 16, not 20."""
    plan = Plan.from_text(SMALL_CFG)
    arrays = _arrays(plan)
    path = tmp_path / "odd.weights"
    path.write_bytes(struct.pack("<iiiI", 0, 2, 5, 321) + _plain_body(plan, arrays))
    with dwf.open(path, plan) as f:
        assert f.header.size == 16
        assert f.header.note is not None and "16" in f.header.note
        assert f.header.seen == 321
        assert f.complete and not f.partial
        _assert_arrays(f, arrays)
        assert f["conv_0"].span == (16, 16 + 4 * plan["conv_0"].count)


def test_v010_file_with_8_byte_seen(tmp_path: Path) -> None:
    """AlexeyAB Oct 2017 wrote 0.1.0 with an 8-byte seen: the size says 20, not 16."""
    plan = Plan.from_text(SMALL_CFG)
    arrays = _arrays(plan, seed=1)
    # What tells it from a 16-byte file with 4 stray bytes (docs/format.md §1.5): read with 16
    # bytes, this running mean would be the first batch-norm variance, and it is negative.
    arrays["conv_0.rolling_mean"][-1] = -0.5
    path = tmp_path / "odd.weights"
    path.write_bytes(struct.pack("<iiiQ", 0, 1, 0, BIG_SEEN) + _plain_body(plan, arrays))
    with dwf.open(path, plan) as f:
        assert f.header.size == 20
        assert f.header.note is not None
        assert f.header.seen == BIG_SEEN
        assert f.complete
        _assert_arrays(f, arrays)


def test_regular_files_have_no_note(tmp_path: Path) -> None:
    plan = Plan.from_text(SMALL_CFG)
    arrays = _arrays(plan)
    for header in (Header(0, 2, 5, seen=BIG_SEEN), Header(0, 1, 0, seen=5, size=16)):
        path = tmp_path / f"{header.size}.weights"
        dwf.save(path, plan, arrays, header=header)
        assert path.stat().st_size == header.size + 4 * plan.total_floats
        with dwf.open(path, plan) as f:
            assert f.header == header and f.header.note is None
            _assert_arrays(f, arrays)


def test_header_size_override(tmp_path: Path) -> None:
    plan = Plan.from_text(SMALL_CFG)
    arrays = _arrays(plan, seed=2)
    body = _plain_body(plan, arrays)
    odd = tmp_path / "odd.weights"
    odd.write_bytes(struct.pack("<iiiI", 0, 2, 5, 99) + body)
    # Forcing the width the file really has: read as 16 bytes, no guessing involved.
    with dwf.open(odd, plan, header_size=16) as f:
        assert f.header.size == 16 and f.header.seen == 99
        _assert_arrays(f, arrays)
    # Forcing the version's (wrong) width: no automatic switch, so the size does not fit.
    with pytest.raises(dwf.SizeMismatchError) as e:
        dwf.open(odd, plan, header_size=20)
    assert e.value.header_size == 20
    with dwf.open(odd, plan, header_size=20, strict=False) as f:
        assert f.header.size == 20 and f.mismatch
    # And the other way round, on a regular 0.1.0 file whose width we force to 20.
    regular = tmp_path / "regular.weights"
    regular.write_bytes(struct.pack("<iiiQ", 0, 1, 0, BIG_SEEN) + body)
    with dwf.open(regular, plan, header_size=20) as f:
        assert f.header.size == 20 and f.header.seen == BIG_SEEN
        _assert_arrays(f, arrays)
    with pytest.raises(dwf.HeaderError):
        dwf.open(regular, plan, header_size=18)


# ---- (c) legacy header: connected weights stored (inputs, outputs) -------------------------

LEGACY_CFG = """
[net]
width=2
height=2
channels=3

[convolutional]
filters=2
size=1
activation=linear

[connected]
output=5
activation=linear

[connected]
output=3
batch_normalize=1
activation=linear
"""


def _legacy_file(tmp_path: Path) -> tuple[Path, Plan, dict[str, np.ndarray[Any, Any]]]:
    """A legacy-header file written by hand: each connected block stored transposed."""
    plan = Plan.from_text(LEGACY_CFG)
    arrays = _arrays(plan, seed=3)
    parts = [struct.pack("<fff", *LEGACY) + struct.pack("<I", 1000)]
    for lp, a in plan.arrays():
        value = arrays[f"{lp.name}.{a.name}"]
        if lp.type == "connected" and a.name == "weights":
            value = value.T  # (outputs, inputs) logical → (inputs, outputs) on disk
        parts.append(np.ascontiguousarray(value, dtype="<f4").tobytes())
    path = tmp_path / "legacy.weights"
    path.write_bytes(b"".join(parts))
    return path, plan, arrays


def test_legacy_connected_weights_are_transposed(tmp_path: Path) -> None:
    path, plan, arrays = _legacy_file(tmp_path)
    assert plan["connected_1"].inputs == 8
    raw = path.read_bytes()
    with dwf.open(path, plan) as f:
        assert f.header.size == 16 and f.header.transpose
        w = f["connected_1"].weights
        assert w is not None
        assert w.shape == (5, 8)  # logical (outputs, inputs)
        np.testing.assert_array_equal(w, arrays["connected_1.weights"])
        spec = plan["connected_1"].array("weights")
        assert spec is not None and spec.storage == "transposed-if-legacy"
        start, stop = spec.byte_span(16)
        stored = np.frombuffer(raw[start:stop], dtype="<f4").reshape(8, 5)
        np.testing.assert_array_equal(w, stored.T)
        assert not np.array_equal(np.asarray(w).ravel(), stored.ravel())  # really reordered
        # Zero-copy: a view of the map, not a copy.
        assert not w.flags.owndata and not w.flags.writeable
        assert not w.flags.c_contiguous and w.T.flags.c_contiguous
        again = f["connected_1"].weights
        assert again is not None and np.shares_memory(w, again)
        base: Any = w
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert not isinstance(base, np.ndarray)  # the chain ends at the file's buffer
        # Second connected layer: transposed too; its BN arrays are unaffected.
        np.testing.assert_array_equal(f["connected_2"].weights, arrays["connected_2.weights"])
        np.testing.assert_array_equal(f["connected_2"].scales, arrays["connected_2.scales"])
        # Convolutional weights are never transposed.
        np.testing.assert_array_equal(f["conv_0"].weights, arrays["conv_0.weights"])


def test_non_legacy_connected_weights_are_plain(tmp_path: Path) -> None:
    plan = Plan.from_text(LEGACY_CFG)
    arrays = _arrays(plan, seed=4)
    path = tmp_path / "modern.weights"
    path.write_bytes(Header().encode() + _plain_body_any(plan, arrays))
    with dwf.open(path, plan) as f:
        assert not f.header.transpose
        w = f["connected_1"].weights
        assert w is not None and w.flags.c_contiguous
        np.testing.assert_array_equal(w, arrays["connected_1.weights"])


def _plain_body_any(plan: Plan, arrays: dict[str, np.ndarray[Any, Any]]) -> bytes:
    return b"".join(
        np.ascontiguousarray(arrays[f"{lp.name}.{a.name}"], dtype="<f4").tobytes()
        for lp, a in plan.arrays()
    )


def test_legacy_save_round_trip(tmp_path: Path) -> None:
    path, plan, arrays = _legacy_file(tmp_path)
    original = path.read_bytes()
    with dwf.open(path, plan) as f:
        copy = tmp_path / "copy.weights"
        dwf.save(copy, plan, f, header=f.header)
    assert copy.read_bytes() == original  # byte-identical
    # Saving logical arrays with a legacy header stores the connected block transposed.
    fresh = tmp_path / "fresh.weights"
    header = Header(*LEGACY_VERSION, seen=1000, size=16)
    dwf.save(fresh, plan, arrays, header=header)
    assert fresh.read_bytes() == original


# ---- (d) conv flipped=1: weights stored ((c//groups)*size*size, n) --------------------------

FLIPPED_CFG = """
[net]
width=5
height=5
channels=4

[convolutional]
filters=6
size=3
pad=1
groups=2
flipped=1
batch_normalize=1
activation=leaky

[convolutional]
filters=3
size=1
activation=linear
"""


def test_flipped_conv_weights_are_transposed(tmp_path: Path) -> None:
    plan = Plan.from_text(FLIPPED_CFG)
    spec = plan["conv_0"].array("weights")
    assert spec is not None
    assert spec.storage == "transposed" and spec.shape == (6, 2, 3, 3) and spec.count == 108
    assert plan["conv_1"].array("weights").storage == "plain"  # type: ignore[union-attr]
    arrays = _arrays(plan, seed=5)
    parts = [Header().encode()]
    for lp, a in plan.arrays():
        value = arrays[f"{lp.name}.{a.name}"]
        if a.storage == "transposed":
            value = value.reshape(6, 18).T  # stored ((c//groups)*size*size, n) = (18, 6)
        parts.append(np.ascontiguousarray(value, dtype="<f4").tobytes())
    path = tmp_path / "flipped.weights"
    original = b"".join(parts)
    path.write_bytes(original)
    with dwf.open(path, plan) as f:
        w = f["conv_0"].weights
        assert w is not None and w.shape == (6, 2, 3, 3)
        np.testing.assert_array_equal(w, arrays["conv_0.weights"])
        start, stop = spec.byte_span(20)
        stored = np.frombuffer(original[start:stop], dtype="<f4").reshape(18, 6)
        np.testing.assert_array_equal(w, stored.T.reshape(6, 2, 3, 3))
        assert not w.flags.owndata and not w.flags.writeable
        again = f["conv_0"].weights
        assert again is not None and np.shares_memory(w, again)
        np.testing.assert_array_equal(f["conv_1"].weights, arrays["conv_1.weights"])
        copy = tmp_path / "copy.weights"
        dwf.save(copy, plan, f, header=f.header)
    assert copy.read_bytes() == original
    fresh = tmp_path / "fresh.weights"
    dwf.save(fresh, plan, arrays)
    assert fresh.read_bytes() == original
