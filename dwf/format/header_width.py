"""Which header width a file's own values support, when its size fits two readings.

A file of ``16 + 4N`` bytes for a cfg of ``N`` floats whose version implies a 20-byte header is
either what AlexeyAB's 2018-10-03 build wrote (a 4-byte ``seen``: a 16-byte header, docs/format.md
§1.5) or a 20-byte file that lost its last 4 bytes (an interrupted copy). Symmetrically, ``20 + 4N``
bytes under a 16-byte version is a 2017 file with an 8-byte ``seen``, or a 16-byte file with 4
bytes appended. The size cannot tell them apart; the values can. Read one way the body starts at
byte 16, the other way at byte 20, so every float moves by one place between the readings, and:

- a batch-norm variance is never negative (real files hold at most tiny negative denormals such
  as -7e-44): in the wrong reading each variance array starts with the last running mean, or
  ends with the first weight, of its layer — negative about half the time;
- values are finite and plausibly scaled in the right reading;
- the 4 bytes at 16..20 are either the high half of a 64-bit ``seen`` (zero for any ``seen``
  below 2**32; a "seen" of 2**55 or more images would be absurd) or the first float of the body.

:func:`probes` says which bytes to read (both readings of a bounded number of variance arrays in
one read each), the caller reads them, and :func:`judge` weighs them. Pure: no file is read here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs
import numpy as np

from dwf.format.planner import Plan
from dwf.format.records import F32

# Variance arrays read to judge: enough that a wrong reading cannot hide (each wrong array shows
# a negative value about half the time, so 32 arrays leave a chance of 2**-32), few enough to
# cost nothing (and a handful of range requests for a remote file).
MAX_PROBES = 32
# Smallest normal float32: negative variances closer to 0 are the rounding noise real files hold.
_TINY = float(np.finfo(np.float32).tiny)
# A variance beyond this is not a variance (a real one is a mean of squares of activations).
_HUGE = 1e20
# A high half of ``seen`` at or above this is the bit pattern of a normal float (2**23: the
# smallest exponent bit), not a count: as ``seen`` it would mean 2**55 or more images.
_FLOAT_BITS = 1 << 23


@attrs.frozen
class Probe:
    """Bytes to read for one variance array, covering it under both readings.

    Attributes:
        index, layer, array: where the array is (layer index, layer name, array name).
        offset: first byte to read (the array's start when the body starts at byte 16).
        count: the array's floats; ``4 * (count + 1)`` bytes are read.
    """

    index: int
    layer: str
    array: str
    offset: int
    count: int

    @property
    def nbytes(self) -> int:
        """Bytes to read: the array under both readings (one float more than the array)."""
        return 4 * (self.count + 1)


@attrs.frozen
class Reading:
    """One way to read the file, and what its values say about it.

    Attributes:
        width: the header width (16 or 20): where the body starts.
        seen: ``seen`` as this reading decodes it.
        excess: bytes the file has beyond a complete file read this way (0: it fits exactly;
            -4: four bytes short; 4: four bytes too many).
        against: facts that rule this reading out (negative variances, absurd values, a
            ``seen`` that is the bit pattern of a float).
        notes: facts that fit this reading without proving it.
    """

    width: int
    seen: int
    excess: int
    against: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """``16-byte header (seen 77), fitting exactly`` and the like."""
        fit = {0: "fitting exactly", -4: "4 bytes short", 4: "4 bytes too long"}.get(
            self.excess, f"{self.excess:+,} bytes"
        )
        return f"{self.width}-byte header (seen {self.seen:,}), {fit}"

    def because(self) -> str:
        """The facts, as one clause."""
        facts = self.against or self.notes
        return "; ".join(facts) if facts else "nothing in the values contradicts it"


@attrs.frozen
class WidthJudgement:
    """Both readings of a file whose size fits two header widths, and the one its values support.

    Attributes:
        rule: the width the version implies (what Darknet reads).
        floats: the floats the file holds read with the other width (the cfg's, or a partial
            file's up to a layer boundary).
        readings: the 16-byte and the 20-byte reading, in that order.
        chosen: the width the evidence supports, or ``None`` when it cannot tell.
        probed: variance arrays read.
    """

    rule: int
    floats: int
    readings: tuple[Reading, Reading]
    chosen: int | None
    probed: int

    def reading(self, width: int) -> Reading:
        """The reading with header ``width``."""
        return self.readings[0] if width == 16 else self.readings[1]

    def explain(self) -> str:
        """Both readings and the facts about each, in one paragraph."""
        parts = [f"read with a {r.describe()}: {r.because()}" for r in self.readings]
        return "; ".join(parts)


def _clearly_more(bad: int, other: int) -> bool:
    """Whether a reading has clearly more impossible values than the other: any when the other
    has none, else more than twice as many (in a file whose variances are damaged anyway, both
    readings hold some, and a few more on one side prove nothing)."""
    return bad > 0 and bad > 2 * other


def probes(plan: Plan, size: int, limit: int = MAX_PROBES) -> tuple[Probe, ...]:
    """The variance arrays a file of ``size`` bytes holds under both readings, to read (at most
    ``limit``, spread over the network), each covering both: from its start with the body at
    byte 16 to its end with the body at byte 20."""
    found = [
        (lp, a)
        for lp, a in plan.arrays()
        if a.name.rpartition(".")[2] == "rolling_variance"
        and a.count
        and a.byte_span(20)[1] <= size
    ]
    if len(found) > limit:
        step = len(found) / limit
        found = [found[int(i * step)] for i in range(limit)]
    return tuple(Probe(lp.index, lp.name, a.name, a.byte_span(16)[0], a.count) for lp, a in found)


def judge(
    head: bytes,
    rule: int,
    size: int,
    floats: int,
    samples: Sequence[tuple[Probe, bytes]],
) -> WidthJudgement:
    """Weigh the two readings of a file of ``size`` bytes whose version implies ``rule`` and
    which, read with the other width, holds exactly ``floats`` floats (the cfg's, or a partial
    file's up to a layer boundary).

    ``head`` is the file's first bytes (at least 20); ``samples`` are the :func:`probes` with
    the bytes read for each (a short read is skipped).
    """
    low, high = struct.unpack_from("<II", head, 12)
    negative = {16: 0, 20: 0}
    odd = {16: 0, 20: 0}
    probed = 0
    for probe, data in samples:
        if len(data) < probe.nbytes:
            continue
        probed += 1
        values = np.frombuffer(data, dtype=F32, count=probe.count + 1)
        for width, part in ((16, values[:-1]), (20, values[1:])):
            finite = part[np.isfinite(part)]
            negative[width] += int(np.count_nonzero(finite < -_TINY))
            odd[width] += int(part.size - finite.size) + int(
                np.count_nonzero(np.abs(finite) > _HUGE)
            )
    readings: list[Reading] = []
    for width in (16, 20):
        against: list[str] = []
        notes: list[str] = []
        other = 36 - width
        if _clearly_more(negative[width], negative[other]):
            against.append(
                f"{negative[width]:,} batch-norm variances would be negative (in the"
                f" {probed:,} variance arrays read; a variance cannot be"
                + (f"; {negative[other]:,} read the other way" if negative[other] else "")
                + ")"
            )
        if _clearly_more(odd[width], odd[other]):
            against.append(f"{odd[width]:,} variances would be infinite, NaN or beyond {_HUGE:g}")
        if width == 20:
            if high >= _FLOAT_BITS:
                (value,) = struct.unpack_from("<f", head, 16)
                against.append(
                    f"seen would be {low + (high << 32):,} (the bytes after a 32-bit seen are"
                    f" the float {value:.6g}, not the high half of a count)"
                )
            else:
                notes.append(
                    "the 4 bytes after a 32-bit seen are "
                    + ("zero" if high == 0 else f"{high:,}")
                    + ", as the high half of a 64-bit seen is"
                )
        elif high < _FLOAT_BITS:
            what = "exactly 0.0" if high == 0 else "a denormal"
            notes.append(f"the first value of the body would be {what}")
        if not against and probed:
            notes.append(f"all {probed:,} variance arrays read are valid")
        seen = low if width == 16 else low + (high << 32)
        excess = size - (width + 4 * floats)
        readings.append(Reading(width, seen, excess, tuple(against), tuple(notes)))
    r16, r20 = readings
    chosen: int | None = None
    if r16.against and not r20.against:
        chosen = 20
    elif r20.against and not r16.against:
        chosen = 16
    return WidthJudgement(rule, floats, (r16, r20), chosen, probed)
