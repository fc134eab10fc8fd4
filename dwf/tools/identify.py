"""Say which known network a weights file is, without its cfg: :func:`identify`.

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file.
"""

from __future__ import annotations

import os
import stat

from dwf.errors import DwfError
from dwf.format.known import Identification, identify_head


def identify(path: str | os.PathLike[str]) -> Identification:
    """Say which known network a weights file is, from its header and size alone.

    Raises:
        DwfError: the file cannot be read.
    """
    spath = os.fspath(path)
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
