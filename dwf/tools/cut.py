"""Cut a backbone: keep layers ``0..upto-1`` of a weights file, as ``darknet partial`` does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dwf.errors import DwfError, FileChangedError
from dwf.format.dialects import Dialect
from dwf.format.header import Header
from dwf.format.planner import Plan
from dwf.format.retrain import cut_text
from dwf.io.opening import open_weights
from dwf.io.reader import WeightsFile
from dwf.io.source import LocalSource
from dwf.io.writer import (
    as_array,
    atomic_writes,
    check_header,
    check_upto,
    header_to_write,
    stored_bytes,
)


def cut(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upto: int,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    header: Header | None = None,
    cfg_out: str | os.PathLike[str] | None = None,
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

    With ``cfg_out``, the cfg cut after layer ``upto - 1`` is written there too
    (:func:`dwf.format.retrain.cut_text`): it reads the new file as complete, so every tool,
    ONNX export included, takes it as it is. Both files are published together, or neither.

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
        targets = [os.fspath(dst)] + ([os.fspath(cfg_out)] if cfg_out is not None else [])
        for lp in kept:
            if lp.arrays:
                f.require(lp)  # LayerNotInFileError past a partial end, before writing
        stop_floats = kept[-1].stop if kept else 0
        check_header(new_header, f.plan.dialect)
        encoded = new_header.encode()
        with atomic_writes(targets, inputs=f.sources) as handles, f.consistent():
            fh = handles[0]
            if cfg_out is not None:
                handles[1].write(cut_text(f.plan, n).encode("utf-8"))
            fh.write(encoded)
            if relayout or f.backend == "remote":
                for lp in kept:
                    for a in lp.arrays:
                        fh.write(stored_bytes(a, as_array(lp, a, f.read_array(a)), new_header))
            else:
                fh.flush()
                f.copy_range_to(
                    fh.fileno(), f.header.size, f.header.size + 4 * stop_floats, len(encoded)
                )
                fh.seek(0, os.SEEK_END)
        return targets[0]


def held_count(f: WeightsFile, *, decode: bool = False) -> int | None:
    """The layer count of the network a partial file holds (every layer up to its last one,
    :attr:`dwf.WeightsFile.last_layer`), ``None`` for a whole file: what a model of the file
    builds (the ONNX export, :func:`dwf.to_torch`) with :func:`first_layers`.

    Raises:
        DwfError: the file holds no layer's weights, or (``decode``) none of the layers it
            holds is a detection layer — said of the file, not of its cfg.
    """
    if not f.partial:
        return None
    n = f.last_layer + 1
    if n <= 0:
        raise DwfError(
            "holds no layer's weights (only its header): there is no network to build",
            path=f.path,
        )
    if decode:
        from dwf.format.network import DETECTION_TYPES  # only when decoding a partial file

        if not any(lp.type in DETECTION_TYPES for lp in f.plan.layers[:n]):
            raise DwfError(
                f"holds layers 0..{n - 1} of {len(f.plan.layers)} (a partial file), and no"
                " [yolo], [Gaussian_yolo] or [region] layer is among them: there are no"
                " detections to decode (export it without --decode)",
                path=f.path,
            )
    return n


def first_layers(f: WeightsFile, upto: int) -> WeightsFile:
    """Layers ``0..upto-1`` of an open file as an open file of their own, over the same bytes:
    read with the cfg cut after layer ``upto - 1`` (:func:`dwf.format.retrain.cut_text`),
    planned again, so the result is complete and every tool takes it as it is (what ``dwf
    export --upto`` exports, and what a partial file's ONNX export holds). ``f`` stays open;
    close the result when done.

    Raises:
        DwfError: ``upto`` is not a layer count of the network.
        LayerNotInFileError: ``f`` does not hold all of those layers.
        FileChangedError: the file changed since ``f`` opened it.
    """
    n = check_upto(f.plan, upto)
    for lp in f.plan.layers[:n]:
        if lp.arrays:
            f.require(lp)
    plan = Plan.from_text(
        cut_text(f.plan, n), dialect=f.plan.dialect, side=f.plan.side, path=f.plan.cfg_path
    )
    local = f.source.local_path
    if local is None:  # a URL: opened again, with the cut plan (it may hold more than that)
        return open_weights(
            f.path, plan, dialect=f.plan.dialect, strict=False, header_size=f.header.size
        )
    source = LocalSource.open(local)
    try:
        if source.identity != f.source.identity:  # not the file f read: refuse
            raise FileChangedError(
                "the file changed since it was opened; open it again",
                path=f.path,
                opened=f.source.identity.pair,
                now=source.identity.pair,
            )
        return WeightsFile(
            plan, f.header, source, partial=False, mismatch=None, backend=f.backend
        )
    except BaseException:
        source.close()
        raise
