"""Remote weights files: a byte source over fsspec (``https://``, ``s3://``, ``gs://``, ``hf://``).

The reader's ``backend="remote"`` reads through a :class:`RemoteSource`. The plan says exactly
which bytes each array needs, so only those are requested, with HTTP range requests (or the
store's equivalent); nothing is downloaded whole.

Why a cache at all: arrays are read one at a time, and many are tiny (biases, batch-norm
vectors) and adjacent; one request per array would cost a round trip each. A read smaller than
a block therefore fetches a whole block starting at its offset ("read-ahead"), which then serves
the small arrays that follow. A read of a block or more is fetched exactly and not kept: it is
copied into the caller's array anyway, and keeping it would let memory grow with the file. The
cache holds at most ``max_blocks`` blocks, so one read never transfers more than its own bytes
plus one block.

Why identity checks on every fetch: a file replaced on the server between two reads would
otherwise hand out arrays from two different files. HTTP fetches carry ``If-Match: <ETag>``
(the server refuses with 412 when the file changed); S3 file objects carry ``IfMatch`` the same
way (s3fs does it); for other stores, or servers without an ETag, the store's metadata (size,
ETag/version/modification time) is asked again after each fetch and compared with what it was
when the file was opened.

fsspec (and ``aiohttp`` for HTTP, ``s3fs`` for S3 …) are optional:
``pip install 'dwf-darknet[remote]'``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from dwf.errors import DwfError, FileChangedError, RemoteError
from dwf.extras import require

#: Bytes fetched for a small read (and the unit of the cache).
BLOCK_SIZE = 64 * 1024
#: Blocks the cache keeps (so at most ``BLOCK_SIZE * MAX_BLOCKS`` bytes per open file).
MAX_BLOCKS = 16
#: Seconds a request may take before the server is given up on.
TIMEOUT = 30.0

# A scheme of two letters or more, so that a Windows drive ("C:\\x", "C://x") is never a URL.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_GLOB = re.compile(r"[*?\[]")
_IDENTITY_FIELDS = (
    "ETag",
    "etag",
    "VersionId",
    "version_id",
    "generation",
    "LastModified",
    "Last-Modified",
    "mtime",
    "last_modified",
)


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL fsspec should open (``scheme://…``), not a local path."""
    return isinstance(path, str) and _URL.match(path) is not None


def _fmt(n: int) -> str:
    return f"{n:,}"


def _filesystem(url: str, storage_options: Mapping[str, Any] | None, timeout: float) -> Any:
    """The fsspec filesystem for ``url``, with timeouts set unless the caller set their own."""
    fsspec = require("fsspec", "remote")
    protocol = url.split("://", 1)[0].lower()
    options = dict(storage_options or {})
    if protocol in ("http", "https"):
        aiohttp = require("aiohttp", "remote")
        client = dict(options.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=timeout, connect=timeout))
        options["client_kwargs"] = client
    elif protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", timeout)
        config.setdefault("read_timeout", timeout)
        config.setdefault("retries", {"max_attempts": 2})
        options["config_kwargs"] = config
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:  # the protocol's own package (s3fs, gcsfs, huggingface_hub …)
        raise DwfError(
            f"fsspec needs an extra package for {protocol}:// ({e}); for S3:"
            " pip install 'dwf-darknet[s3]'",
            path=url,
        ) from None
    except ValueError as e:  # unknown protocol
        raise DwfError(f"cannot open this URL: {e}", path=url) from None
    return fs, path


def _why(e: BaseException) -> str:
    """A short cause for a failed request, for a one-line message."""
    name = type(e).__name__
    if isinstance(e, TimeoutError) or "Timeout" in name:
        return "the server did not answer in time (timeout)"
    text = str(e).strip() or name
    if isinstance(e, ConnectionError) or "Connect" in name or "Connection" in text:
        return f"cannot reach the server ({text})"
    return f"{name}: {text}"


def _status(e: BaseException) -> int | None:
    status = getattr(e, "status", None) or getattr(e, "code", None)
    return status if isinstance(status, int) else None


def _failure(url: str, what: str, e: BaseException) -> DwfError:
    if isinstance(e, DwfError):
        return e
    if isinstance(e, FileNotFoundError):
        return RemoteError("not found on the server", path=url)
    if isinstance(e, PermissionError) or _status(e) in (401, 403):
        return RemoteError(
            f"access denied ({e}); pass credentials in storage_options", path=url
        )
    return RemoteError(f"{what} failed: {_why(e)}", path=url)


class RemoteSource:
    """The bytes of one remote file, read by ranges through a bounded cache.

    Attributes:
        url: the file.
        size: its size in bytes when it was opened.
        identity: ``{"size": …, "ETag": …}`` (and a version or modification time where the
            store gives one): what must not change while the file is open.
        transferred: bytes received so far (for progress and for measuring).
        requests: range requests made so far.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        block_size: int = BLOCK_SIZE,
        max_blocks: int = MAX_BLOCKS,
        timeout: float = TIMEOUT,
    ) -> None:
        self.url = url
        self.block_size = max(int(block_size), 1)
        self.max_blocks = max(int(max_blocks), 1)
        self.fs, self._path = _filesystem(url, storage_options, timeout)
        protocol = self.fs.protocol
        protocols = {protocol} if isinstance(protocol, str) else set(protocol)
        self._http = bool(protocols & {"http", "https"})
        self.identity = self._identity()
        size = self.identity.get("size")
        if not isinstance(size, int):
            raise DwfError("the server does not say how large the file is", path=url)
        self.size: int = size
        self._etag = self.identity.get("ETag")
        self._file: Any = None
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.transferred = 0
        self.requests = 0
        self.closed = False

    # -- identity ------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        try:
            # Stores that list directories (s3fs …) answer info() from a listing cache: ask anew.
            self.fs.invalidate_cache(self._path)
            info = self.fs.info(self._path)
        except Exception as e:
            raise _failure(self.url, "asking for the file's size", e) from None
        if info.get("type") == "directory":
            raise DwfError("is a directory, not a weights file", path=self.url)
        ident: dict[str, Any] = {"size": info.get("size")}
        for key in _IDENTITY_FIELDS:
            value = info.get(key)
            if value is not None:
                name = "ETag" if key.lower() == "etag" else key
                ident.setdefault(name, value if isinstance(value, (int, str)) else str(value))
        return ident

    def _changed(self, now: Mapping[str, Any]) -> FileChangedError:
        was, new = self.identity, now
        if new.get("size") != was.get("size"):
            what = f"its size went from {_fmt(was['size'])} to {_fmt(int(new.get('size') or 0))}"
        else:
            keys = [k for k in was if k != "size" and was.get(k) != new.get(k)]
            what = ", ".join(f"{k} {was.get(k)!r} → {new.get(k)!r}" for k in keys) or "replaced"
        return FileChangedError(
            f"the file changed on the server since it was opened ({what}); open it"
            " again to read the new file",
            path=self.url,
            opened=(int(was.get("size") or 0), 0),
            now=(int(new.get("size") or 0), 0),
        )

    def check_unchanged(self) -> None:
        """Ask the store for the file's identity again; :class:`dwf.FileChangedError` if it
        changed since the file was opened."""
        now = self._identity()
        if any(now.get(k) != v for k, v in self.identity.items()):
            raise self._changed(now)

    # -- reading -------------------------------------------------------------------------------
    def _fetch(self, start: int, stop: int) -> bytes:
        """Bytes ``start..stop`` from the store, checked against the identity at open."""
        self.requests += 1
        try:
            if self._file is None:
                self._file = self._open_file()
            self._file.seek(start)
            data = self._file.read(stop - start)
        except Exception as e:
            if _status(e) == 412 or type(e).__name__ == "FileExpired":
                raise self._changed(self._identity()) from None
            if isinstance(e, ValueError) and "range requests" in str(e):
                raise DwfError(
                    "the server does not answer range requests, so parts of the file"
                    " cannot be read without downloading all of it; download it first",
                    path=self.url,
                ) from None
            raise _failure(self.url, f"reading bytes {_fmt(start)}..{_fmt(stop)}", e) from None
        data = bytes(data)
        self.transferred += len(data)
        if not (self._http and self._etag):
            # No conditional request was possible: compare the identity after the fact.
            self.check_unchanged()
        if len(data) != stop - start:
            raise FileChangedError(
                f"short read at bytes {_fmt(start)}..{_fmt(stop)} (got"
                f" {_fmt(len(data))}): the file shrank on the server since it was opened",
                path=self.url,
                opened=(self.size, 0),
            )
        return data

    def _open_file(self) -> Any:
        """The store's file object, reading exactly the ranges asked for (no cache of its own).

        Over HTTP every request carries ``If-Match``; s3fs's file object sends ``IfMatch`` with
        the ETag it saw. The file object also refuses a server that ignores ranges instead of
        downloading the whole file."""
        if self._http:
            headers = {"If-Match": self._etag} if self._etag else {}
            return self.fs.open(
                self._path, "rb", cache_type="none", size=self.size, headers=headers
            )
        return self.fs.open(self._path, "rb", cache_type="none")

    def pread(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file)."""
        if self.closed:
            raise DwfError("the file was closed", path=self.url)
        start = max(offset, 0)
        stop = min(offset + n, self.size)
        if stop <= start:
            return b""
        with self._lock:
            for base, block in self._cache.items():
                if base <= start and stop <= base + len(block):
                    self._cache.move_to_end(base)
                    return block[start - base : stop - base]
            if stop - start >= self.block_size:
                return self._fetch(start, stop)
            block_stop = min(start + self.block_size, self.size)
            block = self._fetch(start, block_stop)
            self._cache[start] = block
            while len(self._cache) > self.max_blocks:
                self._cache.popitem(last=False)
            return block[: stop - start]

    def close(self) -> None:
        """Drop the cache and the store's file object."""
        self.closed = True
        self._cache.clear()
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(Exception):  # closing a read-only handle loses nothing
                f.close()

    def __repr__(self) -> str:
        return f"<dwf RemoteSource {self.url!r} {_fmt(self.size)} bytes>"


def read_bytes(
    url: str, *, storage_options: Mapping[str, Any] | None = None, timeout: float = TIMEOUT
) -> bytes:
    """The whole (small) file at ``url``, e.g. a cfg."""
    fs, path = _filesystem(url, storage_options, timeout)
    try:
        return bytes(fs.cat_file(path))
    except Exception as e:
        raise _failure(url, "reading", e) from None


def exists(
    url: str, *, storage_options: Mapping[str, Any] | None = None, timeout: float = TIMEOUT
) -> bool:
    """Whether ``url`` names a file (``False`` too when the store cannot be asked)."""
    try:
        fs, path = _filesystem(url, storage_options, timeout)
        return bool(fs.isfile(path))
    except Exception:
        return False


def expand(
    pattern: str, *, storage_options: Mapping[str, Any] | None = None, timeout: float = TIMEOUT
) -> list[str]:
    """The files a URL names: a glob (``s3://bucket/run-*/yolov4_*.weights``), a folder (its
    weights files), or one file; sorted, as URLs with the pattern's scheme."""
    fs, path = _filesystem(pattern, storage_options, timeout)
    protocol = pattern.split("://", 1)[0]
    try:
        if _GLOB.search(path):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if looks_like_weights(p))
        else:
            return [pattern]
    except Exception as e:
        raise _failure(pattern, "listing", e) from None
    return [p if is_url(p) else fs.unstrip_protocol(p) if protocol else p for p in found]


_WEIGHTS_NAME = re.compile(r"\.(weights|backup)$|\.conv\.\d+$")


def looks_like_weights(name: str) -> bool:
    """Whether a file name is one a folder scan picks up: ``*.weights``, ``*.backup``,
    ``*.conv.N``."""
    return _WEIGHTS_NAME.search(name) is not None
