"""Take weights back from other tools: :func:`import_weights` writes a Darknet ``.weights``
file from a dwf ``.npz``/``.safetensors`` export (which carry their cfg and header), a PyTorch
``.pt``/``.pth`` state dict, or a mapping of arrays (which need the cfg).

An import from a file streams, as the exports do: every entry's name, declared shape and dtype
are checked against the plan before anything of it is read (so a hostile file — a decompression
bomb, an object array — is refused before anything is allocated), then each array goes from the
export into the staged output in bounded pieces (:mod:`dwf.tools.export_reader`), converted to
float32 and laid out as Darknet stores it on the way. Memory does not grow with the file.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import numpy as np

from dwf.errors import ArrayError, DwfError
from dwf.format.cfg import shorten
from dwf.format.dialects import Dialect
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.format.records import F32, ArraySpec, LayerPlan
from dwf.io.writer import (
    check_destination,
    check_float32_range,
    header_to_write,
    save,
    write_stored,
)
from dwf.tools.export import torch_names
from dwf.tools.export_reader import PIECE, ExportFile, open_export

Array = np.ndarray[Any, Any]


# -- back to .weights -----------------------------------------------------------------------------
@attrs.frozen
class Exported:
    """Arrays read back from an export, under the export's names, with what the export kept of
    the file.

    Attributes:
        arrays: ``"conv_12.weights"`` → array. For a file, a lazy mapping: an entry is read
            (decompressed) only when asked for, whole.
        header: the original header, when the export kept it.
        cfg_text: the original cfg, when the export kept it.
        cfg_name: the original cfg's file name, when known (a label for messages).
        dialect: the dialect the file was read with, when known.
    """

    arrays: Mapping[str, Array]
    header: Header | None = None
    cfg_text: str | None = None
    cfg_name: str | None = None
    dialect: str | None = None


class _LazyArrays(Mapping[str, Array]):
    """The arrays of an open export file, each read whole only when asked for; the file stays
    open while this mapping is alive."""

    def __init__(self, exp: ExportFile) -> None:
        self._exp = exp
        self._close = weakref.finalize(self, exp.close)

    def __getitem__(self, key: str) -> Array:
        if key not in self._exp.entries:
            raise KeyError(key)
        return self._exp.array(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._exp.entries)

    def __len__(self) -> int:
        return len(self._exp.entries)


def _to_numpy(value: Any, key: str = "") -> Array:
    """A state dict's value as a numpy array; a tensor numpy cannot hold (bf16, a sparse or
    quantised tensor) is a DwfError naming its key."""
    try:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        arr: Array = np.asarray(value)
    except Exception as e:
        raise ArrayError(
            f"state dict entry {shorten(key)!r} cannot be read as a numpy array ({e});"
            " convert it to float32 first"
        ) from None
    if arr.dtype.hasobject:
        raise ArrayError(f"state dict entry {shorten(key)!r} holds Python objects, not numbers")
    return arr


def read_export(src: str | os.PathLike[str] | Mapping[str, Any]) -> Exported:
    """Read an ``.npz``/``.safetensors`` export or a ``.pt``/``.pth`` state dict, or take a
    state dict / mapping of arrays.

    A mapping may use dwf names (``conv_0.weights``) or PyTorch names (``conv_0.weight``); the
    latter are translated by :func:`weights_from_state_dict` once a plan is known. A file's
    arrays are read lazily, each whole when asked for (see :class:`Exported`);
    :func:`import_weights` streams them instead.

    Raises:
        DwfError: not an export dwf reads, or an entry that cannot be weights (object arrays,
            dtypes numpy or float32 cannot hold), named.
    """
    if isinstance(src, Mapping):
        return Exported({str(k): _to_numpy(v, str(k)) for k, v in src.items()})
    exp = open_export(_export_path(src))
    return Exported(_LazyArrays(exp), exp.header, exp.cfg_text, exp.cfg_name, exp.dialect)


def _export_path(src: object) -> str:
    if not isinstance(src, (str, os.PathLike)):
        raise DwfError(
            f"cannot import a {type(src).__name__}: give the path of an .npz, .safetensors or"
            " .pt export, or a state dict (a mapping of names to arrays)"
        )
    return os.fspath(src)


def _plan_for(
    cfg: str | os.PathLike[str] | Plan | None, dialect: str | Dialect, exp: Exported | ExportFile
) -> Plan:
    """The plan to write with: ``cfg`` if given, else the cfg the export kept."""
    if isinstance(cfg, Plan):
        return cfg
    if cfg is not None:
        from dwf.io.cfgfile import plan as plan_cfg

        return plan_cfg(cfg, dialect=dialect)
    if exp.cfg_text is not None:
        plan = Plan.from_text(exp.cfg_text, dialect=dialect, path=_kept_cfg(exp))
        return attrs.evolve(plan, cfg_path=None)  # it names no file here
    raise DwfError(
        "this export does not carry its cfg (a state dict never does);"
        " pass cfg=... (dwf: --cfg)"
    )


def _kept_cfg(exp: Exported | ExportFile) -> str:
    """How messages name the cfg kept in an export: the export, and the cfg's original name."""
    where = getattr(exp, "path", None) or "the export"
    return f"{where} (its cfg {exp.cfg_name})" if exp.cfg_name else f"{where} (its cfg)"


def _dwf_names(plan: Plan, keys: Iterator[str] | list[str]) -> dict[str, str]:
    """dwf name → the key it has in a state dict or export (PyTorch names translated), for
    every key; nothing is read. BatchNorm's ``num_batches_tracked`` counters are skipped.

    Raises:
        ArrayError: keys that name no array of the plan (the first five, and how many more).
    """
    reverse: dict[str, str] = {}
    for lp in plan.layers:
        for dwf_name, torch_name in torch_names(lp).items():
            reverse[torch_name] = f"{lp.name}.{dwf_name}"
    known = set(reverse.values())
    names: dict[str, str] = {}
    unknown: list[str] = []
    for key in keys:
        if key.endswith("num_batches_tracked"):
            continue
        name = reverse.get(key, key)
        if name not in known:
            unknown.append(shorten(str(key)))
            continue
        names[name] = key
    if unknown:
        raise ArrayError(
            f"state dict keys not in the plan: {', '.join(unknown[:5])}"
            + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        )
    return names


def weights_from_state_dict(plan: Plan, state: Mapping[str, Any]) -> dict[str, Array]:
    """Translate a state dict with PyTorch names (or dwf names) to dwf names for ``plan``."""
    names = _dwf_names(plan, [str(k) for k in state])
    return {name: _to_numpy(state[key], str(key)) for name, key in names.items()}


def _held_prefix(plan: Plan, arrays: Mapping[str, object]) -> int:
    """Number of leading layers whose arrays are all present (the rest must be absent)."""
    upto = len(plan.layers)
    for lp in plan.layers:
        present = [f"{lp.name}.{a.name}" in arrays for a in lp.arrays]
        if present and not all(present):
            if any(present):
                missing = [a.name for a, p in zip(lp.arrays, present, strict=True) if not p]
                raise ArrayError(
                    f"layer {lp.index} ({lp.name}, {lp.type}) is incomplete: missing"
                    f" {', '.join(missing)}"
                )
            upto = lp.index
            break
    later = [
        k for lp in plan.layers[upto:] for a in lp.arrays if (k := f"{lp.name}.{a.name}") in arrays
    ]
    if later:
        raise ArrayError(
            f"arrays for layers past the first missing one ({plan.layers[upto].name}):"
            f" {', '.join(later[:5])}"
        )
    return upto


def import_weights(
    src: str | os.PathLike[str] | Mapping[str, Any],
    dst: str | os.PathLike[str],
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect | None = None,
    header: Header | None = None,
) -> str:
    """Write a Darknet ``.weights`` file from an export: a dwf ``.npz``/``.safetensors``, a
    PyTorch ``.pt``/``.pth`` state dict, or a mapping of arrays.

    The cfg and header kept in a dwf export are used unless ``cfg``/``header`` are given; a
    state dict carries neither, so it needs ``cfg``. An export of a partial file gives a partial
    file. A file is streamed entry by entry into the output (memory does not grow with its
    size) and must not change while it is read. ``dst`` may not be the export or the cfg; that
    is checked before anything is read. Returns ``dst``.

    Raises:
        DwfError: no cfg known, ``dst`` is an input, the export is not readable or changed
            while read (:class:`dwf.FileChangedError`); ArrayError: arrays missing, unknown, of
            the wrong shape, or holding values float32 cannot hold.
    """
    cfg_input = None if cfg is None or isinstance(cfg, Plan) else os.fspath(cfg)
    if isinstance(src, Mapping):
        exp = read_export(src)
        plan = _plan_for(cfg, dialect or "alexeyab", exp)
        arrays = weights_from_state_dict(plan, exp.arrays)
        upto = _held_prefix(plan, arrays)
        save(dst, plan, arrays, header=header, upto=upto, inputs=[cfg_input])
        return os.fspath(dst)
    path = _export_path(src)
    inputs = [path, cfg_input]
    check_destination(dst, inputs=inputs)  # before anything is loaded
    with open_export(path) as ef:
        plan = _plan_for(cfg, dialect or ef.dialect or "alexeyab", ef)
        names = _dwf_names(plan, list(ef.entries))
        specs = {f"{lp.name}.{a.name}": a for lp, a in plan.arrays()}
        for name, key in names.items():  # every declaration checked before anything is read
            want, got = specs[name].shape, ef.entries[key].shape
            if got != want:
                raise ArrayError(
                    f"entry {shorten(key)!r} declares shape {got}, but the plan needs {want};"
                    " not read",
                    path=path,
                )
        upto = _held_prefix(plan, names)
        hdr = header_to_write(header or ef.header, upto=upto, dialect=plan.dialect)

        def fill(lp: LayerPlan, a: ArraySpec, out: Any) -> None:
            _copy_entry(ef, names[f"{lp.name}.{a.name}"], lp, a, hdr, out)

        write_stored(
            dst, plan, fill, header=hdr, upto=upto, inputs=inputs, reading=ef.consistent()
        )
    return os.fspath(dst)


_STEP = PIECE // 4  # values per piece


def _copy_entry(
    ef: ExportFile, key: str, lp: LayerPlan, spec: ArraySpec, header: Header, out: Any
) -> None:
    """Write one entry as the array ``spec`` is stored: float32, little-endian, transposed
    where Darknet stores it so, in bounded pieces."""
    e = ef.entries[key]
    where = f"{ef.path}: entry {shorten(key)!r} (layer {lp.index}, {lp.name}, {spec.name})"
    transposed = spec.stored_transposed(header.connected_transposed) and len(spec.shape) >= 2
    pos = 0
    if not transposed and (not e.fortran or len(e.shape) <= 1):
        for piece in ef.pieces(key, _STEP):  # the stored order is the entry's own
            out.write(_float32(piece, where, pos))
            pos += piece.size
        return
    with ef.random_access(key) as (arr, release):
        view = np.moveaxis(arr, 0, -1) if transposed else arr  # Darknet's order, as a view
        for block in _c_blocks(view, _STEP):
            out.write(_float32(block, where, pos))
            pos += block.size
            release()


def _float32(piece: Array, where: str, start: int) -> memoryview:
    """A piece as little-endian float32 bytes (no copy when it is that already)."""
    if piece.dtype != F32 or not piece.flags.c_contiguous:
        check_float32_range(piece, where, start=start)
        with np.errstate(over="ignore"):
            piece = np.ascontiguousarray(piece, dtype=F32)
    if piece.size == 0:
        return memoryview(b"")
    return piece.data.cast("B")


def _c_blocks(a: Array, n: int) -> Iterator[Array]:
    """``a``'s values in C order, as sub-arrays of at most ``n`` values (or one row)."""
    if a.ndim == 0:
        yield a.reshape(1)
    elif a.size <= n:
        yield a
    elif a.ndim == 1:
        for i in range(0, a.shape[0], n):
            yield a[i : i + n]
    elif a[0].size <= n:
        step = n // a[0].size
        for i in range(0, a.shape[0], step):
            yield a[i : i + step]
    else:
        for i in range(a.shape[0]):
            yield from _c_blocks(a[i], n)
