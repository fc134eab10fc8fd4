"""``dwf info``: the header and one row per layer (shapes, byte spans)."""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Sequence

from dwf.format.records import LayerPlan
from dwf.interfaces.cli import options, render
from dwf.io.reader import WeightsFile

_BN = ("scales", "rolling_mean", "rolling_variance")


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "info",
        parents=[common],
        help="header and one row per layer (shapes, byte spans)",
        description="Print the header and one row per layer: index, name,"
        " type, output shape, byte span and arrays.",
    )
    options.add_source(p)
    p.add_argument(
        "--header-size", type=int, choices=[16, 20], help="force a 16- or 20-byte header"
    )
    options.add_lenient(p, "open a file whose size does not match the cfg (strict=False)")
    options.add_select(p)
    options.add_output(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with options.open_file(args) as f:
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
    echo(
        f"layers: {len(f.plan.layers)}, {len(f.plan.stored)} of them hold arrays,"
        f" {fmt(f.plan.total_floats)} floats in all"
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
                span,
                arrays_summary(lp),
            )
        )
    render.print_table(
        ("#", "name", "type", "output c×h×w", "bytes", "arrays"), rows, right=(0,), width=width
    )
    for w in f.plan.warnings:
        # Warnings naming a stock build's crash are long: wrapped like the table is cut.
        lines = [f"warning: {w}"] if width is None else textwrap.wrap(
            f"warning: {w}", width, subsequent_indent="  ", break_on_hyphens=False
        )
        for line in lines:
            echo(line)
