"""Property tests: random valid Darknet networks plan contiguously and round-trip byte-exactly.

The strategy below builds cfg text section by section while tracking every layer's output shape
the way Darknet does (spec §6), so each generated cfg is one Darknet loads. It also computes,
independently of dwf, how many float32 values each layer stores (spec §4) and what shape it
outputs; the planner is checked against that model, then files written with ``dwf.save`` are
reopened, compared byte by byte, re-saved and truncated.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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
MAX_LAYERS = 12
BUDGET = 50_000  # float32 values per network
F32 = np.dtype("<f4")


@dataclass
class Expected:
    """What the model says one layer is."""

    name: str
    count: int
    out: tuple[int, int, int]  # (c, h, w)
    outputs: int
    known: bool = True


@dataclass
class Net:
    """A generated network: its cfg text and the model's view of every layer."""

    dialect: str
    text: str
    layers: list[Expected] = field(default_factory=list)
    warnings: int = 0

    @property
    def total(self) -> int:
        return sum(e.count for e in self.layers)

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"Net(dialect={self.dialect!r}, total={self.total})\n{self.text}"


# -- the network strategy ---------------------------------------------------------------------


class _Builder:
    """Emits sections and tracks shapes; one instance per drawn network."""

    def __init__(self, draw: st.DrawFn, dialect: str) -> None:
        self.draw = draw
        self.ab = dialect == "alexeyab"
        self.dialect = dialect
        self.lines: list[str] = []
        self.layers: list[Expected] = []
        self.n_unknown = 0
        self.n_warnings = 0
        # (c, h, w, inputs) handed to the next layer
        self.cur: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.after_connected = False

    # -- text helpers -------------------------------------------------------------------------
    def section(self, header: str) -> None:
        if self.draw(st.integers(0, 5)) == 0:
            self.lines.append(self.draw(st.sampled_from(["", "# a comment", "; another", "  "])))
        self.lines.append(header)

    def opt(self, key: str, value: object, *, numeric: bool = True) -> None:
        style = self.draw(st.integers(0, 7))
        if style == 0:
            line = f"{key} = {value}"
        elif style == 1 and numeric:
            line = f"{key}={value} # inline comment: atoi stops before it"
        elif style == 2:
            line = f"\t{key}= {value}  "
        else:
            line = f"{key}={value}"
        self.lines.append(line)

    def flag(self, p_true: int = 2) -> bool:
        """True with probability about 1/p_true."""
        return self.draw(st.integers(0, p_true - 1)) == 0

    # -- state --------------------------------------------------------------------------------
    @property
    def index(self) -> int:
        return len(self.layers)

    @property
    def image(self) -> bool:
        c, h, w, _ = self.cur
        return c > 0 and h > 0 and w > 0

    @property
    def total(self) -> int:
        return sum(e.count for e in self.layers)

    def fits(self, count: int) -> bool:
        return self.total + count <= BUDGET

    def add(self, kind: str, count: int, out: tuple[int, int, int], outputs: int) -> None:
        self.layers.append(Expected(f"{kind}_{self.index}", count, out, outputs))
        c, h, w = out
        self.cur = (c, h, w, outputs)

    def image_refs(self, h: int | None = None, w: int | None = None) -> list[int]:
        """Earlier layers whose recorded output is an image (optionally of size h×w)."""
        out = []
        for e in self.layers:
            c, eh, ew = e.out
            if c and eh and ew and (h is None or (eh, ew) == (h, w)):
                out.append(self.layers.index(e))
        return out

    def ref_text(self, j: int) -> str:
        return str(j) if self.flag(3) else str(j - self.index)

    # -- layer kinds --------------------------------------------------------------------------
    def choices(self) -> list[str]:
        """Layer kinds valid after what was built so far (repeats weight the draw)."""
        if self.index == 0:
            first = ["conv"] * 4 + ["maxpool", "batchnorm", "local", "connected"]
            return [*first, "implicit"] if self.ab else first
        out: list[str] = ["dropout"]
        if self.image_refs():
            out += ["route", "route"]
        if self.after_connected:
            out += ["connected", "softmax", "rnn", "gru", "lstm"]
            if self.image:
                out.append("crnn")
            return out
        if self.cur[3] > 0:
            out += ["connected", "unknown"]
        if self.image:
            out += ["conv"] * 6 + ["maxpool"] * 3 + ["shortcut"] * 3 + ["reorg"] * 2
            out += ["avgpool", "upsample", "upsample", "batchnorm", "local", "crnn", "softmax"]
            if self.cur[0] >= 6:
                out.append("yolo")
            if self.ab:
                out += ["reorg3d", "conv_lstm", "implicit"]
            else:
                out.append("deconv")
        return out

    def conv(self) -> None:
        c, h, w, _ = self.cur
        n = self.draw(st.integers(1, 8))
        self.section(self.draw(st.sampled_from(["[convolutional]", "[conv]"])))
        self.opt("filters", n)
        if self.ab and self.flag(5):
            sx, sy = self.draw(st.sampled_from([1, 2])), self.draw(st.sampled_from([1, 2]))
            self.opt("stride_x", sx)
            self.opt("stride_y", sy)
        else:
            sx = sy = self.draw(st.sampled_from([1, 2]))
            if sx != 1 or self.flag():
                self.opt("stride", sx)
        pad = self.draw(st.sampled_from([0, 1]))
        padding = 0
        if pad:
            self.opt("pad", 1)
        elif self.flag(4):
            padding = self.draw(st.integers(0, 2))
            self.opt("padding", padding)

        def out_dims(k: int) -> tuple[int, int]:
            p = k // 2 if pad else padding
            return (h + 2 * p - k) // sy + 1, (w + 2 * p - k) // sx + 1

        sizes = [k for k in (1, 2, 3, 5) if min(out_dims(k)) >= 1]
        size = self.draw(st.sampled_from(sizes))
        if size != 1 or self.flag():
            self.opt("size", size)
        oh, ow = out_dims(size)
        common = math.gcd(c, n)
        groups = self.draw(st.sampled_from([g for g in range(1, common + 1) if common % g == 0]))
        if groups != 1 or self.flag(4):
            self.opt("groups", groups)
        if self.flag(8):
            self.opt("xnor", 1)
            if self.ab:  # AlexeyAB: xnor forces groups=1 (spec §4.1)
                groups = 1
        bn = self.draw(st.sampled_from([0, 1]))
        if bn or self.flag():
            self.opt("batch_normalize", bn)
        if self.flag(6):
            self.opt("dilation", 2)
        if self.flag(5):
            self.opt("flipped", 1)
        self.opt(
            "activation", self.draw(st.sampled_from(["leaky", "linear", "mish"])), numeric=False
        )
        count = n * (4 if bn else 1) + (c // groups) * n * size * size
        self.add("conv", count, (n, oh, ow), n * oh * ow)

    def deconv(self) -> None:  # pjreddie only
        c, h, w, _ = self.cur
        n = self.draw(st.integers(1, 4))
        size = self.draw(st.integers(1, 3))
        s = self.draw(st.sampled_from([1, 2]))
        pad = self.draw(st.sampled_from([0, 1]))
        p = size // 2 if pad else 0
        oh, ow = (h - 1) * s + size - 2 * p, (w - 1) * s + size - 2 * p
        bn = self.draw(st.sampled_from([0, 1]))
        count = n * (4 if bn else 1) + c * n * size * size
        if min(oh, ow) < 1 or max(oh, ow) > 48 or not self.fits(count):
            return
        self.section(self.draw(st.sampled_from(["[deconv]", "[deconvolutional]"])))
        self.opt("filters", n)
        self.opt("size", size)
        self.opt("stride", s)
        self.opt("pad", pad)
        self.opt("batch_normalize", bn)
        self.add("deconv", count, (n, oh, ow), n * oh * ow)
        self.n_warnings += 1  # pjreddie's own loader crashes on deconv; dwf says so

    def maxpool(self) -> None:
        c, h, w, _ = self.cur
        self.section(self.draw(st.sampled_from(["[maxpool]", "[max]"])))
        s = self.draw(st.sampled_from([1, 1, 2, 3]))
        if s != 1 or self.flag():
            self.opt("stride", s)
        sx = sy = s
        if self.ab and self.flag(5):
            sx, sy = self.draw(st.integers(1, 2)), self.draw(st.integers(1, 2))
            self.opt("stride_x", sx)
            self.opt("stride_y", sy)
        size = s
        if self.flag(4):
            pass  # size defaults to stride
        else:
            size = self.draw(st.integers(1, 4))
            self.opt("size", size)
        padding = size - 1
        if size <= min(h, w) and self.flag(3):
            padding = self.draw(st.integers(0, size - 1))
            self.opt("padding", padding)
        oh, ow = (h + padding - size) // sy + 1, (w + padding - size) // sx + 1
        self.add("maxpool", 0, (c, oh, ow), c * oh * ow)

    def avgpool(self) -> None:
        c = self.cur[0]
        self.section(self.draw(st.sampled_from(["[avgpool]", "[avg]"])))
        self.add("avgpool", 0, (c, 1, 1), c)

    def route(self) -> None:
        candidates = self.image_refs()
        first = self.draw(st.sampled_from(candidates))
        _, h, w = self.layers[first].out
        same = self.image_refs(h, w)
        refs = [first, *self.draw(st.lists(st.sampled_from(same), max_size=2))]
        total_c = sum(self.layers[j].out[0] for j in refs)
        total_out = sum(self.layers[j].outputs for j in refs)
        self.section("[route]")
        self.opt("layers", ", ".join(self.ref_text(j) for j in refs))
        groups = 1
        if self.ab and total_c % 2 == 0 and self.flag(3):
            groups = 2
            self.opt("groups", 2)
            self.opt("group_id", self.draw(st.sampled_from([0, 1])))
        self.add("route", 0, (total_c // groups, h, w), total_out // groups)
        self.after_connected = False

    def shortcut(self) -> None:
        c, h, w, inputs = self.cur
        same = self.image_refs(h, w)
        if not same:
            return
        k = self.draw(st.integers(1, 2))
        refs = [self.draw(st.sampled_from(same)) for _ in range(k)]
        self.section("[shortcut]")
        self.opt("from", ",".join(self.ref_text(j) for j in refs))
        count = 0
        if self.flag(2):
            wtype = self.draw(st.sampled_from(["per_feature", "per_layer", "per_channel"]))
            norm = self.draw(st.sampled_from(["relu", "softmax", "avg_relu"]))
            self.opt("weights_type", wtype, numeric=False)
            self.opt("weights_normalization", norm, numeric=False)
            if self.ab:  # pjreddie knows neither option: its shortcut stores nothing
                count = (k + 1) * (c if wtype == "per_channel" else 1)
        self.opt("activation", "linear", numeric=False)
        self.add("shortcut", count, (c, h, w), inputs)

    def upsample(self) -> None:
        c, h, w, _ = self.cur
        if h % 2 == 0 and w % 2 == 0 and self.flag(3):
            self.section("[upsample]")
            self.opt("stride", -2)
            self.add("upsample", 0, (c, h // 2, w // 2), c * (h // 2) * (w // 2))
        elif max(h, w) <= 12:
            self.section("[upsample]")
            if self.flag():
                self.opt("stride", 2)
            self.add("upsample", 0, (c, 2 * h, 2 * w), c * 4 * h * w)

    def connected(self) -> None:
        inputs = self.cur[3]
        out = self.draw(st.integers(1, 6))
        bn = self.draw(st.sampled_from([0, 1]))
        count = out + out * inputs + (3 * out if bn else 0)
        if not self.fits(count):
            return
        self.section(self.draw(st.sampled_from(["[connected]", "[conn]"])))
        self.opt("output", out)
        if bn:
            self.opt("batch_normalize", 1)
        self.opt("activation", "leaky", numeric=False)
        self.add("connected", count, (out, 1, 1), out)
        self.after_connected = True

    def batchnorm(self) -> None:
        c, h, w, _ = self.cur
        self.section("[batchnorm]")
        self.add("batchnorm", (4 if self.ab else 3) * c, (c, h, w), h * w * c)

    def dropout(self) -> None:
        c, h, w, inputs = self.cur
        self.section("[dropout]")
        self.opt("probability", ".5")
        self.add("dropout", 0, (c, h, w), inputs)

    def softmax(self) -> None:
        self.section(self.draw(st.sampled_from(["[softmax]", "[soft]"])))
        self.add("softmax", 0, (0, 0, 0), self.cur[3])

    def local(self) -> None:
        c, h, w, _ = self.cur
        n = self.draw(st.integers(1, 4))
        size = self.draw(st.sampled_from([1, 3]))
        s = self.draw(st.sampled_from([1, 2]))
        pad = self.draw(st.sampled_from([0, 1]))
        oh = (h - (1 if pad else size)) // s + 1
        ow = (w - (1 if pad else size)) // s + 1
        if min(oh, ow) < 1:
            return
        loc = oh * ow
        count = loc * n + c * n * size * size * loc
        if not self.fits(count):
            return
        self.section("[local]")
        self.opt("filters", n)
        self.opt("size", size)
        self.opt("stride", s)
        self.opt("pad", pad)
        self.add("local", count, (n, oh, ow), n * loc)

    def reorg(self, kind: str = "reorg") -> None:
        c, h, w, _ = self.cur
        if c % 4 == 0 and max(h, w) <= 12 and self.flag(3):
            self.section(f"[{kind}]")
            self.opt("stride", 2)
            self.opt("reverse", 1)
            self.add(kind, 0, (c // 4, 2 * h, 2 * w), c * h * w)
        elif h >= 2 and w >= 2 and h % 2 == 0 and w % 2 == 0:
            self.section(f"[{kind}]")
            self.opt("stride", 2)
            self.add(kind, 0, (4 * c, h // 2, w // 2), 4 * c * (h // 2) * (w // 2))

    def reorg3d(self) -> None:
        self.reorg("reorg3d")

    def implicit(self) -> None:  # AlexeyAB only
        filters = self.draw(st.integers(1, 8))
        atoms = self.draw(st.integers(1, 3))
        self.section("[implicit]")
        self.opt("filters", filters)
        if atoms != 1 or self.flag():
            self.opt("atoms", atoms)
        self.add("implicit", filters * atoms, (filters, atoms, 1), filters * atoms)

    def _recurrent(self, kind: str, blocks_in: int, blocks_out: int) -> None:
        inputs = self.cur[3]
        out = self.draw(st.integers(1, 6))
        bn = self.draw(st.sampled_from([0, 1]))
        per = 4 if bn else 1
        count = blocks_in * (out * per + out * inputs) + blocks_out * (out * per + out * out)
        if not self.fits(count):
            return
        self.section(f"[{kind}]")
        self.opt("output", out)
        self.opt("batch_normalize", bn)
        dims = (out, 1, 1) if self.ab and kind == "lstm" else (0, 0, 0)
        self.add(kind, count, dims, out)

    def rnn(self) -> None:
        inputs = self.cur[3]
        out = self.draw(st.integers(1, 6))
        hidden = self.draw(st.integers(1, 6)) if self.ab else out
        bn = self.draw(st.sampled_from([0, 1]))
        per = 4 if bn else 1

        def block(i: int, o: int) -> int:
            return o * per + o * i

        count = block(inputs, hidden) + block(hidden, hidden) + block(hidden, out)
        if not self.fits(count):
            return
        self.section("[rnn]")
        self.opt("output", out)
        if self.ab:
            self.opt("hidden", hidden)
        self.opt("batch_normalize", bn)
        self.add("rnn", count, (out, 1, 1) if self.ab else (0, 0, 0), out)

    def gru(self) -> None:
        self._recurrent("gru", 3, 3)

    def lstm(self) -> None:
        self._recurrent("lstm", 4, 4)

    def crnn(self) -> None:
        c, h, w, _ = self.cur
        out = self.draw(st.integers(1, 4))
        hidden = self.draw(st.integers(1, 4))
        bn = self.draw(st.sampled_from([0, 1]))
        per = 4 if bn else 1
        if self.ab:
            size = self.draw(st.sampled_from([1, 3]))
            pad = 1 if min(h, w) < size else self.draw(st.sampled_from([0, 1]))
        else:
            size, pad = 3, 1
        p = size // 2 if pad else 0
        oh, ow = h + 2 * p - size + 1, w + 2 * p - size + 1
        k = size * size
        count = (
            (hidden * per + c * hidden * k)
            + (hidden * per + hidden * hidden * k)
            + (out * per + hidden * out * k)
        )
        if not self.fits(count):
            return
        self.section("[crnn]")
        names = ("output", "hidden") if self.ab else ("output_filters", "hidden_filters")
        self.opt(names[0], out)
        self.opt(names[1], hidden)
        if self.ab:
            self.opt("size", size)
            self.opt("pad", pad)
        self.opt("batch_normalize", bn)
        self.add("crnn", count, (out, oh, ow), out * oh * ow)

    def conv_lstm(self) -> None:  # AlexeyAB only
        c, h, w, _ = self.cur
        f = self.draw(st.integers(1, 4))
        size = self.draw(st.sampled_from([1, 3]))
        pad = 1 if min(h, w) < size else self.draw(st.sampled_from([0, 1]))
        peephole = self.draw(st.sampled_from([0, 1]))
        bottleneck = self.draw(st.sampled_from([0, 1]))
        bn = self.draw(st.sampled_from([0, 1]))
        per = 4 if bn else 1
        k = size * size

        def block(cin: int) -> int:
            return f * per + cin * f * k

        count = 3 * peephole * block(f) + block(2 * f if bottleneck else f)
        count += (0 if bottleneck else 3 * block(f)) + 4 * block(c)
        if not self.fits(count):
            return
        p = size // 2 if pad else 0
        oh, ow = h + 2 * p - size + 1, w + 2 * p - size + 1
        self.section("[conv_lstm]")
        self.opt("output", f)
        self.opt("size", size)
        self.opt("pad", pad)
        self.opt("peephole", peephole)
        self.opt("bottleneck", bottleneck)
        self.opt("batch_normalize", bn)
        self.add("conv_lstm", count, (f, oh, ow), f * oh * ow)

    def yolo(self) -> None:
        c, h, w, inputs = self.cur
        self.section("[yolo]")
        self.opt("mask", 0)
        self.opt("anchors", "10,14, 23,27")
        self.opt("num", 2)
        self.opt("classes", c - 5)
        self.add("yolo", 0, (c, h, w), inputs)

    def unknown(self) -> None:
        names = ["foo", "implicit_add", "shift_channels"]
        names += ["deconv", "iseg"] if self.ab else ["conv_lstm", "reorg3d", "sam"]
        name = self.draw(st.sampled_from(names))
        self.section(f"[{name}]")
        self.opt("filters", 3)
        self.layers.append(Expected(f"{name}_{self.index}", 0, (0, 0, 0), 0, known=False))
        self.n_unknown += 1
        self.n_warnings += 1
        self.cur = (0, 0, 0, 0)

    def build(self) -> Net:
        h, w, c = (self.draw(st.integers(4, 24)) for _ in range(3))
        c = min(c, 4) if self.flag() else c % 8 + 1
        self.section(self.draw(st.sampled_from(["[net]", "[network]", "[ net ]"])))
        self.opt("batch", 1)
        self.opt("width", w)
        self.opt("height", h)
        self.opt("channels", c)
        self.cur = (c, h, w, c * h * w)
        n = self.draw(st.integers(1, MAX_LAYERS))
        attempts = 0
        while self.index < n and attempts < 4 * MAX_LAYERS:
            attempts += 1
            kind = self.draw(st.sampled_from(self.choices()))
            getattr(self, kind)()
        if not self.layers:
            self.dropout()
        if self.ab and not any(e.out[1] > 1 and e.out[2] > 1 for e in self.layers):
            self.n_warnings += 1  # AlexeyAB's loader divides by zero on such a net; dwf says so
        text = "\n".join(self.lines) + ("\n" if self.flag() else "")
        return Net(self.dialect, text, self.layers, self.n_warnings)


@st.composite
def networks(draw: st.DrawFn, dialect: str) -> Net:
    return _Builder(draw, dialect).build()


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
    # Only unknown sections (and pjreddie deconv) are worth a warning in these networks.
    assert len(plan.warnings) == net.warnings, plan.warnings
    assert plan[-1].name == net.layers[-1].name
    assert plan.layer(0) is plan[plan[0].name]


# -- (b) + (c) write, reopen, rewrite ------------------------------------------------------------


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
                # Also exactly a complete file with a 16-byte header; spec §1.6 tries that first.
                with dwf.open(cut, plan, dialect=dialect) as f:
                    assert f.header.size == 16 and f.complete and f.header.note
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
