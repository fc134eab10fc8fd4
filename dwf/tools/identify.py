"""Say which known network a weights file is, without its cfg: :func:`identify`,
:func:`identify_many`.

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file, confirms a
suspected CRLF translation on the whole file, and looks for cfg files beside it that it fits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import attrs

from dwf.errors import DwfError
from dwf.format.known import CfgFit, Identification, identify_head
from dwf.io.cfg_search import crlf_counts, search_fits

# Files a folder holds beside weights, which identify_many skips.
_NOT_WEIGHTS = (
    ".cfg",
    ".txt",
    ".md",
    ".names",
    ".data",
    ".py",
    ".json",
    ".yaml",
    ".yml",
    ".jpg",
    ".jpeg",
    ".png",
    ".csv",
    ".log",
    ".sh",
    ".html",
    ".ipynb",
)
MAX_FILES = 1000


def identify(path: str | os.PathLike[str], *, nearby: bool = True) -> Identification:
    """Say which known network a weights file is, from its header and size alone.

    With ``nearby`` (default) also the cfg files beside it (its folder, the parent folder and
    their ``cfg/`` folders) that it fits are listed in :attr:`Identification.fits`.

    Raises:
        DwfError: the file cannot be read.
    """
    spath = os.fspath(path)
    try:
        size = os.path.getsize(spath)
        with open(spath, "rb") as fh:
            head = fh.read(512)

            def read(n: int, offset: int) -> bytes:
                fh.seek(offset)
                return fh.read(n)

            crlf = crlf_counts(read, size, head)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"{spath}: cannot read: {why}", path=spath) from None
    ident = identify_head(spath, head, size)
    if crlf is not None and crlf[0] and not crlf[1]:
        before = identify_head(spath, head, size - crlf[0])
        what = (
            f"the file was CRLF-translated (copied in text mode): each of its {crlf[0]:,} 0A"
            f" bytes became 0D 0A; replace every 0D 0A with 0A to restore the"
            f" {size - crlf[0]:,}-byte original"
        )
        fits: tuple[CfgFit, ...] = ()
        if before.header is not None:
            fits = tuple(search_fits(spath, before.header, size - crlf[0])) if nearby else ()
        if before.matches or fits:
            what += ", which " + attrs.evolve(before, fits=fits).explain().split("; ", 1)[1]
        return attrs.evolve(before, size=size, problem=what, fits=fits)
    if nearby and ident.header is not None and not ident.problem:
        near = search_fits(spath, ident.header, size)
        if near:
            ident = attrs.evolve(ident, fits=tuple(near))
    return ident


def weights_files(paths: Iterable[str | os.PathLike[str]], limit: int = MAX_FILES) -> list[str]:
    """The files ``paths`` name: files as given, folders walked (sorted, at most ``limit``
    files, skipping cfgs, text and images)."""
    out: list[str] = []
    for p in paths:
        sp = os.fspath(p)
        if not os.path.isdir(sp):
            out.append(sp)
            continue
        for root, dirs, files in os.walk(sp):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(".") or name.lower().endswith(_NOT_WEIGHTS):
                    continue
                out.append(os.path.join(root, name))
                if len(out) >= limit:
                    return out
    return out


def identify_many(
    paths: Iterable[str | os.PathLike[str]], *, nearby: bool = True
) -> list[Identification]:
    """:func:`identify` for each file named, or found in the folders named.

    A file that cannot be read gives an :class:`Identification` whose ``problem`` says why,
    so one bad file does not hide the others.
    """
    out: list[Identification] = []
    for path in weights_files(paths):
        try:
            out.append(identify(path, nearby=nearby))
        except DwfError as e:
            out.append(Identification(path, 0, None, None, (), e.message))
    return out
