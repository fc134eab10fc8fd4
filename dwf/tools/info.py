"""``dwf info`` as a function: what a weights file holds, as plain data."""

from __future__ import annotations

import os
from typing import Any

from dwf.format.planner import Plan
from dwf.io.reader import WeightsFile, opened


def info(
    src: str | os.PathLike[str] | WeightsFile,
    cfg: str | os.PathLike[str] | Plan | None = None,
    *,
    dialect: str = "alexeyab",
    strict: bool = True,
    header_size: int | None = None,
) -> dict[str, Any]:
    """The header, sizes, state and every layer of a weights file, as ``dwf info --json`` prints
    them (:meth:`dwf.WeightsFile.to_dict`). For the arrays themselves use :func:`dwf.open`."""
    with opened(src, cfg, dialect=dialect, strict=strict, header_size=header_size) as f:
        return f.to_dict()
