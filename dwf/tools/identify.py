"""Say which known network a weights file is, without its cfg: :func:`identify` (one file;
many with ``dwf.each(dwf.identify, files)``).

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file, confirms a
suspected CRLF translation on the whole file, and looks for cfg files beside it that it fits.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

import attrs

from dwf.errors import DwfError
from dwf.format.known import CfgFit, Identification, identify_head
from dwf.format.retrain import with_classes
from dwf.io import remote
from dwf.io.cfg_search import crlf_counts, search_fits
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.views import pread_all
from dwf.io.writer import atomic_write
from dwf.tools import batch


@batch.one_file
def identify(
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    nearby: bool = True,
    write_cfg: str | os.PathLike[str] | None = None,
) -> Identification:
    """Say which known network a weights file is, from its header and size alone.

    ``path`` may be a URL (``https://``, ``s3://`` …; ``storage_options`` go to fsspec): that
    costs the size and one small range request. ``nearby``: also list the cfg files beside it
    that it fits. Many files: ``dwf.each(dwf.identify, files, jobs=...)``.

    ``write_cfg``: write the cfg the file fits to this path (one file only): the first of the
    cfgs beside it that it fits (:attr:`Identification.fits`), with the class count it was
    trained for set when it fits with another one (``dwf identify W --write-cfg OUT``), so
    that ``dwf.open(W, cfg=OUT)`` reads it.

    Raises:
        DwfError: the file cannot be read; with ``write_cfg``, no cfg beside it fits (the
            identify table knows networks by their float counts, not by their cfg text).
    """
    if write_cfg is not None:
        ident = identify(path, storage_options=storage_options, nearby=nearby)
        write_fit(ident, write_cfg)
        return ident
    spath = os.fspath(path)
    if remote.is_url(spath):  # the size, then one range request for the head
        source = remote.RemoteSource(spath, storage_options=storage_options, block_size=512)
        try:
            return identify_head(spath, source.read_at(512, 0), source.size)
        finally:
            source.close()
    try:
        _regular(spath, os.stat(spath))
        # Non-blocking: a FIFO swapped in after the check above must not block the open.
        fd = os.open(spath, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            _regular(spath, st)
            head = os.read(fd, 512)
            local = fd
            crlf = crlf_counts(lambda n, offset: pread_all(local, n, offset), st.st_size, head)
        finally:
            os.close(fd)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        if isinstance(e, DwfError):
            raise
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"cannot read: {why}", path=spath) from None
    return _judge(spath, head, st.st_size, crlf, nearby)


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


def _regular(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise DwfError("cannot read: it is a directory, not a weights file", path=path)
    if not stat.S_ISREG(st.st_mode):
        raise DwfError(
            "cannot read: not a regular file (a FIFO, a device or a socket); weights are"
            " read only from regular files",
            path=path,
        )


def fitted_cfg_text(fit: CfgFit) -> str:
    """The text of the cfg a file fits: the cfg as it is, or with the class count the file was
    trained for (and the layers feeding the detection heads resized to match)."""
    plan = plan_cfg(fit.cfg, dialect=fit.dialect)
    if fit.how == "classes" and fit.classes is not None:
        return with_classes(plan, fit.classes)
    return plan.text


def write_fit(ident: Identification, dst: str | os.PathLike[str]) -> CfgFit:
    """Write the cfg of ``ident``'s best fit (:func:`fitted_cfg_text`) to ``dst``, atomically;
    returns the fit written.

    Raises:
        DwfError: no cfg beside the file fits it.
    """
    if not ident.fits:
        why = "no cfg beside it fits, so there is no cfg to write"
        best = ident.best
        if best is not None:
            name = best.cfg or best.name
            why += (
                f"; by its size it is {best.describe()}, but dwf knows the public networks by"
                f" their float counts only, not their cfg text: put {name} beside the weights"
                " and ask again"
            )
        raise DwfError(why, path=ident.path)
    fit = ident.fits[0]
    text = fitted_cfg_text(fit)
    with atomic_write(dst, inputs=(ident.path, fit.cfg)) as fh:
        fh.write(text.encode("utf-8"))
    return fit
