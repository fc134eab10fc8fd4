"""``dwf info`` as a function: what a weights file holds, as plain data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dwf.format.planner import Plan
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile


def info(
    src: str | os.PathLike[str] | WeightsFile,
    cfg: str | os.PathLike[str] | Plan | None = None,
    *,
    dialect: str = "alexeyab",
    strict: bool = True,
    header_size: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The header, sizes, state and every layer of a weights file, as ``dwf info --json`` prints
    them (:meth:`dwf.WeightsFile.to_dict`). For the arrays themselves use :func:`dwf.open`.
    ``src`` may be a URL (``storage_options`` go to fsspec; docs/remote.md)."""
    options: dict[str, Any] = {"header_size": header_size, "storage_options": storage_options}
    with opened(src, cfg, dialect=dialect, strict=strict, **options) as f:
        return f.to_dict()
