"""dwf: memory-mapped, zero-copy inspection of Darknet ``.weights`` files.

>>> import dwf
>>> f = dwf.open("yolov4.weights")            # finds yolov4.cfg beside it, or cfg=...
>>> f["conv_12"].weights.shape                 # read-only view, (out, in/groups, k, k)

Opening parses the cfg and plans every array's byte span; nothing of the body is read until a
view's values are used, and then only that view's pages.
"""

from dwf.compare import ArrayDiff, DiffReport
from dwf.compare import diff as compare
from dwf.diagnose import Cause, Diagnosis
from dwf.dialects import ALEXEYAB, PJREDDIE, Dialect
from dwf.errors import (
    ArrayError,
    ArrayNotFoundError,
    CfgError,
    ClosedFileError,
    DwfError,
    FileChangedError,
    HeaderError,
    LayerNotFoundError,
    LayerNotInFileError,
    SizeMismatchError,
)
from dwf.header import Header
from dwf.known import Identification, Match, identify
from dwf.planner import NetInput, Plan, plan
from dwf.plot import plot_diff
from dwf.reader import Layer, WeightsFile, find_cfg
from dwf.reader import open_weights as open
from dwf.records import ArraySpec, LayerPlan
from dwf.scan import CheckReport, Finding
from dwf.stats import ArrayStats
from dwf.writer import save

__version__ = "0.1.0"

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
    "CheckReport",
    "ClosedFileError",
    "Diagnosis",
    "Dialect",
    "DiffReport",
    "DwfError",
    "FileChangedError",
    "Finding",
    "Header",
    "HeaderError",
    "Identification",
    "Layer",
    "LayerNotFoundError",
    "LayerNotInFileError",
    "LayerPlan",
    "Match",
    "NetInput",
    "Plan",
    "SizeMismatchError",
    "WeightsFile",
    "__version__",
    "compare",
    "find_cfg",
    "identify",
    "open",
    "plan",
    "plot_diff",
    "save",
]
