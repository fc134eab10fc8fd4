"""``dwf export``: write the arrays as ``.npz``, ``.safetensors``, a PyTorch state_dict, or the
network as a runnable ONNX model."""

from __future__ import annotations

import argparse
import os

from dwf.errors import DwfError
from dwf.interfaces.cli import options, render
from dwf.tools.export import export, format_for


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "export",
        parents=[common],
        help="write the arrays as .npz, .safetensors or PyTorch, or the network as ONNX",
        description="Export every array: npz (numpy, no pickle), safetensors"
        " (written by dwf itself; reading it back needs dwf-darknet[safetensors]) or a"
        " PyTorch state_dict saved with torch.save (needs dwf-darknet[torch]); or the network"
        " as an ONNX model that computes what Darknet computes (needs dwf-darknet[onnx]), whose"
        " weights stay in the .weights file when OUT is written beside it. The format comes"
        " from OUT's extension (.npz, .safetensors, .pt/.pth, .onnx) unless --format names it;"
        " the two must agree.",
    )
    options.add_source(p)
    p.add_argument(
        "--format",
        choices=["npz", "safetensors", "torch", "onnx"],
        help="the format (default: from OUT's extension; must agree with it)",
    )
    p.add_argument("--compress", action="store_true", help="compressed .npz")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--embed", action="store_true", help="ONNX: write the weights inside the model"
    )
    where.add_argument(
        "--data", metavar="FILE", help="ONNX: write the weights to FILE, beside the model"
    )
    p.add_argument(
        "--upto",
        type=int,
        metavar="N",
        help="export layers 0..N-1 only, as the network they make up (a partial file exports"
        " to ONNX as the layers it holds without it)",
    )
    p.add_argument(
        "--decode",
        action="store_true",
        help="ONNX: also output Darknet's decoded detections (boxes, objectness, probs), before"
        " threshold and NMS",
    )
    p.add_argument(
        "--letterbox",
        action="store_true",
        help="ONNX with --decode: correct the boxes for a letterboxed input (a second input,"
        " image_size, gives each image's width and height)",
    )
    p.add_argument("out", help="the file to write (.npz, .safetensors, .pt, .pth or .onnx)")
    options.writes(p, ("out", "data"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fmt = format_for(args.out, args.format)  # refuses before anything is read or written
    onnx_only = {"--embed": args.embed, "--data": args.data is not None}
    onnx_only.update({"--decode": args.decode, "--letterbox": args.letterbox})
    given = [flag for flag, on in onnx_only.items() if on]
    if given and fmt != "onnx":  # said here, as options (the Python names are export's)
        raise DwfError(
            f"{given[0]} applies to the ONNX export only (an .onnx OUT, or --format onnx),"
            f" not to {fmt}",
            path=args.out,
        )
    if args.letterbox and not args.decode:
        raise DwfError("--letterbox corrects decoded boxes: add --decode", path=args.out)
    with options.open_file(args) as f:
        out = export(
            f,
            args.out,
            format=fmt,
            compress=args.compress,
            embed=args.embed,
            data=args.data,
            upto=args.upto,
            decode=args.decode,
            letterbox=args.letterbox,
        )
        held = args.upto if args.upto is not None else f.last_layer + 1 if f.partial else None
        warnings = f.plan.warnings
    # Darknet's own warnings about the cfg (an unknown activation is relu …): what was written
    # follows them, so they are shown, one line each; a failed export shows its one error line.
    for w in warnings:
        render.warn(w)
    what = "" if held is None else f": layers 0..{held - 1}"
    render.echo(f"wrote {out} ({fmt}, {render.fmt(os.path.getsize(out))} bytes){what}")
    return 0
