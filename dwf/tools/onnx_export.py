"""A runnable ONNX model of a Darknet network, computing what Darknet computes.

The graph follows Darknet's inference semantics layer by layer (its batch-norm epsilon per
dialect, its activations, its maxpool padding, its reorg memory order, its flat shortcut and
route arithmetic), not ONNX's or another importer's defaults. Weights are not copied: by default
every initializer is ONNX *external data* pointing at its byte span in the ``.weights`` file
itself. Arrays whose stored layout differs from the logical one (``flipped`` convolutions,
connected weights of legacy-header files) stay in their stored layout and a node transposes them.

The module is named ``onnx_export`` so that it never shadows the ``onnx`` package. It is longer
than the ~500 lines a module here usually has, on purpose: like the layer table
(:mod:`dwf.format.layers`), its graph builder has one short method per Darknet layer type and
activation, side by side, so that "how is layer type X exported" has one answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dwf.errors import DwfError
from dwf.extras import require
from dwf.format.cfg import Section, tokenize
from dwf.format.dialects import get_dialect
from dwf.format.records import ArraySpec, LayerPlan
from dwf.io.reader import WeightsFile
from dwf.io.writer import atomic_write

OPSET = 17
# ONNX keeps a model in one protobuf message, which cannot exceed 2 GiB.
EMBED_LIMIT = 2**31 - 2**24
DETECTION_TYPES = ("yolo", "region", "Gaussian_yolo", "detection")
# Darknet's own -FLT_MAX stands for "outside the image" in max pooling.
_NEG = float(-np.finfo(np.float32).max)

# Every activation name Darknet's get_activation knows, per dialect; any other name falls back
# to relu there (with a printed warning), so it does here too.
_ACTS_PJ = {
    "logistic",
    "loggy",
    "relu",
    "elu",
    "selu",
    "relie",
    "plse",
    "hardtan",
    "lhtan",
    "linear",
    "ramp",
    "leaky",
    "tanh",
    "stair",
}
_ACTS_AB = _ACTS_PJ | {
    "swish",
    "mish",
    "hard_mish",
    "relu6",
    "gelu",
    "revleaky",
    "normalize_channels",
    "normalize_channels_softmax",
    "normalize_channels_softmax_maxval",
}
_PER_CHANNEL_ACTS = {
    "normalize_channels",
    "normalize_channels_softmax",
    "normalize_channels_softmax_maxval",
}

# Why a layer type has no ONNX form; the export refuses it with this reason.
REFUSED: dict[str, str] = {
    "rnn": "a recurrent layer carries state across time steps; an ONNX graph of one step"
    " would not compute what Darknet computes",
    "gru": "a recurrent layer carries state across time steps",
    "lstm": "a recurrent layer carries state across time steps",
    "crnn": "a recurrent layer carries state across time steps",
    "conv_lstm": "a recurrent layer carries state across time steps",
    "history": "it stacks the outputs of previous frames (state across calls)",
    "deconvolutional": "pjreddie's loader crashes on it (groups is never set) and AlexeyAB's"
    " Darknet does not know the section, so no Darknet runs it",
    "contrastive": "a training-only loss head",
    "iseg": "a segmentation decoding head (decoding is out of scope)",
}


def _section_options(sec: Section) -> dict[str, str]:
    return {o.key: o.value for o in sec.options if o.value is not None}


class _Builder:
    """Builds the node list; one tensor per Darknet layer, named after the layer."""

    def __init__(self, f: WeightsFile, onnx: Any) -> None:
        self.f = f
        self.plan = f.plan
        self.onnx = onnx
        self.h = onnx.helper
        self.nodes: list[Any] = []
        self.consts: list[Any] = []
        self.inits: list[tuple[str, LayerPlan, ArraySpec]] = []
        self._named: set[str] = set()
        self.shape: dict[str, tuple[int, int, int]] = {}
        self.tensor: dict[int, str] = {}
        self.blocked: dict[int, str] = {}  # layer index → why its output cannot be used
        self._n = 0
        self.first = "input"  # what layer 0 reads: the graph input, as an image
        self._rank2: dict[str, int] = {}  # flat (N, C) tensors → C
        self._blurred: set[int] = set()
        self.dialect = get_dialect(self.plan.dialect)
        doc = tokenize(self.plan.text, path=self.plan.cfg_path, strip_cr=self.dialect.strip_cr)
        self.sections = doc.sections[1:]

    # -- small helpers ------------------------------------------------------------------------
    def fail(self, lp: LayerPlan, why: str) -> DwfError:
        where = self.plan.cfg_path or "<cfg text>"
        return DwfError(
            f"{where}:{lp.line}: layer {lp.index} ({lp.name}, {lp.type}) cannot be exported to"
            f" ONNX: {why}",
            path=self.plan.cfg_path,
        )

    def uniq(self, base: str) -> str:
        self._n += 1
        return f"{base}/{self._n}"

    def node(
        self, op: str, inputs: Sequence[str], base: str, out: str | None = None, **attrs: Any
    ) -> str:
        name = out or self.uniq(base)
        self.nodes.append(self.h.make_node(op, list(inputs), [name], name=name + ":" + op, **attrs))
        return name

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.uniq(base + "/const")
        arr = np.asarray(value, dtype=dtype)
        self.consts.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, base: str, values: Sequence[int]) -> str:
        return self.const(base, list(values), np.int64)

    def scalar(self, base: str, v: float) -> str:
        return self.const(base, v)

    def weight(self, lp: LayerPlan, name: str) -> str:
        """The initializer of ``lp``'s array ``name``, in its *stored* layout."""
        spec = lp.array(name)
        if spec is None:  # the planner always gives what a layer stores; guard for share_index
            raise self.fail(lp, f"it has no {name} array in this file")
        tensor = f"{lp.name}.{spec.name}"
        if tensor not in self._named:
            self._named.add(tensor)
            self.inits.append((tensor, lp, spec))
        return tensor

    def stored_dims(self, spec: ArraySpec) -> tuple[int, ...]:
        if spec.stored_transposed(self.f.header.connected_transposed) and len(spec.shape) >= 2:
            return (spec.count // spec.shape[0], spec.shape[0])
        return spec.shape

    def reshape(self, x: str, dims: Sequence[int], base: str, out: str | None = None) -> str:
        return self.node("Reshape", [x, self.ints(base, [0, *dims])], base, out)

    def flat(self, x: str, base: str) -> str:
        return self.node("Flatten", [x], base, axis=1)

    def image(self, x: str, c: int, h: int, w: int, base: str) -> str:
        """``x`` as ``(N, c, h, w)``, reshaped when it is held in another (flat) shape."""
        if self.shape.get(x) == (c, h, w):
            return x
        total = int(np.prod(self.shape[x]))
        if total != c * h * w:
            raise DwfError(f"internal: {x} holds {total} values, not {c}x{h}x{w}")
        return self.reshape(x, (c, h, w), base)

    def slice(
        self,
        x: str,
        starts: Sequence[int],
        ends: Sequence[int],
        axes: Sequence[int],
        base: str,
        steps: Sequence[int] | None = None,
    ) -> str:
        ins = [x, self.ints(base, starts), self.ints(base, ends), self.ints(base, axes)]
        if steps is not None:
            ins.append(self.ints(base, steps))
        return self.node("Slice", ins, base)

    def emit(self, lp: LayerPlan, x: str, shape: tuple[int, int, int]) -> None:
        """Record ``x`` as ``lp``'s output, renamed to the layer's name."""
        out = self.node("Identity", [x], lp.name, out=lp.name) if x != lp.name else x
        self.tensor[lp.index] = out
        self.shape[out] = shape

    def use(self, lp: LayerPlan, index: int, what: str) -> str:
        if index < 0:
            return self.first
        if index in self.blocked:
            ref = self.plan.layers[index]
            raise self.fail(lp, f"its {what} is layer {index} ({ref.name}): {self.blocked[index]}")
        return self.tensor[index]

    def prev(self, lp: LayerPlan) -> str:
        """The previous layer's output as this layer's ``(N, in_c, in_h, in_w)`` input."""
        x = self.use(lp, lp.index - 1, "input")
        if lp.in_c and lp.in_h and lp.in_w:
            return self.image(x, lp.in_c, lp.in_h, lp.in_w, lp.name)
        return x

    def out_shape(self, lp: LayerPlan) -> tuple[int, int, int]:
        if lp.out_c and lp.out_h and lp.out_w:
            return lp.out_shape
        return (lp.outputs, 1, 1)

    # -- batch norm and activations ------------------------------------------------------------
    def batchnorm(
        self,
        lp: LayerPlan,
        x: str,
        prefix: str = "",
        bias: str | None = None,
        owner: LayerPlan | None = None,
    ) -> str:
        """Darknet's inference batch norm of ``x``; the arrays are ``owner``'s (``lp``'s)."""
        src = owner or lp
        scale = self.weight(src, prefix + "scales")
        mean = self.weight(src, prefix + "rolling_mean")
        var = self.weight(src, prefix + "rolling_variance")
        if bias is None:
            n = src.array(prefix + "scales").count  # type: ignore[union-attr]
            bias = self.const(lp.name, np.zeros(n))
        if self.dialect.name == "pjreddie":
            # pjreddie's normalize_cpu: (x - mean) / (sqrt(var) + 1e-6)
            b = lp.name
            c = self.shape_c(x)
            rs = self.ints(b, [c, 1, 1] if self.rank4(x) else [c])

            def per_c(t: str) -> str:
                return self.node("Reshape", [t, rs], b)

            d = self.node("Add", [self.node("Sqrt", [var], b), self.scalar(b, 1e-6)], b)
            y = self.node("Div", [self.node("Sub", [x, per_c(mean)], b), per_c(d)], b)
            return self.node("Add", [self.node("Mul", [y, per_c(scale)], b), per_c(bias)], b)
        # AlexeyAB's normalize_cpu: (x - mean) / sqrt(var + 1e-5), ONNX's own formula.
        return self.node("BatchNormalization", [x, scale, bias, mean, var], lp.name, epsilon=1e-5)

    def rank4(self, x: str) -> bool:
        return x not in self._rank2

    def shape_c(self, x: str) -> int:
        return self.shape[x][0] if x in self.shape else self._rank2[x]

    def activation(self, lp: LayerPlan, x: str, name: str | None = None) -> str:
        act = name if name is not None else str(lp.params.get("activation") or "linear")
        if name is None and "activation" not in lp.params:
            act = self.option(lp, "activation", "linear")
        known = _ACTS_PJ if self.dialect.name == "pjreddie" else _ACTS_AB
        if act not in known:
            act = "relu"  # Darknet: "Couldn't find activation function …, going with ReLU"
        b = lp.name
        node, sc = self.node, self.scalar
        if act == "linear":
            return x
        if act in ("leaky", "revleaky"):
            return node("LeakyRelu", [x], b, alpha=0.1)
        if act == "relie":
            return node("LeakyRelu", [x], b, alpha=0.01)
        if act == "relu":
            return node("Relu", [x], b)
        if act == "relu6":
            return node("Clip", [x, sc(b, 0.0), sc(b, 6.0)], b)
        if act == "hardtan":
            return node("Clip", [x, sc(b, -1.0), sc(b, 1.0)], b)
        if act == "logistic":
            return node("Sigmoid", [x], b)
        if act == "loggy":
            s = node("Mul", [node("Sigmoid", [x], b), sc(b, 2.0)], b)
            return node("Sub", [s, sc(b, 1.0)], b)
        if act == "tanh":
            return node("Tanh", [x], b)
        if act == "elu":
            return node("Elu", [x], b, alpha=1.0)
        if act == "selu":
            return node("Selu", [x], b, alpha=1.6732, gamma=1.0507)
        if act == "ramp":
            return node("Add", [node("Relu", [x], b), node("Mul", [x, sc(b, 0.1)], b)], b)
        if act == "swish":
            return node("Mul", [x, node("Sigmoid", [x], b)], b)
        if act == "mish":
            # Darknet's softplus with threshold 20, then its tanh
            e = node("Exp", [x], b)
            soft = node("Log", [node("Add", [e, sc(b, 1.0)], b)], b)
            low = node("Where", [node("Less", [x, sc(b, -20.0)], b), e, soft], b)
            sp = node("Where", [node("Greater", [x, sc(b, 20.0)], b), x, low], b)
            return node("Mul", [x, node("Tanh", [sp], b)], b)
        if act == "hard_mish":
            quad = node("Add", [node("Mul", [node("Mul", [x, x], b), sc(b, 0.5)], b), x], b)
            mid = node("Where", [node("Greater", [x, sc(b, -2.0)], b), quad, sc(b, 0.0)], b)
            return node("Where", [node("Greater", [x, sc(b, 0.0)], b), x, mid], b)
        if act == "gelu":
            x3 = node("Mul", [node("Mul", [x, x], b), x], b)
            inner = node(
                "Add",
                [node("Mul", [x, sc(b, 0.797885)], b), node("Mul", [x3, sc(b, 0.035677)], b)],
                b,
            )
            t = node("Add", [node("Tanh", [inner], b), sc(b, 1.0)], b)
            return node("Mul", [node("Mul", [x, sc(b, 0.5)], b), t], b)
        if act == "plse":
            mid = node("Add", [node("Mul", [x, sc(b, 0.125)], b), sc(b, 0.5)], b)
            lo = node("Mul", [node("Add", [x, sc(b, 4.0)], b), sc(b, 0.01)], b)
            hi = node(
                "Add",
                [node("Mul", [node("Sub", [x, sc(b, 4.0)], b), sc(b, 0.01)], b), sc(b, 1.0)],
                b,
            )
            y = node("Where", [node("Greater", [x, sc(b, 4.0)], b), hi, mid], b)
            return node("Where", [node("Less", [x, sc(b, -4.0)], b), lo, y], b)
        if act == "lhtan":
            lo = node("Mul", [x, sc(b, 0.001)], b)
            hi = node(
                "Add",
                [node("Mul", [node("Sub", [x, sc(b, 1.0)], b), sc(b, 0.001)], b), sc(b, 1.0)],
                b,
            )
            y = node("Where", [node("Greater", [x, sc(b, 1.0)], b), hi, x], b)
            return node("Where", [node("Less", [x, sc(b, 0.0)], b), lo, y], b)
        if act == "stair":
            n = node("Floor", [x], b)
            half = node("Floor", [node("Mul", [x, sc(b, 0.5)], b)], b)
            even = node("Equal", [node("Mod", [n, sc(b, 2.0)], b, fmod=1), sc(b, 0.0)], b)
            odd = node("Add", [node("Sub", [x, n], b), half], b)
            return node("Where", [even, half, odd], b)
        if act in _PER_CHANNEL_ACTS:
            if lp.type != "convolutional":
                raise self.fail(
                    lp,
                    f"activation={act} exists in Darknet only as a convolutional layer's"
                    " per-pixel normalization; elsewhere its element-wise activate() has no case"
                    " for it (the CPU build outputs 0)",
                )
            if not self.rank4(x):
                raise self.fail(lp, f"activation={act} needs an image (it works across channels)")
            if act == "normalize_channels":
                r = node("Relu", [x], b)
                s = node("ReduceSum", [r, self.ints(b, [1])], b, keepdims=1)
                return node("Div", [r, node("Add", [s, sc(b, 1e-4)], b)], b)
            shift = x
            if act.endswith("maxval"):
                shift = node("Sub", [x, node("ReduceMax", [x], b, axes=[1], keepdims=1)], b)
            e = node("Exp", [shift], b)
            s = node("ReduceSum", [e, self.ints(b, [1])], b, keepdims=1)
            return node("Div", [e, node("Add", [s, sc(b, 1e-4)], b)], b)
        raise self.fail(lp, f"activation={act} is not one dwf can express")  # pragma: no cover

    def option(self, lp: LayerPlan, key: str, default: str) -> str:
        opt = self.sections[lp.index].get(key)
        return default if opt is None or opt.value is None else opt.value

    def num(self, lp: LayerPlan, key: str, default: float) -> float:
        v = self.option(lp, key, "")
        if not v:
            return default
        try:
            return float(v)
        except ValueError:
            raise self.fail(lp, f"{key}={v} is not a number") from None

    # -- layers ---------------------------------------------------------------------------------
    def build(self) -> None:
        for lp in self.plan.layers:
            kind = lp.type
            if not lp.known:
                self.blocked[lp.index] = "an unknown section, which Darknet leaves empty"
                continue
            if kind in REFUSED:
                raise self.fail(lp, REFUSED[kind])
            if kind in DETECTION_TYPES:
                # The tensor entering the head is a model output; the head's decoding is not
                # part of the graph, so nothing may read the head's own output.
                self.tensor[lp.index] = self.use(lp, lp.index - 1, "input")
                self.blocked[lp.index] = (
                    "a detection layer, whose decoding the export leaves to the caller"
                )
                continue
            if lp.outputs == 0 or (lp.out_c * lp.out_h * lp.out_w not in (0, lp.outputs)):
                raise self.fail(
                    lp,
                    f"Darknet records its output as {lp.out_c}×{lp.out_h}×{lp.out_w} with"
                    f" {lp.outputs} values, which no tensor can hold (an input of another size"
                    " or a channel count its groups= do not divide?)",
                )
            if lp.params.get("dontload"):
                raise self.fail(
                    lp, "dontload=1: Darknet does not load its weights and runs it with their"
                    " random initial values",
                )  # fmt: skip
            if lp.params.get("dontloadscales"):
                raise self.fail(
                    lp, "dontloadscales=1: Darknet does not load its batch-norm arrays and runs"
                    " it with their initial values",
                )  # fmt: skip
            handler = getattr(self, "l_" + kind, None)
            if handler is None:
                raise self.fail(lp, "no ONNX form for this layer type")
            handler(lp)

    def l_convolutional(self, lp: LayerPlan) -> None:
        p = lp.params
        # share_index: Darknet points this layer's weights, biases and batch-norm arrays at
        # those of the other layer, which alone stores them
        src = lp
        while src.params.get("share_index") is not None:  # a chain ends at the one that stores
            src = self.plan.layers[src.params["share_index"]]
        if p.get("numload") or (src.arrays and src.arrays[0].count != p["filters"]):
            raise self.fail(
                lp, "numload= loads only some filters from the file; Darknet runs the others"
                " with their random initial values",
            )  # fmt: skip
        if int(self.num(lp, "xnor", 0)) or int(self.num(lp, "binary", 0)):
            raise self.fail(lp, "xnor/binary layers binarize inputs and weights at run time")
        x = self.prev(lp)
        n, size, groups = p["filters"], p["size"], p["groups"]
        sy, sx, pad, dil = p["stride_y"], p["stride_x"], p["padding"], p["dilation"]
        aa = p.get("antialiasing", 0)
        if aa:
            sy = sx = 1
        cg = lp.in_c // groups
        if cg == 0 or n % groups:
            raise self.fail(lp, f"groups={groups} does not split {lp.in_c} channels / {n} filters")
        if cg * groups != lp.in_c:  # Darknet's groups read only the first groups*cg channels
            x = self.slice(x, [0], [cg * groups], [1], lp.name)
        spec = src.array("weights")
        if spec is None:
            raise self.fail(lp, "the file holds no weights for it")
        w = self.weight(src, "weights")
        if spec.stored_transposed(self.f.header.connected_transposed):
            w = self.node("Transpose", [w], lp.name, perm=[1, 0])
            w = self.node("Reshape", [w, self.ints(lp.name, [n, cg, size, size])], lp.name)
        pb = pad * dil
        # Darknet's output size ignores dilation; choose the end padding so ONNX matches it,
        # slicing when even zero end padding gives more rows than Darknet computes.
        ends = []
        for out, inn, s in ((lp.out_h, lp.in_h, sy), (lp.out_w, lp.in_w, sx)):
            ends.append((out - 1) * s + dil * (size - 1) + 1 - inn - pb)
        pads = [pb, pb, max(ends[0], 0), max(ends[1], 0)]
        bn = bool(p["batch_normalize"])
        ins = [x, w] if bn else [x, w, self.weight(src, "biases")]
        y = self.node(
            "Conv",
            ins,
            lp.name,
            kernel_shape=[size, size],
            strides=[sy, sx],
            dilations=[dil, dil],
            pads=pads,
            group=groups,
        )
        if min(ends) < 0:
            y = self.slice(y, [0, 0], [lp.out_h, lp.out_w], [2, 3], lp.name)
        self.shape[y] = (n, lp.out_h, lp.out_w)
        if bn:
            y = self.batchnorm(lp, y, bias=self.weight(src, "biases"), owner=src)
        self.shape[y] = (n, lp.out_h, lp.out_w)
        y = self.activation(lp, y)
        if aa:
            y = self.blur(lp, y, n, aa, p["stride_y"], p["stride_x"])
            self.mark_blurred(lp)
            self.emit(lp, y, self.next_shape(lp))
            return
        self.emit(lp, y, (n, lp.out_h, lp.out_w))

    def blur(self, lp: LayerPlan, y: str, c: int, aa: int, sy: int, sx: int) -> str:
        # Darknet's fixed blur kernels (not stored in the file)
        k: np.ndarray[Any, Any]
        if aa == 2:
            k, pad = np.full((2, 2), 0.25), 0
        else:
            k, pad = np.outer([1, 2, 1], [1, 2, 1]) / 16, 1
        kern = self.const(lp.name, np.broadcast_to(k, (c, 1, *k.shape)).copy())
        bs = k.shape[0]
        return self.node(
            "Conv",
            [y, kern],
            lp.name,
            kernel_shape=[bs, bs],
            strides=[sy, sx],
            pads=[pad] * 4,
            group=c,
        )

    def mark_blurred(self, lp: LayerPlan) -> None:
        self._blurred.add(lp.index)

    def next_shape(self, lp: LayerPlan) -> tuple[int, int, int]:
        nxt = self.plan.layers[lp.index + 1] if lp.index + 1 < len(self.plan.layers) else None
        if nxt is None:
            raise self.fail(lp, "antialiasing on the last layer")
        return (nxt.in_c, nxt.in_h, nxt.in_w)

    def ref(self, lp: LayerPlan, index: int) -> str:
        if index in self._blurred:
            raise self.fail(
                lp,
                f"it reads layer {index}, an antialiased layer whose recorded size is not the"
                " size of the data Darknet leaves in its output",
            )
        x = self.use(lp, index, "reference")
        r = self.plan.layers[index]
        if r.out_c and r.out_h and r.out_w:
            return self.image(x, r.out_c, r.out_h, r.out_w, lp.name)
        return x

    def l_connected(self, lp: LayerPlan) -> None:
        x = self.flat(self.use(lp, lp.index - 1, "input"), lp.name)
        w = self.weight(lp, "weights")
        spec = lp.array("weights")
        assert spec is not None
        trans_b = 0 if spec.stored_transposed(self.f.header.connected_transposed) else 1
        bn = lp.array("scales") is not None
        bias = self.weight(lp, "biases")
        if bn:
            y = self.node("Gemm", [x, w], lp.name, transB=trans_b)
            self._rank2[y] = lp.outputs
            y = self.batchnorm(lp, y, bias=bias)
        else:
            y = self.node("Gemm", [x, w, bias], lp.name, transB=trans_b)
        self._rank2[y] = lp.outputs
        y = self.activation(
            lp, y, str(lp.params.get("activation") or self.option(lp, "activation", "logistic"))
        )
        self.emit(lp, self.reshape(y, (lp.outputs, 1, 1), lp.name), (lp.outputs, 1, 1))

    def l_batchnorm(self, lp: LayerPlan) -> None:
        x = self.prev(lp)
        bias = self.weight(lp, "biases") if lp.array("biases") is not None else None
        self.shape[x] = (lp.in_c, lp.in_h, lp.in_w)
        self.emit(lp, self.batchnorm(lp, x, bias=bias), lp.out_shape)

    def _pool(self, lp: LayerPlan, op: str) -> None:
        p = lp.params
        aa = p.get("antialiasing", 0)
        x = self.prev(lp)
        size, sy, sx, pad = p["size"], p["stride_y"], p["stride_x"], p["padding"]
        if aa:  # the host pools with stride 1, the blur after it strides
            sy = sx = 1
        begin = pad // 2
        ends = [
            (o - 1) * s + size - i - begin
            for o, i, s in ((lp.out_h, lp.in_h, sy), (lp.out_w, lp.in_w, sx))
        ]
        pads = [begin, begin, max(ends[0], 0), max(ends[1], 0)]
        attrs: dict[str, Any] = {"kernel_shape": [size, size], "strides": [sy, sx]}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0
        if max(pads) >= size:  # ONNX pooling wants pads smaller than the kernel
            if op == "AveragePool":
                raise self.fail(lp, f"padding={pad} is not smaller than size={size}")
            x = self.node(
                "Pad",
                [
                    x,
                    self.ints(lp.name, [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]),
                    self.scalar(lp.name, _NEG),
                ],
                lp.name,
                mode="constant",
            )
            pads = [0, 0, 0, 0]
        y = self.node(op, [x], lp.name, pads=pads, **attrs)
        if min(ends) < 0:
            y = self.slice(y, [0, 0], [lp.out_h, lp.out_w], [2, 3], lp.name)
        if aa:
            y = self.blur(lp, y, lp.out_c, aa, p["stride_y"], p["stride_x"])
            self.mark_blurred(lp)
            self.emit(lp, y, self.next_shape(lp))
            return
        self.emit(lp, y, lp.out_shape)

    def l_maxpool(self, lp: LayerPlan) -> None:
        oc = lp.params.get("maxpool_depth")
        if oc:
            x = self.prev(lp)
            c, groups = lp.in_c, -(-lp.in_c // oc)
            if groups * oc != c:  # channel k belongs to group k % oc; pad the missing ones
                x = self.node(
                    "Pad",
                    [
                        x,
                        self.ints(lp.name, [0, 0, 0, 0, 0, groups * oc - c, 0, 0]),
                        self.scalar(lp.name, _NEG),
                    ],
                    lp.name,
                    mode="constant",
                )
            x = self.reshape(x, (groups, oc, lp.in_h, lp.in_w), lp.name)
            y = self.node("ReduceMax", [x], lp.name, axes=[1], keepdims=0)
            self.emit(lp, y, lp.out_shape)
            return
        self._pool(lp, "MaxPool")

    def l_local_avgpool(self, lp: LayerPlan) -> None:
        self._pool(lp, "AveragePool")

    def l_avgpool(self, lp: LayerPlan) -> None:
        self.emit(lp, self.node("GlobalAveragePool", [self.prev(lp)], lp.name), lp.out_shape)

    def l_route(self, lp: LayerPlan) -> None:
        refs = [self.plan.layers[i] for i in lp.params["layers"]]
        groups, gid = lp.params["groups"], lp.params["group_id"]
        if (
            groups == 1
            and lp.out_c
            and all(
                r.out_c * lp.out_h * lp.out_w == r.outputs
                and (r.out_h, r.out_w) == (lp.out_h, lp.out_w)
                for r in refs
            )
        ):
            xs = [self.ref(lp, r.index) for r in refs]
            y = xs[0] if len(xs) == 1 else self.node("Concat", xs, lp.name, axis=1)
            self.emit(lp, y, lp.out_shape)
            return
        # Darknet copies, from each input, part group_id of its flat outputs.
        parts = []
        for r in refs:
            x = self.flat(self.ref(lp, r.index), lp.name)
            part = r.outputs // groups
            if groups > 1:
                x = self.slice(x, [part * gid], [part * (gid + 1)], [1], lp.name)
            parts.append(x)
        y = parts[0] if len(parts) == 1 else self.node("Concat", parts, lp.name, axis=1)
        shape = self.out_shape(lp)
        if int(np.prod(shape)) != lp.outputs:
            raise self.fail(lp, "its inputs' sizes do not add up to the output Darknet records")
        self.emit(lp, self.reshape(y, shape, lp.name), shape)

    def l_shortcut(self, lp: LayerPlan) -> None:
        x = self.prev(lp)
        c, h, w = lp.out_shape
        froms = [self.plan.layers[i] for i in lp.params["from"]]
        if self.dialect.name == "pjreddie":
            y = self._pj_shortcut(lp, x, froms[0])
        else:
            y = self._ab_shortcut(lp, x, froms)
        self.shape[y] = (c, h, w)
        self.emit(lp, self.activation(lp, y), (c, h, w))

    def _ab_shortcut(self, lp: LayerPlan, x: str, froms: list[LayerPlan]) -> str:
        b = lp.name
        wt = lp.params.get("weights_type", "none")
        norm = lp.params.get("weights_normalization", "none")
        k = len(froms) + 1
        ws: list[str | None] = [None] * k
        if wt != "none":
            raw = self.weight(lp, "weights")  # (k,) or (k, c)
            if norm == "softmax":
                top = self.node("ReduceMax", [raw], b, axes=[0], keepdims=1)
                e = self.node("Exp", [self.node("Sub", [raw, top], b)], b)
            else:
                e = self.node("Relu", [raw], b)
            total = self.node("ReduceSum", [e, self.ints(b, [0])], b, keepdims=1)
            wn = self.node("Div", [e, self.node("Add", [total, self.scalar(b, 1e-4)], b)], b)
            for i in range(k):
                wi = self.node("Gather", [wn, self.const(b, i, np.int64)], b, axis=0)
                if wt == "per_channel":
                    wi = self.node("Reshape", [wi, self.ints(b, [lp.out_c, 1, 1])], b)
                ws[i] = wi
        w0 = ws[0]
        y = x if w0 is None else self.node("Mul", [x, w0], b)
        for i, r in enumerate(froms, start=1):
            a = self.ref(lp, r.index)
            if r.outputs != lp.outputs or self.shape.get(a) != lp.out_shape:
                # Darknet adds flat index by flat index, up to the smaller of the two sizes.
                a = self.flat(a, b)
                if r.outputs > lp.outputs:
                    a = self.slice(a, [0], [lp.outputs], [1], b)
                elif r.outputs < lp.outputs:
                    a = self.node("Pad", [a, self.ints(b, [0, 0, 0, lp.outputs - r.outputs])], b)
                a = self.reshape(a, lp.out_shape, b)
            wk = ws[i]
            if wk is not None:
                a = self.node("Mul", [a, wk], b)
            y = self.node("Add", [y, a], b)
        return y

    def _pj_shortcut(self, lp: LayerPlan, x: str, r: LayerPlan) -> str:
        b = lp.name
        alpha, beta = self.num(lp, "alpha", 1.0), self.num(lp, "beta", 1.0)
        c2, h2, w2 = lp.out_shape
        c1, h1, w1 = r.out_shape
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
        if sample != 1:
            raise self.fail(lp, "a shortcut from a smaller layer (sampled add) is not supported")
        mc, mh, mw = min(c1, c2), min(h1, h2), min(w1, w2)
        a = self.ref(lp, r.index)
        if (c1, h1, w1) != (mc, mh, mw) or stride != 1:
            a = self.slice(
                a, [0, 0, 0], [mc, mh * stride, mw * stride], [1, 2, 3], b, [1, stride, stride]
            )
        if alpha != 1.0:
            # only the overlapping region is scaled by alpha
            mask = np.zeros((c2, h2, w2), np.float32)
            mask[:mc, :mh, :mw] = alpha - 1.0
            x = self.node("Add", [x, self.node("Mul", [x, self.const(b, mask)], b)], b)
        if beta != 1.0:
            a = self.node("Mul", [a, self.scalar(b, beta)], b)
        if (mc, mh, mw) != (c2, h2, w2):
            a = self.node("Pad", [a, self.ints(b, [0, 0, 0, 0, 0, c2 - mc, h2 - mh, w2 - mw])], b)
        return self.node("Add", [x, a], b)

    def l_upsample(self, lp: LayerPlan) -> None:
        s = lp.params["stride"]
        scale = self.num(lp, "scale", 1.0)
        if s > 0:
            x = self.prev(lp)
            y = self.node(
                "Resize",
                [x, "", self.const(lp.name, [1, 1, s, s])],
                lp.name,
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        else:
            # Darknet sums each s×s block of the input read as a (c, out_h*s, out_w*s) buffer.
            s = -s
            c, oh, ow = lp.out_shape
            x = self.flat(self.use(lp, lp.index - 1, "input"), lp.name)
            if c * oh * ow * s * s != lp.inputs:
                x = self.slice(x, [0], [c * oh * ow * s * s], [1], lp.name)
            x = self.reshape(x, (c, oh * s, ow * s), lp.name)
            y = self.node("AveragePool", [x], lp.name, kernel_shape=[s, s], strides=[s, s])
            scale *= s * s
        if scale != 1.0:
            y = self.node("Mul", [y, self.scalar(lp.name, scale)], lp.name)
        self.emit(lp, y, lp.out_shape)

    def _reorg(self, lp: LayerPlan, dims: tuple[int, int, int], forward: bool) -> None:
        p = lp.params
        if p.get("extra") or int(self.num(lp, "flatten", 0)):
            raise self.fail(lp, "reorg with extra= or flatten= is not supported")
        s = p["stride"]
        w, h, c = dims
        if c % (s * s) or c * h * w != lp.inputs:
            why = "divides by 0 and crashes" if c < s * s else "mixes channels across them"
            raise self.fail(
                lp,
                f"Darknet's reorg_cpu runs on {c} channels, which stride²={s * s} does not"
                f" divide (it {why})",
            )
        x = self.flat(self.use(lp, lp.index - 1, "input"), lp.name)
        # reorg_cpu's index arithmetic, as a reshape/transpose pair on the flat buffer
        if forward:
            x = self.reshape(x, (s, s, c // (s * s), h, w), lp.name)
            x = self.node("Transpose", [x], lp.name, perm=[0, 3, 4, 1, 5, 2])
        else:
            x = self.reshape(x, (c // (s * s), h, s, w, s), lp.name)
            x = self.node("Transpose", [x], lp.name, perm=[0, 3, 5, 1, 2, 4])
        self.emit(lp, self.reshape(x, lp.out_shape, lp.name), lp.out_shape)

    def l_reorg(self, lp: LayerPlan) -> None:
        self._reorg(lp, (lp.in_w, lp.in_h, lp.in_c), bool(lp.params["reverse"]))

    def l_reorg3d(self, lp: LayerPlan) -> None:
        self._reorg(lp, (lp.out_w, lp.out_h, lp.out_c), bool(lp.params["reverse"]))

    def l_softmax(self, lp: LayerPlan) -> None:
        if self.option(lp, "tree", ""):
            raise self.fail(lp, "hierarchical softmax (tree=) is not supported")
        groups = max(int(self.num(lp, "groups", 1)), 1)
        temp = self.num(lp, "temperature", 1.0)
        x = self.flat(self.use(lp, lp.index - 1, "input"), lp.name)
        n = lp.inputs // groups
        if n * groups != lp.inputs:
            x = self.slice(x, [0], [n * groups], [1], lp.name)
        x = self.reshape(x, (groups, n), lp.name)
        if temp != 1.0:
            x = self.node("Div", [x, self.scalar(lp.name, temp)], lp.name)
        y = self.node("Softmax", [x], lp.name, axis=-1)
        if n * groups != lp.inputs:
            raise self.fail(lp, f"groups={groups} does not divide its {lp.inputs} inputs")
        self.emit(lp, self.reshape(y, (lp.outputs, 1, 1), lp.name), (lp.outputs, 1, 1))

    def _identity(self, lp: LayerPlan) -> None:
        x = self.use(lp, lp.index - 1, "input")
        self.emit(lp, x, self.shape.get(x, self.out_shape(lp)))

    def l_dropout(self, lp: LayerPlan) -> None:
        self._identity(lp)

    l_empty = l_dropout
    l_cost = l_dropout

    def l_activation(self, lp: LayerPlan) -> None:
        x = self.use(lp, lp.index - 1, "input")
        self.emit(
            lp, self.activation(lp, x, self.option(lp, "activation", "linear")), self.shape[x]
        )

    def l_logistic(self, lp: LayerPlan) -> None:
        x = self.use(lp, lp.index - 1, "input")
        self.emit(lp, self.node("Sigmoid", [x], lp.name), self.shape[x])

    def l_l2norm(self, lp: LayerPlan) -> None:
        x = self.prev(lp)
        b = lp.name
        sq = self.node("ReduceSum", [self.node("Mul", [x, x], b), self.ints(b, [1])], b, keepdims=1)
        self.emit(lp, self.node("Div", [x, self.node("Sqrt", [sq], b)], b), lp.out_shape)

    def l_normalization(self, lp: LayerPlan) -> None:
        x = self.prev(lp)
        b = lp.name
        size = int(self.num(lp, "size", 5))
        alpha, beta = self.num(lp, "alpha", 0.0001), self.num(lp, "beta", 0.75)
        kappa = self.num(lp, "kappa", 1.0)
        c, h, w = lp.in_c, lp.in_h, lp.in_w
        if size < 1 or c <= size // 2:
            raise self.fail(lp, f"size={size} reaches past its {c} channels")
        # Darknet's running window sum starts from channels [0, size/2) and then adds
        # k + size/2 for each k ≥ 1, so channel size/2 is never added, yet it is subtracted
        # when the window passes it: every norm lacks alpha·x[size/2]² (not ONNX's LRN).
        sq = self.node("Mul", [x, x], b)
        col = self.reshape(sq, (1, c, h * w), b)
        ones = self.const(b, np.ones((1, 1, size, 1)))
        win = self.node(
            "Conv", [col, ones], b, kernel_shape=[size, 1], pads=[(size - 1) // 2, 0, size // 2, 0]
        )
        win = self.reshape(win, (c, h, w), b)
        skipped = self.slice(sq, [size // 2], [size // 2 + 1], [1], b)
        norms = self.node("Sub", [win, skipped], b)
        norms = self.node(
            "Add", [self.node("Mul", [norms, self.scalar(b, alpha)], b), self.scalar(b, kappa)], b
        )
        y = self.node("Mul", [x, self.node("Pow", [norms, self.scalar(b, -beta)], b)], b)
        self.emit(lp, y, lp.out_shape)

    def l_scale_channels(self, lp: LayerPlan) -> None:
        src = self.ref(lp, lp.params["from"][0])
        prev = self.flat(self.use(lp, lp.index - 1, "input"), lp.name)
        c, h, w = lp.out_shape
        if int(self.num(lp, "scale_wh", 0)):
            s = self.reshape(self.slice(prev, [0], [h * w], [1], lp.name), (1, h, w), lp.name)
        else:
            s = self.reshape(self.slice(prev, [0], [c], [1], lp.name), (c, 1, 1), lp.name)
        y = self.node("Mul", [src, s], lp.name)
        self.shape[y] = (c, h, w)
        self.emit(lp, self.activation(lp, y, self.option(lp, "activation", "linear")), (c, h, w))

    def l_sam(self, lp: LayerPlan) -> None:
        src = self.ref(lp, lp.params["from"][0])
        prev = self.image(self.use(lp, lp.index - 1, "input"), *lp.out_shape, lp.name)
        y = self.node("Mul", [prev, src], lp.name)
        self.shape[y] = lp.out_shape
        self.emit(lp, self.activation(lp, y, self.option(lp, "activation", "linear")), lp.out_shape)

    def l_crop(self, lp: LayerPlan) -> None:
        x = self.prev(lp)
        dh, dw = (lp.in_h - lp.out_h) // 2, (lp.in_w - lp.out_w) // 2
        y = self.slice(x, [dh, dw], [dh + lp.out_h, dw + lp.out_w], [2, 3], lp.name)
        if not int(self.num(lp, "noadjust", 0)):  # Darknet maps [0, 1] to [-1, 1] here
            y = self.node(
                "Sub",
                [
                    self.node("Mul", [y, self.scalar(lp.name, 2.0)], lp.name),
                    self.scalar(lp.name, 1.0),
                ],
                lp.name,
            )
        self.emit(lp, y, lp.out_shape)

    def l_implicit(self, lp: LayerPlan) -> None:
        w = self.weight(lp, "weights")
        c, h, ww = lp.out_shape
        w = self.node("Reshape", [w, self.ints(lp.name, [1, c, h, ww])], lp.name)
        n = self.node("Shape", ["input"], lp.name, start=0, end=1)
        shape = self.node("Concat", [n, self.ints(lp.name, [c, h, ww])], lp.name, axis=0)
        self.emit(lp, self.node("Expand", [w, shape], lp.name), lp.out_shape)

    def l_local(self, lp: LayerPlan) -> None:
        p = lp.params
        x = self.prev(lp)
        n, size, s = p["filters"], p["size"], p["stride"]
        pad = size // 2 if p["pad"] else 0
        c, oh, ow = lp.in_c, lp.out_h, lp.out_w
        b = lp.name
        if pad:
            x = self.node("Pad", [x, self.ints(b, [0, 0, pad, pad, 0, 0, pad, pad])], b)
        # one strided slice per kernel offset gives the im2col columns (c, ky, kx) per location
        cols = []
        for ky in range(size):
            for kx in range(size):
                cols.append(
                    self.slice(
                        x,
                        [ky, kx],
                        [ky + (oh - 1) * s + 1, kx + (ow - 1) * s + 1],
                        [2, 3],
                        b,
                        [s, s],
                    )
                )
        col = self.node("Concat", cols, b, axis=1) if len(cols) > 1 else cols[0]
        col = self.reshape(col, (size * size, c, oh * ow), b)  # (ky kx), c, loc
        col = self.node("Transpose", [col], b, perm=[0, 3, 2, 1])  # N, loc, c, (ky kx)
        col = self.reshape(col, (oh * ow, c * size * size), b)
        k = c * size * size
        w = self.node("Reshape", [self.weight(lp, "weights"), self.ints(b, [oh * ow, n, k])], b)
        y = self.node("Einsum", [col, w], b, equation="blk,lnk->bnl")
        y = self.reshape(y, (n, oh, ow), b)
        y = self.node("Add", [y, self.weight(lp, "biases")], b)
        self.shape[y] = lp.out_shape
        self.emit(lp, self.activation(lp, y), lp.out_shape)


def _numbers(text: str, kind: type) -> list[Any]:
    out = []
    for part in text.split("#", 1)[0].split(","):
        part = part.strip()
        if part:
            try:
                out.append(kind(float(part)) if kind is int else kind(part))
            except ValueError:
                continue
    return out


def _head_meta(b: _Builder, lp: LayerPlan, tensor: str) -> dict[str, Any]:
    """What a decoder of this detection layer needs, with Darknet's defaults filled in."""
    opts = _section_options(b.sections[lp.index])
    p = lp.params
    meta: dict[str, Any] = {"type": lp.type, "index": lp.index, "input": tensor}
    meta["input_shape"] = [lp.in_c, lp.in_h, lp.in_w]
    meta["classes"] = p.get("classes")
    meta["num"] = p.get("num")
    meta["anchors"] = _numbers(opts.get("anchors", ""), float)
    if lp.type in ("yolo", "Gaussian_yolo"):
        mask = _numbers(opts.get("mask", ""), int)
        meta["mask"] = mask or list(range(int(p.get("num") or 0)))
        meta["scale_x_y"] = float(opts.get("scale_x_y", 1) or 1)
        meta["new_coords"] = int(float(opts.get("new_coords", 0) or 0))
    elif lp.type == "region":
        meta["coords"] = p.get("coords")
        meta["softmax"] = int(float(opts.get("softmax", 0) or 0))
    elif lp.type == "detection":
        meta["side"] = p.get("side")
        meta["coords"] = int(float(opts.get("coords", 1) or 1))
    meta["options"] = opts  # every option as written in the cfg
    return meta


def _check_held(f: WeightsFile) -> None:
    for lp in f.plan.layers:
        if lp.arrays and not f.holds(lp):
            raise DwfError(
                f"layer {lp.index} ({lp.name}, {lp.type}) is not in the file (it ends"
                f" at byte {f.size:,}); an ONNX model needs every layer's weights: export the"
                f" layers it holds with dwf.export(..., upto={lp.index}) (dwf export --upto"
                f" {lp.index})",
                path=f.path,
            )


def _under(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` when it lies in it or below, else ``None``."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    if rel.startswith(os.pardir) or os.path.isabs(rel):
        return None
    return rel.replace(os.sep, "/")


def _stored_bytes(f: WeightsFile, lp: LayerPlan, spec: ArraySpec) -> bytes:
    view = f[lp.index][spec.name]
    if spec.stored_transposed(f.header.connected_transposed) and len(spec.shape) >= 2:
        view = view.reshape(spec.shape[0], -1).T
    return np.ascontiguousarray(view, dtype="<f4").tobytes()


def to_onnx(
    f: WeightsFile,
    dst: str | os.PathLike[str],
    *,
    embed: bool = False,
    data: str | os.PathLike[str] | None = None,
) -> str:
    """Write an ONNX model (opset 17) of ``f``'s network with ``f``'s weights; returns ``dst``.

    Weights: by default, when ``dst`` is in the folder of the weights file (or above it), each
    initializer is external data pointing at its span in the ``.weights`` file itself (nothing
    copied). Otherwise, or with ``embed=True``, the arrays are written inside the model (up to
    2 GB); with ``data=`` they are written to that file (which must lie in ``dst``'s folder).

    Raises:
        DwfError: a layer type without an ONNX form (the message names the layer and why), a
            file that does not hold every layer, a target that is the weights file, or a model
            too large to embed.
    """
    onnx = require("onnx", "onnx")
    target = os.fspath(dst)
    folder = os.path.dirname(os.path.abspath(target))
    if embed and data is not None:
        raise DwfError("pass embed=True or data=..., not both (dwf: --embed or --data)")
    for p in (target, os.fspath(data) if data is not None else None):
        if p is not None and os.path.exists(p) and os.path.samefile(p, f.path):
            raise DwfError("is the weights file being read; dwf never writes over it", path=p)
    f.check_unchanged()
    _check_held(f)

    b = _Builder(f, onnx)
    net = f.plan.net
    h = onnx.helper
    tp = onnx.TensorProto
    image = bool(net.channels and net.height and net.width)
    in_dims: list[Any] = ["N", net.channels, net.height, net.width] if image else ["N", net.inputs]
    if image:
        b.shape["input"] = (net.channels, net.height, net.width)
    else:  # [net] gives inputs= only: a flat (N, inputs) input, an (inputs, 1, 1) image inside
        b.first = b.reshape("input", (net.inputs, 1, 1), "input")
        b.shape[b.first] = (net.inputs, 1, 1)
    b.build()

    # outputs: what enters each detection layer, then the last layer's own output
    outputs: list[str] = []
    meta: dict[str, str] = {}
    for lp in f.plan.layers:
        if lp.type in DETECTION_TYPES:
            t = b.tensor[lp.index]
            if t not in outputs:
                outputs.append(t)
            meta[f"darknet.{lp.name}"] = json.dumps(_head_meta(b, lp, t))
    last = f.plan.layers[-1]
    if last.type not in DETECTION_TYPES:
        if last.index in b.blocked:
            raise b.fail(last, b.blocked[last.index])
        t = b.tensor[last.index]
        if t == b.first:
            t = b.node("Identity", [b.first], last.name, out=last.name)
            b.shape[t] = b.shape[b.first]
        if t not in outputs:
            outputs.append(t)
    meta["darknet.detection_layers"] = json.dumps(
        [lp.name for lp in f.plan.layers if lp.type in DETECTION_TYPES]
    )
    meta["darknet.dialect"] = f.plan.dialect
    meta["darknet.net"] = json.dumps(
        _section_options(tokenize(f.plan.text, strip_cr=b.dialect.strip_cr).sections[0])
    )
    meta["darknet.header"] = f.header.version

    # initializers
    total = sum(spec.nbytes for _, _, spec in b.inits)
    # ONNX refuses external data behind a symbolic link or outside the model's folder, so
    # the weights are pointed at by their real path, and embedded when that lies elsewhere.
    location = None
    if not embed and data is None:
        location = _under(os.path.realpath(f.path), os.path.realpath(folder))
    data_rel = None
    if data is not None:
        data_rel = _under(os.fspath(data), folder)
        if data_rel is None or os.path.abspath(os.fspath(data)) == os.path.abspath(target):
            raise DwfError(
                f"the data file must lie in the model's folder ({folder}) or"
                " below it (ONNX resolves external data relative to the model)",
                path=os.fspath(data),
            )
    if location is None and data_rel is None and total > EMBED_LIMIT:
        raise DwfError(
            f"{total:,} bytes of weights do not fit inside an ONNX model (2 GB); write"
            " it beside the weights file, or pass data=... (dwf: --data FILE)",
            path=target,
        )
    inits = []
    if data_rel is not None:
        data_path = os.fspath(data)  # type: ignore[arg-type]
        offset = 0
        with atomic_write(data_path, inputs=f.sources, others=(target,)) as fh:
            for name, lp, spec in b.inits:
                raw = _stored_bytes(f, lp, spec)
                fh.write(raw)
                inits.append(_external(onnx, name, b.stored_dims(spec), data_rel, offset, len(raw)))
                offset += len(raw)
    elif location is not None:
        for name, _lp, spec in b.inits:
            start, stop = spec.byte_span(f.header.size)
            inits.append(_external(onnx, name, b.stored_dims(spec), location, start, stop - start))
    else:
        for name, lp, spec in b.inits:
            t = tp()
            t.name, t.data_type = name, tp.FLOAT
            t.dims.extend(b.stored_dims(spec))
            t.raw_data = _stored_bytes(f, lp, spec)
            inits.append(t)

    shapes = {t: b.shape[t] for t in outputs}
    graph = h.make_graph(
        b.nodes,
        os.path.splitext(os.path.basename(f.plan.cfg_path or "darknet"))[0] or "darknet",
        [h.make_tensor_value_info("input", tp.FLOAT, in_dims)],
        [h.make_tensor_value_info(t, tp.FLOAT, ["N", *shapes[t]]) for t in outputs],
        initializer=inits + b.consts,
    )
    model = h.make_model(
        graph,
        opset_imports=[h.make_opsetid("", OPSET)],
        producer_name="dwf",
        ir_version=8,
    )
    h.set_model_props(model, meta)
    others = () if data is None else (data,)
    with atomic_write(target, inputs=f.sources, others=others) as fh:
        fh.write(model.SerializeToString())
    # By path, so that external data is resolved beside the model as every runtime does.
    try:
        onnx.checker.check_model(target)
    except onnx.checker.ValidationError as e:  # a dwf bug, not the user's: keep no bad model
        os.unlink(target)
        raise DwfError(f"the ONNX checker rejects the model dwf built: {e}", path=target) from None
    return target


def _external(
    onnx: Any, name: str, dims: Sequence[int], location: str, offset: int, length: int
) -> Any:
    t = onnx.TensorProto()
    t.name = name
    t.data_type = onnx.TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return t
