"""Where the bytes of a weights file come from: one small protocol, :class:`ByteSource`, with two
implementations — :class:`LocalSource` here (a file descriptor) and
:class:`dwf.io.remote.RemoteSource` (a URL). The reader, the streaming reads and the opening are
written once against it (zarr v3's ``Store`` is the model).

A source has a size, reads bytes at an offset into a caller's buffer, says whether the file is
unchanged since it was opened, closes (safely while other threads read), and gives a file
descriptor where there is one (for the memory map and the kernel's copy).

**The consistency rule.** Whatever reads a file in several pieces does it inside
:meth:`ByteSource.consistent`: the file's identity is checked before the first piece and after
the last, and a change gives :class:`dwf.FileChangedError` — a result is never made of two
versions of a file. The identity is the source's: for a local file its size, modification time,
inode and device (``fstat`` on the open descriptor); for a URL the validators of *every*
response (checked as each one arrives, in :mod:`dwf.io.remote`).

A modification time can lie: a write lands in the same clock tick as the write before it, and
the time it records is the kernel's coarse clock (one tick: 4–10 ms on Linux) cut to the file
system's granularity (nanoseconds on ext4, XFS, Btrfs, tmpfs, APFS, NTFS; 10 ms on exFAT; 1 s
on HFS+ and ext3; 2 s on FAT). A same-size rewrite in place made within that window leaves size
and time as they were. It can only happen to a file modified moments before the read began: a
write made during a read that began later than tick + granularity after the file's last
modification necessarily records a later time. So, as Git does with "racily clean" files, the
bytes are checked only when the time cannot be trusted — when the file was modified less than
:data:`RACY_FINE_NS` before the read began (its time has a fraction of a second, so its file
system keeps sub-second times), or less than :data:`RACY_NS` before (a time on a whole second:
perhaps a file system of 1–2 s), or has a time in the future. Then every piece read is summed
(CRC-32, chained over contiguous pieces) as it passes, and after the last piece the same ranges
are read again and compared. That costs a second read of the file, from the page cache, and two
sums — only for a file that is being written as it is read; other files pay two ``fstat`` calls
per read. Bytes read when the file was opened (its header) are checked again at the end of
every read in pieces, whatever the time says: they are few, and a header rewritten with a new
``seen`` must not be paired with the old body.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import stat
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

import attrs

from dwf.errors import ClosedFileError, DwfError, FileChangedError, WeightsNotFoundError

#: A file modified less than this long before a read began may be rewritten without its
#: modification time moving, when its time is on a whole second (FAT keeps 2 s, HFS+ 1 s).
RACY_NS = 3_000_000_000
#: The same for a file whose time has a fraction of a second: its file system keeps sub-second
#: times, and a write's time is then at most a clock tick (≤ 10 ms) plus 10 ms (exFAT) late.
RACY_FINE_NS = 100_000_000
#: Bytes per read when the bytes of a read are checked again, and per step of a copy.
_STEP = 4 << 20
# Bytes per kernel copy call: large enough to be cheap, small enough to notice a change soon.
_COPY_STEP = 64 << 20
# copy_file_range refuses across file systems (EXDEV, old kernels), on some file systems
# (EINVAL, EOPNOTSUPP) or under seccomp (ENOSYS, EPERM): copy through a buffer instead.
_NO_KERNEL_COPY = {
    getattr(errno, name)
    for name in ("EXDEV", "EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "EPERM")
    if hasattr(errno, name)
}

Progress = Callable[[int, int, str], None]
#: Where a long transfer (a whole-file download from a server that ignores ranges) reports
#: ``(done_bytes, total_bytes, name)``; the command line sets its progress bar here.
transfer_progress: ContextVar[Progress | None] = ContextVar("dwf_transfer_progress", default=None)


def _fmt(n: int) -> str:
    return f"{n:,}"


@attrs.frozen
class Identity:
    """What must not change while a file is open.

    Attributes:
        size: bytes.
        mtime_ns: a local file's modification time (0 for a URL).
        inode, device: a local file's inode and device (0 for a URL).
        tags: a URL's validators, e.g. ``(("ETag", '"abc"'), ("Last-Modified", "…"))``.
    """

    size: int
    mtime_ns: int = 0
    inode: int = 0
    device: int = 0
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def pair(self) -> tuple[int, int]:
        """``(size, mtime_ns)``, as :class:`dwf.FileChangedError` reports it."""
        return (self.size, self.mtime_ns)


class _Record:
    """The pieces read during one consistent read, as ``[start, stop, crc32]`` ranges
    (contiguous pieces chained into one)."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []

    def add(self, offset: int, data: memoryview) -> None:
        if not len(data):
            return
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last[1] == offset:
            last[1] += len(data)
            last[2] = zlib.crc32(data, last[2])
        else:
            self.ranges.append([offset, offset + len(data), zlib.crc32(data)])


class ByteSource(abc.ABC):
    """The bytes of one file, local or remote (see the module's docstring).

    Attributes:
        name: what messages call the file: its path, or its URL with credentials redacted.
        size: its size in bytes when it was opened.
        identity: what must not change while it is open.
    """

    #: Every read is checked against the identity as it arrives (a URL's every response), so
    #: the bytes read before (the header) need no second look at the end of a read in pieces.
    every_read_checked = False

    def __init__(self, name: str, size: int, identity: Identity) -> None:
        self.name = name
        self.size = size
        self.identity = identity
        self._lock = threading.Lock()
        self._closed = False
        # Reads in flight: close() leaves the release to the last of them, so that no thread
        # ever reads through a descriptor number the system has since given to another file.
        self._users = 0
        self._records: list[_Record] = []
        self._watched: list[tuple[int, bytes]] = []
        self._depth = threading.local()

    # -- what each source provides ----------------------------------------------------------
    @abc.abstractmethod
    def _read_into(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` from ``offset``; the count (short only at the end of the file).
        Called with the source held open."""

    @abc.abstractmethod
    def _check_unchanged(self) -> None:
        """Raise :class:`dwf.FileChangedError` if the file is known to have changed since it
        was opened. Called with the source held open."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free what the source holds (called once, by the last user after close)."""

    def _identity_can_lie(self) -> bool:
        """Whether a change made from now on could leave :meth:`check_unchanged` silent, so
        that the bytes of a read in pieces must be checked again."""
        return False

    def fileno(self) -> int | None:
        """The open file descriptor, where there is one (a local file), else ``None``."""
        return None

    def now(self) -> Identity | None:
        """The file's identity now, where it can be asked cheaply (a local file), else ``None``."""
        return None

    @property
    def local_path(self) -> str | None:
        """The file's path on this machine (where its folder can be searched), else ``None``."""
        return None

    def beside(self, name: str) -> str | None:
        """Where a file called ``name`` next to this one is, if it exists (the cfg of a weights
        file); ``None`` otherwise."""
        return None

    # -- the protocol ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Keep the source open for the block: a :meth:`close` from another thread meanwhile
        releases it only when the block ends.

        Raises:
            ClosedFileError: the source was closed (now or before).
        """
        with self._lock:
            if self._closed:
                raise ClosedFileError("the file was closed", path=self.name)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                release = self._closed and self._users == 0
            if release:
                self._release()

    def read_into(self, buf: memoryview, offset: int) -> int:
        """Fill ``buf`` (a writable byte buffer) with the bytes at ``offset``; returns how many
        were read — fewer than asked only at the end of the file.

        Raises:
            ClosedFileError: the source was closed.
            FileChangedError: the file changed (for a URL: the response is of another version).
            DwfError: the read failed.
        """
        mv = memoryview(buf).cast("B")
        with self.in_use():
            n = self._read_into(mv, offset)
        if self._records:
            with self._lock:
                for record in self._records:
                    record.add(offset, mv[:n])
        return n

    def read_at(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file)."""
        n = max(0, min(n, self.size - offset)) if offset < self.size else 0
        buf = bytearray(n)
        got = self.read_into(memoryview(buf), offset) if n else 0
        return bytes(buf[:got]) if got < n else bytes(buf)

    def check_unchanged(self) -> None:
        """Raise :class:`dwf.FileChangedError` if the file changed since it was opened (as far
        as its identity tells; see :meth:`consistent` for reads in pieces).

        Raises:
            ClosedFileError: the source was closed.
        """
        with self.in_use():
            self._check_unchanged()

    def watch(self, offset: int, data: bytes) -> None:
        """Bytes already used (the header read at open): checked again at the end of every
        :meth:`consistent` read."""
        self._watched.append((offset, bytes(data)))

    @contextlib.contextmanager
    def consistent(self) -> Iterator[None]:
        """A read in pieces: the file is checked before the first piece and after the last
        (and the bytes read are checked again where the identity can lie; see the module's
        docstring). Nested blocks check their end too; the bytes are checked by the outermost.

        Raises:
            FileChangedError: the file changed during the block (raised at its end), or before.
        """
        depth: int = getattr(self._depth, "n", 0)
        self.check_unchanged()
        record = _Record() if depth == 0 and self._identity_can_lie() else None
        if record is not None:
            with self._lock:
                self._records.append(record)
        self._depth.n = depth + 1
        try:
            yield
            self.check_unchanged()
            if depth == 0 and not self.every_read_checked:
                self._verify_watched()
                if record is not None:
                    self._verify(record)
        finally:
            self._depth.n = getattr(self._depth, "n", 1) - 1
            if record is not None:
                with self._lock:
                    self._records.remove(record)

    def copy_to(self, out_fd: int, start: int, stop: int, out_offset: int) -> int:
        """Copy bytes ``start..stop`` into ``out_fd`` at ``out_offset`` through a bounded
        buffer; returns the bytes copied (fewer only at the end of the file)."""
        buf = bytearray(min(_STEP, max(stop - start, 0)))
        mv = memoryview(buf)
        pos, dst = start, out_offset
        while pos < stop:
            want = min(stop - pos, len(mv))
            n = self.read_into(mv[:want], pos)
            if n == 0:
                break
            _write_all(out_fd, mv[:n], dst)
            pos += n
            dst += n
        return pos - start

    def close(self) -> None:
        """Release the source (at once, or when the last read in flight ends)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            release = self._users == 0
        if release:
            self._release()

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checking bytes again -------------------------------------------------------------------
    def _reread(self, start: int, stop: int) -> tuple[int, int]:
        """``(crc32, bytes read)`` of bytes ``start..stop`` read anew (not recorded)."""
        buf = bytearray(min(_STEP, stop - start))
        mv = memoryview(buf)
        crc, pos = 0, start
        with self.in_use():
            while pos < stop:
                n = self._read_into(mv[: min(stop - pos, len(mv))], pos)
                if n == 0:
                    break
                crc = zlib.crc32(mv[:n], crc)
                pos += n
        return crc, pos - start

    def _verify_watched(self) -> None:
        for offset, data in self._watched:
            again, n = self._reread(offset, offset + len(data))
            if n != len(data) or again != zlib.crc32(data):
                what = "the header" if not offset else ""
                raise self._rewritten(offset, offset + len(data), what)

    def _verify(self, record: _Record) -> None:
        for start, stop, crc in record.ranges:
            again, n = self._reread(start, stop)
            if n != stop - start or again != crc:
                raise self._rewritten(start, stop, "")

    def _rewritten(self, start: int, stop: int, what: str) -> FileChangedError:
        self.check_unchanged()  # a change the identity shows is reported as such
        what = what or f"bytes {_fmt(start)}..{_fmt(stop)}"
        return FileChangedError(
            f"the file was rewritten while it was read: {what} no longer hold what was read,"
            " though its size and modification time did not change (a rewrite in place within"
            " the file system's timestamp granularity). Darknet rewrites *_last.weights in place"
            " during training; read it again once it is written",
            path=self.name,
            opened=self.identity.pair,
            now=self.identity.pair,
        )

    def __repr__(self) -> str:
        return f"<dwf {type(self).__name__} {self.name!r} {_fmt(self.size)} bytes>"


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], offset + written)


class LocalSource(ByteSource):
    """A local file, through one open descriptor: ``preadv`` reads, ``fstat`` identity, the
    kernel's copy. The descriptor stays open, so a file renamed over the path is not a change
    of the file read (its data stay until the descriptor is closed)."""

    def __init__(self, path: str, fd: int, st: os.stat_result | None = None) -> None:
        """``st``: ``fd``'s ``fstat`` when the caller has just taken it (asked here otherwise)."""
        if st is None:
            st = os.fstat(fd)
        super().__init__(path, st.st_size, stat_identity(st))
        self.path = path
        self._fd = fd
        # Owned from here on: closed by close() (after the last reader) or when collected.
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: str, *, what: str = "weights file") -> LocalSource:
        """Open a regular file for reading (``what`` names the kind of file in messages).

        Raises:
            WeightsNotFoundError: there is no such file.
            DwfError: a directory, a special file (FIFO, device), no permission, a bad name.
        """
        fd, st = _open_regular(path, what)
        try:
            return cls(path, fd, st)
        except BaseException:
            os.close(fd)
            raise

    def fileno(self) -> int | None:
        return self._fd

    @property
    def local_path(self) -> str | None:
        return self.path

    def beside(self, name: str) -> str | None:
        cand = str(Path(self.path).with_name(name))
        return cand if os.path.isfile(cand) else None

    def _read_into(self, buf: memoryview, offset: int) -> int:
        got = 0
        try:
            while got < len(buf):
                if hasattr(os, "preadv"):
                    n = os.preadv(self._fd, [buf[got:]], offset + got)
                else:  # pragma: no cover - Windows
                    data = _pread_all(self._fd, len(buf) - got, offset + got)
                    n = len(data)
                    buf[got : got + n] = data
                if n == 0:
                    break
                got += n
        except OSError as e:
            raise FileChangedError(
                f"reading bytes {_fmt(offset)}..{_fmt(offset + len(buf))} failed:"
                f" {e.strerror or e}; the file may have changed",
                path=self.name,
                opened=self.identity.pair,
            ) from None
        return got

    def now(self) -> Identity | None:
        try:
            return stat_identity(os.fstat(self._fd))
        except OSError:
            return None

    def _check_unchanged(self) -> None:
        try:
            st = os.fstat(self._fd)
        except OSError as e:
            raise FileChangedError(
                f"cannot stat the open file: {e.strerror or e}", path=self.name
            ) from None
        now = stat_identity(st)
        was = self.identity
        if now == was:
            return
        what = (
            f"its size went from {_fmt(was.size)} to {_fmt(now.size)} bytes"
            if now.size != was.size
            else "it was rewritten (modification time changed)"
        )
        raise FileChangedError(
            f"the file changed since it was opened: {what}. Darknet rewrites"
            " *_last.weights in place during training; views already made keep their"
            " values; reopen the file to see the new one",
            path=self.name,
            opened=was.pair,
            now=now.pair,
        )

    def _identity_can_lie(self) -> bool:
        mtime = self.identity.mtime_ns
        window = RACY_NS if mtime % 1_000_000_000 == 0 else RACY_FINE_NS
        return mtime > time.time_ns() - window

    def copy_to(self, out_fd: int, start: int, stop: int, out_offset: int) -> int:
        """As :meth:`ByteSource.copy_to`, in the kernel (``os.copy_file_range``, else
        ``os.sendfile``) unless the bytes read are being recorded for a check."""
        pos, dst = start, out_offset
        kernel = hasattr(os, "copy_file_range") or hasattr(os, "sendfile")
        while pos < stop and kernel and not self._records:
            want = min(stop - pos, _COPY_STEP)
            with self.in_use():
                n = self._kernel_copy(out_fd, pos, dst, want)
            if n < 0:
                break  # no kernel copy between these files: by hand from here
            if n == 0:
                return pos - start
            pos += n
            dst += n
        return pos - start + super().copy_to(out_fd, pos, stop, dst)

    def _kernel_copy(self, out_fd: int, pos: int, dst: int, want: int) -> int:
        try:
            if hasattr(os, "copy_file_range"):
                return os.copy_file_range(self._fd, out_fd, want, pos, dst)
            # no copy_file_range (not Linux): sendfile, where it copies between files
            os.lseek(out_fd, dst, os.SEEK_SET)
            return os.sendfile(out_fd, self._fd, pos, want)
        except OSError as e:
            if e.errno in _NO_KERNEL_COPY:
                return -1
            raise FileChangedError(
                f"copying bytes {_fmt(pos)}..{_fmt(pos + want)} failed: {e.strerror or e};"
                " the file may have changed",
                path=self.name,
                opened=self.identity.pair,
            ) from None

    def _release(self) -> None:
        self._finalizer()


def stat_identity(st: os.stat_result) -> Identity:
    """The :class:`Identity` of a local file from its ``stat``: what every comparison of local
    files' identities compares."""
    return Identity(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _open_regular(path: str, what: str = "weights file") -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file at ``path``, and its ``fstat``."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            article = "an" if what[:1] in ("a", "e", "i", "o", "u") else "a"
            raise DwfError(f"is a directory, not {article} {what}", path=path)
        if not stat.S_ISREG(st.st_mode):
            raise DwfError("not a regular file", path=path)
        # Non-blocking, then checked again: a FIFO swapped in after the stat cannot block.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise DwfError("not a regular file", path=path)
        return fd, st
    except DwfError:  # a ValueError itself: must not be re-worded by the clause below
        raise
    except FileNotFoundError:
        raise WeightsNotFoundError(f"{what} not found", path=path) from None
    except PermissionError:
        raise DwfError("permission denied", path=path) from None
    except OSError as e:
        raise DwfError(f"cannot open: {e.strerror or e}", path=path) from None
    except ValueError as e:  # a NUL byte in the path
        raise DwfError(f"not a usable file name: {e}", path=repr(path)) from None


_SEEK_LOCK = threading.Lock()


def _pread_all(fd: int, n: int, offset: int) -> bytes:  # pragma: no cover - Windows only
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


def report_transfer(done: int, total: int, name: str) -> None:
    """Report a long transfer's progress to whoever listens (:data:`transfer_progress`)."""
    listener = transfer_progress.get()
    if listener is not None:
        listener(done, total, name)


@contextlib.contextmanager
def reporting_transfers(progress: Progress | None) -> Iterator[None]:
    """Send the progress of long transfers made in the block to ``progress``."""
    token = transfer_progress.set(progress)
    try:
        yield
    finally:
        transfer_progress.reset(token)

