"""``dwf diff``: compare two checkpoints, or a series of them."""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import Callable, Sequence

from dwf.errors import DwfError
from dwf.interfaces import reports
from dwf.interfaces.cli import options, render
from dwf.tools.diff import DiffReport, diff
from dwf.tools.walk import checkpoints


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "diff",
        parents=[common],
        help="compare checkpoints (two, or a series)",
        description="Per layer and array: max |B-A|, relative L2 change, cosine"
        " similarity and whether identical, plus the change in seen. With more"
        " than two files, the relative change between consecutive files. A folder or"
        " glob is put in training order (seen, then the iteration in the name, then"
        " the modification time); a warning on stderr when seen goes backwards or"
        " the files are different networks.",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="WEIGHTS",
        help="two or more weights files (paths or URLs), or folders and globs of checkpoints",
    )
    options.add_source(p, weights=False)
    p.add_argument("--all", action="store_true", help="also list identical arrays")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when the files differ (like git diff --exit-code)",
    )
    options.add_output(p, markdown=True)
    p.set_defaults(func=run)


def _offset(bar: render.Progress, base: int, total: int) -> Callable[[int, int, str], None]:
    def report(done: int, _total: int, what: str) -> None:
        bar(base + done, total, what)

    return report


def compare(args: argparse.Namespace) -> list[DiffReport]:
    """:func:`dwf.tools.diff.diff` of each consecutive pair, every file opened once, first."""
    # folders and globs (local or remote) stand for their files, in training order
    paths = checkpoints(
        args.files, dialect=args.dialect, storage_options=options.storage_options(args)
    )
    if len(paths) < 2:
        raise DwfError("diff needs at least two weights files")
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(options.open_file(args, path)) for path in paths]
        total = sum(x.available_floats for x in files[1:])
        bar = render.Progress(
            "diff", always=len(files) > 2 or any(x.size > render.BIG_FILE for x in files)
        )
        reports = []
        done = 0
        try:
            for x, y in itertools.pairwise(files):
                reports.append(diff(x, y, progress=_offset(bar, done, total)))
                done += y.available_floats
        finally:
            bar.close()
    return reports


def run(args: argparse.Namespace) -> int:
    reports = compare(args)
    for r in reports:
        for warning in r.warnings:
            render.warn(warning)
    if args.json:
        if len(reports) == 1:
            render.dump(reports[0].to_dict())
        else:
            render.dump({"series": [r.to_dict() for r in reports]})
    elif len(reports) == 1:
        show(reports[0], show_all=args.all, width=render.width(args))
    else:
        show_drift(reports)
    differs = any(not r.identical for r in reports)
    return 1 if (args.exit_code and differs) else 0


def show(r: DiffReport, *, show_all: bool, width: int | None) -> None:
    """Two files: the change in seen, counts, then a row per changed (or every) array."""
    for line in reports.diff_head(r):
        render.echo(line)
    headers, rows, right = reports.diff_table(r, show_all=show_all)
    if rows:
        render.print_table(headers, rows, right=right, width=width)


def show_drift(reports: Sequence[DiffReport]) -> None:
    """A series: the relative L2 change of each layer between consecutive files."""
    names = [reports[0].a] + [r.b for r in reports]
    for i, n in enumerate(names):
        render.echo(f"[{i}] {n}")
    render.echo("relative L2 change per layer between consecutive files:")
    per_layer: dict[str, list[str]] = {}
    order: list[str] = []
    for k, r in enumerate(reports):
        for _idx, name, _typ, _m, rel in r.layers():
            if name not in per_layer:
                per_layer[name] = ["-"] * len(reports)
                order.append(name)
            per_layer[name][k] = render.g(rel)
    headers = ["layer"] + [f"{k}→{k + 1}" for k in range(len(reports))]
    rows = [[name, *per_layer[name]] for name in order]
    # the drift table must keep every column: reflow, do not cut
    render.print_table(
        [*headers, ""], [[*r, ""] for r in rows], right=range(1, len(headers)), width=None
    )
    fmt = render.fmt
    seen = " → ".join(fmt(r.seen_a) for r in reports) + f" → {fmt(reports[-1].seen_b)}"
    render.echo(f"seen: {seen}")
