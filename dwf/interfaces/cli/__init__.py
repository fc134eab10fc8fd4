"""The ``dwf`` command line (also ``python -m dwf``).

Subcommands: ``info``, ``stats``, ``diff``, ``check``, ``identify``, ``cut``, ``export``,
``import``, ``fuse``, ``demo``. Each has ``--help``; those that report have ``--json`` (schemas in
docs/cli.md). Tables fit 100 columns (``--wide`` lifts that). Exit codes: 0 ok, 1 findings
(``check`` found errors; ``diff --exit-code`` found differences; ``identify`` found no match),
2 an error — printed as the :class:`dwf.DwfError` message (no traceback); ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from dwf.errors import DwfError
from dwf.io.reader import WeightsFile, open_weights
from dwf.format.records import LayerPlan

if TYPE_CHECKING:
    from dwf.tools.diff import DiffReport

TABLE_WIDTH = 100
BIG_FILE = 1 << 30  # long work: show progress on a terminal beyond this many bytes
_BN = ("scales", "rolling_mean", "rolling_variance")


# -- formatting ---------------------------------------------------------------------------------
def _fmt(n: int) -> str:
    return f"{n:,}"


def _g(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


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


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[int] = (),
    width: int | None = TABLE_WIDTH,
) -> list[str]:
    """Aligned text table; the last column is cut with ``…`` to fit ``width`` (None: no cut)."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    n = len(headers)
    widths = [max(len(r[i]) for r in all_rows) for i in range(n - 1)]
    lines = []
    for r in all_rows:
        cells = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(n - 1)
        ]
        line = "  ".join([*cells, r[n - 1]]).rstrip()
        if width is not None and len(line) > width:
            line = line[: width - 1] + "…"
        lines.append(line)
    return lines


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal and only for long work."""

    def __init__(self, total: int, label: str, *, enabled: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled and self.stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = min(done / max(total, 1), 1.0)
        bar = "█" * int(30 * frac)
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {what[:24]:<24}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


def _width(args: argparse.Namespace) -> int | None:
    return None if getattr(args, "wide", False) else TABLE_WIDTH


def _dump(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    print()


def _json_default(o: Any) -> Any:
    if isinstance(o, float):
        return None if math.isnan(o) else o
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(x: float) -> float | None:
    """JSON has no NaN/Infinity: NaN → null, ±inf → ±1e308 would lie, so also null."""
    return None if math.isnan(x) or math.isinf(x) else x


# -- layer selection ----------------------------------------------------------------------------
def _parse_layers(spec: str | None) -> Callable[[int], bool]:
    if not spec:
        return lambda _i: True
    wanted: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else ("0", part[1:])
                wanted.append((int(lo), int(hi)))
            else:
                wanted.append((int(part), int(part)))
        except ValueError:
            raise DwfError(
                f"--layers {spec!r}: use indices and ranges like 10-20 or 3,7,10-12"
            ) from None
    return lambda i: any(lo <= i <= hi for lo, hi in wanted)


def _type_filter(kind: str | None) -> Callable[[LayerPlan], bool]:
    if not kind:
        return lambda _lp: True
    k = kind.lower()
    return lambda lp: lp.type.lower() == k or lp.name.rsplit("_", 1)[0] == k


def _selected(f: WeightsFile, args: argparse.Namespace) -> list[LayerPlan]:
    by_index = _parse_layers(getattr(args, "layers", None))
    by_type = _type_filter(getattr(args, "type", None))
    return [lp for lp in f.plan.layers if by_index(lp.index) and by_type(lp)]


def _open(args: argparse.Namespace, path: str | None = None, strict: bool = True) -> WeightsFile:
    return open_weights(
        path or args.weights,
        args.cfg,
        dialect=args.dialect,
        strict=strict and not getattr(args, "lenient", False),
        header_size=getattr(args, "header_size", None),
    )


# -- info ---------------------------------------------------------------------------------------
def _header_json(f: WeightsFile) -> dict[str, Any]:
    h = f.header
    return {
        "major": h.major,
        "minor": h.minor,
        "revision": h.revision,
        "version": h.version,
        "seen": h.seen,
        "size": h.size,
        "connected_transposed": h.connected_transposed,
        "note": h.note,
    }


def _info_json(f: WeightsFile, layers: Sequence[LayerPlan] | None = None) -> dict[str, Any]:
    h = f.header
    return {
        "path": f.path,
        "cfg": f.cfg_path,
        "dialect": f.plan.dialect,
        "header": _header_json(f),
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
                "in_file": f.holds(lp),
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
            for lp in (f.plan.layers if layers is None else layers)
        ],
    }


def _print_info(f: WeightsFile, layers: Sequence[LayerPlan], width: int | None) -> None:
    h = f.header
    cfg = os.path.basename(f.cfg_path) if f.cfg_path else "?"
    print(f"{f.path}  (cfg {cfg}, dialect {f.plan.dialect})")
    seen_kind = "64-bit" if h.size == 20 else "32-bit"
    legacy = "  legacy header: connected weights stored transposed" if h.connected_transposed else ""
    print(
        f"header: version {h.version}, seen {_fmt(h.seen)} ({h.size}-byte header,"
        f" {seen_kind} seen){legacy}"
    )
    if h.note:
        print(f"note: {h.note}")
    state = "complete"
    if f.partial:
        state = f"partial file: holds layers 0..{f.last_layer} of {len(f.plan.layers)}"
    elif f.mismatch:
        state = "SIZE MISMATCH: opened with --lenient"
    # two lines, so that both fit 100 columns
    floats = _fmt(f.available_floats)
    print(f"size: {_fmt(f.size)} bytes = {h.size} + 4 × {floats} floats ({state})")
    print(
        f"layers: {len(f.plan.layers)}, {len(f.plan.stored)} of them hold arrays,"
        f" {_fmt(f.plan.total_floats)} floats in all"
    )
    rows = []
    for lp in layers:
        start, stop = lp.byte_span(h.size)
        span = f"{_fmt(start)}..{_fmt(stop)}" if lp.arrays else ""
        if lp.arrays and not f.holds(lp):
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
    for line in table(
        ("#", "name", "type", "output c×h×w", "bytes", "arrays"), rows, right=(0,), width=width
    ):
        print(line)
    for w in f.plan.warnings:
        print(f"warning: {w}")


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args) as f:
        layers = _selected(f, args)
        if args.json:
            _dump(_info_json(f, layers))
        else:
            _print_info(f, layers, _width(args))
    return 0


# -- stats --------------------------------------------------------------------------------------
def cmd_stats(args: argparse.Namespace) -> int:
    from dwf.tools.stats import file_array_stats

    with _open(args) as f:
        layers = [lp for lp in _selected(f, args) if lp.arrays and f.holds(lp)]
        total = sum(lp.count for lp in layers)
        bar = Progress(total, "stats", enabled=4 * total > BIG_FILE)
        results = []
        done = 0
        for lp in layers:
            f._require(lp)  # LayerNotInFileError past a partial end
            for a in lp.arrays:
                st = file_array_stats(f, a)
                results.append((lp, a, st))
                done += a.count
                bar(done, total, lp.name)
        bar.close()
    if args.json:
        _dump(
            {
                "path": f.path,
                "arrays": [
                    {
                        "layer": lp.index,
                        "name": lp.name,
                        "type": lp.type,
                        "array": a.name,
                        "shape": list(a.shape),
                        "count": st.count,
                        "min": _clean(st.min),
                        "max": _clean(st.max),
                        "mean": _clean(st.mean),
                        "std": _clean(st.std),
                        "absmax": _clean(st.absmax),
                        "zero_fraction": st.zero_fraction,
                        "nan": st.nan,
                        "inf": st.inf,
                        "denormals": st.denormals,
                    }
                    for lp, a, st in results
                ],
            }
        )
        return 0
    rows = [
        (
            lp.name,
            a.name,
            _g(st.min),
            _g(st.max),
            _g(st.mean),
            _g(st.std),
            _g(st.absmax),
            f"{st.zero_fraction:.1%}",
            str(st.nan),
            str(st.inf),
        )
        for lp, a, st in results
    ]
    print(f"{f.path}: {len(results)} arrays")
    for line in table(
        ("layer", "array", "min", "max", "mean", "std", "absmax", "zeros", "nan", "inf"),
        rows,
        right=range(2, 10),
        width=_width(args),
    ):
        print(line)
    return 0


# -- diff ---------------------------------------------------------------------------------------
def _diff_json(r: DiffReport) -> dict[str, Any]:
    return {
        "a": r.a,
        "b": r.b,
        "seen_a": r.seen_a,
        "seen_b": r.seen_b,
        "identical": r.identical,
        "only_a": list(r.only_a),
        "only_b": list(r.only_b),
        "shape_mismatch": list(r.shape_mismatch),
        "arrays": [
            {
                "layer": d.layer,
                "name": d.name,
                "type": d.type,
                "array": d.array,
                "count": d.count,
                "identical": d.identical,
                "max_abs": _clean(d.max_abs),
                "rel_l2": _clean(d.rel_l2),
                "cosine": _clean(d.cosine),
            }
            for d in r.arrays
        ],
    }


def _offset_progress(bar: Progress, base: int, total: int) -> Callable[[int, int, str], None]:
    def report(done: int, _total: int, what: str) -> None:
        bar(base + done, total, what)

    return report


def cmd_diff(args: argparse.Namespace) -> int:
    from dwf.tools.diff import diff

    if len(args.files) < 2:
        raise DwfError("diff needs at least two weights files")
    files: list[WeightsFile] = []
    try:
        for path in args.files:
            files.append(_open(args, path))
        total = sum(x.available_floats for x in files[1:])
        bar = Progress(
            total, "diff", enabled=len(files) > 2 or any(x.size > BIG_FILE for x in files)
        )
        done = 0
        reports = []
        for x, y in itertools.pairwise(files):
            reports.append(diff(x, y, progress=_offset_progress(bar, done, total)))
            done += y.available_floats
        bar.close()
    finally:
        for x in files:
            x.close()
    if args.json:
        if len(reports) == 1:
            _dump(_diff_json(reports[0]))
        else:
            _dump({"series": [_diff_json(r) for r in reports]})
    elif len(reports) == 1:
        _print_diff(reports[0], args)
    else:
        _print_drift(reports, args)
    differs = any(not r.identical for r in reports)
    return 1 if (args.exit_code and differs) else 0


def _print_diff(r: DiffReport, args: argparse.Namespace) -> None:
    delta = r.seen_b - r.seen_a
    print(f"A: {r.a}\nB: {r.b}")
    print(f"seen: {_fmt(r.seen_a)} → {_fmt(r.seen_b)} ({'+' if delta >= 0 else ''}{_fmt(delta)})")
    changed = r.changed
    print(
        f"{len(r.arrays)} arrays compared: {len(changed)} changed,"
        f" {len(r.arrays) - len(changed)} identical"
    )
    if r.identical:
        print("identical everywhere")
    for what, names in (
        ("only in A", r.only_a),
        ("only in B", r.only_b),
        ("shapes differ", r.shape_mismatch),
    ):
        if names:
            print(f"{what}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}")
    shown = r.arrays if args.all else changed
    if not shown:
        return
    rows = [
        (d.name, d.array, _g(d.max_abs), _g(d.rel_l2), _g(d.cosine), "yes" if d.identical else "no")
        for d in shown
    ]
    for line in table(
        ("layer", "array", "max |Δ|", "rel L2", "cosine", "identical"),
        rows,
        right=(2, 3, 4),
        width=_width(args),
    ):
        print(line)


def _print_drift(reports: Sequence[DiffReport], args: argparse.Namespace) -> None:
    names = [reports[0].a] + [r.b for r in reports]
    for i, n in enumerate(names):
        print(f"[{i}] {n}")
    print("relative L2 change per layer between consecutive files:")
    per_layer: dict[str, list[str]] = {}
    order: list[str] = []
    for k, r in enumerate(reports):
        for _idx, name, _typ, _m, rel in r.layers():
            if name not in per_layer:
                per_layer[name] = ["-"] * len(reports)
                order.append(name)
            per_layer[name][k] = _g(rel)
    headers = ["layer"] + [f"{k}→{k + 1}" for k in range(len(reports))]
    rows = [[name, *per_layer[name]] for name in order]
    # the drift table must keep every column: reflow, do not cut
    for line in table(
        [*headers, ""], [[*r, ""] for r in rows], right=range(1, len(headers)), width=None
    ):
        print(line)
    seen = " → ".join(_fmt(r.seen_a) for r in reports) + f" → {_fmt(reports[-1].seen_b)}"
    print(f"seen: {seen}")


# -- check / identify ---------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from dwf.tools.check import check

    with _open(args) as f:
        total = 4 * f.available_floats
        bar = Progress(total, "check", enabled=total > BIG_FILE)
        try:
            report = check(f, extreme=args.extreme, progress=bar)
        finally:
            bar.close()
    if args.json:
        _dump(
            {
                "path": report.path,
                "arrays": report.arrays,
                "floats": report.floats,
                "serious": report.serious,
                "mismatch": report.mismatch,
                "findings": [attrs.asdict(x) for x in report.findings],
            }
        )
    else:
        print(report.explain())
    return 1 if report.serious else 0


def cmd_identify(args: argparse.Namespace) -> int:
    from dwf.tools.identify import identify

    ident = identify(args.weights)
    if args.json:
        h = ident.header
        _dump(
            {
                "path": ident.path,
                "size": ident.size,
                "floats": ident.floats,
                "problem": ident.problem,
                "header": None
                if h is None
                else {"version": h.version, "seen": h.seen, "size": h.size},
                "matches": [attrs.asdict(m) for m in ident.matches],
            }
        )
    else:
        print(ident.explain())
    return 0 if ident.matches else 1


# -- edit / export ------------------------------------------------------------------------------
def cmd_cut(args: argparse.Namespace) -> int:
    from dwf.tools.cut import cut

    out = cut(args.weights, args.out, args.upto, cfg=args.cfg, dialect=args.dialect)
    size = os.path.getsize(out)
    print(f"wrote {out}: layers 0..{args.upto - 1}, {_fmt(size)} bytes (seen reset to 0)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import dwf.tools.export as export
    from dwf.io.writer import atomic_write

    with _open(args) as f:
        if args.format == "npz":
            out = export.to_npz(f, args.out, compress=args.compress)
        elif args.format == "safetensors":
            out = export.to_safetensors(f, args.out)
        else:
            torch = export.require("torch", "torch")
            state = export.to_state_dict(f, copy=True)
            with atomic_write(args.out) as fh:
                torch.save(state, fh)
            out = args.out
    print(f"wrote {out} ({args.format}, {_fmt(os.path.getsize(out))} bytes)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import dwf.tools.export as export

    src: Any = args.source
    if args.source.endswith((".pt", ".pth")):
        torch = export.require("torch", "torch")
        src = torch.load(args.source, map_location="cpu", weights_only=True)
    header = None
    if args.seen is not None:
        from dwf.format.header import Header

        header = Header(0, 2, 5, args.seen, 20)
    out = export.import_weights(src, args.out, cfg=args.cfg, dialect=args.dialect, header=header)
    print(f"wrote {out} ({_fmt(os.path.getsize(out))} bytes)")
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from dwf.tools.fuse import fuse

    out, cfg_out = fuse(args.weights, args.out, args.cfg_out, cfg=args.cfg, dialect=args.dialect)
    print(f"wrote {out} and {cfg_out} (batch norm folded into conv/connected layers)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dwf.tools.demo import write_demo

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
        layers=None,
        type=None,
        wide=False,
    )
    return cmd_info(info)


# -- parser -------------------------------------------------------------------------------------
def _add_source(p: argparse.ArgumentParser, *, weights: bool = True) -> None:
    if weights:
        p.add_argument("weights", help="the .weights file (or a partial *.conv.N file)")
    p.add_argument("--cfg", help="the cfg (default: the .cfg with the same name beside it)")
    p.add_argument(
        "--dialect",
        default="alexeyab",
        choices=["alexeyab", "pjreddie"],
        help="Darknet code base that wrote the file (default alexeyab)",
    )


def _add_lenient(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--lenient", action="store_true", help=what)


def _add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", metavar="RANGES", help="only these layers, e.g. 10-20 or 3,7")
    p.add_argument(
        "--type", metavar="TYPE", help="only layers of this type (convolutional or conv, route, …)"
    )


def _add_output(p: argparse.ArgumentParser, *, wide: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if wide:
        p.add_argument("--wide", action="store_true", help="do not cut tables to 100 columns")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="dwf", description="Look inside Darknet .weights files without loading them."
    )
    from dwf.version import __version__

    parser.add_argument("--version", action="version", version=f"dwf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "info",
        parents=[common],
        help="header and one row per layer (shapes, byte spans)",
        description="Print the header and one row per layer: index, name,"
        " type, output shape, byte span and arrays.",
    )
    _add_source(p)
    p.add_argument(
        "--header-size", type=int, choices=[16, 20], help="force a 16- or 20-byte header"
    )
    _add_lenient(p, "open a file whose size does not match the cfg (strict=False)")
    _add_select(p)
    _add_output(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "stats",
        parents=[common],
        help="per-array statistics (min, max, mean, std, NaN …)",
        description="Per layer and array: min, max, mean, std, abs-max, zero"
        " fraction, NaN and Inf counts; streaming, in bounded memory.",
    )
    _add_source(p)
    _add_lenient(p, "read the complete layers of a file whose size does not match")
    _add_select(p)
    _add_output(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "diff",
        parents=[common],
        help="compare checkpoints (two, or a series)",
        description="Per layer and array: max |B-A|, relative L2 change, cosine"
        " similarity and whether identical, plus the change in seen. With more"
        " than two files, the relative change between consecutive files.",
    )
    p.add_argument("files", nargs="+", metavar="WEIGHTS", help="two or more weights files")
    _add_source(p, weights=False)
    p.add_argument("--all", action="store_true", help="also list identical arrays")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when the files differ (like git diff --exit-code)",
    )
    _add_output(p)
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "check",
        parents=[common],
        help="scan for NaN/Inf, bad BN variances, dead filters",
        description="Scan every array, layer by layer in bounded memory, for"
        " NaN/Inf, negative batch-norm variances, all-zero filters, dead BN"
        " channels, extreme magnitudes and denormals. Exit 1 when something"
        " serious (an error) is found.",
    )
    _add_source(p)
    p.add_argument(
        "--extreme", type=float, default=1e6, help="report |x| above this as extreme (default 1e6)"
    )
    _add_lenient(p, "scan the complete layers of a file whose size does not match")
    _add_output(p, wide=False)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "identify",
        parents=[common],
        help="which known network a file is, without a cfg",
        description="Match the file's float count against Darknet's public"
        " cfgs and the common partial backbones. Exit 1 when nothing matches.",
    )
    p.add_argument("weights", help="the .weights file")
    _add_output(p, wide=False)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser(
        "cut",
        parents=[common],
        help="keep layers 0..N-1 (as 'darknet partial')",
        description="Write a partial file holding layers 0..N-1, exactly as"
        " 'darknet partial cfg weights OUT N' does (seen reset to 0).",
    )
    _add_source(p)
    p.add_argument("out", help="the file to write")
    p.add_argument("upto", type=int, help="number of layers to keep (N)")
    p.set_defaults(func=cmd_cut)

    p = sub.add_parser(
        "export",
        parents=[common],
        help="write the arrays as .npz, .safetensors or PyTorch",
        description="Export every array: npz (numpy, no pickle), safetensors"
        " (needs dwf[safetensors]) or a PyTorch state_dict saved with"
        " torch.save (needs dwf[torch]).",
    )
    _add_source(p)
    p.add_argument("--format", required=True, choices=["npz", "safetensors", "torch"])
    p.add_argument("--compress", action="store_true", help="compressed .npz")
    p.add_argument("out", help="the file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        parents=[common],
        help="rebuild a .weights file from an export",
        description="Write a .weights file from a dwf .npz/.safetensors export"
        " (which carries its cfg and header) or a PyTorch .pt state_dict"
        " (needs --cfg).",
    )
    p.add_argument("source", help=".npz, .safetensors, or .pt/.pth state_dict")
    p.add_argument("out", help="the .weights file to write")
    p.add_argument("--cfg", help="the cfg (required for a state_dict)")
    p.add_argument("--dialect", choices=["alexeyab", "pjreddie"])
    p.add_argument(
        "--seen",
        type=int,
        help="header 0.2.5 with this seen (a state_dict keeps"
        " no header; default: the export's header, else seen=0)",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "fuse",
        parents=[common],
        help="fold batch norm into conv/connected layers",
        description="Write OUT and CFG_OUT: the weights with batch norm folded"
        " into every conv/connected layer, and the cfg with batch_normalize=0"
        " there.",
    )
    _add_source(p)
    p.add_argument("out", help="the fused .weights file to write")
    p.add_argument("cfg_out", help="the matching cfg to write")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser(
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
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 findings, 2 error)."""
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
