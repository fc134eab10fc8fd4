"""dwf: memory-mapped, zero-copy inspection of Darknet ``.weights`` files.

>>> import dwf
>>> f = dwf.open("yolov4.weights")            # finds yolov4.cfg beside it, or cfg=...
>>> f["conv_12"].weights.shape                 # read-only view, (out, in/groups, k, k)

Opening parses the cfg and plans every array's byte span; nothing of the body is read until a
view's values are used, and then only that view's pages.

Every command of the ``dwf`` command line has a function of the same name here (``dwf.cut``,
``dwf.fuse``, ``dwf.export``, ``dwf.diff``, ``dwf.check``, ``dwf.stats``, ``dwf.identify`` …);
docs/api.md has the table. This module is the package's facade, above all of its layers
(docs/architecture.md): it names the verbs, the records and the errors, and imports each one's
module only when it is first used (PEP 562), so ``import dwf`` costs little.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dwf.io import extensions
from dwf.version import __version__

# public name -> (module, attribute); the module is imported on first use
_LAZY: dict[str, tuple[str, str]] = {
    # verbs: the command line's commands, and the reader
    "open": ("dwf.io.opening", "open_weights"),
    "plan": ("dwf.io.cfgfile", "plan"),
    "save": ("dwf.io.writer", "save"),
    "info": ("dwf.tools.info", "info"),
    "cut": ("dwf.tools.cut", "cut"),
    "fuse": ("dwf.tools.fuse", "fuse"),
    "export": ("dwf.tools.export", "export"),
    "import_weights": ("dwf.tools.import_weights", "import_weights"),
    "diff": ("dwf.tools.diff", "diff"),
    "drift": ("dwf.tools.diff", "drift"),
    "check": ("dwf.tools.check", "check"),
    "stats": ("dwf.tools.stats", "stats"),
    "identify": ("dwf.tools.identify", "identify"),
    "each": ("dwf.tools.batch", "each"),
    "watch": ("dwf.tools.watch", "watch"),
    "demo": ("dwf.tools.demo", "write_demo"),
    "find_cfg": ("dwf.io.opening", "find_cfg"),
    "plot_diff": ("dwf.interfaces.plot", "plot_diff"),
    "live_table": ("dwf.interfaces.live", "live_table"),
    "graph": ("dwf.interfaces.graph", "graph"),
    "to_torch": ("dwf.tools.emit_torch", "to_torch"),
    "detect": ("dwf.tools.detect", "detect"),
    "nms": ("dwf.format.nms", "nms"),
    "draw": ("dwf.interfaces.draw", "draw"),
    # records
    "ALEXEYAB": ("dwf.format.dialects", "ALEXEYAB"),
    "PJREDDIE": ("dwf.format.dialects", "PJREDDIE"),
    "Dialect": ("dwf.format.dialects", "Dialect"),
    "Header": ("dwf.format.header", "Header"),
    "Plan": ("dwf.format.planner", "Plan"),
    "NetInput": ("dwf.format.planner", "NetInput"),
    "LayerPlan": ("dwf.format.records", "LayerPlan"),
    "ArraySpec": ("dwf.format.records", "ArraySpec"),
    "Cause": ("dwf.format.diagnosis", "Cause"),
    "Diagnosis": ("dwf.format.diagnosis", "Diagnosis"),
    "Identification": ("dwf.format.known", "Identification"),
    "Match": ("dwf.format.known", "Match"),
    "CfgFit": ("dwf.format.known", "CfgFit"),
    "WeightsFile": ("dwf.io.reader", "WeightsFile"),
    "Layer": ("dwf.io.reader", "Layer"),
    "ArrayDiff": ("dwf.tools.diff", "ArrayDiff"),
    "DiffReport": ("dwf.tools.diff", "DiffReport"),
    "CheckReport": ("dwf.tools.check", "CheckReport"),
    "Finding": ("dwf.tools.check", "Finding"),
    "ArrayStats": ("dwf.tools.stats", "ArrayStats"),
    "StatsReport": ("dwf.tools.stats", "StatsReport"),
    "LayerArrayStats": ("dwf.tools.stats", "LayerArrayStats"),
    "Exported": ("dwf.tools.import_weights", "Exported"),
    "Row": ("dwf.tools.batch", "Row"),
    "Rows": ("dwf.tools.batch", "Rows"),
    "Checkpoint": ("dwf.tools.watch", "Checkpoint"),
    "LayerChange": ("dwf.tools.watch", "LayerChange"),
    "Graph": ("dwf.interfaces.graph", "Graph"),
    "Detected": ("dwf.tools.detect", "Detected"),
    # errors
    "DwfError": ("dwf.errors", "DwfError"),
    "CfgError": ("dwf.errors", "CfgError"),
    "HeaderError": ("dwf.errors", "HeaderError"),
    "SizeMismatchError": ("dwf.errors", "SizeMismatchError"),
    "LayerNotFoundError": ("dwf.errors", "LayerNotFoundError"),
    "ArrayNotFoundError": ("dwf.errors", "ArrayNotFoundError"),
    "LayerNotInFileError": ("dwf.errors", "LayerNotInFileError"),
    "ArrayError": ("dwf.errors", "ArrayError"),
    "FileChangedError": ("dwf.errors", "FileChangedError"),
    "ClosedFileError": ("dwf.errors", "ClosedFileError"),
    "WeightsNotFoundError": ("dwf.errors", "WeightsNotFoundError"),
    "CfgNotFoundError": ("dwf.errors", "CfgNotFoundError"),
    "UnsupportedLayerError": ("dwf.errors", "UnsupportedLayerError"),
    "RemoteError": ("dwf.errors", "RemoteError"),
}

# 0.1 names kept working (not in __all__; see CHANGELOG.md)
_RENAMED = {"compare": "diff"}

__all__ = [
    "ALEXEYAB",
    "PJREDDIE",
    "ArrayDiff",
    "ArrayError",
    "ArrayNotFoundError",
    "ArraySpec",
    "ArrayStats",
    "Cause",
    "CfgError",
    "CfgFit",
    "CfgNotFoundError",
    "CheckReport",
    "Checkpoint",
    "ClosedFileError",
    "Detected",
    "Diagnosis",
    "Dialect",
    "DiffReport",
    "DwfError",
    "Exported",
    "FileChangedError",
    "Finding",
    "Graph",
    "Header",
    "HeaderError",
    "Identification",
    "Layer",
    "LayerArrayStats",
    "LayerChange",
    "LayerNotFoundError",
    "LayerNotInFileError",
    "LayerPlan",
    "Match",
    "NetInput",
    "Plan",
    "RemoteError",
    "Row",
    "Rows",
    "SizeMismatchError",
    "StatsReport",
    "UnsupportedLayerError",
    "WeightsFile",
    "WeightsNotFoundError",
    "__version__",
    "check",
    "cut",
    "demo",
    "detect",
    "diff",
    "draw",
    "drift",
    "each",
    "export",
    "find_cfg",
    "fuse",
    "graph",
    "identify",
    "import_weights",
    "info",
    "live_table",
    "nms",
    "open",
    "plan",
    "plot_diff",
    "save",
    "stats",
    "to_torch",
    "watch",
]

# The reader's convenience methods (f.check(), layer.plot(), notebook display …) are
# implemented above it; this is where they are found (see dwf/io/extensions.py).
for _name, _module, _attribute in (
    ("check", "dwf.tools.check", "check"),
    ("layer_stats", "dwf.tools.stats", "layer_stats"),
    ("fuse_layer", "dwf.tools.fuse", "fuse_layer"),
    ("fused_arrays", "dwf.tools.fuse", "fused_arrays"),
    ("plot_layer", "dwf.interfaces.plot", "plot_layer"),
    ("plot_file", "dwf.interfaces.plot", "plot_file"),
    ("layer_html", "dwf.interfaces.display", "layer_html"),
    ("file_html", "dwf.interfaces.display", "file_html"),
    ("report_text", "dwf.interfaces.reports", "text"),
    ("report_html", "dwf.interfaces.reports", "html"),
    ("graph", "dwf.interfaces.graph", "graph"),
):
    extensions.provide(_name, _module, _attribute)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None and name in _RENAMED:
        import warnings

        warnings.warn(
            f"dwf.{name} is now dwf.{_RENAMED[name]}", DeprecationWarning, stacklevel=2
        )
        target = _LAZY[_RENAMED[name]]
    if target is None:
        raise AttributeError(f"module 'dwf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    if name in _LAZY:
        # A verb is cached under its own name, so that importing a submodule (which sets
        # the package attribute of that submodule's name) can never replace it: no verb
        # shares a name with a module directly under dwf/.
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from dwf.errors import (
        ArrayError,
        ArrayNotFoundError,
        CfgError,
        CfgNotFoundError,
        ClosedFileError,
        DwfError,
        FileChangedError,
        HeaderError,
        LayerNotFoundError,
        LayerNotInFileError,
        RemoteError,
        SizeMismatchError,
        UnsupportedLayerError,
        WeightsNotFoundError,
    )
    from dwf.format.diagnosis import Cause, Diagnosis
    from dwf.format.dialects import ALEXEYAB, PJREDDIE, Dialect
    from dwf.format.header import Header
    from dwf.format.known import CfgFit, Identification, Match
    from dwf.format.nms import nms
    from dwf.format.planner import NetInput, Plan
    from dwf.format.records import ArraySpec, LayerPlan
    from dwf.interfaces.draw import draw
    from dwf.interfaces.graph import Graph, graph
    from dwf.interfaces.live import live_table
    from dwf.interfaces.plot import plot_diff
    from dwf.io.cfgfile import plan
    from dwf.io.opening import find_cfg
    from dwf.io.opening import open_weights as open
    from dwf.io.reader import Layer, WeightsFile
    from dwf.io.writer import save
    from dwf.tools.batch import Row, Rows, each
    from dwf.tools.check import CheckReport, Finding, check
    from dwf.tools.cut import cut
    from dwf.tools.demo import write_demo as demo
    from dwf.tools.detect import Detected, detect
    from dwf.tools.diff import ArrayDiff, DiffReport, diff, drift
    from dwf.tools.emit_torch import to_torch
    from dwf.tools.export import export
    from dwf.tools.fuse import fuse
    from dwf.tools.identify import identify
    from dwf.tools.import_weights import Exported, import_weights
    from dwf.tools.info import info
    from dwf.tools.stats import ArrayStats, LayerArrayStats, StatsReport, stats
    from dwf.tools.watch import Checkpoint, LayerChange, watch
