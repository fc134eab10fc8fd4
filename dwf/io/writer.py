"""Write weights files: every array where the plan says, atomically, never over an input.

The file is written to a temporary file in the target's directory (unnamed, on Linux) and put
in place of the target only when complete, so a failure leaves the destination as it was and no
temporary file behind, and a reader holding a map of the old file keeps seeing the old bytes.
A destination that is one of the command's inputs, or that is not a regular file, is refused
before anything is written.

The module is longer than the ~600 lines a module here usually has, on purpose: the commit point
(destinations checked, files staged, published together) and the weights writers built on it
are one job — every file dwf writes goes through here — and the writers' header and layout
rules sit beside the staging they rely on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

from dwf.errors import ArrayError, DwfError, HeaderError, LayerNotFoundError, short_path
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.format.records import F32, ArraySpec, LayerPlan

Array = np.ndarray[Any, Any]


class ArraySource(Protocol):
    """What :func:`save` can copy arrays from besides a mapping: an open weights file."""

    header: Header

    def __getitem__(self, key: str) -> Any: ...


@runtime_checkable
class ArrayProvider(Protocol):
    """What else :func:`save` can take arrays from: an object that gives them for a plan — the
    PyTorch module :func:`dwf.to_torch` returns. ``arrays_for(plan)`` checks that the object
    holds exactly the plan's arrays (raising :class:`dwf.ArrayError` at the first difference)
    and returns them by dwf name in their logical shapes, each made when it is asked for;
    ``header`` is the default header to write, ``sources`` the files a write must not replace.
    """

    header: Header
    sources: tuple[str | os.PathLike[str] | int | None, ...]

    def arrays_for(self, plan: Plan) -> Mapping[str, Any]: ...


ArraysLike = Mapping[str, Any] | ArraySource | ArrayProvider

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


Source = str | os.PathLike[str] | int | None
"""What a write must not replace: a path, or an open file descriptor (its inode); ``None`` is
skipped, so callers can pass an optional cfg path as it is."""


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _real(path: str) -> str:
    try:
        return os.path.normcase(os.path.realpath(path))
    except ValueError:  # a NUL byte: no file has this name, so it is the same as none
        return path


def check_destination(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[Source] = (),
    others: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse a destination that would destroy something: one of the command's ``inputs``
    (the same path, a symlink to it or a hard link — the same inode), the same file as another
    output of the same command (``others``), or an existing file that is not a regular file
    (a directory, a FIFO, a device). An existing regular file that is none of these may be
    replaced. :func:`atomic_write` calls this before it creates anything.

    Raises:
        DwfError: the destination is refused; nothing was written.
    """
    target = os.fspath(path)
    if "\0" in target:
        raise DwfError("not a usable file name: embedded null byte", path=repr(target))
    try:
        st: os.stat_result | None = os.stat(target)
    except (OSError, ValueError):  # absent (or unusable: the write reports that)
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise DwfError("is a directory; give a file name to write", path=target)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DwfError(
            "exists and is not a regular file (a FIFO, a device or a socket);"
            " dwf writes only regular files and never replaces a special one",
            path=target,
        )
    real = _real(target)
    for src in inputs:
        if src is None:
            continue
        try:
            src_st = os.fstat(src) if isinstance(src, int) else os.stat(src)
        except (OSError, ValueError):
            src_st = None
        same_path = not isinstance(src, int) and _real(os.fspath(src)) == real
        same_file = st is not None and src_st is not None and _identity(st) == _identity(src_st)
        if same_path or same_file:
            name = target if isinstance(src, int) else os.fspath(src)
            how = "" if os.fspath(target) == name else f" (the same file as {short_path(name)})"
            raise DwfError(
                f"is one of this command's inputs{how}; writing there would destroy"
                " it. Choose another output name",
                path=target,
            )
    for other in others:
        o = os.fspath(other)
        try:
            other_st: os.stat_result | None = os.stat(o)
        except (OSError, ValueError):
            other_st = None
        same_file = st is not None and other_st is not None and _identity(st) == _identity(other_st)
        if _real(o) == real or same_file:
            raise DwfError(
                f"given as both outputs ({short_path(target)} and {short_path(o)} are the same"
                " file); each output needs its own name",
                path=target,
            )


def _linked_tmpfile(folder: str) -> int | None:
    """An unnamed file in ``folder`` (Linux ``O_TMPFILE``), or ``None`` where there is none.

    It has no name until it is linked into place, so a writer killed half way (even by
    SIGKILL) leaves nothing behind: the kernel frees it with the last descriptor.
    """
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # the file system (or kernel) has no O_TMPFILE: use a named one
        raise


def _short_name(folder: str) -> str:
    # Short and fixed-length, so it fits beside any legal output name (NAME_MAX is 255).
    return os.path.join(folder, f".dwf-{os.urandom(6).hex()}.tmp")


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[Source] = (),
    others: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; put it in place of ``path`` on
    success, atomically: a failure leaves the destination as it was.

    The destination is first checked by :func:`check_destination` against ``inputs`` (what the
    command reads: paths or open descriptors) and ``others`` (its other outputs). On Linux the
    temporary file is unnamed (``O_TMPFILE``) until it is complete, so not even a killed
    process leaves one behind; elsewhere it has a short random name and is removed on failure.

    Raises:
        DwfError: the destination is refused (an input, another output, not a regular file),
            the directory is not writable, or the disk is full.
    """
    with atomic_writes([path], inputs=inputs, others=others) as (fh,):
        yield fh


@contextlib.contextmanager
def atomic_writes(
    paths: Iterable[str | os.PathLike[str]],
    *,
    inputs: Iterable[Source] = (),
    others: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[tuple[BinaryIO, ...]]:
    """:func:`atomic_write` for a command that writes several files (weights and cfg, a model
    and its data): one temporary file per destination, and the destinations are replaced only
    when every one of them is complete and on disk — all or none.

    If the block raises, or a write, flush or ``fsync`` fails (a full disk), no destination is
    touched. Publishing renames the files into place one after the other; the old files are
    kept (hard links) until all are in place, and put back if a rename fails.

    Raises:
        DwfError: as :func:`atomic_write`; also when two destinations are the same file.
    """
    targets = [os.fspath(p) for p in paths]
    extra = [os.fspath(o) for o in others]
    for i, target in enumerate(targets):
        check_destination(
            target, inputs=inputs, others=[*targets[:i], *targets[i + 1 :], *extra]
        )
    staged: list[_Staged] = []
    try:
        for target in targets:
            staged.append(_Staged.create(target))
        yield tuple(st.fh for st in staged)
        for st in staged:
            st.finish(direct=len(staged) == 1)
        _publish(staged)
    except BaseException as e:
        for st in staged:
            st.discard()
        if isinstance(e, OSError):
            where = next((st.target for st in staged if st.failed), targets[0] if targets else None)
            raise DwfError(f"write failed: {e.strerror or e}", path=where) from None
        raise


class _Staged:
    """One destination being written: its temporary file (unnamed where the system allows)."""

    def __init__(self, target: str, fh: BinaryIO, tmp: str | None) -> None:
        self.target = target
        self.folder = os.path.dirname(os.path.abspath(target))
        self.fh = fh
        self.tmp = tmp  # a temporary name, once it has one
        self.failed = False
        self.published = False

    @classmethod
    def create(cls, target: str) -> _Staged:
        folder = os.path.dirname(os.path.abspath(target))
        tmp = None
        try:
            fd = _linked_tmpfile(folder)
            if fd is None:
                import tempfile  # only without O_TMPFILE: not imported by every write on Linux

                fd, tmp = tempfile.mkstemp(prefix=".dwf-", suffix=".tmp", dir=folder)
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or e
            raise DwfError(
                f"cannot create a file in {short_path(folder)}: {why}", path=target
            ) from None
        return cls(target, os.fdopen(fd, "wb"), tmp)

    def finish(self, *, direct: bool) -> None:
        """Everything written reaches the disk, and the file has a name beside its target —
        with ``direct``, the target's own name when it does not exist yet (then it is
        published already)."""
        self.failed = True  # until it is done: an OSError here is this file's
        fh = self.fh
        fh.flush()
        os.fsync(fh.fileno())
        if hasattr(os, "fchmod"):
            os.fchmod(fh.fileno(), _default_mode(self.target))
        if self.tmp is None:
            self.tmp = _link_into_place(fh.fileno(), self.folder, self.target if direct else None)
            self.published = self.tmp is None
        fh.close()
        if self.tmp is not None and not hasattr(os, "fchmod"):  # pragma: no cover - Windows
            os.chmod(self.tmp, _default_mode(self.target))
        self.failed = False

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


def _publish(staged: list[_Staged]) -> None:
    """Rename every finished temporary file over its target; on a failure, put back the
    targets already replaced (from hard links kept until the end) and remove the new files."""
    if len(staged) == 1:  # one file: a rename is atomic by itself
        st = staged[0]
        if not st.published:
            assert st.tmp is not None
            os.replace(st.tmp, st.target)
            st.tmp = None
        return
    kept: list[tuple[_Staged, str | None]] = []  # (published, backup of the old target)
    backups: list[str | None] = []
    try:
        for st in staged:
            assert st.tmp is not None
            backup = None
            if os.path.exists(st.target):
                backup = _short_name(st.folder)
                os.link(st.target, backup)
            backups.append(backup)
            os.replace(st.tmp, st.target)
            st.tmp = None
            kept.append((st, backup))
    except BaseException:
        for st, backup in reversed(kept):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, st.target)
                else:
                    os.unlink(st.target)
        raise
    finally:
        for backup in backups:
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(backup)


def _link_into_place(fd: int, folder: str, target: str | None) -> str | None:
    """Give the unnamed file ``fd`` a name: ``target`` itself when one is given and it does not
    exist yet (no temporary name at all; returns ``None``), else a short temporary name in
    ``folder`` to rename over the target."""
    proc = f"/proc/self/fd/{fd}"
    # A directory descriptor makes os.link call linkat() with AT_SYMLINK_FOLLOW; plain link()
    # would try to link the /proc symlink itself (EXDEV).
    dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if target is not None:
            try:
                os.link(proc, os.path.basename(target), dst_dir_fd=dir_fd, follow_symlinks=True)
                return None
            except FileExistsError:
                pass
        while True:
            tmp = _short_name(folder)
            try:
                os.link(proc, os.path.basename(tmp), dst_dir_fd=dir_fd, follow_symlinks=True)
                return tmp
            except FileExistsError:  # pragma: no cover - 48 random bits collided
                continue
    finally:
        os.close(dir_fd)


def _lookup(arrays: Mapping[str, Any] | ArraySource, layer: str, name: str) -> Any:
    if not isinstance(arrays, Mapping):
        source = arrays[layer]
        spec = source.plan.array(name)
        if spec is None:
            return None
        # an open file: read with pread (an owned copy), not through its map, so a source
        # truncated meanwhile raises FileChangedError instead of faulting
        return source.file.read_array(spec)
    flat = arrays.get(f"{layer}.{name}")
    if flat is not None:
        return flat
    nested = arrays.get(layer)
    if isinstance(nested, Mapping):
        return nested.get(name)
    return None


def _check_names(plan: Plan, arrays: Mapping[str, Any] | ArraySource) -> None:
    if not isinstance(arrays, Mapping):
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
            + did_you_mean(plan, unknown)
            + "; names are '<layer>.<array>' such as 'conv_0.weights'"
        )


def did_you_mean(plan: Plan, unknown: Sequence[str]) -> str:
    """`` (did you mean conv_2.weights?)`` for array names (``<layer>.<array>``) that are not
    in ``plan`` but close to names that are: the layer by name or index as
    :meth:`dwf.Plan.layer` suggests layers, the array by spelling; ``""`` when none is."""
    import difflib  # only when suggesting names

    found: list[str] = []
    for key in unknown[:5]:
        layer, _, name = str(key).partition(".")
        try:
            candidates = [plan.layer(layer)]
        except LayerNotFoundError as e:
            candidates = [plan.layer(s) for s in e.suggestions]
        for lp in candidates:
            names = [a.name for a in lp.arrays]
            close = [name] if name in names else difflib.get_close_matches(name, names, n=1)
            if close:
                if f"{lp.name}.{close[0]}" != key:  # a real name, only not written (upto)
                    found.append(f"{lp.name}.{close[0]}")
                break
    found = list(dict.fromkeys(found))
    return f" (did you mean {', '.join(found)}?)" if found else ""


def as_array(lp: LayerPlan, spec: ArraySpec, value: Any) -> np.ndarray[Any, Any]:
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
    check_float32_range(arr, where)
    return arr


_RANGE_CHUNK = 1 << 20  # values converted at a time to look for overflow (bounded temporaries)


def check_float32_range(arr: np.ndarray[Any, Any], where: str, *, start: int = 0) -> None:
    """Refuse values that float32 cannot hold: a finite float64 (or wider) value beyond
    ±3.4e38 would be stored as ``inf`` (numpy only warns). Darknet stores float32, so such an
    array is refused rather than silently changed; ``inf`` and NaN given as such are stored as
    they are. ``start`` is the flat index of ``arr``'s first value, for the message.

    Raises:
        ArrayError: naming ``where``, the first such value and its flat index.
    """
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 4:
        return  # float16/float32 and integers always fit
    flat = arr.reshape(-1)
    for lo in range(0, flat.size, _RANGE_CHUNK):
        part = flat[lo : lo + _RANGE_CHUNK]
        with np.errstate(over="ignore", invalid="ignore"):
            bad = np.isinf(part.astype(F32)) & np.isfinite(part)
        if bad.any():
            i = int(np.argmax(bad))
            raise ArrayError(
                f"{where}: value {float(part[i]):.6g} (flat index {start + lo + i:,}) is beyond"
                " float32's range (±3.4e38); Darknet stores float32 and it would become inf."
                " Scale or clip the array first (an inf given as such is stored as it is)"
            )


def stored_bytes(spec: ArraySpec, arr: np.ndarray[Any, Any], header: Header) -> memoryview:
    if spec.stored_transposed(header.connected_transposed) and len(spec.shape) >= 2:
        arr = arr.reshape(spec.shape[0], -1).T
    with np.errstate(over="ignore"):  # check_float32_range has refused what would overflow
        out = np.ascontiguousarray(arr, dtype=F32)
    if out.size == 0:  # memoryview cannot cast a view with a zero in its shape
        return memoryview(b"")
    return out.data.cast("B")


def check_header(header: Header, dialect: str) -> None:
    """Refuse to write a header whose width Darknet would read differently — unless it was read
    from a file that has that width (its ``note`` says so): reproducing such a file is allowed."""
    want = header.width_for(dialect)
    if header.size != want and header.note is None:
        raise HeaderError(
            f"header version {header.version} with a {header.size}-byte header would be read"
            f" by Darknet with a {want}-byte one; use size={want} or another version"
        )


# The rule is shared with writers that copy bytes themselves (dwf.cut).


def check_upto(plan: Plan, upto: int | None) -> int:
    """The number of layers to write: ``upto``, checked, or all of them."""
    n = len(plan.layers)
    if upto is None:
        return n
    if isinstance(upto, bool) or not isinstance(upto, int) or not 0 <= upto <= n:
        raise DwfError(f"upto={upto!r} must be a layer count between 0 and {n}")
    return upto


def header_to_write(
    header: Header | None, *, upto: int | None, dialect: str, source: Header | None = None
) -> Header:
    """The one rule for the header of a written file.

    A header given is written as it is. Writing only the first ``upto`` layers is what
    ``darknet partial`` does, and it resets ``seen``: the dialect's own writer header with
    ``seen`` 0. Otherwise a file re-saved from another keeps that file's header, and a file
    written from bare arrays gets Darknet's current header (0.2.5, ``seen`` 0).
    """
    if header is not None:
        return header
    if upto is not None:
        return Header.written_by(dialect)
    return source if source is not None else Header()


class _Counted:
    """The output file as an array's filler sees it: counts what it writes."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.count = 0

    def write(self, data: Any) -> None:
        n = self._fh.write(data)
        self.count += memoryview(data).nbytes if n is None else n


Filler = Callable[[LayerPlan, ArraySpec, _Counted], None]
"""Writes one array's stored bytes (``spec.nbytes`` of them, as Darknet lays them out) to the
object it is given, in as many ``write`` calls as it likes."""


def write_body(
    fh: BinaryIO, plan: Plan, fill: Filler, *, header: Header, upto: int | None = None
) -> None:
    """Write ``header`` and, for every array of layers ``0..upto-1`` in plan order, what
    ``fill(layer, array, out)`` writes, into the open file ``fh`` (the staged file of
    :func:`atomic_write` or of :func:`atomic_writes`, when a command writes several files).

    Raises:
        ArrayError: a filler wrote another number of bytes than its array holds.
    """
    check_header(header, plan.dialect)
    layers = plan.layers[: check_upto(plan, upto)]
    fh.write(header.encode())
    out = _Counted(fh)
    for lp in layers:
        for a in lp.arrays:
            out.count = 0
            fill(lp, a, out)
            if out.count != a.nbytes:
                raise ArrayError(
                    f"layer {lp.index} ({lp.name}, {lp.type}), array {a.name}: wrote"
                    f" {out.count:,} bytes of {a.nbytes:,}"
                )


def array_filler(get: Callable[[LayerPlan, ArraySpec], Any], header: Header) -> Filler:
    """A filler writing ``get(layer, array)`` (a whole array, checked by :func:`as_array`)."""

    def fill(lp: LayerPlan, a: ArraySpec, out: _Counted) -> None:
        out.write(stored_bytes(a, as_array(lp, a, get(lp, a)), header))

    return fill


def write_stored(
    path: str | os.PathLike[str],
    plan: Plan,
    fill: Filler,
    *,
    header: Header,
    upto: int | None = None,
    inputs: Iterable[Source] = (),
    reading: contextlib.AbstractContextManager[Any] | None = None,
) -> str:
    """:func:`write_body` into ``path``, atomically, never over one of ``inputs`` (see
    :func:`atomic_write`). A filler that streams its array in bounded pieces keeps the memory
    used independent of the file's size. ``reading`` (the source's consistency check) is
    entered around the fills and left before the file is put in place: if the source changed
    meanwhile, it raises and nothing is published.

    Raises:
        ArrayError: a filler wrote another number of bytes than its array holds (nothing is
            published).
    """
    check_header(header, plan.dialect)
    check_upto(plan, upto)
    guard = reading if reading is not None else contextlib.nullcontext()
    with atomic_write(path, inputs=(*inputs, plan.cfg_path)) as fh, guard:
        write_body(fh, plan, fill, header=header, upto=upto)
    return os.fspath(path)


def write_arrays(
    path: str | os.PathLike[str],
    plan: Plan,
    get: Callable[[LayerPlan, ArraySpec], Any],
    *,
    header: Header,
    upto: int | None = None,
    inputs: Iterable[Source] = (),
    reading: contextlib.AbstractContextManager[Any] | None = None,
) -> str:
    """Write ``header`` and, for every array of layers ``0..upto-1``, ``get(layer, array)``, laid
    out by ``plan``; atomically, never over one of ``inputs`` (see :func:`atomic_write`). The
    arrays are fetched one at a time, as they are written, so the memory used does not grow with
    the file. ``reading`` (the source file's :meth:`~dwf.WeightsFile.consistent`) is entered
    around the fetches and left before the file is published, so a source that changed meanwhile
    leaves the destination as it was. Callers validate before calling."""
    fill = array_filler(get, header)
    return write_stored(
        path, plan, fill, header=header, upto=upto, inputs=inputs, reading=reading
    )


def save(
    path: str | os.PathLike[str],
    plan: Plan,
    arrays: ArraysLike,
    *,
    header: Header | None = None,
    upto: int | None = None,
    inputs: Iterable[Source] = (),
) -> str:
    """Write a weights file holding ``arrays`` laid out by ``plan``; returns the path written.

    Args:
        path: where to write; replaced atomically. It must not be the plan's cfg file, the open
            file ``arrays`` comes from, or one of ``inputs`` (:class:`DwfError` otherwise).
        plan: the layout (from :func:`dwf.plan`).
        arrays: ``{"conv_0.weights": array, ...}`` (or ``{"conv_0": {"weights": ...}}``, an
            open :class:`dwf.WeightsFile`, or the module of :func:`dwf.to_torch`), one entry
            per array of the plan, each of exactly the planned shape; any real dtype is stored
            as float32.
        header: the header to write; default: see :func:`header_to_write` (the source's header
            when ``arrays`` is an open file or a module read from one, ``darknet partial``'s
            with ``upto``, else 0.2.5 with ``seen`` 0).
        upto: write only layers ``0..upto-1`` (a partial file, as ``darknet partial`` writes);
            ``arrays`` then needs only those layers' arrays.
        inputs: other files the caller read to make ``arrays`` (paths or descriptors), which
            ``path`` must not replace.

    Raises:
        ArrayError: an array is missing, unknown, or of the wrong shape or dtype (nothing is
            written).
        HeaderError: the header's width is not the one Darknet reads for its version.
    """
    source = None if isinstance(arrays, Mapping) else arrays.header
    sources: tuple[Source, ...] = tuple(getattr(arrays, "sources", ()))
    given: Mapping[str, Any] | ArraySource
    if isinstance(arrays, Mapping):
        given = arrays
    elif isinstance(arrays, ArrayProvider):  # checked against the plan; made one at a time
        given = arrays.arrays_for(plan)
    else:
        given = arrays
    header = header_to_write(header, upto=upto, dialect=plan.dialect, source=source)
    check_header(header, plan.dialect)
    _check_names(plan, given)
    layers = plan.layers[: check_upto(plan, upto)]
    if isinstance(given, Mapping):  # in memory already: check them all before writing
        for lp in layers:
            for a in lp.arrays:
                as_array(lp, a, _lookup(given, lp.name, a.name))
    consistent = getattr(arrays, "consistent", None)  # an open file: one version of it
    return write_arrays(
        path,
        plan,
        lambda lp, a: _lookup(given, lp.name, a.name),
        header=header,
        upto=upto,
        inputs=(*sources, *inputs),
        reading=consistent() if consistent is not None else None,
    )
