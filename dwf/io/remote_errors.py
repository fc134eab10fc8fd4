"""The errors of remote reads, shared by :mod:`dwf.io.remote` and :mod:`dwf.io.http`: a failed
request in one line, and the error for a file that is not the one opened any more."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dwf.errors import DwfError, FileChangedError, RemoteError
from dwf.io.source import Identity


def _fmt(n: int) -> str:
    return f"{n:,}"


def why(e: BaseException) -> str:
    """A short cause for a failed request, for a one-line message."""
    name = type(e).__name__
    if isinstance(e, TimeoutError) or "Timeout" in name:
        return "the server did not answer in time (timeout)"
    text = str(e).strip() or name
    if isinstance(e, ConnectionError) or "Connect" in name or "Connection" in text:
        return f"cannot reach the server ({text})"
    return f"{name}: {text}"


def status_of(e: BaseException) -> int | None:
    """The HTTP status an exception carries, if any."""
    status = getattr(e, "status", None) or getattr(e, "code", None)
    return status if isinstance(status, int) else None


def failure(url: str, what: str, e: BaseException) -> DwfError:
    """The dwf error for a failed request (``url`` as messages may show it)."""
    if isinstance(e, DwfError):
        return e
    if isinstance(e, FileNotFoundError) or status_of(e) in (404, 410):
        return RemoteError("not found on the server", path=url)
    if isinstance(e, PermissionError) or status_of(e) in (401, 403):
        return RemoteError(
            f"access denied ({e}); pass credentials in storage_options", path=url
        )
    return RemoteError(f"{what} failed: {why(e)}", path=url)


def changed(url: str, was: Identity, now: Mapping[str, Any]) -> FileChangedError:
    """The error for a file that is not the one opened any more: ``now`` its identity
    (``size`` and validators) as the last response or the store gave it."""
    size = now.get("size")
    if isinstance(size, int) and size != was.size:
        what = f"its size went from {_fmt(was.size)} to {_fmt(size)}"
    else:
        tags = dict(was.tags)
        keys = [k for k in tags if k in now and tags[k] != now[k]]
        what = ", ".join(f"{k} {tags[k]!r} → {now[k]!r}" for k in keys) or "replaced"
    return FileChangedError(
        f"the file changed on the server since it was opened ({what}); open it"
        " again to read the new file",
        path=url,
        opened=was.pair,
        now=(size if isinstance(size, int) else 0, 0),
    )
