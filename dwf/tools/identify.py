"""Say which known network a weights file is, without its cfg: :func:`identify`.

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file.
"""

from __future__ import annotations

import os

from dwf.errors import DwfError
from dwf.format.known import Identification, identify_head


def identify(path: str | os.PathLike[str]) -> Identification:
    """Say which known network a weights file is, from its header and size alone.

    Raises:
        DwfError: the file cannot be read.
    """
    spath = os.fspath(path)
    try:
        size = os.path.getsize(spath)
        with open(spath, "rb") as fh:
            head = fh.read(512)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"{spath}: cannot read: {why}", path=spath) from None
    return identify_head(spath, head, size)
