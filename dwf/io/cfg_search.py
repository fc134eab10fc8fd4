"""Find the cfg a weights file fits, among the cfg files near it.

When a file does not fit the cfg it was opened with, the right cfg is often close by: a sibling
trial's cfg in the same folder, or the ``cfg/`` folder beside the ``backup/`` folder Darknet
saves checkpoints into. This module lists those cfgs, plans each and keeps the ones the file
fits (:func:`dwf.format.diagnosis.fit_plan`). The work is bounded: at most :data:`MAX_CFGS` files,
none over :data:`MAX_CFG_BYTES`, within :data:`TIME_BUDGET` seconds, so a folder of thousands
of cfgs costs a fraction of a second, not minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from dwf.errors import DwfError
from dwf.format.diagnosis import fit_plan
from dwf.format.dialects import DIALECTS
from dwf.format.header import Header, count_crlf, crlf_suspect
from dwf.format.known import CfgFit
from dwf.format.planner import Plan
from dwf.io.cfgfile import plan as plan_cfg

MAX_CFGS = 64
MAX_CFG_BYTES = 1 << 20
TIME_BUDGET = 2.0
_CRLF_SAMPLE = 1 << 16
# Re-planning with the classes solved costs two more plans per cfg: only for the first few.
_MAX_CLASS_SOLVES = 16


def nearby_cfgs(weights: str, given: str | None = None, limit: int | None = None) -> list[str]:
    """The ``.cfg`` files where a training layout keeps them: the given cfg's folder, the
    weights' folder, its parent and the ``cfg/`` folders of both — at most ``limit``, none
    larger than :data:`MAX_CFG_BYTES`, the given cfg left out."""
    wdir = os.path.dirname(os.path.abspath(weights))
    parent = os.path.dirname(wdir)
    folders = []
    if given:
        folders.append(os.path.dirname(os.path.abspath(given)))
    folders += [wdir, os.path.join(wdir, "cfg"), parent, os.path.join(parent, "cfg")]
    skip = os.path.abspath(given) if given else None
    limit = MAX_CFGS if limit is None else limit
    out: list[str] = []
    if limit <= 0:
        return out
    seen: set[str] = set()
    for folder in folders:
        if folder in seen:
            continue
        seen.add(folder)
        for path in _cfgs_in(folder):
            if path == skip or path in out:
                continue
            out.append(path)
            if len(out) >= limit:
                return out
    return out


def _cfgs_in(folder: str) -> Iterator[str]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(
                (e for e in it if e.name.lower().endswith(".cfg")), key=lambda e: e.name
            )
    except OSError:
        return
    for e in entries:
        try:
            if e.is_file() and e.stat().st_size <= MAX_CFG_BYTES:
                yield os.path.abspath(e.path)
        except OSError:
            continue


def shown(path: str) -> str:
    """A path as the user would type it: relative to the working folder when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return rel if len(rel) < len(path) else path


def search_fits(
    weights: str,
    header: Header,
    size: int,
    *,
    given: str | None = None,
    dialect: str | None = None,
    candidates: list[str] | None = None,
) -> list[CfgFit]:
    """The nearby cfgs (or ``candidates``) that a file of ``size`` bytes fits, best first:
    exact fits, then partial files, then fits with the class count changed. Each cfg is tried
    in ``dialect`` first, then in the other dialects."""
    cands = nearby_cfgs(weights, given) if candidates is None else candidates
    deadline = time.monotonic() + TIME_BUDGET
    first = dialect or "alexeyab"
    others = [d for d in DIALECTS if d != first]
    plans: dict[tuple[str, str], Plan | None] = {}

    def planned(path: str, d: str) -> Plan | None:
        if (path, d) not in plans:
            try:
                plans[path, d] = plan_cfg(path, dialect=d)
            except DwfError:
                plans[path, d] = None
        return plans[path, d]

    found: list[CfgFit] = []
    done: set[str] = set()
    # Cheapest and likeliest first: each cfg as it is, in the dialect asked for; then with its
    # class count solved (two more plans each); then in the other dialects.
    passes = [(first, False)] + [(first, True)] + [(d, False) for d in others]
    solves = 0
    for d, solve in passes:
        if any(f.how == "exact" for f in found):
            break
        for path in cands:
            if path in done or time.monotonic() > deadline:
                continue
            if solve:
                if solves >= _MAX_CLASS_SOLVES:
                    break
                solves += 1
            p = planned(path, d)
            if p is None:
                continue
            fit = fit_plan(p, size, header, shown(path), classes=solve)
            if fit is not None:
                found.append(fit)
                done.add(path)
    order = {"exact": 0, "partial": 1, "classes": 2}
    found.sort(key=lambda f: order[f.how])
    return found


def crlf_counts(
    read: Callable[[int, int], bytes], size: int, head: bytes
) -> tuple[int, int] | None:
    """``(CRLF pairs, lone LF)`` in the whole file when its first bytes look CRLF-translated,
    read with ``read(n, offset)`` through a bounded buffer; ``None`` when they do not.

    The first 64 KiB decide: a translated file holds hundreds of CRLF there and no lone LF; a
    file with no line feed at all there (zeros, a sparse file) is not read further."""
    if not crlf_suspect(head):
        return None
    try:
        sample = read(_CRLF_SAMPLE, 0)
    except OSError:
        return None
    if b"\r\n" not in sample[12:] or not crlf_suspect(sample):
        return None

    def chunks() -> Iterator[bytes]:
        offset = 0
        while offset < size:
            chunk = read(1 << 20, offset)
            if not chunk:
                return
            yield chunk
            offset += len(chunk)

    try:
        return count_crlf(chunks())
    except OSError:
        return None
