"""Explain why a weights file does not fit its cfg, the way a good compiler error does.

Each candidate cause is *checked against the byte counts*: a cause is listed only when the
file's size is exactly what that cause predicts (re-planning an edited cfg where needed), except
for the fallback "truncated download", which is what is left when nothing explains the size.
Causes are ranked: what the first bytes prove, then exact explanations, then the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from dwf.format.dialects import DIALECTS
from dwf.format.header import Header, other_width, sniff
from dwf.format.known import MAX_CLASSES, CfgFit, lookup
from dwf.format.planner import Plan
from dwf.format.records import LayerPlan
from dwf.format.retrain import (
    bn_layers,
    class_model,
    heads,
    replan,
    set_option,
    with_batch_normalize,
    with_classes,
)


@attrs.frozen
class Cause:
    """One explanation of a size mismatch.

    Attributes:
        kind: ``"not-weights"``, ``"header-width"``, ``"partial"``, ``"classes"``,
            ``"batch-normalize"``, ``"dialect"``, ``"cfg-prefix"``, ``"truncated"`` or
            ``"trailing-bytes"``.
        summary: one line saying what is wrong.
        fix: what would make file and cfg agree, when known.
        exact: ``True`` when the file's size is exactly what this cause predicts.
    """

    kind: str
    summary: str
    fix: str | None = None
    exact: bool = True


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
            f"{self.path}: {self.actual_size:,} bytes, but {cfg} (dialect {self.dialect}) needs"
            f" {self.expected_size:,} bytes ({self.header_size}-byte header +"
            f" {(self.expected_size - self.header_size) // 4:,} float32)"
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


def diagnose(
    path: str,
    head: bytes,
    header: Header,
    size: int,
    plan: Plan,
    *,
    fits: Sequence[CfgFit] = (),
    crlf: tuple[int, int] | None = None,
) -> Diagnosis:
    """Diagnose a file of ``size`` bytes whose header is ``header`` against ``plan``.

    ``fits`` are other cfgs the caller found the file to fit (the reader looks beside the file:
    :mod:`dwf.io.cfg_search`); ``crlf`` is ``(CRLF pairs, lone LF bytes)`` in the whole file
    when its first bytes look CRLF-translated.
    """
    H = header.size
    n = plan.total_floats
    first = _first_unfilled(plan, H, size)
    causes: list[Cause] = []
    what = sniff(head)
    if what:
        causes.append(Cause("not-weights", what, "get the real .weights file"))
    given = plan.cfg_path or "the cfg given"
    if what is None:
        causes += _crlf_causes(plan, header, size, crlf)
        causes += _fit_causes(fits, given)
    body = size - H
    boundaries = plan.boundaries()
    other = other_width(H)
    if what is None:
        ob = size - other
        if ob >= 0 and ob % 4 == 0 and ob // 4 in boundaries and ob // 4 < n:
            k = boundaries[ob // 4]
            causes.append(
                Cause(
                    "header-width",
                    f"the file is a partial file (layers 0..{k}) with a {other}-byte header instead"
                    f" of the {H}-byte one version {header.version} implies",
                    f"open with header_size={other}",
                )
            )
        causes += _text_causes(plan, body, size, H)
        causes += _table_causes(size, header, given, path)
        if body > 4 * n and body % 4:
            # Longer than the cfg and not whole floats: the cfg's floats are all there, followed
            # by stray bytes (not a truncation).
            extra = body - 4 * n
            causes.append(
                Cause(
                    "trailing-bytes",
                    f"the file holds all {n:,} floats the cfg needs, followed by {extra:,} stray"
                    f" bytes that are not a whole number of float32 values (data appended after"
                    " the weights)",
                    f"drop the last {extra:,} bytes, or check that the cfg is the one the weights"
                    " were trained with",
                    exact=False,
                )
            )
        elif body % 4:
            causes.append(_truncated(path, plan, body, H, exact=True))
        elif body < 4 * n and not causes:
            causes.append(_truncated(path, plan, body, H, exact=False))
        elif body > 4 * n and not causes:
            extra = body - 4 * n
            causes.append(
                Cause(
                    "trailing-bytes",
                    f"the file holds {extra // 4:,} floats more than the cfg: weights from a bigger"
                    " network (more classes, filters or layers) or a cfg missing its last layers",
                    "check that the cfg is the one the weights were trained with",
                    exact=False,
                )
            )
    return Diagnosis(
        path=path,
        cfg=plan.cfg_path,
        dialect=plan.dialect,
        expected_size=plan.expected_size(H),
        actual_size=size,
        header_size=H,
        first_unfilled=first,
        causes=tuple(causes),
    )


def _first_unfilled(plan: Plan, H: int, size: int) -> tuple[int, str, str, str, int, int] | None:
    avail = max(size - H, 0) // 4
    for lp, a in plan.arrays():
        if a.stop > avail:
            start, stop = a.byte_span(H)
            return (lp.index, lp.name, lp.type, a.name, start, stop)
    return None


def _truncated(path: str, plan: Plan, body: int, H: int, *, exact: bool) -> Cause:
    floats = body // 4
    after = [(lp.stop, lp) for lp in plan.layers if lp.arrays and lp.stop * 4 >= body]
    where = ""
    if after:
        stop, lp = after[0]
        where = (
            f"; it ends inside layer {lp.index} ({lp.name}); a file through that layer would be"
            f" {H + 4 * stop:,} bytes"
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


# -- causes found elsewhere: other cfgs, the identify table, line-ending translation -----------
def _fit_causes(fits: Sequence[CfgFit], given: str) -> list[Cause]:
    out: list[Cause] = []
    name = given.replace("\\", "/").rsplit("/", 1)[-1]
    exact = [f for f in fits if f.how == "exact"]
    rest = [f for f in fits if f.how != "exact"]
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


def _table_causes(size: int, header: Header, given: str, path: str) -> list[Cause]:
    """The public cfgs (retrained for any class count) the file fits, from the shipped table."""
    out: list[Cause] = []
    name = given.replace("\\", "/").rsplit("/", 1)[-1]
    for H in (header.size, other_width(header.size)):
        body = size - H
        if body <= 0 or body % 4:
            continue
        for m in lookup(body // 4, H, path)[:3]:
            if m.name == name and not m.retrained and m.batch_normalize:
                continue
            width = "" if header.size == H else f" with a {H}-byte header"
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


def _crlf_causes(
    plan: Plan, header: Header, size: int, crlf: tuple[int, int] | None
) -> list[Cause]:
    if crlf is None:
        return []
    pairs, lone = crlf
    if not pairs or lone:
        return []
    before = size - pairs
    fits = [
        H for H in (header.size, other_width(header.size)) if before == H + 4 * plan.total_floats
    ]
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


# -- causes found by re-planning an edited cfg ----------------------------------------------------
def _fits(candidate: Plan | None, body: int) -> str | None:
    """``"exact"`` or ``"partial"`` when a file body of ``body`` bytes fits ``candidate``."""
    if candidate is None or body % 4:
        return None
    floats = body // 4
    if floats == candidate.total_floats:
        return "exact"
    if floats < candidate.total_floats and floats in candidate.boundaries():
        return "partial"
    return None


def _text_causes(plan: Plan, body: int, size: int, H: int) -> list[Cause]:
    if not plan.text or body % 4 or body < 0:
        return []
    causes: list[Cause] = []
    sections = _Sections(plan)
    for cause in (_classes_cause, _bn_cause, _dialect_cause):
        c = cause(plan, body, sections)
        if c is not None:
            causes.append(c)
    if any(c.kind == "classes" for c in causes):
        # One head changed by more can weigh the same as every head changed by less: then
        # the size cannot tell which, and both are said.
        c = _one_head_cause(plan, body, H)
        if c is not None:
            note = "" if "cannot tell" in c.summary else " (the size cannot tell which)"
            causes.append(attrs.evolve(c, summary=c.summary + note))
    if not causes:
        # Two changes at once, each tried only a bounded number of times (a few re-plans).
        for combined in (_one_head_cause, _classes_and_bn_cause, _dialect_classes_cause):
            c = combined(plan, body, H)
            if c is not None:
                causes.append(c)
                break
    return causes


def _classes_and_bn_cause(plan: Plan, body: int, H: int) -> Cause | None:
    """Classes changed *and* batch norm dropped from (or added to) every layer."""
    cm = class_model(plan)
    if cm is None:
        return None
    with_bn = bn_layers(plan)
    without = [
        lp.index
        for lp in plan.layers
        if lp.type == "convolutional"
        and lp.arrays
        and lp.index not in with_bn
        and lp.index not in {h.feeder for h in heads(plan)}
    ]
    for layers, value in ((with_bn, 0), (without, 1)):
        if not layers:
            continue
        flipped = replan(plan, with_batch_normalize(plan, layers, value))
        if flipped is None:
            continue
        fcm = class_model(flipped)
        c = fcm.solve(body // 4) if fcm is not None else None
        if c is None or c == cm.classes or c > MAX_CLASSES:
            continue
        done = replan(flipped, with_classes(flipped, c))
        if _fits(done, body) != "exact":
            continue
        what = "without" if value == 0 else "with"
        return Cause(
            "classes+batch-normalize",
            f"two changes: the weights were trained for {c} classes (the cfg says {cm.classes})"
            f" and saved {what} batch norm in all {len(layers)} layers that "
            + ("have it" if value == 0 else "lack it"),
            f"set classes={c} in every head (and the filters before them) and"
            f" batch_normalize={value} in those layers",
        )
    return None


def _one_head_cause(plan: Plan, body: int, H: int) -> Cause | None:
    """The classes changed in only one of several detection heads (one re-plan per head to
    measure it, one more to confirm a fit)."""
    hs = heads(plan)
    if len(hs) < 2:
        return None
    found: list[tuple[int, int, int, int]] = []  # (head, classes, feeder, feeder size)
    diff = body // 4 - plan.total_floats
    for h in hs:
        per = replan(plan, with_classes(plan, h.classes + 1, only=[h.index]))
        if per is None:
            continue
        step = per.total_floats - plan.total_floats
        if step <= 0 or diff % step:
            continue
        c = h.classes + diff // step
        if c < 1 or c > MAX_CLASSES or c == h.classes:
            continue
        if _fits(replan(plan, with_classes(plan, c, only=[h.index])), body) == "exact":
            found.append((h.index, c, h.feeder, h.feeder_size(c)))
    if not found:
        return None
    fixes = [f"set classes={c} in layer {i} and filters={n} in layer {f}" for i, c, f, n in found]
    if len(found) == 1:
        i, c, _, _ = found[0]
        summary = (
            f"the file fits when only layer {i} ({plan.layers[i].type}) has classes={c}: the"
            " heads of the cfg disagree with the weights in one place"
        )
        return Cause("classes", summary, fixes[0])
    which = ", ".join(f"layer {i} with classes={c}" for i, c, _, _ in found)
    return Cause(
        "classes",
        f"the file fits when only one head's classes change: {which} (the size cannot tell which)",
        " — or — ".join(fixes),
    )


def _dialect_classes_cause(plan: Plan, body: int, H: int) -> Cause | None:
    """A file of the other dialect, trained for other classes."""
    for name in DIALECTS:
        if name == plan.dialect:
            continue
        other = replan(plan, plan.text, name)
        if other is None or other.total_floats == plan.total_floats:
            continue
        cm = class_model(other)
        c = cm.solve(body // 4) if cm is not None else None
        if cm is None or c is None or c == cm.classes or c > MAX_CLASSES:
            continue
        if _fits(replan(other, with_classes(other, c)), body) != "exact":
            continue
        return Cause(
            "dialect+classes",
            f"two changes: the file was written by {name}'s Darknet and trained for {c} classes"
            f" (the cfg says {cm.classes})",
            f"open with dialect={name!r} and set classes={c} in every head (and the filters"
            " before them)",
        )
    return None


class _Sections:
    """Where a layer's options are in the cfg text, found by scanning only that layer's section
    (the plan records each section's header line): no second tokenisation of the whole text."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._lines: list[str] | None = None
        blanks = " \t\r" if plan.rules.strip_cr else " \t"  # as the tokeniser
        self._table = {ord(c): None for c in blanks}

    def header_line(self, layer: int) -> int:
        return self._plan.layers[layer].line

    def option_line(self, layer: int, key: str) -> int | None:
        """The line of the option Darknet reads for ``key`` in the layer's section (the first
        one with a value, as the tokeniser decides), or ``None``."""
        if self._lines is None:
            self._lines = self._plan.text.split("\n")
        lines = self._lines
        for i in range(self.header_line(layer), len(lines)):  # 0-based i is line i + 1
            line = lines[i].split("\x00", 1)[0].translate(self._table)
            if not line or line[0] in "#;":
                continue
            if line[0] == "[":
                break
            k, eq, value = line.partition("=")
            if eq and value and k == key:
                return i + 1
        return None


def _classes_cause(plan: Plan, body: int, layer_sections: _Sections) -> Cause | None:
    """Solve for the class count that explains the difference, then verify by re-planning."""
    heads = [lp for lp in plan.layers if lp.type in ("yolo", "Gaussian_yolo", "region")]
    if not heads:
        return None
    per_class = 0
    edits: list[tuple[int, int]] = []  # (head index, feeding conv index)
    for lp in heads:
        conv = plan.layers[lp.index - 1] if lp.index > 0 else None
        if conv is None or conv.type != "convolutional" or not conv.arrays:
            return None
        anchors = lp.params.get("anchors", lp.params.get("num", 1))
        cin = conv.in_c // max(int(conv.params.get("groups", 1)), 1)
        k = int(conv.params.get("size", 1))
        bn = 3 if conv.params.get("batch_normalize") else 0
        per_class += anchors * (1 + bn + cin * k * k)
        edits.append((lp.index, conv.index))
    diff = body // 4 - plan.total_floats
    if per_class == 0 or diff % per_class:
        return None
    delta = diff // per_class
    classes = int(heads[0].params.get("classes", 20))
    new_classes = classes + delta
    if delta == 0 or new_classes < 1:
        return None
    lines = plan.text.split("\n")
    fixes: list[str] = []
    for head_idx, conv_idx in edits:
        head = plan.layers[head_idx]
        extra = {"yolo": 5, "Gaussian_yolo": 9}.get(head.type)
        if extra is None:
            extra = int(head.params.get("coords", 4)) + 1
        anchors = head.params.get("anchors", head.params.get("num", 1))
        filters = anchors * (new_classes + extra)
        set_option(
            lines,
            layer_sections.header_line(head_idx),
            "classes",
            str(new_classes),
            layer_sections.option_line(head_idx, "classes"),
        )
        set_option(
            lines,
            layer_sections.header_line(conv_idx),
            "filters",
            str(filters),
            layer_sections.option_line(conv_idx, "filters"),
        )
        fixes.append(f"filters={filters} in layer {conv_idx}")
    # inserting lines shifts nothing we still need: edits were applied to existing lines or
    # appended to section header lines, so all recorded line numbers stay valid.
    fit = _fits(replan(plan, "\n".join(lines)), body)
    if fit is None:
        return None
    return Cause(
        "classes",
        f"the weights were trained for {new_classes} classes, the cfg says {classes}"
        + (" (the file is a partial file of that network)" if fit == "partial" else ""),
        f"set classes={new_classes} in every [{heads[0].type}] layer and " + ", ".join(fixes),
    )


def _bn_variants(plan: Plan) -> list[tuple[str, list[int], int]]:
    """Candidate sets of conv/connected layers whose batch_normalize flipped: (label, layers,
    new value)."""
    with_bn = [
        lp.index
        for lp in plan.layers
        if lp.type in ("convolutional", "connected") and lp.params.get("batch_normalize")
    ]
    without = [
        lp.index
        for lp in plan.layers
        if lp.type in ("convolutional", "connected")
        and lp.arrays
        and not lp.params.get("batch_normalize")
    ]
    variants: list[tuple[str, list[int], int]] = []
    if with_bn:
        variants.append((f"all {len(with_bn)} batch_normalize layers", with_bn, 0))
        variants += [(f"layer {i}", [i], 0) for i in with_bn]
    if without:
        variants.append((f"all {len(without)} layers without batch_normalize", without, 1))
        variants += [(f"layer {i}", [i], 1) for i in without]
    return variants


# Each re-plan costs as much as the first plan: candidates are screened by float counts and by
# the arrays their layers store (pure arithmetic on the plan), and only this many are verified by
# re-planning, so diagnosing costs a few plans' time however many layers could explain the size.
_MAX_REPLANS = 2
_MAX_MATCHES = 8
_BN = ("scales", "rolling_mean", "rolling_variance")


def _bn_flip_plausible(lp: LayerPlan, value: int) -> bool:
    """Whether switching ``batch_normalize`` to ``value`` in this layer changes its stored
    arrays by exactly the batch-norm triple (``dontloadscales`` keeps them out anyway)."""
    names = {a.name for a in lp.arrays}
    if value == 0:
        return all(n in names for n in _BN)
    return not any(n in names for n in _BN) and not lp.params.get("dontloadscales")


def _bn_cause(plan: Plan, body: int, layer_sections: _Sections) -> Cause | None:
    diff = body // 4 - plan.total_floats
    if diff == 0:
        return None
    by_index = {lp.index: lp for lp in plan.layers}
    candidates = []
    for label, layers, value in _bn_variants(plan):
        # BN arrays are 3 × filters per layer.
        predicted = sum(3 * by_index[i].out_c for i in layers) * (1 if value else -1)
        if predicted == diff and all(_bn_flip_plausible(by_index[i], value) for i in layers):
            candidates.append((label, layers, value))
            if len(candidates) > _MAX_MATCHES + 1:
                break
    matched: list[tuple[str, list[int], int]] = []
    for replans, (label, layers, value) in enumerate(candidates):
        if replans >= _MAX_REPLANS:
            break
        lines = plan.text.split("\n")
        for i in layers:
            set_option(
                lines,
                layer_sections.header_line(i),
                "batch_normalize",
                str(value),
                layer_sections.option_line(i, "batch_normalize"),
            )
        if _fits(replan(plan, "\n".join(lines)), body) != "exact":
            continue
        matched.append((label, layers, value))
        if len(layers) == 1:
            # The other single layers that the counts allow are alike (same filter count, same
            # stored arrays); the size cannot tell them apart, so they are listed unverified.
            matched += [
                c for c in candidates if len(c[1]) == 1 and c[2] == value and c[1] != layers
            ]
            matched = matched[:_MAX_MATCHES]
        break
    if matched:
        label, layers, value = matched[0]
        if len(matched) > 1:
            # Several layers with the same filter count: the size cannot tell which one changed.
            layers = [m[1][0] for m in matched]
            label = "one of layers " + ", ".join(str(i) for i in layers)
        hint = " (the file's size cannot tell which)" if len(matched) > 1 else ""
        names = ", ".join(by_index[i].name for i in layers[:6]) + (", …" if len(layers) > 6 else "")
        if value == 0:
            summary = (
                f"the weights were saved without batch norm in {label} ({names}): the file"
                f" lacks their scales/rolling_mean/rolling_variance ({-diff:,} floats)"
            )
            fix = f"set batch_normalize=0 in {label}{hint}"
        else:
            summary = (
                f"the weights were saved with batch norm in {label} ({names}): the file has"
                f" {diff:,} more floats, their scales/rolling_mean/rolling_variance"
            )
            fix = f"set batch_normalize=1 in {label}{hint}"
        return Cause("batch-normalize", summary, fix)
    return None


def _dialect_cause(plan: Plan, body: int, layer_sections: _Sections) -> Cause | None:
    for name in DIALECTS:
        if name == plan.dialect:
            continue
        fit = _fits(replan(plan, plan.text, name), body)
        if fit:
            what = "exactly" if fit == "exact" else "as a partial file"
            return Cause(
                "dialect",
                f"the file fits the cfg {what} when read as {name}'s Darknet wrote it"
                " (the forks store [batchnorm], [gru], [lstm], [crnn], route groups and weighted"
                " shortcuts differently)",
                f"open with dialect={name!r}",
            )
    return None
