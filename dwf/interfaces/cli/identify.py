"""``dwf identify``: which known network a file is, without a cfg (one file, several, or a
folder, with a summary table)."""

from __future__ import annotations

import argparse
import os

from dwf.interfaces.cli import options, render
from dwf.tools.identify import identify, identify_many


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "identify",
        parents=[common],
        help="which known network a file is, without a cfg",
        description="Match the file's float count against Darknet's public"
        " cfgs (also retrained for any class count) and the common partial backbones,"
        " and list the cfgs beside it that it fits. With several files or a folder, one"
        " paragraph per file and a summary table. Exit 1 when nothing names a file.",
    )
    p.add_argument("weights", nargs="+", help="the .weights file(s), or folders of them")
    options.add_output(p, wide=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths: list[str] = args.weights
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        ident = identify(paths[0])
        if args.json:
            render.dump(ident.to_dict())
        else:
            render.echo(ident.explain())
        return 0 if ident.recognised else 1
    found = identify_many(paths)
    if args.json:
        render.dump([i.to_dict() for i in found])
    else:
        for ident in found:
            render.echo(ident.explain())
        render.echo()
        base = paths[0] if len(paths) == 1 else os.curdir
        rows = [
            (
                os.path.relpath(i.path, base),
                render.fmt(i.size),
                "" if i.floats is None else render.fmt(i.floats),
                "" if i.header is None else str(i.header.size),
                i.verdict(),
            )
            for i in found
        ]
        render.print_table(
            ("file", "bytes", "floats", "header", "what it is"), rows, right=(1, 2, 3), width=None
        )
        named = sum(i.recognised for i in found)
        render.echo(f"{named} of {len(found)} files named")
    return 0 if found and all(i.recognised for i in found) else 1
