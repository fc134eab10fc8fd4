"""Take weights back from other tools: :func:`import_weights` writes a Darknet ``.weights``
file from a dwf ``.npz``/``.safetensors`` export (which carry their cfg and header) or from a
mapping of arrays / PyTorch ``state_dict`` (which need the cfg).

Every entry is checked against the plan (name, declared shape and dtype) before it is read, so a
hostile file (a decompression bomb, an object array) is refused before anything is allocated.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import numpy as np

from dwf.errors import ArrayError, CfgError, DwfError
from dwf.extras import require
from dwf.format.cfg import shorten
from dwf.format.dialects import Dialect
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.io.writer import save
from dwf.tools.export import _META, torch_names

Array = np.ndarray[Any, Any]


# -- back to .weights -----------------------------------------------------------------------------
@attrs.frozen
class Exported:
    """Arrays read back from an export, under dwf names, with what the export kept of the file.

    Attributes:
        arrays: ``"conv_12.weights"`` → array. For a file, a lazy mapping: an entry is read
            (decompressed) only when asked for, after :func:`import_weights` has checked its
            declared shape and dtype against the plan.
        header: the original header, when the export kept it.
        cfg_text: the original cfg, when the export kept it.
        cfg_name: the original cfg's file name, when known.
        dialect: the dialect the file was read with, when known.
    """

    arrays: Mapping[str, Array]
    header: Header | None = None
    cfg_text: str | None = None
    cfg_name: str | None = None
    dialect: str | None = None


# Metadata entries are a header (≤ 20 bytes), names and a cfg (which the planner caps the same).
_MAX_META_BYTES = 64 << 20


class _LazyArrays(Mapping[str, Array]):
    """The arrays of an export file, each read only when asked for. ``declared`` gives every
    entry's shape and dtype as the file states them, so they can be checked before reading."""

    def __init__(
        self,
        path: str,
        declared: dict[str, tuple[tuple[int, ...], np.dtype[Any]]],
        load: Callable[[str], Array],
    ) -> None:
        self.path = path
        self.declared = declared
        self._load = load

    def __getitem__(self, key: str) -> Array:
        if key not in self.declared:
            raise KeyError(key)
        return self._load(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.declared)

    def __len__(self) -> int:
        return len(self.declared)


def _entry_error(path: str, key: str, why: str) -> DwfError:
    return DwfError(f"entry {shorten(key)!r}: {why}", path=path)


def _check_dtype(path: str, key: str, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise _entry_error(path, key, "holds Python objects (it would need pickle); not weights")
    if dtype.kind not in "fiu":
        raise _entry_error(
            path, key, f"has dtype {dtype}, which is not a real number type (float32 expected)"
        )


def _npz_entries(path: str, z: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, Any]]:
    """Each ``.npy`` member's zip entry and its header (shape, order, dtype), read from the
    first bytes of the member: nothing is decompressed beyond the header."""
    out: dict[str, tuple[zipfile.ZipInfo, Any]] = {}
    for info in z.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        try:
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(fh)
                else:
                    header = np.lib.format.read_array_header_2_0(fh)
        except Exception as e:
            raise _entry_error(path, key, f"not a numpy array ({e})") from None
        shape, _, dtype = header
        _check_dtype(path, key, dtype)
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if info.file_size < nbytes:
            raise _entry_error(
                path, key, f"declares {nbytes:,} bytes of data but holds {info.file_size:,}"
            )
        out[key] = (info, header)
    return out


def _from_npz(path: str) -> Exported:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        what = "a single .npy array" if _is_npy(path) else "a zip archive"
        raise DwfError(
            f"not a readable .npz file (it is {what}, not an archive of arrays: {e})",
            path=path,
        ) from None
    with z:
        entries = _npz_entries(path, z)
        meta: dict[str, bytes] = {}
        for key, (info, (shape, _, dtype)) in entries.items():
            if key.startswith(_META):
                if info.file_size > _MAX_META_BYTES or dtype != np.uint8 or len(shape) != 1:
                    raise _entry_error(path, key, "is not dwf metadata (uint8 bytes, ≤ 64 MiB)")
                meta[key[len(_META) :]] = bytes(_read_npz_entry(path, z, key, info))

    def load(key: str) -> Array:
        with zipfile.ZipFile(path) as zz:
            return _read_npz_entry(path, zz, key, entries[key][0])

    declared = {
        k: (tuple(h[0]), h[2]) for k, (_, h) in entries.items() if not k.startswith(_META)
    }
    header = None
    if "header" in meta:
        header = Header.decode(meta["header"], size=len(meta["header"]), path=path)
    return Exported(
        _LazyArrays(path, declared, load),
        header,
        _utf8(path, meta, "cfg"),
        _utf8(path, meta, "cfg_name"),
        _utf8(path, meta, "dialect"),
    )


def _is_npy(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def _read_npz_entry(path: str, z: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> Array:
    try:
        with z.open(info) as fh:
            arr: Array = np.lib.format.read_array(fh, allow_pickle=False)
            return arr
    except Exception as e:
        raise _entry_error(path, key, f"cannot be read ({e})") from None


def _utf8(path: str, meta: dict[str, bytes], key: str) -> str | None:
    if key not in meta:
        return None
    try:
        return meta[key].decode("utf-8")
    except UnicodeDecodeError as e:
        raise CfgError(
            f"the {key} kept in the export ({_META}{key}) is not valid UTF-8 (byte {e.start}):"
            " the export is damaged or was not written by dwf; pass cfg=... (dwf: --cfg)",
            path=path,
        ) from None


# safetensors dtype names → numpy; others (BF16, the F8 kinds) have no numpy dtype.
_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
}


def _from_safetensors(path: str) -> Exported:
    st = require("safetensors", "safetensors")
    declared: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
    try:
        with st.safe_open(path, framework="np") as fh:
            meta: dict[str, str] = fh.metadata() or {}
            for k in fh.keys():  # noqa: SIM118
                sl = fh.get_slice(k)
                name = str(sl.get_dtype())
                if name not in _ST_DTYPES:
                    raise _entry_error(
                        path,
                        k,
                        f"has dtype {name}, which numpy cannot hold (convert it to float32 first)",
                    )
                declared[k] = (tuple(int(n) for n in sl.get_shape()), np.dtype(_ST_DTYPES[name]))
    except DwfError:
        raise
    except Exception as e:
        raise DwfError(f"not a readable .safetensors file ({e})", path=path) from None

    def load(key: str) -> Array:
        try:
            with st.safe_open(path, framework="np") as fh:
                arr: Array = fh.get_tensor(key)
                return arr
        except Exception as e:
            raise _entry_error(path, key, f"cannot be read ({e})") from None

    header = None
    if "header" in meta:
        try:
            major, minor, revision = (int(x) for x in meta["header"].split("."))
            header = Header(
                major,
                minor,
                revision,
                int(meta.get("seen", "0")),
                int(meta.get("header_size", "20")),
            )
        except (ValueError, TypeError) as e:
            raise DwfError(
                f"the header kept in the metadata is not readable ({e})", path=path
            ) from None
    return Exported(
        _LazyArrays(path, declared, load),
        header,
        meta.get("cfg"),
        meta.get("cfg_name") or None,
        meta.get("dialect"),
    )


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
    """Read an ``.npz``/``.safetensors`` export, or take a state dict / mapping of arrays.

    A mapping may use dwf names (``conv_0.weights``) or PyTorch names (``conv_0.weight``); the
    latter are translated by :func:`weights_from_state_dict` once a plan is known. A file's
    arrays are read lazily (see :class:`Exported`).

    Raises:
        DwfError: not an export dwf reads, or an entry that cannot be weights (object arrays,
            dtypes numpy or float32 cannot hold), named.
    """
    if isinstance(src, Mapping):
        return Exported({str(k): _to_numpy(v, str(k)) for k, v in src.items()})
    if not isinstance(src, (str, os.PathLike)):
        raise DwfError(
            f"cannot import a {type(src).__name__}: give the path of an .npz or .safetensors"
            " export, or a state dict (a mapping of names to arrays)"
        )
    path = os.fspath(src)
    if not os.path.exists(path):
        raise DwfError("export file not found", path=path)
    if path.endswith(".safetensors"):
        return _from_safetensors(path)
    if path.endswith(".npz"):
        return _from_npz(path)
    reads = (
        "dwf reads back its .npz and .safetensors exports (which carry the cfg and header) and"
        " PyTorch .pt/.pth state dicts (with a cfg; through the command line, or as a mapping)"
    )
    ext = os.path.splitext(path)[1].lower()
    if ext == ".onnx":
        raise DwfError(
            f"an ONNX model is not read back: {reads}; for a round trip, export the .weights"
            " file to .npz (dwf export W out.npz)",
            path=path,
        )
    raise DwfError(
        f"unknown export format {ext or '(no extension)'}: {reads}, told apart by their"
        " extension (an export under another name: rename it)",
        path=path,
    )


def _check_declared(plan: Plan, exp: Exported) -> None:
    """Check every entry's declared shape against the plan before any is read, so a damaged or
    hostile export (a small archive that inflates to gigabytes) is refused without reading."""
    arrays = exp.arrays
    if not isinstance(arrays, _LazyArrays):
        return
    specs = {f"{lp.name}.{a.name}": a for lp, a in plan.arrays()}
    for key, (shape, _) in arrays.declared.items():
        spec = specs.get(key)
        if spec is None:
            continue  # weights_from_state_dict names the unknown entries, without reading them
        if int(np.prod(shape, dtype=object)) != spec.count or (
            len(shape) > 1 and tuple(shape) != spec.shape
        ):
            raise ArrayError(
                f"entry {shorten(key)!r} declares shape {tuple(shape)}, but the"
                f" plan needs {spec.shape}; not read",
                path=arrays.path,
            )


def weights_from_state_dict(plan: Plan, state: Mapping[str, Any]) -> dict[str, Array]:
    """Translate a state dict with PyTorch names (or dwf names) to dwf names for ``plan``."""
    reverse: dict[str, str] = {}
    for lp in plan.layers:
        for dwf_name, torch_name in torch_names(lp).items():
            reverse[torch_name] = f"{lp.name}.{dwf_name}"
    known = set(reverse.values())
    keys: dict[str, str] = {}
    unknown: list[str] = []
    for key in state:  # names first: nothing is read (from a lazy export) before they check out
        if key.endswith("num_batches_tracked"):
            continue
        name = reverse.get(key, key)
        if name not in known:
            unknown.append(shorten(str(key)))
            continue
        keys[name] = key
    if unknown:
        raise ArrayError(
            f"state dict keys not in the plan: {', '.join(unknown[:5])}"
            + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        )
    return {name: _to_numpy(state[key], str(key)) for name, key in keys.items()}


def _held_prefix(plan: Plan, arrays: Mapping[str, Array]) -> int:
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
    """Write a Darknet ``.weights`` file from an export (``.npz``, ``.safetensors``, state dict).

    The cfg and header kept in a dwf export are used unless ``cfg``/``header`` are given; a
    state dict carries neither, so it needs ``cfg``. An export of a partial file gives a partial
    file. Returns ``dst``.

    Raises:
        DwfError: no cfg known; ArrayError: arrays missing, unknown or of the wrong shape.
    """
    exp = read_export(src)
    d = dialect or exp.dialect or "alexeyab"
    inputs = [] if isinstance(src, Mapping) else [os.fspath(src)]
    if isinstance(cfg, Plan):
        plan = cfg
    elif cfg is not None:
        from dwf.io.cfgfile import plan as plan_cfg

        plan = plan_cfg(cfg, dialect=d)
        inputs.append(os.fspath(cfg))
    elif exp.cfg_text is not None:
        plan = Plan.from_text(exp.cfg_text, dialect=d, path=exp.cfg_name or None)
    else:
        raise DwfError(
            "this export does not carry its cfg (a state dict never does);"
            " pass cfg=... (dwf: --cfg)"
        )
    _check_declared(plan, exp)
    arrays = weights_from_state_dict(plan, exp.arrays)
    upto = _held_prefix(plan, arrays)
    save(dst, plan, arrays, header=header or exp.header, upto=upto, inputs=inputs)
    return os.fspath(dst)
