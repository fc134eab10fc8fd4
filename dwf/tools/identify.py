"""Say which known network a weights file is, without its cfg: :func:`identify`.

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import stat
from collections.abc import Iterator, Mapping
from typing import Any, overload

from dwf.errors import DwfError
from dwf.format.known import Identification, identify_head
from dwf.io import remote
from dwf.tools import batch
from dwf.tools.batch import Many, Row


@overload
def identify(
    path: str | os.PathLike[str],
    *,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Identification: ...


@overload
def identify(
    path: Many,
    *,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[Row[Identification]]: ...


def identify(
    path: str | os.PathLike[str] | Many,
    *,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Identification | Iterator[Row[Identification]]:
    """Say which known network a weights file is, from its header and size alone.

    ``path`` may be a URL (``https://``, ``s3://`` …; ``storage_options`` go to fsspec): that
    costs the size and one small range request. A list of files, folders and globs gives an
    iterator of :class:`dwf.Row` s, one per file in order, run on ``executor`` or a pool of
    ``jobs`` processes (as :func:`dwf.check`).

    Raises:
        DwfError: the file cannot be read.
    """
    if isinstance(path, (list, tuple)):
        one = functools.partial(identify, storage_options=storage_options)
        paths = batch.expand(path, storage_options=storage_options)
        return batch.each(one, paths, executor=executor, jobs=jobs)
    spath = os.fspath(path)
    if remote.is_url(spath):  # the size, then one range request for the head
        source = remote.RemoteSource(spath, storage_options=storage_options, block_size=512)
        try:
            return identify_head(spath, source.pread(512, 0), source.size)
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
        finally:
            os.close(fd)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        if isinstance(e, DwfError):
            raise
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"{spath}: cannot read: {why}", path=spath) from None
    return identify_head(spath, head, st.st_size)


def _regular(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise DwfError(f"{path}: cannot read: it is a directory, not a weights file", path=path)
    if not stat.S_ISREG(st.st_mode):
        raise DwfError(
            f"{path}: cannot read: not a regular file (a FIFO, a device or a socket); weights are"
            " read only from regular files",
            path=path,
        )
