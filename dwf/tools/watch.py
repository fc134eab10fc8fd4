"""Follow a training run while Darknet writes it (``dwf watch``): :func:`watch` yields one
:class:`Checkpoint` each time a checkpoint file is complete, with the layers that changed most
since the previous one and the findings that appeared.

Darknet saves with ``fopen(name, "wb")``: the file is truncated (the same inode when it
exists), then the header and the arrays are written layer by layer, and ``_last`` is rewritten
so every 100 iterations. So a file is taken as complete when its identity (size, modification
and change times, inode) has not moved for one polling interval and its size fits the cfg; a
rewritten ``_last`` is a new identity and counts again. Polling, not inotify: it works the same
on NFS and on every platform.

Nothing here reads the watched file through a map or holds a view of it: a complete version is
first copied, in bounded pieces (through a :class:`~dwf.io.source.LocalSource`, by the kernel
where it can), into a private folder (and dropped if its identity moved during the copy); the
comparison with the previous checkpoint and the scan read the copies, which no one rewrites,
with streaming reads. Memory is bounded by the read buffers; disk use by
two copies of a checkpoint (this one and the previous one).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, NamedTuple, cast

import attrs
import numpy as np

from dwf.errors import DwfError
from dwf.format.diagnosis import needs
from dwf.format.dialects import Dialect, get_dialect
from dwf.format.header import Header, other_width, sniff
from dwf.format.planner import Plan
from dwf.io import remote
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.opening import find_cfg, open_weights
from dwf.io.reader import WeightsFile
from dwf.io.source import LocalSource
from dwf.tools import walk
from dwf.tools.check import Finding, check
from dwf.tools.diff import diff
from dwf.tools.stats import CHUNK, finite_or_none

# A batch-norm variance below this, against Darknet's epsilon of 1e-5, means the channel's
# input stopped varying: its normalised output is constant.
COLLAPSED = 1e-6


@attrs.frozen
class LayerChange:
    """How much one layer moved between two checkpoints.

    Attributes:
        index, layer, type: the layer's index, name and type.
        rel_l2: the largest relative L2 change of its arrays (``||b - a|| / ||a||``); ``inf``
            when one of them was all zeros in the previous checkpoint (:attr:`from_zeros`).
    """

    index: int
    layer: str
    type: str
    rel_l2: float

    @property
    def from_zeros(self) -> bool:
        """Whether an array of the layer was all zeros before and is not now (no relative
        change can be given: ``rel_l2`` is ``inf``)."""
        return self.rel_l2 == math.inf

    def explain(self) -> str:
        """``conv_12 0.0213``, or ``conv_12 from zeros``."""
        return f"{self.layer} {'from zeros' if self.from_zeros else format(self.rel_l2, '.3g')}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf watch --json``): ``rel_l2`` is ``None`` where ``from_zeros``."""
        out = {k: finite_or_none(v) for k, v in attrs.asdict(self).items()}
        return {**out, "from_zeros": self.from_zeros}


@attrs.frozen
class Checkpoint:
    """One complete checkpoint :func:`dwf.watch` saw (one line of ``dwf watch``).

    Attributes:
        path: the file.
        seen: its header's ``seen`` (images seen in training); ``None`` with an ``error``.
        size: its size in bytes; mtime: its modification time (seconds since the epoch).
        previous, previous_seen: the checkpoint it is compared with (the one seen before it),
            ``None`` for the first.
        changes: the layers that changed most since ``previous``, largest relative L2 first
            (``top`` of them; those that did not change are left out).
        findings: what appeared since ``previous``: :class:`dwf.Finding` s of
            :func:`dwf.check` (errors and warnings: NaN/Inf, negative variances, dead filters
            …) and of the watch: ``variance-collapse`` (half or more of a layer's batch-norm
            variances below 1e-6) and ``stopped-changing`` (a layer that changed up to the
            previous checkpoint and is now bit-identical to it, while others moved; ``array``
            is ``"*"``).
        warnings: from the comparison: ``seen`` went backwards (a restarted run), or the
            previous checkpoint is of a different network.
        error: why a file that stopped changing is not a checkpoint of the cfg (it does not
            fit it, or has no cfg), else ``None``.
    """

    path: str
    seen: int | None
    size: int
    mtime: float
    previous: str | None = None
    previous_seen: int | None = None
    changes: tuple[LayerChange, ...] = ()
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def serious(self) -> bool:
        """Whether a finding is an error (``dwf watch`` then exits 1)."""
        return any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (one line of ``dwf watch --json``)."""
        return {
            "path": self.path,
            "seen": self.seen,
            "size": self.size,
            "mtime": self.mtime,
            "previous": self.previous,
            "previous_seen": self.previous_seen,
            "changes": [c.to_dict() for c in self.changes],
            "findings": [f.to_dict() for f in self.findings],
            "warnings": list(self.warnings),
            "error": self.error,
        }

    def explain(self) -> str:
        """One line: the file, its ``seen``, what moved most since the previous one, the
        findings."""
        if self.error is not None:
            return f"{self.path}: error: {self.error}"
        parts = [f"{self.path}: seen {self.seen:,}"]
        if self.previous is None:
            parts.append("first checkpoint")
        else:
            moved = ", ".join(c.explain() for c in self.changes) or "nothing"
            name = os.path.basename(self.previous)
            parts.append(f"since {name} (seen {self.previous_seen:,}): {moved}")
        for f in self.findings:
            where = f.layer if f.array == "*" else f"{f.layer}.{f.array}"
            parts.append(f"{f.severity} {where}: {f.message}")
        parts.extend(f"warning: {w}" for w in self.warnings)
        return "; ".join(parts)


class _Version(NamedTuple):
    """What identifies one version of a file: a rewrite changes at least one of these.

    Not the source's :class:`~dwf.io.source.Identity`, though it holds it: it is taken by
    polling the path (before any open), must stay still for a polling interval before a file
    counts as complete, and adds the change time; the open (a :class:`LocalSource`) then only
    confirms it still holds, and a copy is read inside the source's consistent read."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _version_of(st: os.stat_result) -> _Version:
    return _Version(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@attrs.define
class _State:
    last: _Version | None = None  # at the last poll
    since: float = 0.0  # when ``last`` was first seen
    done: _Version | None = None  # the version reported (or taken as the start)


@attrs.define
class _Taken:
    """A checkpoint read: its record, its private copy, and what the next one is compared
    with."""

    record: Checkpoint
    copy: str
    plan: Plan
    changed: frozenset[str] | None  # layers that moved since the one before (None: unknown)
    keys: frozenset[tuple[str, str, str]]  # (layer, array, kind) of its findings


def watch(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    interval: float = 1.0,
    timeout: float | None = None,
    count: int | None = None,
    top: int = 5,
    existing: bool = False,
    patience: float = 10.0,
    workdir: str | os.PathLike[str] | None = None,
    ready: Callable[[Checkpoint | None], None] | None = None,
) -> Iterator[Checkpoint]:
    """Follow a training run: a generator of one :class:`Checkpoint` per checkpoint completed,
    in the order they complete (``dwf watch``).

    Args:
        paths: folders (their ``*.weights``, ``*.backup``, ``*.conv.N`` files, looked for again
            at every poll), files (which need not exist yet) and globs; local only.
        cfg, dialect: the network (default: the cfg beside each file, as :func:`dwf.open`
            finds it; a file already there, or named, without one fails the call at once).
        interval: seconds between polls; a file is complete once it has not changed for one.
        timeout: stop after this many seconds (default: never).
        count: stop after this many checkpoints.
        top: how many of the layers that changed most each record names.
        existing: also report the checkpoints already complete when the watch starts (in
            training order); by default the newest of them is only what the first new one is
            compared with.
        patience: seconds a file that does not fit the cfg must stay unchanged before it is
            reported as an error record (a writer may pause; a partial file that ends on a
            layer boundary is never reported).
        workdir: where the private copies of the current and previous checkpoints are kept
            (a fresh folder in it, removed at the end; default: the system's temporary folder).
        ready: called once the watch has looked at what is there, before the first poll, with
            the checkpoint the first new one will be compared with (``None`` if there is none,
            or with ``existing``).

    The work of starting (the first look, the copy of the newest checkpoint) is done by this
    call, so a writer started after it is followed from its first checkpoint. Closing the
    generator (or Ctrl-C) removes the copies.

    Raises:
        DwfError: a path is a URL, or a folder that does not exist; no ``cfg`` was given and
            a file already there (or named) has none beside it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    targets = [os.fspath(p) for p in paths]
    if not targets:
        raise DwfError("watch needs a folder or a file to watch")
    for t in targets:
        if remote.is_url(t):
            raise DwfError("watch follows local files only (it polls their size and times)", path=t)
        if not os.path.exists(t) and not walk.is_pattern(t) and not remote.looks_like_weights(t):
            raise DwfError(
                "not found: no such folder (a file to wait for ends in .weights)", path=t
            )
    if interval <= 0 or (timeout is not None and timeout < 0) or (count is not None and count < 1):
        raise DwfError("interval must be positive, timeout not negative, count 1 or more")
    watcher = _Watcher(targets, cfg, get_dialect(dialect), top, patience, workdir)
    follow = _follow(watcher, interval, timeout, count, existing, ready)
    next(follow)  # the first look and the copy of the newest checkpoint happen now
    return cast(Iterator[Checkpoint], follow)


def _follow(
    w: _Watcher,
    interval: float,
    timeout: float | None,
    count: int | None,
    existing: bool,
    ready: Callable[[Checkpoint | None], None] | None,
) -> Generator[Checkpoint | None, None, None]:
    try:
        first = w.start(existing)
        if ready is not None:
            ready(w.previous.record if w.previous is not None and not existing else None)
        yield None
        deadline = None if timeout is None else time.monotonic() + timeout
        done = 0
        pending = iter(first)
        while True:
            for record in pending:
                yield record
                if record.error is None:
                    done += 1
                    if count is not None and done >= count:
                        return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            time.sleep(interval if deadline is None else min(interval, deadline - now))
            pending = iter(w.poll())
    finally:
        w.close()


class _Watcher:
    def __init__(
        self,
        targets: list[str],
        cfg: str | os.PathLike[str] | Plan | None,
        dialect: Dialect,
        top: int,
        patience: float,
        workdir: str | os.PathLike[str] | None,
    ) -> None:
        self.targets = targets
        self.cfg = cfg
        self.dialect = dialect
        self.top = top
        self.patience = patience
        self.states: dict[str, _State] = {}
        self.plans: dict[str, Plan] = {}
        self.previous: _Taken | None = None
        self.copies = 0
        try:
            if workdir is not None:
                os.makedirs(workdir, exist_ok=True)
            self.folder = tempfile.mkdtemp(prefix="dwf-watch-", dir=workdir)
        except OSError as e:
            where = os.fspath(workdir) if workdir is not None else tempfile.gettempdir()
            raise DwfError(
                f"cannot make the watch's folder: {e.strerror or e}", path=where
            ) from None

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- what is there -----------------------------------------------------------------------
    def candidates(self) -> list[str]:
        found: list[str] = []
        for t in self.targets:
            if os.path.isdir(t):
                found.extend(walk.expand([t]) if _holds_weights(t) else [])
            elif walk.is_pattern(t):
                found.extend(p for p in walk.expand([t]) if p != t)
            else:
                found.append(t)
        return list(dict.fromkeys(found))

    def start(self, existing: bool) -> list[Checkpoint]:
        """Look at what is there: complete checkpoints are reported (``existing``) or the
        newest becomes the previous one; the others are followed from now."""
        now = time.monotonic()
        complete: list[tuple[tuple[Any, ...], str, _Version, Header]] = []
        for path in self.candidates():
            if self.cfg is None:  # a missing cfg is said now, not once the file settles
                _cfg_beside(path)
            v = _version(path)
            state = self.states[path] = _State(v, now)
            if v is None:
                continue
            verdict = self._verdict(path, v)
            if isinstance(verdict, Header):
                state.done = v
                key = (verdict.seen, _iteration(path), v.mtime_ns, walk.natural_key(path))
                complete.append((key, path, v, verdict))
        complete.sort(key=lambda x: x[0])
        if not existing:
            for _, path, v, header in reversed(complete):
                taken = self._take(path, v, header, record=False)
                if taken is not None:
                    self.previous = taken
                    break
            return []
        out = []
        for _, path, v, header in complete:
            taken = self._take(path, v, header)
            if taken is not None:
                out.append(taken.record)
        return out

    def poll(self) -> list[Checkpoint]:
        """One look: the versions that stopped changing since the last look and fit the cfg,
        in training order, compared one after the other."""
        now = time.monotonic()
        ready: list[tuple[tuple[Any, ...], str, _Version, Header]] = []
        out: list[Checkpoint] = []
        for path in self.candidates():
            state = self.states.setdefault(path, _State())
            v = _version(path)
            if v != state.last:  # new, changed, or gone: wait for it to settle
                state.last, state.since = v, now
                continue
            if v is None or v == state.done:
                continue
            verdict = self._verdict(path, v)
            if isinstance(verdict, Header):
                key = (verdict.seen, _iteration(path), v.mtime_ns, walk.natural_key(path))
                ready.append((key, path, v, verdict))
            elif verdict is not None and (
                now - state.since >= self.patience
                or (self.cfg is None and find_cfg(path)[0] is None)  # no use waiting
            ):
                state.done = v
                out.append(Checkpoint(path, None, v.size, v.mtime_ns / 1e9, error=verdict))
        ready.sort(key=lambda x: x[0])
        for _, path, v, header in ready:
            try:
                taken = self._take(path, v, header)
            except DwfError as e:  # read from a private copy: not a change, a real failure
                self.states[path].done = v
                out.append(Checkpoint(path, None, v.size, v.mtime_ns / 1e9, error=e.reason))
                continue
            if taken is not None:
                self.states[path].done = v
                out.append(taken.record)
        return out

    # -- one file ------------------------------------------------------------------------------
    def _plan(self, path: str) -> Plan:
        cfg = self.cfg
        if isinstance(cfg, Plan):
            return cfg
        if cfg is None:
            cfg = _cfg_beside(path)
        key = os.fspath(cfg)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = plan_cfg(cfg, dialect=self.dialect)
        return plan

    def _verdict(self, path: str, v: _Version) -> Header | str | None:
        """The header of a complete checkpoint; ``None`` for a file that may still be written
        (or a partial file: it ends on a layer boundary); else why it is not a checkpoint."""
        try:
            plan = self._plan(path)
            head = _head(path, v)
        except DwfError as e:
            return e.reason
        if head is None:
            return None
        if len(head) < 16 or sniff(head):
            return f"not a Darknet weights file ({sniff(head) or f'{v.size} bytes'})"
        try:
            header = Header.decode(head, dialect=self.dialect)
        except DwfError as e:
            return e.reason
        n = plan.total_floats
        if v.size == header.size + 4 * n:
            return header
        other = other_width(header.size)
        if v.size == other + 4 * n and len(head) >= other:  # the writer's header-width bug
            return Header.decode(head, dialect=self.dialect, size=other)
        body = v.size - header.size
        if 0 <= body < 4 * n and body % 4 == 0 and body // 4 in plan.boundaries():
            return None
        cfg = os.path.basename(plan.cfg_path) if plan.cfg_path else "the cfg"
        return (
            f"{v.size:,} bytes, but {cfg} {needs(header.size, n)}: not a checkpoint of this"
            " network, or cut short"
        )

    def _copy(self, path: str, v: _Version) -> str | None:
        """A private copy of version ``v`` of ``path``, or ``None`` when the file moved away
        from ``v`` before the copy was complete."""
        self.copies += 1
        dest = os.path.join(self.folder, f"{self.copies}.weights")
        try:
            src = LocalSource.open(path)
            with src:
                if _version_of(os.fstat(_fd(src))) != v:
                    return None
                with src.consistent(), open(dest, "wb") as out:  # one version, or FileChangedError
                    done = src.copy_to(out.fileno(), 0, v.size, 0)
                if done == v.size and _version_of(os.fstat(_fd(src))) == v:
                    return dest
        except (DwfError, OSError):  # gone, not a regular file, or moved on: not this version
            pass
        with contextlib.suppress(OSError):
            os.unlink(dest)
        return None

    def _take(
        self, path: str, v: _Version, header: Header, *, record: bool = True
    ) -> _Taken | None:
        copy = self._copy(path, v)
        if copy is None:
            return None
        plan = self._plan(path)
        prev = self.previous
        with open_weights(
            copy, plan, dialect=self.dialect, header_size=header.size, backend="pread"
        ) as f:
            changes: tuple[LayerChange, ...] = ()
            changed: frozenset[str] | None = None
            warnings: tuple[str, ...] = ()
            found: list[Finding] = []
            if prev is not None:
                with open_weights(prev.copy, prev.plan, dialect=self.dialect, backend="pread") as g:
                    report = diff(g, f)
                moved = [x for x in report.layers() if x[4] != 0]
                moved.sort(key=lambda x: -x[4] if not math.isnan(x[4]) else 0.0)
                changes = tuple(LayerChange(i, n, t, rel) for i, n, t, _, rel in moved[: self.top])
                changed = frozenset(d.layer for d in report.changed)
                warnings = tuple(
                    w.replace(prev.copy, prev.record.path).replace(copy, path)
                    for w in report.warnings
                )
                if prev.changed is not None and changed:
                    found += _stopped(f, prev.changed - changed)
            if record:
                found += [x for x in check(f).findings if x.severity in ("error", "warning")]
                found += _collapsed(f)
        keys = frozenset((x.layer, x.array, x.kind) for x in found)
        seen_before = prev.keys if prev is not None else frozenset()
        new = tuple(x for x in found if (x.layer, x.array, x.kind) not in seen_before)
        rec = Checkpoint(
            path,
            header.seen,
            v.size,
            v.mtime_ns / 1e9,
            prev.record.path if prev is not None else None,
            prev.record.seen if prev is not None else None,
            changes,
            new,
            warnings,
        )
        taken = _Taken(rec, copy, plan, changed, keys)
        if prev is not None:
            with contextlib.suppress(OSError):
                os.unlink(prev.copy)
        self.previous = taken
        return taken


def _cfg_beside(path: str) -> str:
    """The cfg beside a checkpoint (:func:`dwf.io.opening.find_cfg`).

    Raises:
        DwfError: there is none.
    """
    found, looked = find_cfg(path)
    if found is None:
        names = ", ".join(os.path.basename(c) for c in looked)
        raise DwfError(
            f"no cfg given and none found beside it (looked for {names}); pass cfg=..."
            " (dwf: --cfg)",
            path=path,
        )
    return found


def _holds_weights(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(remote.looks_like_weights(e.name) for e in entries)
    except OSError:
        return False


def _iteration(path: str) -> float:
    it = walk.iteration(path)
    return math.inf if it is None else it


def _version(path: str) -> _Version | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return _version_of(st) if stat.S_ISREG(st.st_mode) else None


def _fd(src: LocalSource) -> int:
    fd = src.fileno()
    assert fd is not None  # a local file has one
    return fd


def _head(path: str, v: _Version) -> bytes | None:
    """The first bytes of version ``v`` of ``path`` (``None`` if it moved on meanwhile)."""
    try:
        src = LocalSource.open(path)
        with src:
            head = src.read_at(20, 0)
            return head if _version_of(os.fstat(_fd(src))) == v else None
    except (DwfError, OSError):  # gone, not a regular file, or unreadable: not this version
        return None


def _stopped(f: WeightsFile, layers: frozenset[str]) -> list[Finding]:
    return [
        Finding(
            lp.index,
            lp.name,
            lp.type,
            "*",
            "stopped-changing",
            "warning",
            1,
            "stopped changing: bit-identical to the previous checkpoint, though it changed"
            " before and other layers still move (frozen by the cfg, or no gradient)",
        )
        for lp in f.stored
        if lp.name in layers
    ]


def _collapsed(f: WeightsFile) -> list[Finding]:
    out = []
    for lp in f.stored:
        for spec in lp.arrays:
            if spec.name.rpartition(".")[2] != "rolling_variance" or not spec.count:
                continue
            low = 0
            for c in f.iter_array_chunks(spec, CHUNK):
                low += int(np.count_nonzero((c >= 0) & (c < COLLAPSED)))
            if 2 * low >= spec.count:
                out.append(
                    Finding(
                        lp.index,
                        lp.name,
                        lp.type,
                        spec.name,
                        "variance-collapse",
                        "warning",
                        low,
                        f"{low:,} of {spec.count:,} batch-norm variances are below"
                        f" {COLLAPSED:g}: those channels' inputs stopped varying, their"
                        " outputs are constant",
                    )
                )
    return out
