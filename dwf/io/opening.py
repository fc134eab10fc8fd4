"""Opening a weights file: find its cfg, read and check its header, fit its size to the plan
(with a diagnosed error when it does not fit), and hand back a :class:`dwf.WeightsFile` — from a
local path (one read-only map) or a URL (``backend="remote"``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dwf.errors import (
    CfgNotFoundError,
    DwfError,
    HeaderError,
    SizeMismatchError,
    WeightsNotFoundError,
)
from dwf.format.dialects import Dialect, get_dialect
from dwf.format.header import Header, other_width, sniff
from dwf.format.planner import Plan, cfg_text
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.reader import Backend, WeightsFile
from dwf.io.views import pread_all

if TYPE_CHECKING:
    from dwf.format.known import CfgFit

# A string, not a compiled pattern: re compiles it on the first use (find_cfg), not at import.
_CHECKPOINT_SUFFIX = r"(_last|_best|_final|_\d+)$"


def find_cfg(weights: str) -> tuple[str | None, list[str]]:
    """The cfg beside a weights file, by name: ``yolov4.weights`` → ``yolov4.cfg``.

    Also strips checkpoint suffixes (``yolov4_last``, ``yolov4_1000``) and partial-file
    suffixes (``darknet53.conv.74`` → ``darknet53.cfg``). Returns the cfg found (or ``None``)
    and the candidates looked for.
    """
    p = Path(weights)
    stems: list[str] = []
    name = p.name
    while True:
        stem, dot, _ = name.rpartition(".")
        if not dot or not stem:
            break
        stems.append(stem)
        name = stem
    if not stems:  # no extension at all: "yolov4" → yolov4.cfg
        stems.append(p.name)
    for s in list(stems):
        base = s
        while True:
            stripped = re.sub(_CHECKPOINT_SUFFIX, "", base)
            if stripped == base or not stripped:
                break
            stems.append(stripped)
            base = stripped
        if s.endswith(".conv"):
            stems.append(s[: -len(".conv")])
    seen: list[str] = []
    for s in stems:
        cand = str(p.with_name(s + ".cfg"))
        if cand not in seen:
            seen.append(cand)
    for cand in seen:
        if os.path.isfile(cand):
            return cand, seen
    return None, seen


def _resolve_plan(
    path: str,
    head: bytes,
    size: int,
    cfg: str | os.PathLike[str] | Plan | None,
    dialect: Dialect,
    header: Header | None = None,
) -> Plan:
    if isinstance(cfg, Plan):
        return cfg
    if cfg is None:
        found, looked = find_cfg(path)
        if found is None:
            folder = Path(path).parent
            try:
                others = sorted(x.name for x in folder.glob("*.cfg"))[:8]
            except OSError:
                others = []
            hint = f"; cfg files there: {', '.join(others)}" if others else ""
            if header is not None and others:
                from dwf.io.cfg_search import search_fits  # only to explain

                fits = search_fits(path, header, size, dialect=dialect.name)
                if fits:
                    hint = "; " + _fits_hint(path, fits) + hint
            from dwf.format.known import identify_head  # the table: only to explain

            ident = identify_head(path, head, size)
            if ident.matches:
                hint += "; by its size " + ident.explain().split("; ", 1)[1]
            raise CfgNotFoundError(
                "no cfg given and none found beside the weights (looked for "
                + ", ".join(Path(c).name for c in looked)
                + f"); pass cfg=... (dwf: --cfg){hint}",
                path=path,
            )
        cfg = found
    return plan_cfg(cfg, dialect=dialect)


def _fits_hint(path: str, fits: list[CfgFit]) -> str:
    """What to pass for a file without its cfg, from the cfgs beside it that it fits: every one
    that fits as well as the best; for a fit with another class count, the command that
    writes that cfg (the cfg as it is would not read the file)."""
    best = [f for f in fits if f.how == fits[0].how]
    said = "; ".join(f.describe() for f in best)
    if fits[0].how != "classes":
        cfgs = " or ".join(f"cfg={f.cfg!r}" for f in best)
        return f"this file {said}: pass {cfgs} (dwf: --cfg)"
    out = os.path.splitext(path)[0] + ".cfg"
    return (
        f"this file {said}, not as written: write that cfg with the file's class count"
        f" (dwf identify {path} --write-cfg {out}), then it is found beside the weights"
    )


def open_weights(
    path: str | os.PathLike[str],
    cfg: str | os.PathLike[str] | Plan | None = None,
    *,
    dialect: str | Dialect = "alexeyab",
    strict: bool = True,
    header_size: int | None = None,
    backend: Backend = "mmap",
    copy: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> WeightsFile:
    """Open a Darknet weights file lazily.

    Args:
        path: the ``.weights`` file (or a partial ``*.conv.N`` file, or a ``.backup``).
        cfg: its cfg file, or a :class:`dwf.Plan`; ``None`` looks for the ``.cfg`` with the
            same stem beside the weights (also without ``_last``/``_1000``/``.conv.N``).
        dialect: ``"alexeyab"`` (default; also hank-ai) or ``"pjreddie"``.
        strict: raise :class:`dwf.SizeMismatchError` when the size does not fit the cfg;
            with ``False`` the file opens anyway and the layers it holds completely are
            readable.
        header_size: force a 16- or 20-byte header instead of Darknet's version rule.
        backend: ``"mmap"`` (default): one read-only map, zero-copy views. ``"pread"``: every
            access reads the array with ``os.pread`` into new (read-only) memory — slower, but
            it can never fault, even if the file is truncated while open.
        copy: ``True`` is the same as ``backend="pread"``.
        storage_options: for a URL (``https://``, ``s3://`` … any fsspec URL; the ``remote``
            extra): options passed to fsspec, e.g. ``{"key": …, "secret": …,
            "client_kwargs": {"endpoint_url": …}}``. A URL is read with ``backend="remote"``:
            only the bytes of the arrays used are fetched (range requests through a bounded
            cache), as owned read-only copies; ``cfg`` may be a URL too (docs/remote.md).

    Every view is handed out only after checking that the file did not change on disk since it
    was opened (:class:`dwf.FileChangedError` otherwise).

    Raises:
        CfgError: the cfg cannot be found, read or loaded.
        HeaderError: the file is not a Darknet weights file.
        SizeMismatchError: the file does not fit the cfg (``strict=True``).
    """
    spath = os.fspath(path)
    # "://" first: a local path never pays for importing the remote backend (regexes, fsspec)
    if backend == "remote" or ("://" in spath and _is_url(spath)):
        return _open_remote(spath, cfg, get_dialect(dialect), strict, header_size, storage_options)
    if copy:
        backend = "pread"
    if backend not in ("mmap", "pread"):
        raise DwfError(f"backend must be 'mmap' or 'pread', not {backend!r}")
    d = get_dialect(dialect)
    # The weights file is checked before the cfg is looked for, so a mistyped, unreadable or
    # non-weights path is reported as such rather than as "no cfg found beside it".
    fd = _open_fd(spath)
    try:
        size = os.fstat(fd).st_size
        head = pread_all(fd, 512, 0)
        header = _decode_header(spath, head, d, header_size)
        plan = _resolve_plan(spath, head, size, cfg, d, header)
        header, partial, mismatch = _fit(
            spath, head, header, size, plan, d, header_size, strict, fd
        )
        return WeightsFile(
            spath, plan, header, size, partial=partial, mismatch=mismatch, fd=fd, backend=backend
        )
    except BaseException:
        os.close(fd)
        raise


def _open_fd(path: str) -> int:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise DwfError("is a directory, not a weights file", path=path)
        if not stat.S_ISREG(st.st_mode):
            raise DwfError("not a regular file", path=path)
        # Non-blocking, then checked again: a FIFO swapped in after the stat cannot block.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DwfError("not a regular file", path=path)
        return fd
    except DwfError:  # a ValueError itself: must not be re-worded by the clause below
        raise
    except FileNotFoundError:
        raise WeightsNotFoundError("weights file not found", path=path) from None
    except PermissionError:
        raise DwfError("permission denied", path=path) from None
    except OSError as e:
        raise DwfError(f"cannot open: {e.strerror or e}", path=path) from None
    except ValueError as e:  # a NUL byte in the path
        raise DwfError(f"{path!r}: not a usable file name: {e}", path=path) from None


def _decode_header(path: str, head: bytes, d: Dialect, header_size: int | None) -> Header:
    what = sniff(head)
    if len(head) < 16 or what:
        raise HeaderError(
            f"not a Darknet weights file: {what or f'only {len(head)} bytes'}",
            path=path,
        )
    try:
        return Header.decode(head, dialect=d, size=header_size, path=path)
    except HeaderError:
        raise
    except Exception as e:  # pragma: no cover - decode only raises HeaderError
        raise HeaderError(f"unreadable header: {e}", path=path) from None


def _fit(
    path: str,
    head: bytes,
    header: Header,
    size: int,
    plan: Plan,
    d: Dialect,
    forced: int | None,
    strict: bool,
    fd: int | None = None,
) -> tuple[Header, bool, str | None]:
    """Validate the header width against the file size (docs/format.md §1.6). With ``fd`` (a local
    file), a mismatch also looks for the cfgs beside the file that it fits, and for a CRLF
    translation."""
    n = plan.total_floats
    if size == header.size + 4 * n:
        return header, False, None
    other = other_width(header.size)
    if forced is None and size == other + 4 * n and len(head) >= other:
        note = (
            f"the version {header.version} implies a {header.size}-byte header, but the file"
            f" fits the cfg exactly with a {other}-byte one (a known Darknet writer bug);"
            f" read with {other} bytes"
        )
        return Header.decode(head, dialect=d, size=other, path=path, note=note), False, None
    body = size - header.size
    if 0 <= body < 4 * n and body % 4 == 0:
        floats = body // 4
        # 0 counts too: `darknet partial cfg weights out 0` writes a header and nothing else.
        if floats in plan.boundaries():
            return header, True, None
    from dwf.format.diagnosis import diagnose  # only when the size does not match

    fits: list[CfgFit] = []
    crlf = None
    if fd is not None:
        from dwf.io import cfg_search

        fits = cfg_search.search_fits(path, header, size, given=plan.cfg_path, dialect=plan.dialect)
        local = fd
        crlf = cfg_search.crlf_counts(lambda n, offset: pread_all(local, n, offset), size, head)
    diagnosis = diagnose(path, head, header, size, plan, fits=fits, crlf=crlf)
    message = diagnosis.explain()
    if strict:
        raise SizeMismatchError(
            message,
            path=path,
            expected_size=diagnosis.expected_size,
            actual_size=size,
            header_size=header.size,
            first_unfilled=diagnosis.first_unfilled,
            diagnosis=diagnosis,
        )
    return header, False, message


@contextlib.contextmanager
def opened(
    src: str | os.PathLike[str] | WeightsFile,
    cfg: str | os.PathLike[str] | Plan | None = None,
    **options: Any,
) -> Iterator[WeightsFile]:
    """``src`` if it is an open file (left open), else ``src`` opened with ``cfg`` and
    ``options`` as :func:`open_weights` takes them (and closed afterwards): how every verb that
    works on a file accepts either a path or an open file."""
    if isinstance(src, WeightsFile):
        yield src
        return
    with open_weights(src, cfg, **options) as f:
        yield f


# -- backend="remote" ---------------------------------------------------------------------------
def _is_url(path: str) -> bool:
    from dwf.io import remote

    return remote.is_url(path)


def _remote_plan(
    url: str,
    head: bytes,
    size: int,
    cfg: str | os.PathLike[str] | Plan | None,
    d: Dialect,
    storage_options: Mapping[str, Any] | None,
) -> Plan:
    """The plan of a remote file: ``cfg`` a Plan, a local path or a URL; or, when ``None``,
    the cfg beside it on the server, found by the same names as :func:`find_cfg`."""
    from dwf.format.known import identify_head
    from dwf.io import remote

    if isinstance(cfg, Plan):
        return cfg
    if cfg is None:
        base, _, name = url.rpartition("/")
        _, looked = find_cfg(name)
        candidates = [f"{base}/{c}" for c in looked]
        cfg = next(
            (c for c in candidates if remote.exists(c, storage_options=storage_options)), None
        )
        if cfg is None:
            ident = identify_head(url, head, size)
            hint = "; by its size " + ident.explain().split("; ", 1)[1] if ident.matches else ""
            raise CfgNotFoundError(
                "no cfg given and none found beside the weights on the server (looked for "
                + ", ".join(looked)
                + f"); pass cfg=... (dwf: --cfg){hint}",
                path=url,
            )
    scfg = os.fspath(cfg)
    if not remote.is_url(scfg):
        return plan_cfg(scfg, dialect=d)
    data = remote.read_bytes(scfg, storage_options=storage_options)
    return Plan.from_text(cfg_text(data, scfg), dialect=d, path=scfg)


def _open_remote(
    url: str,
    cfg: str | os.PathLike[str] | Plan | None,
    d: Dialect,
    strict: bool,
    header_size: int | None,
    storage_options: Mapping[str, Any] | None,
) -> WeightsFile:
    from dwf.io import remote

    source = remote.RemoteSource(url, storage_options=storage_options)
    try:
        head = source.pread(512, 0)
        header = _decode_header(url, head, d, header_size)
        plan = _remote_plan(url, head, source.size, cfg, d, storage_options)
        header, partial, mismatch = _fit(
            url, head, header, source.size, plan, d, header_size, strict
        )
        return WeightsFile(
            url,
            plan,
            header,
            source.size,
            partial=partial,
            mismatch=mismatch,
            fd=-1,
            source=source,
        )
    except BaseException:
        source.close()
        raise
