"""``dwf stats``: per-array statistics (min, max, mean, std, NaN …), streaming."""

from __future__ import annotations

import argparse

from dwf.errors import DwfError
from dwf.interfaces import reports
from dwf.interfaces.cli import options, render
from dwf.io.remote import is_url
from dwf.tools.batch import each
from dwf.tools.stats import StatsReport, stats


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "stats",
        parents=[common],
        help="per-array statistics (min, max, mean, std, NaN …)",
        description="Per layer and array: min, max, mean, std, abs-max, zero"
        " fraction, NaN and Inf counts; streaming, in bounded memory. Many"
        " files (folders, globs, URLs) run on --jobs N processes, one table per"
        " file in order.",
    )
    options.add_source(p, many=True)
    options.add_lenient(p, "read the complete layers of a file whose size does not match")
    options.add_select(p)
    options.add_output(p, markdown=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if options.is_many(args):
        if args.layers or args.type:
            raise DwfError("--layers and --type select layers of one file; give one file")
        results = each(
            stats,
            args.weights,
            jobs=args.jobs,
            cfg=args.cfg,
            dialect=args.dialect,
            strict=not args.lenient,
            storage_options=options.storage_options(args),
        )
        width = render.width(args)
        return render.rows("stats", results, args.json, lambda r: text(r, width), lambda r: False)
    with options.open_file(args) as f:
        layers = [lp.index for lp in options.selected(f, args)]
        bar = render.Progress("stats", always=is_url(args.weights))  # remote: always long
        try:
            report = stats(f, layers=layers, progress=bar)
        finally:
            bar.close()
    if args.json:
        render.dump(report.to_dict())
    else:
        show(report, render.width(args))
    return 0


def text(report: StatsReport, width: int | None) -> str:
    """What :func:`show` prints: one line naming the file, then one table row per array
    (``dwf/interfaces/reports.py`` says what is in them, for print() and notebooks too); with
    ``--markdown``, the table as a Markdown table, whole."""
    if not render.markdown_on():
        return "\n".join(reports.stats_lines(report, width))
    headers, rows, right = reports.stats_table(report)
    table = render.markdown_table(headers, rows, right=right)
    return "\n".join([*reports.stats_intro(report, width), *table])


def show(report: StatsReport, width: int | None) -> None:
    """Print :func:`text`."""
    render.echo(text(report, width))
