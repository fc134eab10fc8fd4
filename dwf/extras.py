"""Optional dependencies, imported only when a feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from dwf.errors import DwfError


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or raise a DwfError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DwfError(
            f"this needs the optional package {module.split('.')[0]!r}: install it with"
            f" pip install 'dwf[{extra}]'"
        ) from None
