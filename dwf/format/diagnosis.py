"""Explain why a weights file does not fit its cfg, the way a good compiler error does.

Each candidate cause is *checked against the byte counts*: a cause is listed only when the
file's size is exactly what that cause predicts (re-planning an edited cfg where needed), except
for the fallback "truncated download", which is what is left when nothing explains the size.
Causes are ranked: what the first bytes prove, then exact explanations, then the fallback.
"""

from __future__ import annotations

import re

import attrs

from dwf.errors import CfgError
from dwf.format.dialects import DIALECTS, get_dialect
from dwf.format.header import Header, other_width, sniff
from dwf.format.planner import Plan, plan_uncached
from dwf.format.records import LayerPlan


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
        lines = [
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
            lines.append(f"  {label}: {c.summary}")
            if c.fix:
                lines.append(f"    fix: {c.fix}")
        lines.append(
            "  open with strict=False (dwf: --lenient) to read the layers the file holds completely"
        )
        return "\n".join(lines)


def diagnose(path: str, head: bytes, header: Header, size: int, plan: Plan) -> Diagnosis:
    """Diagnose a file of ``size`` bytes whose header is ``header`` against ``plan``."""
    H = header.size
    n = plan.total_floats
    first = _first_unfilled(plan, H, size)
    causes: list[Cause] = []
    what = sniff(head)
    if what:
        causes.append(Cause("not-weights", what, "get the real .weights file"))
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
        summary = f"a truncated download: the file holds {floats:,} of {plan.total_floats:,} floats"
    return Cause("truncated", summary + where, "download the file again", exact=exact)


# -- causes found by re-planning an edited cfg ----------------------------------------------------
def _replan(plan: Plan, text: str, dialect: str | None = None) -> Plan | None:
    try:
        # Uncached: an edited plan is thrown away at once and must not stay in the plan cache.
        return plan_uncached(text, dialect=dialect or plan.dialect, side=plan.side)
    except CfgError:
        return None


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
    return causes


class _Sections:
    """Where a layer's options are in the cfg text, found by scanning only that layer's section
    (the plan records each section's header line): no second tokenisation of the whole text."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._lines: list[str] | None = None
        blanks = " \t\r" if get_dialect(plan.dialect).strip_cr else " \t"  # as the tokeniser
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


def _set_option(
    lines: list[str], section_line: int, key: str, value: str, existing: int | None
) -> None:
    if existing is not None:
        lines[existing - 1] = f"{key}={value}"
    else:
        lines[section_line - 1] = lines[section_line - 1] + f"\n{key}={value}"


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
        _set_option(
            lines,
            layer_sections.header_line(head_idx),
            "classes",
            str(new_classes),
            layer_sections.option_line(head_idx, "classes"),
        )
        _set_option(
            lines,
            layer_sections.header_line(conv_idx),
            "filters",
            str(filters),
            layer_sections.option_line(conv_idx, "filters"),
        )
        fixes.append(f"filters={filters} in layer {conv_idx}")
    # inserting lines shifts nothing we still need: edits were applied to existing lines or
    # appended to section header lines, so all recorded line numbers stay valid.
    fit = _fits(_replan(plan, "\n".join(lines)), body)
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
            _set_option(
                lines,
                layer_sections.header_line(i),
                "batch_normalize",
                str(value),
                layer_sections.option_line(i, "batch_normalize"),
            )
        if _fits(_replan(plan, "\n".join(lines)), body) != "exact":
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
        fit = _fits(_replan(plan, plan.text, name), body)
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
