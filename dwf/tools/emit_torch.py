"""PyTorch: an emitter of the network description (:mod:`dwf.format.network`) —
:func:`to_torch` makes the network a trainable ``torch.nn.Module`` with the file's weights, and
:func:`dwf.save` writes the module back as a ``.weights`` file.

What Darknet computes is decided in the description, once; the module runs its operations with
one torch function each (:data:`dwf.tools.torch_module.OPS`), so it computes what the ONNX
export computes and refuses the same layers with the same messages. The arrays are read in the
layout the file stores them, as parameters (a copy, by default) or as views of a private
copy-on-write map of the file (``copy=False``), so an unchanged module writes back byte for
byte. docs/pytorch.md is the user's page.

The module is named ``emit_torch`` so that it never shadows the ``torch`` package; torch itself
is imported (by :mod:`dwf.tools.torch_module`) only when :func:`to_torch` is called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from dwf.errors import DwfError
from dwf.extras import require
from dwf.format.dialects import Dialect
from dwf.format.network import Network, describe
from dwf.format.planner import Plan
from dwf.format.records import F32
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile
from dwf.tools.cut import first_layers, held_count
from dwf.tools.emit_onnx import stored_array

if TYPE_CHECKING:
    from dwf.tools.torch_module import DarknetModule

Array = np.ndarray[Any, Any]


def _check_held(f: WeightsFile) -> None:
    for lp in f.plan.layers:
        if lp.arrays and not f.holds(lp):
            raise DwfError(
                f"layer {lp.index} ({lp.name}, {lp.type}) is not in the file (it ends at byte"
                f" {f.size:,}); a PyTorch module needs every layer's weights: write the layers"
                f" it holds with a cfg that fits, dwf.cut(src, out, upto={lp.index},"
                f" cfg_out=...) (dwf cut WEIGHTS OUT {lp.index} --cfg-out OUT.cfg), and build"
                " the module from those",
                path=f.path,
            )


def _stored_shape(network: Network, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    w = network.weights.get(key)
    return shape if w is None else w.shape


def _copies(f: WeightsFile, network: Network) -> dict[str, Array]:
    """Every array, stored layout, each read with ``pread`` straight into its own new memory
    (nothing else is kept: the arrays are the only copy)."""
    out: dict[str, Array] = {}
    for lp in f.plan.layers:
        for spec in lp.arrays:
            key = f"{lp.name}.{spec.name}"
            shape = _stored_shape(network, key, spec.shape)
            if shape == spec.shape:
                arr = f.read_array(spec)  # fresh memory, the file's bytes as they are
            else:  # stored transposed (rare, small): the bytes in their own order
                arr = stored_array(f, network.weights[key])
            if not F32.isnative:  # torch takes native byte order only
                arr = arr.astype(np.float32)
            out[key] = arr.reshape(shape)
    return out


def _shared(f: WeightsFile, network: Network) -> dict[str, Array] | None:
    """Every array as a view of a private copy-on-write map of the file: nothing is read until
    used, and a write lands in private memory, never in the file. ``None`` where the map cannot
    be guarded against a change of the file (:meth:`dwf.WeightsFile.private_body`)."""
    body = f.private_body()
    if body is None:
        return None
    out: dict[str, Array] = {}
    for lp in f.plan.layers:
        for spec in lp.arrays:
            key = f"{lp.name}.{spec.name}"
            view = body[spec.offset : spec.offset + spec.count]
            out[key] = view.reshape(_stored_shape(network, key, spec.shape))
    return out


def _module(f: WeightsFile, *, copy: bool, decode: bool, letterbox: bool) -> DarknetModule:
    """The module of the whole network ``f`` holds (:func:`to_torch`)."""
    from dwf.tools.torch_module import DarknetModule

    _check_held(f)
    network = describe(f.plan, f.header, decode=decode, letterbox=letterbox)
    network.require("PyTorch")
    shared = None
    if not copy and f.backend == "mmap" and F32.isnative:
        shared = _shared(f, network)
    if shared is not None:
        arrays = shared
    else:
        with f.consistent():  # every array from one version of the file
            arrays = _copies(f, network)
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    sources = (f.path, f.plan.cfg_path) if f.backend != "remote" else (f.plan.cfg_path,)
    return DarknetModule(network, f.plan, f.header, tensors, sources=sources)


def to_torch(
    src: str | os.PathLike[str] | WeightsFile,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    copy: bool = True,
    decode: bool = False,
    letterbox: bool = False,
) -> DarknetModule:
    """The network of ``src`` as a ``torch.nn.Module`` with its weights (needs the ``torch`` extra).

    ``module(x)`` takes ``(N, c, h, w)`` float32 and returns a tuple of tensors named by
    ``module.output_names``: the tensors entering each detection layer, then the last layer's
    output when it is not one (what the ONNX export returns). The module comes in eval mode,
    where it computes what Darknet computes; ``module.train()`` switches batch norm to
    Darknet's training statistics and turns dropout on. Write it back with
    ``dwf.save(path, module.plan, module)``: byte for byte the source when nothing changed.
    A partial file (``yolov4.conv.137`` with the full cfg) makes the network of the layers it
    holds, up to its last one, as the ONNX export does (:func:`dwf.tools.cut.held_count`);
    ``module.plan`` is that network's.

    Args:
        src: the weights file, by path (a URL too) or open.
        cfg, dialect: how to open ``src`` when it is a path.
        copy: ``True`` (default): every array is a copy the module owns — trainable
            ``nn.Parameter``s, batch-norm statistics as buffers. ``False``, for inference: the
            tensors are views of a private copy-on-write map of the file, so nothing is read
            up front and the memory is the page cache's; parameters do not require gradients
            (a write, by an optimizer or ``train()``'s statistics, copies the page it touches,
            never reaching the file). The map is guarded as dwf's views are: before another
            process changes the file, it is moved to private memory. Where it cannot be
            guarded (a URL, ``backend="pread"``, a network file system, not Linux) or on a
            big-endian machine, the arrays are copied anyway.
        decode: the module also returns Darknet's decoded detections — ``boxes``
            ``(N, B, 4)``, ``objectness`` ``(N, B)``, ``probs`` ``(N, B, classes)``, before
            threshold and NMS, as the ONNX export's ``decode=True`` (docs/detect.md).
        letterbox: with ``decode``: the boxes are corrected for letterboxed images, from
            ``module(x, image_size)`` (each image's width and height, ``(N, 2)``).

    Raises:
        UnsupportedLayerError: a layer the description cannot compute (the ONNX export's
            message, naming PyTorch).
        DwfError: the file ends inside a layer (opened with ``strict=False``); the ``torch``
            extra is missing.
    """
    require("torch", "torch")
    if letterbox and not decode:
        raise DwfError("letterbox=True corrects decoded boxes: pass decode=True too")
    with opened(src, cfg, dialect=dialect) as f:
        f.check_unchanged()
        upto = held_count(f, decode=decode)  # a partial file: the layers it holds, as ONNX does
        if upto is None:
            module = _module(f, copy=copy, decode=decode, letterbox=letterbox)
        else:
            with first_layers(f, upto) as part:
                module = _module(part, copy=copy, decode=decode, letterbox=letterbox)
    if not copy:
        module.requires_grad_(False)
    return module.eval()
