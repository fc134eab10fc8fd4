"""HTTP range reads for :class:`dwf.io.remote.RemoteSource`: every response checked, every body
bounded.

fsspec's own HTTP file reads a 206 reply whole, whatever its length, and does not show its
headers; dwf needs both, so it makes its range requests itself, with fsspec's session (its
options, credentials, timeouts and event loop):

* **Every response is the file opened.** Its ETag (compared as RFC 9110's weak comparison does:
  ``W/"x"`` and ``"x"`` are the same version), its Last-Modified and the size in its
  Content-Range are compared with those of the file at open — whether or not the server honours
  ``If-Match``, which is sent only with a strong ETag: the standard compares If-Match strongly,
  so a strict server refuses (412) every weak ETag, even of an unchanged file.
* **A body is read up to what was asked, never further.** A 206 reply carrying more than the
  range asked for is cut off there and its connection closed; a reply with less is completed by
  another request for the rest.
* **A server that ignores ranges** (status 200 and the whole file) is noticed, and the reader
  then reads the whole file once, into a bounded temporary file (:meth:`HttpRanges.download`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from dwf.errors import FileChangedError, RemoteError
from dwf.extras import require
from dwf.io.remote_errors import changed, failure
from dwf.io.source import Identity

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$")
_READ_STEP = 1 << 20


def _fmt(n: int) -> str:
    return f"{n:,}"


def same_etag(a: str, b: str) -> bool:
    """Whether two ETags name the same version, by the weak comparison (RFC 9110 §8.8.3.2)."""
    return a.removeprefix("W/").strip() == b.removeprefix("W/").strip()


def _same_date(a: str, b: str) -> bool:
    if a.strip() == b.strip():
        return True
    try:
        return parsedate_to_datetime(a) == parsedate_to_datetime(b)
    except (TypeError, ValueError):
        return False


class TooLarge(Exception):
    """A body larger than the bound: ``size`` as the server announced it, or ``None`` when the
    body went past the bound without saying so."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


class HttpRanges:
    """Range requests to one URL, each response checked against ``identity`` (see the module's
    docstring). ``name`` is the URL as messages show it."""

    def __init__(self, fs: Any, url: str, name: str, identity: Identity) -> None:
        self.fs = fs
        self.url = url
        self.name = name
        self.identity = identity
        tags = dict(identity.tags)
        self.etag: str | None = tags.get("ETag")
        self.last_modified: str | None = tags.get("Last-Modified")
        #: the server answered a range request with the whole file (status 200)
        self.ranges_ignored = False

    # -- requests ------------------------------------------------------------------------------
    def _options(self, headers: Mapping[str, str]) -> dict[str, Any]:
        kw = dict(self.fs.kwargs)
        merged = dict(kw.pop("headers", None) or {})
        merged.update(headers)
        merged.setdefault("Accept-Encoding", "identity")  # sizes are the file's, not gzip's
        if self.etag is not None and not self.etag.startswith("W/"):
            merged["If-Match"] = self.etag
        kw["headers"] = merged
        return kw

    def _run(self, what: str, coro: Callable[..., Any], *args: Any) -> Any:
        sync = require("fsspec.asyn", "remote").sync
        try:
            return sync(self.fs.loop, coro, *args)
        except (FileChangedError, RemoteError):
            raise
        except Exception as e:
            raise failure(self.name, what, e) from None

    def fetch_into(self, buf: memoryview, start: int) -> int | None:
        """Fill ``buf`` with the bytes at ``start``; returns how many came (fewer only at the
        end of the file), or ``None`` when the server ignores ranges and the read does not
        start at 0 (then the file must be read whole)."""
        got = 0
        while got < len(buf):
            pos, stop = start + got, start + len(buf)
            what = f"reading bytes {_fmt(pos)}..{_fmt(stop)}"
            n = self._run(what, self._fetch_into, buf[got:], pos)
            if n is None:
                return None
            if not n:
                break  # the end of the file: a short read, which the caller reports
            got += n
        return got

    async def _fetch_into(self, buf: memoryview, start: int) -> int | None:
        session = await self.fs.set_session()
        stop = start + len(buf)
        headers = {"Range": f"bytes={start}-{stop - 1}"}
        url = self.fs.encode_url(self.url)
        async with session.get(url, **self._options(headers)) as r:
            self._check_status(r)
            self._check_validators(r.headers)
            if r.status == 206:
                first, last = self._content_range(r.headers, start, stop)
                return await self._read_into(r, buf[: min(last + 1, stop) - first])
            self._check_length(r.headers)
            self.ranges_ignored = True
            if start > 0:
                r.close()
                return None
            return await self._read_into(r, buf)  # the file's first bytes: what was asked

    def download(self, fd: int, limit: int, progress: Callable[[int], None]) -> int:
        """The whole file into ``fd`` (at most ``limit`` bytes, and exactly its size at open);
        returns the bytes written.

        Raises:
            FileChangedError: the response is of another version, or of another size.
            DwfError: the file is larger than ``limit``.
        """
        got: int = self._run("downloading", self._download, fd, limit, progress)
        return got

    async def _download(self, fd: int, limit: int, progress: Callable[[int], None]) -> int:
        session = await self.fs.set_session()
        async with session.get(self.fs.encode_url(self.url), **self._options({})) as r:
            self._check_status(r)
            self._check_validators(r.headers)
            self._check_length(r.headers)
            done = 0
            async for chunk in r.content.iter_chunked(_READ_STEP):
                if done + len(chunk) > min(limit, self.identity.size):
                    r.close()
                    raise changed(self.name, self.identity, {"size": done + len(chunk)})
                view = memoryview(chunk)
                while view:
                    n = os.pwrite(fd, view, done)
                    view = view[n:]
                    done += n
                progress(done)
            if done != self.identity.size:
                raise changed(self.name, self.identity, {"size": done})
            return done

    # -- checks --------------------------------------------------------------------------------
    def _check_status(self, r: Any) -> None:
        if r.status == 412:
            r.close()
            raise FileChangedError(
                "the file changed on the server since it was opened (the server refused its"
                f" ETag {self.etag} with 412 Precondition Failed); open it again to read the"
                " new file",
                path=self.name,
                opened=self.identity.pair,
            )
        if r.status == 416:
            m = _UNSATISFIED.match(r.headers.get("Content-Range", ""))
            size = int(m[1]) if m else None
            r.close()
            raise changed(self.name, self.identity, {"size": size if size is not None else -1})
        if r.status not in (200, 206):
            r.close()
            r.raise_for_status()
            raise RemoteError(
                f"the server answered {r.status} {r.reason or ''} to a read", path=self.name
            )

    def _check_validators(self, headers: Mapping[str, str]) -> None:
        now: dict[str, Any] = {}
        etag = headers.get("ETag")
        if etag is not None and self.etag is not None and not same_etag(etag, self.etag):
            now["ETag"] = etag
        modified = headers.get("Last-Modified")
        if (
            modified is not None
            and self.last_modified is not None
            and not _same_date(modified, self.last_modified)
        ):
            now["Last-Modified"] = modified
        if now:
            raise changed(self.name, self.identity, now)

    def _check_length(self, headers: Mapping[str, str]) -> None:
        """A whole-file answer: its length (when it is the file's, not a compressed one's) must
        be the size opened."""
        length = headers.get("Content-Length")
        if length is None or headers.get("Content-Encoding", "identity") not in ("identity", ""):
            return
        if length.isdigit() and int(length) != self.identity.size:
            raise changed(self.name, self.identity, {"size": int(length)})

    def _content_range(self, headers: Mapping[str, str], start: int, stop: int) -> tuple[int, int]:
        """``(first, last)`` of a 206 reply, checked: it starts where asked, and the file's size
        in it is the one opened."""
        m = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if m is None:
            raise RemoteError(
                "the server sent part of the file without saying which (no Content-Range in"
                f" its 206 reply to a request of bytes {_fmt(start)}..{_fmt(stop)})",
                path=self.name,
            )
        first, last = int(m[1]), int(m[2])
        if m[3] != "*" and int(m[3]) != self.identity.size:
            raise changed(self.name, self.identity, {"size": int(m[3])})
        if first != start or last < first:
            raise RemoteError(
                f"the server sent bytes {_fmt(first)}..{_fmt(last + 1)} for a request of bytes"
                f" {_fmt(start)}..{_fmt(stop)}",
                path=self.name,
            )
        return first, last

    async def _read_into(self, r: Any, buf: memoryview) -> int:
        """At most ``len(buf)`` bytes of the body, into ``buf``; the connection is closed when
        more follow (never read: memory stays bounded whatever the server sends)."""
        got = 0
        while got < len(buf):
            chunk = await r.content.read(min(len(buf) - got, _READ_STEP))
            if not chunk:
                break
            buf[got : got + len(chunk)] = chunk
            got += len(chunk)
        if not r.content.at_eof():
            r.close()
        return got


def get_bounded(fs: Any, url: str, limit: int) -> bytes:
    """The whole body at ``url`` if it is at most ``limit`` bytes.

    Raises:
        TooLarge: the server announces more, or sends more (then the connection is closed
            after ``limit + 1`` bytes).
        FileNotFoundError: 404 or 410.
    """
    sync = require("fsspec.asyn", "remote").sync

    async def get() -> bytes:
        session = await fs.set_session()
        kw = dict(fs.kwargs)
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Accept-Encoding", "identity")
        async with session.get(fs.encode_url(url), headers=headers, **kw) as r:
            if r.status in (404, 410):
                raise FileNotFoundError(url)
            r.raise_for_status()
            length = r.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                r.close()
                raise TooLarge(int(length))
            parts: list[bytes] = []
            got = 0
            while True:
                chunk = await r.content.read(min(limit + 1 - got, _READ_STEP) or 1)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
                if got > limit:
                    r.close()
                    raise TooLarge(None)
            return b"".join(parts)

    result: bytes = sync(fs.loop, get)
    return result
