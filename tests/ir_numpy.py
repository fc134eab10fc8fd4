"""A second emitter of the network description, in numpy, written against the emitter contract
only (``dwf.format.ops.OPS`` and ``dwf.format.network``'s docstring): it knows nothing of
Darknet. The tests run it beside the ONNX export to show that the description carries
everything an emitter needs (the PyTorch module, ``dwf.tools.torch_module``, is written the
same way).

``run(network, arrays, x)`` returns every value of the description, by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dwf.format.network import Network
from dwf.format.ops import Node

Array = np.ndarray[Any, Any]


def _windows(
    x: Array,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dil: tuple[int, int],
    out: tuple[int, int],
) -> list[tuple[int, int, Array]]:
    """(ky, kx, x[..., ky·dy :: sy, kx·dx :: sx] cut to the output size) for each offset."""
    (kh, kw), (sy, sx), (dy, dx), (oh, ow) = kernel, strides, dil, out
    return [
        (
            ky,
            kx,
            x[
                ...,
                ky * dy : ky * dy + sy * (oh - 1) + 1 : sy,
                kx * dx : kx * dx + sx * (ow - 1) + 1 : sx,
            ],
        )
        for ky in range(kh)
        for kx in range(kw)
    ]


def _pad2(x: Array, pads: tuple[int, ...], value: float) -> Array:
    t, left, b, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=value)


def _conv(n: Node, x: Array, w: Array, b: Array | None = None) -> Array:
    a = n.attrs
    g = a["groups"]
    xp = _pad2(x, a["pads"], 0.0)
    out_hw = (n.shape[2], n.shape[3])
    m, cg = w.shape[0], w.shape[1]
    mg = m // g
    y = np.zeros((x.shape[0], m, *out_hw))
    for k in range(g):
        xs = xp[:, k * cg : (k + 1) * cg]
        for ky, kx, patch in _windows(xs, a["kernel"], a["strides"], a["dilations"], out_hw):
            y[:, k * mg : (k + 1) * mg] += np.einsum(
                "nchw,mc->nmhw", patch, w[k * mg : (k + 1) * mg, :, ky, kx]
            )
    if b is not None:
        y += b.reshape(-1, 1, 1)
    return y


def _max_pool(n: Node, x: Array) -> Array:
    a = n.attrs
    xp = _pad2(x, a["pads"], -np.inf)
    out_hw = (n.shape[2], n.shape[3])
    parts = [p for _, _, p in _windows(xp, a["kernel"], a["strides"], (1, 1), out_hw)]
    return np.max(parts, axis=0)


def _avg_pool(n: Node, x: Array) -> Array:
    a = n.attrs
    out_hw = (n.shape[2], n.shape[3])
    total = _pad2(x, a["pads"], 0.0)
    count = _pad2(np.ones_like(x), a["pads"], 0.0)
    s = sum(p for _, _, p in _windows(total, a["kernel"], a["strides"], (1, 1), out_hw))
    c = sum(p for _, _, p in _windows(count, a["kernel"], a["strides"], (1, 1), out_hw))
    return s / c


def _batch_norm(n: Node, x: Array, scale: Array, bias: Array, mean: Array, var: Array) -> Array:
    a = n.attrs
    shape = (-1, 1, 1) if x.ndim == 4 else (-1,)
    eps = a["epsilon"]
    d = np.sqrt(var) + eps if a["epsilon_outside_sqrt"] else np.sqrt(var + eps)
    return (x - mean.reshape(shape)) / d.reshape(shape) * scale.reshape(shape) + bias.reshape(shape)


def _slice(n: Node, x: Array) -> Array:
    a = n.attrs
    index: list[slice] = [slice(None)] * x.ndim
    for start, end, axis, step in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


def _pad(n: Node, x: Array) -> Array:
    p, r = n.attrs["pads"], x.ndim
    return np.pad(x, [(p[i], p[r + i]) for i in range(r)], constant_values=n.attrs["value"])


def _softmax(n: Node, x: Array) -> Array:
    e = np.exp(x - x.max(axis=n.attrs["axis"], keepdims=True))
    return e / e.sum(axis=n.attrs["axis"], keepdims=True)


def _reduce(f: Callable[..., Array]) -> Callable[..., Array]:
    return lambda n, x: f(x, axis=tuple(n.attrs["axes"]), keepdims=bool(n.attrs["keepdims"]))


OPS: dict[str, Callable[..., Array]] = {
    "identity": lambda n, x: x,
    "relu": lambda n, x: np.maximum(x, 0),
    "leaky_relu": lambda n, x: np.where(x > 0, x, n.attrs["alpha"] * x),
    "sigmoid": lambda n, x: 1 / (1 + np.exp(-x)),
    "tanh": lambda n, x: np.tanh(x),
    "exp": lambda n, x: np.exp(x),
    "log": lambda n, x: np.log(x),
    "sqrt": lambda n, x: np.sqrt(x),
    "floor": lambda n, x: np.floor(x),
    "clip": lambda n, x: np.clip(x, n.attrs["min"], n.attrs["max"]),
    "add": lambda n, a, b: a + b,
    "sub": lambda n, a, b: a - b,
    "mul": lambda n, a, b: a * b,
    "div": lambda n, a, b: a / b,
    "pow": lambda n, a, b: np.power(a, b),
    "fmod": lambda n, a, b: np.fmod(a, b),
    "less": lambda n, a, b: a < b,
    "greater": lambda n, a, b: a > b,
    "equal": lambda n, a, b: a == b,
    "where": lambda n, c, a, b: np.where(c, a, b),
    "reshape": lambda n, x: x.reshape([x.shape[0] if d is None else d for d in n.attrs["shape"]]),
    "transpose": lambda n, x: x.transpose(n.attrs["perm"]),
    "slice": _slice,
    "pad": _pad,
    "concat": lambda n, *xs: np.concatenate(xs, axis=n.attrs["axis"]),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "softmax": _softmax,
    "conv": _conv,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "global_avg_pool": lambda n, x: x.mean(axis=(2, 3), keepdims=True),
    "batch_norm": _batch_norm,
    "dropout": lambda n, x: x,  # inference
    "gemm": lambda n, x, w, b=0.0: x @ (w.T if n.attrs["trans_b"] else w) + b,
    "matmul": lambda n, a, b: a @ b,
    "resize_nearest": lambda n, x: x.repeat(n.attrs["scales"][0], 2).repeat(
        n.attrs["scales"][1], 3
    ),
}


def run(
    network: Network, arrays: Mapping[str, Array], x: Array, **inputs: Array
) -> dict[str, Array]:
    """Every value of ``network`` for input ``x`` (float64), the weights given by their dwf
    names (``"conv_0.weights"``) in their *logical* shapes, as ``dwf.open`` shows them; any
    other input of ``network.inputs`` (``image_size``) by its name."""
    env: dict[str, Array] = {network.input: np.asarray(x, np.float64)}
    env.update((k, np.asarray(v, np.float64)) for k, v in inputs.items())
    for name, w in network.weights.items():
        value = np.asarray(arrays[name], np.float64)
        if w.transposed:  # the description reads the bytes as stored
            value = value.reshape(value.shape[0], -1).T
        env[name] = value.reshape(w.shape)
    env.update((k, np.asarray(v, np.float64)) for k, v in network.constants.items())
    batch = x.shape[0]
    for n in network.nodes():
        if n.op == "broadcast_batch":
            v = env[n.inputs[0]]
            env[n.output] = np.broadcast_to(v, (batch, *v.shape))
            continue
        env[n.output] = OPS[n.op](n, *(env[i] for i in n.inputs))
    return env
