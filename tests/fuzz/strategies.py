"""Hypothesis strategies for fuzzing dwf with hostile input, and the checks every case must pass.

Three families of cases:

* :func:`networks` — random *valid* Darknet networks as cfg text, for either dialect. The
  builder tracks every layer's output shape the way Darknet does (spec §6), so each cfg is one
  Darknet loads (valid by construction), and it records the shape each layer must output.
* :func:`cfg_cases` — such a network (or nothing at all) damaged by a few mutations: deleted,
  duplicated and swapped lines, hostile options (``filters=99999999999``, ``size=0``,
  ``stride=-3``, ``groups=7``, references pointing forward, out of range or at the layer itself),
  random unicode and bytes, CRLF, a missing ``[net]``, options before any section, an empty cfg.
* :func:`weights_cases` — a valid network and a file for it, then damaged: truncated at every
  kind of boundary (inside the header, on and around every layer and array boundary), extra
  bytes, flipped or rewritten header bytes, text where the header should be.

The checks (:func:`check_cfg`, :func:`check_valid_network`, :func:`check_weights`) say what
"robust" means: a case either works — and then every view of every layer the file holds is
readable and holds the file's bytes — or raises a :class:`dwf.DwfError` subclass with a useful
message (a :class:`dwf.CfgError` names its line; an error about a weights file names the file),
and the error survives pickling. Any other exception, or a case slower than the time limit, is a
bug. ``tests/test_fuzz.py`` runs them with a bounded number of examples; ``run_fuzz.py`` with
many more.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

import dwf
from dwf.format.records import ArraySpec

DIALECTS = ("alexeyab", "pjreddie")
MAX_LAYERS = 10  # layers of a generated network (a yolo head adds its conv: up to 11)
MAX_SIDE = 24  # largest height/width a generated layer outputs
F32 = np.dtype("<f4")

# -- limits every case must respect ----------------------------------------------------------------
SOFT_LIMIT = 2.0  # seconds: a small case slower than this is a bug (generous for a loaded CI box)
HARD_LIMIT = 20.0  # seconds: a case still running then is interrupted and reported as a hang
MEMORY_LIMIT = 32 * 2**20  # bytes a small case may allocate at its peak (traced with tracemalloc)


class Hang(Exception):
    """A case ran past :data:`HARD_LIMIT` (raised by :func:`time_limit`)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`Hang` after ``seconds`` (main thread, POSIX only).

    A no-op where ``SIGALRM`` is unavailable or outside the main thread.
    """
    if not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds:g} s")

    try:
        old = signal.signal(signal.SIGALRM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Budget:
    """Time and memory one case used; :meth:`check` fails the case when it used too much."""

    seconds: float = 0.0
    peak: int = 0
    traced: bool = False

    def check(self, what: str) -> None:
        assert self.seconds < SOFT_LIMIT, f"{what} took {self.seconds:.2f} s (limit {SOFT_LIMIT})"
        if self.traced:
            assert self.peak < MEMORY_LIMIT, (
                f"{what} allocated {self.peak / 2**20:.1f} MiB at its peak"
                f" (limit {MEMORY_LIMIT / 2**20:.0f} MiB): memory proportional to a claimed size?"
            )


@contextlib.contextmanager
def budget(trace_memory: bool = False) -> Iterator[Budget]:
    """Measure the block's time (and, with ``trace_memory``, its peak allocation) and stop it
    with :class:`Hang` after :data:`HARD_LIMIT` seconds."""
    b = Budget(traced=trace_memory)
    started_tracing = False
    if trace_memory:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            started_tracing = True
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        with time_limit(HARD_LIMIT):
            yield b
    finally:
        b.seconds = time.perf_counter() - start
        if trace_memory:
            b.peak = tracemalloc.get_traced_memory()[1] - base
            if started_tracing:
                tracemalloc.stop()


# -- C arithmetic, independent of dwf --------------------------------------------------------------
def cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


# -- valid networks --------------------------------------------------------------------------------
Shape = tuple[int, int, int, int]  # (c, h, w, outputs)


@dataclass(frozen=True)
class Net:
    """A generated valid network: cfg text, dialect, and every layer's expected output.

    Attributes:
        outputs: per layer, ``(out_c, out_h, out_w, outputs)`` as Darknet records them.
    """

    dialect: str
    text: str
    outputs: tuple[Shape, ...]

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"Net(dialect={self.dialect!r}, {len(self.outputs)} layers)\n{self.text}"


class _Builder:
    """Emits sections while tracking shapes; one instance per drawn network."""

    def __init__(self, draw: st.DrawFn, dialect: str) -> None:
        self.draw = draw
        self.dialect = dialect
        self.ab = dialect == "alexeyab"
        self.lines: list[str] = []
        self.outs: list[Shape] = []
        self.cur: Shape = (0, 0, 0, 0)  # (c, h, w, inputs) handed to the next layer

    # -- text ------------------------------------------------------------------------------------
    def flag(self, one_in: int = 2) -> bool:
        return self.draw(st.integers(0, one_in - 1)) == 0

    def section(self, header: str) -> None:
        if self.flag(6):
            self.lines.append(self.draw(st.sampled_from(["", "# comment", "; comment", " \t"])))
        self.lines.append(header)

    def opt(self, key: str, value: object, *, numeric: bool = True) -> None:
        style = self.draw(st.integers(0, 9))
        if style == 0:
            line = f"{key} = {value}"
        elif style == 1 and numeric:
            line = f"{key}={value}  # atoi stops at the comment"
        elif style == 2:
            line = f"\t{key}=\t{value} "
        else:
            line = f"{key}={value}"
        self.lines.append(line)

    def ref(self, j: int) -> str:
        """Layer ``j`` written as an absolute or a relative reference."""
        return str(j) if self.flag() else str(j - len(self.outs))

    # -- state -----------------------------------------------------------------------------------
    @property
    def image(self) -> bool:
        c, h, w, _ = self.cur
        return c > 0 and h > 0 and w > 0

    def image_layers(self, hw: tuple[int, int] | None = None) -> list[int]:
        return [
            i
            for i, (c, h, w, _) in enumerate(self.outs)
            if c and h and w and (hw is None or (h, w) == hw)
        ]

    def add(self, out: Shape, nxt: Shape | None = None) -> None:
        self.outs.append(out)
        self.cur = out if nxt is None else nxt

    # -- layers ----------------------------------------------------------------------------------
    def choices(self) -> list[Callable[[], None]]:
        out: list[Callable[[], None]] = [self.passthrough, self.flat_layer]
        if self.image_layers():
            out.append(self.route)
            if self.ab:
                out.append(self.from_layer)
        if self.cur[3] > 0:
            out += [self.connected, self.recurrent]
            if self.cur[3] <= 200:
                out.append(self.detection)
        if self.ab:
            out.append(self.implicit)
        if len(self.outs) and self.flag(8):
            out.append(self.unknown)
        if self.image:
            out += [self.conv, self.conv, self.conv, self.maxpool, self.avgpool, self.shortcut]
            out += [self.upsample, self.batchnorm, self.local, self.reorg, self.crnn]
            out += [self.yolo_head, self.region_head, self.crop, self.lrn]
            if self.ab:
                out += [self.conv_lstm, self.history]
            else:
                out += [self.deconv, self.iseg]
        return out

    def conv(self, filters: int | None = None, size1: bool = False) -> None:
        c, h, w, _ = self.cur
        n = filters if filters is not None else self.draw(st.integers(1, 8))
        self.section(self.draw(st.sampled_from(["[convolutional]", "[conv]"])))
        self.opt("filters", n)
        if self.ab and self.flag(5):
            sx, sy = self.draw(st.integers(1, 2)), self.draw(st.integers(1, 2))
            self.opt("stride_x", sx)
            self.opt("stride_y", sy)
        else:
            sx = sy = self.draw(st.sampled_from([1, 1, 2]))
            if sx != 1 or self.flag():
                self.opt("stride", sx)
        pad = self.draw(st.integers(0, 1))
        padding = 0
        if pad:
            self.opt("pad", 1)
        elif self.flag(4):
            padding = self.draw(st.integers(0, 2))
            self.opt("padding", padding)

        def dims(k: int, ssy: int, ssx: int) -> tuple[int, int]:
            p = k // 2 if pad else padding
            return cdiv(h + 2 * p - k, ssy) + 1, cdiv(w + 2 * p - k, ssx) + 1

        sizes = [1] if size1 else [k for k in (1, 2, 3, 5) if min(dims(k, sy, sx)) >= 1]
        size = self.draw(st.sampled_from(sizes))
        if size != 1 or self.flag():
            self.opt("size", size)
        common = int(np.gcd(c, n))
        groups = self.draw(st.sampled_from([g for g in range(1, common + 1) if common % g == 0]))
        if groups != 1 or self.flag(4):
            self.opt("groups", groups)
        bn = self.draw(st.integers(0, 1))
        if bn or self.flag():
            self.opt("batch_normalize", bn)
        if self.flag(8):
            self.opt("dilation", self.draw(st.integers(1, 3)))
        if self.flag(8):
            self.opt("flipped", 1)
        if self.flag(12):
            self.opt("dontload", 1)
        activation = self.draw(st.sampled_from(["leaky", "linear", "mish"]))
        self.opt("activation", activation, numeric=False)
        aa = 0
        if self.ab and not size1 and min(dims(size, 1, 1)) >= 1 and self.flag(8):
            aa = self.draw(st.integers(1, 2))  # the host conv then runs at stride 1
        if aa:
            oh, ow = dims(size, 1, 1)
            bs, bp = (2, 0) if aa == 2 else (3, 1)
            bh, bw = cdiv(oh + 2 * bp - bs, sy) + 1, cdiv(ow + 2 * bp - bs, sx) + 1
            if min(bh, bw) >= 1:
                self.opt("antialiasing", aa)
                self.add((n, oh, ow, n * oh * ow), (n, bh, bw, n * bh * bw))
                return
            # the blur would not fit: fall back to the plain conv (no antialiasing line)
        oh, ow = dims(size, sy, sx)
        self.add((n, oh, ow, n * oh * ow))

    def deconv(self) -> None:  # pjreddie only
        _, h, w, _ = self.cur
        n = self.draw(st.integers(1, 4))
        size = self.draw(st.integers(1, 3))
        s = self.draw(st.integers(1, 2))
        pad = self.draw(st.integers(0, 1))
        p = size // 2 if pad else 0
        oh, ow = (h - 1) * s + size - 2 * p, (w - 1) * s + size - 2 * p
        if min(oh, ow) < 1 or max(oh, ow) > MAX_SIDE:
            return
        self.section(self.draw(st.sampled_from(["[deconv]", "[deconvolutional]"])))
        self.opt("filters", n)
        self.opt("size", size)
        self.opt("stride", s)
        self.opt("pad", pad)
        self.opt("batch_normalize", self.draw(st.integers(0, 1)))
        self.add((n, oh, ow, n * oh * ow))

    def maxpool(self) -> None:
        c, h, w, _ = self.cur
        s = self.draw(st.sampled_from([1, 1, 2, 3]))
        sx = sy = s
        lines: list[tuple[str, int]] = []
        if s != 1 or self.flag():
            lines.append(("stride", s))
        if self.ab and self.flag(5):
            sx, sy = self.draw(st.integers(1, 2)), self.draw(st.integers(1, 2))
            lines += [("stride_x", sx), ("stride_y", sy)]
        size = s
        if self.flag(3):
            size = self.draw(st.integers(1, 4))
            lines.append(("size", size))
        padding = size - 1
        if self.flag(3):
            padding = self.draw(st.integers(0, max(size - 1, 0)))
            lines.append(("padding", padding))
        oh, ow = cdiv(h + padding - size, sy) + 1, cdiv(w + padding - size, sx) + 1
        if min(oh, ow) < 1:
            return
        self.section(self.draw(st.sampled_from(["[maxpool]", "[max]"])))
        for key, value in lines:
            self.opt(key, value)
        if self.ab and self.flag(10):
            oc = self.draw(st.integers(1, 4))
            self.opt("maxpool_depth", 1)
            self.opt("out_channels", oc)
            self.add((oc, h, w, h * w * oc))
            return
        self.add((c, oh, ow, c * oh * ow))

    def avgpool(self) -> None:
        c = self.cur[0]
        self.section(self.draw(st.sampled_from(["[avgpool]", "[avg]"])))
        self.add((c, 1, 1, c))

    def route(self) -> None:
        first = self.draw(st.sampled_from(self.image_layers()))
        _, h, w, _ = self.outs[first]
        refs = [first, *self.draw(st.lists(st.sampled_from(self.image_layers((h, w))), max_size=2))]
        total_c = sum(self.outs[j][0] for j in refs)
        total_out = sum(self.outs[j][3] for j in refs)
        self.section("[route]")
        self.opt("layers", ", ".join(self.ref(j) for j in refs))
        groups = 1
        if self.ab and total_c % 2 == 0 and self.flag(3):
            groups = 2
            self.opt("groups", 2)
            self.opt("group_id", self.draw(st.integers(0, 1)))
        self.add((total_c // groups, h, w, total_out // groups))

    def shortcut(self) -> None:
        c, h, w, _ = self.cur
        same = self.image_layers((h, w))
        if not same:
            return
        refs = self.draw(st.lists(st.sampled_from(same), min_size=1, max_size=2))
        self.section("[shortcut]")
        self.opt("from", ",".join(self.ref(j) for j in refs))
        if self.flag():
            wtype = self.draw(st.sampled_from(["per_feature", "per_layer", "per_channel"]))
            norm = self.draw(st.sampled_from(["relu", "softmax", "avg_relu"]))
            self.opt("weights_type", wtype, numeric=False)
            self.opt("weights_normalization", norm, numeric=False)
        self.opt("activation", "linear", numeric=False)
        self.add((c, h, w, h * w * c))

    def upsample(self) -> None:
        c, h, w, _ = self.cur
        if h % 2 == 0 and w % 2 == 0 and self.flag(3):
            self.section("[upsample]")
            self.opt("stride", -2)
            self.add((c, h // 2, w // 2, c * (h // 2) * (w // 2)))
        elif 2 * max(h, w) <= MAX_SIDE:
            self.section("[upsample]")
            if self.flag():
                self.opt("stride", 2)
            self.add((c, 2 * h, 2 * w, 4 * c * h * w))

    def connected(self, out: int | None = None) -> None:
        out = out if out is not None else self.draw(st.integers(1, 6))
        self.section(self.draw(st.sampled_from(["[connected]", "[conn]"])))
        self.opt("output", out)
        if self.flag():
            self.opt("batch_normalize", 1)
        self.opt("activation", "leaky", numeric=False)
        self.add((out, 1, 1, out))

    def batchnorm(self) -> None:
        c, h, w, _ = self.cur
        self.section("[batchnorm]")
        self.add((c, h, w, h * w * c))

    def lrn(self) -> None:
        c, h, w, _ = self.cur
        self.section(self.draw(st.sampled_from(["[lrn]", "[normalization]"])))
        self.add((c, h, w, h * w * c))

    def passthrough(self) -> None:
        kinds = ["[dropout]", "[activation]"]
        kinds += ["[empty]", "[silence]"] if self.ab else ["[l2norm]", "[logistic]"]
        kind = self.draw(st.sampled_from(kinds))
        self.section(kind)
        if kind == "[dropout]" and self.flag():
            self.opt("probability", ".5")
        self.add(self.cur)

    def flat_layer(self) -> None:
        kinds = ["[softmax]", "[soft]", "[cost]"] + (["[contrastive]"] if self.ab else [])
        self.section(self.draw(st.sampled_from(kinds)))
        self.add((0, 0, 0, self.cur[3]))

    def local(self) -> None:
        _, h, w, _ = self.cur
        if max(h, w) > 8:
            return
        n = self.draw(st.integers(1, 3))
        size = self.draw(st.sampled_from([1, 3]))
        s = self.draw(st.integers(1, 2))
        pad = self.draw(st.integers(0, 1))
        oh, ow = cdiv(h - (1 if pad else size), s) + 1, cdiv(w - (1 if pad else size), s) + 1
        if min(oh, ow) < 1:
            return
        self.section("[local]")
        self.opt("filters", n)
        self.opt("size", size)
        self.opt("stride", s)
        self.opt("pad", pad)
        self.add((n, oh, ow, n * oh * ow))

    def reorg(self) -> None:
        c, h, w, _ = self.cur
        kind = "[reorg3d]" if self.ab and self.flag() else "[reorg]"
        if c % 4 == 0 and 2 * max(h, w) <= MAX_SIDE and self.flag(3):
            self.section(kind)
            self.opt("stride", 2)
            self.opt("reverse", 1)
            self.add((c // 4, 2 * h, 2 * w, c * h * w))
        elif h >= 2 and w >= 2:
            self.section(kind)
            self.opt("stride", 2)
            oh, ow = h // 2, w // 2
            self.add((4 * c, oh, ow, 4 * c * oh * ow))

    def implicit(self) -> None:  # AlexeyAB only
        filters, atoms = self.draw(st.integers(1, 8)), self.draw(st.integers(1, 3))
        self.section("[implicit]")
        self.opt("filters", filters)
        if atoms != 1 or self.flag():
            self.opt("atoms", atoms)
        self.add((filters, atoms, 1, filters * atoms))

    def recurrent(self) -> None:
        kind = self.draw(st.sampled_from(["rnn", "gru", "lstm"]))
        out = self.draw(st.integers(1, 5))
        self.section(f"[{kind}]")
        self.opt("output", out)
        if self.ab and kind == "rnn" and self.flag():
            self.opt("hidden", self.draw(st.integers(1, 5)))
        self.opt("batch_normalize", self.draw(st.integers(0, 1)))
        image = self.ab and kind in ("rnn", "lstm")
        self.add((out, 1, 1, out) if image else (0, 0, 0, out))

    def dialect_names(self) -> tuple[str, str]:
        """``[crnn]``'s option names for (output, hidden) in this dialect."""
        return ("output", "hidden") if self.ab else ("output_filters", "hidden_filters")

    def crnn(self) -> None:
        _, h, w, _ = self.cur
        out, hidden = self.draw(st.integers(1, 4)), self.draw(st.integers(1, 4))
        out_key, hidden_key = self.dialect_names()
        self.section("[crnn]")
        self.opt(out_key, out)
        self.opt(hidden_key, hidden)
        if self.ab:  # AlexeyAB reads size/pad (defaults 3 and 0 would shrink the image)
            if self.flag():
                self.opt("size", 1)
            else:
                self.opt("size", 3)
                self.opt("pad", 1)
        self.opt("batch_normalize", self.draw(st.integers(0, 1)))
        self.add((out, h, w, out * h * w))

    def conv_lstm(self) -> None:  # AlexeyAB only
        _, h, w, _ = self.cur
        f = self.draw(st.integers(1, 4))
        self.section("[conv_lstm]")
        self.opt("output", f)
        self.opt("size", 3)
        self.opt("pad", 1)
        if self.flag(3):
            self.opt("peephole", 1)
        if self.flag(3):
            self.opt("bottleneck", 1)
        self.add((f, h, w, f * h * w))

    def yolo_head(self) -> None:
        _, h, w, _ = self.cur
        gaussian = self.ab and self.flag(4)
        extra = 9 if gaussian else 5
        classes = self.draw(st.integers(1, 3))
        masks = self.draw(st.integers(1, 3))
        n = masks * (classes + extra)
        self.conv(filters=n, size1=True)
        c, h, w, _ = self.cur
        self.section("[Gaussian_yolo]" if gaussian else "[yolo]")
        self.opt("mask", ",".join(str(i) for i in range(masks)), numeric=False)
        self.opt("anchors", ",".join(["10,13"] * masks), numeric=False)
        self.opt("classes", classes)
        self.opt("num", masks)
        self.add((c, h, w, c * h * w))

    def region_head(self) -> None:
        classes, coords, num = (
            self.draw(st.integers(1, 3)),
            self.draw(st.integers(1, 4)),
            self.draw(st.integers(1, 2)),
        )
        self.conv(filters=num * (classes + coords + 1), size1=True)
        c, h, w, _ = self.cur
        self.section("[region]")
        self.opt("classes", classes)
        self.opt("coords", coords)
        self.opt("num", num)
        self.add((c, h, w, c * h * w))

    def detection(self) -> None:
        classes, coords, num = (
            self.draw(st.integers(0, 3)),
            self.draw(st.integers(1, 4)),
            self.draw(st.integers(1, 2)),
        )
        self.connected(out=(1 + coords) * num + classes)
        self.section("[detection]")
        self.opt("side", 1)
        self.opt("classes", classes)
        self.opt("coords", coords)
        self.opt("num", num)
        self.add((0, 0, 0, self.cur[3]))

    def crop(self) -> None:
        c, h, w, _ = self.cur
        ch, cw = self.draw(st.integers(1, h)), self.draw(st.integers(1, w))
        self.section("[crop]")
        self.opt("crop_height", ch)
        self.opt("crop_width", cw)
        self.add((c, ch, cw, c * ch * cw))

    def history(self) -> None:  # AlexeyAB only
        c, h, w, _ = self.cur
        hs = self.draw(st.integers(1, 3))
        self.section("[history]")
        self.opt("history_size", hs)
        self.add((c * hs, h, w, h * w * c * hs))

    def iseg(self) -> None:  # pjreddie only
        _, h, w, _ = self.cur
        classes, ids = self.draw(st.integers(1, 3)), self.draw(st.integers(1, 4))
        self.section("[iseg]")
        self.opt("classes", classes)
        self.opt("ids", ids)
        self.add((classes + ids, h, w, h * w * (classes + ids)))

    def from_layer(self) -> None:  # AlexeyAB: scale_channels and sam take the from layer's shape
        j = self.draw(st.sampled_from(self.image_layers()))
        c, h, w, _ = self.outs[j]
        self.section(self.draw(st.sampled_from(["[scale_channels]", "[sam]"])))
        self.opt("from", self.ref(j))
        self.add((c, h, w, c * h * w))

    def unknown(self) -> None:
        self.section(self.draw(st.sampled_from(["[bogus]", "[conv]x", "[CONV]", "[custom_layer]"])))
        self.add((0, 0, 0, 0))


@st.composite
def networks(draw: st.DrawFn, dialect: str | None = None) -> Net:
    """A random valid network for ``dialect`` (either when ``None``), as cfg text."""
    dialect = dialect or draw(st.sampled_from(DIALECTS))
    b = _Builder(draw, dialect)
    h, w, c = draw(st.integers(1, 16)), draw(st.integers(1, 16)), draw(st.integers(1, 4))
    b.lines.append("[network]" if b.ab and b.flag(5) else "[net]")
    if b.flag():
        b.opt("batch", 64)
        b.opt("subdivisions", 16)
    b.opt("width", w)
    b.opt("height", h)
    b.opt("channels", c)
    if b.flag(3):
        b.opt("learning_rate", "0.001", numeric=False)
    b.cur = (c, h, w, c * h * w)
    target = draw(st.integers(1, MAX_LAYERS))
    while len(b.outs) < target:
        step = draw(st.sampled_from(b.choices()))
        step()
    text = "\n".join(b.lines) + "\n"
    if b.ab and b.flag(6):
        text = text.replace("\n", "\r\n")  # AlexeyAB strips \r like other whitespace
    return Net(dialect, text, tuple(b.outs))


# -- damaged cfg text ------------------------------------------------------------------------------
HOSTILE_NUMBERS = (
    "0",
    "1",
    "2",
    "3",
    "7",
    "-1",
    "-3",
    "99999999999",
    "2000000000",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "9" * 30,
    "9" * 5000,
    "1e9",
    "3.7",
    "-0",
    "+5",
    "",
    " ",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: C's atoi sees no digit
    "0x10",
    "nan",
    "inf",
    "\x0b12",
)
KEYS = (
    "filters",
    "size",
    "stride",
    "stride_x",
    "stride_y",
    "pad",
    "padding",
    "groups",
    "batch_normalize",
    "cbn",
    "antialiasing",
    "dilation",
    "xnor",
    "flipped",
    "share_index",
    "numload",
    "dontload",
    "dontloadscales",
    "dontsave",
    "layers",
    "from",
    "mask",
    "classes",
    "num",
    "coords",
    "side",
    "reverse",
    "extra",
    "width",
    "height",
    "channels",
    "inputs",
    "output",
    "hidden",
    "history_size",
    "atoms",
    "out_channels",
    "maxpool_depth",
    "peephole",
    "bottleneck",
    "crop_height",
    "crop_width",
    "ids",
    "groups",
    "group_id",
    "output_filters",
    "hidden_filters",
    "weights_type",
    "weights_normalization",
    "activation",
)
REF_VALUES = ("-1,-1", "0,", ",", "-1,999", "5,-2,1", "-999", "999", "0", "1", "2", "-1,-1,-1,-1")
SECTIONS = (
    "[net]",
    "[network]",
    "[convolutional]",
    "[conv]",
    "[route]",
    "[shortcut]",
    "[yolo]",
    "[Gaussian_yolo]",
    "[region]",
    "[detection]",
    "[maxpool]",
    "[local_avgpool]",
    "[avgpool]",
    "[upsample]",
    "[connected]",
    "[rnn]",
    "[gru]",
    "[lstm]",
    "[crnn]",
    "[conv_lstm]",
    "[local]",
    "[deconv]",
    "[reorg]",
    "[reorg3d]",
    "[scale_channels]",
    "[sam]",
    "[implicit]",
    "[batchnorm]",
    "[history]",
    "[crop]",
    "[iseg]",
    "[softmax]",
    "[cost]",
    "[contrastive]",
    "[dropout]",
    "[silence]",
    "[l2norm]",
    "[logistic]",
    "[lrn]",
    "[bogus]",
    "[conv]x",
    "[ conv ]",
    "[CONV]",
    "[",
    "]",
    "[]",
    "[[net]]",
)
SPECIAL_LINES = (
    "filters=99999999999",
    "size=0",
    "stride=-3",
    "groups=7",
    "width=2000000000",
    "filters=2000000000",
    "=",
    "==",
    "a=b=c",
    "key_without_value",
    "filters = 3 2",
    "filters=40#32",
    "# comment",
    "; comment",
    "\ufeff[net]",
    "\x00",
    "filters=\x001",
    "\r",
    "\x0b\x0c",
    "\U0001f600=\U0001f600",
    "weights_type=bogus",
    "weights_type=per_channel",
    "weights_normalization=none",
    "mask=0#1,2",
    "activation=leaky#x",
)


@dataclass(frozen=True)
class CfgCase:
    """Damaged cfg text: what it started from and the mutations applied."""

    dialect: str
    text: str
    ops: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"CfgCase(dialect={self.dialect!r}, ops={list(self.ops)!r})\n{self.text!r}"


def hostile_lines() -> st.SearchStrategy[str]:
    """One line that is likely to upset a cfg parser."""
    kv = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(HOSTILE_NUMBERS))
    refs = st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["layers", "from", "share_index"]),
        st.one_of(st.sampled_from(REF_VALUES), st.integers(-15, 15).map(str)),
    )
    return st.one_of(
        kv,
        refs,
        st.sampled_from(SECTIONS),
        st.sampled_from(SPECIAL_LINES),
        st.text(max_size=24),
    )


_MUTATIONS = (
    "delete",
    "duplicate",
    "swap",
    "insert",
    "insert",
    "insert",
    "renumber",
    "unicode",
    "bytes",
    "crlf",
    "cr",
    "drop_net",
    "prefix_option",
    "truncate",
    "repeat",
    "whitespace",
    "nul",
    "dialect",
)


def _mutate(draw: st.DrawFn, text: str, dialect: str, op: str) -> tuple[str, str, str]:
    """Apply one mutation; return ``(text, dialect, description)``."""
    lines = text.split("\n")
    i = draw(st.integers(0, max(len(lines) - 1, 0)))
    if op == "delete" and lines:
        del lines[i]
        return "\n".join(lines), dialect, f"delete line {i + 1}"
    if op == "duplicate" and lines:
        lines.insert(i, lines[i])
        return "\n".join(lines), dialect, f"duplicate line {i + 1}"
    if op == "swap" and lines:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines), dialect, f"swap lines {i + 1} and {j + 1}"
    if op == "insert":
        new = draw(hostile_lines())
        lines.insert(i, new)
        return "\n".join(lines), dialect, f"insert {new!r} at line {i + 1}"
    if op == "renumber" and lines:
        number = draw(st.sampled_from(HOSTILE_NUMBERS))
        old = lines[i]
        digits = [k for k, ch in enumerate(old) if ch.isdigit()]
        if digits:
            k = digits[0]
            end = k
            while end < len(old) and old[end].isdigit():
                end += 1
            lines[i] = old[:k] + number + old[end:]
        return "\n".join(lines), dialect, f"number in line {i + 1} -> {number!r}"
    if op == "unicode":
        junk = draw(st.text(min_size=1, max_size=16))
        lines.insert(i, junk)
        return "\n".join(lines), dialect, f"insert text {junk!r} at line {i + 1}"
    if op == "bytes":
        junk = draw(st.binary(min_size=1, max_size=24)).decode("utf-8", errors="replace")
        pos = draw(st.integers(0, len(text)))
        return text[:pos] + junk + text[pos:], dialect, f"insert bytes {junk!r} at char {pos}"
    if op == "crlf":
        return text.replace("\n", "\r\n"), dialect, "CRLF line endings"
    if op == "cr":
        return text.replace("\n", "\r"), dialect, "CR-only line endings"
    if op == "drop_net":
        kept = [ln for ln in lines if ln.strip() not in ("[net]", "[network]")]
        return "\n".join(kept), dialect, "drop [net]"
    if op == "prefix_option":
        new = draw(st.sampled_from(["filters=3", "width=8", "x", "batch=1"]))
        return new + "\n" + text, dialect, f"option {new!r} before any section"
    if op == "truncate":
        pos = draw(st.integers(0, len(text)))
        return text[:pos], dialect, f"truncate at char {pos}"
    if op == "repeat" and lines:
        j = draw(st.integers(i, min(i + 8, len(lines))))
        times = draw(st.integers(2, 6))
        block = lines[i:j] * times
        what = f"repeat lines {i + 1}..{j} x{times}"
        return "\n".join(lines[:i] + block + lines[j:]), dialect, what
    if op == "whitespace" and lines:
        old = lines[i]
        pos = draw(st.integers(0, len(old)))
        ws = draw(st.sampled_from([" ", "\t", "  \t ", "\u00a0", "\u3000", "\x0b"]))
        lines[i] = old[:pos] + ws + old[pos:]
        return "\n".join(lines), dialect, f"whitespace {ws!r} in line {i + 1} at {pos}"
    if op == "nul" and lines:
        old = lines[i]
        pos = draw(st.integers(0, len(old)))
        lines[i] = old[:pos] + "\x00" + old[pos:]
        return "\n".join(lines), dialect, f"NUL in line {i + 1} at {pos}"
    if op == "dialect":
        other = "pjreddie" if dialect == "alexeyab" else "alexeyab"
        return text, other, f"read as {other}"
    return text, dialect, f"{op} (no-op)"


EDGE_TEXTS = (
    "",
    "\n",
    "\r\n",
    "[net]",
    "[net]\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n",
    "[net]\nwidth=0\nheight=0\nchannels=0\n[dropout]\n",
    "[net]\ninputs=10\n[connected]\noutput=2\n",
    "[convolutional]\nfilters=1\n",
    "filters=1\n[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\n",
    "\ufeff[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\n",
    "[net]\r\nwidth=8\r\nheight=8\r\nchannels=3\r\n[conv]\r\n",
    "[net]\nwidth=8\nheight=8\nchannels=8\n[conv]\ngroups=7\nfilters=8\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\nfilters=99999999999\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\nsize=0\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\nstride=-3\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=0\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\n[route]\nlayers=2\n[conv]\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\n[route]\nlayers=5\n",
)


@st.composite
def cfg_cases(draw: st.DrawFn) -> CfgCase:
    """A valid network (or an edge-case text) damaged by up to four mutations."""
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(EDGE_TEXTS))
        dialect = draw(st.sampled_from(DIALECTS))
        ops: list[str] = ["edge text"]
    else:
        net = draw(networks())
        text, dialect, ops = net.text, net.dialect, []
    for _ in range(draw(st.integers(0 if ops else 1, 4))):
        text, dialect, what = _mutate(draw, text, dialect, draw(st.sampled_from(_MUTATIONS)))
        ops.append(what)
    return CfgCase(dialect, text, tuple(ops))


# -- damaged weights files -------------------------------------------------------------------------
HEADER_INTS = (0, 1, 2, 3, 5, 9, 999, 1000, 1001, 2**31 - 1, -1, -(2**31))
HEADERS: dict[str, bytes] = {
    "0.2.5/20": struct.pack("<iiiQ", 0, 2, 5, 32_000),
    "0.2.0/20": struct.pack("<iiiQ", 0, 2, 0, 12_345),
    "0.1.0/16": struct.pack("<iiiI", 0, 1, 0, 640),
    "legacy/16": struct.pack("<fffI", 0.001, 0.9, 0.0005, 77),
    "1000.0.0/20": struct.pack("<iiiQ", 1000, 0, 0, 1),
}
TEXT_STARTS = (
    b"[net]\nwidth=416\n",
    b"<!DOCTYPE html><html>",
    b"version https://git-lfs.github.com/spec/v1\noid sha256:",
    b"\x00\x00\x00\x02\x00\x00\x00\x00",  # byte-swapped 2.0
    b"PK\x03\x04",
)


@dataclass(frozen=True)
class WeightsCase:
    """A valid network and a damaged weights file for it.

    The file is rebuilt from these fields by :meth:`data` (a header, ``floats`` random float32
    values from ``seed``, then ``ops`` in order), so a failing example prints compactly.
    """

    net: Net
    header: str
    floats: int
    seed: int
    ops: tuple[tuple[str, int, int], ...]
    open_dialect: str
    strict: bool
    header_size: int | None
    backend: str
    cfg_as_file: bool

    def data(self) -> bytes:
        rng = np.random.default_rng(self.seed)
        body = rng.standard_normal(self.floats).astype(F32).tobytes()
        out = bytearray(HEADERS[self.header] + body)
        for op, a, b in self.ops:
            if op == "truncate":
                del out[a:]
            elif op == "append":
                out += np.random.default_rng(b).bytes(a)
            elif op == "xor" and a < len(out):
                out[a] ^= b
            elif op == "set_int" and a + 4 <= len(out):
                out[a : a + 4] = struct.pack("<i", b)
            elif op == "text_start":
                start = TEXT_STARTS[a]
                out[: len(start)] = start
            elif op == "swap_header" and len(out) >= 12:
                out[0:12] = struct.pack(">iii", *struct.unpack("<iii", out[0:12]))
        return bytes(out)

    def __repr__(self) -> str:
        return (
            f"WeightsCase(header={self.header!r}, floats={self.floats}, seed={self.seed},"
            f" ops={list(self.ops)!r}, open_dialect={self.open_dialect!r}, strict={self.strict},"
            f" header_size={self.header_size}, backend={self.backend!r},"
            f" cfg_as_file={self.cfg_as_file})\n{self.net!r}"
        )


def _boundaries(plan: dwf.Plan, header: int) -> list[int]:
    """Byte offsets of every layer and array boundary of a file with this header width."""
    out = {header}
    for lp in plan.layers:
        out.add(header + 4 * lp.offset)
        for a in lp.arrays:
            out.add(header + 4 * a.offset)
            out.add(header + 4 * a.stop)
    return sorted(out)


@st.composite
def weights_cases(draw: st.DrawFn) -> WeightsCase:
    """A valid network's file, truncated, extended or with its header damaged."""
    net = draw(networks())
    plan = dwf.Plan.from_text(net.text, dialect=net.dialect)
    if net.dialect == "alexeyab":
        header = draw(st.sampled_from(["0.2.5/20", "0.2.5/20", "0.1.0/16", "legacy/16"]))
    else:
        header = draw(st.sampled_from(["0.2.0/20", "0.1.0/16", "legacy/16", "1000.0.0/20"]))
    width = len(HEADERS[header])
    size = width + 4 * plan.total_floats
    cuts = _boundaries(plan, width) + _boundaries(plan, 36 - width)
    ops: list[tuple[str, int, int]] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(
            st.sampled_from(["truncate", "truncate", "truncate", "append", "xor", "xor", "set_int"])
        )
        if kind == "truncate":
            where = draw(
                st.one_of(
                    st.integers(0, 24),
                    st.builds(
                        lambda b, d: max(b + d, 0), st.sampled_from(cuts), st.integers(-5, 5)
                    ),
                    st.integers(0, size + 8),
                )
            )
            ops.append(("truncate", where, 0))
        elif kind == "append":
            n = draw(st.one_of(st.integers(1, 7), st.sampled_from([4, 8, 12, 16, 4096])))
            ops.append(("append", n, draw(st.integers(0, 2**16))))
        elif kind == "xor":
            ops.append(("xor", draw(st.integers(0, 23)), draw(st.integers(1, 255))))
        else:
            value = draw(st.sampled_from(HEADER_INTS))
            ops.append(("set_int", draw(st.sampled_from([0, 4, 8, 12, 16])), value))
    rare = draw(st.integers(0, 19))
    if rare == 0:
        ops.append(("text_start", draw(st.integers(0, len(TEXT_STARTS) - 1)), 0))
    elif rare == 1:
        ops.append(("swap_header", 0, 0))
    return WeightsCase(
        net=net,
        header=header,
        floats=plan.total_floats,
        seed=draw(st.integers(0, 2**32 - 1)),
        ops=tuple(ops),
        open_dialect=draw(st.sampled_from([net.dialect] * 3 + list(DIALECTS))),
        strict=draw(st.booleans()),
        header_size=draw(st.sampled_from([None, None, None, 16, 20])),
        backend=draw(st.sampled_from(["mmap", "pread"])),
        cfg_as_file=draw(st.integers(0, 3)) == 0,
    )


# -- the checks ------------------------------------------------------------------------------------
def check_error(err: BaseException, *, text: str | None = None, path: str | None = None) -> str:
    """Assert ``err`` is a useful :class:`dwf.DwfError`; return its class name.

    ``text``: the cfg text planned (a :class:`dwf.CfgError` must name a line of it, unless the
    text has no section at all). ``path``: the weights file (its name must be in the message).
    """
    if not isinstance(err, dwf.DwfError):
        raise AssertionError(f"not a DwfError: {type(err).__name__}: {err}") from err
    message = str(err)
    assert message.strip(), f"{type(err).__name__} with an empty message"
    assert "Traceback" not in message
    if isinstance(err, dwf.CfgError) and text is not None:
        if err.line is None:
            assert "no [section]" in message or "cfg file" in message, (
                f"CfgError without a line: {message}"
            )
        else:
            n_lines = text.count("\n") + 1
            assert 1 <= err.line <= n_lines, f"line {err.line} outside 1..{n_lines}: {message}"
            assert f":{err.line}:" in message, f"the message does not show line {err.line}"
    if path is not None and not isinstance(err, dwf.CfgError):
        assert os.path.basename(path) in message, f"the message does not name the file: {message}"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == message, "the error does not survive pickling"
    return type(err).__name__


def check_plan(plan: dwf.Plan) -> None:
    """Invariants of any plan dwf returns: arrays laid end to end, names unique, sizes sane."""
    cursor = 0
    names = set()
    for i, lp in enumerate(plan.layers):
        assert lp.index == i
        assert lp.name not in names, f"duplicate layer name {lp.name}"
        names.add(lp.name)
        assert lp.offset == cursor, f"{lp.name} starts at {lp.offset}, not {cursor}"
        for a in lp.arrays:
            assert a.offset == cursor
            assert a.count >= 0 and a.count == int(np.prod(a.shape, dtype=object)), a
            cursor += a.count
    assert plan.total_floats == cursor
    for w in plan.warnings:
        assert w.startswith("line "), f"warning without a line: {w}"


def check_cfg(case: CfgCase) -> str:
    """Plan damaged cfg text: it either plans (a consistent plan) or raises a located CfgError."""
    try:
        plan = dwf.Plan.from_text(case.text, dialect=case.dialect)
    except Exception as e:
        return check_error(e, text=case.text)
    check_plan(plan)
    return "ok"


def check_valid_network(net: Net) -> None:
    """A generated valid network plans, with the output shapes the builder expects."""
    plan = dwf.Plan.from_text(net.text, dialect=net.dialect)
    check_plan(plan)
    assert len(plan.layers) == len(net.outputs), (len(plan.layers), len(net.outputs))
    for lp, (c, h, w, outputs) in zip(plan.layers, net.outputs, strict=True):
        got = (lp.out_c, lp.out_h, lp.out_w, lp.outputs)
        assert got == (c, h, w, outputs), f"{lp.name}: {got} != expected {(c, h, w, outputs)}"
    # plans are immutable and cached by text: the same text gives the same plan back
    assert dwf.Plan.from_text(net.text, dialect=net.dialect) is plan


def _stored(view: np.ndarray[Any, Any], spec: ArraySpec, transposed: bool) -> np.ndarray[Any, Any]:
    """The view's values in the order the file stores them."""
    if transposed and len(spec.shape) >= 2 and spec.count:
        return np.ascontiguousarray(view.reshape(spec.shape[0], -1).T).reshape(-1)
    return np.ascontiguousarray(view).reshape(-1)


def exercise(f: dwf.WeightsFile, data: bytes) -> None:
    """Touch everything an open file offers; views must hold the file's bytes, read-only."""
    repr(f)
    assert f.size == len(data)
    names = f.keys()
    assert len(f) == len(names)
    h = f.header.size
    for lp in f.plan.layers:
        if not lp.arrays:
            continue
        if lp.stop > f.available_floats:
            try:
                f[lp.index]
            except dwf.LayerNotInFileError as e:
                check_error(e, path=f.path)
            else:
                raise AssertionError(f"{lp.name} lies past the end but f[{lp.index}] worked")
            continue
        assert lp.name in names
        layer = f[lp.index]
        for spec in lp.arrays:
            view = layer[spec.name]
            assert view.dtype == F32 and view.dtype.str == "<f4", view.dtype
            assert view.shape == spec.shape, (view.shape, spec.shape)
            assert not view.flags.writeable, f"{lp.name}.{spec.name} is writeable"
            raw = np.frombuffer(data, dtype=F32, count=spec.count, offset=h + 4 * spec.offset)
            transposed = spec.storage == "transposed" or (
                spec.storage == "transposed-if-legacy" and f.header.transpose
            )
            got = _stored(view, spec, transposed)
            assert np.array_equal(got.view("<u4"), raw.view("<u4")), f"{lp.name}.{spec.name}"
    f.check()  # the anomaly scan reads every array the file holds


def check_weights(case: WeightsCase, folder: Path) -> str:
    """Open a damaged file: it either opens (and everything it holds reads back exactly) or
    raises a DwfError naming the file."""
    data = case.data()
    path = folder / "case.weights"
    path.write_bytes(data)
    cfg: Any
    if case.cfg_as_file:
        cfg = folder / "case.cfg"
        cfg.write_text(case.net.text, encoding="utf-8", newline="")
    else:
        cfg = dwf.Plan.from_text(case.net.text, dialect=case.net.dialect)
    try:
        f = dwf.open(
            path,
            cfg,
            dialect=case.open_dialect if not case.cfg_as_file else case.net.dialect,
            strict=case.strict,
            header_size=case.header_size,
            backend=case.backend,  # type: ignore[arg-type]
        )
    except Exception as e:
        return check_error(e, path=str(path))
    with f, warnings.catch_warnings():
        # numpy's overflow/invalid-value warnings mean a statistic came out inf or NaN
        warnings.simplefilter("error", RuntimeWarning)
        if f.mismatch is None and not f.partial:
            assert f.complete
        exercise(f, data)
    try:
        dwf.identify(path)
    except Exception as e:
        check_error(e, path=str(path))
    return "ok"


def million_layer_text(n: int) -> str:
    """A cfg of ``n`` layers (conv, shortcut, maxpool and route repeated) for scaling tests."""
    block = (
        "[convolutional]\nfilters=4\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
        "[shortcut]\nfrom=-2\n"
        "[maxpool]\nsize=1\nstride=1\n"
        "[route]\nlayers=-1,-3\n"
    )
    reps, rest = divmod(n - 1, 4)
    head = "[net]\nwidth=8\nheight=8\nchannels=4\n[convolutional]\nfilters=4\n"
    return head + block * reps + "[dropout]\n" * rest
