"""Editing weights files: ``cut`` (``darknet partial``), ``save`` with replaced arrays or a new
header, and batch-norm folding (``fused``/``fuse``).

Source files are written here byte by byte from random arrays of small hand-written cfgs (conv
with groups and batch norm, connected with batch norm, a legacy 16-byte header whose connected
weights are stored transposed, ``flipped=1`` convs, pjreddie), and every expected output is
computed here from the arrays and the storage order of the spec, independently of dwf's writer.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from conftest import ROOT, shared_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dwf
import dwf.interfaces.cli as cli
from dwf.tools.demo import write_demo

F32 = np.dtype("<f4")
Array = np.ndarray[Any, Any]

# Bounded: small networks, few examples; both files run in well under a minute.
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EPS = 1e-5  # AlexeyAB's batch-norm epsilon: (x - mean) / sqrt(var + 1e-5)

# -- small hand-written networks --------------------------------------------------------------

GROUPS_BN = """\
[net]
width=6
height=6
channels=4

# 0: grouped conv with batch norm
[convolutional]
batch_normalize=1
filters=6
size=3
stride=1
pad=1
groups=2
activation=leaky

# 1: 3x3
[maxpool]
size=2
stride=2

# 2: depthwise with batch norm
[convolutional]
batch_normalize=1
filters=6
groups=6
size=3
stride=1
pad=1
activation=leaky

# 3
[batchnorm]

# 4: 6 + 6 channels
[route]
layers=-1,-3

# 5: no batch norm
[convolutional]
filters=5
size=1
stride=1
pad=1
activation=linear
"""

CONNECTED_BN = """\
[net]
width=4
height=4
channels=2

# 0: 2x2x3 = 12 outputs
[convolutional]
batch_normalize=1
filters=3
size=3
stride=2
pad=1
activation=leaky

# 1: 12 -> 5 with batch norm
[connected]
output=5
batch_normalize=1
activation=leaky

# 2
[dropout]
probability=.5

# 3: 5 -> 3
[connected]
output=3
activation=linear

# 4
[softmax]
"""

FLIPPED = """\
[net]
width=5
height=5
channels=4

# 0: flipped (stored transposed) with batch norm, stride 2
[convolutional]
batch_normalize=1
flipped=1
filters=6
size=3
stride=2
pad=1
activation=leaky

# 1: 3x3
[upsample]
stride=1

# 2: flipped, grouped, no batch norm
[convolutional]
flipped=1
filters=4
groups=2
size=1
stride=1
activation=linear

# 3: 4*3*3 = 36 -> 2
[connected]
output=2
activation=linear
"""


def legacy_header(seen: int = 3_200) -> dwf.Header:
    """A pre-2015 header: (learning rate, momentum, decay) as float32, then a 4-byte seen."""
    major, minor, revision = struct.unpack("<iii", struct.pack("<fff", 0.001, 0.9, 0.0005))
    return dwf.Header(major, minor, revision, seen, 16)


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    dialect: str
    header: dwf.Header

    def __repr__(self) -> str:
        return f"Case({self.name})"


CASES = [
    Case("groups_bn", GROUPS_BN, "alexeyab", dwf.Header(0, 2, 5, 12_800, 20)),
    Case("connected_bn", CONNECTED_BN, "alexeyab", dwf.Header(0, 2, 5, 64, 20)),
    Case("legacy", CONNECTED_BN, "alexeyab", legacy_header()),
    Case("flipped", FLIPPED, "alexeyab", dwf.Header(0, 2, 5, 1_000, 20)),
    Case("pjreddie", GROUPS_BN, "pjreddie", dwf.Header(0, 1, 0, 500, 16)),
]
CASE_IDS = [c.name for c in CASES]


def header_bytes(h: dwf.Header) -> bytes:
    """Darknet's header bytes, written out here rather than by dwf."""
    seen = struct.pack("<Q" if h.size == 20 else "<I", h.seen)
    return struct.pack("<iii", h.major, h.minor, h.revision) + seen


def stored_transposed(spec: dwf.ArraySpec, header: dwf.Header) -> bool:
    legacy = header.major > 1000 or header.minor > 1000
    return spec.storage == "transposed" or (spec.storage == "transposed-if-legacy" and legacy)


def file_bytes(
    plan: dwf.Plan, arrays: dict[str, Array], header: dwf.Header, upto: int | None = None
) -> bytes:
    """The weights file Darknet writes for these arrays: header, then every array of layers
    ``0..upto-1`` in file order (conv ``flipped=1`` and legacy connected weights transposed)."""
    parts = [header_bytes(header)]
    for lp in plan.layers[:upto]:
        for a in lp.arrays:
            v = np.asarray(arrays[f"{lp.name}.{a.name}"], dtype=F32)
            assert v.shape == a.shape
            if stored_transposed(a, header):
                v = v.reshape(a.shape[0], -1).T
            parts.append(np.ascontiguousarray(v).tobytes())
    return b"".join(parts)


def random_arrays(plan: dwf.Plan, seed: int) -> dict[str, Array]:
    """Random float32 values for every array; variances positive."""
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for lp, a in plan.arrays():
        if a.name.endswith("rolling_variance"):
            v = rng.uniform(0.25, 2.0, a.shape)
        elif a.name.endswith("scales"):
            v = rng.uniform(0.5, 1.5, a.shape) * rng.choice([-1.0, 1.0], a.shape)
        else:
            v = rng.standard_normal(a.shape)
        out[f"{lp.name}.{a.name}"] = v.astype(F32)
    return out


def write_case(
    folder: Path, case: Case, seed: int, upto: int | None = None
) -> tuple[Path, Path, dict[str, Array]]:
    """Write ``<case>.cfg`` and ``<case>.weights`` (layers ``0..upto-1``) into ``folder``."""
    cfg = folder / f"{case.name}.cfg"
    cfg.write_text(case.text, encoding="utf-8")
    plan = dwf.plan(cfg, dialect=case.dialect)
    arrays = random_arrays(plan, seed)
    weights = folder / f"{case.name}.weights"
    weights.write_bytes(file_bytes(plan, arrays, case.header, upto))
    return cfg, weights, arrays


def darknet_partial_header(dialect: str) -> dwf.Header:
    """What ``darknet partial`` writes: the writer's version, seen = 0, 8-byte seen."""
    return dwf.Header(0, 2, 0 if dialect == "pjreddie" else 5, 0, 20)


def held_floats(plan: dwf.Plan, upto: int) -> int:
    """Floats a file holding layers ``0..upto-1`` has."""
    upto = min(upto, len(plan.layers))
    return plan.layers[upto - 1].stop if upto else 0


def expected_last_layer(plan: dwf.Plan, upto: int) -> int:
    """Every layer before the first stored layer at or after ``upto``."""
    nxt = next((lp.index for lp in plan.layers[upto:] if lp.arrays), len(plan.layers))
    return nxt - 1


def fingerprint(path: Path) -> tuple[bytes, int, int]:
    st_ = os.stat(path)
    return path.read_bytes(), st_.st_mtime_ns, st_.st_ino


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".dwf-tmp")]


# -- numpy reference of Darknet's forward pass --------------------------------------------------


def conv2d(x: Array, w: Array, stride: int = 1, pad: int = 0, groups: int = 1) -> Array:
    """Reference 2-D convolution (cross-correlation, as Darknet and PyTorch compute it) in
    float64: ``x`` is ``(c, h, w)``, ``w`` is ``(n, c // groups, kh, kw)``."""
    c, h, wd = x.shape
    n, cg, kh, kw = w.shape
    assert c == cg * groups and n % groups == 0
    xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow))
    ng = n // groups
    w64 = np.asarray(w, dtype=np.float64)
    for g in range(groups):
        xs = xp[g * cg : (g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[
                    :,
                    i : i + stride * (oh - 1) + 1 : stride,
                    j : j + stride * (ow - 1) + 1 : stride,
                ]
                out[g * ng : (g + 1) * ng] += np.einsum(
                    "oc,chw->ohw", w64[g * ng : (g + 1) * ng, :, i, j], patch
                )
    return out


def batch_norm(
    y: Array, mean: Array, var: Array, scales: Array, biases: Array, eps: float = EPS
) -> Array:
    """Darknet's inference batch norm over axis 0, then the bias: what follows conv/connected."""
    shape = (-1,) + (1,) * (y.ndim - 1)

    def r(v: Array) -> Array:
        return np.asarray(v, dtype=np.float64).reshape(shape)

    return (y - r(mean)) / np.sqrt(r(var) + eps) * r(scales) + r(biases)


def test_conv2d_reference_matches_the_definition() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 5, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    stride, pad, groups = 2, 1, 2
    got = conv2d(x, w, stride, pad, groups)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (5 + 2 - 3) // 2 + 1, (6 + 2 - 2) // 2 + 1
    assert got.shape == (6, oh, ow)
    for o in range(6):
        g = o // 3
        for y in range(oh):
            for z in range(ow):
                s = 0.0
                for ci in range(2):
                    for i in range(3):
                        for j in range(2):
                            s += w[o, ci, i, j] * xp[g * 2 + ci, y * stride + i, z * stride + j]
                assert got[o, y, z] == pytest.approx(s, rel=1e-12, abs=1e-12)


# -- cut: the published partial files ---------------------------------------------------------


@pytest.mark.slow  # real files cut at every published point (~0.7 s each)
@pytest.mark.parametrize(
    ("cfg_name", "upto", "size"),
    [
        ("yolov3.cfg", 74, 162_482_580),  # darknet53.conv.74
        ("yolov4.cfg", 137, 170_038_676),  # yolov4.conv.137
        ("yolov4-tiny.cfg", 29, 19_789_716),  # yolov4-tiny.conv.29
    ],
)
def test_cut_gives_the_published_partial_files(
    tmp_path: Path, cfg_name: str, upto: int, size: int
) -> None:
    cfg = shared_path("conformance", "cfg", "alexeyab", cfg_name)
    plan = dwf.plan(cfg)
    src = tmp_path / "full.weights"
    # A sparse file of the full size: zeros, except a marker at both ends of every stored layer.
    with open(src, "wb") as fh:
        fh.write(header_bytes(dwf.Header(0, 2, 5, 32_032_000, 20)))
        fh.truncate(plan.expected_size(20))
        for lp in plan.stored:
            start, stop = lp.byte_span(20)
            fh.seek(start)
            fh.write(struct.pack("<f", lp.index + 1))
            fh.seek(stop - 4)
            fh.write(struct.pack("<f", -(lp.index + 1)))
    before = fingerprint(src)
    dst = tmp_path / f"backbone.conv.{upto}"
    assert dwf.cut(src, dst, upto, cfg=cfg) == os.fspath(dst)
    assert os.path.getsize(dst) == size
    with open(dst, "rb") as fh:
        assert fh.read(20) == header_bytes(dwf.Header(0, 2, 5, 0, 20))
    with dwf.open(dst, cfg) as g:
        assert g.partial and not g.complete and g.mismatch is None
        assert g.header == dwf.Header(0, 2, 5, 0, 20)
        assert g.last_layer == expected_last_layer(plan, upto)
        last_kept = [lp for lp in plan.layers[:upto] if lp.arrays][-1]
        assert g[last_kept.index].in_file
        flat = np.concatenate([v.ravel() for v in g[last_kept.index].arrays.values()])
        assert flat[0] == last_kept.index + 1 and flat[-1] == -(last_kept.index + 1)
        nxt = next(lp for lp in plan.layers[upto:] if lp.arrays)
        with pytest.raises(dwf.LayerNotInFileError):
            g[nxt.index]
    a = np.memmap(src, dtype=np.uint8, mode="r", offset=20, shape=(size - 20,))
    b = np.memmap(dst, dtype=np.uint8, mode="r", offset=20, shape=(size - 20,))
    assert np.array_equal(a, b)
    del a, b
    assert fingerprint(src) == before
    assert leftovers(tmp_path) == []


# -- properties: cut at every layer count, save with replacements -----------------------------


@SETTINGS
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**32 - 1))
def test_cut_at_every_layer_count(case: Case, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg, src, arrays = write_case(folder, case, seed)
        before = fingerprint(src)
        plan = dwf.plan(cfg, dialect=case.dialect)
        n = len(plan.layers)
        header = darknet_partial_header(case.dialect)
        for upto in range(n + 1):
            dst = folder / f"cut.{upto}"
            assert dwf.cut(src, dst, upto, cfg=cfg, dialect=case.dialect) == os.fspath(dst)
            data = dst.read_bytes()
            assert data == file_bytes(plan, arrays, header, upto)
            assert len(data) == 20 + 4 * held_floats(plan, upto)
            if not case.header.transpose:  # kept layers: exactly the source's bytes
                body = before[0][case.header.size :]
                assert data[20:] == body[: len(data) - 20]
            held = held_floats(plan, upto)
            # A header-only cut (no stored layer kept) does not fit the cfg strictly; see report.
            with dwf.open(dst, cfg, dialect=case.dialect, strict=held > 0) as g:
                assert g.available_floats == held
                assert g.header == header
                assert g.last_layer == expected_last_layer(plan, upto)
                if 0 < held < plan.total_floats:
                    assert g.partial and g.mismatch is None
                if held == plan.total_floats:
                    assert g.complete and not g.partial
                for name, view in g.arrays():
                    np.testing.assert_array_equal(view, arrays[name])
        assert fingerprint(src) == before
        assert leftovers(folder) == []


@SETTINGS
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_save_with_replacements(case: Case, seed: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg, src, arrays = write_case(folder, case, seed)
        before = fingerprint(src)
        plan = dwf.plan(cfg, dialect=case.dialect)
        n = len(plan.layers)
        upto = data.draw(st.one_of(st.none(), st.integers(0, n)), label="upto")
        kept = [(lp.name, a) for lp in plan.layers[:upto] for a in lp.arrays]
        mask = data.draw(st.lists(st.booleans(), min_size=len(kept), max_size=len(kept)))
        nested = data.draw(st.booleans(), label="nested")
        dtype = data.draw(st.sampled_from(["<f4", ">f4", "<f8", "<i4"]), label="dtype")
        which = data.draw(st.sampled_from(["keep", "reset", "new"]), label="header")
        rng = np.random.default_rng(seed + 1)
        replace: dict[str, Any] = {}
        expected = dict(arrays)
        for (layer, a), chosen in zip(kept, mask, strict=True):
            if not chosen:
                continue
            if dtype == "<i4":
                value: Array = rng.integers(-9, 9, a.shape).astype(dtype)
            else:
                value = rng.standard_normal(a.shape).astype(dtype)
            expected[f"{layer}.{a.name}"] = value.astype(F32)
            if nested:
                replace.setdefault(layer, {})[a.name] = value
            else:
                replace[f"{layer}.{a.name}"] = value
        dst = folder / "out.weights"
        with dwf.open(src, cfg, dialect=case.dialect) as f:
            header = {
                "keep": None,
                "reset": attrs.evolve(f.header, seen=0),
                "new": attrs.evolve(f.header, seen=seed % 2**32),
            }[which]
            assert f.save(dst, upto=upto, replace=replace, header=header) == os.fspath(dst)
            # the open file still reads the source's values
            for name, view in f.arrays():
                np.testing.assert_array_equal(view, arrays[name])
        # one rule (dwf.io.writer.header_to_write): upto without a header is darknet partial
        want_header = header or (
            case.header if upto is None else dwf.Header.written_by(case.dialect)
        )
        assert dst.read_bytes() == file_bytes(plan, expected, want_header, upto)
        held = held_floats(plan, n if upto is None else upto)
        with dwf.open(dst, cfg, dialect=case.dialect, strict=held > 0) as g:
            assert g.header == want_header
            assert g.available_floats == held
            for name, view in g.arrays():
                np.testing.assert_array_equal(view, expected[name])
        assert fingerprint(src) == before
        assert leftovers(folder) == []


# -- errors: nothing is written ----------------------------------------------------------------


@pytest.fixture
def groups_file(tmp_path: Path) -> tuple[Path, Path, dict[str, Array]]:
    return write_case(tmp_path, CASES[0], 1)


def test_replace_with_wrong_shape_names_layer_and_array(
    tmp_path: Path, groups_file: tuple[Path, Path, dict[str, Array]]
) -> None:
    cfg, src, _ = groups_file
    dst = tmp_path / "out.weights"
    with dwf.open(src, cfg) as f:
        with pytest.raises(dwf.ArrayError) as e:
            f.save(dst, replace={"conv_2.weights": np.zeros((6, 1, 3, 2), F32)})
        msg = str(e.value)
        assert "conv_2" in msg and "weights" in msg and "(6, 1, 3, 3)" in msg
        assert not dst.exists()
        # an existing destination is left as it was
        dst.write_bytes(b"keep me")
        with pytest.raises(dwf.ArrayError, match=r"conv_0.*scales"):
            f.save(dst, replace={"conv_0": {"scales": np.zeros(5, F32)}})
        assert dst.read_bytes() == b"keep me"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "value",
    [
        np.zeros((6,), dtype=np.complex64),
        np.zeros((6,), dtype=bool),
        np.array(["a"] * 6),
        [None] * 6,
    ],
    ids=["complex", "bool", "str", "object"],
)
def test_replace_with_wrong_dtype(
    tmp_path: Path, groups_file: tuple[Path, Path, dict[str, Array]], value: Any
) -> None:
    cfg, src, _ = groups_file
    dst = tmp_path / "out.weights"
    with dwf.open(src, cfg) as f, pytest.raises(dwf.ArrayError, match=r"conv_0.*biases"):
        f.save(dst, replace={"conv_0.biases": value})
    assert not dst.exists()


@pytest.mark.parametrize(
    ("replace", "upto"),
    [
        ({"conv_0.weight": np.zeros((6, 2, 3, 3))}, None),  # PyTorch's name, not dwf's
        ({"conv_9.biases": np.zeros(6)}, None),  # no such layer
        ({"maxpool_1.biases": np.zeros(6)}, None),  # a layer without arrays
        ({"conv_0": {"gamma": np.zeros(6)}}, None),  # unknown array of a real layer
        ({"conv_5.biases": np.zeros(5)}, 5),  # past upto
        ({"conv_0.biases": np.zeros(6)}, 0),  # past upto=0
    ],
)
def test_replace_unknown_or_past_upto(
    tmp_path: Path,
    groups_file: tuple[Path, Path, dict[str, Array]],
    replace: dict[str, Any],
    upto: int | None,
) -> None:
    cfg, src, _ = groups_file
    dst = tmp_path / "out.weights"
    with dwf.open(src, cfg) as f, pytest.raises(dwf.ArrayError) as e:
        f.save(dst, upto=upto, replace=replace)
    key = next(iter(replace))
    assert key in str(e.value)
    assert not dst.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("upto", [-1, 7, 100, True, 2.0, "3"])
def test_upto_out_of_range(
    tmp_path: Path, groups_file: tuple[Path, Path, dict[str, Array]], upto: Any
) -> None:
    cfg, src, _ = groups_file
    before = fingerprint(src)
    dst = tmp_path / "out.weights"
    with dwf.open(src, cfg) as f, pytest.raises(dwf.DwfError, match="upto"):
        f.save(dst, upto=upto)
    with pytest.raises(dwf.DwfError, match="upto"):
        dwf.cut(src, dst, upto, cfg=cfg)
    assert not dst.exists()
    assert fingerprint(src) == before


def test_cut_of_a_partial_source_beyond_what_it_holds(tmp_path: Path) -> None:
    case = CASES[0]
    cfg, src, arrays = write_case(tmp_path, case, 3, upto=4)  # holds layers 0..4
    dst = tmp_path / "out.weights"
    with pytest.raises(dwf.LayerNotInFileError, match="conv_5"):
        dwf.cut(src, dst, 6, cfg=cfg)
    with dwf.open(src, cfg) as f:
        assert f.partial and f.last_layer == 4
        with pytest.raises(dwf.LayerNotInFileError):
            f.save(dst)
        # replacing only part of the missing layer does not help either
        with pytest.raises(dwf.LayerNotInFileError):
            f.save(dst, replace={"conv_5.biases": np.zeros(5)})
    assert not dst.exists()
    assert leftovers(tmp_path) == []
    # ... but cutting within what it holds works, and so does replacing the whole missing layer
    dwf.cut(src, dst, 5, cfg=cfg)
    plan = dwf.plan(cfg)
    assert dst.read_bytes() == file_bytes(plan, arrays, darknet_partial_header("alexeyab"), 5)
    new = {"biases": np.ones(5), "weights": np.ones((5, 12, 1, 1))}
    with dwf.open(src, cfg) as f:
        f.save(dst, replace={"conv_5": new})
    with dwf.open(dst, cfg) as g:
        assert g.complete
        np.testing.assert_array_equal(g["conv_5"].weights, new["weights"])


def test_save_over_the_source_path(groups_file: tuple[Path, Path, dict[str, Array]]) -> None:
    """Saving over the file being read is refused (it would destroy the input); writing
    elsewhere and renaming over it is the way, and the open map keeps the old bytes."""
    cfg, src, arrays = groups_file
    plan = dwf.plan(cfg)
    new_w = np.full((6, 2, 3, 3), 0.5, F32)
    with dwf.open(src, cfg) as f:
        view = f["conv_0"].weights
        old = np.array(view)
        ino = os.stat(src).st_ino
        with pytest.raises(dwf.DwfError, match="input"):
            f.save(f.path, replace={"conv_0.weights": new_w})
        assert os.stat(src).st_ino == ino
        tmp = src.with_name("new.weights")
        f.save(tmp, replace={"conv_0.weights": new_w}, header=attrs.evolve(f.header, seen=0))
        os.replace(tmp, src)
        # the open map still shows the old values, through old and new views alike
        np.testing.assert_array_equal(view, old)
        np.testing.assert_array_equal(f["conv_0"].weights, arrays["conv_0.weights"])
        assert f.header.seen == 12_800
    expected = dict(arrays, **{"conv_0.weights": new_w})
    assert src.read_bytes() == file_bytes(plan, expected, dwf.Header(0, 2, 5, 0, 20))
    assert os.stat(src).st_ino != ino  # a new file was renamed over the path
    with dwf.open(src, cfg) as g:
        np.testing.assert_array_equal(g["conv_0"].weights, new_w)
    assert leftovers(src.parent) == []


def test_cut_keeps_the_pjreddie_writer_version(tmp_path: Path) -> None:
    case = CASES[-1]
    cfg, src, _ = write_case(tmp_path, case, 5)
    dst = tmp_path / "out.weights"
    dwf.cut(src, dst, 3, cfg=cfg, dialect="pjreddie")
    with open(dst, "rb") as fh:
        assert struct.unpack("<iiiQ", fh.read(20)) == (0, 2, 0, 0)
    # an explicit header wins
    dwf.cut(src, dst, 3, cfg=cfg, dialect="pjreddie", header=dwf.Header(0, 2, 0, 9, 20))
    with open(dst, "rb") as fh:
        assert struct.unpack("<iiiQ", fh.read(20)) == (0, 2, 0, 9)


# -- batch-norm folding ------------------------------------------------------------------------


def conv_cfg(channels: int, filters: int, size: int, stride: int, groups: int, flipped: int) -> str:
    return (
        f"[net]\nwidth=7\nheight=6\nchannels={channels}\n\n"
        f"[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\nstride={stride}\n"
        f"pad=1\ngroups={groups}\nflipped={flipped}\nactivation=linear\n"
    )


CONV_PARAMS = [
    # (channels, filters, size, stride, groups, flipped)
    (3, 4, 3, 1, 1, 0),
    (4, 6, 3, 2, 2, 0),
    (6, 6, 3, 1, 6, 0),  # depthwise
    (6, 9, 1, 1, 3, 0),
    (4, 6, 3, 2, 2, 1),  # flipped: weights stored transposed
    (6, 4, 5, 2, 2, 0),
]


@pytest.mark.parametrize(
    ("channels", "filters", "size", "stride", "groups", "flipped"), CONV_PARAMS
)
def test_fused_conv_equals_conv_then_batch_norm(
    tmp_path: Path, channels: int, filters: int, size: int, stride: int, groups: int, flipped: int
) -> None:
    case = Case(
        "conv", conv_cfg(channels, filters, size, stride, groups, flipped), "alexeyab", dwf.Header()
    )
    cfg, src, arrays = write_case(tmp_path, case, 11 + size)
    pad = size // 2
    x = np.random.default_rng(3).standard_normal((channels, 6, 7))
    a = {k.split(".", 1)[1]: v for k, v in arrays.items()}
    y = batch_norm(
        conv2d(x, a["weights"], stride, pad, groups),
        a["rolling_mean"],
        a["rolling_variance"],
        a["scales"],
        a["biases"],
    )
    with dwf.open(src, cfg) as f:
        w, b = f[0].fused()
        assert w.dtype == F32 and b.dtype == F32
        assert w.shape == (filters, channels // groups, size, size) and b.shape == (filters,)
        assert w.flags.writeable and not np.shares_memory(w, f[0].weights)
        fused_y = conv2d(x, w, stride, pad, groups) + np.asarray(b, np.float64)[:, None, None]
        np.testing.assert_allclose(fused_y, y, rtol=1e-4, atol=1e-4)
        # the source arrays are untouched
        np.testing.assert_array_equal(f[0].weights, a["weights"])
        # the formula, per output channel
        k = a["scales"].astype(np.float64) / np.sqrt(a["rolling_variance"] + EPS)
        np.testing.assert_allclose(w, a["weights"] * k[:, None, None, None], rtol=1e-6)
        np.testing.assert_allclose(b, a["biases"] - a["rolling_mean"] * k, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [CASES[1], CASES[2]], ids=["connected_bn", "legacy"])
def test_fused_connected_equals_linear_then_batch_norm(tmp_path: Path, case: Case) -> None:
    cfg, src, arrays = write_case(tmp_path, case, 21)
    x = np.random.default_rng(4).standard_normal(12)
    a = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("connected_1.")}
    y = batch_norm(
        a["weights"].astype(np.float64) @ x,
        a["rolling_mean"],
        a["rolling_variance"],
        a["scales"],
        a["biases"],
    )
    with dwf.open(src, cfg) as f:
        assert f.header.transpose == (case.name == "legacy")
        w, b = f["connected_1"].fused()
        assert w.shape == (5, 12)
        np.testing.assert_allclose(w.astype(np.float64) @ x + b, y, rtol=1e-4, atol=1e-4)
        # a connected layer without batch norm: copies
        w3, b3 = f["connected_3"].fused()
        np.testing.assert_array_equal(w3, arrays["connected_3.weights"])
        np.testing.assert_array_equal(b3, arrays["connected_3.biases"])
        assert not np.shares_memory(w3, f["connected_3"].weights)


def test_fused_eps(tmp_path: Path) -> None:
    cfg, src, arrays = write_case(tmp_path, CASES[0], 8)
    with dwf.open(src, cfg) as f:
        w_default, b_default = f[0].fused()
        w_explicit, _ = f[0].fused(eps=1e-5)
        np.testing.assert_array_equal(w_default, w_explicit)
        w, b = f[0].fused(eps=0.5)
        k = arrays["conv_0.scales"].astype(np.float64) / np.sqrt(
            arrays["conv_0.rolling_variance"] + 0.5
        )
        np.testing.assert_allclose(w, arrays["conv_0.weights"] * k[:, None, None, None], rtol=1e-6)
        assert not np.allclose(w, w_default)
        fused = f.fused(eps=0.5)
        np.testing.assert_array_equal(fused["conv_0.weights"], w)
        np.testing.assert_array_equal(fused["conv_0.biases"], b)
        assert not np.allclose(b, b_default)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_file_fused_gives_every_folded_layer(tmp_path: Path, case: Case) -> None:
    cfg, src, _ = write_case(tmp_path, case, 9)
    with dwf.open(src, cfg, dialect=case.dialect) as f:
        fused = f.fused()
        foldable = [lp for lp in f.plan.layers if lp.type in ("convolutional", "connected")]
        assert list(fused) == [f"{lp.name}.{k}" for lp in foldable for k in ("weights", "biases")]
        for lp in foldable:
            w, b = f[lp.index].fused()
            np.testing.assert_array_equal(fused[f"{lp.name}.weights"], w)
            np.testing.assert_array_equal(fused[f"{lp.name}.biases"], b)
        other = next(lp for lp in f.plan.layers if lp.type not in ("convolutional", "connected"))
        with pytest.raises(dwf.DwfError, match="cannot be fused"):
            f.layers[other.index].fused()


def test_file_fused_of_a_partial_file(tmp_path: Path) -> None:
    cfg, src, _ = write_case(tmp_path, CASES[0], 9, upto=3)
    with dwf.open(src, cfg) as f:
        assert list(f.fused()) == [
            "conv_0.weights",
            "conv_0.biases",
            "conv_2.weights",
            "conv_2.biases",
        ]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fuse_writes_folded_weights_and_cfg(tmp_path: Path, case: Case) -> None:
    cfg, src, arrays = write_case(tmp_path, case, 10)
    before = fingerprint(src)
    dst, dst_cfg = tmp_path / "fused.weights", tmp_path / "fused.cfg"
    got = dwf.fuse(src, dst, dst_cfg, cfg=cfg, dialect=case.dialect)
    assert got == (os.fspath(dst), os.fspath(dst_cfg))
    assert fingerprint(src) == before
    old_lines = case.text.split("\n")
    new_lines = dst_cfg.read_text(encoding="utf-8").split("\n")
    assert len(new_lines) == len(old_lines)
    changed = [(o, n) for o, n in zip(old_lines, new_lines, strict=True) if o != n]
    assert changed and all(
        o == "batch_normalize=1" and n == "batch_normalize=0" for o, n in changed
    )
    with (
        dwf.open(src, cfg, dialect=case.dialect) as f,
        dwf.open(dst, dst_cfg, dialect=case.dialect) as g,
    ):
        assert g.complete and g.header == f.header
        fused = f.fused()
        for lp in g.plan.layers:
            if lp.type in ("convolutional", "connected"):
                assert g[lp.index].keys() == ["biases", "weights"]
                np.testing.assert_array_equal(g[lp.index].weights, fused[f"{lp.name}.weights"])
                np.testing.assert_array_equal(g[lp.index].biases, fused[f"{lp.name}.biases"])
            else:
                for name, view in g[lp.index].arrays.items() if lp.arrays else ():
                    np.testing.assert_array_equal(view, arrays[f"{lp.name}.{name}"])
    assert leftovers(tmp_path) == []


def test_fused_network_computes_the_same_first_layer(tmp_path: Path) -> None:
    """Reopened with its cfg, the fused file's conv gives conv → BN of the original."""
    cfg, src, arrays = write_case(tmp_path, CASES[0], 12)
    dst, dst_cfg = tmp_path / "fused.weights", tmp_path / "fused.cfg"
    dwf.fuse(src, dst, dst_cfg, cfg=cfg)
    x = np.random.default_rng(5).standard_normal((4, 6, 6))
    a = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("conv_0.")}
    y = batch_norm(
        conv2d(x, a["weights"], 1, 1, 2),
        a["rolling_mean"],
        a["rolling_variance"],
        a["scales"],
        a["biases"],
    )
    with dwf.open(dst, dst_cfg) as g:
        assert g[0].plan.params["batch_normalize"] == 0
        got = conv2d(x, g[0]["weights"], 1, 1, 2) + g[0]["biases"].astype(np.float64)[:, None, None]
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4)


# -- the command line ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "dwf", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_cut_and_fuse(tmp_path: Path) -> None:
    cfg, weights = (Path(p) for p in write_demo(tmp_path / "demo"))
    before = fingerprint(weights)
    plan = dwf.plan(cfg)
    out = tmp_path / "demo.conv.5"
    r = run_cli("cut", str(weights), str(out), "5")
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    size = 20 + 4 * plan.layers[4].stop
    assert os.path.getsize(out) == size
    data = out.read_bytes()
    assert data[:20] == header_bytes(dwf.Header(0, 2, 5, 0, 20))
    assert data[20:] == weights.read_bytes()[20:size]
    with dwf.open(out, cfg) as g:
        assert g.partial and g.last_layer == expected_last_layer(plan, 5)

    fused, fused_cfg = tmp_path / "fused.weights", tmp_path / "fused.cfg"
    r = run_cli("fuse", str(weights), str(fused), str(fused_cfg), "--cfg", str(cfg))
    assert r.returncode == 0, r.stderr
    with dwf.open(weights) as f, dwf.open(fused, fused_cfg) as g:
        assert g.complete and g.header == f.header
        for name, arr in f.fused().items():
            layer, _, array = name.partition(".")
            np.testing.assert_array_equal(g[layer][array], arr)
        assert all(
            lp.params.get("batch_normalize", 0) == 0
            for lp in g.plan.layers
            if lp.type == "convolutional"
        )
    assert fingerprint(weights) == before


def test_cli_upto_99_exits_2_with_one_line(tmp_path: Path) -> None:
    _, weights = write_demo(tmp_path / "demo")
    out = tmp_path / "out.weights"
    r = run_cli("cut", weights, str(out), "99")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwf: error:"), r.stderr
    assert "upto=99" in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["cut", "{w}", "{out}", "-1"],
        ["cut", "{w}", "{out}", "3", "--cfg", "{missing}"],
        ["cut", "{missing}", "{out}", "3"],
        ["fuse", "{w}", "{out}", "{dir}"],
        ["fuse", "{w}", "{out}", "{cfg_out}", "--cfg", "{w}"],
    ],
    ids=["upto=-1", "missing-cfg", "missing-weights", "cfg-out-is-dir", "weights-as-cfg"],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    _, weights = write_demo(tmp_path / "demo")
    out = tmp_path / "out.weights"
    fill = {
        "w": weights,
        "out": str(out),
        "missing": str(tmp_path / "nope"),
        "dir": str(tmp_path),
        "cfg_out": str(tmp_path / "out.cfg"),
    }
    code = cli.main([a.format(**fill) for a in args])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwf: error:"), captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not out.exists() and not (tmp_path / "out.cfg").exists()
    assert leftovers(tmp_path) == []


def test_header_only_cut_opens_as_an_empty_partial_file(tmp_path: Path) -> None:
    # `darknet partial cfg weights out 0` writes the header and nothing else.
    cfg, weights = write_demo(tmp_path)
    out = dwf.cut(weights, tmp_path / "demo.conv.0", 0)
    assert os.path.getsize(out) == 20
    with dwf.open(out, cfg) as f:
        assert f.partial and f.last_layer == -1 and f.keys() == []
        with pytest.raises(dwf.LayerNotInFileError):
            f["conv_0"]


def test_file_with_the_anomalous_header_width_resaves_byte_identically(tmp_path: Path) -> None:
    # AlexeyAB's 2018-10-03 writer put a 4-byte seen after version 0.2.5 (spec §1.5): dwf reads
    # such a file with a note, and writing it back (save, export → import) reproduces it.
    cfg, weights = write_demo(tmp_path)
    data = Path(weights).read_bytes()
    odd = tmp_path / "odd.weights"
    odd.write_bytes(data[:12] + data[12:16] + data[20:])
    with dwf.open(odd, cfg) as f:
        assert f.header.size == 16 and f.header.note
        again = f.save(tmp_path / "again.weights")
        assert Path(again).read_bytes() == odd.read_bytes()
        import dwf.tools.export as export

        export.to_npz(f, tmp_path / "odd.npz")
    back = dwf.import_weights(tmp_path / "odd.npz", tmp_path / "back.weights")
    assert Path(back).read_bytes() == odd.read_bytes()
    with pytest.raises(dwf.HeaderError):
        dwf.save(
            tmp_path / "new.weights",
            dwf.plan(cfg),
            dict(dwf.open(odd, cfg).arrays()),
            header=dwf.Header(0, 2, 5, 0, 16),
        )
