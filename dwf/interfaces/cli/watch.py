"""``dwf watch``: follow a training run, one line per checkpoint as it completes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable

from dwf.errors import DwfError
from dwf.interfaces.cli import options, render
from dwf.tools.watch import Checkpoint, watch


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "watch",
        parents=[common],
        help="follow a training run: a line per checkpoint as it completes",
        description="Follow the checkpoints a training run writes (a folder such as"
        " backup/, files, globs): each time one is complete (its size stopped changing"
        " and fits the cfg; a rewritten _last counts again), print one line: the file,"
        " its seen, the layers that changed most since the previous checkpoint"
        " (relative L2) and the findings that appeared (NaN/Inf, negative or"
        " collapsed batch-norm variances, dead filters, a layer that stopped changing)."
        " Reads private copies in bounded memory, never the file being written."
        " Ctrl-C stops it. Exit 1 if a checkpoint had errors, 2 if a file could not be"
        " read or --timeout came before --count checkpoints.",
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="folders, files (may not exist yet) or globs"
    )
    options.add_source(p, weights=False)
    p.add_argument("--count", type=int, metavar="N", help="stop after N checkpoints")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between looks (default 1)"
    )
    p.add_argument(
        "--top", type=int, default=5, metavar="K", help="name the K layers that moved most (5)"
    )
    p.add_argument(
        "--existing",
        action="store_true",
        help="also report the checkpoints already there (else the newest is the first baseline)",
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="where the copies of the last two checkpoints are kept (default: the temp folder)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def _started(
    paths: list[str], existing: bool, cfg: str | None
) -> Callable[[Checkpoint | None], None]:
    """Say on stderr what is watched and what the first checkpoint will be compared with."""

    def ready(base: Checkpoint | None) -> None:
        what = ", ".join(paths) + (" (with the cfg beside each checkpoint)" if cfg is None else "")
        if existing:
            since = "the checkpoints already there first"
        elif base is not None and base.seen is not None:
            name = os.path.basename(base.path)
            since = f"new checkpoints are compared with {name} (seen {base.seen:,}) first"
        else:
            since = "no complete checkpoint yet"
        line = f"dwf: watching {what}: {since}; Ctrl-C stops"
        with contextlib.suppress(OSError):
            sys.stderr.write(render.printable(line, sys.stderr) + "\n")
            sys.stderr.flush()

    return ready


def run(args: argparse.Namespace) -> int:
    records = watch(
        args.paths,
        cfg=args.cfg,
        dialect=args.dialect,
        interval=args.interval,
        timeout=args.timeout,
        count=args.count,
        top=args.top,
        existing=args.existing,
        workdir=args.workdir,
        ready=_started(args.paths, args.existing, args.cfg),
    )
    done = bad = found = 0
    try:
        for r in records:
            if args.json:
                render.echo(json.dumps(render.jsonable(r.to_dict()), allow_nan=False))
            else:
                render.echo(r.explain())
            render.flush()
            if r.error is not None:
                bad += 1
            else:
                done += 1
                found += r.serious
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
    if args.count is not None and done < args.count:
        raise DwfError(
            f"timed out after {args.timeout:g} s: {done} of {args.count} checkpoints completed"
        )
    return 2 if bad else 1 if found else 0
