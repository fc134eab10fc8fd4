"""Opening a weights file: find its cfg, read and check its header, fit its size to the plan
(with a diagnosed error when it does not fit), and hand back a :class:`dwf.WeightsFile` — from a
local path (one read-only map) or a URL (``backend="remote"``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dwf.errors import (
    CfgNotFoundError,
    DwfError,
    HeaderError,
    SizeMismatchError,
)
from dwf.format.dialects import Dialect, get_dialect
from dwf.format.header import Header, other_width, sniff
from dwf.format.planner import Plan
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.reader import Backend, WeightsFile
from dwf.io.source import ByteSource, LocalSource

if TYPE_CHECKING:
    from dwf.format.header_width import WidthJudgement
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
    source: ByteSource,
    head: bytes,
    cfg: str | os.PathLike[str] | Plan | None,
    dialect: Dialect,
    header: Header,
    storage_options: Mapping[str, Any] | None,
) -> Plan:
    """The plan of the file ``source`` reads: ``cfg`` a Plan, a path or a URL; or, when
    ``None``, the cfg beside the file (on disk or on the server), by the names
    :func:`find_cfg` looks for."""
    if isinstance(cfg, Plan):
        return cfg
    if cfg is None:
        # the names a cfg beside it may have (a URL's query, which signs this file only, aside)
        _, looked = find_cfg(source.local_path or source.name.split("?", 1)[0])
        names = [Path(c).name for c in looked]
        found = next((loc for loc in map(source.beside, names) if loc is not None), None)
        if found is None:
            raise CfgNotFoundError(
                "no cfg given and none found beside the weights"
                + ("" if source.local_path is not None else " on the server")
                + f" (looked for {', '.join(names)}); pass cfg=... (dwf: --cfg)"
                + _no_cfg_hint(source, head, header, dialect),
                path=source.name,
            )
        cfg = found
    scfg = os.fspath(cfg)
    if "://" in scfg and _is_url(scfg):  # a local cfg never imports the remote backend
        from dwf.io import remote

        text, name = remote.read_cfg_text(scfg, storage_options=storage_options)
        return Plan.from_text(text, dialect=dialect, path=name)
    return plan_cfg(scfg, dialect=dialect)


def _no_cfg_hint(source: ByteSource, head: bytes, header: Header, dialect: Dialect) -> str:
    """What may help when no cfg was found: the cfgs in the folder and those the file fits
    (on disk), and the known networks of this size."""
    hint = ""
    local = source.local_path
    if local is not None:
        try:
            others = sorted(x.name for x in Path(local).parent.glob("*.cfg"))[:8]
        except OSError:
            others = []
        hint = f"; cfg files there: {', '.join(others)}" if others else ""
        if others:
            from dwf.io.cfg_search import search_fits  # only to explain

            fits = search_fits(local, header, source.size, dialect=dialect.name)
            if fits:
                hint = "; " + _fits_hint(local, fits) + hint
    from dwf.format.known import identify_head  # the table: only to explain

    ident = identify_head(source.name, head, source.size)
    if ident.matches:
        hint += "; by its size " + ident.explain().split("; ", 1)[1]
    return hint


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
        backend: ``"mmap"`` (default): zero-copy views of one read-only map, made with the
            first view under a Linux file lease, so that a view held keeps its values whatever
            another process does to the file; where no lease can be had (the file is being
            written, a network file system, not Linux …) each view is an owned copy
            (``f.view_mode`` says which; docs/robustness.md). ``"pread"``: every access reads
            the array with ``os.pread`` into new (read-only) memory.
        copy: ``True`` is the same as ``backend="pread"``.
        storage_options: for a URL (``https://``, ``s3://`` … any fsspec URL; the ``remote``
            extra): options passed to fsspec, e.g. ``{"key": …, "secret": …,
            "client_kwargs": {"endpoint_url": …}}``. A URL is read with ``backend="remote"``:
            only the bytes of the arrays used are fetched (range requests through a bounded
            cache), as owned read-only copies; ``cfg`` may be a URL too (docs/remote.md).

    Every view is handed out only after checking that the file did not change on disk since it
    was opened (:class:`dwf.FileChangedError` otherwise); views handed out keep their values.

    Raises:
        CfgError: the cfg cannot be found, read or loaded.
        HeaderError: the file is not a Darknet weights file.
        SizeMismatchError: the file does not fit the cfg (``strict=True``).
    """
    spath = os.fspath(path)
    # "://" first: a local path never pays for importing the remote backend (regexes, fsspec)
    source: ByteSource
    if backend == "remote" or ("://" in spath and _is_url(spath)):
        from dwf.io import remote

        backend = "remote"
        source = remote.RemoteSource(spath, storage_options=storage_options)
    else:
        if copy:
            backend = "pread"
        if backend not in ("mmap", "pread"):
            raise DwfError(f"backend must be 'mmap' or 'pread', not {backend!r}")
        # The weights file is checked before the cfg is looked for, so a mistyped, unreadable or
        # non-weights path is reported as such rather than as "no cfg found beside it".
        source = LocalSource.open(spath)
    d = get_dialect(dialect)
    try:
        head = source.read_at(512, 0)
        header = _decode_header(source.name, head, d, header_size)
        plan = _resolve_plan(source, head, cfg, d, header, storage_options)
        header, partial, mismatch = _fit(
            source.name,
            head,
            header,
            source.size,
            plan,
            d,
            header_size,
            strict,
            source.read_at,
            nearby=source.local_path is not None,
        )
        # The header is part of what every whole-file read hands on: checked at its end too.
        source.watch(0, head[: header.size])
        return WeightsFile(
            plan, header, source, partial=partial, mismatch=mismatch, backend=backend
        )
    except BaseException:
        source.close()
        raise


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
    read_at: Callable[[int, int], bytes] | None = None,
    nearby: bool = False,
) -> tuple[Header, bool, str | None]:
    """Validate the header width against the file size (docs/format.md §1.6). ``read_at(n,
    offset)`` reads the file's bytes: when the size fits the cfg with either header width, the
    values decide which (docs/format.md §1.5). With ``nearby`` (a local file), a mismatch also
    looks for the cfgs beside the file that it fits, and for a CRLF translation."""
    n = plan.total_floats
    if size == header.size + 4 * n:
        return header, False, None
    other = other_width(header.size)
    judged = None
    fits_other = (size - other) // 4 if size >= other and (size - other) % 4 == 0 else -1
    if forced is None and len(head) >= 20 and 0 < fits_other <= n:
        if fits_other == n or fits_other in plan.boundaries():
            judged = _judge_width(head, header.size, size, fits_other, plan, read_at)
        if judged is not None and judged.chosen == other and fits_other == n:
            note = (
                f"the version {header.version} implies a {header.size}-byte header, but the file"
                f" fits the cfg exactly with a {other}-byte one (a known Darknet writer bug) and"
                f" its values agree: read with {other} bytes"
            )
            return Header.decode(head, dialect=d, size=other, path=path, note=note), False, None
    body = size - header.size
    if 0 <= body < 4 * n and body % 4 == 0:
        floats = body // 4
        # 0 counts too: `darknet partial cfg weights out 0` writes a header and nothing else.
        if floats in plan.boundaries():
            return header, True, None
    from dwf.format.diagnosis import Context, diagnose  # only when the size does not match

    fits: list[CfgFit] = []
    crlf = None
    if nearby and read_at is not None:
        from dwf.io import cfg_search

        fits = cfg_search.search_fits(path, header, size, given=plan.cfg_path, dialect=plan.dialect)
        crlf = cfg_search.crlf_counts(read_at, size, head)
    diagnosis = diagnose(Context(path, head, header, size, plan, tuple(fits), crlf, judged))
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


def _judge_width(
    head: bytes,
    rule: int,
    size: int,
    floats: int,
    plan: Plan,
    read_at: Callable[[int, int], bytes] | None,
) -> WidthJudgement:
    """Both readings of a file that fits the cfg (or ends on a layer boundary) with the header
    width its version does not imply, weighed by its values (a bounded number of batch-norm
    variance arrays, one read each)."""
    from dwf.format import header_width  # only for a size that fits both widths

    samples = []
    if read_at is not None:
        for probe in header_width.probes(plan, size):
            samples.append((probe, read_at(probe.nbytes, probe.offset)))
    return header_width.judge(head, rule, size, floats, samples)


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
