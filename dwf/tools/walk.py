"""Which files a list of sources names, and in what order: files, folders and globs, local or
URLs (:func:`expand`), and checkpoints in training order (:func:`checkpoints`).

Local globs and folders are walked here rather than by :mod:`glob`, which follows a symlink
into a directory it is already inside (``cur -> .`` makes ``**`` list one file 41 times, and a
few such links never end). The walk enters a directory at most once per remaining pattern (by
device and inode), and lists each file once (a symlink or a hard link to a file it already
listed is the same file), preferring a name that is not a symlink.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dwf.format.dialects import Dialect
from dwf.format.header import Header, sniff
from dwf.io import remote
from dwf.io.views import pread_all

_GLOB = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")
# Darknet names checkpoints "<cfg name>_<iteration>.weights" (detector.c, classifier.c)
_ITERATION = re.compile(r"_(\d+)$")


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``run_2000`` before ``run_10000`` (checkpoints by iteration)."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


def is_pattern(source: str) -> bool:
    """Whether ``source`` is a glob (``*``, ``?`` or ``[``)."""
    return _GLOB.search(source) is not None


def expand(
    sources: Iterable[str | os.PathLike[str]],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The files ``sources`` name, in order: each a file, a folder (its ``*.weights``,
    ``*.backup`` and ``*.conv.N`` files) or a glob (``**`` included), local or a URL. Folders
    and globs are sorted naturally (``_2000`` before ``_10000``), each file listed once. A glob
    that matches nothing is kept as it is, so that it becomes an error rather than silently
    nothing."""
    out: list[str] = []
    for group in _groups(sources, storage_options):
        out.extend(group)
    return out


def _groups(
    sources: Iterable[str | os.PathLike[str]], storage_options: Mapping[str, Any] | None
) -> list[list[str]]:
    """Per source, the files it names: ``[s]`` for one file, a sorted list for a folder or a
    glob (``[s]`` when it names nothing)."""
    groups: list[list[str]] = []
    for src in sources:
        s = os.fspath(src)
        if remote.is_url(s):
            found = remote.expand(s, storage_options=storage_options)
        elif is_pattern(s):
            found = _once(_glob(s))
        elif os.path.isdir(s):
            found = _once(_folder(s))
        else:
            groups.append([s])
            continue
        groups.append(sorted(found, key=natural_key) if found else [s])
    return groups


def _folder(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return [e.path for e in entries if remote.looks_like_weights(e.name) and _is_file(e)]
    except OSError:
        return []


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _once(paths: Sequence[str]) -> list[str]:
    """``paths`` with each file once (by device and inode); of several names for one file, the
    first that is not a symlink."""
    chosen: dict[tuple[int, int], str] = {}
    out: list[str] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:  # vanished or a dangling link: kept, to become an error row
            out.append(p)
            continue
        key = (st.st_dev, st.st_ino)
        first = chosen.get(key)
        if first is None or (os.path.islink(first) and not os.path.islink(p)):
            chosen[key] = p
    return out + list(chosen.values())


def _glob(pattern: str) -> list[str]:
    """The paths a local glob matches (shell rules: ``*`` and ``?`` within a name, ``**`` any
    number of folders, names starting with ``.`` only when the pattern's part does), entering
    each directory at most once per remaining part of the pattern."""
    drive, rest = os.path.splitdrive(pattern)
    seps = os.sep + (os.altsep or "")
    absolute = rest[:1] in tuple(seps)
    parts = [p for p in re.split("[" + re.escape(seps) + "]", rest) if p]
    if parts[-1:] == ["**"]:  # everything below: the files of every folder under it
        parts.append("*")
    i = 0
    while i < len(parts) and not is_pattern(parts[i]):
        i += 1
    root = drive + (os.sep if absolute else "")
    base = os.path.join(root, *parts[:i]) if parts[:i] else root
    found: list[str] = []
    if i < len(parts):
        _walk(base, parts[i:], set(), found)
    return found


def _walk(
    base: str,
    parts: Sequence[str],
    visited: set[tuple[int, int, int]],
    out: list[str],
    *,
    link: bool = False,
) -> None:
    """Match ``parts`` below the folder ``base`` (``link``: reached through a symlink)."""
    try:
        st = os.stat(base or os.curdir)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    key = (st.st_dev, st.st_ino, len(parts))  # the parts left are a suffix: their count names them
    entered = (st.st_dev, st.st_ino, -1)
    # A real folder may be matched against several parts of a pattern ("**" tries each); a
    # symlink never leads into a folder the walk has already entered.
    if key in visited or (link and entered in visited):
        return
    visited.update((key, entered))
    part, rest = parts[0], parts[1:]
    if part == "**":  # never last (see _glob)
        _walk(base, rest, visited, out)  # no folder at all
        for name, is_link in _names(base, dirs=True):
            _walk(os.path.join(base, name), parts, visited, out, link=is_link)
        return
    if not is_pattern(part):
        target = os.path.join(base, part)
        if rest:
            _walk(target, rest, visited, out, link=os.path.islink(target))
        elif os.path.lexists(target):
            out.append(target)
        return
    hidden = part.startswith(".")
    for name, is_link in _names(base, hidden=hidden):
        if not fnmatch.fnmatch(name, part):
            continue
        path = os.path.join(base, name)
        if rest:
            _walk(path, rest, visited, out, link=is_link)
        else:
            out.append(path)


def _names(base: str, *, hidden: bool = False, dirs: bool = False) -> list[tuple[str, bool]]:
    """The entries of a folder as ``(name, is a symlink)``: real entries before symlinks (so
    that a folder is first entered, and a file first found, by its real path), each group in
    natural order; names starting with ``.`` only with ``hidden``; only folders with ``dirs``."""
    found = []
    try:
        with os.scandir(base or os.curdir) as entries:
            for e in entries:
                if e.name.startswith(".") and not hidden:
                    continue
                try:
                    if dirs and not e.is_dir():
                        continue
                    link = e.is_symlink()
                except OSError:
                    continue
                found.append((link, natural_key(e.name), e.name))
    except OSError:
        return []
    return [(name, link) for link, _, name in sorted(found)]


# -- checkpoints ---------------------------------------------------------------------------------
def checkpoints(
    sources: Iterable[str | os.PathLike[str]],
    *,
    dialect: str | Dialect = "alexeyab",
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The files ``sources`` name, as :func:`expand` finds them, with the files of each folder
    and glob in training order (:func:`checkpoint_key`): by ``seen``, then the iteration in
    the name, then the modification time. Files named one by one keep the order given."""
    given = list(sources)
    out: list[str] = []
    for src, group in zip(given, _groups(given, storage_options), strict=True):
        if len(group) > 1 or group != [os.fspath(src)]:
            keys = {
                p: checkpoint_key(p, dialect=dialect, storage_options=storage_options)
                for p in group
            }
            group = sorted(group, key=keys.__getitem__)
        out.extend(group)
    return out


def iteration(path: str) -> int | None:
    """The training iteration a checkpoint's name carries (``yolov4_2000.weights`` → 2000), or
    ``None`` (``yolov4_last.weights``, ``yolov4.backup``)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    m = _ITERATION.search(stem)
    return int(m.group(1)) if m else None


def checkpoint_key(
    path: str,
    *,
    dialect: str | Dialect = "alexeyab",
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[Any, ...]:
    """Sort key of a checkpoint: its header's ``seen``, then the iteration in its name (a name
    without one after those with one), then its modification time, then its name. A file whose
    header cannot be read sorts after every readable one, by name."""
    seen, mtime = read_seen(path, dialect=dialect, storage_options=storage_options)
    name = natural_key(path)
    if seen is None:
        return (1, 0, 0.0, 0, name)
    it = iteration(path)
    return (0, seen, math.inf if it is None else it, mtime, name)


def read_seen(
    path: str,
    *,
    dialect: str | Dialect = "alexeyab",
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[int | None, int]:
    """``(seen, mtime_ns)`` from a weights file's header (``seen`` is ``None`` when the header
    cannot be read; ``mtime_ns`` is 0 for a URL)."""
    if remote.is_url(path):
        try:
            source = remote.RemoteSource(path, storage_options=storage_options, block_size=512)
            try:
                head = source.read_at(20, 0)
            finally:
                source.close()
        except Exception:  # unreadable: the verb that reads it will say why
            return None, 0
        return _seen(head, dialect), 0
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError):
        return None, 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, 0
        head = pread_all(fd, 20, 0)
    except OSError:
        return None, 0
    finally:
        os.close(fd)
    return _seen(head, dialect), st.st_mtime_ns


def _seen(head: bytes, dialect: str | Dialect) -> int | None:
    if len(head) < 16 or sniff(head):
        return None
    try:
        return Header.decode(head, dialect=dialect).seen
    except Exception:  # a header that cannot be decoded has no seen
        return None
