"""``dwf fuse``: fold batch norm into conv/connected layers."""

from __future__ import annotations

import argparse

from dwf.interfaces.cli import options, render
from dwf.tools.fuse import fuse


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "fuse",
        parents=[common],
        help="fold batch norm into conv/connected layers",
        description="Write OUT and CFG_OUT: the weights with batch norm folded"
        " into every conv/connected layer, and the cfg with batch_normalize=0"
        " there.",
    )
    options.add_source(p)
    p.add_argument("out", help="the fused .weights file to write")
    p.add_argument("cfg_out", help="the matching cfg to write")
    options.writes(p, ("out", "cfg_out"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out, cfg_out = fuse(
        args.weights,
        args.out,
        args.cfg_out,
        cfg=args.cfg,
        dialect=args.dialect,
        storage_options=options.storage_options(args),
    )
    render.echo(f"wrote {out} and {cfg_out} (batch norm folded into conv/connected layers)")
    return 0
