"""``dwf cut``: keep layers 0..N-1, as ``darknet partial`` does."""

from __future__ import annotations

import argparse
import os

from dwf.interfaces.cli import options, render
from dwf.tools.cut import cut


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "cut",
        parents=[common],
        help="keep layers 0..N-1 (as 'darknet partial')",
        description="Write a partial file holding layers 0..N-1, exactly as"
        " 'darknet partial cfg weights OUT N' does (seen reset to 0); with --cfg-out also"
        " the cfg cut to those layers, which reads it as a complete network (for export"
        " to ONNX, or any tool that wants a cfg that fits). Darknet's order, cfg first, works"
        " too.",
    )
    options.add_source(p)
    p.add_argument("out", help="the file to write")
    p.add_argument("upto", type=int, help="number of layers to keep (N)")
    p.add_argument(
        "--cfg-out",
        metavar="CFG",
        help="also write the cfg cut to layers 0..N-1 (both files are written, or neither)",
    )
    options.writes(p, ("out", "cfg_out"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = cut(
        args.weights,
        args.out,
        args.upto,
        cfg=args.cfg,
        dialect=args.dialect,
        cfg_out=args.cfg_out,
        storage_options=options.storage_options(args),
    )
    size = os.path.getsize(out)
    kept = f"layers 0..{args.upto - 1}" if args.upto > 0 else "the header only (no layers)"
    also = f" and {args.cfg_out}" if args.cfg_out else ""
    render.echo(f"wrote {out}{also}: {kept}, {render.fmt(size)} bytes (seen reset to 0)")
    return 0
