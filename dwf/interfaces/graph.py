"""A picture of a network: ``dwf graph`` and :func:`dwf.graph` (``f.graph()`` in a notebook).

Layers are boxes in Darknet's order, top to bottom (index, name, type, output shape, parameters,
BFLOPs); data flows down between neighbours, and every input that is not the previous layer — a
route's ``layers=``, a shortcut's ``from=`` — is an edge in a lane beside the column, each lane
holding edges that do not overlap. A network of hundreds of layers stays readable as a long
column, its repeated blocks one under another. dwf writes the SVG itself (no Graphviz needed);
:meth:`Graph.dot` and :meth:`Graph.mermaid` give the same graph to render elsewhere.

Which layers a layer reads is :func:`dwf.format.figures.inputs`; detection heads are the types
in :data:`dwf.format.retrain.HEAD_TYPES`.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, Union

import attrs

from dwf.errors import DwfError
from dwf.format.figures import inputs
from dwf.format.planner import Plan
from dwf.format.retrain import HEAD_TYPES
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.opening import open_weights
from dwf.io.reader import WeightsFile
from dwf.io.writer import atomic_write

if TYPE_CHECKING:
    from dwf.tools.check import CheckReport
    from dwf.tools.diff import DiffReport

Format = Literal["svg", "dot", "mermaid"]
EdgeKind = Literal["flow", "route", "shortcut"]
# What can be highlighted: "check" (run it), a check or diff report, layers (indices or names),
# or layers with the reason to show.
Highlight = Union[str, "CheckReport", "DiffReport", Iterable[int | str], Mapping[int | str, str]]

_FORMATS = {".svg": "svg", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}
# image formats: dwf draws no pixels, and SVG text under such a name opens nowhere
_PICTURES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".pdf", ".eps"}
_NAME_MAX = 28  # characters of a name or type shown in a box (unknown sections can be huge)

# -- geometry (pixels) --------------------------------------------------------------------------
_X = 16  # left margin
_TOP = 70  # above the first box: title and legend
_BOX_W = 330
_BOX_H = 34
_PITCH = 46  # from one box's top to the next
_LANE0 = 16  # from the boxes' right edge to the first lane
_LANE = 9  # between lanes
_CHAR = 6.6  # width of a character of the 11 px monospace font
_LEGEND_W = 700  # the legend's width

_FILLS = {
    "conv": "#e8f0fe",
    "pool": "#e6f4ea",
    "join": "#fef7e0",
    "resample": "#f3e8fd",
    "head": "#fde7d9",
    "other": "#f1f3f4",
}
_KINDS = {
    "convolutional": "conv",
    "deconvolutional": "conv",
    "connected": "conv",
    "local": "conv",
    "crnn": "conv",
    "conv_lstm": "conv",
    "rnn": "conv",
    "gru": "conv",
    "lstm": "conv",
    "maxpool": "pool",
    "avgpool": "pool",
    "local_avgpool": "pool",
    "route": "join",
    "shortcut": "join",
    "scale_channels": "join",
    "sam": "join",
    "upsample": "resample",
    "reorg": "resample",
    "reorg3d": "resample",
}
_EDGE_COLOURS = {"flow": "#5f6368", "route": "#1a73e8", "shortcut": "#188038"}
_STYLE = (
    "text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;fill:#202124}"
    ".t{font-size:13px;font-weight:bold}.b{font-weight:bold}.s{fill:#5f6368}"
    "rect{stroke:#80868b;stroke-width:1}"
    ".head rect{stroke:#e8710a;stroke-width:2}"
    ".unknown rect{stroke-dasharray:4 3}"
    ".hl rect{stroke:#d93025;stroke-width:3}.hl .s{fill:#d93025}"
    ".cut{opacity:.38}"
    "path.edge{fill:none;stroke-width:1.3}"
    "path.shortcut{stroke-dasharray:5 3}"
)


def _clean(text: str, limit: int = 0) -> str:
    """``text`` as XML can hold it: control characters and lone surrogates (undecodable file
    names) replaced, cut to ``limit`` characters with ``…``, then escaped."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]", "?", text)
    if limit and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


@attrs.frozen
class Node:
    """One layer as drawn.

    Attributes:
        index, name, type: the layer's.
        shape: its output, ``c×h×w``.
        n_params: its parameters; bflops: its BFLOPs (as Darknet counts them).
        head: whether it is a detection head.
        known: ``False`` for a section the dialect does not know.
        flag: why it is highlighted (``None``: it is not).
    """

    index: int
    name: str
    type: str
    shape: str
    n_params: int
    bflops: float
    head: bool
    known: bool
    flag: str | None = None


@attrs.frozen
class Edge:
    """Data flowing from layer ``src`` (``-1``: the network's input) into layer ``dst``:
    ``flow`` from the previous layer, ``route`` a route's input, ``shortcut`` a shortcut's (or
    scale_channels', sam's) ``from=``."""

    src: int
    dst: int
    kind: EdgeKind


@attrs.frozen
class Graph:
    """A network as boxes and edges; displays inline in a notebook (SVG).

    Attributes:
        title: what the picture is of, with the network's totals.
        input: the network input's shape, ``c×h×w``.
        nodes: one per layer, in Darknet's order.
        edges: one per input of each layer, in layer order.
        cut: the layer a cut starts at (layers from it on are drawn faded), or ``None``.
        sources: the files it was drawn from (weights, cfg, those of a highlighted report),
            which :meth:`save` never replaces.
    """

    title: str
    input: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    cut: int | None = None
    sources: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)

    def svg(self) -> str:
        """The picture as an SVG document."""
        return _svg(self)

    def dot(self) -> str:
        """The graph in Graphviz's DOT language (``dot -Tsvg``)."""
        return _dot(self)

    def mermaid(self) -> str:
        """The graph as a Mermaid flowchart (GitHub renders it in a ```` ```mermaid ```` block)."""
        return _mermaid(self)

    def render(self, format: Format = "svg") -> str:
        """The graph as ``svg``, ``dot`` or ``mermaid`` text."""
        if format == "svg":
            return self.svg()
        if format == "dot":
            return self.dot()
        if format == "mermaid":
            return self.mermaid()
        raise DwfError(f"unknown graph format {format!r}: use svg, dot or mermaid")

    def save(self, path: str | os.PathLike[str], format: Format | None = None) -> str:
        """Write the graph to ``path`` (atomically) as ``format``, by default the one its
        extension names (``.svg``, ``.dot``/``.gv``, ``.mmd``; else SVG). Returns the path.

        Raises:
            DwfError: ``path`` is a file the graph was drawn from, or cannot be written, or
                (without ``format``) its extension names an image format (``.png``, ``.pdf`` …).
        """
        p = os.fspath(path)
        fmt = format or format_for(p)
        text = self.render(fmt)
        with atomic_write(p, inputs=self.sources) as fh:
            fh.write(text.encode("utf-8"))
        return p

    def _repr_svg_(self) -> str:
        return self.svg()

    def _repr_html_(self) -> str:
        # a long network scrolls in its own box instead of lengthening the notebook
        return f"<div style='max-height:640px;overflow:auto'>{self.svg()}</div>"

    def __repr__(self) -> str:
        return f"<dwf.Graph {self.title}: {len(self.nodes)} layers, {len(self.edges)} edges>"


def format_for(path: str) -> Format:
    """The format a file name asks for (``.dot``, ``.gv``, ``.mmd``; SVG otherwise).

    Raises:
        DwfError: the name asks for a picture format dwf does not draw (``.png``, ``.pdf`` …):
            SVG text in a ``.png`` would open nowhere.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext in _PICTURES:
        raise DwfError(
            f"dwf draws SVG, DOT or Mermaid, not {ext[1:].upper()}: name the file .svg, .dot or"
            f" .mmd, or choose the format (--format, format=); Graphviz draws a .dot as"
            f" {ext[1:].upper()} (dot -T{ext[1:]} net.dot -o net{ext})",
            path=path,
        )
    found = _FORMATS.get(ext, "svg")
    return "dot" if found == "dot" else "mermaid" if found == "mermaid" else "svg"


# -- building -----------------------------------------------------------------------------------
def _flags(plan: Plan, highlight: Highlight | None, f: WeightsFile | None) -> dict[int, str]:
    """Layer index → why it is highlighted."""
    if highlight is None:
        return {}
    from dwf.tools.check import CheckReport, check  # only to highlight: not on the plain path
    from dwf.tools.diff import DiffReport

    out: dict[int, list[str]] = {}
    if isinstance(highlight, str) and highlight == "check":
        if f is None:
            raise DwfError("highlighting what check finds needs a weights file, not a cfg")
        highlight = check(f)
    if isinstance(highlight, CheckReport):
        for found in highlight.findings:
            if found.severity in ("error", "warning"):
                why = f"{found.severity}: {found.array}: {found.message}"
                out.setdefault(found.index, []).append(why)
    elif isinstance(highlight, DiffReport):
        for d in highlight.changed:
            why = f"changed: {d.array} (relative L2 {d.rel_l2:.3g})"
            out.setdefault(d.index, []).append(why)
    elif isinstance(highlight, Mapping):
        for key, why in highlight.items():
            out.setdefault(_index(plan, key), []).append(str(why))
    else:
        keys = highlight.split(",") if isinstance(highlight, str) else highlight
        for key in keys:
            for i in _indices(plan, key):
                out.setdefault(i, []).append("highlighted")
    return {i: "; ".join(whys) for i, whys in out.items()}


def _read(highlight: Highlight | None) -> list[str]:
    """The files a highlight's report was made of: :meth:`Graph.save` never writes over them."""
    if highlight is None:
        return []
    from dwf.tools.check import CheckReport  # only to highlight, as in _flags
    from dwf.tools.diff import DiffReport

    if isinstance(highlight, DiffReport):
        return [highlight.a, highlight.b]
    if isinstance(highlight, CheckReport):
        return [highlight.path]
    return []


def _index(plan: Plan, key: int | str) -> int:
    return plan.layer(int(key) if isinstance(key, str) and key.strip().isdigit() else key).index


def _indices(plan: Plan, key: int | str) -> list[int]:
    """A layer by index or name, or a range ``10-20``."""
    if isinstance(key, str):
        m = re.fullmatch(r"\s*([0-9]+)\s*-\s*([0-9]+)\s*", key)
        if m:
            lo, hi = int(m[1]), int(m[2])
            if lo > hi:  # as --layers: a range written backwards names nothing
                why = f"a range runs from low to high ({hi}-{lo})"
                raise DwfError(f"highlight {key.strip()}: {why}")
            return [plan.layer(i).index for i in range(lo, hi + 1)]
    return [_index(plan, key)]


def build(
    plan: Plan,
    *,
    title: str | None = None,
    flags: Mapping[int, str] | None = None,
    cut: int | None = None,
    sources: Iterable[str | None] = (),
) -> Graph:
    """The :class:`Graph` of a plan (``flags``: layer index → why it is highlighted;
    ``sources``: the files it comes from, besides the plan's cfg)."""
    flags = flags or {}
    if cut is not None and not 0 < cut <= len(plan.layers):
        raise DwfError(
            f"the cut point must be a layer count between 1 and {len(plan.layers)}, not {cut}"
        )
    nodes = tuple(
        Node(
            lp.index,
            lp.name,
            lp.type,
            f"{lp.out_c}×{lp.out_h}×{lp.out_w}",
            lp.n_params,
            lp.bflops,
            lp.type in HEAD_TYPES,
            lp.known,
            flags.get(lp.index),
        )
        for lp in plan.layers
    )
    edges: list[Edge] = []
    for lp in plan.layers:
        for k, src in enumerate(inputs(lp)):
            kind: EdgeKind = "flow"
            if lp.type == "route":
                kind = "route"
            elif k > 0:
                kind = "shortcut"
            edges.append(Edge(src, lp.index, kind))
    n = plan.net
    where = os.path.basename(plan.cfg_path) if plan.cfg_path else "network"
    head = title or where
    summary = (
        f"{head} · {len(plan.layers)} layers · {plan.total_params:,} params"
        f" ({plan.total_trainable:,} trainable) · {plan.total_bflops:.3f} BFLOPs"
    )
    files = tuple(p for p in (*sources, plan.cfg_path) if p)
    return Graph(summary, f"{n.channels}×{n.height}×{n.width}", nodes, tuple(edges), cut, files)


def graph(
    src: str | os.PathLike[str] | WeightsFile | Plan,
    cfg: str | os.PathLike[str] | Plan | None = None,
    *,
    dialect: str = "alexeyab",
    highlight: Highlight | None = None,
    cut: int | None = None,
) -> Graph:
    """A picture of a network: a weights file (its plan), a cfg file, or a plan.

    ``highlight`` marks layers: ``"check"`` (what :func:`dwf.check` finds, errors and
    warnings; needs a weights file), a :class:`dwf.CheckReport` or :class:`dwf.DiffReport`
    (the layers that changed), layer indices, names or ranges (``[12, "conv_30", "40-45"]``),
    or a mapping of layers to the reason shown. ``cut=N`` marks where ``dwf cut … N`` would end
    the file: layers from ``N`` on are drawn faded.

    The result displays inline in a notebook; :meth:`Graph.save` writes it (``.svg``,
    ``.dot``, ``.mmd``).
    """
    if isinstance(src, Plan):
        return build(src, flags=_flags(src, highlight, None), cut=cut, sources=_read(highlight))
    if isinstance(src, WeightsFile):
        return build(
            src.plan,
            title=os.path.basename(src.path),
            flags=_flags(src.plan, highlight, src),
            cut=cut,
            sources=[src.path, *_read(highlight)],
        )
    path = os.fspath(src)
    if path.lower().endswith(".cfg") and cfg is None:
        p = plan_cfg(path, dialect=dialect)
        return build(p, flags=_flags(p, highlight, None), cut=cut)
    with open_weights(path, cfg, dialect=dialect) as f:
        return graph(f, highlight=highlight, cut=cut)


# -- SVG ----------------------------------------------------------------------------------------
def _row_top(i: int) -> int:
    """Top of layer ``i``'s box (``-1``: the input's)."""
    return _TOP + (i + 1) * _PITCH


def _lanes(spans: list[tuple[int, int]]) -> list[int]:
    """A lane for each ``(first, last)`` row span, spans that share a row never in the same
    lane; shorter spans nearer the boxes."""
    order = sorted(range(len(spans)), key=lambda k: (spans[k][1] - spans[k][0], spans[k][0]))
    taken: list[list[tuple[int, int]]] = []
    lane = [0] * len(spans)
    for k in order:
        lo, hi = spans[k]
        for j, used in enumerate(taken):
            if all(hi < a or lo > b for a, b in used):
                used.append((lo, hi))
                lane[k] = j
                break
        else:
            taken.append([(lo, hi)])
            lane[k] = len(taken) - 1
    return lane


def _box(x: float, y: float, fill: str) -> str:
    return f"<rect x='{x}' y='{y}' width='{_BOX_W}' height='{_BOX_H}' rx='4' fill='{fill}'/>"


def _svg(g: Graph) -> str:
    right = _X + _BOX_W
    straight: list[Edge] = []
    side: list[Edge] = []
    seen_flow: set[int] = set()
    for e in g.edges:
        if e.src == e.dst - 1 and e.dst not in seen_flow:
            seen_flow.add(e.dst)
            straight.append(e)
        else:
            side.append(e)
    spans = [(min(e.src, e.dst), max(e.src, e.dst)) for e in side]
    lanes = _lanes(spans)
    n_lanes = max(lanes, default=-1) + 1
    # ports on each box's right side, ordered by where the other end is
    ports: dict[int, list[tuple[int, int, str]]] = {}
    for k, e in enumerate(side):
        ports.setdefault(e.src, []).append((e.dst, k, "out"))
        ports.setdefault(e.dst, []).append((e.src, k, "in"))
    port_y: dict[tuple[int, str], float] = {}
    for row, items in ports.items():
        items.sort()
        for j, (_, k, end) in enumerate(items):
            port_y[(k, end)] = _row_top(row) + _BOX_H * (j + 1) / (len(items) + 1)

    lanes_end = right + _LANE0 + _LANE * n_lanes
    title_w = int(_X + _CHAR * 1.2 * len(g.title) + 16)
    width = max(lanes_end + (60 if g.cut is not None else 16), title_w, _LEGEND_W)
    height = _row_top(len(g.nodes)) + 10
    out = [
        "<svg xmlns='http://www.w3.org/2000/svg'"
        f" width='{width}' height='{height}' viewBox='0 0 {width} {height}'>",
        f"<style>{_STYLE}</style>",
        "<defs>",
    ]
    for kind, colour in _EDGE_COLOURS.items():
        out.append(
            f"<marker id='dwf-{kind}' viewBox='0 0 8 8' refX='7' refY='4' markerWidth='7'"
            f" markerHeight='7' orient='auto'><path d='M0,0L8,4L0,8z' fill='{colour}'/></marker>"
        )
    out.append("</defs>")
    out.append(f"<text class='t' x='{_X}' y='20'>{_clean(g.title)}</text>")
    # legend
    x = _X
    for label, kind in (("conv", "conv"), ("pool", "pool"), ("route/shortcut", "join"),
                        ("resample", "resample"), ("head", "head")):  # fmt: skip
        out.append(
            f"<rect x='{x}' y='32' width='12' height='12' rx='2' fill='{_FILLS[kind]}'/>"
            f"<text x='{x + 16}' y='42'>{label}</text>"
        )
        x += 16 + round(_CHAR * len(label)) + 14
    for kind, colour in _EDGE_COLOURS.items():
        dash = " stroke-dasharray='5 3'" if kind == "shortcut" else ""
        out.append(
            f"<path d='M{x},38h22' stroke='{colour}' stroke-width='1.5'{dash}/>"
            f"<text x='{x + 26}' y='42'>{kind}</text>"
        )
        x += 26 + round(_CHAR * len(kind)) + 14
    # the input
    y = _row_top(-1)
    out.append(
        f"<g class='input'>{_box(_X, y, '#ffffff')}"
        f"<text class='b' x='{_X + 8}' y='{y + 21}'>input {_clean(g.input)}</text></g>"
    )
    # the boxes
    for nd in g.nodes:
        y = _row_top(nd.index)
        kind = "head" if nd.head else _KINDS.get(nd.type, "other")
        classes = ["layer", kind]
        if nd.head:
            classes.append("head")
        if not nd.known:
            classes.append("unknown")
        if nd.flag is not None:
            classes.append("hl")
        if g.cut is not None and nd.index >= g.cut:
            classes.append("cut")
        details = [f"{nd.index} {nd.name} ({nd.type}) → {nd.shape}"]
        if nd.n_params:
            details.append(f"{nd.n_params:,} parameters")
        if nd.bflops:
            details.append(f"{nd.bflops:.3f} BFLOPs")
        if nd.flag:
            details.append(nd.flag)
        line2 = nd.shape
        if nd.n_params:
            line2 += f" · {nd.n_params:,} params"
        if nd.bflops:
            line2 += f" · {nd.bflops:.3f} BF"
        tag = " HEAD" if nd.head else ""
        if nd.flag is not None:
            tag += " !"
        label = f"{nd.index} {_clean(nd.name, _NAME_MAX)}"
        kind_text = _clean(nd.type, _NAME_MAX) + tag
        out.append(
            f"<g class='{' '.join(classes)}' id='dwf-layer-{nd.index}' data-index='{nd.index}'>"
            f"<title>{_clean('; '.join(details))}</title>"
            f"{_box(_X, y, _FILLS[kind])}"
            f"<text class='b' x='{_X + 6}' y='{y + 14}'>{label}</text>"
            f"<text x='{right - 6}' y='{y + 14}' text-anchor='end'>{kind_text}</text>"
            f"<text class='s' x='{_X + 30}' y='{y + 28}'>{_clean(line2)}</text></g>"
        )
    if g.cut is not None:
        cy = _row_top(g.cut) - (_PITCH - _BOX_H) // 2
        out.append(
            f"<g class='cut-line'><path d='M{_X - 8},{cy}H{lanes_end + 2}' stroke='#d93025'"
            f" stroke-width='1.5' stroke-dasharray='6 4'/><text x='{lanes_end + 6}' y='{cy + 4}'"
            f" fill='#d93025'>cut {g.cut}</text></g>"
        )
    # the edges: neighbours straight down, the others through their lane
    cx = _X + _BOX_W / 2
    for e in straight:
        top = _row_top(e.src) + _BOX_H
        bottom = _row_top(e.dst)
        out.append(
            f"<path class='edge {e.kind}' data-from='{e.src}' data-to='{e.dst}'"
            f" d='M{cx},{top}V{bottom - 1}' stroke='{_EDGE_COLOURS[e.kind]}'"
            f" marker-end='url(#dwf-{e.kind})'/>"
        )
    for k, e in enumerate(side):
        lx = right + _LANE0 + _LANE * lanes[k]
        y_out, y_in = port_y[(k, "out")], port_y[(k, "in")]
        out.append(
            f"<path class='edge {e.kind}' data-from='{e.src}' data-to='{e.dst}'"
            f" d='M{right},{y_out:.1f}H{lx}V{y_in:.1f}H{right + 1}'"
            f" stroke='{_EDGE_COLOURS[e.kind]}' marker-end='url(#dwf-{e.kind})'/>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- DOT and Mermaid ----------------------------------------------------------------------------
def _label_lines(nd: Node) -> list[str]:
    lines = [f"{nd.index} {nd.name}", nd.type + (" (head)" if nd.head else ""), nd.shape]
    figures = []
    if nd.n_params:
        figures.append(f"{nd.n_params:,} params")
    if nd.bflops:
        figures.append(f"{nd.bflops:.3f} BF")
    if figures:
        lines.append(", ".join(figures))
    if nd.flag:
        lines.append("! " + nd.flag)
    return lines


def _plain(text: str, limit: int = 0) -> str:
    text = re.sub(r"[\x00-\x1f\ud800-\udfff]", "?", text)
    return text[: limit - 1] + "…" if limit and len(text) > limit else text


_DOT_EDGES = {
    "flow": "",
    "route": ' [color="#1a73e8"]',
    "shortcut": ' [color="#188038", style=dashed]',
}


def _dot(g: Graph) -> str:
    def q(text: str) -> str:
        return '"' + _plain(text).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = [
        "digraph dwf {",
        f"  label={q(g.title)}; labelloc=t; rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname=monospace, fontsize=10];',
        f"  input [label={q('input ' + g.input)}, fillcolor=white];",
    ]
    for nd in g.nodes:
        kind = "head" if nd.head else _KINDS.get(nd.type, "other")
        label = "\\n".join(
            _plain(ln, 60).replace("\\", "\\\\").replace('"', '\\"') for ln in _label_lines(nd)
        )
        extra = ""
        if nd.flag is not None:
            extra = ", color=red, penwidth=3"
        elif nd.head:
            extra = ", color=darkorange, penwidth=2"
        if g.cut is not None and nd.index >= g.cut:
            extra += ', style="rounded,filled,dashed"'
        out.append(f'  L{nd.index} [label="{label}", fillcolor="{_FILLS[kind]}"{extra}];')
    for e in g.edges:
        src = "input" if e.src < 0 else f"L{e.src}"
        out.append(f"  {src} -> L{e.dst}{_DOT_EDGES[e.kind]};")
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid(g: Graph) -> str:
    def q(text: str, limit: int = 60) -> str:
        text = _plain(text, limit)
        return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")

    out = [
        "---",
        f"title: {q(g.title, 120)}",  # the totals after the name: a title is one line
        "---",
        "flowchart TD",
        f'  input["input {q(g.input)}"]',
    ]
    for nd in g.nodes:
        label = "<br/>".join(q(ln) for ln in _label_lines(nd))
        cls = "head" if nd.head else _KINDS.get(nd.type, "other")
        if nd.flag is not None:
            cls = "flagged"
        out.append(f'  L{nd.index}["{label}"]:::{cls}')
    arrows = {"flow": "-->", "route": "==>", "shortcut": "-.->"}
    for e in g.edges:
        src = "input" if e.src < 0 else f"L{e.src}"
        out.append(f"  {src} {arrows[e.kind]} L{e.dst}")
    for kind, fill in _FILLS.items():
        out.append(f"  classDef {kind} fill:{fill},stroke:#80868b")
    out.append("  classDef flagged fill:#fce8e6,stroke:#d93025,stroke-width:3px")
    return "\n".join(out) + "\n"
