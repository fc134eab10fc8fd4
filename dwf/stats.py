"""Streaming statistics of arrays in a weights file, in bounded memory.

Each array is read once, in chunks of at most ``CHUNK`` floats, so the memory used does not
grow with the file: the map's pages are read by the kernel as the chunks are touched and can be
dropped again, and the temporaries are chunk-sized.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

# 1 Mi floats = 4 MiB per chunk: temporaries stay in cache-friendly sizes.
CHUNK = 1 << 20
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32


@attrs.frozen
class ArrayStats:
    """Statistics of one array.

    Attributes:
        count: number of elements.
        nan, inf: non-finite counts.
        zeros: exact zeros (+0.0 and -0.0).
        denormals: non-zero values smaller in magnitude than the smallest normal float32.
        negatives: values < 0.
        min, max, mean, std, absmax: over finite values (NaN when there are none).
        extreme: values with ``|x| > extreme_threshold``.
    """

    count: int
    nan: int
    inf: int
    zeros: int
    denormals: int
    negatives: int
    min: float
    max: float
    mean: float
    std: float
    absmax: float
    extreme: int

    @property
    def zero_fraction(self) -> float:
        """Fraction of exact zeros."""
        return self.zeros / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly; NaN stays NaN)."""
        d = attrs.asdict(self)
        d["zero_fraction"] = self.zero_fraction
        return d


def array_stats(
    view: np.ndarray[Any, Any], *, extreme_threshold: float = 1e6, chunk: int = CHUNK
) -> ArrayStats:
    """Statistics of ``view`` in one streaming pass."""
    flat = view.reshape(-1) if view.flags.c_contiguous else np.ravel(view, order="K")
    n = int(flat.size)
    nan = inf = zeros = denormals = negatives = extreme = 0
    finite = 0
    total = 0.0
    total_sq = 0.0
    lo, hi = np.inf, -np.inf
    for start in range(0, n, chunk):
        c = flat[start : start + chunk]
        a = np.abs(c)
        cnan = int(np.count_nonzero(np.isnan(c)))
        cinf = int(np.count_nonzero(a == np.inf))
        if cnan or cinf:
            c = c[np.isfinite(c)]
            a = np.abs(c)
            nan += cnan
            inf += cinf
        if c.size == 0:
            continue
        finite += int(c.size)
        zeros += int(np.count_nonzero(c == 0))
        denormals += int(np.count_nonzero((a < FLOAT32_TINY) & (a > 0)))
        negatives += int(np.count_nonzero(c < 0))
        extreme += int(np.count_nonzero(a > extreme_threshold))
        c64 = c.astype(np.float64)
        total += float(c64.sum())
        total_sq += float(np.dot(c64, c64))
        lo = min(lo, float(c.min()))
        hi = max(hi, float(c.max()))
    if finite:
        mean = total / finite
        var = max(total_sq / finite - mean * mean, 0.0)
        std = var**0.5
        absmax = max(abs(lo), abs(hi))
    else:
        mean = std = absmax = lo = hi = float("nan")
    return ArrayStats(
        n, nan, inf, zeros, denormals, negatives, float(lo), float(hi), mean, std, absmax, extreme
    )


def zero_rows(view: np.ndarray[Any, Any], chunk: int = CHUNK) -> int:
    """How many rows (first axis: filters, output units) are entirely zero."""
    if view.ndim < 2 or view.shape[0] == 0:
        return 0
    rows = view.reshape(view.shape[0], -1)
    per = max(1, chunk // max(rows.shape[1], 1))
    found = 0
    for start in range(0, rows.shape[0], per):
        block = rows[start : start + per]
        found += int(np.count_nonzero(~block.any(axis=1)))
    return found
