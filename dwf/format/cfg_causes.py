"""Causes found by editing the cfg and re-planning it: the cfg's own warnings corrected, the
classes solved, batch norm dropped or added, the other dialect, and two changes at once.

Each re-plan costs as much as the first plan, so every checker screens its candidates with
arithmetic on the plan first and re-plans a bounded number of times.
"""

from __future__ import annotations

import attrs

from dwf.format.causes import Cause, Context
from dwf.format.dialects import DIALECTS
from dwf.format.known import MAX_CLASSES
from dwf.format.planner import Plan
from dwf.format.records import LayerPlan
from dwf.format.retrain import (
    bn_layers,
    class_model,
    heads,
    replan,
    with_batch_normalize,
    with_classes,
)

# -- the cfg's own warnings ----------------------------------------------------------------------
# Options that change what a layer stores or the shape it hands on: a warning about one of them
# (misspelled, given twice, not a number) may explain a size mismatch; one about ``jitter`` or
# ``batch`` cannot.
_SHAPE_OPTIONS = (
    "filters size stride stride_x stride_y pad padding groups dilation batch_normalize cbn"
    " xnor binary antialiasing share_index output hidden output_filters hidden_filters peephole"
    " bottleneck classes num mask coords side layers from group_id weights_type"
    " weights_normalization dontload dontloadscales numload dontsave extra reverse flatten"
    " out_channels maxpool_depth history_size atoms crop_height crop_width width height channels"
    " inputs"
)
_SHAPE_KEYS = frozenset(_SHAPE_OPTIONS.split())


def cfg_warnings(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """Lines of the cfg Darknet warns about and that can change what is stored: an option its
    parser does not read that misspells one that matters (``filter=`` for ``filters=``), one
    given twice, a number that is not one, a section type it does not know. When correcting
    them (the misspelled names spelled right, the later of two lines kept) makes the file fit —
    one re-plan — the cause is exact; else it is named as a likely cause."""
    from dwf.format.options import closest, section_issues  # only on a mismatch

    plan = ctx.plan
    doc = plan.document
    if doc is None:
        return []
    issues: list[str] = []
    lines = plan.text.split("\n")
    fixes: dict[int, str | None] = {}  # line → corrected text (None: drop the line)
    for i, sec in enumerate(doc.sections):
        lp = plan.layers[i - 1] if i else None
        if lp is not None and not lp.known:
            guess = closest(sec.header, plan.rules.sections)
            issues.append(
                f"line {sec.line}: {sec.header} is not a section Darknet knows (it stores"
                " nothing)" + (f"; did you mean {guess}?" if guess else "")
            )
            if guess:
                fixes[sec.line] = guess
            continue
        where = "[net]" if lp is None else f"layer {lp.index} ({lp.name}, {lp.type})"
        for issue in section_issues(sec, "net" if lp is None else lp.type, plan.rules):
            if (issue.guess or issue.key) not in _SHAPE_KEYS:
                continue
            issues.append(f"line {issue.line}: {where}: {issue.message}")
            if issue.kind == "unread" and issue.guess is not None:
                fixes[issue.line] = f"{issue.guess}={lines[issue.line - 1].partition('=')[2]}"
            elif issue.kind == "repeated":
                first = sec.get(issue.key)
                if first is not None:
                    fixes[first.line] = None  # the later line meant to replace the first
    if not issues:
        return []
    listed = "; ".join(issues[:3]) + (f" (and {len(issues) - 3} more)" if len(issues) > 3 else "")
    if fixes and ctx.editable:
        edited = [fixes.get(n, text) for n, text in enumerate(lines, start=1)]
        # a dropped line becomes an empty one: every other line keeps its number
        text = "\n".join("" if t is None else t for t in edited)
        if _fits(replan(plan, text), ctx.body) == "exact":
            told = ", ".join(
                f"line {n}: " + ("delete it" if t is None else t)
                for n, t in sorted(fixes.items())[:6]
            )
            return [
                Cause(
                    "cfg-warning",
                    f"the cfg has lines Darknet warns about, and corrected they make the file fit"
                    f" exactly: {listed}",
                    f"correct them ({told})",
                )
            ]
    return [
        Cause(
            "cfg-warning",
            f"the cfg has lines Darknet warns about that change what its layers store (a"
            f" misspelled filters= is a common cause of a size mismatch): {listed}",
            "correct those lines and open again",
            exact=False,
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


# Kinds a checker of this section gives: the combined changes are tried only when no single one
# explains the size.
_EDITS = frozenset(
    {"classes", "batch-normalize", "dialect", "classes+batch-normalize", "dialect+classes"}
)


def classes(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """The weights were trained for another class count (every head): solved from the measured
    class model, confirmed by re-planning."""
    cm = ctx.classes if ctx.editable else None
    if cm is None:
        return []
    c = cm.solve(ctx.body // 4)
    if c is None or c == cm.classes or c > MAX_CLASSES:
        return []
    plan = ctx.plan
    if _fits(replan(plan, with_classes(plan, c)), ctx.body) != "exact":
        return []
    hs = heads(plan)
    types = sorted({plan.layers[h.index].type for h in hs})
    fixes = [
        f"{'output' if plan.layers[h.index].type == 'detection' else 'filters'}"
        f"={h.feeder_size(c)} in layer {h.feeder}"
        for h in hs
    ]
    return [
        Cause(
            "classes",
            f"the weights were trained for {c} classes, the cfg says {cm.classes}",
            f"set classes={c} in every {'/'.join(f'[{t}]' for t in types)} layer and "
            + ", ".join(fixes),
        )
    ]


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


def batch_normalize(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """Batch norm dropped from (or added to) all layers, or one: screened by float counts,
    confirmed by a bounded number of re-plans."""
    if not ctx.editable:
        return []
    plan, body = ctx.plan, ctx.body
    diff = body // 4 - plan.total_floats
    if diff == 0:
        return []
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
        if _fits(replan(plan, with_batch_normalize(plan, layers, value)), body) != "exact":
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
    if not matched:
        return []
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
    return [Cause("batch-normalize", summary, fix)]


def dialect(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """The file was written by the other Darknet (the forks store some layers differently)."""
    if not ctx.editable:
        return []
    plan = ctx.plan
    for name in DIALECTS:
        if name == plan.dialect:
            continue
        fit = _fits(replan(plan, plan.text, name), ctx.body)
        if fit:
            what = "exactly" if fit == "exact" else "as a partial file"
            return [
                Cause(
                    "dialect",
                    f"the file fits the cfg {what} when read as {name}'s Darknet wrote it"
                    " (the forks store [batchnorm], [gru], [lstm], [crnn], route groups and"
                    " weighted shortcuts differently)",
                    f"open with dialect={name!r}",
                )
            ]
    return []


def one_head(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """The classes changed in only one of several heads (one re-plan per head to measure it, one
    more to confirm). Said beside an every-head ``classes`` cause (the same size can mean
    either), or alone when no single edit explains the size."""
    with_classes_cause = any(c.kind == "classes" for c in found)
    if not ctx.editable or (not with_classes_cause and any(c.kind in _EDITS for c in found)):
        return []
    plan, body = ctx.plan, ctx.body
    hs = heads(plan)
    if len(hs) < 2:
        return []
    hits: list[tuple[int, int, int, int]] = []  # (head, classes, feeder, feeder size)
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
            hits.append((h.index, c, h.feeder, h.feeder_size(c)))
    if not hits:
        return []
    fixes = [f"set classes={c} in layer {i} and filters={n} in layer {f}" for i, c, f, n in hits]
    if len(hits) == 1:
        i, c, _, _ = hits[0]
        summary = (
            f"the file fits when only layer {i} ({plan.layers[i].type}) has classes={c}: the"
            " heads of the cfg disagree with the weights in one place"
        )
        cause = Cause("classes", summary, fixes[0])
    else:
        which = ", ".join(f"layer {i} with classes={c}" for i, c, _, _ in hits)
        cause = Cause(
            "classes",
            f"the file fits when only one head's classes change: {which} (the size cannot tell"
            " which)",
            " — or — ".join(fixes),
        )
    if with_classes_cause and "cannot tell" not in cause.summary:
        # One head changed by more can weigh the same as every head changed by less.
        cause = attrs.evolve(cause, summary=cause.summary + " (the size cannot tell which)")
    return [cause]


def classes_and_batch_normalize(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """Two changes: classes changed *and* batch norm dropped from (or added to) every layer."""
    cm = ctx.classes if ctx.editable else None
    if cm is None or any(c.kind in _EDITS for c in found):
        return []
    plan, body = ctx.plan, ctx.body
    with_bn = bn_layers(plan)
    feeders = {h.feeder for h in heads(plan)}
    without = [
        lp.index
        for lp in plan.layers
        if lp.type == "convolutional"
        and lp.arrays
        and lp.index not in with_bn
        and lp.index not in feeders
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
        return [
            Cause(
                "classes+batch-normalize",
                f"two changes: the weights were trained for {c} classes (the cfg says"
                f" {cm.classes}) and saved {what} batch norm in all {len(layers)} layers that "
                + ("have it" if value == 0 else "lack it"),
                f"set classes={c} in every head (and the filters before them) and"
                f" batch_normalize={value} in those layers",
            )
        ]
    return []


def dialect_and_classes(ctx: Context, found: tuple[Cause, ...]) -> list[Cause]:
    """Two changes: a file of the other dialect, trained for other classes."""
    if not ctx.editable or any(c.kind in _EDITS for c in found):
        return []
    plan, body = ctx.plan, ctx.body
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
        return [
            Cause(
                "dialect+classes",
                f"two changes: the file was written by {name}'s Darknet and trained for {c}"
                f" classes (the cfg says {cm.classes})",
                f"open with dialect={name!r} and set classes={c} in every head (and the filters"
                " before them)",
            )
        ]
    return []
