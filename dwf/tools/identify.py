"""Say which known network a weights file is, without its cfg: :func:`identify` (one file;
many with ``dwf.each(dwf.identify, files)``).

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file, confirms a
suspected CRLF translation on the whole file, and looks for cfg files beside it that it fits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from dwf.format.known import CfgFit, Identification, identify_head
from dwf.io.cfg_search import crlf_counts, search_fits
from dwf.io.opening import open_source
from dwf.tools import batch


@batch.one_file
def identify(
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    nearby: bool = True,
) -> Identification:
    """Say which known network a weights file is, from its header and size alone.

    ``path`` may be a URL (``https://``, ``s3://`` …; ``storage_options`` go to fsspec): that
    costs the size and one small range request. ``nearby``: also list the cfg files beside it
    that it fits. Many files: ``dwf.each(dwf.identify, files, jobs=...)``.

    Raises:
        DwfError: the file cannot be read.
    """
    spath = os.fspath(path)
    # the size, then the head (for a URL one range request of 512 bytes)
    source = open_source(spath, storage_options=storage_options, block_size=512)
    try:
        head, size = source.read_at(512, 0), source.size
        if source.local_path is None:  # a URL: no CRLF count, no folder to search
            return identify_head(spath, head, size)
        crlf = crlf_counts(source.read_at, size, head)
    finally:
        source.close()
    return _judge(spath, head, size, crlf, nearby)


def _judge(
    spath: str, head: bytes, size: int, crlf: tuple[int, int] | None, nearby: bool
) -> Identification:
    ident = identify_head(spath, head, size)
    if crlf is not None and crlf[0] and not crlf[1]:
        before = identify_head(spath, head, size - crlf[0])
        what = (
            f"the file was CRLF-translated (copied in text mode): each of its {crlf[0]:,} 0A"
            f" bytes became 0D 0A; replace every 0D 0A with 0A to restore the"
            f" {size - crlf[0]:,}-byte original"
        )
        fits: tuple[CfgFit, ...] = ()
        if before.header is not None and nearby:
            fits = tuple(search_fits(spath, before.header, size - crlf[0]))
        if before.matches or fits:
            what += ", which " + attrs.evolve(before, fits=fits).explain().split("; ", 1)[1]
        return attrs.evolve(before, size=size, problem=what, fits=fits)
    if nearby and ident.header is not None and not ident.problem:
        near = search_fits(spath, ident.header, size)
        if near:
            ident = attrs.evolve(ident, fits=tuple(near))
    return ident
