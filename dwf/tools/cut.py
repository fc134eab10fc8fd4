"""Cut a backbone: keep layers ``0..upto-1`` of a weights file, as ``darknet partial`` does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dwf.format.dialects import Dialect
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.io.opening import open_weights
from dwf.io.writer import atomic_write, check_header, check_upto, header_to_write


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
    bytes as ``f.save(dst, upto=upto)``. ``yolov3.cfg`` with ``upto=74`` gives the
    162,482,580-byte ``darknet53.conv.74``. Returns ``dst``. ``src`` may be a URL
    (``storage_options`` go to fsspec); ``dst`` is a local path.

    The kept bytes of a local file are copied by the kernel (``os.copy_file_range``; a plain
    buffered copy where it is unavailable) into the atomic writer's temporary file: nothing
    passes through the map or through Python memory, and a source truncated meanwhile gives
    :class:`dwf.FileChangedError`. Only when the new header lays out connected weights
    differently from the source's (a legacy header cut into a current one), or the source is a
    URL, are the layers written array by array.

    Raises:
        LayerNotInFileError: the source does not hold all the layers to keep.
    """
    with open_weights(
        src, cfg, dialect=dialect, strict=False, storage_options=storage_options
    ) as f:
        n = check_upto(f.plan, upto)
        new_header = header_to_write(header, upto=upto, dialect=f.plan.dialect, source=f.header)
        kept = f.plan.layers[:n]
        relayout = new_header.connected_transposed != f.header.connected_transposed and any(
            a.storage == "transposed-if-legacy" for lp in kept for a in lp.arrays
        )
        if relayout or f.backend == "remote":
            return f.save(dst, upto=upto, header=header)
        for lp in kept:
            if lp.arrays:
                f.require(lp)  # LayerNotInFileError past a partial end, before writing
        stop_floats = kept[-1].stop if kept else 0
        check_header(new_header, f.plan.dialect)
        encoded = new_header.encode()
        target = os.fspath(dst)
        with atomic_write(target, inputs=f.sources) as fh, f.consistent():
            fh.write(encoded)
            fh.flush()
            f.copy_range_to(
                fh.fileno(), f.header.size, f.header.size + 4 * stop_floats, len(encoded)
            )
            fh.seek(0, os.SEEK_END)
        return target
