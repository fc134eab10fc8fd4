"""Where a view is made: the zero-copy numpy view of one array in a file's floats.

Used by the reader (:mod:`dwf.io.reader`), its streaming reads (:mod:`dwf.io.streaming`) and the
exports that hand views on (:mod:`dwf.tools.export`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dwf.format.records import ArraySpec


def logical_view(
    body: np.ndarray[Any, np.dtype[np.float32]], spec: ArraySpec, legacy_header: bool
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The zero-copy view of ``spec`` in ``body`` (the file's floats after the header), in its
    logical shape: stored-transposed arrays are returned as a transposed view, not a copy."""
    flat = body[spec.offset : spec.stop]
    shape = spec.shape
    if spec.stored_transposed(legacy_header) and len(shape) >= 2:
        rows = spec.count // shape[0] if shape[0] else 0
        view: np.ndarray[Any, np.dtype[np.float32]] = flat.reshape(rows, shape[0]).T
        return view.reshape(shape)
    return flat.reshape(shape)
