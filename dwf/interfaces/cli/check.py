"""``dwf check``: scan for NaN/Inf, broken batch-norm variances, dead filters."""

from __future__ import annotations

import argparse

from dwf.interfaces.cli import options, render
from dwf.io.remote import is_url
from dwf.tools.batch import each
from dwf.tools.check import CheckReport, check


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "check",
        parents=[common],
        help="scan for NaN/Inf, bad BN variances, dead filters",
        description="Scan every array, layer by layer in bounded memory, for"
        " NaN/Inf, negative batch-norm variances, all-zero filters, dead BN"
        " channels, extreme magnitudes and denormals. Exit 1 when something"
        " serious (an error) is found. Many files (folders, globs, URLs) run"
        " on --jobs N processes, one report per file in order; exit 2 if any"
        " file cannot be read.",
    )
    options.add_source(p, many=True)
    p.add_argument(
        "--extreme", type=float, default=1e6, help="report |x| above this as extreme (default 1e6)"
    )
    options.add_lenient(p, "scan the complete layers of a file whose size does not match")
    options.add_output(p, wide=False, markdown=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if options.is_many(args):
        results = each(
            check,
            args.weights,
            jobs=args.jobs,
            cfg=args.cfg,
            dialect=args.dialect,
            strict=not args.lenient,
            extreme=args.extreme,
            storage_options=options.storage_options(args),
        )
        return render.rows("check", results, args.json, text, lambda r: r.serious)
    bar = render.Progress("check", always=is_url(args.weights))  # remote: always long
    try:
        report = check(
            args.weights,
            cfg=args.cfg,
            dialect=args.dialect,
            strict=not args.lenient,
            extreme=args.extreme,
            progress=bar,
            storage_options=options.storage_options(args),
        )
    finally:
        bar.close()
    if args.json:
        render.dump(report.to_dict())
    else:
        render.echo(text(report))
    return 1 if report.serious else 0


def text(report: CheckReport) -> str:
    """The readable report; with ``--markdown``, its findings as a table."""
    if not render.markdown_on():
        return report.explain()
    # the head line (and the caution of a mismatched file), then the findings as a table
    lines = report.explain().splitlines()[: 2 if report.mismatch else 1]
    rows = [
        (f.severity, f.layer, f.array, f.kind, f"{f.count:,}", f.message) for f in report.findings
    ]
    if rows:
        headers = ("severity", "layer", "array", "kind", "count", "what")
        lines += render.markdown_table(headers, rows, right=(4,))
    lines += [f"cfg: {w}" for w in report.cfg_warnings]
    return "\n".join(lines)
