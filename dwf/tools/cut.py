"""Cut a backbone: keep layers ``0..upto-1`` of a weights file, as ``darknet partial`` does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dwf.format.dialects import Dialect
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.io.reader import open_weights


def partial_header(dialect: str | Dialect = "alexeyab") -> Header:
    """The header ``darknet partial`` writes: the dialect writer's version, ``seen`` reset to 0
    (:meth:`dwf.Header.written_by`)."""
    return Header.written_by(dialect)


def cut(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upto: int,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    header: Header | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Keep layers ``0..upto-1``, as ``darknet partial cfg weights dst upto`` does.

    The result has the header Darknet's ``partial`` writes (the dialect's version, ``seen`` = 0)
    unless ``header`` is given, and exactly the source's bytes for the kept layers: the same
    bytes as ``f.save(dst, upto=upto)``, which this calls. ``yolov3.cfg`` with ``upto=74``
    gives the 162,482,580-byte ``darknet53.conv.74``. Returns ``dst``. ``src`` may be a URL
    (``storage_options`` go to fsspec); ``dst`` is a local path.

    Raises:
        LayerNotInFileError: the source does not hold all the layers to keep.
    """
    with open_weights(
        src, cfg, dialect=dialect, strict=False, storage_options=storage_options
    ) as f:
        return f.save(dst, upto=upto, header=header)
