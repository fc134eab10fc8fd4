"""A small numpy model of Darknet's CPU forward pass, written from the spec and Darknet's
loops, independent of dwf's ONNX graph: every layer works on flat float64 buffers the way
Darknet's ``l.output`` arrays are laid out (batch 1, CHW), reading the inputs Darknet reads.

``forward(plan, arrays, x)`` returns each layer's output buffer, for layer-by-layer checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import dwf

Array = np.ndarray[Any, Any]
FLT_MAX = float(np.finfo(np.float32).max)


def _softplus(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log(np.exp(x) + 1)))


def _stair(x: Array) -> Array:
    n = np.floor(x)
    half = np.floor(x / 2)
    return np.where(np.fmod(n, 2) == 0, half, (x - n) + half)


def _sigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


# activations.c, one formula each
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "linear": lambda x: x,
    "logistic": _sigmoid,
    "loggy": lambda x: 2 * _sigmoid(x) - 1,
    "relu": lambda x: x * (x > 0),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "elu": lambda x: (x >= 0) * x + (x < 0) * (np.exp(np.minimum(x, 0)) - 1),
    "selu": lambda x: (
        (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (np.exp(np.minimum(x, 0)) - 1)
    ),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x**3)),
    "relie": lambda x: np.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: x * (x > 0) + 0.1 * x,
    "leaky": lambda x: np.where(x > 0, x, 0.1 * x),
    "revleaky": lambda x: np.where(x > 0, x, 0.1 * x),
    "tanh": lambda x: 2 / (1 + np.exp(np.minimum(-2 * x, 80))) - 1,
    "plse": lambda x: np.where(
        x < -4, 0.01 * (x + 4), np.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)
    ),
    "stair": _stair,
    "hardtan": lambda x: np.clip(x, -1, 1),
    "lhtan": lambda x: np.where(x < 0, 0.001 * x, np.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "hard_mish": lambda x: np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0)),
}


PJREDDIE_ACTIVATIONS = {
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


def activate(x: Array, name: str, c: int = 0, dialect: str = "alexeyab") -> Array:
    """Darknet's activation ``name`` on a CHW buffer of ``c`` channels; a name the dialect's
    get_activation does not know is relu there."""
    if dialect == "pjreddie" and name not in PJREDDIE_ACTIVATIONS:
        name = "relu"
    if name.startswith("normalize_channels"):
        v = x.reshape(c, -1)
        if name == "normalize_channels":
            pos = np.where(v > 0, v, 0)
            return (pos / (1e-4 + pos.sum(0))).reshape(-1)
        shift = v.max(0) if name.endswith("maxval") else 0
        e = np.exp(v - shift)
        return (e / (1e-4 + e.sum(0))).reshape(-1)
    return ACTIVATIONS.get(name, ACTIVATIONS["relu"])(x)


def batch_norm(y: Array, a: Mapping[str, Array], dialect: str, prefix: str = "") -> Array:
    """``y`` is ``(c, ...)``; Darknet's normalize_cpu then scale_bias (biases added later)."""
    shape = (-1,) + (1,) * (y.ndim - 1)
    mean = a[prefix + "rolling_mean"].astype(np.float64).reshape(shape)
    var = a[prefix + "rolling_variance"].astype(np.float64).reshape(shape)
    scales = a[prefix + "scales"].astype(np.float64).reshape(shape)
    if dialect == "pjreddie":
        y = (y - mean) / (np.sqrt(var) + 0.000001)
    else:
        y = (y - mean) / np.sqrt(var + 0.00001)
    return y * scales


def conv(
    x: Array, w: Array, sy: int, sx: int, pad: int, dil: int, groups: int, oh: int, ow: int
) -> Array:
    """im2col_cpu_ext + gemm: output (n, oh, ow); input pixels outside the image are 0."""
    _, h, wd = x.shape
    n, cg, k, _ = w.shape
    ng = n // groups
    out = np.zeros((n, oh, ow))
    for ky in range(k):
        rows = np.arange(oh) * sy - pad * dil + ky * dil
        for kx in range(k):
            cols = np.arange(ow) * sx - pad * dil + kx * dil
            ok = (rows[:, None] >= 0) & (rows[:, None] < h) & (cols >= 0) & (cols < wd)
            patch = x[:, np.clip(rows, 0, h - 1)][:, :, np.clip(cols, 0, wd - 1)] * ok
            for g in range(groups):
                out[g * ng : (g + 1) * ng] += np.einsum(
                    "oc,chw->ohw", w[g * ng : (g + 1) * ng, :, ky, kx], patch[g * cg : (g + 1) * cg]
                )
    return out


def pool(x: Array, size: int, sy: int, sx: int, pad: int, oh: int, ow: int, avg: bool) -> Array:
    """forward_maxpool_layer / forward_local_avgpool_layer: offset -pad/2, invalid skipped."""
    c, h, w = x.shape
    acc = np.zeros((c, oh, ow)) if avg else np.full((c, oh, ow), -FLT_MAX)
    count = np.zeros((oh, ow))
    for n in range(size):
        rows = -(pad // 2) + np.arange(oh) * sy + n
        for m in range(size):
            cols = -(pad // 2) + np.arange(ow) * sx + m
            ok = (rows[:, None] >= 0) & (rows[:, None] < h) & (cols >= 0) & (cols < w)
            v = x[:, np.clip(rows, 0, h - 1)][:, :, np.clip(cols, 0, w - 1)]
            if avg:
                acc += np.where(ok, v, 0)
                count += ok
            else:
                acc = np.where(ok, np.maximum(acc, v), acc)
    return acc / count if avg else acc


def reorg_cpu(x: Array, w: int, h: int, c: int, stride: int, forward: bool) -> Array:
    """Darknet's reorg_cpu index arithmetic, literally."""
    out = np.zeros(x.size)
    out_c = c // (stride * stride)
    k, j, i = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    in_index = i + w * (j + h * k)
    c2 = k % out_c
    offset = k // out_c
    w2 = i * stride + offset % stride
    h2 = j * stride + offset // stride
    out_index = w2 + w * stride * (h2 + h * stride * c2)
    if forward:
        out[out_index] = x[in_index]
    else:
        out[in_index] = x[out_index]
    return out


def forward(
    plan: dwf.Plan,
    arrays: Mapping[str, Mapping[str, Array]],
    x: Array,
    options: Mapping[int, Mapping[str, str]],
) -> list[Array]:
    """Every layer's flat output buffer for one input ``x`` (flat CHW).

    ``arrays``: layer name → array name → logical array; ``options``: layer index → the cfg
    section's options (for what the plan does not record).
    """
    outs: list[Array] = []
    dialect = plan.dialect
    for lp in plan.layers:
        inp = np.asarray(x if lp.index == 0 else outs[-1], dtype=np.float64)
        p = lp.params
        # share_index: the other layer's arrays
        a = arrays.get(plan.layers[p.get("share_index", lp.index)].name, {})
        opt = options[lp.index]

        def img(buf: Array, c: int, h: int, w: int) -> Array:
            return buf[: c * h * w].reshape(c, h, w)

        t = lp.type
        if t == "convolutional":
            xi = img(inp, lp.in_c, lp.in_h, lp.in_w)
            aa = p.get("antialiasing", 0)
            sy, sx = (1, 1) if aa else (p["stride_y"], p["stride_x"])  # the blur strides
            w64 = a["weights"].astype(np.float64)
            y = conv(xi, w64, sy, sx, p["padding"], p["dilation"], p["groups"], lp.out_h, lp.out_w)
            if p["batch_normalize"]:
                y = batch_norm(y, a, dialect)
            y = y + a["biases"].astype(np.float64).reshape(-1, 1, 1)
            out = activate(y.reshape(-1), p["activation"], lp.out_c, dialect)
            if p.get("antialiasing"):
                out = _blur(out, lp, plan)
        elif t == "connected":
            y = a["weights"].astype(np.float64) @ inp[: lp.inputs]
            if "scales" in a:
                y = batch_norm(y, a, dialect)
            out = activate(y + a["biases"], opt.get("activation", "logistic"), 0, dialect)
        elif t == "batchnorm":
            y = batch_norm(img(inp, lp.in_c, lp.in_h, lp.in_w), a, dialect)
            if "biases" in a:
                y = y + a["biases"].astype(np.float64).reshape(-1, 1, 1)
            out = y.reshape(-1)
        elif t in ("maxpool", "local_avgpool"):
            xi = img(inp, lp.in_c, lp.in_h, lp.in_w)
            if p.get("maxpool_depth"):
                oc = p["maxpool_depth"]
                groups = [xi[g::oc] for g in range(oc)]
                out = np.stack(
                    [g.max(0) if len(g) else np.full(xi.shape[1:], -FLT_MAX) for g in groups]
                ).reshape(-1)
            else:
                aa = p.get("antialiasing", 0)
                out = pool(
                    xi,
                    p["size"],
                    1 if aa else p["stride_y"],
                    1 if aa else p["stride_x"],
                    p["padding"],
                    lp.out_h,
                    lp.out_w,
                    t == "local_avgpool",
                ).reshape(-1)
                if p.get("antialiasing"):
                    out = _blur(out, lp, plan)
        elif t == "avgpool":
            out = img(inp, lp.in_c, lp.in_h, lp.in_w).mean(axis=(1, 2))
        elif t == "route":
            parts = []
            for i in p["layers"]:
                part = outs[i].size // p["groups"]
                parts.append(outs[i][part * p["group_id"] : part * (p["group_id"] + 1)])
            out = np.concatenate(parts)
        elif t == "shortcut":
            out = _shortcut(lp, inp, outs, a)
            out = activate(out, p["activation"], lp.out_c, dialect)
        elif t == "upsample":
            s = p["stride"]
            scale = float(opt.get("scale", 1))
            if s > 0:
                xi = img(inp, lp.in_c, lp.in_h, lp.in_w)
                out = (scale * xi.repeat(s, 1).repeat(s, 2)).reshape(-1)
            else:
                s = -s
                c, oh, ow = lp.out_shape
                big = inp[: c * oh * s * ow * s].reshape(c, oh, s, ow, s)
                out = (scale * big.sum(axis=(2, 4))).reshape(-1)
        elif t in ("reorg", "reorg3d"):
            w, h, c = (
                (lp.in_w, lp.in_h, lp.in_c) if t == "reorg" else (lp.out_w, lp.out_h, lp.out_c)
            )
            out = reorg_cpu(inp, w, h, c, p["stride"], bool(p["reverse"]))
        elif t == "softmax":
            groups = int(opt.get("groups", 1))
            temp = float(opt.get("temperature", 1))
            v = inp.reshape(groups, -1)
            e = np.exp(v / temp - v.max(1, keepdims=True) / temp)
            out = (e / e.sum(1, keepdims=True)).reshape(-1)
        elif t in ("dropout", "cost", "empty"):
            out = inp
        elif t == "activation":
            out = activate(inp, opt.get("activation", "linear"), lp.in_c, dialect)
        elif t == "scale_channels":
            src = outs[p["from"][0]]
            cs = lp.out_w * lp.out_h
            idx = np.arange(lp.outputs)
            # scale_wh: one scale per pixel, else one per channel
            scale = inp[idx % cs] if int(opt.get("scale_wh", 0)) else inp[idx // cs]
            out = activate(src * scale, opt.get("activation", "linear"))
        elif t == "sam":
            out = activate(outs[p["from"][0]] * inp[: lp.outputs], opt.get("activation", "linear"))
        elif t == "crop":
            xi = img(inp, lp.in_c, lp.in_h, lp.in_w)
            dh, dw = (lp.in_h - lp.out_h) // 2, (lp.in_w - lp.out_w) // 2
            y = xi[:, dh : dh + lp.out_h, dw : dw + lp.out_w]
            out = (y if int(opt.get("noadjust", 0)) else y * 2 - 1).reshape(-1)
        elif t == "implicit":
            out = a["weights"].astype(np.float64).reshape(-1)
        elif t == "normalization":
            out = _lrn(img(inp, lp.in_c, lp.in_h, lp.in_w), opt).reshape(-1)
        elif t == "l2norm":
            xi = img(inp, lp.in_c, lp.in_h, lp.in_w)
            out = (xi / np.sqrt((xi**2).sum(0))).reshape(-1)
        elif t == "local":
            out = _local(img(inp, lp.in_c, lp.in_h, lp.in_w), lp, a)
            out = activate(out, p["activation"], lp.out_c, dialect)
        elif t == "logistic":
            out = _sigmoid(inp)
        else:
            raise NotImplementedError(t)
        outs.append(np.asarray(out, dtype=np.float64).reshape(-1))
    return outs


def _shortcut(lp: Any, inp: Array, outs: list[Array], a: Mapping[str, Array]) -> Array:
    """shortcut_multilayer_cpu, element by element (vectorised over the index)."""
    p = lp.params
    froms = p["from"]
    n = len(froms)
    src_outputs = lp.outputs
    src_i = np.arange(src_outputs)
    w = a.get("weights")
    norm = p.get("weights_normalization", "none")
    if w is None:
        out = inp[:src_outputs].copy()
        for i in froms:
            add = outs[i]
            m = min(add.size, src_outputs)
            out[:m] += add[:m]
        return out
    wf = w.astype(np.float64).reshape(-1)
    nweights = wf.size
    layer_step = nweights // (n + 1)
    step = src_outputs // layer_step
    idx = [src_i // step + i * layer_step for i in range(n + 1)]
    ws = [wf[j] for j in idx]
    if norm == "softmax":
        mx = np.max(ws, axis=0)
        es = [np.exp(v - mx) for v in ws]
        total = 0.0001 + np.sum(es, axis=0)
        ws = [e / total for e in es]
    elif norm in ("relu", "avg_relu"):
        rs = [np.maximum(v, 0) for v in ws]
        total = 0.0001 + np.sum(rs, axis=0)
        ws = [r / total for r in rs]
    out = inp[:src_outputs] * ws[0]
    for k, i in enumerate(froms, start=1):
        add = outs[i]
        m = min(add.size, src_outputs)
        out[:m] += add[:m] * ws[k][:m]
    return out


def _lrn(x: Array, opt: Mapping[str, str]) -> Array:
    """forward_normalization_layer's running window, literally."""
    size = int(opt.get("size", 5))
    alpha = float(opt.get("alpha", 0.0001))
    beta = float(opt.get("beta", 0.75))
    kappa = float(opt.get("kappa", 1))
    c = x.shape[0]
    sq = x**2
    norms = np.zeros_like(x)
    norms[0] = kappa
    for k in range(size // 2):
        norms[0] += alpha * sq[k]
    for k in range(1, c):
        norms[k] = norms[k - 1]
        prev = k - (size - 1) // 2 - 1
        nxt = k + size // 2
        if prev >= 0:
            norms[k] -= alpha * sq[prev]
        if nxt < c:
            norms[k] += alpha * sq[nxt]
    with np.errstate(invalid="ignore"):  # Darknet's window can drive a norm negative: NaN
        return x * norms ** (-beta)


def _local(x: Array, lp: Any, a: Mapping[str, Array]) -> Array:
    """forward_local_layer: im2col (rows c, ky, kx), one gemm per output location."""
    p = lp.params
    size, s, n = p["size"], p["stride"], p["filters"]
    pad = size // 2 if p["pad"] else 0
    c, h, w = x.shape
    oh, ow = lp.out_h, lp.out_w
    weights = a["weights"].astype(np.float64).reshape(oh * ow, n, c * size * size)
    out = a["biases"].astype(np.float64).reshape(n, oh * ow).copy()
    for j in range(oh * ow):
        y0, x0 = (j // ow) * s - pad, (j % ow) * s - pad
        col = np.zeros((c, size, size))
        for ky in range(size):
            for kx in range(size):
                yy, xx = y0 + ky, x0 + kx
                if 0 <= yy < h and 0 <= xx < w:
                    col[:, ky, kx] = x[:, yy, xx]
        out[:, j] += weights[j] @ col.reshape(-1)
    return out.reshape(-1)


def _blur(out: Array, lp: Any, plan: dwf.Plan) -> Array:
    """The antialiasing blur Darknet runs after a layer: a fixed depthwise kernel, at the
    layer's real stride (the layer itself ran with stride 1)."""
    p = lp.params
    if p["antialiasing"] == 2:
        k, bp = np.full((2, 2), 0.25), 0
    else:
        k, bp = np.outer([1, 2, 1], [1, 2, 1]) / 16, 1
    nxt = plan.layers[lp.index + 1]
    kern = np.broadcast_to(k, (lp.out_c, 1, *k.shape))
    y = conv(out.reshape(lp.out_shape), kern, p["stride_y"], p["stride_x"], bp, 1, lp.out_c,
             nxt.in_h, nxt.in_w)  # fmt: skip
    return y.reshape(-1)
