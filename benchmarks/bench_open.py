#!/usr/bin/env python3
"""Benchmark: opening a weights file with dwf reads the header and the cfg, nothing else.

Builds a synthetic yolov4-sized weights file (``../shared/conformance/cfg/alexeyab/yolov4.cfg``
when it exists, otherwise a deep conv net generated here with about the same float count),
then measures, each run in a fresh Python process so that import costs stay out and the page
cache is controlled:

- ``dwf.open`` alone;
- ``dwf.open`` + the sum of a layer's weights: a small one at the start (``conv_0``), a small
  one in the middle of the file, the biggest one;
- ``np.fromfile`` of the whole body, then slicing the layer (what PyTorch ports do);
- sequential ``f.read`` + ``np.frombuffer`` of every array up to the layer (what Keras
  converters do).

For each: wall time of the call (median, min, max over the repeats), minor and major page
faults, peak RSS growth, bytes through read syscalls (``rchar``) and bytes fetched from disk
(``read_bytes``), with the file in the page cache (warm) and evicted from it (cold).

    python benchmarks/bench_open.py              # full run, 7 repeats (about a minute)
    python benchmarks/bench_open.py --quick      # ~20 MB file, 2 repeats, fewer rows (CI)
    python benchmarks/bench_open.py --generated  # the generated cfg even if yolov4.cfg exists

The table is printed; everything, per run, is written to ``benchmarks/out/bench_open.json``.
docs/benchmarks.md records a run and explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _harness import (
    HEADER_SIZE,
    PAGE,
    ROOT,
    Job,
    Run,
    cold_runs_note,
    evict,
    fmt_bytes,
    fmt_ms,
    generated_cfg,
    load_average,
    machine_info,
    measure,
    positive,
    proc_io,
    summarize,
    versions,
    warm,
    write_weights,
)
from _harness import run_worker as harness_run_worker

import dwf

# dwf loads its reader on first use; load it here, outside every measured region.
dwf.WeightsFile  # noqa: B018

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
YOLOV4_CFG = SHARED / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"
YOLOV4_FLOATS = 64_429_405  # yolov4.cfg's body: 257,717,640 bytes with the 20-byte header
QUICK_FLOATS = 5 * 2**20  # ~20 MiB
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "bench_open.json"

# scenario -> (method shown in the table, which layer: "" | "small" | "mid" | "big");
# small: the first layer (conv_0), mid: the smallest layer in the second half of the file,
# big: the biggest layer
SCENARIOS: dict[str, tuple[str, str]] = {
    "open": ("dwf.open", ""),
    "open+small": ("dwf.open + sum", "small"),
    "open+mid": ("dwf.open + sum", "mid"),
    "open+big": ("dwf.open + sum", "big"),
    "fromfile+small": ("np.fromfile+slice", "small"),
    "fromfile+big": ("np.fromfile+slice", "big"),
    "seqread+small": ("read+frombuffer", "small"),
    "seqread+big": ("read+frombuffer", "big"),
}

# --quick skips the small-layer baselines (fromfile+small costs what fromfile+big does)
QUICK_SCENARIOS = ("open", "open+small", "open+big", "fromfile+big", "seqread+big")


# -- the measured calls -----------------------------------------------------------------------
def make_call(job: Job) -> Callable[[], float]:
    """The call to measure for ``job``. Everything not part of the method is done here, before
    measuring: the baselines get the plan's offsets for free (a real port parses the cfg too)."""
    scenario: str = job["scenario"]
    weights: str = job["weights"]
    cfg: str = job["cfg"]
    layer: str | None = job["layer"]
    hsize: int = job["header_size"]

    if scenario.startswith("open"):

        def dwf_call() -> float:
            f = dwf.open(weights, cfg)
            if layer is None:
                return float(f.size)
            w = f[layer].weights
            assert w is not None
            return float(w.sum())

        return dwf_call

    plan = dwf.plan(cfg)
    target = plan.layer(layer or 0).array("weights")
    assert target is not None
    if scenario.startswith("fromfile"):

        def fromfile_call() -> float:
            with open(weights, "rb") as fh:  # the PyTorch-port way: everything, then slice
                np.fromfile(fh, dtype=np.int32, count=HEADER_SIZE // 4)
                body = np.fromfile(fh, dtype=np.float32)
            w = body[target.offset : target.stop].reshape(target.shape)
            return float(w.sum())

        return fromfile_call

    upto: list[tuple[int, tuple[int, ...]]] = []
    for _, a in plan.arrays():
        upto.append((a.count, a.shape))
        if a is target:
            break

    def seqread_call() -> float:
        with open(weights, "rb") as fh:  # the Keras-converter way: read every array in turn
            fh.read(hsize)
            w: np.ndarray[Any, np.dtype[np.float32]] = np.empty(0, dtype=np.float32)
            for count, shape in upto:
                w = np.frombuffer(fh.read(4 * count), dtype=np.float32).reshape(shape)
        return float(w.sum())

    return seqread_call


def worker(job: Job) -> Run:
    """Worker-process entry: measure one call."""
    return measure(make_call(job))


# -- formatting -------------------------------------------------------------------------------
COLUMNS = (
    f"{'cache':<5} {'method':<17} {'layer':<8} {'med ms':>7} {'min ms':>7} {'max ms':>7}"
    f" {'minflt':>6} {'majflt':>6} {'RSS +':>9} {'rchar':>9} {'disk':>9}"
)


def table_row(cache: str, method: str, layer: str, s: dict[str, Any]) -> str:
    def count(v: float | None) -> str:
        return "n/a" if v is None else f"{round(v):,}"

    return (
        f"{cache:<5} {method:<17} {layer or '-':<8} {fmt_ms(s['wall_s_median']):>7}"
        f" {fmt_ms(s['wall_s_min']):>7} {fmt_ms(s['wall_s_max']):>7}"
        f" {count(s['minflt_median']):>6} {count(s['majflt_median']):>6}"
        f" {fmt_bytes(s['peak_rss_growth_median']):>9} {fmt_bytes(s['rchar_median']):>9}"
        f" {fmt_bytes(s['read_bytes_median']):>9}"
    )


# -- driver -----------------------------------------------------------------------------------
def run_worker(job: Job) -> Run:
    return harness_run_worker(Path(__file__).resolve(), job)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure what dwf.open reads, against reading the whole file.",
    )
    p.add_argument("--quick", action="store_true", help="~20 MB file, 2 repeats (CI smoke)")
    p.add_argument("--repeats", type=positive, help="runs per scenario (default 7, --quick 2)")
    p.add_argument("--cfg", type=Path, help="benchmark this cfg instead of yolov4-sized ones")
    p.add_argument(
        "--generated",
        action="store_true",
        help="use the generated yolov4-sized cfg even where ../shared's yolov4.cfg exists",
    )
    p.add_argument("--dir", type=Path, help="where to write the file (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--cache", choices=("both", "warm", "cold"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    repeats = args.repeats or (2 if args.quick else 7)
    command = shlex.join(["python", *sys.argv])

    if args.cfg is not None:
        cfg_text, cfg_source = args.cfg.read_text(encoding="utf-8"), str(args.cfg)
    elif not (args.quick or args.generated) and YOLOV4_CFG.is_file():
        cfg_text = YOLOV4_CFG.read_text(encoding="utf-8")
        cfg_source = os.path.relpath(YOLOV4_CFG, ROOT)
    else:
        target = QUICK_FLOATS if args.quick else YOLOV4_FLOATS
        cfg_text, cfg_source = generated_cfg(target), f"generated here ({target:,} floats asked)"
    planned = dwf.Plan.from_text(cfg_text)
    file_size = planned.expected_size(HEADER_SIZE)

    parent = args.dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if free < file_size + 64 * 2**20:
        print(f"not enough space in {parent}: {fmt_bytes(free)} free, need", file=sys.stderr)
        print(f"{fmt_bytes(file_size)} + 64 MiB; use --dir", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="dwf-bench-", dir=parent))
    notes: list[str] = []
    try:
        return _run(args, repeats, command, cfg_text, cfg_source, folder, notes)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    repeats: int,
    command: str,
    cfg_text: str,
    cfg_source: str,
    folder: Path,
    notes: list[str],
) -> int:
    load_start = load_average()
    t = time.perf_counter()
    cfg, weights = write_weights(folder, cfg_text, "bench", args.seed)
    write_s = time.perf_counter() - t
    plan = dwf.plan(cfg)
    with_weights = [lp for lp in plan.stored if lp.array("weights") is not None]
    if not with_weights:
        print(f"{cfg_source}: no layer with weights to read", file=sys.stderr)
        return 2
    small = with_weights[0]
    second_half = [lp for lp in with_weights if lp.offset >= plan.total_floats // 2]
    mid = min(second_half or with_weights, key=lambda lp: lp.count)
    big = max(with_weights, key=lambda lp: lp.count)
    layers = {"small": small.name, "mid": mid.name, "big": big.name}
    size = weights.stat().st_size
    info: dict[str, Any] = {
        "cfg_source": cfg_source,
        "cfg_bytes": cfg.stat().st_size,
        "floats": plan.total_floats,
        "file_bytes": size,
        "file_pages": -(-size // PAGE),
        "layers": len(plan.layers),
        **{
            which: {"name": lp.name, "bytes": 4 * lp.count, "span": lp.byte_span(HEADER_SIZE)}
            for which, lp in (("small", small), ("mid", mid), ("big", big))
        },
        "write_s": write_s,
        "dir": str(folder),
    }

    if proc_io() is None:
        notes.append("/proc/self/io is not available: rchar and disk columns are n/a")
    caches = ["warm", "cold"] if args.cache == "both" else [args.cache]
    if "cold" in caches:
        why = cold_runs_note([weights, cfg])
        if why is not None:
            notes.append(f"cold runs not possible: {why}; only warm runs were made")
            caches = [c for c in caches if c != "cold"]

    def job(scenario: str) -> Job:
        which = SCENARIOS[scenario][1]
        return {
            "scenario": scenario,
            "weights": str(weights),
            "cfg": str(cfg),
            "layer": layers[which] if which else None,
            "header_size": HEADER_SIZE,
        }

    warm([weights, cfg])
    if not args.quick:
        run_worker(job("open"))  # warm-up: bytecode caches, shared libraries
    scenarios = [s for s in SCENARIOS if not args.quick or s in QUICK_SCENARIOS]
    runs: dict[tuple[str, str], list[Run]] = {(c, s): [] for c in caches for s in scenarios}
    for cache in caches:
        if cache == "warm":
            warm([weights, cfg])
        for _ in range(repeats):  # interleaved, so that drifts spread over every scenario
            for scenario in scenarios:
                if cache == "cold":
                    evict([weights, cfg])
                runs[cache, scenario].append(run_worker(job(scenario)))

    # the methods must agree on the values they read
    for which in ("small", "mid", "big"):
        values: set[float] = {
            r["value"]
            for c in caches
            for s in scenarios
            if SCENARIOS[s][1] == which
            for r in runs[c, s]
        }
        if values and max(values) - min(values) > 1e-3 * max(1.0, max(abs(v) for v in values)):
            notes.append(f"ERROR: the methods read different {layers[which]} sums: {values}")

    results = []
    lines = [COLUMNS, "-" * len(COLUMNS)]
    for cache in caches:
        for scenario in scenarios:
            method, which = SCENARIOS[scenario]
            s = summarize(runs[cache, scenario])
            layer = layers[which] if which else ""
            lines.append(table_row(cache, method, layer, s))
            results.append(
                {
                    "cache": cache,
                    "scenario": scenario,
                    "method": method,
                    "layer": layer or None,
                    "summary": s,
                    "runs": runs[cache, scenario],
                }
            )
        lines.append("")
    table = "\n".join(lines).rstrip()

    machine = machine_info(folder)
    load_end = load_average()
    machine["load_average_1min"] = {"start": load_start, "end": load_end}
    load = (
        f"; load average {load_start:.1f} at the start, {load_end:.1f} at the end"
        if load_start is not None and load_end is not None
        else ""
    )
    vers = versions()

    def where(lp: dwf.LayerPlan) -> str:
        return f"{lp.name} ({4 * lp.count:,} bytes at {lp.byte_span(HEADER_SIZE)[0]:,})"

    ram = fmt_bytes(machine["ram_bytes"]) if machine["ram_bytes"] else "?"
    ra = machine["read_ahead_kb"]
    commit = f" ({vers['dwf_commit']})" if vers["dwf_commit"] else ""
    head = [
        f"machine:  {machine['cpu']}, {machine['cores']} cores, {ram} RAM",
        f"          {machine['os']}, {machine['filesystem'] or '?'}"
        + (f", block-device read-ahead {ra} KiB" if ra is not None else ""),
        f"versions: Python {vers['python']}, numpy {vers['numpy']}, dwf {vers['dwf']}{commit}",
        f"command:  {command}",
        f"file:     {fmt_bytes(size)}: {size:,} bytes, {info['file_pages']:,} pages,"
        f" {plan.total_floats:,} floats, {len(plan.layers)} layers",
        f"cfg:      {cfg_source} ({info['cfg_bytes']:,} bytes)",
        f"layers:   small {where(small)}, mid {where(mid)},",
        f"          big {where(big)}",
        f"runs:     {repeats} per row, each in a fresh process{load}",
    ]
    legend = (
        "time: wall time of the call; minflt/majflt: page faults; RSS +: peak RSS growth;"
        "\nrchar: bytes through read syscalls; disk: bytes read from the device (medians)."
    )
    dwf_open = summarize(runs[caches[0], "open"])
    verdict = (
        f"dwf.open read {fmt_bytes(dwf_open['rchar_median'])} through syscalls"
        f" (cfg {info['cfg_bytes']:,} B + header) of a {fmt_bytes(size)} file."
    )
    report = "\n".join([*head, "", table, "", legend, verdict, *notes])
    print(report)

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "command": command,
        "argv": sys.argv,
        "quick": args.quick,
        "repeats": repeats,
        "machine": machine,
        "versions": vers,
        "file": info,
        "caches": caches,
        "notes": notes,
        "table": table,
        "report": report,
        "results": results,
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 1 if any(n.startswith("ERROR") for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
