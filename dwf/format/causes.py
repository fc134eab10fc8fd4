"""The causes of a size mismatch and the facts they are found from.

:class:`Context` holds the facts of one mismatch; a *checker* is a function of the context (and
of the causes found before it) that returns the :class:`Cause` s it can vouch for. This module
holds the records and the checkers that read the size and the bytes: what the first bytes prove,
what the values say about the header width, line-ending translation, other cfgs, the public
networks, and what is left. The checkers that re-plan an edited cfg are in
:mod:`dwf.format.cfg_causes`; their order is :data:`dwf.format.diagnosis.CHECKERS`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Literal

import attrs

from dwf.format.header import Header, other_width, sniff
from dwf.format.header_width import WidthJudgement
from dwf.format.known import CfgFit, lookup
from dwf.format.planner import Plan
from dwf.format.retrain import ClassModel, class_model

CauseKind = Literal[
    "not-weights",
    "header-width",
    "truncated",
    "trailing-bytes",
    "crlf",
    "other-cfg",
    "cfg-warning",
    "classes",
    "batch-normalize",
    "dialect",
    "classes+batch-normalize",
    "dialect+classes",
    "known-network",
]
"""Every kind of :class:`Cause` the checkers produce (docs/api.md has the table)."""


@attrs.frozen
class Cause:
    """One explanation of a size mismatch.

    Attributes:
        kind: what kind of cause (:data:`CauseKind`): ``"not-weights"``, ``"header-width"``,
            ``"truncated"``, ``"trailing-bytes"``, ``"crlf"``, ``"other-cfg"``,
            ``"cfg-warning"``, ``"classes"``, ``"batch-normalize"``, ``"dialect"``,
            ``"classes+batch-normalize"``, ``"dialect+classes"`` or ``"known-network"``.
        summary: one line saying what is wrong.
        fix: what would make file and cfg agree, when known.
        exact: ``True`` when the file's size is exactly what this cause predicts.
    """

    kind: CauseKind
    summary: str
    fix: str | None = None
    exact: bool = True


@attrs.frozen(slots=False)  # not slotted: the cached properties below keep their value
class Context:
    """The facts of one size mismatch: what every checker looks at.

    Attributes:
        path: the weights file.
        head: its first bytes (up to 512).
        header: its header, decoded with the width the version implies (or the one forced).
        size: its size in bytes.
        plan: the plan it does not fit.
        fits: other cfgs the caller found the file to fit (the reader looks beside the file:
            :mod:`dwf.io.cfg_search`).
        crlf: ``(CRLF pairs, lone LF bytes)`` in the whole file when its first bytes look
            CRLF-translated, else ``None``.
        width: when the size fits the cfg exactly with the other header width, what the file's
            values say about the two readings (:func:`dwf.format.header_width.judge`).
    """

    path: str
    head: bytes
    header: Header
    size: int
    plan: Plan
    fits: tuple[CfgFit, ...] = ()
    crlf: tuple[int, int] | None = None
    width: WidthJudgement | None = None

    @property
    def H(self) -> int:
        """The header width the mismatch is measured with."""
        return self.header.size

    @property
    def body(self) -> int:
        """Bytes after the header."""
        return self.size - self.header.size

    @property
    def given(self) -> str:
        """The cfg as a message names it."""
        return self.plan.cfg_path or "the cfg given"

    @property
    def given_name(self) -> str:
        """The cfg's file name (no folder, either separator), as "it does not fit …" names it."""
        return self.given.replace("\\", "/").rsplit("/", 1)[-1]

    @functools.cached_property
    def sniffed(self) -> str | None:
        """What the first bytes prove the file is, when it is not weights at all."""
        return sniff(self.head)

    @property
    def editable(self) -> bool:
        """Whether edited cfgs can explain the size: cfg text to edit, whole floats."""
        return bool(self.plan.text) and self.body >= 0 and self.body % 4 == 0

    @functools.cached_property
    def classes(self) -> ClassModel | None:
        """How the plan's float count follows its class count (measured once per diagnosis)."""
        return class_model(self.plan)


Checker = Callable[[Context, tuple[Cause, ...]], Iterable[Cause]]
"""A checker: the causes it vouches for, given the facts and the causes found before it."""


# -- what the first bytes and the values prove ---------------------------------------------------
def not_weights(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """The first bytes are an archive, a web page, a text file …: not weights at all."""
    what = ctx.sniffed
    return [Cause("not-weights", what, "get the real .weights file")] if what else []


def header_evidence(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """The file fits the cfg exactly, or ends on a layer boundary, with the header width its
    version does not imply, and 4 bytes off with the one it does (docs/format.md §1.5): what the
    values say about the two readings. When they rule the other width out, the file is cut (or
    has 4 stray bytes); when they cannot tell, both readings are given."""
    j = ctx.width
    if j is None or j.chosen == other_width(ctx.H):
        return []  # no judgement, or the values support the other width (partial_other_width)
    rule, odd = j.reading(ctx.H), j.reading(other_width(ctx.H))
    short = rule.excess < 0
    complete = j.floats == ctx.plan.total_floats
    where = "a complete file" if complete else f"a file ending after layer {_last(ctx, j.floats)}"
    summary = (
        f"an interrupted copy or download: the file is 4 bytes short of {where} with the"
        f" {rule.width}-byte header its version implies"
        if short
        else f"4 stray bytes after {where} with the {rule.width}-byte header its version implies"
    )
    if j.chosen is not None:
        summary += (
            f"; read with a {odd.width}-byte header instead it would end exactly there, but"
            f" {odd.because()}"
        )
    elif j.probed:
        summary += f"; its values cannot tell which ({j.explain()})"
    else:
        summary += f"; the cfg has no batch-norm variances to tell which by ({j.explain()})"
    damaged = Cause(
        "truncated" if short else "trailing-bytes",
        summary,
        "copy or download the file again" if short else "drop the last 4 bytes",
    )
    if j.chosen is not None:
        return [damaged]
    if complete:
        writer = (
            "AlexeyAB's build of 2018-10-03 wrote 0.2.5 with a 4-byte seen"
            if odd.width == 16
            else "AlexeyAB's builds of October 2017 wrote 0.1.0 with an 8-byte seen"
        )
        odd_cause = Cause(
            "header-width",
            f"a file written with a {odd.width}-byte header ({writer}): it fits the cfg exactly"
            " that way",
            f"open with header_size={odd.width} if it came from such a build",
        )
    else:
        partial = partial_other_width(attrs.evolve(ctx, width=None), found)
        if not partial:
            return [damaged]
        odd_cause = partial[0]
    return [damaged, odd_cause] if short else [odd_cause, damaged]


def _last(ctx: Context, floats: int) -> int:
    """The last layer a file of ``floats`` floats holds, when it ends on a layer boundary."""
    return ctx.plan.boundaries().get(floats, -1)


# -- causes found elsewhere: line-ending translation, other cfgs ---------------------------------
def crlf(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """Every 0A byte became 0D 0A (copied in text mode): the file grew by one byte per 0A."""
    if ctx.crlf is None:
        return []
    pairs, lone = ctx.crlf
    if not pairs or lone:
        return []
    before = ctx.size - pairs
    fits = [H for H in (ctx.H, other_width(ctx.H)) if before == ctx.plan.expected_size(H)]
    if fits:
        how = f"it then has exactly the {before:,} bytes this cfg needs"
    else:
        how = f"it was {before:,} bytes before"
    return [
        Cause(
            "crlf",
            f"the file was CRLF-translated (copied in text mode, or through a tool that"
            f" rewrote line endings): each of its {pairs:,} 0A bytes became 0D 0A, so it grew"
            f" by {pairs:,} bytes; {how}",
            'undo it by replacing every 0D 0A with 0A (python -c "import sys;'
            " d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(d.replace(b'\\r\\n',"
            " b'\\n'))\" IN OUT), or download it again in binary mode",
            exact=bool(fits),
        )
    ]


def other_cfgs(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """Cfgs beside the file that it fits (found by the caller)."""
    out: list[Cause] = []
    name = ctx.given_name
    exact = [f for f in ctx.fits if f.how == "exact"]
    rest = [f for f in ctx.fits if f.how != "exact"]
    if exact:
        f = exact[0]
        also = ", ".join(g.cfg for g in exact[1:4])
        out.append(
            Cause(
                "other-cfg",
                f"this file {f.describe()}"
                + (f" (and also {also})" if also else "")
                + f"; it does not fit {name}",
                f"open it with that cfg (cfg={f.cfg!r}, dwf: --cfg {f.cfg})",
            )
        )
    for f in rest[: 3 - len(out)]:
        fix = f"open it with that cfg (cfg={f.cfg!r}, dwf: --cfg {f.cfg})"
        if f.how == "classes":
            fix = f"use {f.cfg} with classes={f.classes} (and the filters before each head)"
        out.append(
            Cause(
                "other-cfg",
                f"this file {f.describe()}; it does not fit {name}",
                fix,
                exact=f.how != "partial",
            )
        )
    return out


def partial_other_width(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """A partial file whose header is not as wide as its version says (unless its values say
    otherwise: :func:`header_evidence`)."""
    other = other_width(ctx.H)
    if ctx.width is not None and ctx.width.chosen != other:
        return []
    body = ctx.size - other
    boundaries = ctx.plan.boundaries()
    if body < 0 or body % 4 or body // 4 not in boundaries or body // 4 >= ctx.plan.total_floats:
        return []
    k = boundaries[body // 4]
    return [
        Cause(
            "header-width",
            f"the file is a partial file (layers 0..{k}) with a {other}-byte header instead"
            f" of the {ctx.H}-byte one version {ctx.header.version} implies",
            f"open with header_size={other}",
        )
    ]


# -- the identify table ---------------------------------------------------------------------------
def known_networks(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """The public cfgs (retrained for any class count) the file fits, from the shipped table."""
    out: list[Cause] = []
    name = ctx.given_name
    for H in (ctx.H, other_width(ctx.H)):
        body = ctx.size - H
        if body <= 0 or body % 4:
            continue
        for m in lookup(body // 4, H, ctx.path)[:3]:
            if m.name == name and not m.retrained and m.batch_normalize:
                continue
            width = "" if ctx.H == H else f" with a {H}-byte header"
            out.append(
                Cause(
                    "known-network",
                    f"this file fits the public {m.describe()}{width} exactly; it does not fit"
                    f" {name}",
                    f"open it with {m.cfg or m.name} from Darknet's cfg folder"
                    + (
                        f", with classes={m.classes} in every detection head and the filters"
                        " before them to match"
                        if m.retrained
                        else ""
                    ),
                )
            )
        if out:
            break
    return out[:3]


# -- what is left ---------------------------------------------------------------------------------
def leftovers(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """What the size says when nothing above explains it exactly: stray bytes after a complete
    body, a body that is not whole floats (cut or corrupted), or a file that ends early (a
    truncated download) or holds more floats than the cfg."""
    body, n, H = ctx.body, ctx.plan.total_floats, ctx.H
    if body > 4 * n and body % 4:
        # Longer than the cfg and not whole floats: the cfg's floats are all there, followed by
        # stray bytes (not a truncation).
        extra = body - 4 * n
        return [
            Cause(
                "trailing-bytes",
                f"the file holds all {n:,} floats the cfg needs, followed by {extra:,} stray"
                f" bytes that are not a whole number of float32 values (data appended after"
                " the weights)",
                f"drop the last {extra:,} bytes, or check that the cfg is the one the weights"
                " were trained with",
                exact=False,
            )
        ]
    if body % 4:
        return [_truncated(ctx.path, ctx.plan, body, H, exact=True)]
    if found:
        return []
    if body < 4 * n:
        return [_truncated(ctx.path, ctx.plan, body, H, exact=False)]
    if body > 4 * n:
        extra = body - 4 * n
        return [
            Cause(
                "trailing-bytes",
                f"the file holds {extra // 4:,} floats more than the cfg: weights from a bigger"
                " network (more classes, filters or layers) or a cfg missing its last layers",
                "check that the cfg is the one the weights were trained with",
                exact=False,
            )
        ]
    return []


def _truncated(path: str, plan: Plan, body: int, H: int, *, exact: bool) -> Cause:
    floats = body // 4
    ends_in = next((lp for lp in plan.layers if lp.arrays and lp.stop * 4 >= body), None)
    where = ""
    if ends_in is not None:
        where = (
            f"; it ends inside layer {ends_in.index} ({ends_in.name}); a file through that layer"
            f" would be {ends_in.byte_span(H)[1]:,} bytes"
        )
    named = re.search(r"\.conv\.(\d+)$", path)
    if named and 0 < int(named.group(1)) <= len(plan.layers):
        upto = int(named.group(1))
        stop = max((lp.stop for lp in plan.layers[:upto]), default=0)
        where += (
            f"; its name says it holds layers 0..{upto - 1}, which would be {H + 4 * stop:,} bytes"
        )
    if body % 4:
        summary = (
            f"a truncated or corrupted file: the body after the {H}-byte header is {body:,}"
            f" bytes, not a whole number of float32 values ((size - {H}) % 4 == {body % 4})"
        )
    else:
        summary = (
            f"a truncated download, or a file for a cfg not found: the file holds {floats:,} of"
            f" {plan.total_floats:,} floats and no cfg beside it fits"
        )
    fix = (
        "if it was downloaded, one possibility is to download it again; otherwise find the cfg"
        " it was trained with"
    )
    return Cause("truncated", summary + where, fix, exact=exact)
