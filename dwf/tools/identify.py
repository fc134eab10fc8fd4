"""Say which known network a weights file is, without its cfg: :func:`identify`.

The judgement itself is a pure function of the first bytes and the size
(:func:`dwf.format.known.identify_head`); this module reads those from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dwf.errors import DwfError
from dwf.format.known import Identification, identify_head
from dwf.io import remote


def identify(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> Identification:
    """Say which known network a weights file is, from its header and size alone.

    ``path`` may be a URL (``https://``, ``s3://`` …; ``storage_options`` go to fsspec): that
    costs the size and one small range request.

    Raises:
        DwfError: the file cannot be read.
    """
    spath = os.fspath(path)
    if remote.is_url(spath):  # the size, then one range request for the head
        source = remote.RemoteSource(spath, storage_options=storage_options, block_size=512)
        try:
            return identify_head(spath, source.pread(512, 0), source.size)
        finally:
            source.close()
    try:
        size = os.path.getsize(spath)
        with open(spath, "rb") as fh:
            head = fh.read(512)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"{spath}: cannot read: {why}", path=spath) from None
    return identify_head(spath, head, size)
