"""ONNX: an emitter of the network description (:mod:`dwf.format.network`).

What Darknet computes is decided there, once; here each operation of
:data:`dwf.format.ops.OPS` becomes ONNX nodes (opset 17), and the model is written. Weights
are not copied by default: every initializer is ONNX *external data* pointing at its byte span
in the ``.weights`` file itself, in the layout the file stores it (the description transposes
what is stored transposed with a node). With ``embed=True``, or when the model cannot point at
the file (written elsewhere, a URL, a name that is not UTF-8), the arrays are read with the
file's streaming reads (never through the memory map) into the model; with ``data=`` they are
streamed into a data file beside the model.

The model and its data file are staged together and published together, after the ONNX
checker has accepted the model: a failure leaves every destination as it was.

The module is named ``emit_onnx`` so that it never shadows the ``onnx`` package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dwf.errors import DwfError
from dwf.extras import require
from dwf.format.network import Network, describe
from dwf.format.ops import Node, Weight
from dwf.io.reader import WeightsFile
from dwf.io.writer import atomic_writes

OPSET = 17
# ONNX keeps a model in one protobuf message, which cannot exceed 2 GiB.
EMBED_LIMIT = 2**31 - 2**24


class _Emitter:
    """Turns the description's nodes into ONNX nodes and constant initializers."""

    def __init__(self, onnx: Any, network: Network) -> None:
        self.onnx = onnx
        self.h = onnx.helper
        self.network = network
        self.nodes: list[Any] = []
        self.consts: list[Any] = []
        self._n = 0

    def node(self, op: str, inputs: Sequence[str], out: str, **attrs: Any) -> str:
        self.nodes.append(self.h.make_node(op, list(inputs), [out], name=out + ":" + op, **attrs))
        return out

    def temp(self, base: str) -> str:
        self._n += 1
        return f"{base}/onnx{self._n}"

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.temp(base)
        self.consts.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, base: str, values: Sequence[int]) -> str:
        return self.const(base, list(values), np.int64)

    def emit(self, n: Node) -> None:
        _OPS[n.op](self, n)


_Emit = Callable[[_Emitter, Node], None]


def _same(op: str, *keys: str, **fixed: Any) -> _Emit:
    """An operation that is one ONNX node of the same inputs, with the node's attributes
    ``keys`` as ONNX attributes of the same names (tuples as lists)."""

    def emit(e: _Emitter, n: Node) -> None:
        extra = {k: list(v) if isinstance(v, tuple) else v for k, v in n.attrs.items() if k in keys}
        e.node(op, n.inputs, n.output, **fixed, **extra)

    return emit


def _leaky(e: _Emitter, n: Node) -> None:
    e.node("LeakyRelu", n.inputs, n.output, alpha=float(n.attrs["alpha"]))


def _clip(e: _Emitter, n: Node) -> None:
    lo, hi = n.attrs["min"], n.attrs["max"]
    ins = [
        n.inputs[0],
        "" if lo is None else e.const(n.output, lo),
        "" if hi is None else e.const(n.output, hi),
    ]
    e.node("Clip", ins, n.output)


def _reshape(e: _Emitter, n: Node) -> None:
    dims = [0 if d is None else d for d in n.attrs["shape"]]  # 0: keep the batch
    e.node("Reshape", [n.inputs[0], e.ints(n.output, dims)], n.output)


def _slice(e: _Emitter, n: Node) -> None:
    a = n.attrs
    ins = [n.inputs[0], *(e.ints(n.output, a[k]) for k in ("starts", "ends", "axes", "steps"))]
    e.node("Slice", ins, n.output)


def _pad(e: _Emitter, n: Node) -> None:
    ins = [n.inputs[0], e.ints(n.output, n.attrs["pads"]), e.const(n.output, n.attrs["value"])]
    e.node("Pad", ins, n.output, mode="constant")


def _broadcast_batch(e: _Emitter, n: Node) -> None:
    net = e.network
    batch = e.node("Shape", [net.input], e.temp(n.output), start=0, end=1)
    dims = [d for d in n.shape[1:] if d is not None]
    shape = e.node("Concat", [batch, e.ints(n.output, dims)], e.temp(n.output), axis=0)
    e.node("Expand", [n.inputs[0], shape], n.output)


def _reduce_sum(e: _Emitter, n: Node) -> None:
    axes = e.ints(n.output, n.attrs["axes"])
    e.node("ReduceSum", [n.inputs[0], axes], n.output, keepdims=int(n.attrs["keepdims"]))


def _reduce_max(e: _Emitter, n: Node) -> None:  # axes are an attribute until opset 18
    a = n.attrs
    e.node("ReduceMax", n.inputs, n.output, axes=list(a["axes"]), keepdims=int(a["keepdims"]))


def _conv(e: _Emitter, n: Node) -> None:
    a = n.attrs
    e.node(
        "Conv",
        n.inputs,
        n.output,
        kernel_shape=list(a["kernel"]),
        strides=list(a["strides"]),
        dilations=list(a["dilations"]),
        pads=list(a["pads"]),
        group=a["groups"],
    )


def _pool(op: str, **fixed: Any) -> _Emit:
    def emit(e: _Emitter, n: Node) -> None:
        a = n.attrs
        kw = {"kernel_shape": list(a["kernel"]), "strides": list(a["strides"])}
        e.node(op, n.inputs, n.output, pads=list(a["pads"]), **kw, **fixed)

    return emit


def _batch_norm(e: _Emitter, n: Node) -> None:
    x, scale, bias, mean, var = n.inputs
    a = n.attrs
    if not a["epsilon_outside_sqrt"]:  # (x - mean) / sqrt(var + eps): ONNX's own formula
        e.node("BatchNormalization", n.inputs, n.output, epsilon=float(a["epsilon"]))
        return
    # (x - mean) / (sqrt(var) + eps), per channel (axis 1)
    out = n.output
    c = n.shape[1]
    assert c is not None
    shape = e.ints(out, [c, 1, 1] if len(n.shape) == 4 else [c])

    def per_c(t: str) -> str:
        return e.node("Reshape", [t, shape], e.temp(out))

    root = e.node("Sqrt", [var], e.temp(out))
    den = e.node("Add", [root, e.const(out, a["epsilon"])], e.temp(out))
    y = e.node("Div", [e.node("Sub", [x, per_c(mean)], e.temp(out)), per_c(den)], e.temp(out))
    e.node("Add", [e.node("Mul", [y, per_c(scale)], e.temp(out)), per_c(bias)], out)


def _gemm(e: _Emitter, n: Node) -> None:
    e.node("Gemm", n.inputs, n.output, transB=int(n.attrs["trans_b"]))


def _resize(e: _Emitter, n: Node) -> None:
    sy, sx = n.attrs["scales"]
    scales = e.const(n.output, [1, 1, sy, sx])
    e.node(
        "Resize",
        [n.inputs[0], "", scales],
        n.output,
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


_OPS: dict[str, _Emit] = {
    "identity": _same("Identity"),
    "relu": _same("Relu"),
    "leaky_relu": _leaky,
    "sigmoid": _same("Sigmoid"),
    "tanh": _same("Tanh"),
    "exp": _same("Exp"),
    "log": _same("Log"),
    "sqrt": _same("Sqrt"),
    "floor": _same("Floor"),
    "clip": _clip,
    "add": _same("Add"),
    "sub": _same("Sub"),
    "mul": _same("Mul"),
    "div": _same("Div"),
    "pow": _same("Pow"),
    "fmod": _same("Mod", fmod=1),
    "less": _same("Less"),
    "greater": _same("Greater"),
    "equal": _same("Equal"),
    "where": _same("Where"),
    "reshape": _reshape,
    "transpose": _same("Transpose", "perm"),
    "slice": _slice,
    "pad": _pad,
    "concat": _same("Concat", "axis"),
    "broadcast_batch": _broadcast_batch,
    "reduce_sum": _reduce_sum,
    "reduce_max": _reduce_max,
    "softmax": _same("Softmax", "axis"),
    "conv": _conv,
    "max_pool": _pool("MaxPool"),
    "avg_pool": _pool("AveragePool", count_include_pad=0),
    "global_avg_pool": _same("GlobalAveragePool"),
    "batch_norm": _batch_norm,
    "dropout": _same("Identity"),  # an inference graph
    "gemm": _gemm,
    "matmul": _same("MatMul"),
    "resize_nearest": _resize,
}


# -- the model file ------------------------------------------------------------------------------
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


def _utf8(text: str) -> bool:
    """Whether ``text`` can be written into a model (ONNX strings are UTF-8; a file name that is
    not UTF-8 reaches Python with surrogates, which cannot be)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(name: str) -> str:
    """A file name as model text: undecodable bytes replaced."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(message: Any, name: str, length: int) -> bytes:
    """The protobuf key and length of field ``name`` of ``message`` (length-delimited)."""
    number = message.DESCRIPTOR.fields_by_name[name].number
    return _varint(number << 3 | 2) + _varint(length)


def _embedded_head(onnx: Any, name: str, dims: Sequence[int], nbytes: int) -> bytes:
    """What precedes an array's bytes when it is appended to a serialized model as one more
    initializer. Protobuf merges a message field that occurs twice (a repeated field inside it
    grows), so a model followed by ``graph { initializer { name, dims, raw_data } }`` is the
    model with that initializer: the arrays stream from the weights file into the model file
    without the model (or any array) ever being whole in memory."""
    tensor: bytes = _tensor(onnx, name, dims).SerializeToString()
    tensor += _field(onnx.TensorProto, "raw_data", nbytes)
    size = len(tensor) + nbytes
    init = _field(onnx.GraphProto, "initializer", size)
    return _field(onnx.ModelProto, "graph", len(init) + size) + init + tensor


def _tensor(onnx: Any, name: str, dims: Sequence[int]) -> Any:
    t = onnx.TensorProto()
    t.name, t.data_type = name, onnx.TensorProto.FLOAT
    t.dims.extend(dims)
    return t


def _external(
    onnx: Any, name: str, dims: Sequence[int], location: str, offset: int, length: int
) -> Any:
    t = _tensor(onnx, name, dims)
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return t


def _metadata(f: WeightsFile, network: Network) -> dict[str, str]:
    """What a decoder needs, built from the description: one ``darknet.<layer>`` entry per
    detection layer, the detection layers in order, the ``[net]`` options, the dialect, the
    header version and the plan's warnings; with the decoding, ``darknet.decode`` (its rows per
    layer and how Darknet lists them, the NMS the detector runs)."""
    meta = {f"darknet.{d.name}": json.dumps(d.to_dict()) for d in network.detections}
    if network.decoding is not None:
        meta["darknet.decode"] = json.dumps(network.decoding.to_dict())
    meta["darknet.detection_layers"] = json.dumps([d.name for d in network.detections])
    meta["darknet.dialect"] = network.dialect
    meta["darknet.net"] = json.dumps(dict(network.net_options))
    meta["darknet.header"] = f.header.version
    meta["darknet.warnings"] = json.dumps(list(network.warnings))
    return meta


def _check(onnx: Any, model: Any, target: str, appended: list[tuple[str, Any]]) -> None:
    """Run the ONNX checker on the model before anything is written. External initializers,
    and the ``appended`` ones (embedded as the model is written), are checked as graph inputs
    of their type and shape: the checker would look for an external file relative to the
    current directory, and the data file is not published yet (where they point is dwf's own
    rule: the real weights file in the model's folder, or the data file)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    float_ = onnx.TensorProto.FLOAT
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    inline = [t for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    del graph.initializer[:]
    graph.initializer.extend(inline)
    graph.input.extend(
        onnx.helper.make_tensor_value_info(name, float_, list(dims))
        for name, dims in [*((t.name, t.dims) for t in external), *appended]
    )
    try:
        onnx.checker.check_model(probe.SerializeToString())
    except onnx.checker.ValidationError as e:  # a dwf bug, not the user's: write nothing
        raise DwfError(f"the ONNX checker rejects the model dwf built: {e}", path=target) from None


def _graph(onnx: Any, f: WeightsFile, network: Network, inits: list[Any]) -> Any:
    """The model of ``network`` with these initializers (the arrays, however they are held),
    its metadata set; not yet checked."""
    e = _Emitter(onnx, network)
    for n in network.nodes():
        e.emit(n)
    for name, value in network.constants.items():
        e.consts.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    h = onnx.helper
    tp = onnx.TensorProto

    def info(name: str) -> Any:
        return h.make_tensor_value_info(name, tp.FLOAT, ["N", *network.shape(name)[1:]])

    graph = h.make_graph(
        e.nodes,
        _text(os.path.splitext(os.path.basename(f.plan.cfg_path or "darknet"))[0]) or "darknet",
        [info(name) for name in network.inputs],
        [info(t) for t in network.outputs],
        initializer=inits + e.consts,
    )
    model = h.make_model(
        graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="dwf", ir_version=8
    )
    h.set_model_props(model, _metadata(f, network))
    return model


def describe_for(f: WeightsFile, decode: bool, letterbox: bool) -> Network:
    """The description of ``f``'s network the export writes (refused layers raise)."""
    if letterbox and not decode:
        raise DwfError("letterbox=True corrects decoded boxes: pass decode=True too (--decode)")
    network = describe(f.plan, f.header, decode=decode, letterbox=letterbox)
    network.require("ONNX")
    return network


def stored_array(f: WeightsFile, w: Weight) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A new array holding ``w``'s bytes as stored (its :attr:`Weight.shape`), read with the
    file's streaming reads (never the map, so a file changed meanwhile is an error, not a
    signal)."""
    out = np.empty(w.spec.count, np.float32)
    done = 0
    for chunk in f.iter_array_chunks(w.spec):
        out[done : done + chunk.size] = chunk
        done += chunk.size
    return out.reshape(w.shape)


def in_memory(f: WeightsFile, network: Network) -> tuple[bytes, dict[str, Any]]:
    """The model of ``network`` for a runtime in this process: the serialized model, whose
    initializers are declared external, and the arrays to hand the runtime for them (read from
    ``f`` as stored), by name. Nothing is written."""
    onnx = require("onnx", "onnx")
    _check_held(f)
    f.check_unchanged()
    weights = list(network.weights.values())
    inits = [_external(onnx, w.name, w.shape, "(in memory)", 0, w.spec.nbytes) for w in weights]
    model = _graph(onnx, f, network, inits)
    arrays = {w.name: stored_array(f, w) for w in weights}
    f.check_unchanged()
    return model.SerializeToString(), arrays


def to_onnx(
    f: WeightsFile,
    dst: str | os.PathLike[str],
    *,
    embed: bool = False,
    data: str | os.PathLike[str] | None = None,
    decode: bool = False,
    letterbox: bool = False,
) -> str:
    """Write an ONNX model (opset 17) of ``f``'s network with ``f``'s weights; returns ``dst``.

    Weights: by default, when ``dst`` is in the folder of the weights file (or above it), each
    initializer is external data pointing at its span in the ``.weights`` file itself (nothing
    copied). Otherwise (a model written elsewhere, a weights file behind a URL or with a name
    that is not UTF-8), or with ``embed=True``, the arrays are written inside the model (up to
    2 GB); with ``data=`` they are written to that file (which must lie in ``dst``'s folder).
    The model and the data file are published together, once the ONNX checker accepts the
    model.

    With ``decode=True``, the model also outputs Darknet's decoded detections, ``boxes``
    ``(N, B, 4)``, ``objectness`` ``(N, B)`` and ``probs`` ``(N, B, classes)``, before
    threshold and NMS (:mod:`dwf.format.decoding`; ``darknet.decode`` metadata); with
    ``letterbox=True`` too, a second input ``image_size`` ``(N, 2)`` (each image's width and
    height) corrects them for a letterboxed input.

    Raises:
        UnsupportedLayerError: a layer the description cannot compute (the message names the
            cfg line, the layer and why).
        DwfError: a file that does not hold every layer, a target that is an input, a model
            too large to embed, a data file name ONNX cannot record; ``decode`` for a network
            without detection layers.
        FileChangedError: the weights file changed while its arrays were read.
    """
    onnx = require("onnx", "onnx")
    target = os.fspath(dst)
    folder = os.path.dirname(os.path.abspath(target))
    data_path = None if data is None else os.fspath(data)
    if embed and data_path is not None:
        raise DwfError("pass embed=True or data=..., not both (dwf: --embed or --data)")
    if f.backend != "remote":
        for p in (target, data_path):
            if p is not None and os.path.exists(p) and os.path.samefile(p, f.path):
                raise DwfError("is the weights file being read; dwf never writes over it", path=p)
    f.check_unchanged()
    _check_held(f)
    network = describe_for(f, decode, letterbox)

    # Where the arrays go. ONNX refuses external data behind a symbolic link or outside the
    # model's folder, so the weights are pointed at by their real path, and embedded when that
    # lies elsewhere (or on a server, or under a name ONNX cannot record).
    weights = list(network.weights.values())
    total = sum(w.spec.nbytes for w in weights)
    location = None
    if not embed and data_path is None and f.backend != "remote":
        location = _under(os.path.realpath(f.path), os.path.realpath(folder))
        if location is not None and not _utf8(location):
            location = None
    data_rel = None
    if data_path is not None:
        data_rel = _under(data_path, folder)
        if data_rel is None or os.path.abspath(data_path) == os.path.abspath(target):
            raise DwfError(
                f"the data file must lie in the model's folder ({folder}) or"
                " below it (ONNX resolves external data relative to the model)",
                path=data_path,
            )
        if not _utf8(data_rel):
            raise DwfError(
                "the data file's name is not valid UTF-8, which an ONNX model cannot record;"
                " choose another name",
                path=data_path,
            )
    if location is None and data_rel is None and total > EMBED_LIMIT:
        raise DwfError(
            f"{total:,} bytes of weights do not fit inside an ONNX model (2 GB); write"
            " it beside the weights file, or pass data=... (dwf: --data FILE)",
            path=target,
        )
    embedded = location is None and data_rel is None
    inits = []
    offset = 0
    for w in weights:
        if data_rel is not None:
            inits.append(_external(onnx, w.name, w.shape, data_rel, offset, w.spec.nbytes))
            offset += w.spec.nbytes
        elif location is not None:
            start, stop = w.byte_span(f.header.size)
            inits.append(_external(onnx, w.name, w.shape, location, start, stop - start))

    model = _graph(onnx, f, network, inits)
    # Embedded arrays are appended to the model as it is written; the checker sees them as
    # graph inputs of their type and shape, as it sees external ones.
    _check(onnx, model, target, [(w.name, w.shape) for w in weights] if embedded else [])

    raw = model.SerializeToString()
    paths = [target] if data_path is None else [target, data_path]
    # one version of the source, checked after the last piece too (left before publishing)
    with atomic_writes(paths, inputs=f.sources) as files, f.consistent():
        files[0].write(raw)
        if data_path is not None or embedded:
            fh = files[-1]
            for w in weights:
                if embedded:
                    fh.write(_embedded_head(onnx, w.name, w.shape, w.spec.nbytes))
                # the file's streaming reads: bounded buffers, never the map
                for chunk in f.iter_array_chunks(w.spec):
                    fh.write(chunk.data.cast("B"))
    return target
