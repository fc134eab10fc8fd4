"""How each Darknet layer type is computed, in the operations of :mod:`dwf.format.ops`: the
lowering table :data:`LOWERINGS`, one function per layer type, and :data:`REFUSED`, the types
that have no such form and why. :func:`dwf.format.network.describe` walks a plan and calls them.

Each function receives the :class:`Lowering` (the graph so far and what a layer may ask: its
input, a reference to another layer, one of its arrays, its activation, batch norm with the
dialect's formula) and the layer's plan, and returns the value holding the layer's output, or
raises :class:`Refused` with the reason it cannot be computed. Darknet's semantics are decided
here: its maxpool padding, its reorg memory order, its flat shortcut and route arithmetic, its
output sizes; an emitter only maps operations.

The module is longer than the ~500 lines a module here usually has, on purpose: like the layer
table (:mod:`dwf.format.layers`), it has one short function per layer type, side by side, so
that "what does layer type X compute" has one answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from dwf.format.activations import ACTIVATIONS
from dwf.format.ops import GraphBuilder, Weight
from dwf.format.planner import Plan
from dwf.format.records import LayerPlan

# Why a layer type has no form in the description; an emitter refuses it with this reason.
REFUSED: Mapping[str, str] = MappingProxyType(
    {
        "rnn": "a recurrent layer carries state across time steps; a graph of one step would"
        " not compute what Darknet computes",
        "gru": "a recurrent layer carries state across time steps",
        "lstm": "a recurrent layer carries state across time steps",
        "crnn": "a recurrent layer carries state across time steps",
        "conv_lstm": "a recurrent layer carries state across time steps",
        "history": "it stacks the outputs of previous frames (state across calls)",
        "deconvolutional": "pjreddie's loader crashes on it (groups is never set) and"
        " AlexeyAB's Darknet does not know the section, so no Darknet runs it",
        "contrastive": "a training-only loss head",
        "iseg": "a segmentation decoding head (decoding is out of scope)",
    }
)

# Darknet's own -FLT_MAX stands for "outside the image" in max pooling.
_NEG = float(-np.finfo(np.float32).max)
# Darknet's batch norm in training, as its GPU build with cuDNN runs it (the build both forks
# train with; cudnnBatchNormalizationForwardTraining with these two constants): the rolling
# statistics move by 0.01 of the batch's, and the batch's biased variance is taken with epsilon
# inside the square root, in both forks. The CPU builds differ (AlexeyAB: momentum 0.1 for
# convolutions, 0.05 for connected layers; both normalize with the unbiased variance and
# pjreddie's with sqrt(var) + 1e-6); docs/pytorch.md has the comparison.
BN_MOMENTUM = 0.01
BN_TRAIN_EPSILON = 1e-5


class Refused(Exception):
    """A layer that cannot be computed; ``reason`` says why (the description records it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Lowering:
    """The state of :func:`describe` while it walks the network: the graph so far, each layer's
    output value, and what a lowering function may ask (its input, a reference, an array)."""

    def __init__(self, plan: Plan, connected_transposed: bool) -> None:
        self.plan = plan
        self.rules = plan.rules
        self.legacy = connected_transposed
        self.g = GraphBuilder()
        self.values: dict[int, str] = {}
        self.blocked: dict[int, str] = {}
        self.refused: set[int] = set()
        self.blurred: set[int] = set()
        self.weights: dict[str, Weight] = {}
        self.reads: list[int] = []
        self.read_weights: list[str] = []
        self.first = "input"

    # -- what a lowering asks ---------------------------------------------------------------------
    def use(self, lp: LayerPlan, index: int, what: str) -> str:
        """The output of layer ``index`` as ``lp`` reads it (its ``what``: input, reference)."""
        if index < 0:
            self.reads.append(-1)
            return self.first
        ref = self.plan.layers[index]
        if index >= lp.index:
            raise Refused(
                f"its {what} is layer {index} ({ref.name}), at or after it: Darknet reads that"
                " layer's output before computing it (whatever a previous run left there, or"
                " nothing), which no graph computes"
            )
        if index in self.blocked:
            raise Refused(f"its {what} is layer {index} ({ref.name}): {self.blocked[index]}")
        if index in self.refused:
            raise Refused(f"its {what} is layer {index} ({ref.name}), which is refused itself")
        self.reads.append(index)
        return self.values[index]

    def prev(self, lp: LayerPlan) -> str:
        """The previous layer's output as ``lp``'s ``(N, in_c, in_h, in_w)`` input."""
        x = self.use(lp, lp.index - 1, "input")
        if lp.in_c and lp.in_h and lp.in_w:
            return self.g.image(x, lp.in_c, lp.in_h, lp.in_w)
        return x

    def ref(self, lp: LayerPlan, index: int) -> str:
        """Layer ``index``'s output as ``lp`` reads it by reference (route, shortcut …)."""
        if index in self.blurred:
            raise Refused(
                f"it reads layer {index}, an antialiased layer whose recorded size is not the"
                " size of the data Darknet leaves in its output"
            )
        x = self.use(lp, index, "reference")
        r = self.plan.layers[index]
        if r.out_c and r.out_h and r.out_w:
            return self.g.image(x, r.out_c, r.out_h, r.out_w)
        return x

    def weight(self, owner: LayerPlan, name: str) -> str:
        """The value of ``owner``'s array ``name``, as stored."""
        spec = owner.array(name)
        if spec is None:
            raise Refused(f"it has no {name} array in this file")
        value = f"{owner.name}.{spec.name}"
        if value not in self.weights:
            transposed = spec.stored_transposed(self.legacy) and len(spec.shape) >= 2
            shape = (spec.count // spec.shape[0], spec.shape[0]) if transposed else spec.shape
            trainable = spec.name.rpartition(".")[2] not in ("rolling_mean", "rolling_variance")
            self.weights[value] = Weight(
                value, owner.index, spec.name, spec, shape, transposed, trainable
            )
            self.g.declare(value, shape)
        self.read_weights.append(value)
        return value

    def batchnorm(self, lp: LayerPlan, x: str, owner: LayerPlan, bias: str | None = None) -> str:
        """Darknet's inference batch norm of ``x`` with ``owner``'s arrays (the dialect's
        formula); without ``bias``, a zero bias (pjreddie's ``[batchnorm]`` stores none)."""
        scale = self.weight(owner, "scales")
        mean = self.weight(owner, "rolling_mean")
        var = self.weight(owner, "rolling_variance")
        if bias is None:
            bias = self.g.const(np.zeros(self.weights[scale].spec.count))
        r = self.rules
        return self.g.op(
            "batch_norm",
            x,
            scale,
            bias,
            mean,
            var,
            epsilon=r.bn_epsilon,
            epsilon_outside_sqrt=r.bn_epsilon_outside_sqrt,
            momentum=BN_MOMENTUM,
            train_epsilon=BN_TRAIN_EPSILON,
        )

    def activation(self, lp: LayerPlan, x: str) -> str:
        """``lp``'s activation (``params["activation"]``, resolved by the planner) of ``x``."""
        name = str(lp.params.get("activation") or "linear")
        if name not in self.rules.activations:  # a plan made by hand: Darknet's fallback
            name = "relu"
        act = ACTIVATIONS[name]
        if act.per_pixel:
            if lp.type != "convolutional":
                raise Refused(
                    f"activation={name} exists in Darknet only as a convolutional layer's"
                    " per-pixel normalization; elsewhere its element-wise activate() has no"
                    " case for it (the CPU build outputs 0)"
                )
            if len(self.g.shape(x)) != 4:
                raise Refused(f"activation={name} needs an image (it works across channels)")
        return act.lower(self.g, x)

    def blur(self, lp: LayerPlan, y: str, c: int) -> str:
        """Darknet's fixed antialiasing blur (not stored in the file), at the layer's stride."""
        p = lp.params
        k: np.ndarray[Any, Any]
        if p["antialiasing"] == 2:
            k, pad = np.full((2, 2), 0.25), 0
        else:
            k, pad = np.outer([1, 2, 1], [1, 2, 1]) / 16, 1
        kern = self.g.const(np.broadcast_to(k, (c, 1, *k.shape)))
        size = k.shape[0]
        self.blurred.add(lp.index)
        return self.g.op(
            "conv",
            y,
            kern,
            kernel=(size, size),
            strides=(p["stride_y"], p["stride_x"]),
            pads=(pad,) * 4,
            groups=c,
        )


# -- the lowering table: one function per layer type ---------------------------------------------
Lower = Callable[[Lowering, LayerPlan], str]


def _share_owner(x: Lowering, lp: LayerPlan) -> LayerPlan:
    # share_index: Darknet points this layer's weights, biases and batch-norm arrays at those of
    # the other layer, which alone stores them (a chain ends at the one that stores)
    src = lp
    while src.params.get("share_index") is not None:
        src = x.plan.layers[src.params["share_index"]]
    return src


def _kernel(size: int) -> None:
    if size < 1:
        raise Refused(
            f"size={size}: a kernel without pixels, which Darknet runs as an empty sum and no"
            " runtime's convolution or pooling accepts"
        )


def convolutional(x: Lowering, lp: LayerPlan) -> str:
    p = lp.params
    src = _share_owner(x, lp)
    if p.get("numload") or (src.arrays and src.arrays[0].count != p["filters"]):
        raise Refused(
            "numload= loads only some filters from the file; Darknet runs the others with their"
            " random initial values"
        )
    if p.get("xnor") or p.get("binary"):
        raise Refused("xnor/binary layers binarize inputs and weights at run time")
    n, size, groups = p["filters"], p["size"], p["groups"]
    _kernel(size)
    g = x.g
    inp = x.prev(lp)
    sy, sx, pad, dil = p["stride_y"], p["stride_x"], p["padding"], p["dilation"]
    if pad < 0:
        raise Refused(f"padding={pad} is negative")
    if p.get("antialiasing"):  # the convolution runs at stride 1; the blur after it strides
        sy = sx = 1
    cg = lp.in_c // groups
    if cg == 0 or n % groups:
        raise Refused(f"groups={groups} does not split {lp.in_c} channels / {n} filters")
    if cg * groups != lp.in_c:  # Darknet's groups read only the first groups*cg channels
        inp = g.slice(inp, [0], [cg * groups], [1])
    w = x.weight(src, "weights")
    if x.weights[w].transposed:  # flipped=1: stored (c·k·k, n)
        w = g.op("transpose", w, perm=(1, 0))
        w = g.op("reshape", w, shape=(n, cg, size, size))
    # Darknet's output size ignores dilation; choose the end padding so the convolution gives
    # it, slicing when even no end padding gives more rows than Darknet computes.
    pb = pad * dil
    ends = [
        (out - 1) * s + dil * (size - 1) + 1 - inn - pb
        for out, inn, s in ((lp.out_h, lp.in_h, sy), (lp.out_w, lp.in_w, sx))
    ]
    bn = bool(p["batch_normalize"])
    ins = [inp, w] if bn else [inp, w, x.weight(src, "biases")]
    y = g.op(
        "conv",
        *ins,
        kernel=(size, size),
        strides=(sy, sx),
        dilations=(dil, dil),
        pads=(pb, pb, max(ends[0], 0), max(ends[1], 0)),
        groups=groups,
    )
    if min(ends) < 0:
        y = g.slice(y, [0, 0], [lp.out_h, lp.out_w], [2, 3])
    if bn:
        y = x.batchnorm(lp, y, src, bias=x.weight(src, "biases"))
    y = x.activation(lp, y)
    if p.get("antialiasing"):
        y = x.blur(lp, y, n)
    return y


def connected(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    inp = g.flat(x.use(lp, lp.index - 1, "input"))
    w = x.weight(lp, "weights")
    trans_b = not x.weights[w].transposed  # legacy files store (inputs, outputs)
    bias = x.weight(lp, "biases")
    if lp.array("scales") is not None:
        y = x.batchnorm(lp, g.op("gemm", inp, w, trans_b=trans_b), lp, bias=bias)
    else:
        y = g.op("gemm", inp, w, bias, trans_b=trans_b)
    return g.reshape(x.activation(lp, y), (lp.outputs, 1, 1))


def local(x: Lowering, lp: LayerPlan) -> str:
    p = lp.params
    g = x.g
    n, size, s = p["filters"], p["size"], p["stride"]
    _kernel(size)
    inp = x.prev(lp)
    pad = size // 2 if p["pad"] else 0
    c, oh, ow = lp.in_c, lp.out_h, lp.out_w
    if pad:
        inp = g.op("pad", inp, pads=(0, 0, pad, pad, 0, 0, pad, pad))
    # one strided slice per kernel offset gives the im2col columns (ky, kx, c) per location
    cols = [
        g.slice(inp, [ky, kx], [ky + (oh - 1) * s + 1, kx + (ow - 1) * s + 1], [2, 3], [s, s])
        for ky in range(size)
        for kx in range(size)
    ]
    col = g.op("concat", *cols, axis=1) if len(cols) > 1 else cols[0]
    loc, k = oh * ow, c * size * size
    col = g.reshape(col, (size * size, c, loc))
    col = g.op("transpose", col, perm=(0, 3, 2, 1))  # N, loc, c, (ky kx)
    col = g.reshape(col, (loc, 1, k))
    # one weight block per location: (loc, n, c·k·k), used as (loc, c·k·k, n)
    w = g.op("reshape", x.weight(lp, "weights"), shape=(loc, n, k))
    w = g.op("transpose", w, perm=(0, 2, 1))
    y = g.reshape(g.op("matmul", col, w), (loc, n))
    y = g.reshape(g.op("transpose", y, perm=(0, 2, 1)), (n, oh, ow))
    y = g.op("add", y, x.weight(lp, "biases"))
    return x.activation(lp, y)


def batchnorm(x: Lowering, lp: LayerPlan) -> str:
    bias = x.weight(lp, "biases") if lp.array("biases") is not None else None
    return x.batchnorm(lp, x.prev(lp), lp, bias=bias)


def _pool(x: Lowering, lp: LayerPlan, op: str) -> str:
    p = lp.params
    g = x.g
    size, sy, sx, pad = p["size"], p["stride_y"], p["stride_x"], p["padding"]
    _kernel(size)
    if pad < 0:
        raise Refused(f"padding={pad} is negative")
    inp = x.prev(lp)
    if p.get("antialiasing"):  # the host pools with stride 1, the blur after it strides
        sy = sx = 1
    # Darknet's window starts padding/2 before the image and is clipped to it
    begin = pad // 2
    ends = [
        (o - 1) * s + size - i - begin
        for o, i, s in ((lp.out_h, lp.in_h, sy), (lp.out_w, lp.in_w, sx))
    ]
    pads = (begin, begin, max(ends[0], 0), max(ends[1], 0))
    if max(pads) >= size:  # wider than a window: pad by hand, with Darknet's "outside" value
        if op == "avg_pool":
            raise Refused(f"padding={pad} is not smaller than size={size}")
        inp = g.op("pad", inp, pads=(0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]), value=_NEG)
        pads = (0, 0, 0, 0)
    y = g.op(op, inp, kernel=(size, size), strides=(sy, sx), pads=pads)
    if min(ends) < 0:
        y = g.slice(y, [0, 0], [lp.out_h, lp.out_w], [2, 3])
    if p.get("antialiasing"):
        y = x.blur(lp, y, lp.out_c)
    return y


def maxpool(x: Lowering, lp: LayerPlan) -> str:
    oc = lp.params.get("maxpool_depth")
    if not oc:
        return _pool(x, lp, "max_pool")
    g = x.g
    inp = x.prev(lp)
    c, groups = lp.in_c, -(-lp.in_c // oc)
    if groups * oc != c:  # channel k belongs to group k % oc; pad the missing ones
        inp = g.op("pad", inp, pads=(0, 0, 0, 0, 0, groups * oc - c, 0, 0), value=_NEG)
    inp = g.reshape(inp, (groups, oc, lp.in_h, lp.in_w))
    return g.op("reduce_max", inp, axes=(1,), keepdims=False)


def local_avgpool(x: Lowering, lp: LayerPlan) -> str:
    return _pool(x, lp, "avg_pool")


def avgpool(x: Lowering, lp: LayerPlan) -> str:
    return x.g.op("global_avg_pool", x.prev(lp))


def _out_shape(lp: LayerPlan) -> tuple[int, int, int]:
    if lp.out_c and lp.out_h and lp.out_w:
        return lp.out_shape
    return (lp.outputs, 1, 1)


def route(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    refs = [x.plan.layers[i] for i in lp.params["layers"]]
    groups, gid = lp.params["groups"], lp.params["group_id"]
    if (
        groups == 1
        and lp.out_c
        and all(
            r.index < lp.index
            and r.out_c * lp.out_h * lp.out_w == r.outputs
            and (r.out_h, r.out_w) == (lp.out_h, lp.out_w)
            for r in refs
        )
    ):
        xs = [x.ref(lp, r.index) for r in refs]
        return xs[0] if len(xs) == 1 else g.op("concat", *xs, axis=1)
    # Darknet copies, from each input, part group_id of its flat outputs.
    parts = []
    for r in refs:
        v = g.flat(x.ref(lp, r.index))
        part = r.outputs // groups
        if groups > 1:
            v = g.slice(v, [part * gid], [part * (gid + 1)], [1])
        parts.append(v)
    y = parts[0] if len(parts) == 1 else g.op("concat", *parts, axis=1)
    shape = _out_shape(lp)
    if math.prod(shape) != lp.outputs:
        raise Refused("its inputs' sizes do not add up to the output Darknet records")
    return g.reshape(y, shape)


def shortcut(x: Lowering, lp: LayerPlan) -> str:
    inp = x.prev(lp)
    for i in lp.params["from"]:  # a layer at or after it: refused before anything else
        if i >= lp.index:
            x.use(lp, i, "reference")
    froms = [x.plan.layers[i] for i in lp.params["from"]]
    if x.rules.shortcut_weights:
        y = _weighted_shortcut(x, lp, inp, froms)
    else:
        y = _strided_shortcut(x, lp, inp, froms[0])
    return x.activation(lp, y)


def _weighted_shortcut(x: Lowering, lp: LayerPlan, inp: str, froms: list[LayerPlan]) -> str:
    """AlexeyAB's shortcut_multilayer_cpu: flat buffers added, each times its normalized weight."""
    g = x.g
    wt = lp.params.get("weights_type", "none")
    norm = lp.params.get("weights_normalization", "none")
    k = len(froms) + 1
    ws: list[str | None] = [None] * k
    if wt != "none":
        raw = x.weight(lp, "weights")  # (k,) or (k, c)
        if norm == "softmax":
            e = g.op("exp", g.op("sub", raw, g.op("reduce_max", raw, axes=(0,))))
        else:
            e = g.op("relu", raw)
        total = g.op("reduce_sum", e, axes=(0,))
        wn = g.op("div", e, g.op("add", total, g.scalar(0.0001)))
        for i in range(k):
            wi = g.slice(wn, [i], [i + 1], [0])
            if wt == "per_channel":
                wi = g.op("reshape", wi, shape=(lp.out_c, 1, 1))
            ws[i] = wi
    w0 = ws[0]
    y = inp if w0 is None else g.op("mul", inp, w0)
    for i, r in enumerate(froms, start=1):
        a = x.ref(lp, r.index)
        if r.outputs != lp.outputs or g.shape(a) != (None, *lp.out_shape):
            # Darknet adds flat index by flat index, up to the smaller of the two sizes.
            a = g.flat(a)
            if r.outputs > lp.outputs:
                a = g.slice(a, [0], [lp.outputs], [1])
            elif r.outputs < lp.outputs:
                a = g.op("pad", a, pads=(0, 0, 0, lp.outputs - r.outputs))
            a = g.reshape(a, lp.out_shape)
        wk = ws[i]
        if wk is not None:
            a = g.op("mul", a, wk)
        y = g.op("add", y, a)
    return y


def _strided_shortcut(x: Lowering, lp: LayerPlan, inp: str, r: LayerPlan) -> str:
    """pjreddie's shortcut_cpu: alpha·out + beta·add over the overlapping part."""
    g = x.g
    alpha, beta = lp.params.get("alpha", 1.0), lp.params.get("beta", 1.0)
    c2, h2, w2 = lp.out_shape
    c1, h1, w1 = r.out_shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    if sample != 1:
        raise Refused("a shortcut from a smaller layer (sampled add) is not supported")
    mc, mh, mw = min(c1, c2), min(h1, h2), min(w1, w2)
    a = x.ref(lp, r.index)
    if (c1, h1, w1) != (mc, mh, mw) or stride != 1:
        a = g.slice(a, [0, 0, 0], [mc, mh * stride, mw * stride], [1, 2, 3], [1, stride, stride])
    y = inp
    if alpha != 1.0:  # only the overlapping region is scaled by alpha
        mask = np.zeros((c2, h2, w2), np.float32)
        mask[:mc, :mh, :mw] = alpha - 1.0
        y = g.op("add", y, g.op("mul", y, g.const(mask)))
    if beta != 1.0:
        a = g.op("mul", a, g.scalar(beta))
    if (mc, mh, mw) != (c2, h2, w2):
        a = g.op("pad", a, pads=(0, 0, 0, 0, 0, c2 - mc, h2 - mh, w2 - mw))
    return g.op("add", y, a)


def upsample(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    s, scale = lp.params["stride"], float(lp.params.get("scale", 1.0))
    if s > 0:
        y = g.op("resize_nearest", x.prev(lp), scales=(s, s))
    else:
        # Darknet sums each s×s block of the input read as a (c, out_h·s, out_w·s) buffer.
        s = -s
        c, oh, ow = lp.out_shape
        v = g.flat(x.use(lp, lp.index - 1, "input"))
        if c * oh * ow * s * s != lp.inputs:
            v = g.slice(v, [0], [c * oh * ow * s * s], [1])
        v = g.reshape(v, (c, oh * s, ow * s))
        y = g.op("avg_pool", v, kernel=(s, s), strides=(s, s), pads=(0, 0, 0, 0))
        scale *= s * s
    if scale != 1.0:
        y = g.op("mul", y, g.scalar(scale))
    return y


def _reorg(x: Lowering, lp: LayerPlan, dims: tuple[int, int, int]) -> str:
    p = lp.params
    g = x.g
    if p.get("extra") or p.get("flatten"):
        raise Refused("reorg with extra= or flatten= is not supported")
    s = p["stride"]
    w, h, c = dims
    if c % (s * s) or c * h * w != lp.inputs:
        why = "divides by 0 and crashes" if c < s * s else "mixes channels across them"
        raise Refused(
            f"Darknet's reorg_cpu runs on {c} channels, which stride²={s * s} does not divide"
            f" (it {why})"
        )
    v = g.flat(x.use(lp, lp.index - 1, "input"))
    # reorg_cpu's index arithmetic, as a reshape/transpose pair on the flat buffer
    if p["reverse"]:
        v = g.reshape(v, (s, s, c // (s * s), h, w))
        v = g.op("transpose", v, perm=(0, 3, 4, 1, 5, 2))
    else:
        v = g.reshape(v, (c // (s * s), h, s, w, s))
        v = g.op("transpose", v, perm=(0, 3, 5, 1, 2, 4))
    return g.reshape(v, lp.out_shape)


def reorg(x: Lowering, lp: LayerPlan) -> str:
    # [reorg] runs reorg_cpu on the input's dimensions
    return _reorg(x, lp, (lp.in_w, lp.in_h, lp.in_c))


def reorg3d(x: Lowering, lp: LayerPlan) -> str:
    # [reorg3d] on the output's
    return _reorg(x, lp, (lp.out_w, lp.out_h, lp.out_c))


def softmax(x: Lowering, lp: LayerPlan) -> str:
    p = lp.params
    g = x.g
    if p.get("tree"):
        raise Refused("hierarchical softmax (tree=) is not supported")
    groups = max(int(p.get("groups", 1)), 1)
    temp = float(p.get("temperature", 1.0))
    v = g.flat(x.use(lp, lp.index - 1, "input"))
    n = lp.inputs // groups
    if n * groups != lp.inputs:
        raise Refused(f"groups={groups} does not divide its {lp.inputs} inputs")
    v = g.reshape(v, (groups, n))
    if temp != 1.0:
        v = g.op("div", v, g.scalar(temp))
    return g.reshape(g.op("softmax", v, axis=-1), (lp.outputs, 1, 1))


def identity(x: Lowering, lp: LayerPlan) -> str:
    """empty, cost: their output is their input."""
    return x.use(lp, lp.index - 1, "input")


def dropout(x: Lowering, lp: LayerPlan) -> str:
    return x.g.op("dropout", x.use(lp, lp.index - 1, "input"), probability=lp.params["probability"])


def activation(x: Lowering, lp: LayerPlan) -> str:
    return x.activation(lp, x.use(lp, lp.index - 1, "input"))


def logistic(x: Lowering, lp: LayerPlan) -> str:
    return x.g.op("sigmoid", x.use(lp, lp.index - 1, "input"))


def l2norm(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    v = x.prev(lp)
    sq = g.op("reduce_sum", g.op("mul", v, v), axes=(1,))
    return g.op("div", v, g.op("sqrt", sq))


def normalization(x: Lowering, lp: LayerPlan) -> str:
    p = lp.params
    g = x.g
    size = p["size"]
    c, h, w = lp.in_c, lp.in_h, lp.in_w
    if size < 1 or c <= size // 2:
        raise Refused(f"size={size} reaches past its {c} channels")
    v = x.prev(lp)
    # Darknet's running window sum starts from channels [0, size/2) and then adds k + size/2
    # for each k ≥ 1, so channel size/2 is never added, yet it is subtracted when the window
    # passes it: every norm lacks alpha·x[size/2]² (not ONNX's LRN).
    sq = g.op("mul", v, v)
    col = g.reshape(sq, (1, c, h * w))
    ones = g.const(np.ones((1, 1, size, 1)))
    win = g.op(
        "conv",
        col,
        ones,
        kernel=(size, 1),
        strides=(1, 1),
        pads=((size - 1) // 2, 0, size // 2, 0),
    )
    win = g.reshape(win, (c, h, w))
    skipped = g.slice(sq, [size // 2], [size // 2 + 1], [1])
    norms = g.op("sub", win, skipped)
    norms = g.op("add", g.op("mul", norms, g.scalar(p["alpha"])), g.scalar(p["kappa"]))
    return g.op("mul", v, g.op("pow", norms, g.scalar(-p["beta"])))


def scale_channels(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    src = x.ref(lp, lp.params["from"][0])
    prev = g.flat(x.use(lp, lp.index - 1, "input"))
    c, h, w = lp.out_shape
    if lp.params.get("scale_wh"):
        s = g.reshape(g.slice(prev, [0], [h * w], [1]), (1, h, w))
    else:
        s = g.reshape(g.slice(prev, [0], [c], [1]), (c, 1, 1))
    return x.activation(lp, g.op("mul", src, s))


def sam(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    src = x.ref(lp, lp.params["from"][0])
    prev = g.image(x.use(lp, lp.index - 1, "input"), *lp.out_shape)
    return x.activation(lp, g.op("mul", prev, src))


def crop(x: Lowering, lp: LayerPlan) -> str:
    g = x.g
    v = x.prev(lp)
    dh, dw = (lp.in_h - lp.out_h) // 2, (lp.in_w - lp.out_w) // 2
    y = g.slice(v, [dh, dw], [dh + lp.out_h, dw + lp.out_w], [2, 3])
    if not lp.params.get("noadjust"):  # Darknet maps [0, 1] to [-1, 1] here
        y = g.op("sub", g.op("mul", y, g.scalar(2.0)), g.scalar(1.0))
    return y


def implicit(x: Lowering, lp: LayerPlan) -> str:
    return x.g.op("broadcast_batch", x.weight(lp, "weights"))


LOWERINGS: Mapping[str, Lower] = MappingProxyType(
    {
        "convolutional": convolutional,
        "connected": connected,
        "local": local,
        "batchnorm": batchnorm,
        "implicit": implicit,
        "shortcut": shortcut,
        "scale_channels": scale_channels,
        "sam": sam,
        "route": route,
        "maxpool": maxpool,
        "local_avgpool": local_avgpool,
        "avgpool": avgpool,
        "reorg": reorg,
        "reorg3d": reorg3d,
        "upsample": upsample,
        "dropout": dropout,
        "empty": identity,
        "cost": identity,
        "activation": activation,
        "l2norm": l2norm,
        "logistic": logistic,
        "normalization": normalization,
        "softmax": softmax,
        "crop": crop,
    }
)
