"""Streaming statistics of arrays in a weights file, in bounded memory.

Each array is read once, in chunks of at most ``CHUNK`` floats, so the memory used does not
grow with the file: the map's pages are read by the kernel as the chunks are touched and can be
dropped again, and the temporaries are chunk-sized.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

# 64 Ki floats = 256 KiB per chunk: each of the few passes over a chunk runs from cache.
CHUNK = 1 << 16
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


# |x| below this keeps k·(2x)² within float32 for chunks of up to ~10^8 floats.
_F32_SAFE = 1e15


def array_stats(
    view: np.ndarray[Any, Any], *, extreme_threshold: float = 1e6, chunk: int = CHUNK
) -> ArrayStats:
    """Statistics of ``view`` in one streaming pass over chunks of ``chunk`` floats.

    Per chunk: min and max first (a NaN makes them NaN, so non-finite values are found without
    a pass of their own), a float32 pairwise sum for the chunk mean and a float32 BLAS dot of
    the centred chunk for its squared deviations, merged across chunks in float64 (Chan et al.'s
    pairwise update). Mean and std are accurate to about 1e-7 relative (float32 rounding inside
    a 64 Ki-element chunk), far below the 4 significant digits dwf displays; a float64 sum would
    halve the throughput.
    """
    flat = view.reshape(-1) if view.flags.c_contiguous else np.ravel(view, order="K")
    n = int(flat.size)
    nan = inf = zeros = small = negatives = extreme = 0
    finite = 0
    mean = m2 = 0.0
    lo, hi = math.inf, -math.inf
    for start in range(0, n, chunk):
        c = flat[start : start + chunk]
        cmin, cmax = float(c.min()), float(c.max())
        if not (math.isfinite(cmin) and math.isfinite(cmax)):
            isnan = np.isnan(c)
            ok = np.isfinite(c)
            cnan = int(np.count_nonzero(isnan))
            nan += cnan
            inf += int(c.size - np.count_nonzero(ok)) - cnan
            c = c[ok]
            if c.size == 0:
                continue
            cmin, cmax = float(c.min()), float(c.max())
        k = int(c.size)
        # Squares of values this large overflow a float32 sum (std would be inf): such chunks
        # (corrupt or extreme files) are summed in float64; the rest keeps the float32 path.
        acc = np.float64 if max(-cmin, cmax) > _F32_SAFE else np.float32
        cmean = float(c.sum(dtype=acc)) / k
        d = c.astype(acc, copy=False) - acc(cmean)
        cm2 = float(np.dot(d, d))
        total = finite + k
        delta = cmean - mean
        mean += delta * k / total
        m2 += cm2 + delta * delta * finite * k / total
        finite = total
        lo, hi = min(lo, cmin), max(hi, cmax)
        negatives += int(np.count_nonzero(c < 0))
        # Zeros and denormals are rare: one cheap min(|x|) decides whether to count them.
        if float(np.abs(c).min()) < FLOAT32_TINY:
            zeros += int(np.count_nonzero(c == 0))
            small += int(np.count_nonzero((c > -FLOAT32_TINY) & (c < FLOAT32_TINY)))
        if max(-cmin, cmax) > extreme_threshold:
            extreme += int(np.count_nonzero((c > extreme_threshold) | (c < -extreme_threshold)))
    if finite:
        std = math.sqrt(max(m2, 0.0) / finite)
        absmax = max(abs(lo), abs(hi))
    else:
        mean = std = absmax = lo = hi = math.nan
    return ArrayStats(
        n, nan, inf, zeros, small - zeros, negatives, lo, hi, mean, std, absmax, extreme
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
        with np.errstate(invalid="ignore"):  # signalling NaNs (corrupt data) are non-zero too
            found += int(np.count_nonzero(~block.any(axis=1)))
    return found
