"""``dwf demo``: write the bundled example model and show it with ``dwf info``."""

from __future__ import annotations

import argparse

from dwf.interfaces.cli import info, options, render
from dwf.tools.demo import write_demo


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "demo",
        parents=[common],
        help="write the bundled example model and show it",
        description="Write a small YOLO-style model (cfg + weights with"
        " deterministic values) to FOLDER and run 'dwf info' on it.",
    )
    p.add_argument(
        "folder",
        nargs="?",
        default="dwf-demo",
        help="where to write demo.cfg and demo.weights (default ./dwf-demo)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg, weights = write_demo(args.folder)
    if not args.json:
        render.echo(f"wrote {cfg} and {weights}\n")
    return info.run(
        argparse.Namespace(
            weights=weights,
            cfg=cfg,
            dialect="alexeyab",
            lenient=False,
            header_size=None,
            json=args.json,
            layers=None,
            type=None,
            wide=False,
        )
    )
