"""The operations a network description is made of: the contract between the description of
what a Darknet network computes (:mod:`dwf.format.network`) and the emitters that turn it into
something that runs (ONNX in :mod:`dwf.tools.emit_onnx`, PyTorch in
:mod:`dwf.tools.torch_module`).

Darknet's semantics are decided once, when a layer is lowered to these operations (its
batch-norm formula, its maxpool padding, its reorg memory order, its flat shortcut arithmetic,
every activation's formula). The operations themselves are plain tensor arithmetic with one
meaning each, written down in :data:`OPS`, so an emitter maps each to its framework and knows
nothing of Darknet.

Values are named tensors of float32 (``bool`` for comparisons). A value is *batched* when it
depends on the network input: its first axis is the batch, written ``None`` in a
:data:`Shape`; weights and constants are not batched. Axes in attributes count the batch axis
(axis 1 of an image is its channels). Broadcasting is numpy's, aligned at the last axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import numpy as np

from dwf.errors import DwfError
from dwf.format.records import ArraySpec

Shape = tuple[int | None, ...]
"""A value's shape; ``None`` stands for the batch axis (always the first, when present)."""


@attrs.frozen
class OpSpec:
    """One operation an emitter implements.

    Attributes:
        name: the operation (``"conv"``).
        inputs: its inputs in order; ``"b?"`` may be absent (the node has fewer inputs),
            ``"*xs"`` takes one or more.
        attrs: the attribute names a node of it carries (all of them, always).
        doc: what it computes, exactly.
    """

    name: str
    inputs: tuple[str, ...]
    attrs: tuple[str, ...]
    doc: str


def _spec(name: str, inputs: str, attrs_: str, doc: str) -> OpSpec:
    return OpSpec(name, tuple(inputs.split()), tuple(attrs_.split()), " ".join(doc.split()))


OPS: Mapping[str, OpSpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            # element by element (numpy broadcasting)
            _spec("identity", "x", "", "x."),
            _spec("relu", "x", "", "max(x, 0)."),
            _spec("leaky_relu", "x", "alpha", "x if x > 0 else alpha·x."),
            _spec("sigmoid", "x", "", "1 / (1 + exp(-x))."),
            _spec("tanh", "x", "", "tanh(x)."),
            _spec("exp", "x", "", "exp(x)."),
            _spec("log", "x", "", "natural logarithm."),
            _spec("sqrt", "x", "", "square root."),
            _spec("floor", "x", "", "round toward -inf."),
            _spec("clip", "x", "min max", "x limited to [min, max]; a bound that is None is none."),
            _spec("add", "a b", "", "a + b."),
            _spec("sub", "a b", "", "a - b."),
            _spec("mul", "a b", "", "a · b."),
            _spec("div", "a b", "", "a / b."),
            _spec("pow", "a b", "", "a raised to b."),
            _spec("fmod", "a b", "", "C's fmod: a - b·trunc(a / b) (the sign of a)."),
            _spec("less", "a b", "", "a < b (bool)."),
            _spec("greater", "a b", "", "a > b (bool)."),
            _spec("equal", "a b", "", "a == b (bool)."),
            _spec("where", "cond a b", "", "a where cond, else b."),
            # shape
            _spec("reshape", "x", "shape", "x in C order with this shape (None: the batch)."),
            _spec("transpose", "x", "perm", "axes permuted: output axis i is input axis perm[i]."),
            _spec(
                "slice",
                "x",
                "starts ends axes steps",
                "x[starts:ends:steps] along axes (within bounds, positive steps).",
            ),
            _spec(
                "pad",
                "x",
                "pads value",
                "x with pads[i] elements before and pads[rank + i] after axis i, set to value.",
            ),
            _spec("concat", "*xs", "axis", "the inputs joined along axis."),
            _spec(
                "broadcast_batch",
                "x",
                "",
                "the unbatched x repeated over the batch: shape (N, *x.shape), N the batch of"
                " the network input.",
            ),
            # reductions
            _spec("reduce_sum", "x", "axes keepdims", "sum over axes (kept, size 1, if keepdims)."),
            _spec("reduce_max", "x", "axes keepdims", "max over axes (kept, size 1, if keepdims)."),
            _spec("softmax", "x", "axis", "exp(x - max) / sum(exp(x - max)) along axis."),
            # network layers
            _spec(
                "conv",
                "x w b?",
                "kernel strides dilations pads groups",
                "2-D cross-correlation of x (N, C, H, W) with w (M, C/groups, kh, kw), plus b"
                " (M) if given; strides and dilations (y, x); pads (top, left, bottom, right)"
                " of zeros; each output is floor((in + pads - dilation·(k - 1) - 1) / stride) + 1.",
            ),
            _spec(
                "max_pool",
                "x",
                "kernel strides pads",
                "max over each kh×kw window, (y, x) strides; pads (top, left, bottom, right)"
                " are positions outside the input, never the maximum (every window holds an"
                " input pixel); each output is floor((in + pads - k) / stride) + 1.",
            ),
            _spec(
                "avg_pool",
                "x",
                "kernel strides pads",
                "mean of the window's pixels that lie inside the input (pads are not counted);"
                " sizes as max_pool.",
            ),
            _spec("global_avg_pool", "x", "", "mean over axes 2 and 3, kept as size 1."),
            _spec(
                "batch_norm",
                "x scale bias mean var",
                "epsilon epsilon_outside_sqrt momentum train_epsilon",
                "per channel (axis 1): scale·(x - mean)/d + bias, d = sqrt(var + epsilon), or"
                " sqrt(var) + epsilon when epsilon_outside_sqrt (pjreddie's CPU build). In"
                " training (Darknet's GPU build with cuDNN, both forks), mean and var are the"
                " batch's: m, the mean over every axis but 1, and v, the mean squared deviation"
                " from it (divided by the count n), with d = sqrt(v + train_epsilon); then the"
                " rolling statistics, the values mean and var, move in place:"
                " mean = (1 - momentum)·mean + momentum·m, var = (1 - momentum)·var +"
                " momentum·v·n/(n - 1) (the unbiased variance).",
            ),
            _spec(
                "dropout",
                "x",
                "probability",
                "x. In training, each element is 0 with the given probability and x/(1 -"
                " probability) otherwise, drawn independently (Darknet's dropout layer; its"
                " GPU build's DropBlock, AlexeyAB's dropblock=1, is not described).",
            ),
            _spec(
                "gemm",
                "x w b?",
                "trans_b",
                "x (N, K) times w (M, K) transposed when trans_b, else w (K, M); plus b (M).",
            ),
            _spec("matmul", "a b", "", "numpy's matmul (leading axes broadcast)."),
            _spec(
                "resize_nearest",
                "x",
                "scales",
                "each pixel repeated scales (y, x) times along axes 2 and 3.",
            ),
        )
    }
)

_UNARY = {"identity", "relu", "leaky_relu", "sigmoid", "tanh", "exp", "log", "sqrt", "floor",
          "clip", "batch_norm", "softmax", "dropout"}  # fmt: skip
_BINARY = {"add", "sub", "mul", "div", "pow", "fmod", "less", "greater", "equal", "where"}


def _frozen(attrs_: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(attrs_))


@attrs.frozen
class Node:
    """One operation of the description.

    Attributes:
        op: an operation of :data:`OPS`.
        inputs: the names of the values it reads, in the order of its :class:`OpSpec`.
        output: the name of the value it makes.
        shape: the output's :data:`Shape`.
        attrs: every attribute of the op, read-only (ints, floats, bools, tuples, ``None``).
        layer: the Darknet layer (index) it is part of.
    """

    op: str
    inputs: tuple[str, ...]
    output: str
    shape: Shape
    attrs: Mapping[str, Any] = attrs.field(converter=_frozen)
    layer: int = -1

    def __reduce__(self) -> tuple[Any, ...]:
        # attrs is a read-only mapping proxy, which pickle cannot take
        return (Node, (self.op, self.inputs, self.output, self.shape, dict(self.attrs), self.layer))


@attrs.frozen
class Weight:
    """An array of the file as a value of the description.

    Attributes:
        name: the value's name, ``"<layer>.<array>"`` (``"conv_12.weights"``); the layer is the
            one that stores it (for ``share_index``, the owner, not the layer that reads it).
        layer: the index of the layer that stores it.
        array: the array's name in that layer (``"weights"``, ``"rolling_mean"``).
        spec: where it lies in the file and its logical shape
            (:class:`dwf.format.records.ArraySpec`).
        shape: the shape of the value: the array *as stored*, C order — ``spec.shape``, or
            ``(count // spec.shape[0], spec.shape[0])`` when ``transposed``.
        transposed: the bytes hold the transpose of the logical ``(shape[0], rest)`` matrix
            (``flipped=1`` convolutions; connected weights of legacy-header files); the nodes
            that read it transpose it.
        trainable: a parameter Darknet's training updates (``False`` for the batch-norm
            statistics ``rolling_mean`` and ``rolling_variance``, which it averages).
    """

    name: str
    layer: int
    array: str
    spec: ArraySpec
    shape: tuple[int, ...]
    transposed: bool
    trainable: bool

    def byte_span(self, header_size: int) -> tuple[int, int]:
        """``(start, stop)`` byte offsets in a file whose header is ``header_size`` bytes."""
        return self.spec.byte_span(header_size)


# -- shape inference ----------------------------------------------------------------------------
def broadcast(*shapes: Shape) -> Shape:
    """numpy's broadcast of shapes, ``None`` being the batch.

    Raises:
        DwfError: the shapes do not broadcast (a bug in the lowering, never the user's).
    """
    rank = max(len(s) for s in shapes)
    out: list[int | None] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise DwfError(f"internal: shapes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _window(size: int | None, k: int, stride: int, before: int, after: int, dil: int) -> int:
    assert size is not None
    return (size + before + after - dil * (k - 1) - 1) // stride + 1


def _conv_like(x: Shape, c: int | None, a: Mapping[str, Any], dilated: bool) -> Shape:
    kh, kw = a["kernel"]
    sy, sx = a["strides"]
    top, left, bottom, right = a["pads"]
    dy, dx = a["dilations"] if dilated else (1, 1)
    return (x[0], c, _window(x[2], kh, sy, top, bottom, dy), _window(x[3], kw, sx, left, right, dx))


def _reduced(x: Shape, a: Mapping[str, Any]) -> Shape:
    axes = {ax % len(x) for ax in a["axes"]}
    if a["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def _sliced(x: Shape, a: Mapping[str, Any]) -> Shape:
    out = list(x)
    for start, end, axis, step in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        size = x[axis]
        assert size is not None, "the batch axis is never sliced"
        out[axis] = len(range(*slice(start, end, step).indices(size)))
    return tuple(out)


def _reshaped(x: Shape, a: Mapping[str, Any]) -> Shape:
    shape: Shape = tuple(a["shape"])
    known = [d for d in x if d is not None]
    target = [d for d in shape if d is not None]
    if (None in x) != (None in shape) or math.prod(known) != math.prod(target):
        raise DwfError(f"internal: cannot reshape {x} to {shape}")
    return shape


def _matmul(a: Shape, b: Shape) -> Shape:
    return (*broadcast(a[:-2], b[:-2]), a[-2], b[-1])


def _concat(shapes: Sequence[Shape], axis: int) -> Shape:
    first = list(shapes[0])
    total = 0
    for s in shapes:
        if len(s) != len(first) or any(
            d != f for i, (d, f) in enumerate(zip(s, first, strict=True)) if i != axis
        ):
            raise DwfError(f"internal: cannot concatenate {list(shapes)} along {axis}")
        total += s[axis] or 0
    first[axis] = total
    return tuple(first)


_SHAPES: dict[str, Callable[[list[Shape], Mapping[str, Any]], Shape]] = {
    "reshape": lambda s, a: _reshaped(s[0], a),
    "transpose": lambda s, a: tuple(s[0][p] for p in a["perm"]),
    "slice": lambda s, a: _sliced(s[0], a),
    "pad": lambda s, a: tuple(
        None if d is None else d + a["pads"][i] + a["pads"][len(s[0]) + i]
        for i, d in enumerate(s[0])
    ),
    "concat": lambda s, a: _concat(s, a["axis"]),
    "broadcast_batch": lambda s, a: (None, *s[0]),
    "reduce_sum": lambda s, a: _reduced(s[0], a),
    "reduce_max": lambda s, a: _reduced(s[0], a),
    "conv": lambda s, a: _conv_like(s[0], s[1][0], a, True),
    "max_pool": lambda s, a: _conv_like(s[0], s[0][1], a, False),
    "avg_pool": lambda s, a: _conv_like(s[0], s[0][1], a, False),
    "global_avg_pool": lambda s, a: (*s[0][:2], 1, 1),
    "gemm": lambda s, a: (s[0][0], s[1][0] if a["trans_b"] else s[1][1]),
    "matmul": lambda s, a: _matmul(s[0], s[1]),
    "resize_nearest": lambda s, a: (
        *s[0][:2],
        s[0][2] * a["scales"][0],
        s[0][3] * a["scales"][1],
    ),
}


def infer_shape(op: str, shapes: list[Shape], attrs_: Mapping[str, Any]) -> Shape:
    """The shape of ``op``'s output for inputs of these shapes."""
    if op in _BINARY:
        return broadcast(*shapes)
    if op in _UNARY:
        return shapes[0]
    return _SHAPES[op](shapes, attrs_)


# -- building -------------------------------------------------------------------------------------
_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip": {"min": None, "max": None},
    "slice": {"steps": None},
    "conv": {"dilations": (1, 1), "groups": 1},
    "pad": {"value": 0.0},
    "reduce_sum": {"keepdims": True},
    "reduce_max": {"keepdims": True},
}


class GraphBuilder:
    """Collects the nodes and constants of a description, checking each node's inputs and
    inferring its shape. Values are named ``<base>/<n>`` unless given a name; ``base`` is the
    name of the layer being lowered."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {}
        self.constants: dict[str, np.ndarray[Any, Any]] = {}
        self.layer = -1
        self.base = "input"
        self._n = 0
        self._scalars: dict[float, str] = {}

    def declare(self, name: str, shape: Shape) -> str:
        """A value made outside the nodes: the network input, a weight."""
        self.shapes[name] = shape
        return name

    def shape(self, value: str) -> Shape:
        """The shape of ``value``."""
        return self.shapes[value]

    def _name(self, kind: str = "") -> str:
        self._n += 1
        return f"{self.base}/{kind}{self._n}"

    def const(self, value: Any) -> str:
        """A float32 constant (not batched)."""
        name = self._name("const/")
        arr = np.array(value, dtype=np.float32)
        arr.flags.writeable = False
        self.constants[name] = arr
        self.shapes[name] = arr.shape
        return name

    def scalar(self, value: float) -> str:
        """A float32 scalar constant, one per value in the whole description."""
        name = self._scalars.get(value)
        if name is None:
            name = self._scalars[value] = self.const(value)
        return name

    def op(self, op: str, *inputs: str, out: str | None = None, **attrs_: Any) -> str:
        """Add a node; returns the name of its output.

        Raises:
            DwfError: an unknown op, a missing attribute, or inputs whose shapes do not fit
                (a bug in a lowering, never the user's).
        """
        spec = OPS.get(op)
        if spec is None:
            raise DwfError(f"internal: no operation {op!r}")
        full = {**_DEFAULTS.get(op, {}), **attrs_}
        if op == "slice" and full["steps"] is None:
            full["steps"] = (1,) * len(full["axes"])
        if set(full) != set(spec.attrs):
            raise DwfError(f"internal: {op} takes {spec.attrs}, not {tuple(full)}")
        shapes = [self.shapes[i] for i in inputs]
        shape = infer_shape(op, shapes, full)
        name = out or self._name()
        self.nodes.append(Node(op, tuple(inputs), name, shape, full, self.layer))
        self.shapes[name] = shape
        return name

    # -- the few compositions every lowering uses --------------------------------------------------
    def reshape(self, x: str, dims: Iterable[int]) -> str:
        """``x`` (batched) with per-image shape ``dims``."""
        return self.op("reshape", x, shape=(None, *dims))

    def flat(self, x: str) -> str:
        """``x`` (batched) as ``(N, everything else)``."""
        return self.reshape(x, (math.prod(d for d in self.shapes[x][1:] if d is not None),))

    def image(self, x: str, c: int, h: int, w: int) -> str:
        """``x`` (batched) as ``(N, c, h, w)``, reshaped when it holds them in another shape."""
        if self.shapes[x] == (None, c, h, w):
            return x
        return self.reshape(x, (c, h, w))

    def slice(
        self,
        x: str,
        starts: Sequence[int],
        ends: Sequence[int],
        axes: Sequence[int],
        steps: Sequence[int] | None = None,
    ) -> str:
        return self.op(
            "slice",
            x,
            starts=tuple(starts),
            ends=tuple(ends),
            axes=tuple(axes),
            steps=None if steps is None else tuple(steps),
        )

    # -- a lowering that fails is undone -------------------------------------------------------
    def mark(self) -> tuple[int, int, int]:
        return (len(self.nodes), len(self.constants), len(self.shapes))

    def rollback(self, mark: tuple[int, int, int]) -> None:
        """Forget everything added since :meth:`mark`."""
        nodes, consts, shapes = mark
        del self.nodes[nodes:]
        for name in list(self.constants)[consts:]:
            del self.constants[name]
        for name in list(self.shapes)[shapes:]:
            del self.shapes[name]
        self._scalars = {v: n for v, n in self._scalars.items() if n in self.constants}
