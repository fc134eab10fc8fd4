"""Convenience methods of :class:`~dwf.WeightsFile` and :class:`~dwf.Layer` whose work is done
by the layers above the reader.

The reader may not import the tools or the interfaces (imports point down only; see
docs/architecture.md). Yet notebook users want ``f.check()``, ``layer.plot()`` and an HTML
display. So those methods stay on the classes, with their signatures and docstrings, and their
bodies call :func:`call` with a name; the package root (``dwf/__init__.py``, which sits above
every layer and is always imported before any of its submodules) registers, for each name, where
the implementation lives. The implementation's module is imported on the first call only, so
``import dwf`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from dwf.errors import DwfError

# name -> (module, attribute), filled by the package root
_WHERE: dict[str, tuple[str, str]] = {}
_LOADED: dict[str, Callable[..., Any]] = {}


def provide(name: str, module: str, attribute: str) -> None:
    """Say that method ``name`` is implemented by ``module.attribute`` (called by the root)."""
    _WHERE[name] = (module, attribute)
    _LOADED.pop(name, None)


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run the implementation registered for ``name``."""
    fn = _LOADED.get(name)
    if fn is None:
        try:
            module, attribute = _WHERE[name]
        except KeyError:
            raise DwfError(f"{name}: no implementation registered (import dwf first)") from None
        fn = getattr(importlib.import_module(module), attribute)
        _LOADED[name] = fn
    return fn(*args, **kwargs)


class Shown:
    """A report that prints as text (``print(report)``: what the command line prints) and
    displays as an HTML table in a notebook, both drawn by :mod:`dwf.interfaces.reports`."""

    __slots__ = ()

    def __str__(self) -> str:
        text: str = call("report_text", self)
        return text

    def _repr_html_(self) -> str:
        html: str = call("report_html", self)
        return html
