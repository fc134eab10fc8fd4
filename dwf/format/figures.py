"""What each layer of a plan costs and sees, beyond its own record: its BFLOPs as Darknet counts
them, and its receptive field and stride on the input — figures that need the dialect and the
layers before it (its parameters and output bytes are :class:`dwf.LayerPlan` properties of its
own). Pure: a function of a plan, computed in one pass when first asked for.

The BFLOPs are Darknet's own figures, not an independent estimate: users compare networks by
the ``Total BFLOPS`` line Darknet prints while loading, so dwf reproduces its arithmetic, int
overflow and float32 rounding included. AlexeyAB's loader keeps a figure per layer (``l.bflops``)
for convolutions, pooling, shortcuts and the recurrent convolutions, and prints their float32
total; pjreddie's prints a figure for each convolution only (a ``[crnn]``'s three sub-convolutions
included), in double, and no total (dwf sums them). Which of the two is the dialect switch
:attr:`dwf.Dialect.keeps_bflops`.

The receptive field and stride are geometry, the same in both dialects: for each layer, how many
input pixels (height, width) one of its output positions depends on, and how far apart in input
pixels two neighbouring output positions are. A layer that reads several layers (route,
shortcut, …) takes the largest of its inputs'. Darknet's ``show_receptive_field=1`` printout
agrees on plain networks; it approximates dilations, antialiasing and reorg, which dwf does not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs
import numpy as np

from dwf.format.cfg import atoi
from dwf.format.dialects import Dialect
from dwf.format.records import LayerPlan

if TYPE_CHECKING:
    from dwf.format.planner import Plan

# Layers whose outputs cover their whole input (one output value may read every position).
_GLOBAL = frozenset(
    {"avgpool", "connected", "rnn", "gru", "lstm", "softmax", "cost", "contrastive", "detection"}
)
# Layers that read, besides the previous layer, the layers of their ``from=``.
_JOINS = frozenset({"shortcut", "scale_channels", "sam"})

Pair = tuple[float, float]  # (height, width); whole numbers are ints


@attrs.frozen
class LayerFigures:
    """One layer's figures (read them as :class:`dwf.LayerPlan` properties)."""

    bflops: float
    receptive_field: Pair
    stride: Pair


def inputs(lp: LayerPlan) -> tuple[int, ...]:
    """The layers whose outputs ``lp`` reads, by index, in the order it reads them; ``-1`` is
    the network's input. A route reads its ``layers=``; a shortcut (and ``scale_channels``,
    ``sam``) the previous layer and its ``from=``; ``[implicit]`` nothing; every other layer the
    previous one."""
    if not lp.known or lp.type == "implicit":
        return ()
    if lp.type == "route":
        return tuple(lp.params.get("layers", ()))
    prev = lp.index - 1
    if lp.type in _JOINS:
        return (prev, *lp.params.get("from", ()))
    return (prev,)


# -- Darknet's arithmetic ---------------------------------------------------------------------
def _f32(x: float) -> float:
    """``x`` stored in a C ``float``."""
    return float(np.float32(x))


def _int32(n: int) -> int:
    """A product of C ``int``s as the machine computes it (wrapping at 2³¹)."""
    return (n + 2**31) % 2**32 - 2**31


def _conv(c: int, groups: int, n: int, size: int, out_hw: int, xnor: bool, kept: bool) -> float:
    """One convolution's figure, as its dialect's ``make_convolutional_layer`` prints it."""
    if kept:
        # l.bflops from the int l.nweights = (c / groups) * n * size * size, kept as float
        nweights = _int32((c // groups) * n * size * size)
        b = _f32(2.0 * nweights * out_hw / 1e9)
        return _f32(b / 32) if xnor else b
    # printed, in double, with the channels divided by the groups as a real number
    return 2.0 * n * size * size * c / groups * out_hw / 1e9


def _sum32(values: list[float]) -> float:
    """``a + b + …`` of C floats, each addition rounded to float."""
    acc = np.float32(0.0)
    for v in values:
        acc = np.float32(acc + np.float32(v))
    return float(acc)


def bflops(lp: LayerPlan, d: Dialect, xnor: bool = False) -> float:
    """The layer's BFLOPs as its dialect's loader computes (AlexeyAB: ``l.bflops``) or prints
    (pjreddie) them; 0 for layers without a figure. ``xnor`` is the section's ``xnor=``."""
    t, p = lp.type, lp.params
    kept = d.keeps_bflops
    out_hw = lp.out_h * lp.out_w
    if t == "convolutional":
        return _conv(lp.in_c, p["groups"], p["filters"], p["size"], out_hw, xnor, kept)
    if t == "crnn":
        # three sub-convolutions, each on the layer's input size
        g, k, hidden, out = p["groups"], p["size"], p["hidden"], p["output"]
        parts = [
            _conv(lp.in_c, g, hidden, k, out_hw, xnor, kept),
            _conv(hidden, g, hidden, k, out_hw, xnor, kept),
            _conv(hidden, g, out, k, out_hw, xnor, kept),
        ]
        return _sum32(parts) if kept else sum(parts)
    if not kept:
        return 0.0
    if t in ("maxpool", "local_avgpool"):
        return _f32(_int32(p["size"] * p["size"] * lp.in_c * out_hw) / 1e9)
    if t == "shortcut":
        b = _f32(_int32(out_hw * lp.out_c * len(p["from"])) / 1e9)
        return _f32(b * 2) if p.get("weights_type", "none") != "none" else b
    if t == "conv_lstm":
        g, k, f, c = p["groups"], p["size"], p["output"], lp.in_c
        peephole, bottleneck = p["peephole"], p["bottleneck"]
        u = _conv(c, g, f, k, out_hw, xnor, kept)
        same = _conv(f, g, f, k, out_hw, xnor, kept)
        # uf ui ug uo, wf wi wg wo, vf vi vo: a bottleneck has one wf of 2f inputs and no
        # wi wg wo; without peepholes there are no v's (their zeroed layers count 0)
        w = [_conv(2 * f, g, f, k, out_hw, xnor, kept), 0.0, 0.0, 0.0] if bottleneck else [same] * 4
        v = [same] * 3 if peephole else [0.0] * 3
        b = _sum32([u] * 4 + w + v)
        # + the gates' element-wise work, at Darknet's inference batch of 1
        return _f32(b + _int32((12 if peephole else 9) * lp.outputs) / 1e9)
    return 0.0


def total_bflops(values: list[float], d: Dialect) -> float:
    """The network's total as AlexeyAB prints it (``Total BFLOPS``: the positive figures
    summed in float) or, for pjreddie, which prints none, their sum."""
    if d.keeps_bflops:
        return _sum32([b for b in values if b > 0])
    return math.fsum(values)


# -- receptive field ----------------------------------------------------------------------------
def _whole(x: float) -> float:
    return int(x) if float(x).is_integer() else x


def _window(rf: Pair, jump: Pair, kh: int, kw: int, sh: float, sw: float) -> tuple[Pair, Pair]:
    """After a kh×kw window moved by sh×sw (in the layer's input positions)."""
    return (
        (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1]),
        (jump[0] * sh, jump[1] * sw),
    )


def _blur(lp: LayerPlan, rf: Pair, jump: Pair, sy: int, sx: int) -> tuple[Pair, Pair]:
    """An antialiased layer: computed at stride 1, then blurred with the layer's stride."""
    k = 2 if lp.params.get("antialiasing") == 2 else 3
    return _window(rf, jump, k, k, sy, sx)


def geometry(lp: LayerPlan, d: Dialect, ins: list[tuple[Pair, Pair]]) -> tuple[Pair, Pair]:
    """The layer's (receptive field, stride), given its inputs' (from :func:`inputs`)."""
    if not ins:
        return (0, 0), (0, 0)  # reads no input ([implicit], unknown sections)
    rf = (max(i[0][0] for i in ins), max(i[0][1] for i in ins))
    jump = (max(i[1][0] for i in ins), max(i[1][1] for i in ins))
    t, p = lp.type, lp.params
    if t == "convolutional":
        k = p["size"]
        dil = p.get("dilation", 1) if d.conv_extras else 1
        ke = dil * (k - 1) + 1
        if p.get("antialiasing"):
            rf, jump = _window(rf, jump, ke, ke, 1, 1)
            return _blur(lp, rf, jump, p["stride_y"], p["stride_x"])
        return _window(rf, jump, ke, ke, p["stride_y"], p["stride_x"])
    if t in ("maxpool", "local_avgpool"):
        if p.get("maxpool_depth"):
            return rf, jump
        k = p["size"]
        if p.get("antialiasing"):
            rf, jump = _window(rf, jump, k, k, 1, 1)
            return _blur(lp, rf, jump, p["stride_y"], p["stride_x"])
        return _window(rf, jump, k, k, p["stride_y"], p["stride_x"])
    if t in ("local", "conv_lstm"):
        k, s = p["size"], p["stride"]
        return _window(rf, jump, k, k, s, s)
    if t == "crnn":  # the input's convolution, then the output's (one time step)
        k, s = p["size"], p["stride"]
        rf, jump = _window(rf, jump, k, k, s, s)
        return _window(rf, jump, k, k, 1, 1)
    if t == "deconvolutional":
        s = p["stride_x"]
        k = -(-p["size"] // s)  # input positions one output position reads
        return _window(rf, jump, k, k, 1 / s, 1 / s)
    if t in ("reorg", "reorg3d"):
        s = p["stride"]
        if p.get("reverse"):
            return rf, (jump[0] / s, jump[1] / s)
        return _window(rf, jump, s, s, s, s)
    if t == "upsample":
        s = p["stride"]
        if s < 0:  # a negative stride sums -stride × -stride blocks
            return _window(rf, jump, -s, -s, -s, -s)
        return rf, (jump[0] / s, jump[1] / s)
    if t in _GLOBAL:
        h, w = max(lp.in_h, 1), max(lp.in_w, 1)
        return _window(rf, jump, h, w, h, w)
    return rf, jump


def compute(plan: Plan) -> tuple[LayerFigures, ...]:
    """Every layer's figures, in one pass over the plan."""
    d = plan.rules
    doc = plan.document
    figures: list[LayerFigures] = []
    start: tuple[Pair, Pair] = ((1, 1), (1, 1))  # an input pixel
    for lp in plan.layers:
        xnor = False
        if d.keeps_bflops and doc is not None and lp.type in ("convolutional", "crnn", "conv_lstm"):
            value = doc.sections[lp.index + 1].values.get("xnor")
            xnor = bool(value and atoi(value))
        ins = [
            start if i < 0 else (figures[i].receptive_field, figures[i].stride)
            for i in inputs(lp)
            if i < lp.index  # a layer not built yet (Darknet reads it as empty) adds nothing
        ]
        rf, jump = geometry(lp, d, ins)
        figures.append(
            LayerFigures(
                bflops(lp, d, xnor) if lp.known else 0.0,
                (_whole(rf[0]), _whole(rf[1])),
                (_whole(jump[0]), _whole(jump[1])),
            )
        )
    return tuple(figures)
