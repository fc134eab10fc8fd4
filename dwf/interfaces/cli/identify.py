"""``dwf identify``: which known network a file is, without a cfg."""

from __future__ import annotations

import argparse

from dwf.interfaces.cli import options, render
from dwf.tools.identify import identify


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "identify",
        parents=[common],
        help="which known network a file is, without a cfg",
        description="Match the file's float count against Darknet's public"
        " cfgs and the common partial backbones. Exit 1 when nothing matches.",
    )
    p.add_argument("weights", help="the .weights file")
    options.add_output(p, wide=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ident = identify(args.weights)
    if args.json:
        render.dump(ident.to_dict())
    else:
        render.echo(ident.explain())
    return 0 if ident.matches else 1
