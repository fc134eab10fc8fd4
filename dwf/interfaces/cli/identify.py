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
        " cfgs and the common partial backbones. Exit 1 when nothing matches."
        " For a URL this costs one small range request. Many files (folders,"
        " globs) give one line each, in order.",
    )
    p.add_argument(
        "weights", nargs="+", help="weights files, folders or globs; local paths or URLs"
    )
    options.add_jobs(p)
    options.add_output(p, wide=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if options.is_many(args):
        results = identify(list(args.weights), jobs=args.jobs)
        return render.rows(
            "identify", results, args.json, lambda r: r.explain(), lambda r: not r.matches
        )
    ident = identify(args.weights)
    if args.json:
        render.dump(ident.to_dict())
    else:
        render.echo(ident.explain())
    return 0 if ident.matches else 1
