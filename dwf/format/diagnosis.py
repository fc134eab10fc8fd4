"""Explain why a weights file does not fit its cfg, the way a good compiler error does.

The facts of one mismatch are one record (:class:`dwf.format.causes.Context`); each candidate
cause is one function, a *checker*, that looks at the context and at the causes found before it
and returns the causes it can vouch for (:mod:`dwf.format.causes`: what the size and the bytes
say; :mod:`dwf.format.cfg_causes`: what an edited, re-planned cfg says). :data:`CHECKERS` is
their order, which is the ranking: what the first bytes prove, what the values prove, other cfgs,
the cfg's own warnings, edits of the cfg, the public networks, then the fallbacks. A new cause is
one function added to that tuple, and its kind to :data:`~dwf.format.causes.CauseKind`, which
docs/api.md lists (a test compares the type, the code and the table).

Each cause is *checked against the byte counts*: it is listed only when the file's size is
exactly what it predicts (re-planning an edited cfg where needed), except the fallbacks
("truncated", "trailing-bytes", a cfg warning that may explain it), which say what is left when
nothing explains the size exactly.
"""

from __future__ import annotations

import attrs

from dwf.format import causes, cfg_causes
from dwf.format.causes import Cause, CauseKind, Checker, Context
from dwf.format.header import Header, other_width
from dwf.format.known import MAX_CLASSES, CfgFit
from dwf.format.planner import Plan
from dwf.format.retrain import class_model

__all__ = [
    "CHECKERS",
    "Cause",
    "CauseKind",
    "Checker",
    "Context",
    "Diagnosis",
    "diagnose",
    "fit_plan",
]


def fit_plan(
    plan: Plan, size: int, header: Header, cfg: str, *, classes: bool = True
) -> CfgFit | None:
    """How a file of ``size`` bytes with ``header`` fits ``plan``, best first: exactly, as a
    partial file, or (``classes``: two more plans) with the class count solved; ``None``."""
    widths = (header.size, other_width(header.size))
    for how in ("exact", "partial"):
        for H in widths:
            body = size - H
            if body < 0 or body % 4:
                continue
            floats = body // 4
            if how == "exact" and floats == plan.total_floats:
                return CfgFit(cfg, how, plan.dialect, H, len(plan.layers), floats)
            bounds = plan.boundaries()
            if how == "partial" and 0 < floats < plan.total_floats and floats in bounds:
                return CfgFit(
                    cfg, how, plan.dialect, H, len(plan.layers), floats, upto=bounds[floats] + 1
                )
    if not classes:
        return None
    cm = class_model(plan)
    if cm is None:
        return None
    for H in widths:
        body = size - H
        if body < 0 or body % 4:
            continue
        c = cm.solve(body // 4)
        if c is not None and c != cm.classes and c <= MAX_CLASSES:
            return CfgFit(cfg, "classes", plan.dialect, H, len(plan.layers), body // 4, classes=c)
    return None


def needs(header_size: int, floats: int) -> str:
    """What a cfg needs, as every size message says it: ``needs 1,384,268 bytes (20-byte
    header + 346,062 float32)``, at the header width of the file in question."""
    total = header_size + 4 * floats
    return f"needs {total:,} bytes ({header_size}-byte header + {floats:,} float32)"


@attrs.frozen
class Diagnosis:
    """Why a file does not fit its cfg: the facts, and the causes that explain them, ranked.

    Attributes:
        path: the weights file.
        cfg: the cfg file (or ``None``).
        dialect: the dialect used.
        expected_size: bytes a complete file has (with ``header_size``).
        actual_size: bytes the file has.
        header_size: header width used (16 or 20).
        first_unfilled: ``(layer index, name, type, array, start byte, stop byte)`` of the first
            array the file cannot fill, or ``None`` when the file is larger.
        causes: candidate causes, most likely first.
    """

    path: str
    cfg: str | None
    dialect: str
    expected_size: int
    actual_size: int
    header_size: int
    first_unfilled: tuple[int, str, str, str, int, int] | None
    causes: tuple[Cause, ...]

    @property
    def cause(self) -> Cause | None:
        """The most likely cause."""
        return self.causes[0] if self.causes else None

    def explain(self) -> str:
        """The diagnosis as readable text (what :class:`dwf.SizeMismatchError` prints)."""
        cfg = self.cfg or "the cfg"
        lines = []
        first = self.cause
        if first is not None and first.kind in ("other-cfg", "known-network") and first.exact:
            lines.append(f"{self.path}: {first.summary}")
        lines += [
            f"{self.path}: {self.actual_size:,} bytes, but {cfg} (dialect {self.dialect})"
            f" {needs(self.header_size, (self.expected_size - self.header_size) // 4)}"
        ]
        if self.first_unfilled is not None:
            idx, name, typ, arr, start, stop = self.first_unfilled
            lines.append(
                f"  first layer that cannot be filled: {idx} ({name}, {typ}), array {arr} at"
                f" bytes {start:,}..{stop:,}"
            )
        diff = self.actual_size - self.expected_size
        lines.append(
            f"  the file is {abs(diff):,} bytes {'short' if diff < 0 else 'too long'}"
            + (f" ({abs(diff) // 4:,} floats)" if diff % 4 == 0 else "")
        )
        for i, c in enumerate(self.causes, 1):
            label = "likely cause" if i == 1 else "or"
            summary = c.summary
            if i == 1 and lines[0].endswith(c.summary):
                summary = "the file belongs to another cfg (the first line)"
            lines.append(f"  {label}: {summary}")
            if c.fix:
                lines.append(f"    fix: {c.fix}")
        lines.append(
            "  open with strict=False (dwf: --lenient) to read the layers the file holds completely"
        )
        return "\n".join(lines)


def diagnose(context: Context) -> Diagnosis:
    """Run :data:`CHECKERS` in order over ``context``: the :class:`Diagnosis` of a file whose size
    does not fit ``context.plan``. A ``"not-weights"`` cause ends the search (what the first bytes
    prove makes the rest beside the point)."""
    found: list[Cause] = []
    for check in CHECKERS:
        found += check(context, tuple(found))
        if any(cause.kind == "not-weights" for cause in found):
            break
    plan, H = context.plan, context.H
    return Diagnosis(
        path=context.path,
        cfg=plan.cfg_path,
        dialect=plan.dialect,
        expected_size=plan.expected_size(H),
        actual_size=context.size,
        header_size=H,
        first_unfilled=_first_unfilled(plan, H, context.size),
        causes=tuple(found),
    )


CHECKERS: tuple[Checker, ...] = (
    causes.not_weights,
    causes.header_evidence,
    causes.crlf,
    causes.other_cfgs,
    causes.partial_other_width,
    cfg_causes.cfg_warnings,
    cfg_causes.classes,
    cfg_causes.batch_normalize,
    cfg_causes.dialect,
    cfg_causes.one_head,
    cfg_causes.classes_and_batch_normalize,
    cfg_causes.dialect_and_classes,
    causes.known_networks,
    causes.leftovers,
)
"""The checkers, in the order their causes are ranked."""


def _first_unfilled(plan: Plan, H: int, size: int) -> tuple[int, str, str, str, int, int] | None:
    avail = max(size - H, 0) // 4
    for lp, a in plan.arrays():
        if a.stop > avail:
            start, stop = a.byte_span(H)
            return (lp.index, lp.name, lp.type, a.name, start, stop)
    return None
