"""Hand weights to other tools: ``.npz``, ``.safetensors``, PyTorch, ONNX (:func:`export`).

Array names are dwf's (``conv_12.weights``) in ``.npz`` and ``.safetensors``; a PyTorch
``state_dict`` uses PyTorch's conventions (``conv_12.weight``, ``conv_12.bn.running_var``).
``.npz`` and ``.safetensors`` files also carry the header and the cfg, so
:func:`dwf.import_weights` (:mod:`dwf.tools.import_weights`) rebuilds the original ``.weights``
byte for byte without being told the cfg. Optional packages (``torch``, ``onnx``) are imported
only when used.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from dwf.errors import DwfError
from dwf.extras import require
from dwf.format.cfg import shorten
from dwf.format.dialects import Dialect
from dwf.format.planner import Plan
from dwf.format.records import F32, LayerPlan
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile
from dwf.io.views import logical_view
from dwf.io.writer import atomic_write
from dwf.tools.cut import first_layers, held_count

Array = np.ndarray[Any, Any]
_META = "__dwf__."


def _cfg_text(f: WeightsFile) -> str | None:
    return f.plan.text or None


def _cfg_name(f: WeightsFile) -> str:
    """The cfg's file name as the exports keep it: text, with bytes of a name that is not UTF-8
    shown as ``\\xff`` escapes (it is a label; it names no file where the export is read)."""
    name = os.path.basename(f.plan.cfg_path or "")
    return os.fsencode(name).decode("utf-8", "backslashreplace")


# -- npz ------------------------------------------------------------------------------------------
def _meta_entries(f: WeightsFile) -> dict[str, bytes]:
    """The ``__dwf__.*`` entries of an ``.npz`` export: header, dialect, cfg and its name."""
    out = {"header": f.header.encode(), "dialect": f.plan.dialect.encode()}
    text = _cfg_text(f)
    if text is not None:
        out["cfg"] = text.encode("utf-8")
        out["cfg_name"] = _cfg_name(f).encode("utf-8")
    return out


def _npy_entry(
    zf: zipfile.ZipFile,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    chunks: Iterable[Any],
) -> None:
    """One ``name.npy`` member written as it streams: the ``.npy`` header, then the chunks."""
    header = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with zf.open(name + ".npy", "w", force_zip64=True) as out:
        npformat.write_array_header_1_0(out, header)
        for c in chunks:
            if c.size:  # a memoryview with a zero in its shape cannot be cast
                out.write(c.data.cast("B"))


def to_npz(f: WeightsFile, path: str | os.PathLike[str], *, compress: bool = False) -> str:
    """Write every array the file holds to an ``.npz``, one entry per array (``conv_12.weights``).

    Entries ``__dwf__.header``, ``__dwf__.cfg`` and ``__dwf__.dialect`` (uint8 bytes) keep the
    header and cfg, so the file converts back exactly. ``np.load`` reads it without pickle.
    Each array streams from the file (``pread``, bounded buffers) into its zip member, so the
    memory used does not grow with the file.
    """
    target = os.fspath(path)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with (
        atomic_write(target, inputs=f.sources) as fh,
        f.consistent(),  # left before the file is published: one version of the source or none
        zipfile.ZipFile(fh, "w", method, allowZip64=True) as zf,
    ):
        for lp in f.stored:
            for a in lp.arrays:
                _npy_entry(zf, f"{lp.name}.{a.name}", a.shape, F32, f.iter_logical_chunks(a))
        for key, raw in _meta_entries(f).items():
            u8 = np.frombuffer(raw, dtype=np.uint8)
            _npy_entry(zf, _META + key, u8.shape, u8.dtype, [u8])
    return target


# -- safetensors ----------------------------------------------------------------------------------
def safetensors_metadata(f: WeightsFile) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors export: ``format`` ("dwf"), ``header`` (version),
    ``seen``, ``header_size``, ``dialect``, ``cfg_name`` and ``cfg`` (the cfg text)."""
    h = f.header
    meta = {
        "format": "dwf",
        "header": h.version,
        "seen": str(h.seen),
        "header_size": str(h.size),
        "dialect": f.plan.dialect,
        "cfg_name": _cfg_name(f),
    }
    text = _cfg_text(f)
    if text is not None:
        meta["cfg"] = text
    return meta


def to_safetensors(f: WeightsFile, path: str | os.PathLike[str]) -> str:
    """Write every array to a ``.safetensors`` file, streaming (no package needed to write).

    The format is written directly: an 8-byte little-endian header length, a JSON header (per
    tensor ``dtype`` ``F32``, ``shape`` and ``data_offsets``, plus ``__metadata__``, see
    :func:`safetensors_metadata`) padded with spaces to 8 bytes, then every tensor's bytes in
    C order, each streamed from the file with ``pread`` — bounded memory, whatever the size.
    Read it back with ``safetensors.safe_open(path, framework="np")``.
    """
    header: dict[str, Any] = {"__metadata__": safetensors_metadata(f)}
    arrays = [(f"{lp.name}.{a.name}", a) for lp in f.stored for a in lp.arrays]
    pos = 0
    for name, a in arrays:
        span = [pos, pos + a.nbytes]
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": span}
        pos += a.nbytes
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as the package writes it
    target = os.fspath(path)
    with atomic_write(target, inputs=f.sources) as fh, f.consistent():
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for _, a in arrays:
            for c in f.iter_logical_chunks(a):
                fh.write(c.data.cast("B"))
    return target


# -- PyTorch --------------------------------------------------------------------------------------
def torch_names(lp: LayerPlan) -> dict[str, str]:
    """dwf array name → PyTorch state-dict key for one layer.

    Conv/connected blocks with batch norm become a module with a ``bn`` child: Darknet's
    ``biases`` are then the BN shift (``bn.bias``) and ``scales`` its weight. Without batch norm
    ``biases`` is the module's ``bias``. A ``[batchnorm]`` layer is a BN module itself.
    Recurrent sub-layers keep their prefix (``rnn_3.input_layer.weight``).
    """
    names = {a.name for a in lp.arrays}
    out: dict[str, str] = {}
    for a in lp.arrays:
        prefix, _, leaf = a.name.rpartition(".")
        pre = prefix + "." if prefix else ""
        if lp.type == "batchnorm":
            leaf_map = {
                "biases": "bias",
                "scales": "weight",
                "rolling_mean": "running_mean",
                "rolling_variance": "running_var",
            }
        elif pre + "scales" in names:
            leaf_map = {
                "weights": "weight",
                "biases": "bn.bias",
                "scales": "bn.weight",
                "rolling_mean": "bn.running_mean",
                "rolling_variance": "bn.running_var",
            }
        else:
            leaf_map = {"weights": "weight", "biases": "bias"}
        out[a.name] = f"{lp.name}.{pre}{leaf_map.get(leaf, leaf)}"
    return out


def to_state_dict(f: WeightsFile, *, copy: bool = False) -> dict[str, Any]:
    """A PyTorch ``state_dict`` of every array the file holds (needs the ``torch`` extra).

    Keys follow PyTorch conventions (see :func:`torch_names`); shapes fit ``nn.Conv2d``
    (``(out, in/groups, k, k)``), ``nn.BatchNorm2d`` and ``nn.Linear`` (``(out, in)``).
    With ``copy=False`` (default) tensors share memory with a private copy-on-write map of the
    file: nothing is copied until a tensor is written, and writes never reach the file; the map
    is guarded like views are (a tensor keeps its values when another process rewrites the
    file; docs/robustness.md), and where it cannot be, the tensors own their memory. With
    ``copy=True``, or from a file opened with ``backend="pread"``, every tensor owns its memory,
    read with ``pread`` (nothing mapped: a later truncation of the file cannot fault).
    """
    torch = require("torch", "torch")
    # backend="pread" promises memory that can never fault: owned copies then, map or not.
    body = None if copy or f.backend != "mmap" else f.private_body()
    out: dict[str, Any] = {}
    with f.consistent():
        for lp in f.plan.layers:
            if not lp.arrays or not f.holds(lp):
                continue
            names = torch_names(lp)
            for a in lp.arrays:
                if body is not None and F32.isnative:
                    view = logical_view(body, a, f.header.connected_transposed)
                    out[names[a.name]] = torch.from_numpy(view)
                else:
                    out[names[a.name]] = torch.from_numpy(f.read_array(a))
    return out


# -- one verb ------------------------------------------------------------------------------------
FORMATS = {
    ".npz": "npz",
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".onnx": "onnx",
}


def format_for(dst: str | os.PathLike[str], format: str | None) -> str:
    """The export format: ``format`` if given (and not contradicted by ``dst``'s extension),
    else the one ``dst``'s extension names.

    Raises:
        DwfError: the extension is unknown and no format was given, or they disagree.
    """
    ext = os.path.splitext(os.fspath(dst))[1].lower()
    by_ext = FORMATS.get(ext)
    if format is not None and format not in set(FORMATS.values()):
        known = ", ".join(sorted(set(FORMATS.values())))
        raise DwfError(f"unknown export format {format!r}; one of {known}")
    if format is None:
        if by_ext is None:
            raise DwfError(
                f"cannot tell the export format from the extension"
                f" {ext or '(none)'}; name the file .npz, .safetensors, .pt or .onnx, or pass"
                " format=... (dwf: --format)",
                path=os.fspath(dst),
            )
        return by_ext
    if by_ext is not None and by_ext != format:
        raise DwfError(
            f"the extension {ext} says {by_ext}, but the format asked for is"
            f" {format}; rename the output or drop the format",
            path=os.fspath(dst),
        )
    return format


def export(
    src: str | os.PathLike[str] | WeightsFile,
    dst: str | os.PathLike[str],
    *,
    format: str | None = None,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    compress: bool = False,
    embed: bool = False,
    data: str | os.PathLike[str] | None = None,
    upto: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    decode: bool = False,
    letterbox: bool = False,
) -> str:
    """Write every array of ``src`` to ``dst`` for other tools (``dwf export``); returns ``dst``.

    Args:
        src: the weights file, open or by path.
        dst: the file to write; its extension gives the format unless ``format`` is given:
            ``.npz`` (numpy, no pickle), ``.safetensors`` (needs ``dwf-darknet[safetensors]``),
            ``.pt``/``.pth`` (a PyTorch ``state_dict`` saved with ``torch.save``, needs
            ``dwf-darknet[torch]``), ``.onnx`` (a runnable ONNX model of the network, needs
            ``dwf-darknet[onnx]``; see :func:`dwf.tools.emit_onnx.to_onnx`).
        format: ``"npz"``, ``"safetensors"``, ``"torch"`` or ``"onnx"``; must agree with the
            extension.
        cfg, dialect: how to open ``src`` when it is a path.
        compress: compressed ``.npz``.
        embed: ONNX only: write the weights inside the model rather than pointing at the
            ``.weights`` file.
        data: ONNX only: write the weights to this file beside the model.
        upto: export layers ``0..upto-1`` only, as the network they make up (the cfg cut
            after layer ``upto - 1``, planned again: see :func:`dwf.tools.cut.first_layers`).
            A partial file (``yolov4.conv.137``) exports to ONNX as the layers it holds
            without being told.
        storage_options: for a URL: options passed to fsspec (docs/remote.md).
        decode: ONNX only: the model also outputs Darknet's decoded detections (``boxes``,
            ``objectness``, ``probs``), before threshold and NMS (docs/onnx.md).
        letterbox: ONNX with ``decode`` only: the boxes are corrected for a letterboxed input,
            from a second input ``image_size`` (each image's width and height).
    """
    if (embed or data is not None) and format_for(dst, format) != "onnx":
        raise DwfError(
            "embed= and data= apply to the ONNX export only (dwf: --embed, --data)",
            path=os.fspath(dst),
        )
    if (decode or letterbox) and format_for(dst, format) != "onnx":
        raise DwfError(
            "decode= and letterbox= apply to the ONNX export only (dwf: --decode, --letterbox)",
            path=os.fspath(dst),
        )
    if letterbox and not decode:
        raise DwfError(
            "letterbox=True corrects decoded boxes: pass decode=True too (dwf: --decode)",
            path=os.fspath(dst),
        )
    fmt = format_for(dst, format)
    how: dict[str, Any] = {"compress": compress, "embed": embed, "data": data}
    how.update(decode=decode, letterbox=letterbox)
    with opened(src, cfg, dialect=dialect, storage_options=storage_options) as f:
        if upto is None and fmt == "onnx":
            upto = held_count(f, decode=decode)  # a model of what the file holds
        if upto is not None:
            with first_layers(f, upto) as part:
                return _export(part, dst, fmt, **how)
        return _export(f, dst, fmt, **how)


def _export(
    f: WeightsFile,
    dst: str | os.PathLike[str],
    fmt: str,
    *,
    compress: bool,
    embed: bool,
    data: str | os.PathLike[str] | None,
    decode: bool,
    letterbox: bool,
) -> str:
    """Write the open file ``f`` in the format ``fmt``."""
    if fmt == "npz":
        return to_npz(f, dst, compress=compress)
    if fmt == "safetensors":
        return to_safetensors(f, dst)
    if fmt == "onnx":
        from dwf.tools.emit_onnx import to_onnx

        return to_onnx(f, dst, embed=embed, data=data, decode=decode, letterbox=letterbox)
    return _to_torch_file(f, dst)


class _Recorded:
    """The output file as ``torch.save`` sees it: a write that fails (a full disk) is kept, as
    torch reports it only as a ``RuntimeError`` about a position in its zip writer."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            n: int = self._fh.write(data)
            return n
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _to_torch_file(f: WeightsFile, dst: str | os.PathLike[str]) -> str:
    torch = require("torch", "torch")
    state = to_state_dict(f, copy=True)  # one version of the file, or FileChangedError
    with atomic_write(dst, inputs=f.sources) as fh:
        out = _Recorded(fh)
        try:
            torch.save(state, out)
        except RuntimeError as e:
            if out.error is not None:  # the real cause: the writer turns it into one line
                raise out.error from None
            why = " ".join(str(e).split())
            raise DwfError(f"torch.save failed: {shorten(why)}", path=os.fspath(dst)) from None
    return os.fspath(dst)
