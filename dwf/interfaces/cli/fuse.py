"""``dwf fuse``: fold batch norm into conv/connected layers."""

from __future__ import annotations

import argparse

from dwf.format.records import LayerPlan
from dwf.interfaces.cli import options, render
from dwf.io.cfgfile import plan as plan_cfg
from dwf.io.opening import find_cfg
from dwf.tools.fuse import FOLDABLE, fuse


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
    folded = _folded(args)
    out, cfg_out = fuse(
        args.weights,
        args.out,
        args.cfg_out,
        cfg=args.cfg,
        dialect=args.dialect,
        storage_options=options.storage_options(args),
    )
    if folded is None:
        render.echo(f"wrote {out} and {cfg_out} (batch norm folded into conv/connected layers)")
    elif folded:
        n = len(folded)
        render.echo(
            f"wrote {out} and {cfg_out}: batch norm folded into {n} layer{'s' * (n != 1)}"
            " (conv/connected)"
        )
    else:
        render.echo(
            f"wrote {out} and {cfg_out}: nothing was folded, {args.weights} has no batch norm"
            " (the weights are as they were)"
        )
    return 0


def _folded(args: argparse.Namespace) -> list[LayerPlan] | None:
    """The layers whose batch norm fuse folds, from the cfg alone (the weights are read once,
    by fuse); ``None`` when the cfg is not a local file (a URL: fuse finds it)."""
    cfg = args.cfg or (None if "://" in args.weights else find_cfg(args.weights)[0])
    if cfg is None or "://" in cfg:
        return None
    plan = plan_cfg(cfg, dialect=args.dialect)
    return [lp for lp in plan.layers if lp.type in FOLDABLE and lp.array("scales") is not None]
