"""``dwf info``: the header and one row per layer (shapes, figures, byte spans), or with
``--summary`` what the network costs."""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Sequence

from dwf.errors import DwfError
from dwf.format.records import LayerPlan
from dwf.interfaces.cli import options, render
from dwf.io.reader import WeightsFile
from dwf.tools.info import Ranked, Summary, summarize

_BN = ("scales", "rolling_mean", "rolling_variance")


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "info",
        parents=[common],
        help="header and one row per layer (shapes, BFLOPs, byte spans)",
        description="Print the header and one row per layer: index, name,"
        " type, output shape, parameters, BFLOPs (as Darknet counts them),"
        " output memory, receptive field and stride, byte span and arrays."
        " With --summary: the network's totals, heads and heaviest layers, and"
        " its memory for --batch images at its cfg's size or --size WxH.",
    )
    options.add_source(p)
    p.add_argument(
        "--header-size", type=int, choices=[16, 20], help="force a 16- or 20-byte header"
    )
    options.add_lenient(p, "open a file whose size does not match the cfg (strict=False)")
    options.add_select(p)
    p.add_argument(
        "--summary",
        action="store_true",
        help="totals, detection heads and the heaviest layers instead of every layer",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="N",
        help="with --summary: the memory of N images at once (default 1)",
    )
    p.add_argument(
        "--size",
        metavar="WxH",
        help="with --summary: at this input size (e.g. 416x416), re-planned as Darknet would",
    )
    options.add_output(p, markdown=True)
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    """``416x416``, ``608×352`` or ``416`` (square) → ``(width, height)``."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise DwfError(f"--size {text!r}: give the input size as WxH, e.g. 416x416")


def run(args: argparse.Namespace) -> int:
    summary = getattr(args, "summary", False)  # (dwf demo runs this with the plain options)
    batch, size_text = getattr(args, "batch", 1), getattr(args, "size", None)
    if not summary and (batch != 1 or size_text):
        raise DwfError("--batch and --size go with --summary")
    size = parse_size(size_text) if size_text else None
    with options.open_file(args) as f:
        if summary:
            report = summarize(f.plan, batch=batch, size=size, path=f.path)
            if args.json:
                render.dump(report.to_dict())
            else:
                show_summary(report, render.width(args))
                show_warnings(f.warnings, render.width(args))
            return 0
        layers = options.selected(f, args)
        if args.json:
            render.dump(f.to_dict(layers))
        else:
            show(f, layers, render.width(args))
    return 0


def arrays_summary(lp: LayerPlan) -> str:
    """Compact array list: ``b 8, bn 8, w 8×3×3×3``; sub-layers keep their prefix."""
    parts: list[str] = []
    names = [a.name for a in lp.arrays]
    i = 0
    while i < len(lp.arrays):
        a = lp.arrays[i]
        prefix, _, leaf = a.name.rpartition(".")
        pre = prefix + "." if prefix else ""
        if leaf == "scales" and names[i : i + 3] == [pre + n for n in _BN]:
            parts.append(f"{pre}bn {render.shape(a.shape)}")
            i += 3
            continue
        short = {"weights": "w", "biases": "b"}.get(leaf, leaf)
        parts.append(f"{pre}{short} {render.shape(a.shape)}")
        i += 1
    return ", ".join(parts)


def show(f: WeightsFile, layers: Sequence[LayerPlan], width: int | None) -> None:
    """The readable report: four lines about the file, then the layer table."""
    echo, fmt = render.echo, render.fmt
    h = f.header
    cfg = os.path.basename(f.cfg_path) if f.cfg_path else "?"
    echo(f"{f.path}  (cfg {cfg}, dialect {f.plan.dialect})")
    seen_kind = "64-bit" if h.size == 20 else "32-bit"
    legacy = ""
    if h.connected_transposed:
        legacy = "  legacy header: connected weights stored transposed"
    echo(
        f"header: version {h.version}, seen {fmt(h.seen)} ({h.size}-byte header,"
        f" {seen_kind} seen){legacy}"
    )
    if h.note:
        echo(f"note: {h.note}")
    state = "complete"
    if f.partial:
        state = f"partial file: holds layers 0..{f.last_layer} of {len(f.plan.layers)}"
    elif f.mismatch:
        state = "SIZE MISMATCH: opened with --lenient"
    # two lines, so that both fit 100 columns
    floats = fmt(f.available_floats)
    # a file that does not fit (--lenient) has bytes past the floats the cfg reads: a ragged
    # tail or a longer file; they are part of the equation, which must add up
    extra = f.size - h.size - 4 * f.available_floats
    rest = f" + {fmt(extra)} byte{'s' * (extra != 1)}" if extra else ""
    echo(f"size: {fmt(f.size)} bytes = {h.size} + 4 × {floats} floats{rest} ({state})")
    plan = f.plan
    echo(
        f"layers: {len(plan.layers)}, {len(plan.stored)} of them hold arrays,"
        f" {fmt(plan.total_floats)} floats in all"
    )
    echo(
        f"compute: {plan.total_bflops:.3f} BFLOPs, {fmt(plan.total_params)} parameters"
        f" ({fmt(plan.total_trainable)} trainable), {render.size(plan.total_output_bytes)} of"
        " outputs per image"
    )
    rows = []
    for lp in layers:
        start, stop = lp.byte_span(h.size)
        span = f"{fmt(start)}..{fmt(stop)}" if lp.arrays else ""
        if lp.arrays and not f.holds(lp):
            span += " (missing)"
        rows.append(
            (
                str(lp.index),
                lp.name,
                lp.type,
                f"{lp.out_c}×{lp.out_h}×{lp.out_w}",
                fmt(lp.n_params) if lp.n_params else "",
                f"{lp.bflops:.3f}" if lp.bflops else "",
                render.size(lp.output_bytes),
                render.pair(lp.receptive_field),
                render.pair(lp.stride),
                span,
                arrays_summary(lp),
            )
        )
    headers = (
        "#", "name", "type", "output c×h×w", "params", "BFLOPs", "memory", "RF", "stride",
        "bytes", "arrays",
    )  # fmt: skip
    # what a narrow terminal leaves out, first to go first
    render.print_table(
        headers, rows, right=(0, *range(4, 9)), width=width, drop=(6, 8, 7)
    )
    show_warnings(f.warnings, width)


def show_warnings(warnings: Sequence[str], width: int | None) -> None:
    """The file's warnings (:attr:`dwf.WeightsFile.warnings`), one ``warning:`` line each."""
    for w in warnings:
        # Warnings naming a stock build's crash are long: wrapped like the table is cut.
        lines = [f"warning: {w}"] if width is None else textwrap.wrap(
            f"warning: {w}", width, subsequent_indent="  ", break_on_hyphens=False
        )
        for line in lines:
            render.echo(line)


def _row(r: Ranked, total: float) -> tuple[str, ...]:
    share = f"{r.bflops / total:.1%}" if total > 0 else ""
    return (
        str(r.index),
        r.name,
        r.type,
        render.shape(r.out_shape),
        f"{r.bflops:.3f}",
        share,
        render.size(r.output_bytes),
        render.pair(r.receptive_field),
        render.pair(r.stride),
    )


def show_summary(s: Summary, width: int | None) -> None:
    """The ``--summary`` report: the input, totals, memory, heads and the heaviest layers."""
    echo, fmt = render.echo, render.fmt
    echo(f"{s.path}  (cfg {os.path.basename(s.cfg) if s.cfg else '?'}, dialect {s.dialect})")
    at = " (the cfg's)" if not s.resized else " (re-planned at this size, as Darknet would)"
    echo(f"input: {s.width}×{s.height}×{s.channels}{at}, {s.layers} layers")
    echo(
        f"parameters: {fmt(s.params)} ({fmt(s.trainable)} trainable),"
        f" {render.size(s.param_bytes)}"
    )
    if not s.weights_fit:
        echo("note: at this size the network has other parameters: the file would not load")
    echo(f"compute: {s.bflops:.3f} BFLOPs per image (Darknet's Total BFLOPS)")
    images = f"a batch of {s.batch}" if s.batch > 1 else "one image"
    echo(
        f"memory: {render.size(s.output_bytes)} of layer outputs for {images}"
        f" + {render.size(s.param_bytes)} of weights = {render.size(s.memory_bytes)}"
    )
    if s.largest is not None:
        lr = s.largest
        echo(
            f"largest output: {lr.name}, {render.shape(lr.out_shape)}"
            f" ({render.size(lr.output_bytes)} per image)"
        )
    for r in s.heads:
        echo(
            f"head: {r.name} ({r.type}) {render.shape(r.out_shape)}, receptive field"
            f" {render.pair(r.receptive_field)}, stride {render.pair(r.stride)}"
        )
    for w in s.warnings:
        echo(f"warning at this size: {w}")
    if s.heaviest:
        echo("heaviest layers:")
        headers = (
            "#", "name", "type", "output c×h×w", "BFLOPs", "share", "memory", "RF", "stride",
        )  # fmt: skip
        render.print_table(
            headers, [_row(r, s.bflops) for r in s.heaviest], right=(0, *range(4, 9)), width=width
        )
