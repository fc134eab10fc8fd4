"""Edit weights files: cut a backbone, replace arrays, fold batch norm into convolutions.

Everything streams from the source's map layer by layer and is written atomically, so a
multi-GB file never has to fit in memory and the source is never modified — also when the
destination is the source's own path (the new file is renamed over it; the old inode, and any
map of it, stay intact).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from dwf.dialects import Dialect, get_dialect
from dwf.errors import ArrayError, DwfError
from dwf.header import Header
from dwf.planner import Plan
from dwf.reader import WeightsFile, open_weights
from dwf.records import LayerPlan
from dwf.writer import _as_array, _check_header, _stored_bytes, atomic_write

# AlexeyAB's fuse_conv_batchnorm (and its forward pass) divide by sqrt(variance + 1e-5).
DARKNET_BN_EPS = 1e-5

Array = np.ndarray[Any, Any]


def partial_header(dialect: str | Dialect = "alexeyab") -> Header:
    """The header ``darknet partial`` writes: the dialect writer's version, ``seen`` reset to 0.

    AlexeyAB (and hank-ai) write 0.2.5 with a 64-bit ``seen``; pjreddie writes 0.2.0 with a
    64-bit ``size_t``.
    """
    d = get_dialect(dialect)
    return Header(0, 2, 0 if d.name == "pjreddie" else 5, 0, 20)


def _flatten(replace: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (replace or {}).items():
        if isinstance(value, Mapping):
            for name, v in value.items():
                out[f"{key}.{name}"] = v
        else:
            out[str(key)] = value
    return out


def _check_upto(plan: Plan, upto: int | None) -> int:
    n = len(plan.layers)
    if upto is None:
        return n
    if isinstance(upto, bool) or not isinstance(upto, int) or not 0 <= upto <= n:
        raise DwfError(f"upto={upto!r} must be a layer count between 0 and {n}")
    return upto


def write_layers(
    f: WeightsFile,
    dst: str | os.PathLike[str],
    *,
    upto: int | None = None,
    replace: Mapping[str, Any] | None = None,
    header: Header | None = None,
) -> str:
    """Write ``f``'s layers ``0..upto-1`` to ``dst``, with some arrays replaced.

    This is :meth:`dwf.WeightsFile.save`; see there.
    """
    f._check_open()
    upto = _check_upto(f.plan, upto)
    header = header or f.header
    _check_header(header, f.plan.dialect)
    layers = f.plan.layers[:upto]
    wanted = _flatten(replace)
    known = {f"{lp.name}.{a.name}": (lp, a) for lp in layers for a in lp.arrays}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        later = [k for k in unknown if k.split(".", 1)[0] in f.plan.names()]
        hint = " (past upto)" if later and len(later) == len(unknown) else ""
        raise ArrayError(
            f"replace names arrays not in the written layers{hint}: {', '.join(unknown[:5])};"
            " names are '<layer>.<array>' such as 'conv_0.weights'"
        )
    checked = {k: _as_array(*known[k], v) for k, v in wanted.items()}
    for lp in layers:
        if lp.arrays and not any(f"{lp.name}.{a.name}" in checked for a in lp.arrays):
            f._require(lp)  # fail before writing anything if the source lacks a layer
    target = os.fspath(dst)
    with atomic_write(target) as fh:
        fh.write(header.encode())
        for lp in layers:
            for a in lp.arrays:
                key = f"{lp.name}.{a.name}"
                arr = checked[key] if key in checked else f[lp.index][a.name]
                fh.write(_stored_bytes(a, arr, header))
    return target


def cut(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upto: int,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    header: Header | None = None,
) -> str:
    """Keep layers ``0..upto-1``, as ``darknet partial cfg weights dst upto`` does.

    The result has the header Darknet's ``partial`` writes (:func:`partial_header`: the
    dialect's version, ``seen`` = 0) unless ``header`` is given, and exactly the source's bytes
    for the kept layers. ``yolov3.cfg`` with ``upto=74`` gives the 162,482,580-byte
    ``darknet53.conv.74``. Returns ``dst``.

    Raises:
        LayerNotInFileError: the source does not hold all the layers to keep.
    """
    with open_weights(src, cfg, dialect=dialect, strict=False) as f:
        return write_layers(f, dst, upto=upto, header=header or partial_header(f.plan.dialect))


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


def fuse_layer(f: WeightsFile, key: int | str, eps: float = DARKNET_BN_EPS) -> tuple[Array, Array]:
    """``(weights, biases)`` of a conv/connected layer with its batch norm folded in.

    ``w' = w · scale / sqrt(var + eps)`` per output channel and
    ``b' = bias − mean · scale / sqrt(var + eps)``, computed in float64 and returned as new
    float32 arrays. A layer without batch norm returns copies of its weights and biases.

    Raises:
        DwfError: the layer is not convolutional/connected, or its BN arrays are not stored.
    """
    layer = f[key]
    lp = layer.plan
    if lp.type not in FOLDABLE or not lp.arrays:
        raise DwfError(
            f"{f.path}: layer {lp.index} ({lp.name}, {lp.type}) cannot be fused: only"
            " convolutional and connected layers that store weights have batch norm to fold"
        )
    return _bn_fold(lp, layer.arrays, eps)


def fused_arrays(f: WeightsFile, eps: float = DARKNET_BN_EPS) -> Iterator[tuple[str, Array]]:
    """``("conv_0.weights", folded), ("conv_0.biases", folded), …`` for every foldable layer
    the file holds, one layer at a time (bounded memory)."""
    for lp in f.plan.layers:
        if lp.type in FOLDABLE and lp.arrays and f.holds(lp):
            w, b = fuse_layer(f, lp.index, eps)
            yield f"{lp.name}.weights", w
            yield f"{lp.name}.biases", b


def unfused_cfg_text(plan: Plan, text: str) -> str:
    """The cfg text with batch norm switched off in every conv/connected section that has it.

    Only the lines Darknet reads are changed (the first ``batch_normalize=``/``cbn=`` of each
    such section), so everything else — comments, layout, line numbers — stays as it was.
    """
    from dwf.cfg import tokenize

    lines = text.split("\n")
    doc = tokenize(text, path=plan.cfg_path, strip_cr=get_dialect(plan.dialect).strip_cr)
    for lp, sec in zip(plan.layers, doc.sections[1:], strict=True):
        if lp.type not in FOLDABLE:
            continue
        for key in ("batch_normalize", "cbn"):
            opt = sec.get(key)
            if opt is not None:
                lines[opt.line - 1] = f"{key}=0"
    return "\n".join(lines)


def fuse(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    dst_cfg: str | os.PathLike[str],
    *,
    cfg: str | os.PathLike[str] | None = None,
    dialect: str | Dialect = "alexeyab",
    eps: float = DARKNET_BN_EPS,
) -> tuple[str, str]:
    """Write a weights file (and its cfg) with batch norm folded into every conv/connected layer.

    The new cfg is the old one with ``batch_normalize=0`` in those layers, so Darknet (or dwf)
    reads the new file as a network without batch norm that computes the same function.
    Returns ``(dst, dst_cfg)``.
    """
    with open_weights(src, cfg, dialect=dialect) as f:
        new_text = unfused_cfg_text(f.plan, f.plan.text)
        new_plan = Plan.from_text(new_text, dialect=f.plan.dialect, path=os.fspath(dst_cfg))
        target = os.fspath(dst)
        # The cfg's temporary file is created first and renamed last: a bad dst_cfg fails
        # before anything is written, and a failed weights write leaves no cfg behind.
        with atomic_write(dst_cfg) as cfg_fh, atomic_write(target) as fh:
            cfg_fh.write(new_text.encode("utf-8"))
            fh.write(f.header.encode())
            for lp in new_plan.layers:
                if not lp.arrays:
                    continue
                if lp.type in FOLDABLE:  # one layer folded at a time: bounded memory
                    w, b = fuse_layer(f, lp.index, eps)
                    source: Mapping[str, Any] = {"weights": w, "biases": b}
                else:
                    source = f[lp.index].arrays
                for a in lp.arrays:
                    fh.write(_stored_bytes(a, _as_array(lp, a, source[a.name]), f.header))
    return target, os.fspath(dst_cfg)
