"""Real Darknet weights files (../shared/realweights/INDEX.md): every row's verdict, checked.

The table is parsed at test time; each row is one parametrized case. For files that match their
cfg, every array view is compared with the file's raw bytes at the planned offsets, read with
plain Python.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from conftest import SHARED, shared_path

import dwf

REAL = SHARED / "realweights"


@attrs.frozen
class Row:
    folder: str
    weights: str
    size: int
    sha256_prefix: str
    version: tuple[int, int, int]
    seen_bytes: int
    floats: int
    verdict: str

    @property
    def header_size(self) -> int:
        return 12 + self.seen_bytes


def _cell(text: str) -> str:
    return text.strip().strip("`").strip()


def _int(text: str) -> int:
    return int(_cell(text).replace(",", ""))


def parse_index(path: Path) -> list[Row]:
    """The rows of INDEX.md's table (lines starting with ``| ` ``)."""
    rows: list[Row] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.strip().strip("|").split("|")
        assert len(cells) == 9, f"unexpected INDEX.md row: {line}"
        folder, weights, size, sha, header, seen, floats, _types, verdict = cells
        major, minor, revision = (int(x) for x in _cell(header).split("."))
        rows.append(
            Row(
                folder=_cell(folder),
                weights=_cell(weights),
                size=_int(size),
                sha256_prefix=_cell(sha).rstrip("…").rstrip("."),
                version=(major, minor, revision),
                seen_bytes=_int(seen),
                floats=_int(floats),
                verdict=verdict.strip(),
            )
        )
    return rows


def _rows() -> list[Any]:
    index = REAL / "INDEX.md"
    if not index.is_file():
        return [pytest.param(None, id="realweights-absent")]
    return [pytest.param(r, id=r.folder) for r in parse_index(index)]


ROWS = _rows()


def _files(row: Row | None) -> tuple[Path, Path]:
    """(weights, cfg) of a row; skips when ../shared is absent."""
    if row is None:
        shared_path("realweights", "INDEX.md")
        raise AssertionError("unreachable")  # pragma: no cover
    folder = shared_path("realweights", row.folder)
    cfgs = sorted(folder.glob("*.cfg"))
    assert len(cfgs) == 1, f"{folder}: expected exactly one cfg, found {cfgs}"
    weights = folder / row.weights
    assert weights.is_file()
    return weights, cfgs[0]


def _stored_bytes(view: np.ndarray[Any, Any], spec: dwf.ArraySpec, header: dwf.Header) -> bytes:
    """The bytes a view stands for, in the order the file stores them."""
    transposed = spec.storage == "transposed" or (
        spec.storage == "transposed-if-legacy" and header.transpose
    )
    if transposed:
        return np.ascontiguousarray(view.reshape(spec.shape[0], -1).T).tobytes()
    if view.flags.c_contiguous:
        return view.tobytes()
    return np.ascontiguousarray(view).tobytes()  # pragma: no cover


def _check_layer_bytes(f: dwf.WeightsFile, raw: bytes, layer: dwf.LayerPlan) -> int:
    """Compare every array of ``layer`` with ``raw``; returns how many were compared."""
    views = f[layer.name].arrays
    assert list(views) == [a.name for a in layer.arrays]
    for a in layer.arrays:
        view = views[a.name]
        assert view.dtype == np.dtype("<f4")
        assert view.shape == a.shape
        assert int(np.prod(a.shape)) == a.count
        assert not view.flags.writeable
        start, stop = a.byte_span(f.header.size)
        assert _stored_bytes(view, a, f.header) == raw[start:stop], (
            f"{f.path}: {layer.name}.{a.name} bytes {start}..{stop} differ"
        )
    return len(layer.arrays)


def _kind(verdict: str) -> str:
    for kind in ("matches exactly", "partial backbone file", "cfg mismatch", "broken: truncated"):
        if verdict.startswith(kind):
            return kind
    raise AssertionError(f"unknown verdict in INDEX.md: {verdict!r}")


def test_index_parsed() -> None:
    rows = parse_index(shared_path("realweights", "INDEX.md"))
    assert len(rows) == 16
    kinds = [_kind(r.verdict) for r in rows]
    assert kinds.count("matches exactly") == 13
    assert kinds.count("partial backbone file") == 1
    assert kinds.count("cfg mismatch") == 1
    assert kinds.count("broken: truncated") == 1


@pytest.mark.parametrize("row", ROWS)
def test_file_is_the_one_indexed(row: Row | None) -> None:
    weights, _ = _files(row)
    assert row is not None
    data = weights.read_bytes()
    assert len(data) == row.size
    assert hashlib.sha256(data).hexdigest().startswith(row.sha256_prefix)
    assert struct.unpack_from("<iii", data) == row.version


@pytest.mark.parametrize("row", ROWS)
def test_verdict(row: Row | None) -> None:
    weights, cfg = _files(row)
    assert row is not None
    kind = _kind(row.verdict)
    raw = weights.read_bytes()
    if kind == "matches exactly":
        _check_exact(row, weights, cfg, raw)
    elif kind == "partial backbone file":
        _check_partial(row, weights, cfg, raw)
    elif kind == "cfg mismatch":
        _check_mismatch(row, weights, cfg, raw)
    else:
        _check_truncated(row, weights, cfg, raw)


def _check_header(f: dwf.WeightsFile, row: Row, raw: bytes) -> None:
    h = f.header
    assert (h.major, h.minor, h.revision) == row.version
    assert h.size == row.header_size
    assert h.note is None  # the version's rule is right for every real file
    fmt = "<Q" if row.seen_bytes == 8 else "<I"
    assert h.seen == struct.unpack_from(fmt, raw, 12)[0]


def _check_exact(row: Row, weights: Path, cfg: Path, raw: bytes) -> None:
    with dwf.open(weights, cfg) as f:
        _check_header(f, row, raw)
        assert f.complete and not f.partial and f.mismatch is None
        assert f.plan.total_floats == row.floats == f.available_floats
        assert f.size == row.size == row.header_size + 4 * row.floats
        assert f.last_layer == len(f.plan) - 1
        compared = sum(_check_layer_bytes(f, raw, lp) for lp in f.plan.stored)
        assert compared == sum(1 for _ in f.plan.arrays()) > 0
        assert f.keys() == [lp.name for lp in f.plan.stored]


def _check_partial(row: Row, weights: Path, cfg: Path, raw: bytes) -> None:
    m = re.search(r"\.conv\.(\d+)$", row.weights)
    assert m, f"partial file without a .conv.N name: {row.weights}"
    n = int(m.group(1))  # `darknet partial ... N` writes layers 0..N-1
    with dwf.open(weights, cfg) as f:
        _check_header(f, row, raw)
        assert f.partial and not f.complete and f.mismatch is None
        assert f.last_layer == n - 1
        if row.weights == "yolo-fastest.conv.109":
            assert f.last_layer == 108
        assert f.available_floats == row.floats
        assert f.plan.layers[n - 1].stop == row.floats
        assert f.plan.total_floats > row.floats
        for lp in f.plan.stored:
            if lp.index < n:
                assert lp.name in f and lp.index in f
                _check_layer_bytes(f, raw, lp)
            else:
                assert lp.name not in f and lp.index not in f
                with pytest.raises(dwf.LayerNotInFileError) as e:
                    f[lp.name]
                assert isinstance(e.value, KeyError)
                with pytest.raises(KeyError):
                    f[lp.index]
        assert f.keys() == [lp.name for lp in f.plan.stored if lp.index < n]


def _check_mismatch(row: Row, weights: Path, cfg: Path, raw: bytes) -> None:
    plan = dwf.plan(cfg)
    expected = plan.expected_size(row.header_size)
    assert row.size < expected
    avail = (row.size - row.header_size) // 4
    assert avail == row.floats
    first_lp, first_a = next((lp, a) for lp, a in plan.arrays() if a.stop > avail)
    if row.folder == "yolo-lite-trial8":
        # "1,872 floats fewer = the 3 BN arrays of all six batch_normalize layers (3 x 624)"
        assert plan.total_floats - row.floats == 1872 == 3 * 624
        assert (first_lp.index, first_lp.name, first_a.name) == (14, "conv_14", "weights")
    with pytest.raises(dwf.SizeMismatchError) as e:
        dwf.open(weights, cfg)
    err = e.value
    assert (err.expected_size, err.actual_size, err.header_size) == (
        expected,
        row.size,
        row.header_size,
    )
    msg = str(err)
    assert f"{expected:,}" in msg and f"{row.size:,}" in msg
    assert err.first_unfilled is not None
    assert err.first_unfilled[:4] == (first_lp.index, first_lp.name, first_lp.type, first_a.name)
    assert err.first_unfilled[4:] == first_a.byte_span(row.header_size)
    assert f"{first_lp.index} ({first_lp.name}" in msg
    with dwf.open(weights, cfg, strict=False) as f:
        _check_header(f, row, raw)
        assert f.mismatch and not f.partial and not f.complete
        assert f.last_layer == first_lp.index - 1
        for lp in f.plan.stored:
            if lp.stop <= avail:
                assert lp.name in f
                _check_layer_bytes(f, raw, lp)
            else:
                assert lp.index >= first_lp.index
                assert lp.name not in f
                with pytest.raises(dwf.LayerNotInFileError):
                    f[lp.name]


def _check_truncated(row: Row, weights: Path, cfg: Path, raw: bytes) -> None:
    assert (row.size - row.header_size) % 4 != 0
    with pytest.raises(dwf.SizeMismatchError) as e:
        dwf.open(weights, cfg)
    assert e.value.actual_size == row.size
    assert "not a whole number of float32" in str(e.value)
    # strict=False: the layers the file holds completely are readable, the rest are not.
    with dwf.open(weights, cfg, strict=False) as f:
        assert f.mismatch and not f.partial and not f.complete
        assert f.available_floats == (row.size - row.header_size) // 4 == row.floats
        held = [lp for lp in f.plan.stored if lp.stop <= f.available_floats]
        assert held, "the truncated file should still hold its first layers"
        assert f.keys() == [lp.name for lp in held]
        for lp in held:
            _check_layer_bytes(f, raw, lp)
        missing = next(lp for lp in f.plan.stored if lp.stop > f.available_floats)
        with pytest.raises(dwf.LayerNotInFileError):
            f[missing.name]


@pytest.mark.parametrize("row", ROWS)
def test_views_are_read_only(row: Row | None) -> None:
    weights, cfg = _files(row)
    assert row is not None
    with dwf.open(weights, cfg, strict=False) as f:
        name, view = next(iter(f.arrays()))
        before = view.copy()
        with pytest.raises(ValueError):
            view[...] = 0
        with pytest.raises(ValueError):
            view.flat[0] = 1.0
        with pytest.raises(ValueError):
            view.setflags(write=True)
        np.testing.assert_array_equal(view, before, err_msg=name)


@pytest.mark.parametrize("row", ROWS)
def test_input_file_unchanged(row: Row | None) -> None:
    weights, cfg = _files(row)
    assert row is not None
    st = os.stat(weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    with dwf.open(weights, cfg, strict=False) as f:
        read = 0
        for _, view in f.arrays():
            np.asarray(view, dtype=np.float64).sum()  # touch every value
            read += 1
        assert read == sum(
            1 for lp in f.plan.stored if lp.stop <= f.available_floats for _ in lp.arrays
        )
    assert f.closed
    after = os.stat(weights)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
