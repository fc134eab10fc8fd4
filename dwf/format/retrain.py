"""Edit a planned cfg the way users retrain and trim public networks — pure text edits, no I/O.

A public detector retrained for its own data keeps every layer but changes ``classes=`` in its
detection heads and, to match, the ``filters=`` of the convolution feeding each head (or the
``output=`` of the connected layer feeding a YOLOv1 ``[detection]``). Nothing else in the file
changes, so a file's float count is linear in the class count. These helpers rewrite the cfg
text for another class count or batch-norm setting, so callers can re-plan and compare counts,
and cut it after a layer (the cfg of a ``darknet partial`` file).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from dwf.errors import CfgError
from dwf.format.planner import Plan, plan_uncached
from dwf.format.records import LayerPlan

HEAD_TYPES = ("yolo", "Gaussian_yolo", "region", "detection")
# Types that pass their input through unchanged: a head's feeding layer may sit behind them.
_PASS = ("dropout", "activation", "empty", "logistic")


@attrs.frozen
class Head:
    """A detection head and the layer whose size follows from its class count.

    Attributes:
        index: the head's layer index.
        feeder: index of the conv (or, before ``[detection]``, connected) layer it reads.
        classes: the head's ``classes=``.
        per_class: channels (conv) or outputs (connected) per class in the feeder.
        extra: the feeder's channels/outputs that do not depend on the class count.
    """

    index: int
    feeder: int
    classes: int
    per_class: int
    extra: int

    def feeder_size(self, classes: int) -> int:
        """The feeder's ``filters=`` (or ``output=``) for ``classes`` classes."""
        return self.per_class * classes + self.extra


def heads(plan: Plan) -> list[Head]:
    """The detection heads whose feeding layer's size follows from ``classes=``."""
    out: list[Head] = []
    for lp in plan.layers:
        if lp.type not in HEAD_TYPES:
            continue
        feeder = _feeder(plan, lp)
        if feeder is None:
            continue
        classes = int(lp.params.get("classes", 20))
        if lp.type == "detection":
            side = int(lp.params.get("side", 7))
            per, size = side * side, feeder.outputs
        else:
            per = int(lp.params.get("anchors", lp.params.get("num", 1)))
            size = feeder.out_c
        # What does not scale with classes (coords, objectness, …) is what is left over.
        extra = size - per * classes
        out.append(Head(lp.index, feeder.index, classes, per, extra))
    return out


def _feeder(plan: Plan, head: LayerPlan) -> LayerPlan | None:
    i = head.index - 1
    while i >= 0 and plan.layers[i].type in _PASS:
        i -= 1
    if i < 0:
        return None
    lp = plan.layers[i]
    want = "connected" if head.type == "detection" else "convolutional"
    if lp.type != want or not lp.arrays:
        return None
    return lp


def set_option(
    lines: list[str], section_line: int, key: str, value: str, existing: int | None
) -> None:
    """Set ``key=value`` in the cfg ``lines``: on line ``existing`` (1-based) when the section
    has the option, else appended to the section's header line ``section_line`` — which keeps
    every recorded line number valid for further edits."""
    if existing is not None:
        lines[existing - 1] = f"{key}={value}"
    else:
        lines[section_line - 1] = lines[section_line - 1] + f"\n{key}={value}"


def with_classes(plan: Plan, classes: int, only: Iterable[int] | None = None) -> str:
    """The plan's cfg text with ``classes`` classes in every detection head (or in the heads
    whose layer indices are in ``only``), and the feeding layers resized to match."""
    lines = plan.text.split("\n")
    chosen = None if only is None else set(only)
    for h in heads(plan):
        if chosen is not None and h.index not in chosen:
            continue
        hs, fs = plan.section(h.index), plan.section(h.feeder)
        opt = hs.get("classes")
        set_option(lines, hs.line, "classes", str(classes), opt.line if opt else None)
        key = "output" if plan.layers[h.index].type == "detection" else "filters"
        fopt = fs.get(key)
        set_option(lines, fs.line, key, str(h.feeder_size(classes)), fopt.line if fopt else None)
    return "\n".join(lines)


def with_batch_normalize(plan: Plan, layers: Sequence[int], value: int) -> str:
    """The plan's cfg text with ``batch_normalize=value`` in the given layers."""
    lines = plan.text.split("\n")
    for i in layers:
        sec = plan.section(i)
        opt = sec.get("batch_normalize")
        set_option(lines, sec.line, "batch_normalize", str(value), opt.line if opt else None)
    return "\n".join(lines)


def with_input_size(plan: Plan, height: int, width: int) -> str:
    """The plan's cfg text with another ``[net]`` input size."""
    net = plan.net_section
    lines = plan.text.split("\n")
    for key, value in (("height", height), ("width", width)):
        opt = net.get(key)
        set_option(lines, net.line, key, str(value), opt.line if opt else None)
    return "\n".join(lines)


def cut_text(plan: Plan, upto: int) -> str:
    """The plan's cfg text through layer ``upto - 1``: the cfg of a file cut at ``upto`` (as
    ``darknet partial`` cuts), which reads that file as complete. Everything before the first
    layer left out stays as it was (comments, layout, line numbers), so the cut plan's layers
    and offsets are the first ``upto`` of ``plan``'s."""
    if not 0 <= upto <= len(plan.layers):
        raise CfgError(f"cannot cut at {upto}: the network has {len(plan.layers)} layers")
    if upto == len(plan.layers):
        return plan.text
    lines = plan.text.split("\n")
    kept = lines[: plan.section(upto).line - 1]
    while kept and (not kept[-1].strip() or kept[-1].lstrip()[:1] in ("#", ";")):
        kept.pop()  # blank lines and the comment that introduced the first layer left out
    return "\n".join(kept) + "\n"


def input_size_free(plan: Plan) -> bool:
    """Whether the file is the same at another input size (a fully convolutional network):
    then the input size cannot be told from the weights."""
    h, w = plan.net.height, plan.net.width
    if not (h and w):
        return False
    other = replan(plan, with_input_size(plan, 2 * h, 2 * w))
    return other is not None and other.total_floats == plan.total_floats


def replan(plan: Plan, text: str, dialect: str | None = None) -> Plan | None:
    """``text`` planned like ``plan`` (or in ``dialect``); ``None`` when Darknet would refuse it.
    Uncached: an edited plan is thrown away at once and must not stay in the plan cache."""
    try:
        return plan_uncached(text, dialect=dialect or plan.dialect, side=plan.side)
    except CfgError:
        return None


def bn_layers(plan: Plan) -> list[int]:
    """Conv and connected layers that store batch-norm arrays."""
    return [
        lp.index
        for lp in plan.layers
        if lp.type in ("convolutional", "connected") and lp.array("scales") is not None
    ]


def bn_floats(plan: Plan) -> int:
    """Floats a file of ``plan`` holds in conv/connected batch-norm arrays (what a variant
    saved without batch norm lacks)."""
    return sum(
        a.count
        for lp in plan.layers
        if lp.type in ("convolutional", "connected")
        for a in lp.arrays
        if a.name in ("scales", "rolling_mean", "rolling_variance")
    )


@attrs.frozen
class ClassModel:
    """How a plan's float count depends on its class count: ``floats(c) = base + per_class*c``.

    Attributes:
        classes: the cfg's own class count (of its first head).
        per_class: floats added per class (0 when the net has no resizable head).
        base: the float count with zero classes (a number, not a network).
    """

    classes: int
    per_class: int
    base: int

    def floats(self, classes: int) -> int:
        """The float count for ``classes`` classes."""
        return self.base + self.per_class * classes

    def solve(self, floats: int) -> int | None:
        """The class count with exactly ``floats`` floats, or ``None``."""
        if self.per_class <= 0:
            return None
        extra = floats - self.base
        if extra <= 0 or extra % self.per_class:
            return None
        return extra // self.per_class


def class_model(plan: Plan) -> ClassModel | None:
    """Measure ``floats(classes)`` by re-planning at two other class counts; ``None`` when the
    heads disagree on ``classes=`` or the edited cfg does not plan (then retraining is not a
    simple edit). Linearity is checked, not assumed."""
    hs = heads(plan)
    if not hs or len({h.classes for h in hs}) != 1:
        return None
    c0 = hs[0].classes
    counts = []
    for c in (c0 + 1, c0 + 2):
        p = replan(plan, with_classes(plan, c))
        if p is None:
            return None
        counts.append(p.total_floats)
    per = counts[0] - plan.total_floats
    if per <= 0 or counts[1] - counts[0] != per:
        return None
    return ClassModel(c0, per, plan.total_floats - per * c0)
