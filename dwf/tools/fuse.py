"""Fold batch norm into the convolutions: :func:`fuse` writes a weights file and its cfg that
compute the same function without batch norm; :func:`fuse_layer` gives one layer's folded arrays.

Everything streams layer by layer, so a multi-GB file never has to fit in memory, and the two
files are published together or not at all; the source is never modified.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import numpy as np

from dwf.errors import DwfError
from dwf.format.dialects import Dialect
from dwf.format.planner import Plan
from dwf.format.records import F32, ArraySpec, LayerPlan
from dwf.io.opening import open_weights
from dwf.io.reader import WeightsFile
from dwf.io.streaming import STREAM_FLOATS
from dwf.io.writer import atomic_writes

# AlexeyAB's fuse_conv_batchnorm (and its forward pass) divide by sqrt(variance + 1e-5).
DARKNET_BN_EPS = 1e-5

Array = np.ndarray[Any, Any]


def _bn_fold(
    lp: LayerPlan, arrays: Mapping[str, Array], eps: float, prefix: str = ""
) -> tuple[Array, Array]:
    w = np.asarray(arrays[prefix + "weights"], dtype=np.float64)
    b = np.asarray(arrays[prefix + "biases"], dtype=np.float64)
    if prefix + "scales" not in arrays:
        if lp.params.get("batch_normalize"):
            raise DwfError(
                f"layer {lp.index} ({lp.name}, {lp.type}) has batch_normalize but its batch-norm"
                " arrays are not in the file (dontloadscales); there is nothing to fold"
            )
        return w.astype(np.float32), b.astype(np.float32)
    with np.errstate(all="ignore"):  # a broken (negative) variance gives NaN, as in Darknet
        scale = np.asarray(arrays[prefix + "scales"], dtype=np.float64) / np.sqrt(
            np.asarray(arrays[prefix + "rolling_variance"], dtype=np.float64) + eps
        )
    mean = np.asarray(arrays[prefix + "rolling_mean"], dtype=np.float64)
    bshape = (-1,) + (1,) * (w.ndim - 1)
    with np.errstate(all="ignore"):
        fw = w * scale.reshape(bshape)
        fb = b - mean * scale
    return fw.astype(np.float32), fb.astype(np.float32)


FOLDABLE = ("convolutional", "connected")


def fuse_layer(
    f: WeightsFile, key: int | str, eps: float | None = DARKNET_BN_EPS
) -> tuple[Array, Array]:
    """``(weights, biases)`` of a conv/connected layer with its batch norm folded in.

    ``w' = w · scale / sqrt(var + eps)`` per output channel and
    ``b' = bias − mean · scale / sqrt(var + eps)``, computed in float64 and returned as new
    float32 arrays. A layer without batch norm returns copies of its weights and biases.

    Raises:
        DwfError: the layer is not convolutional/connected, or its BN arrays are not stored.
    """
    eps = DARKNET_BN_EPS if eps is None else eps
    layer = f[key]
    lp = layer.plan
    if lp.type not in FOLDABLE or not lp.arrays:
        raise DwfError(
            f"layer {lp.index} ({lp.name}, {lp.type}) cannot be fused: only"
            " convolutional and connected layers that store weights have batch norm to fold",
            path=f.path,
        )
    # read into owned memory, not through the map, as one version of the layer
    with f.consistent():
        arrays = {a.name: f.read_array(a) for a in lp.arrays}
    return _bn_fold(lp, arrays, eps)


def fused_arrays(
    f: WeightsFile, eps: float | None = DARKNET_BN_EPS
) -> Iterator[tuple[str, Array]]:
    """``("conv_0.weights", folded), ("conv_0.biases", folded), …`` for every foldable layer
    the file holds, one layer at a time (bounded memory)."""
    with f.consistent():  # checked once more after the last layer
        for lp in f.plan.layers:
            if lp.type in FOLDABLE and lp.arrays and f.holds(lp):
                w, b = fuse_layer(f, lp.index, eps)
                yield f"{lp.name}.weights", w
                yield f"{lp.name}.biases", b


def unfused_cfg_text(plan: Plan) -> str:
    """The cfg text with batch norm switched off in every conv/connected section that has it.

    Only the lines Darknet reads are changed (the first ``batch_normalize=``/``cbn=`` of each
    such section), so everything else — comments, layout, line numbers — stays as it was.
    """
    lines = plan.text.split("\n")
    for lp in plan.layers:
        if lp.type not in FOLDABLE:
            continue
        sec = plan.section(lp)
        for key in ("batch_normalize", "cbn"):
            opt = sec.get(key)
            if opt is not None:
                lines[opt.line - 1] = f"{key}=0"
    return "\n".join(lines)


def _bn_scale(
    f: WeightsFile, lp: LayerPlan, eps: float
) -> tuple[Array | None, Array | None]:
    """``(scale, mean)`` of a layer's batch norm in float64, read with ``pread`` (small arrays:
    one value per filter), or ``(None, None)`` without batch norm."""
    if lp.array("scales") is None:
        if lp.params.get("batch_normalize"):
            raise DwfError(
                f"layer {lp.index} ({lp.name}, {lp.type}) has batch_normalize but its batch-norm"
                " arrays are not in the file (dontloadscales); there is nothing to fold"
            )
        return None, None

    def read(name: str) -> Array:
        spec = lp.array(name)
        assert spec is not None  # a layer with scales has the other three too (the planner)
        return f.read_array(spec).astype(np.float64)

    with np.errstate(all="ignore"):  # a broken (negative) variance gives NaN, as in Darknet
        scale = read("scales") / np.sqrt(read("rolling_variance") + eps)
    return scale, read("rolling_mean")


def _write_folded(
    f: WeightsFile, lp: LayerPlan, new: LayerPlan, eps: float, out: BinaryIO
) -> None:
    """Write one conv/connected layer of the fused file, its weights streamed through a bounded
    buffer and scaled per filter as they pass (in float64, as :func:`fuse_layer` computes)."""
    scale, mean = _bn_scale(f, lp, eps)
    for a in new.arrays:
        old = lp.array(a.name)
        if old is None or old.shape != a.shape:  # pragma: no cover - the planner guarantees it
            raise DwfError(f"layer {lp.index} ({lp.name}): no array {a.name} to fuse", path=f.path)
        if scale is None or mean is None:
            _copy_array(f, old, out)
        elif a.name == "biases":
            with np.errstate(all="ignore"):
                b = f.read_array(old).astype(np.float64) - mean * scale
            out.write(b.astype(F32).data)
        elif a.name == "weights":
            n = old.shape[0] if old.shape else 0
            if not n or not old.count:
                continue
            width = old.count // n
            if old.stored_transposed(f.header.connected_transposed):
                # stored (width, n): filter r is stored column r
                chunks = f.iter_array_chunks(old, max(STREAM_FLOATS, n), align=n)
                for c in chunks:
                    with np.errstate(all="ignore"):
                        folded = c.reshape(-1, n).astype(np.float64) * scale
                    out.write(folded.astype(F32).data)
                continue
            row = 0
            for c in f.iter_array_chunks(old, max(STREAM_FLOATS, width), align=width):
                block = c.reshape(-1, width)
                k = block.shape[0]
                with np.errstate(all="ignore"):
                    folded = block.astype(np.float64) * scale[row : row + k, None]
                out.write(folded.astype(F32).data)
                row += k
        else:
            _copy_array(f, old, out)


def _copy_array(f: WeightsFile, spec: ArraySpec, out: BinaryIO) -> None:
    """Copy an array's stored bytes unchanged, through a bounded buffer."""
    for c in f.iter_array_chunks(spec):
        out.write(c.data.cast("B"))


def fuse(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    dst_cfg: str | os.PathLike[str],
    *,
    cfg: str | os.PathLike[str] | None = None,
    dialect: str | Dialect = "alexeyab",
    eps: float = DARKNET_BN_EPS,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """Write a weights file (and its cfg) with batch norm folded into every conv/connected layer.

    The new cfg is the old one with ``batch_normalize=0`` in those layers, so Darknet (or dwf)
    reads the new file as a network without batch norm that computes the same function.
    The source is read with ``pread`` through bounded buffers, layer by layer (never through
    the map): memory does not grow with the file, and a source truncated meanwhile gives
    :class:`dwf.FileChangedError`. Returns ``(dst, dst_cfg)``.
    """
    with open_weights(src, cfg, dialect=dialect, storage_options=storage_options) as f:
        new_text = unfused_cfg_text(f.plan)
        new_plan = Plan.from_text(new_text, dialect=f.plan.dialect, path=os.fspath(dst_cfg))
        target = os.fspath(dst)
        # One commit point: both files are staged, and published together only when both are
        # complete and on disk; any failure (a full disk at the last flush, a source that
        # changed) leaves both as they were. The weights come first: a failed write is
        # reported against them.
        with (
            atomic_writes([target, dst_cfg], inputs=f.sources) as (fh, cfg_fh),
            f.consistent(),  # left before anything is published
        ):
            cfg_fh.write(new_text.encode("utf-8"))
            fh.write(f.header.encode())
            for new in new_plan.layers:
                if not new.arrays:
                    continue
                lp = f[new.index].plan  # raises LayerNotInFileError past a partial end
                if new.type in FOLDABLE:
                    _write_folded(f, lp, new, eps, fh)
                    continue
                for a in new.arrays:
                    old = lp.array(a.name)
                    if old is None or old.shape != a.shape:  # pragma: no cover - same cfg
                        raise DwfError(f"layer {lp.index} ({lp.name}): no {a.name}", path=f.path)
                    _copy_array(f, old, fh)
    return target, os.fspath(dst_cfg)
