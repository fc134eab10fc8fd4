"""Read exports back entry by entry, in bounded pieces: dwf's ``.npz`` and ``.safetensors``
exports and PyTorch ``.pt``/``.pth`` state dicts (:func:`open_export`).

Every entry's name, shape and dtype are known before any of its data is read (an ``.npz``
member's ``.npy`` header, the safetensors JSON header, a tensor's metadata), so an import checks
them against the plan first and a hostile file is refused before anything is allocated. Data is
then read in pieces of at most :data:`PIECE` bytes:

- an uncompressed ``.npz`` member, a safetensors tensor and a tensor of a ``.pt`` that lies in
  the file are read at their offsets through the export's :class:`~dwf.io.source.LocalSource`
  (the zip's CRC is checked as the bytes pass);
- a compressed ``.npz`` member is inflated as it streams (its CRC checked at its end);
- an entry that must be read out of order (an array Darknet stores transposed, a
  Fortran-order ``.npy``) is read through a map of the file whose pages are released after
  each piece, or, when compressed, first inflated into an unnamed temporary file.

So the memory an import uses does not grow with the export. Every read but the map's goes
through the source (the zip's too), and an import reads inside :meth:`ExportFile.consistent`:
the weights files' consistency rule (:meth:`dwf.io.source.ByteSource.consistent`).

The module is longer than the ~600 lines a module here usually has, on purpose: its three
readers (npz, safetensors, PyTorch) are one job — the :class:`ExportFile` interface the import
is written against — and share the piece machinery above them (reads in pieces, the CRC
beside the copy, the map released piece by piece), so they stand side by side.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from dwf.errors import CfgError, DwfError, FileChangedError, WeightsNotFoundError
from dwf.extras import require
from dwf.format.cfg import shorten
from dwf.format.header import Header
from dwf.io.source import ByteSource, Identity, LocalSource, stat_identity

if TYPE_CHECKING:
    from concurrent.futures import Future

Array = np.ndarray[Any, Any]

META = "__dwf__."  # the npz entries that carry the header, cfg and dialect
PIECE = 4 << 20  # bytes read (and converted) at a time
_MAX_META_BYTES = 64 << 20  # a header (≤ 20 bytes), names and a cfg (which the planner caps alike)
_MAX_ST_HEADER = 100_000_000  # the safetensors package's own bound on its JSON header

# safetensors dtype names → numpy (little-endian, as the format stores them); others (BF16, the
# F8 kinds) have no numpy dtype.
_ST_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}


@attrs.frozen
class Entry:
    """One array of an export as the file declares it, before anything of it is read.

    Attributes:
        key: its name in the export (``conv_0.weights``, or a PyTorch name).
        shape: the declared shape.
        dtype: the declared dtype, byte order included.
        fortran: whether its values are stored in Fortran (column-major) order.
    """

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran: bool = False

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def count(self) -> int:
        """Number of values."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Bytes of data."""
        return self.count * self.dtype.itemsize


def entry_error(path: str, key: str, why: str) -> DwfError:
    """A :class:`DwfError` about entry ``key`` of the export ``path``."""
    return DwfError(f"entry {shorten(key)!r}: {why}", path=path)


def check_dtype(path: str, key: str, dtype: np.dtype[Any]) -> None:
    """Refuse an entry whose dtype cannot be weights (objects, strings, complex, bool)."""
    if dtype.hasobject:
        raise entry_error(path, key, "holds Python objects (it would need pickle); not weights")
    if dtype.kind not in "fiu":
        raise entry_error(
            path, key, f"has dtype {dtype}, which is not a real number type (float32 expected)"
        )


class ExportFile:
    """An open export: its array entries, what it kept of the original file, and bounded
    reads of each entry. Use as a context manager (it holds the file open)."""

    def __init__(self, path: str, source: LocalSource) -> None:
        self.path = path
        self.source = source
        self.size = source.size
        fd = source.fileno()
        assert fd is not None  # a local file has one
        self._fd = fd  # for the map (random_access) only; every other read is the source's
        self.entries: dict[str, Entry] = {}
        self.header: Header | None = None
        self.cfg_text: str | None = None
        self.cfg_name: str | None = None
        self.dialect: str | None = None

    # -- reading --------------------------------------------------------------------------------
    def pieces(self, key: str, max_items: int) -> Iterator[Array]:
        """The entry's values as 1-d arrays of its own dtype, in the order they are stored
        (C order, or Fortran order for a Fortran entry), at most ``max_items`` at a time."""
        raise NotImplementedError

    @contextlib.contextmanager
    def random_access(self, key: str) -> Iterator[tuple[Array, Callable[[], None]]]:
        """The entry as an array of its declared shape that can be read in any order (a view
        of a map of the file, or of a temporary copy), and a function that releases the pages
        read so far (call it after each piece, so memory stays bounded)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def array(self, key: str) -> Array:
        """The whole entry, read into memory (for :func:`dwf.tools.import_weights.read_export`;
        the import itself streams)."""
        e = self.entries[key]
        out = np.empty(e.count, dtype=e.dtype)
        pos = 0
        for piece in self.pieces(key, max(1, PIECE // max(e.dtype.itemsize, 1))):
            out[pos : pos + piece.size] = piece
            pos += piece.size
        shaped: Array = out.reshape(e.shape, order="F" if e.fortran else "C")
        return shaped

    # -- identity -------------------------------------------------------------------------------
    def check_unchanged(self) -> None:
        """Raise :class:`dwf.FileChangedError` if the export changed since it was opened (the
        source's identity: size, modification time, inode and device of the open descriptor)."""
        try:
            self.source.check_unchanged()
        except FileChangedError as e:
            raise _changed(self.path, e) from None

    @contextlib.contextmanager
    def consistent(self) -> Iterator[None]:
        """What the block reads is one version of the export: the source's rule
        (:meth:`dwf.io.source.ByteSource.consistent` — its identity checked before and after,
        the bytes read again if it was modified moments before). The writers enter it around
        their work and leave it before they publish. A read that fails inside the block (a CRC,
        an entry cut short) while the export's identity moved is that change: FileChangedError."""
        self.check_unchanged()
        read = False
        try:
            with self.source.consistent():
                try:
                    yield
                except DwfError as e:
                    if not isinstance(e, FileChangedError):
                        self.check_unchanged()  # the change explains the failure: said as such
                    raise
                read = True
        except FileChangedError as e:
            if not read or e.path != self.path:  # raised inside the block: as it is
                raise
            raise _changed(self.path, e) from None

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _changed(path: str, e: FileChangedError) -> FileChangedError:
    """The source's :class:`dwf.FileChangedError` in an import's words (the source's own speak
    of views and of Darknet rewriting its checkpoints)."""
    what = (
        "size, modification time or inode"
        if e.now != e.opened
        else "its bytes, though not its size or modification time"
    )
    return FileChangedError(
        f"changed while it was being read ({what}); nothing was written. Import it again when"
        " it is no longer being written",
        path=path,
        opened=e.opened,
        now=e.now,
    )


class _SourceFile(io.RawIOBase):
    """A source as the read-only file :mod:`zipfile` reads: its reads are the source's, so they
    count in a consistent read like every other."""

    def __init__(self, source: ByteSource) -> None:
        super().__init__()
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._source.size}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset} (before the start)")
        self._pos = base + offset
        return self._pos

    def readinto(self, buf: Any) -> int:
        n = self._source.read_into(memoryview(buf), self._pos)
        self._pos += n
        return n


def _read_exact(source: ByteSource, n: int, offset: int, path: str, what: str) -> bytes:
    data = source.read_at(n, offset)
    if len(data) != n:
        raise DwfError(
            f"{what} ends early: {len(data):,} of {n:,} bytes at offset {offset:,} (truncated)",
            path=path,
        )
    return data


class _Crc:
    """A zip CRC-32 computed beside the copy: for a large member each piece is checksummed in
    one worker thread (zlib lets go of the GIL) while the main thread writes it, in order; a
    small one is checksummed at once (a thread would cost more than it saves)."""

    def __init__(self, initial: bytes, size: int) -> None:
        self.value = zlib.crc32(initial)
        self._pool = None
        if size > PIECE:
            from concurrent.futures import ThreadPoolExecutor  # for large stored members only

            self._pool = ThreadPoolExecutor(1)

    def submit(self, data: memoryview) -> Future[None] | None:
        if self._pool is None:
            self._update(data)
            return None
        return self._pool.submit(self._update, data)

    def _update(self, data: memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _read_pieces(
    source: ByteSource, offset: int, e: Entry, max_items: int, path: str, crc: _Crc | None = None
) -> Iterator[Array]:
    """An entry stored contiguously at ``offset``, read from the source into reused buffers
    (two when a CRC is computed beside: one is checksummed while the next is read)."""
    item = e.dtype.itemsize
    step = max(1, max_items) * item
    size = min(step, e.nbytes)
    bufs = [bytearray(size) for _ in range(2 if crc is not None else 1)]
    pending: list[Future[None] | None] = [None] * len(bufs)
    pos, end, i = offset, offset + e.nbytes, 0
    try:
        while pos < end:
            k = i % len(bufs)
            done = pending[k]
            if done is not None:  # this buffer's checksum is complete before it is reused
                done.result()
                pending[k] = None
            view = memoryview(bufs[k])
            n = min(step, end - pos)
            got = source.read_into(view[:n], pos)
            if got != n:
                raise entry_error(path, e.key, f"ends early at offset {pos + got:,} (truncated)")
            if crc is not None:
                pending[k] = crc.submit(view[:n])
            yield np.frombuffer(bufs[k], dtype=e.dtype, count=n // item)
            pos += n
            i += 1
    finally:
        for f in pending:
            if f is not None:
                f.result()


@contextlib.contextmanager
def _mapped(
    fd: int, offset: int, e: Entry
) -> Iterator[tuple[Array, Callable[[], None]]]:
    """A read-only map of the bytes of an entry stored at ``offset`` of ``fd``, as an array of
    its shape; the release function drops the pages read so far from this process's memory
    (they stay in the page cache).

    The one read that bypasses the source: an entry read out of order (transposed, Fortran
    order) is read in any order, which pieces through a buffer cannot do in bounded memory. As
    with a weights file's views, the map's bytes are not summed for a recently modified file's
    second look (a stored ``.npz`` member's CRC pass reads them again through the source)."""
    if e.nbytes == 0:
        yield np.zeros(e.shape, dtype=e.dtype), lambda: None
        return
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    m = mmap.mmap(fd, offset - start + e.nbytes, access=mmap.ACCESS_READ, offset=start)
    try:
        arr = np.frombuffer(m, dtype=e.dtype, count=e.count, offset=offset - start)
        arr = arr.reshape(e.shape, order="F" if e.fortran else "C")

        def release() -> None:
            if hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                # a shared read-only file map: the pages are the file's, re-read if touched
                m.madvise(mmap.MADV_DONTNEED)

        yield arr, release
        del arr
    finally:
        with contextlib.suppress(BufferError):  # a view still held elsewhere: the GC closes it
            m.close()


# -- npz ------------------------------------------------------------------------------------------
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip local file header (30 bytes)


class NpzExport(ExportFile):
    """A dwf ``.npz`` export (or any ``.npz`` of numeric arrays)."""

    def __init__(self, path: str, source: LocalSource) -> None:
        super().__init__(path, source)
        try:
            self._zip = zipfile.ZipFile(_SourceFile(source))
        except DwfError:  # the source's own (a ValueError too): as it is
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            single = source.read_at(6, 0) == b"\x93NUMPY"
            what = "a single .npy array" if single else "a zip archive"
            raise DwfError(
                f"not a readable .npz file (it is {what}, not an archive of arrays: {e})",
                path=path,
            ) from None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self._skip: dict[str, int] = {}  # bytes of the .npy header before the data
        self._decl: dict[str, Entry] = {}  # every member, the metadata's too
        size = self.size
        meta: dict[str, bytes] = {}
        for info in self._zip.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.flag_bits & 0x1:
                raise entry_error(path, key, "is encrypted; dwf reads plain .npz files")
            decl, skip = self._declared(key, info)
            if info.file_size < skip + decl.nbytes:
                raise entry_error(
                    path,
                    key,
                    f"declares {decl.nbytes:,} bytes of data but holds {info.file_size - skip:,}",
                )
            if info.compress_type == zipfile.ZIP_STORED and info.header_offset + 30 > size:
                raise entry_error(path, key, "lies past the end of the file (truncated)")
            self._infos[key], self._skip[key], self._decl[key] = info, skip, decl
            if key.startswith(META):
                if info.file_size > _MAX_META_BYTES or decl.dtype != np.uint8 or decl.ndim != 1:
                    raise entry_error(path, key, "is not dwf metadata (uint8 bytes, ≤ 64 MiB)")
                meta[key[len(META) :]] = b"".join(p.tobytes() for p in self.pieces(key, PIECE))
            else:
                self.entries[key] = decl
        if "header" in meta:
            raw = meta["header"]
            self.header = Header.decode(raw, size=len(raw), path=path)
        self.cfg_text = _utf8(path, meta, "cfg")
        self.cfg_name = _label(path, meta.get("cfg_name"))
        self.dialect = _utf8(path, meta, "dialect")

    def _declared(self, key: str, info: zipfile.ZipInfo) -> tuple[Entry, int]:
        """The member's ``.npy`` header (shape, order, dtype), read from its first bytes:
        nothing is inflated beyond the header."""
        try:
            with self._zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                skip = fh.tell()
        except Exception as e:
            raise entry_error(self.path, key, f"not a numpy array ({e})") from None
        check_dtype(self.path, key, dtype)
        return Entry(key, tuple(int(n) for n in shape), dtype, bool(fortran)), skip

    def _data_offset(self, key: str) -> int:
        """Where a stored (uncompressed) member's data starts in the file: after its local
        header, whose name and extra field lengths may differ from the central directory's."""
        info = self._infos[key]
        raw = _read_exact(self.source, 30, info.header_offset, self.path, f"entry {key!r}")
        sig, *_, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
        name_len, extra_len = int(name_len), int(extra_len)
        if sig != b"PK\x03\x04":
            raise entry_error(self.path, key, "has no local zip header where the directory says")
        offset = int(info.header_offset) + 30 + name_len + extra_len + self._skip[key]
        if offset + self._decl[key].nbytes > self.size:
            raise entry_error(self.path, key, "lies past the end of the file (truncated)")
        return offset

    def pieces(self, key: str, max_items: int) -> Iterator[Array]:
        e = self._decl[key]
        info = self._infos[key]
        if info.compress_type == zipfile.ZIP_STORED:
            yield from self._stored_pieces(key, e, max_items)
        else:
            yield from self._inflated_pieces(key, e, max_items)

    def _stored_pieces(self, key: str, e: Entry, max_items: int) -> Iterator[Array]:
        info = self._infos[key]
        offset = self._data_offset(key)
        skip = self._skip[key]
        # the CRC covers the whole member: the .npy header, the data and anything after it
        crc = _Crc(_read_exact(self.source, skip, offset - skip, self.path, key), e.nbytes)
        try:
            yield from _read_pieces(self.source, offset, e, max_items, self.path, crc)
            tail = info.file_size - skip - e.nbytes
            if tail:
                rest = Entry(key, (tail,), np.dtype("u1"))
                for _ in _read_pieces(self.source, offset + e.nbytes, rest, PIECE, self.path, crc):
                    pass
        finally:
            crc.close()
        if crc.value != info.CRC:
            why = "fails its zip CRC check (the file is damaged, or was rewritten while read)"
            raise entry_error(self.path, key, why)

    def _inflated_pieces(self, key: str, e: Entry, max_items: int) -> Iterator[Array]:
        info = self._infos[key]
        item = e.dtype.itemsize
        step = max(1, max_items) * item
        buf = bytearray(min(step, e.nbytes) or 1)
        view = memoryview(buf)
        try:
            with self._zip.open(info) as fh:
                fh.read(self._skip[key])
                left = e.nbytes
                while left:
                    n = min(step, left)
                    got = fh.readinto(view[:n])  # type: ignore[attr-defined]
                    while got < n:
                        more = fh.readinto(view[got:n])  # type: ignore[attr-defined]
                        if not more:
                            raise entry_error(self.path, key, "ends early (truncated)")
                        got += more
                    yield np.frombuffer(buf, dtype=e.dtype, count=n // item)
                    left -= n
                while fh.read(PIECE):  # to its end: the CRC is checked there
                    pass
        except DwfError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise entry_error(self.path, key, f"cannot be read ({err})") from None

    @contextlib.contextmanager
    def random_access(self, key: str) -> Iterator[tuple[Array, Callable[[], None]]]:
        e = self.entries[key]
        if self._infos[key].compress_type == zipfile.ZIP_STORED:
            with _mapped(self._fd, self._data_offset(key), e) as got:
                yield got
            # the CRC, in one more pass: the map read the bytes out of order
            for _ in self._stored_pieces(key, e, PIECE // e.dtype.itemsize):
                pass
            return
        import tempfile  # only for a compressed entry read out of order

        with tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(self.path))) as tmp:
            for piece in self._inflated_pieces(key, e, PIECE // e.dtype.itemsize):
                tmp.write(piece.data)
            tmp.flush()
            with _mapped(tmp.fileno(), 0, e) as got:
                yield got

    def close(self) -> None:
        self._zip.close()
        super().close()


def _utf8(path: str, meta: dict[str, bytes], key: str) -> str | None:
    if key not in meta:
        return None
    try:
        return meta[key].decode("utf-8")
    except UnicodeDecodeError as e:
        raise CfgError(
            f"the {key} kept in the export ({META}{key}) is not valid UTF-8 (byte {e.start}):"
            " the export is damaged or was not written by dwf; pass cfg=... (dwf: --cfg)",
            path=path,
        ) from None


def _label(path: str, raw: bytes | str | None) -> str | None:
    """The original cfg's file name kept in an export, as a label for messages: it names no
    file here, so bytes that are not text (a NUL, invalid UTF-8) are shown, not refused."""
    if raw is None:
        return None
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return shorten(text) or None


# -- safetensors ----------------------------------------------------------------------------------
class SafetensorsExport(ExportFile):
    """A ``.safetensors`` file, read by the offsets its JSON header gives (no package needed)."""

    def __init__(self, path: str, source: LocalSource) -> None:
        super().__init__(path, source)
        size = self.size
        raw = source.read_at(8, 0)
        if len(raw) < 8:
            raise self._bad(f"{size} bytes, fewer than the 8 of its header length")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_ST_HEADER or 8 + n > size:
            raise self._bad(f"its header claims {n:,} bytes, the file has {size:,}")
        head = source.read_at(n, 8)
        source.watch(0, raw + head)  # what the reads rely on: checked again after them
        try:
            doc = json.loads(head.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise self._bad(f"its header is not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise self._bad("its header is not a JSON object")
        meta = doc.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise self._bad("its __metadata__ is not a table of strings")
        data_start, data_size = 8 + n, size - 8 - n
        self._offsets: dict[str, int] = {}
        for key, spec in doc.items():
            decl, begin = self._declared(key, spec, data_size)
            self.entries[key] = decl
            self._offsets[key] = data_start + begin
        if "header" in meta:
            try:
                major, minor, revision = (int(x) for x in meta["header"].split("."))
                self.header = Header(
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
        self.cfg_text = meta.get("cfg")
        self.cfg_name = _label(path, meta.get("cfg_name"))
        self.dialect = meta.get("dialect")

    def _bad(self, why: str) -> DwfError:
        return DwfError(f"not a readable .safetensors file: {why}", path=self.path)

    def _declared(self, key: str, spec: Any, data_size: int) -> tuple[Entry, int]:
        if not isinstance(spec, dict):
            raise entry_error(self.path, key, "has no dtype, shape and data_offsets")
        name, shape, span = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if name not in _ST_DTYPES:
            raise entry_error(
                self.path,
                key,
                f"has dtype {shorten(str(name))}, which numpy cannot hold (convert it to"
                " float32 first)",
            )
        ints = (
            isinstance(shape, list)
            and isinstance(span, list)
            and len(span) == 2
            and all(type(v) is int and v >= 0 for v in [*shape, *span])
        )
        if not ints:
            raise entry_error(self.path, key, "has a shape or data_offsets that are not counts")
        assert isinstance(shape, list) and isinstance(span, list)  # checked above
        dtype = np.dtype(_ST_DTYPES[name])
        check_dtype(self.path, key, dtype)
        e = Entry(key, tuple(shape), dtype)
        begin, end = span
        if not begin <= end <= data_size or end - begin != e.nbytes:
            raise entry_error(
                self.path,
                key,
                f"declares shape {e.shape} ({e.nbytes:,} bytes) at bytes {begin:,}..{end:,} of"
                f" a {data_size:,}-byte data section",
            )
        return e, begin

    def pieces(self, key: str, max_items: int) -> Iterator[Array]:
        e = self.entries[key]
        yield from _read_pieces(self.source, self._offsets[key], e, max_items, self.path)

    @contextlib.contextmanager
    def random_access(self, key: str) -> Iterator[tuple[Array, Callable[[], None]]]:
        with _mapped(self._fd, self._offsets[key], self.entries[key]) as got:
            yield got


# -- PyTorch --------------------------------------------------------------------------------------
class TorchExport(ExportFile):
    """A PyTorch ``state_dict`` saved with ``torch.save`` (needs the ``torch`` extra).

    It is loaded with ``weights_only=True`` (no code runs) and ``mmap=True``: torch maps the
    file instead of reading it, and dwf then reads each tensor's bytes from its own descriptor
    at the offset where the map shows them, so neither torch nor dwf holds the data in memory.
    Files in PyTorch's legacy (pre-1.6) format cannot be mapped; torch reads them whole.
    """

    def __init__(self, path: str, source: LocalSource) -> None:
        super().__init__(path, source)
        torch = require("torch", "torch")
        self._torch = torch
        self.mapped = True
        # torch opens by name: where the system names open descriptors, it is given the one
        # the source holds, so it loads that very file (never a FIFO or another file renamed
        # over the path meanwhile); elsewhere the path, checked against the source after.
        fd = source.fileno()
        by_fd = f"/proc/self/fd/{fd}" if fd is not None else None
        target = by_fd if by_fd is not None and os.path.exists(by_fd) else path
        try:
            try:
                state = torch.load(target, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                self.mapped = False  # the legacy format: torch cannot map it
                state = torch.load(target, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DwfError(_torch_reason(e), path=path) from None
        opened = source.identity
        try:  # the file torch opened must be the one the source holds
            now = stat_identity(os.stat(target))
        except OSError:
            now = Identity(0)
        if now != opened:
            raise FileChangedError(
                "was replaced while it was being opened; nothing was written",
                path=path,
                opened=opened.pair,
                now=now.pair,
            )
        if not isinstance(state, Mapping):
            raise DwfError(
                f"holds a {type(state).__name__}, not a state dict (a mapping of names to"
                " tensors); save model.state_dict()",
                path=path,
            )
        self._tensors: dict[str, Array] = {}
        self._where: dict[str, int] = {}
        regions = _file_regions(opened) if self.mapped else []
        for key, value in state.items():
            key = str(key)
            if key.endswith("num_batches_tracked"):
                continue  # BatchNorm's step counter: Darknet keeps no such thing
            arr = _tensor_numpy(path, key, value)
            check_dtype(path, key, arr.dtype)
            self.entries[key] = Entry(key, tuple(arr.shape), arr.dtype)
            self._tensors[key] = arr
            offset = _offset_in(regions, arr)
            if offset is not None:
                self._where[key] = offset

    def pieces(self, key: str, max_items: int) -> Iterator[Array]:
        e = self.entries[key]
        if key in self._where:  # the bytes lie in the file: read them from there
            yield from _read_pieces(self.source, self._where[key], e, max_items, self.path)
            return
        flat = self._tensors[key].reshape(-1)  # in memory already (a copy torch made)
        step = max(1, max_items)
        for lo in range(0, flat.size, step):
            yield flat[lo : lo + step]

    @contextlib.contextmanager
    def random_access(self, key: str) -> Iterator[tuple[Array, Callable[[], None]]]:
        if key in self._where:
            with _mapped(self._fd, self._where[key], self.entries[key]) as got:
                yield got
            return
        yield self._tensors[key], lambda: None

    def close(self) -> None:
        self._tensors.clear()
        super().close()


def _tensor_numpy(path: str, key: str, value: Any) -> Array:
    if isinstance(value, Mapping):
        raise entry_error(
            path,
            key,
            "is a mapping, not a tensor: this looks like a training checkpoint; save its"
            " model's state_dict() and import that",
        )
    try:
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arr: Array = np.asarray(value)
    except Exception as e:
        raise entry_error(
            path, key, f"cannot be read as a numpy array ({e}); convert it to float32 first"
        ) from None
    return arr


def _file_regions(identity: Identity) -> list[tuple[int, int, int]]:
    """``(start, end, file offset)`` of every map of the file ``identity`` describes in this
    process (Linux ``/proc/self/maps``); empty where that cannot be read."""
    ino, dev = identity.inode, identity.device
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}"
    out = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) < 5 or parts[4] != str(ino) or parts[3] != want:
                    continue
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                out.append((lo, hi, int(parts[2], 16)))
    except (OSError, ValueError):
        return []
    return out


def _offset_in(regions: list[tuple[int, int, int]], arr: Array) -> int | None:
    """The offset in the file of a C-contiguous array that lies in one of ``regions``."""
    if not arr.flags.c_contiguous or not arr.dtype.isnative or arr.dtype.byteorder == ">":
        return None
    lo = int(arr.__array_interface__["data"][0])
    hi = lo + arr.nbytes
    for start, end, offset in regions:
        if start <= lo and hi <= end:
            return lo - start + offset
    return None


def _torch_reason(e: BaseException) -> str:
    """What torch's refusal means, without its advice to load with ``weights_only=False``
    (which would run whatever code the file holds)."""
    if isinstance(e, FileNotFoundError):
        return "export file not found"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a .pt file"
    if isinstance(e, PermissionError):
        return f"cannot be read: {e.strerror}"
    text = str(e)
    detail = ""
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].strip().split(".")[0].strip()
        detail = detail.split(" was not an allowed global")[0]
        return (
            "holds Python objects besides tensors, which dwf does not load (it would run code"
            f" from the file): {shorten(detail)}. Save the model's state_dict() alone"
        )
    first = shorten(" ".join(text.split()))
    return f"not a readable PyTorch file (damaged, or not saved by torch.save): {first}"


# -- one entry point ------------------------------------------------------------------------------
KINDS = {".npz": NpzExport, ".safetensors": SafetensorsExport, ".pt": TorchExport,
         ".pth": TorchExport}


def open_export(path: str | os.PathLike[str]) -> ExportFile:
    """Open an export by its extension (``.npz``, ``.safetensors``, ``.pt``/``.pth``) and read
    its declarations (names, shapes, dtypes, the kept header and cfg); no array data yet.

    Raises:
        DwfError: missing, not a regular file, an unknown extension, or not readable as its
            kind (what is wrong, and with which entry).
    """
    p = os.fspath(path)
    kind = KINDS.get(os.path.splitext(p)[1].lower())
    if kind is None:
        ext = os.path.splitext(p)[1].lower()
        reads = (
            "dwf reads back its .npz and .safetensors exports (which carry the cfg and header)"
            " and PyTorch .pt/.pth state dicts (with a cfg), told apart by their extension"
        )
        if ext == ".onnx":
            raise DwfError(
                f"an ONNX model is not read back: {reads}; for a round trip, export the"
                " .weights file to .npz (dwf export W out.npz)",
                path=p,
            )
        raise DwfError(
            f"unknown export format {ext or '(no extension)'}: {reads} (an export under another"
            " name: rename it)",
            path=p,
        )
    try:  # a regular file only: a FIFO named like an export must not hang the open
        source = LocalSource.open(p, what="export file")
    except WeightsNotFoundError as e:  # an export is no weights file: a plain DwfError, as ever
        raise DwfError(e.reason, path=p) from None
    try:
        return kind(p, source)
    except BaseException:
        source.close()
        raise
