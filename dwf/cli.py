"""The ``dwf`` command line: ``dwf info`` and ``dwf demo``.

Errors print one line (the :class:`dwf.DwfError` message) and exit 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import attrs

from dwf.errors import DwfError
from dwf.reader import WeightsFile, open_weights
from dwf.records import LayerPlan

_BN = ("scales", "rolling_mean", "rolling_variance")


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape) if shape else "scalar"


def _arrays_summary(lp: LayerPlan) -> str:
    """Compact array list: ``b 8, bn 8, w 8×3×3×3``; sub-layers keep their prefix."""
    parts: list[str] = []
    names = [a.name for a in lp.arrays]
    i = 0
    while i < len(lp.arrays):
        a = lp.arrays[i]
        prefix, _, leaf = a.name.rpartition(".")
        pre = prefix + "." if prefix else ""
        if leaf == "scales" and names[i : i + 3] == [pre + n for n in _BN]:
            parts.append(f"{pre}bn {_shape(a.shape)}")
            i += 3
            continue
        short = {"weights": "w", "biases": "b"}.get(leaf, leaf)
        parts.append(f"{pre}{short} {_shape(a.shape)}")
        i += 1
    return ", ".join(parts)


def _fmt(n: int) -> str:
    return f"{n:,}"


def _info_json(f: WeightsFile) -> dict[str, Any]:
    h = f.header
    return {
        "path": f.path,
        "cfg": f.cfg_path,
        "dialect": f.plan.dialect,
        "header": {
            "major": h.major,
            "minor": h.minor,
            "revision": h.revision,
            "seen": h.seen,
            "size": h.size,
            "transpose": h.transpose,
            "note": h.note,
        },
        "size": f.size,
        "expected_size": f.plan.expected_size(h.size),
        "total_floats": f.plan.total_floats,
        "complete": f.complete,
        "partial": f.partial,
        "last_layer": f.last_layer,
        "mismatch": f.mismatch,
        "warnings": list(f.plan.warnings),
        "layers": [
            {
                "index": lp.index,
                "name": lp.name,
                "type": lp.type,
                "out_shape": [lp.out_c, lp.out_h, lp.out_w],
                "outputs": lp.outputs,
                "span": list(lp.byte_span(h.size)),
                "in_file": lp.stop <= f.available_floats,
                "arrays": [
                    {
                        "name": a.name,
                        "shape": list(a.shape),
                        "count": a.count,
                        "span": list(a.byte_span(h.size)),
                    }
                    for a in lp.arrays
                ],
            }
            for lp in f.plan.layers
        ],
    }


def _print_info(f: WeightsFile, out: Any) -> None:
    h = f.header
    cfg = os.path.basename(f.cfg_path) if f.cfg_path else "?"
    print(f"{f.path}  (cfg {cfg}, dialect {f.plan.dialect})", file=out)
    seen_kind = "64-bit" if h.size == 20 else "32-bit"
    legacy = "  legacy header: connected weights stored transposed" if h.transpose else ""
    print(
        f"header: version {h.version}, seen {_fmt(h.seen)} ({h.size}-byte header,"
        f" {seen_kind} seen){legacy}",
        file=out,
    )
    if h.note:
        print(f"note: {h.note}", file=out)
    state = "complete"
    if f.partial:
        state = f"partial file: holds layers 0..{f.last_layer} of {len(f.plan.layers)}"
    elif f.mismatch:
        state = "SIZE MISMATCH (opened with strict=False)"
    print(
        f"size: {_fmt(f.size)} bytes = {h.size} + 4 × {_fmt(f.available_floats)} floats"
        f" ({state}); {len(f.plan.stored)} layers hold arrays",
        file=out,
    )
    rows = [("#", "name", "type", "output c×h×w", "bytes", "arrays")]
    for lp in f.plan.layers:
        start, stop = lp.byte_span(h.size)
        span = f"{_fmt(start)}..{_fmt(stop)}" if lp.arrays else ""
        if lp.arrays and lp.stop > f.available_floats:
            span += " (missing)"
        rows.append(
            (
                str(lp.index),
                lp.name,
                lp.type,
                f"{lp.out_c}×{lp.out_h}×{lp.out_w}",
                span,
                _arrays_summary(lp),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        cells = [r[0].rjust(widths[0])] + [r[i].ljust(widths[i]) for i in range(1, 5)]
        print("  ".join([*cells, r[5]]).rstrip(), file=out)
    for w in f.plan.warnings:
        print(f"warning: {w}", file=out)


def cmd_info(args: argparse.Namespace) -> int:
    with open_weights(
        args.weights,
        args.cfg,
        dialect=args.dialect,
        strict=not args.lenient,
        header_size=args.header_size,
    ) as f:
        if args.json:
            json.dump(_info_json(f), sys.stdout, indent=2)
            print()
        else:
            _print_info(f, sys.stdout)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dwf.demo import write_demo

    cfg, weights = write_demo(args.folder)
    if not args.json:
        print(f"wrote {cfg} and {weights}\n")
    info = argparse.Namespace(
        weights=weights,
        cfg=cfg,
        dialect="alexeyab",
        lenient=False,
        header_size=None,
        json=args.json,
    )
    return cmd_info(info)


def _open_args(args: argparse.Namespace, strict: bool = True) -> WeightsFile:
    return open_weights(args.weights, args.cfg, dialect=args.dialect, strict=strict)


def cmd_cut(args: argparse.Namespace) -> int:
    from dwf.edit import cut

    out = cut(args.weights, args.out, args.upto, cfg=args.cfg, dialect=args.dialect)
    size = os.path.getsize(out)
    print(f"wrote {out}: layers 0..{args.upto - 1}, {_fmt(size)} bytes (seen reset to 0)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dwf import export

    with _open_args(args) as f:
        if args.format == "npz":
            out = export.to_npz(f, args.out, compress=args.compress)
        elif args.format == "safetensors":
            out = export.to_safetensors(f, args.out)
        else:
            torch = export.require("torch", "torch")
            state = export.to_state_dict(f, copy=True)
            from dwf.writer import atomic_write

            with atomic_write(args.out) as fh:
                torch.save(state, fh)
            out = args.out
    print(f"wrote {out} ({args.format}, {_fmt(os.path.getsize(out))} bytes)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from dwf import export

    src: Any = args.source
    if args.source.endswith((".pt", ".pth")):
        torch = export.require("torch", "torch")
        src = torch.load(args.source, map_location="cpu", weights_only=True)
    header = None
    if args.seen is not None:
        from dwf.header import Header

        header = Header(0, 2, 5, args.seen, 20)
    out = export.import_weights(src, args.out, cfg=args.cfg, dialect=args.dialect, header=header)
    print(f"wrote {out} ({_fmt(os.path.getsize(out))} bytes)")
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from dwf.edit import fuse

    out, cfg_out = fuse(args.weights, args.out, args.cfg_out, cfg=args.cfg, dialect=args.dialect)
    print(f"wrote {out} and {cfg_out} (batch norm folded into conv/connected layers)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from dwf.check import check

    with _open_args(args, strict=not args.lenient) as f:
        report = check(f, extreme=args.extreme)
    if args.json:
        json.dump(
            {
                "path": report.path,
                "arrays": report.arrays,
                "floats": report.floats,
                "serious": report.serious,
                "findings": [attrs.asdict(x) for x in report.findings],
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print(report.explain())
    return 1 if report.serious else 0


def cmd_identify(args: argparse.Namespace) -> int:
    from dwf.identify import identify

    ident = identify(args.weights)
    if args.json:
        h = ident.header
        json.dump(
            {
                "path": ident.path,
                "size": ident.size,
                "floats": ident.floats,
                "problem": ident.problem,
                "header": None
                if h is None
                else {"version": h.version, "seen": h.seen, "size": h.size},
                "matches": [attrs.asdict(m) for m in ident.matches],
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print(ident.explain())
    return 0 if ident.matches else 1


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="the .weights file")
    p.add_argument("--cfg", help="the cfg (default: the .cfg with the same name beside it)")
    p.add_argument(
        "--dialect",
        default="alexeyab",
        choices=["alexeyab", "pjreddie"],
        help="Darknet code base that wrote the file (default alexeyab)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="dwf", description="Look inside Darknet .weights files without loading them."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser(
        "info",
        help="header and one row per layer (shapes, byte spans)",
        description="Print the header and one row per layer: index, name,"
        " type, output shape, byte span and arrays.",
    )
    info.add_argument("weights", help="the .weights file (or a partial *.conv.N file)")
    info.add_argument("--cfg", help="the cfg (default: the .cfg with the same name beside it)")
    info.add_argument(
        "--dialect",
        default="alexeyab",
        choices=["alexeyab", "pjreddie"],
        help="Darknet code base that wrote the file (default alexeyab)",
    )
    info.add_argument(
        "--header-size", type=int, choices=[16, 20], help="force a 16- or 20-byte header"
    )
    info.add_argument(
        "--lenient",
        action="store_true",
        help="open a file whose size does not match the cfg (strict=False)",
    )
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    chk = sub.add_parser(
        "check",
        help="scan for NaN/Inf, bad BN variances, dead filters",
        description="Scan every array, layer by layer in bounded memory, for"
        " NaN/Inf, negative batch-norm variances, all-zero filters, dead BN"
        " channels, extreme magnitudes and denormals. Exit 1 when something"
        " serious (an error) is found.",
    )
    _add_source(chk)
    chk.add_argument(
        "--extreme", type=float, default=1e6, help="report |x| above this as extreme (default 1e6)"
    )
    chk.add_argument(
        "--lenient",
        action="store_true",
        help="scan the complete layers of a file whose size does not match",
    )
    chk.add_argument("--json", action="store_true", help="machine-readable output")
    chk.set_defaults(func=cmd_check)

    ide = sub.add_parser(
        "identify",
        help="which known network a file is, without a cfg",
        description="Match the file's float count against Darknet's public"
        " cfgs and the common partial backbones. Exit 1 when nothing matches.",
    )
    ide.add_argument("weights", help="the .weights file")
    ide.add_argument("--json", action="store_true", help="machine-readable output")
    ide.set_defaults(func=cmd_identify)

    cut = sub.add_parser(
        "cut",
        help="keep layers 0..N-1 (as 'darknet partial')",
        description="Write a partial file holding layers 0..N-1, exactly as"
        " 'darknet partial cfg weights OUT N' does (seen reset to 0).",
    )
    _add_source(cut)
    cut.add_argument("out", help="the file to write")
    cut.add_argument("upto", type=int, help="number of layers to keep (N)")
    cut.set_defaults(func=cmd_cut)

    exp = sub.add_parser(
        "export",
        help="write the arrays as .npz, .safetensors or PyTorch",
        description="Export every array: npz (numpy, no pickle), safetensors"
        " (needs dwf[safetensors]) or a PyTorch state_dict saved with"
        " torch.save (needs dwf[torch]).",
    )
    _add_source(exp)
    exp.add_argument("--format", required=True, choices=["npz", "safetensors", "torch"])
    exp.add_argument("--compress", action="store_true", help="compressed .npz")
    exp.add_argument("out", help="the file to write")
    exp.set_defaults(func=cmd_export)

    imp = sub.add_parser(
        "import",
        help="rebuild a .weights file from an export",
        description="Write a .weights file from a dwf .npz/.safetensors export"
        " (which carries its cfg and header) or a PyTorch .pt state_dict"
        " (needs --cfg).",
    )
    imp.add_argument("source", help=".npz, .safetensors, or .pt/.pth state_dict")
    imp.add_argument("out", help="the .weights file to write")
    imp.add_argument("--cfg", help="the cfg (required for a state_dict)")
    imp.add_argument("--dialect", choices=["alexeyab", "pjreddie"])
    imp.add_argument(
        "--seen",
        type=int,
        help="header 0.2.5 with this seen (a state_dict keeps"
        " no header; default: the export's header, else seen=0)",
    )
    imp.set_defaults(func=cmd_import)

    fz = sub.add_parser(
        "fuse",
        help="fold batch norm into conv/connected layers",
        description="Write OUT and CFG_OUT: the weights with batch norm folded"
        " into every conv/connected layer, and the cfg with batch_normalize=0"
        " there.",
    )
    _add_source(fz)
    fz.add_argument("out", help="the fused .weights file to write")
    fz.add_argument("cfg_out", help="the matching cfg to write")
    fz.set_defaults(func=cmd_fuse)

    demo = sub.add_parser(
        "demo",
        help="write the bundled example model and show it",
        description="Write a small YOLO-style model (cfg + weights with"
        " deterministic values) to FOLDER and run 'dwf info' on it.",
    )
    demo.add_argument(
        "folder",
        nargs="?",
        default="dwf-demo",
        help="where to write demo.cfg and demo.weights (default ./dwf-demo)",
    )
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except DwfError as e:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"dwf: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `dwf info x | head`: the reader went away; not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except KeyboardInterrupt:
        return 130
