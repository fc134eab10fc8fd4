"""The PyTorch module of a network description: :class:`DarknetModule`, one
:class:`DarknetLayer` per Darknet layer, and :data:`OPS`, each operation of
:data:`dwf.format.ops.OPS` as one torch function.

This module imports torch; :func:`dwf.to_torch` (:mod:`dwf.tools.emit_torch`) imports it only
when called, so ``import dwf`` never loads torch. What Darknet computes is decided by the
description (:mod:`dwf.format.network`); here each operation is mapped to torch exactly as
``OpSpec.doc`` says — batch norm's two inference formulas and its training statistics, dropout
in training — and nothing of Darknet is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwf.errors import ArrayError, DwfError
from dwf.format.header import Header
from dwf.format.network import LayerNode, Network, describe
from dwf.format.ops import Node
from dwf.format.planner import Plan
from dwf.format.records import ArraySpec

Op = Callable[..., Tensor]
"""``op(node, layer, *inputs)``: the node's value; ``layer`` is the :class:`DarknetLayer` that
runs it (whether it is training)."""


# -- the operations: one function each ------------------------------------------------------------
def _pads2(x: Tensor, pads: Sequence[int], value: float) -> tuple[Tensor, tuple[int, int]]:
    """``x`` and the symmetric (y, x) padding torch's conv and pooling take for ``pads``
    (top, left, bottom, right): asymmetric pads are added to ``x`` instead."""
    top, left, bottom, right = pads
    if (top, left) == (bottom, right):
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom), value=value), (0, 0)


def _conv(n: Node, m: nn.Module, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    a = n.attrs
    x, pad = _pads2(x, a["pads"], 0.0)
    return F.conv2d(x, w, b, a["strides"], pad, a["dilations"], a["groups"])


def _max_pool(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    a = n.attrs
    (kh, kw), (top, left, bottom, right) = a["kernel"], a["pads"]
    if (top, left) == (bottom, right) and 2 * top <= kh and 2 * left <= kw:
        return F.max_pool2d(x, (kh, kw), a["strides"], (top, left))
    # torch pads at most half a window: pad by hand with what is never a maximum
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, (kh, kw), a["strides"])


def _avg_pool(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    a = n.attrs
    (kh, kw), (top, left, bottom, right) = a["kernel"], a["pads"]
    if (top, left) == (bottom, right) and 2 * top <= kh and 2 * left <= kw:
        return F.avg_pool2d(x, (kh, kw), a["strides"], (top, left), count_include_pad=False)
    # the window's sum over the count of its pixels inside the input
    pads = (left, right, top, bottom)
    inside = F.pad(torch.ones_like(x[:1, :1]), pads)
    total = F.avg_pool2d(F.pad(x, pads), (kh, kw), a["strides"])
    return total / F.avg_pool2d(inside, (kh, kw), a["strides"])


def _batch_norm(
    n: Node, m: nn.Module, x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor
) -> Tensor:
    a = n.attrs
    if m.training:
        # The batch's mean and biased variance, epsilon inside the root; the rolling statistics
        # move by momentum with the unbiased variance: torch's own training batch norm.
        return F.batch_norm(
            x, mean, var, scale, bias, True, float(a["momentum"]), float(a["train_epsilon"])
        )
    if not a["epsilon_outside_sqrt"]:
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(a["epsilon"]))
    shape = (-1,) + (1,) * (x.dim() - 2)
    den = (var.sqrt() + a["epsilon"]).view(shape)
    y: Tensor = (x - mean.view(shape)) / den * scale.view(shape) + bias.view(shape)
    return y


def _dropout(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    if not m.training:
        return x
    y: Tensor = F.dropout(x, float(n.attrs["probability"]), True)
    return y


def _reshape(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    return x.reshape([x.shape[0] if d is None else d for d in n.attrs["shape"]])


def _slice(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    a = n.attrs
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


def _pad(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    p, r = n.attrs["pads"], x.dim()
    pairs: list[int] = []
    for i in reversed(range(r)):  # torch lists the last axis first
        pairs += [p[i], p[r + i]]
    return F.pad(x, pairs, value=float(n.attrs["value"]))


def _broadcast_batch(n: Node, m: nn.Module, x: Tensor, network_input: Tensor) -> Tensor:
    return x.expand(network_input.shape[0], *x.shape)


def _resize_nearest(n: Node, m: nn.Module, x: Tensor) -> Tensor:
    sy, sx = n.attrs["scales"]
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, sy, w, sx).reshape(b, c, h * sy, w * sx)


def _gemm(n: Node, m: nn.Module, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    if n.attrs["trans_b"]:
        return F.linear(x, w, b)
    y = x @ w
    return y if b is None else y + b


def _unary(f: Callable[[Tensor], Tensor]) -> Op:
    return lambda n, m, x: f(x)


def _binary(f: Callable[[Tensor, Tensor], Tensor]) -> Op:
    return lambda n, m, a, b: f(a, b)


OPS: Mapping[str, Op] = {
    "identity": lambda n, m, x: x,
    "relu": _unary(torch.relu),
    "leaky_relu": lambda n, m, x: F.leaky_relu(x, float(n.attrs["alpha"])),
    "sigmoid": _unary(torch.sigmoid),
    "tanh": _unary(torch.tanh),
    "exp": _unary(torch.exp),
    "log": _unary(torch.log),
    "sqrt": _unary(torch.sqrt),
    "floor": _unary(torch.floor),
    "clip": lambda n, m, x: torch.clamp(x, n.attrs["min"], n.attrs["max"]),
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "div": _binary(torch.div),
    "pow": _binary(torch.pow),
    "fmod": _binary(torch.fmod),
    "less": _binary(torch.lt),
    "greater": _binary(torch.gt),
    "equal": _binary(torch.eq),
    "where": lambda n, m, c, a, b: torch.where(c, a, b),
    "reshape": _reshape,
    "transpose": lambda n, m, x: x.permute(*n.attrs["perm"]),
    "slice": _slice,
    "pad": _pad,
    "concat": lambda n, m, *xs: torch.cat(xs, n.attrs["axis"]),
    "broadcast_batch": _broadcast_batch,
    "reduce_sum": lambda n, m, x: x.sum(tuple(n.attrs["axes"]), bool(n.attrs["keepdims"])),
    "reduce_max": lambda n, m, x: torch.amax(
        x, tuple(n.attrs["axes"]), bool(n.attrs["keepdims"])
    ),
    "softmax": lambda n, m, x: torch.softmax(x, n.attrs["axis"]),
    "conv": _conv,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "global_avg_pool": lambda n, m, x: x.mean((2, 3), keepdim=True),
    "batch_norm": _batch_norm,
    "dropout": _dropout,
    "gemm": _gemm,
    "matmul": _binary(torch.matmul),
    "resize_nearest": _resize_nearest,
}


# -- the module ---------------------------------------------------------------------------------
Step = tuple[Op, Node, tuple[str, ...]]


def _steps(nodes: Sequence[Node], network_input: str) -> list[Step]:
    out: list[Step] = []
    for n in nodes:
        ins = (*n.inputs, network_input) if n.op == "broadcast_batch" else n.inputs
        out.append((OPS[n.op], n, ins))
    return out


class _Description:
    """What a module runs and was made from — the plan, the header, the network description and
    each layer's operations — which never changes: copies of a module (``copy.deepcopy``, as an
    EMA of the weights makes) share it, and unpickling describes the plan again."""

    def __init__(
        self,
        plan: Plan,
        header: Header,
        network: Network | None = None,
        decode: bool = False,
        letterbox: bool = False,
    ) -> None:
        self.plan = plan
        self.header = header
        if network is None:
            network = describe(plan, header, decode=decode, letterbox=letterbox)
        self.network = net = network
        self.input_steps = _steps(net.input_ops, net.input)
        self.steps = {lay.index: _steps(lay.ops, net.input) for lay in net.layers}
        self.decode_steps = _steps(net.decode_ops, net.input)  # with decode=True

    def __deepcopy__(self, memo: dict[int, Any]) -> _Description:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        d = self.network.decoding
        flags = (d is not None, bool(d and d.letterbox))
        return (_Description, (self.plan, self.header, None, *flags))


class DarknetLayer(nn.Module):
    """One Darknet layer: its operations, and the arrays the file stores for it (parameters;
    the batch-norm statistics and what Darknet does not train, buffers).

    ``forward`` takes the values it reads from outside (other layers' outputs, the network
    input, another layer's arrays for ``share_index``), in the order of :attr:`reads`, and
    returns the layer's output, so a forward hook on it sees what the layer computes.

    Attributes:
        node: the layer in the description (:class:`dwf.format.network.LayerNode`).
        reads: the names of the values ``forward`` takes.
    """

    def __init__(
        self, description: _Description, index: int, constants: Mapping[str, Tensor]
    ) -> None:
        super().__init__()
        self._description = description
        self.index = index
        node = self.node
        made = {n.output for n in node.ops}
        used = [i for _, _, ins in description.steps[index] for i in ins if i not in made]
        self._constants: dict[str, str] = {}
        for name in dict.fromkeys(u for u in used if u in constants):
            attr = f"constant_{len(self._constants)}"
            self.register_buffer(attr, constants[name].clone(), persistent=False)
            self._constants[name] = attr
        self._own: dict[str, str] = {}  # value name -> attribute, filled as arrays are added
        self.reads: tuple[str, ...] = ()
        self._used = tuple(dict.fromkeys(u for u in used if u not in self._constants))

    def add_array(self, spec: ArraySpec, value: Tensor, *, parameter: bool) -> None:
        """Hold one of the layer's arrays (stored layout) as a parameter or a buffer."""
        attr = spec.name
        if parameter:
            self.register_parameter(attr, nn.Parameter(value, requires_grad=True))
        else:
            self.register_buffer(attr, value)
        self._own[f"{self.node.name}.{spec.name}"] = attr

    @property
    def node(self) -> LayerNode:
        """The layer in the description."""
        return self._description.network.layers[self.index]

    def finish(self) -> None:
        """Fix what ``forward`` takes, once every array is added."""
        self.reads = tuple(u for u in self._used if u not in self._own)

    def forward(self, *values: Tensor) -> Tensor:
        env: dict[str, Tensor] = dict(zip(self.reads, values, strict=True))
        for name, attr in self._own.items():
            env[name] = getattr(self, attr)
        for name, attr in self._constants.items():
            env[name] = getattr(self, attr)
        for op, n, ins in self._description.steps[self.index]:
            env[n.output] = op(n, self, *[env[i] for i in ins])
        out = self.node.output
        assert out is not None
        return env[out]

    def extra_repr(self) -> str:
        n = self.node
        act = f", {n.activation}" if n.activation else ""
        return f"{n.index}, {n.type}{act}, out {n.shape[1:]}"


class DarknetModule(nn.Module):
    """A Darknet network as a ``torch.nn.Module``, made by :func:`dwf.to_torch`.

    ``forward(x)`` takes ``(N, c, h, w)`` float32 (``(N, inputs)`` for a ``[net]`` without an
    image size) and returns a tuple: the tensors entering each detection layer, then the last
    layer's output when it is not one, named by :attr:`output_names` — what the ONNX export
    returns. Made with ``decode=True``, it also returns Darknet's decoded ``boxes``,
    ``objectness`` and ``probs`` (:mod:`dwf.format.decoding`), and with ``letterbox=True``
    takes ``forward(x, image_size)``, each image's ``(width, height)`` as ``(N, 2)``.

    Each layer that computes or stores something is a :class:`DarknetLayer` child named
    after it (``module.conv_12``); its arrays are ``module.conv_12.weights`` and so on, so
    ``state_dict()`` keys are dwf's array names (``"conv_12.weights"``). Arrays keep the layout
    the file stores them in (``flipped=1`` weights transposed), so they write back byte for
    byte: ``dwf.save(path, module.plan, module)``.

    Attributes:
        plan: the :class:`dwf.Plan` it was built from.
        header: the header of the file it was read from (what :func:`dwf.save` writes by
            default: ``seen`` kept).
        network: the description it runs (:class:`dwf.format.network.Network`).
        output_names: the names of ``forward``'s outputs, in order.
        input_shape: the input ``forward`` takes, ``None`` for the batch.
        sources: the weights file and cfg it was read from (``dwf.save`` never writes over
            them).
    """

    def __init__(
        self,
        network: Network,
        plan: Plan,
        header: Header,
        arrays: Mapping[str, Tensor],
        *,
        sources: tuple[str | None, ...] = (),
    ) -> None:
        super().__init__()
        self._description = description = _Description(plan, header, network)
        self.output_names: tuple[str, ...] = network.outputs
        self.input_shape = network.input_shape
        self.sources = sources
        constants = {k: torch.from_numpy(np.array(v)) for k, v in network.constants.items()}
        layers: dict[int, DarknetLayer] = {}
        for lay in network.layers:
            if lay.ops or plan.layers[lay.index].arrays:
                layers[lay.index] = DarknetLayer(description, lay.index, constants)
                self.add_module(lay.name, layers[lay.index])
        # every array the file stores, in the stored layout; what the description does not
        # read (none today) is kept as a buffer, so it writes back too
        self._transposed: set[str] = set()
        owner: dict[str, tuple[str, str]] = {}
        for lp in plan.layers:
            for spec in lp.arrays:
                key = f"{lp.name}.{spec.name}"
                w = network.weights.get(key)
                if w is not None and w.transposed:
                    self._transposed.add(key)
                layers[lp.index].add_array(
                    spec, arrays[key], parameter=w is not None and w.trainable
                )
                owner[key] = (lp.name, spec.name)
        for layer in layers.values():
            layer.finish()
        self._owner = owner
        # the decoding (decode=True) runs after the layers, with its own constants
        decode_made = {n.output for n in network.decode_ops}
        decode_reads = {i for _, _, ins in description.decode_steps for i in ins} - decode_made
        self._decode_constants: dict[str, str] = {}
        for name in sorted(decode_reads & set(constants)):
            attr = f"decode_constant_{len(self._decode_constants)}"
            self.register_buffer(attr, constants[name].clone(), persistent=False)
            self._decode_constants[name] = attr
        # the order of the layers and the values each reads; a value is dropped after its
        # last reader, so inference keeps only what is still needed
        order = [layers[lay.index] for lay in network.layers if lay.ops]
        last: dict[str, int] = {}
        for i, layer in enumerate(order):
            for r in layer.reads:
                last[r] = i
        keep = set(self.output_names) | decode_reads
        made = {network.input, *(n.output for n in network.input_ops)}
        made.update(lay.output for lay in network.layers if lay.output is not None)
        self._order: list[tuple[str, tuple[str, ...], str, tuple[str, ...]]] = []
        for i, layer in enumerate(order):
            free = tuple(r for r in layer.reads if last[r] == i and r not in keep and r in made)
            out = layer.node.output
            assert out is not None
            self._order.append((layer.node.name, layer.reads, out, free))

    def forward(self, x: Tensor, image_size: Tensor | None = None) -> tuple[Tensor, ...]:
        want = self.input_shape[1:]
        if tuple(x.shape[1:]) != want or x.dim() != len(self.input_shape):
            raise DwfError(
                f"the network takes inputs of shape (N, {', '.join(map(str, want))}); got"
                f" {tuple(x.shape)}",
                path=self.plan.cfg_path,
            )
        env: dict[str, Tensor] = {self.network.input: x}
        for op, n, ins in self._description.input_steps:
            env[n.output] = op(n, self, *[env[i] for i in ins])
        modules = self._modules
        for name, reads, out, free in self._order:
            args = [env[r] if r in env else self._array(r) for r in reads]
            layer = modules[name]
            assert layer is not None
            env[out] = layer(*args)
            for r in free:
                del env[r]
        decoding = self.network.decoding
        if decoding is not None:
            if decoding.image_size is not None:
                if image_size is None or tuple(image_size.shape) != (x.shape[0], 2):
                    raise DwfError(
                        "the module corrects boxes for letterboxed images (letterbox=True):"
                        f" forward(x, image_size) takes each image's (width, height) as"
                        f" ({x.shape[0]}, 2) float32",
                        path=self.plan.cfg_path,
                    )
                env[decoding.image_size] = image_size.to(x.dtype)
            for name, attr in self._decode_constants.items():
                env[name] = getattr(self, attr)
            for op, n, ins in self._description.decode_steps:
                env[n.output] = op(n, self, *[env[i] for i in ins])
        return tuple(env[o] for o in self.output_names)

    @property
    def plan(self) -> Plan:
        """The plan the module was built from."""
        return self._description.plan

    @property
    def header(self) -> Header:
        """The header of the file it was read from (what :func:`dwf.save` writes by default)."""
        return self._description.header

    @property
    def network(self) -> Network:
        """The network description it runs."""
        return self._description.network

    def _array(self, key: str) -> Tensor:
        """An array of another layer (``share_index``), by its dwf name."""
        layer, attr = self._owner[key]
        value = getattr(self._modules[layer], attr)
        assert isinstance(value, Tensor)
        return value

    # -- back to Darknet: the arrays dwf.save writes --------------------------------------------
    def arrays_for(self, plan: Plan) -> Mapping[str, Any]:
        """The module's arrays for writing a file laid out by ``plan`` (:func:`dwf.save` calls
        this): by dwf name, in their logical shapes, each copied to the CPU (when elsewhere)
        only when asked for.

        Raises:
            ArrayError: the module does not hold exactly ``plan``'s arrays, naming the first
                difference (in file order: a missing array or one of another shape; then an
                array ``plan`` does not have).
        """
        state = self.state_dict()
        wanted: dict[str, tuple[int, ...]] = {}
        for lp in plan.layers:
            for spec in lp.arrays:
                key = f"{lp.name}.{spec.name}"
                wanted[key] = spec.shape
                where = (
                    f"the module does not fit the cfg: layer {lp.index} ({lp.name}, {lp.type})"
                    f" stores {spec.name} of shape {spec.shape}"
                )
                t = state.get(key)
                if t is None:
                    raise ArrayError(f"{where}; the module has no {key}", path=plan.cfg_path)
                if tuple(t.shape) != self._stored_shape(key, spec.shape):
                    raise ArrayError(
                        f"{where}; the module's {key} has shape {tuple(t.shape)}"
                        + (" (stored transposed)" if key in self._transposed else ""),
                        path=plan.cfg_path,
                    )
        extra = [k for k in state if k not in wanted]
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise ArrayError(
                f"the module does not fit the cfg: its {extra[0]} of shape"
                f" {tuple(state[extra[0]].shape)}{more} is no array of the cfg",
                path=plan.cfg_path,
            )
        return _ModuleArrays(state, wanted, self._transposed)

    def _stored_shape(self, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        if key not in self._transposed:
            return shape
        rows = shape[0]
        return (int(np.prod(shape)) // rows, rows)


class _ModuleArrays(Mapping[str, Any]):
    """A module's arrays by dwf name in their logical shapes, each made when asked for (a view
    of a CPU float32 tensor; a copy of one elsewhere or of another type)."""

    def __init__(
        self,
        state: Mapping[str, Tensor],
        shapes: Mapping[str, tuple[int, ...]],
        transposed: set[str],
    ) -> None:
        self._state = state
        self._shapes = shapes
        self._transposed = transposed

    def __getitem__(self, key: str) -> np.ndarray[Any, Any]:
        t = self._state[key].detach()
        if t.device.type != "cpu" or t.dtype != torch.float32:
            t = t.to("cpu", torch.float32)
        arr: np.ndarray[Any, Any] = t.numpy()
        if key in self._transposed:  # stored (rest, rows): the logical matrix is its transpose
            arr = arr.T.reshape(self._shapes[key])
        return arr

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)
