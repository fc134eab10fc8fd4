"""``dwf identify``: which known network a file is, without a cfg (one file, or many with a
summary table)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

from dwf.errors import DwfError
from dwf.format.known import Identification
from dwf.interfaces.cli import options, render
from dwf.tools.batch import each
from dwf.tools.identify import identify, write_fit


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "identify",
        parents=[common],
        help="which known network a file is, without a cfg",
        description="Match the file's float count against Darknet's public"
        " cfgs (also retrained for any class count) and the common partial backbones, and"
        " list the cfgs beside it that it fits. Exit 1 when nothing names a file."
        " For a URL this costs one small range request. Many files (folders,"
        " globs) give one line each, in order.",
    )
    p.add_argument(
        "weights", nargs="+", help="weights files, folders or globs; local paths or URLs"
    )
    options.add_jobs(p)
    p.add_argument(
        "--write-cfg",
        metavar="OUT",
        help="write the cfg the file fits to OUT (the first cfg beside it that it fits, with"
        " the class count it was trained for), to read it with --cfg OUT",
    )
    options.add_storage(p)
    options.add_output(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if options.is_many(args):
        if args.write_cfg:
            raise DwfError("--write-cfg writes the cfg of one file; give one file")
        results = each(
            identify, args.weights, jobs=args.jobs, storage_options=options.storage_options(args)
        )
        named: list[Identification] = []

        def kept() -> Iterator[Any]:
            for row in results:
                if row.result is not None:
                    named.append(row.result)
                yield row

        code = render.rows(
            "identify", kept(), args.json, lambda r: r.explain(), lambda r: not r.recognised
        )
        if not args.json and named:
            _summary(named, render.width(args))
        return code
    ident = identify(args.weights, storage_options=options.storage_options(args))
    fit = None if args.write_cfg is None else write_fit(ident, args.write_cfg)
    if args.json:
        render.dump(ident.to_dict())
    else:
        render.echo(ident.explain())
        if fit is not None:
            what = fit.cfg + (f" with classes={fit.classes}" if fit.how == "classes" else "")
            render.echo(
                f"wrote {args.write_cfg}: {what}; next: dwf info {args.weights} --cfg"
                f" {args.write_cfg}"
            )
    return 0 if ident.recognised else 1


def _summary(found: list[Identification], width: int | None) -> None:
    """One row per file: what it is, in a few words."""
    base = os.path.commonpath([os.path.dirname(os.path.abspath(i.path)) for i in found])
    rows = [
        (
            os.path.relpath(os.path.abspath(i.path), base) if "://" not in i.path else i.path,
            render.fmt(i.size),
            "" if i.floats is None else render.fmt(i.floats),
            "" if i.header is None else str(i.header.size),
            i.verdict(),
        )
        for i in found
    ]
    render.echo()
    render.print_table(
        ("file", "bytes", "floats", "header", "what it is"), rows, right=(1, 2, 3), width=width
    )
    render.echo(f"{sum(i.recognised for i in found)} of {len(found)} files named")
