"""``dwf graph``: a picture of the network, as SVG (or DOT, Mermaid)."""

from __future__ import annotations

import argparse

from dwf.errors import DwfError
from dwf.interfaces.cli import options, render
from dwf.interfaces.graph import Format, Graph, Highlight, format_for, graph
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.reader import WeightsFile


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "graph",
        parents=[common],
        help="draw the network: layers as boxes, routes and shortcuts as edges (SVG)",
        description="Draw the network as SVG, written by dwf (no Graphviz needed): one box"
        " per layer in Darknet's order (index, name, type, output shape, parameters,"
        " BFLOPs), data flowing down between neighbours and every other input (route"
        " layers=, shortcut from=) as an edge beside the column; detection heads are"
        " marked. --format dot or mermaid gives the graph to render elsewhere.",
    )
    p.add_argument(
        "weights",
        metavar="WEIGHTS_OR_CFG",
        help="a .weights file (its cfg found beside it, or --cfg) or a .cfg alone",
    )
    p.add_argument("--cfg", help="the cfg (default: the .cfg with the same name beside it)")
    p.add_argument(
        "--dialect",
        default="alexeyab",
        choices=options.DIALECTS,
        help="Darknet code base the network is for (default alexeyab)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE (its extension chooses the format: .svg, .dot/.gv, .mmd);"
        " default: standard output",
    )
    p.add_argument(
        "--format",
        choices=["svg", "dot", "mermaid"],
        help="svg (default), dot (Graphviz) or mermaid",
    )
    p.add_argument(
        "--highlight",
        metavar="WHAT",
        help="mark layers: 'check' (what dwf check finds), 'diff:OTHER.weights' (the layers"
        " that changed from the file to OTHER, read with the same cfg), or layers such as"
        " 10-20,conv_30",
    )
    p.add_argument(
        "--cut",
        type=int,
        metavar="N",
        help="mark where 'dwf cut WEIGHTS OUT N' would end the file (layers N.. faded)",
    )
    options.writes(p, ("output",))
    p.set_defaults(func=run)


def _highlight(args: argparse.Namespace, f: WeightsFile | None) -> Highlight | None:
    what: str | None = args.highlight
    if what is None or not what.startswith("diff:"):
        return what
    other = what[len("diff:") :]
    if f is None:
        raise DwfError("--highlight diff:OTHER compares two weights files; give a .weights file")
    from dwf.io.opening import open_weights
    from dwf.tools.diff import diff

    # the other checkpoint is read with the same cfg
    with open_weights(other, f.plan, dialect=args.dialect) as g:
        return diff(f, g)


def run(args: argparse.Namespace) -> int:
    src: str = args.weights
    fmt: Format = args.format or (format_for(args.output) if args.output else "svg")
    picture: Graph
    if src.lower().endswith(".cfg") and args.cfg is None:
        if args.highlight and (args.highlight == "check" or args.highlight.startswith("diff:")):
            raise DwfError(f"--highlight {args.highlight} reads the weights; give a .weights file")
        picture = graph(
            plan_cfg(src, dialect=args.dialect), highlight=args.highlight, cut=args.cut
        )
    else:
        with options.open_file(args, src) as f:
            picture = graph(f, highlight=_highlight(args, f), cut=args.cut)
    text = picture.render(fmt)
    if args.output is None:
        render.echo(text.rstrip("\n"))
        return 0
    picture.save(args.output, fmt)
    render.echo(
        f"wrote {args.output} ({fmt}): {len(picture.nodes)} layers,"
        f" {len(picture.edges)} edges{_flagged(picture)}"
    )
    return 0


def _flagged(g: Graph) -> str:
    marked = [nd.name for nd in g.nodes if nd.flag is not None]
    if not marked:
        return ""
    shown = ", ".join(marked[:6]) + (" …" if len(marked) > 6 else "")
    return f", {len(marked)} highlighted ({shown})"

