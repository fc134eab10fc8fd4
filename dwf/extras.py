"""Optional dependencies, imported only when a feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from dwf.errors import DwfError
from dwf.version import DISTRIBUTION


def install_line(extra: str) -> str:
    """How to install an extra: as published, and from a checkout of dwf's sources
    (``pip install 'dwf-darknet[plot]'`` — ``dwf`` on the package index is another project).
    No parentheses, so that a message may put the line in its own."""
    return f"pip install '{DISTRIBUTION}[{extra}]' or, from a checkout, pip install '.[{extra}]'"


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or raise a DwfError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DwfError(
            f"this needs the optional package {module.split('.')[0]!r}: install it with"
            f" {install_line(extra)}"
        ) from None
