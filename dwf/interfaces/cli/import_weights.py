"""``dwf import-weights`` (also ``dwf import``, its 0.1 name): rebuild a .weights file from an
export."""

from __future__ import annotations

import argparse
import os

from dwf.format.header import Header
from dwf.interfaces.cli import options, render
from dwf.tools.import_weights import import_weights


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "import-weights",
        aliases=["import"],
        parents=[common],
        help="rebuild a .weights file from an export (alias: import)",
        description="Write a .weights file from a dwf .npz/.safetensors export"
        " (which carries its cfg and header) or a PyTorch .pt state_dict"
        " (needs --cfg). 'dwf import' is the same command.",
    )
    p.add_argument("source", help=".npz, .safetensors, or .pt/.pth state_dict")
    p.add_argument("out", help="the .weights file to write")
    p.add_argument("--cfg", help="the cfg (required for a state_dict)")
    p.add_argument("--dialect", choices=options.DIALECTS)
    p.add_argument(
        "--seen",
        type=int,
        help="header 0.2.5 with this seen (a state_dict keeps"
        " no header; default: the export's header, else seen=0)",
    )
    options.writes(p, ("out",), ("source", "cfg"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The path goes to the import as it is (a .pt too): the import identifies its inputs, and
    # refuses to write over them, before it loads anything.
    header = None if args.seen is None else Header(0, 2, 5, args.seen, 20)
    out = import_weights(args.source, args.out, cfg=args.cfg, dialect=args.dialect, header=header)
    render.echo(f"wrote {out} ({render.fmt(os.path.getsize(out))} bytes)")
    return 0
