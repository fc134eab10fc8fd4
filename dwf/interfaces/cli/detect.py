"""``dwf detect``: run the network on images and print Darknet's detections (or JSON), and with
``--out`` write each image with its boxes drawn."""

from __future__ import annotations

import argparse
import os

from dwf.errors import DwfError
from dwf.interfaces.cli import options, render
from dwf.io.writer import Source, atomic_writes
from dwf.tools.detect import RUNTIMES, Detected, detect


def add_parser(subparsers: options.Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "detect",
        parents=[common],
        help="run the network on images: Darknet's detections",
        description="Run the network on images (the network input resized as Darknet's"
        " detector does) and print what Darknet's 'detector test' finds: one line per box and"
        " class above the threshold after NMS, boxes left to right, as 'name: 97%%  (left_x:"
        " … top_y: … width: … height: …)' in pixels of the image. Needs dwf-darknet[detect] (Pillow"
        " and onnxruntime).",
    )
    options.add_source(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG …)")
    p.add_argument(
        "--names", help="class names: a .names file or Darknet's obj.data (default: beside it)"
    )
    p.add_argument(
        "--thresh", type=float, default=0.25, help="least probability shown (default 0.25)"
    )
    p.add_argument(
        "--nms", type=float, default=0.45, help="NMS overlap threshold, 0 for none (default 0.45)"
    )
    p.add_argument(
        "--letterbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="resize keeping the ratio, centred on grey, and map the boxes back (default: as"
        " Darknet's detector does for this network)",
    )
    p.add_argument("--runtime", choices=RUNTIMES, help="default: onnxruntime when installed")
    p.add_argument(
        "--out", metavar="DIR", help="write each image with its boxes drawn to DIR/<name>.png"
    )
    options.add_output(p, wide=False)
    p.set_defaults(func=run)


def _outputs(images: list[str], folder: str) -> list[str]:
    """``DIR/<image name>.png``, numbered when two images have the same name."""
    out: list[str] = []
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        name, n = f"{stem}.png", 1
        while os.path.join(folder, name) in out:
            n += 1
            name = f"{stem}-{n}.png"
        out.append(os.path.join(folder, name))
    return out


def _line(d: Detected) -> str:
    left, top, w, h = (round(v) for v in d.box_pixels)
    return f"{d.name}: {d.prob * 100:.0f}%  (left_x: {left}  top_y: {top}  width: {w}  height: {h})"


def run(args: argparse.Namespace) -> int:
    targets: list[str] = []
    if args.out is not None:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise DwfError("exists and is not a folder; --out takes a folder", path=args.out)
        targets = _outputs(args.images, args.out)
    with options.open_file(args) as f:
        found = detect(
            f,
            args.images,
            names=args.names,
            thresh=args.thresh,
            nms=args.nms,
            letterbox=args.letterbox,
            runtime=args.runtime,
        )
        sources = f.sources
    if targets:
        _write(args.images, found, targets, sources)
    if args.json:
        render.dump(
            [
                {"image": path, "detections": [d.to_dict() for d in ds]}
                | ({"drawn": targets[i]} if targets else {})
                for i, (path, ds) in enumerate(zip(args.images, found, strict=True))
            ]
        )
        return 0
    for i, (path, ds) in enumerate(zip(args.images, found, strict=True)):
        drawn = f" (drawn: {targets[i]})" if targets else ""
        render.echo(f"{path}: {len(ds)} detection{'s' if len(ds) != 1 else ''}{drawn}")
        for d in ds:
            render.echo(_line(d))
    return 0


def _write(
    images: list[str], found: list[list[Detected]], targets: list[str], sources: tuple[Source, ...]
) -> None:
    """Every drawn image, all published together (or none)."""
    from dwf.interfaces.draw import draw

    folder = os.path.dirname(targets[0]) or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise DwfError(f"cannot create the folder: {why}", path=folder) from None
    with atomic_writes(targets, inputs=[*sources, *images]) as files:
        for fh, path, ds in zip(files, images, found, strict=True):
            draw(path, ds).save(fh, format="PNG")
