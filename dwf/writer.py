"""Write weights files: every array where the plan says, atomically.

The file is written to a temporary file in the target's directory and renamed over the target
only when complete, so a failure leaves the destination as it was and no temporary file behind,
and a reader holding a map of the old file keeps seeing the old bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import numpy as np

from dwf.errors import ArrayError, DwfError, HeaderError
from dwf.header import Header
from dwf.planner import Plan
from dwf.reader import F32, WeightsFile
from dwf.records import ArraySpec, LayerPlan

ArraysLike = Mapping[str, Any] | WeightsFile

_umask_lock = threading.Lock()


def _default_mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` on success.

    Raises:
        DwfError: the directory is not writable, the disk is full, or ``path`` is a directory.
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise DwfError(f"{target}: is a directory; give a file name to write", path=target)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(target) + ".", suffix=".dwf-tmp", dir=folder
        )
    except OSError as e:
        raise DwfError(
            f"{target}: cannot create a file in {folder}: {e.strerror or e}", path=target
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode(target))
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise DwfError(f"{target}: write failed: {e.strerror or e}", path=target) from None
        raise


def _lookup(arrays: ArraysLike, layer: str, name: str) -> Any:
    if isinstance(arrays, WeightsFile):
        return arrays[layer].array(name)
    flat = arrays.get(f"{layer}.{name}")
    if flat is not None:
        return flat
    nested = arrays.get(layer)
    if isinstance(nested, Mapping):
        return nested.get(name)
    return None


def _check_names(plan: Plan, arrays: ArraysLike) -> None:
    if isinstance(arrays, WeightsFile):
        return
    layer_arrays = {lp.name: {a.name for a in lp.arrays} for lp in plan.layers}
    unknown: list[str] = []
    for key, value in arrays.items():
        if isinstance(value, Mapping):
            if key not in layer_arrays:
                unknown.append(key)
            else:
                unknown += [f"{key}.{n}" for n in value if n not in layer_arrays[key]]
            continue
        layer, dot, name = str(key).partition(".")
        if not dot or layer not in layer_arrays or name not in layer_arrays[layer]:
            unknown.append(str(key))
    if unknown:
        raise ArrayError(
            f"arrays not in the plan: {', '.join(unknown[:5])}"
            + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            + "; names are '<layer>.<array>' such as 'conv_0.weights'"
        )


def _as_array(lp: LayerPlan, spec: ArraySpec, value: Any) -> np.ndarray[Any, Any]:
    where = f"layer {lp.index} ({lp.name}, {lp.type}), array {spec.name}"
    if value is None:
        raise ArrayError(f"missing {where}: expected shape {spec.shape}")
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise ArrayError(f"{where}: cannot be read as an array ({e})") from None
    if arr.dtype.kind not in "fiu":
        raise ArrayError(f"{where}: dtype {arr.dtype} cannot be stored as float32")
    if arr.shape != spec.shape:
        raise ArrayError(f"{where}: shape {arr.shape}, but the plan needs {spec.shape}")
    return arr


def _stored_bytes(spec: ArraySpec, arr: np.ndarray[Any, Any], header: Header) -> memoryview:
    if spec.stored_transposed(header.transpose) and len(spec.shape) >= 2:
        arr = arr.reshape(spec.shape[0], -1).T
    out = np.ascontiguousarray(arr, dtype=F32)
    if out.size == 0:  # memoryview cannot cast a view with a zero in its shape
        return memoryview(b"")
    return out.data.cast("B")


def _check_header(header: Header, dialect: str) -> None:
    """Refuse to write a header whose width Darknet would read differently — unless it was read
    from a file that has that width (its ``note`` says so): reproducing such a file is allowed."""
    want = header.expected_size(dialect)
    if header.size != want and header.note is None:
        raise HeaderError(
            f"header version {header.version} with a {header.size}-byte header would be read"
            f" by Darknet with a {want}-byte one; use size={want} or another version"
        )


def save(
    path: str | os.PathLike[str],
    plan: Plan,
    arrays: ArraysLike,
    *,
    header: Header | None = None,
    upto: int | None = None,
) -> str:
    """Write a weights file holding ``arrays`` laid out by ``plan``; returns the path written.

    Args:
        path: where to write; replaced atomically.
        plan: the layout (from :func:`dwf.plan`).
        arrays: ``{"conv_0.weights": array, ...}`` (or ``{"conv_0": {"weights": ...}}``, or an
            open :class:`dwf.WeightsFile`), one entry per array of the plan, each of exactly the
            planned shape; any real dtype is stored as float32.
        header: defaults to the source's header when ``arrays`` is an open file, else to
            version 0.2.5 with an 8-byte ``seen`` of 0 (what AlexeyAB writes).
        upto: write only layers ``0..upto-1`` (a partial file, as ``darknet partial`` writes);
            ``arrays`` then needs only those layers' arrays.

    Raises:
        ArrayError: an array is missing, unknown, or of the wrong shape or dtype (nothing is
            written).
        HeaderError: the header's width is not the one Darknet reads for its version.
    """
    if header is None:
        # re-saving an open file keeps its header (version, seen, width) unless told otherwise
        header = arrays.header if isinstance(arrays, WeightsFile) else Header()
    _check_header(header, plan.dialect)
    _check_names(plan, arrays)
    n = len(plan.layers)
    if upto is not None and (isinstance(upto, bool) or not 0 <= upto <= n):
        raise DwfError(f"upto={upto!r} must be a layer count between 0 and {n}")
    layers = plan.layers if upto is None else plan.layers[:upto]
    pending = [
        (lp, a, _as_array(lp, a, _lookup(arrays, lp.name, a.name)))
        for lp in layers
        for a in lp.arrays
    ]
    with atomic_write(path) as fh:
        fh.write(header.encode())
        for _, spec, arr in pending:
            fh.write(_stored_bytes(spec, arr, header))
    return os.fspath(path)
