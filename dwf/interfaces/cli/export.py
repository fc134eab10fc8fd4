"""``dwf export``: write the arrays as ``.npz``, ``.safetensors`` or a PyTorch state_dict."""

from __future__ import annotations

import argparse
import os

from dwf.interfaces.cli import options, render
from dwf.tools.export import export, format_for


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "export",
        parents=[common],
        help="write the arrays as .npz, .safetensors or PyTorch",
        description="Export every array: npz (numpy, no pickle), safetensors"
        " (needs dwf[safetensors]) or a PyTorch state_dict saved with"
        " torch.save (needs dwf[torch]). The format comes from OUT's extension"
        " (.npz, .safetensors, .pt/.pth) unless --format names it; the two must agree.",
    )
    options.add_source(p)
    p.add_argument(
        "--format",
        choices=["npz", "safetensors", "torch"],
        help="the format (default: from OUT's extension; must agree with it)",
    )
    p.add_argument("--compress", action="store_true", help="compressed .npz")
    p.add_argument("out", help="the file to write (.npz, .safetensors, .pt or .pth)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fmt = format_for(args.out, args.format)  # refuses before anything is read or written
    out = export(
        args.weights,
        args.out,
        format=fmt,
        cfg=args.cfg,
        dialect=args.dialect,
        compress=args.compress,
    )
    render.echo(f"wrote {out} ({fmt}, {render.fmt(os.path.getsize(out))} bytes)")
    return 0
