"""Remote weights files: a :class:`~dwf.io.source.ByteSource` over fsspec (``https://``,
``s3://``, ``gs://``, ``hf://``).

The reader's ``backend="remote"`` reads through a :class:`RemoteSource`. The plan says exactly
which bytes each array needs, so only those are requested, with range requests; nothing is
downloaded whole — except from a server that ignores ranges (``python -m http.server``, many
static hosts), whose whole answer is read once into a bounded temporary file
(:data:`DOWNLOAD_LIMIT`, raised with ``storage_options={"download_limit": …}``).

Why a cache at all: arrays are read one at a time, and many are tiny (biases, batch-norm
vectors) and adjacent; one request per array would cost a round trip each. A read smaller than
a block therefore fetches a whole block starting at its offset ("read-ahead"), which then serves
the small arrays that follow. A read of a block or more is fetched exactly and not kept: it is
copied into the caller's array anyway, and keeping it would let memory grow with the file. The
cache holds at most ``max_blocks`` blocks, so one read never transfers more than its own bytes
plus one block.

Why identity checks on every response: a file replaced on the server between two reads would
otherwise hand out arrays from two different files. Over HTTP (:mod:`dwf.io.http`) every
response's ETag and Last-Modified are compared with those the file was opened with — whether or
not the server honours ``If-Match``, which is sent with a strong ETag. S3 file objects carry
``IfMatch`` (s3fs does it); for other stores the store's metadata (size, ETag/version/
modification time) is asked again after each fetch and compared.

fsspec (and ``aiohttp`` for HTTP, ``s3fs`` for S3 …) are optional:
``pip install 'dwf-darknet[remote]'``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from dwf.errors import CfgError, CfgNotFoundError, DwfError, FileChangedError, redact
from dwf.extras import require
from dwf.format.planner import MAX_CFG_BYTES, cfg_text, too_big
from dwf.io.remote_errors import changed, failure, status_of
from dwf.io.source import ByteSource, Identity, report_transfer

#: Bytes fetched for a small read (and the unit of the cache).
BLOCK_SIZE = 64 * 1024
#: Blocks the cache keeps (so at most ``BLOCK_SIZE * MAX_BLOCKS`` bytes per open file).
MAX_BLOCKS = 16
#: Seconds a request may take before the server is given up on.
TIMEOUT = 30.0
#: Bytes a server that ignores ranges may make dwf download into a temporary file, unless
#: ``storage_options={"download_limit": …}`` says otherwise (a number, or "4GB", "500MiB" …).
DOWNLOAD_LIMIT = 1 << 30
#: The options dwf takes out of ``storage_options`` before they reach fsspec.
OWN_OPTIONS = ("download_limit",)

# A scheme of two letters or more, so that a Windows drive ("C:\\x", "C://x") is never a URL.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_GLOB = re.compile(r"[*?\[]")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)
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


def parse_size(value: object, what: str = "download_limit") -> int:
    """A byte count: an integer, or text such as ``"2GB"``, ``"500 MiB"``, ``"1e9"``.

    Raises:
        DwfError: not a size.
    """
    if isinstance(value, bool):
        raise DwfError(f"{what}={value!r} is not a size in bytes")
    if isinstance(value, (int, float)) and value >= 0:
        return int(value)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            power = " KMGT".index(m[2].upper() or " ")
            base = 1024 if m[3] or m[2] == "" else 1000
            return int(float(m[1]) * base**power)
        try:
            return parse_size(float(value), what)
        except ValueError:
            pass
    raise DwfError(f"{what}={value!r} is not a size in bytes (e.g. 2000000000, '2GB', '4GiB')")


def split_options(
    storage_options: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(fsspec's options, dwf's own)``: :data:`OWN_OPTIONS` taken out."""
    options = dict(storage_options or {})
    own = {k: options.pop(k) for k in OWN_OPTIONS if k in options}
    return options, own


def _filesystem(url: str, storage_options: Mapping[str, Any] | None, timeout: float) -> Any:
    """The fsspec filesystem for ``url``, with timeouts set unless the caller set their own."""
    fsspec = require("fsspec", "remote")
    protocol = url.split("://", 1)[0].lower()
    options, _ = split_options(storage_options)
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
    except (ValueError, TypeError) as e:  # unknown protocol, or an option it does not take
        raise DwfError(f"cannot open this URL: {e}", path=url) from None
    return fs, path


def _is_http(fs: Any) -> bool:
    protocol = fs.protocol
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    return bool(protocols & {"http", "https"})


class RemoteSource(ByteSource):
    """The bytes of one remote file, read by ranges through a bounded cache.

    Attributes:
        url: the file's URL, its credentials redacted (also ``name``).
        size: its size in bytes when it was opened.
        identity: its size and validators (ETag, Last-Modified, version …) at open: what must
            not change while it is open.
        transferred: bytes received so far (for progress and for measuring).
        requests: range requests made so far.
        downloaded: whether the server ignored ranges, so that the file was read whole into a
            temporary file (read from there since).
    """

    every_read_checked = True  # each response, or the store asked again after each fetch

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        block_size: int = BLOCK_SIZE,
        max_blocks: int = MAX_BLOCKS,
        timeout: float = TIMEOUT,
    ) -> None:
        name = redact(url)
        options, own = split_options(storage_options)
        self.download_limit = parse_size(own.get("download_limit", DOWNLOAD_LIMIT))
        self.block_size = max(int(block_size), 1)
        self.max_blocks = max(int(max_blocks), 1)
        self._url = url
        self.fs, self._path = _filesystem(url, options, timeout)
        info = self._info(name)
        size = info.get("size")
        if not isinstance(size, int):
            raise DwfError("the server does not say how large the file is", path=name)
        tags = tuple(sorted((k, v) for k, v in info.items() if k != "size"))
        super().__init__(name, size, Identity(size, tags=tags))
        self.url = name
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._fetch_lock = threading.Lock()
        self._spool: int | None = None  # the temporary file of a server that ignores ranges
        self.transferred = 0
        self.requests = 0
        self._http: Any = None
        self._file: Any = None
        if _is_http(self.fs):
            from dwf.io.http import HttpRanges

            self._http = HttpRanges(self.fs, self._path, name, self.identity)

    @property
    def downloaded(self) -> bool:
        return self._spool is not None

    # -- identity ------------------------------------------------------------------------------
    def _info(self, name: str) -> dict[str, Any]:
        """``{"size": …, "ETag": …}`` (and a version or modification time where the store gives
        one), asked anew."""
        try:
            # Stores that list directories (s3fs …) answer info() from a listing cache: ask anew.
            self.fs.invalidate_cache(self._path)
            info = self.fs.info(self._path)
        except Exception as e:
            raise failure(name, "asking for the file's size", e) from None
        if info.get("type") == "directory":
            raise DwfError("is a directory, not a weights file", path=name)
        ident: dict[str, Any] = {"size": info.get("size")}
        for key in _IDENTITY_FIELDS:
            value = info.get(key)
            if value is not None:
                field = "ETag" if key.lower() == "etag" else key
                ident.setdefault(field, value if isinstance(value, str) else str(value))
        return ident

    def _check_unchanged(self) -> None:
        # Over HTTP every response is checked as it arrives, and other stores are asked after
        # each fetch (below): nothing to ask here.
        return

    def _check_store(self) -> None:
        now = self._info(self.name)
        tags = dict(self.identity.tags)
        if now.get("size") != self.size or any(now.get(k) != v for k, v in tags.items()):
            raise changed(self.name, self.identity, now)

    def beside(self, name: str) -> str | None:
        # A signed URL's query signs this file only: a sibling is asked for without it.
        cand = self._path.split("?", 1)[0].rpartition("/")[0] + "/" + name
        try:
            found = bool(self.fs.isfile(cand))
        except Exception:  # the store cannot be asked: not found
            found = False
        if not found:
            return None
        return cand if is_url(cand) else str(self.fs.unstrip_protocol(cand))

    # -- reading -------------------------------------------------------------------------------
    def _read_into(self, buf: memoryview, offset: int) -> int:
        start = max(offset, 0)
        stop = min(offset + len(buf), self.size)
        if stop <= start:
            return 0
        with self._fetch_lock:
            if self._spool is not None:
                return self._read_spool(buf[: stop - start], start)
            for base, block in self._cache.items():
                if base <= start and stop <= base + len(block):
                    self._cache.move_to_end(base)
                    buf[: stop - start] = block[start - base : stop - base]
                    return stop - start
            if self._http is not None and self._http.ranges_ignored:
                self._download()
                return self._read_spool(buf[: stop - start], start)
            if stop - start >= self.block_size:  # straight into the caller's buffer
                self._fetch_into(buf[: stop - start], start)
                return stop - start
            fresh = bytearray(min(self.block_size, self.size - start))
            self._fetch_into(memoryview(fresh), start)
            self._cache[start] = bytes(fresh)
            while len(self._cache) > self.max_blocks:
                self._cache.popitem(last=False)
            buf[: stop - start] = fresh[: stop - start]
            return stop - start

    def _fetch_into(self, buf: memoryview, start: int) -> None:
        """Fill ``buf`` with the bytes at ``start`` from the store, checked against the
        identity at open."""
        self.requests += 1
        stop = start + len(buf)
        got: int | None
        if self._http is not None:
            got = self._http.fetch_into(buf, start)
            if got is None:  # the server ignores ranges: read it whole, then from there
                self._download()
                self._read_spool(buf, start)
                return
        else:
            data = self._fetch_file(start, stop)
            got = len(data)
            buf[:got] = data
        self.transferred += got
        if got != len(buf):
            raise FileChangedError(
                f"short read at bytes {_fmt(start)}..{_fmt(stop)} (got"
                f" {_fmt(got)}): the file shrank on the server since it was opened",
                path=self.name,
                opened=self.identity.pair,
            )

    def _fetch_file(self, start: int, stop: int) -> bytes:
        """A store other than HTTP: its file object, reading exactly the ranges asked for (no
        cache of its own; s3fs's sends ``IfMatch`` with the ETag it saw), then the store's
        metadata asked again."""
        try:
            if self._file is None:
                self._file = self.fs.open(self._path, "rb", cache_type="none")
            self._file.seek(start)
            data = bytes(self._file.read(stop - start))
        except Exception as e:
            if status_of(e) == 412 or type(e).__name__ == "FileExpired":
                raise changed(self.name, self.identity, self._info(self.name)) from None
            raise failure(self.name, f"reading bytes {_fmt(start)}..{_fmt(stop)}", e) from None
        self._check_store()
        return data

    # -- servers that ignore ranges --------------------------------------------------------------
    def _download(self) -> None:
        """Read the whole file once into an unnamed temporary file (at most
        :attr:`download_limit` bytes), check it is the file opened, and read from it since."""
        if self.size > self.download_limit:
            raise DwfError(
                "the server does not answer range requests, so reading this file means"
                f" downloading all {_fmt(self.size)} bytes of it, more than the download limit"
                f" ({_fmt(self.download_limit)} bytes): raise it with"
                " storage_options={'download_limit': …} (dwf: --storage-option"
                " download_limit=4GB), or download the file first",
                path=self.name,
            )
        try:
            spool = tempfile.TemporaryFile(prefix="dwf-download-")  # noqa: SIM115 - kept open
        except OSError as e:
            raise DwfError(
                f"cannot make a temporary file to download into: {e.strerror or e}",
                path=self.name,
            ) from None
        try:
            assert self._http is not None
            self.requests += 1
            got = self._http.download(
                spool.fileno(),
                self.download_limit,
                lambda done: report_transfer(done, self.size, self.name),
            )
            self.transferred += got
            fd = os.dup(spool.fileno())
        finally:
            spool.close()
        self._spool = fd
        # What was handed out already (the header block) must be this file's bytes too.
        for base, block in self._cache.items():
            again = bytearray(len(block))
            self._read_spool(memoryview(again), base)
            if again != block:
                raise changed(self.name, self.identity, {"bytes": "differ"})
        self._cache.clear()

    def _read_spool(self, buf: memoryview, offset: int) -> int:
        assert self._spool is not None
        got = 0
        while got < len(buf):
            n = os.preadv(self._spool, [buf[got:]], offset + got)
            if n == 0:
                break
            got += n
        return got

    def _release(self) -> None:
        self._cache.clear()
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(Exception):  # closing a read-only handle loses nothing
                f.close()
        spool, self._spool = self._spool, None
        if spool is not None:
            os.close(spool)


def read_cfg_text(
    url: str, *, storage_options: Mapping[str, Any] | None = None, timeout: float = TIMEOUT
) -> tuple[str, str]:
    """``(text, name)`` of the cfg at ``url`` (``name``: the URL as messages show it), read
    through the same 64 MiB bound as a local cfg: refused by the size the server gives, and
    cut off past the bound when it gives none (or a false one) — never downloaded whole.

    Raises:
        CfgNotFoundError: there is no such file.
        CfgError: it is larger than 64 MiB, or binary.
        RemoteError: the server cannot be reached.
    """
    from dwf.io.http import TooLarge, get_bounded

    name = redact(url)
    fs, path = _filesystem(url, storage_options, timeout)
    try:
        if _is_http(fs):
            data = bytes(get_bounded(fs, path, MAX_CFG_BYTES))
        else:
            size = fs.size(path)
            if isinstance(size, int) and size > MAX_CFG_BYTES:
                raise TooLarge(size)
            with fs.open(path, "rb") as fh:
                data = bytes(fh.read(MAX_CFG_BYTES + 1))
    except TooLarge as e:
        grew = e.size is None
        raise CfgError(too_big(e.size or MAX_CFG_BYTES + 1, grew=grew), path=name) from None
    except Exception as e:
        if isinstance(e, FileNotFoundError) or status_of(e) in (404, 410):
            raise CfgNotFoundError("cfg file not found on the server", path=name) from None
        raise failure(name, "reading the cfg", e) from None
    if len(data) > MAX_CFG_BYTES:
        raise CfgError(too_big(len(data), grew=True), path=name)
    return cfg_text(data, name), name


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
        raise failure(redact(pattern), "listing", e) from None
    return [p if is_url(p) else fs.unstrip_protocol(p) if protocol else p for p in found]


_WEIGHTS_NAME = re.compile(r"\.(weights|backup)$|\.conv\.\d+$")


def looks_like_weights(name: str) -> bool:
    """Whether a file name is one a folder scan picks up: ``*.weights``, ``*.backup``,
    ``*.conv.N``."""
    return _WEIGHTS_NAME.search(name) is not None
