#!/usr/bin/env python3
"""Benchmark: what guarding views with a file lease costs (dwf/io/guard.py).

Builds a yolov4-sized weights file (``../shared/conformance/cfg/alexeyab/yolov4.cfg`` when it
exists, else a generated conv net of the same float count) of random values — written out, not
sparse, so that the copy reads real pages — and measures:

- **opening**: in a fresh process, ``dwf.open``, the first view (not touched: the lease, the
  map and, once per process, the watcher thread), a second view, the sum of the first view;
  and, in one process over 200 opens, the cost per file of ``dwf.open`` and of ``dwf.open`` +
  one view. With ``--against CHECKOUT`` the same rows with that checkout's dwf (e.g. the main
  branch, which mapped the file at open, without a lease), runs alternating.
- **the detach**: a reader process holds views — the smallest array, the biggest layer's
  weights, or every array of the file — and a writer process opens the file as Darknet does
  (``O_WRONLY|O_CREAT|O_TRUNC``). Measured: how long the writer's open took (the truncation
  included) and how much of that dwf caused (the same minus the writer's open without a
  reader), how long the swap took in the reader (copy + ``mremap``), the reader's anonymous
  memory before and after, and that every held view kept its values. Warm: the file in the
  page cache; cold: evicted first (``posix_fadvise(DONTNEED)``), so the copy reads from the
  disk. The first row is the writer alone, no reader.

    python benchmarks/bench_live.py                      # yolov4-sized, 5 repeats
    python benchmarks/bench_live.py --against /work/main # also the other checkout's open rows
    python benchmarks/bench_live.py --quick              # ~20 MB, 2 repeats (smoke)

Linux only (leases). Prints a table; everything is written to ``benchmarks/out/bench_live.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import (
    HEADER_SIZE,
    ROOT,
    evict,
    fmt_bytes,
    fmt_ms,
    generated_cfg,
    load_average,
    machine_info,
    positive,
    proc_status_kib,
    versions,
    warm,
    write_weights,
)

import dwf

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
YOLOV4_CFG = SHARED / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"
YOLOV4_FLOATS = 64_429_405
QUICK_FLOATS = 5 * 2**20
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "bench_live.json"
SCRIPT = Path(__file__).resolve()


# -- worker processes -----------------------------------------------------------------------------
def open_worker(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: ``dwf.open``, then the first view (untouched), a second view of
    another layer, then the sum of the first (its pages read)."""
    weights, cfg, layer, other = job["weights"], job["cfg"], job["layer"], job["other"]
    t0 = time.perf_counter()
    f = dwf.open(weights, cfg)
    t1, c1 = time.perf_counter(), time.process_time()
    w = f[layer].weights
    t2, c2 = time.perf_counter(), time.process_time()
    f[other].weights  # noqa: B018
    t3 = time.perf_counter()
    assert w is not None
    float(w.sum())
    t4 = time.perf_counter()
    return {
        "open": t1 - t0,
        "first view": t2 - t1,
        "first view, CPU": c2 - c1,
        "second view": t3 - t2,
        "sum": t4 - t3,
    }


def many_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Per file, over many opens in one process (after a first one: imports, the watcher
    thread): ``dwf.open`` alone, and ``dwf.open`` + one view."""
    weights, cfg, layer, n = job["weights"], job["cfg"], job["layer"], job["n"]
    plan = dwf.plan(cfg)  # the plan is shared, as when a folder of checkpoints is opened
    keep = [dwf.open(weights, plan)[layer].weights]
    t0 = time.perf_counter()
    for _ in range(n):
        dwf.open(weights, plan).close()
    t1 = time.perf_counter()
    for _ in range(n):
        f = dwf.open(weights, plan)
        keep.append(f[layer].weights)
        f.close()
    t2 = time.perf_counter()
    del keep
    return {"open (per file)": (t1 - t0) / n, "open + view (per file)": (t2 - t1) / n}


def reader_worker(job: dict[str, Any]) -> None:
    """Hold views, wait for the writer, then report the swap and the memory around it."""
    from dwf.io import guard

    weights, cfg, held = job["weights"], job["cfg"], job["held"]
    swaps: list[float] = []
    real = guard._State.check_break

    def timed(self: Any) -> None:
        t = time.perf_counter()
        was = self.detached
        real(self)
        if self.detached is not None and was is None:
            swaps.append(time.perf_counter() - t)

    guard._State.check_break = timed  # type: ignore[method-assign]
    with dwf.open(weights, cfg, backend="pread") as p:  # expected values, without the map
        sizes = {n: v.size for n, v in p.arrays()}
        if held == "big":
            chosen = [max(sizes, key=lambda n: sizes[n] if n.endswith(".weights") else -1)]
        elif held == "tiny":
            chosen = [min(sizes, key=lambda n: sizes[n])]
        else:
            chosen = list(sizes)
        expected = {n: float(v.sum(dtype=np.float64)) for n, v in p.arrays() if n in chosen}
    f = dwf.open(weights, cfg)
    views = {}
    for n in chosen:  # only these views: each registers its byte range with the map
        layer, array = n.split(".", 1)
        views[n] = f[layer][array]
    st0 = proc_status_kib()
    print("ready", json.dumps({"held_bytes": sum(v.nbytes for v in views.values())}), flush=True)
    sys.stdin.readline()  # the writer has been and gone
    st1 = proc_status_kib()
    same = all(float(v.sum(dtype=np.float64)) == expected[n] for n, v in views.items())
    print(
        json.dumps(
            {
                "swap_s": swaps[0] if swaps else None,
                "anon_before": 1024 * st0.get("RssAnon", 0),
                "anon_growth": 1024 * (st1.get("RssAnon", 0) - st0.get("RssAnon", 0)),
                "same": same,
                "mode": f.view_mode,
            }
        ),
        flush=True,
    )


def writer_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Darknet's open: how long it was held back; then a header, as save_weights starts."""
    t0 = time.perf_counter()
    with open(job["weights"], "wb") as fh:
        blocked = time.perf_counter() - t0
        fh.write(dwf.Header().encode())
    return {"blocked_s": blocked}


def _python(job: dict[str, Any], checkout: Path | None = None) -> list[str]:
    return [sys.executable, str(SCRIPT), "--worker", json.dumps(job)]


def _env(checkout: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if checkout is not None:
        env["DWF_BENCH_ROOT"] = str(checkout)
    return env


def _run(job: dict[str, Any], checkout: Path | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        _python(job), capture_output=True, text=True, env=_env(checkout), timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def detach_once(weights: Path, cfg: Path, held: str, cold: bool) -> dict[str, Any]:
    """One reader holding ``held``, one Darknet-like writer; the file is rewritten fresh first."""
    if held == "writer alone":
        if cold:
            evict([weights])
        return {**_run({"role": "writer", "weights": str(weights)}), "held_bytes": 0}
    reader = subprocess.Popen(
        _python({"role": "reader", "weights": str(weights), "cfg": str(cfg), "held": held}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(None),
    )
    assert reader.stdin is not None and reader.stdout is not None
    line = reader.stdout.readline()
    if not line.startswith("ready"):
        reader.kill()
        raise RuntimeError(f"reader failed: {line}")
    ready = json.loads(line.split(" ", 1)[1])
    if cold:
        note = evict([weights])
        if note:
            raise RuntimeError(note)
    w = _run({"role": "writer", "weights": str(weights)})
    reader.stdin.write("go\n")
    reader.stdin.flush()
    out, _ = reader.communicate(timeout=600)
    if reader.returncode != 0:
        raise RuntimeError(f"reader exited {reader.returncode}: {out}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {**result, **w, **ready}


# -- driver ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Measure the cost of guarding views with a lease.")
    p.add_argument("--quick", action="store_true", help="~20 MB file, 2 repeats (smoke)")
    p.add_argument("--repeats", type=positive, help="runs per row (default 5, --quick 2)")
    p.add_argument("--against", type=Path, help="another checkout, for the open rows")
    p.add_argument("--dir", type=Path, help="where to write the file (default: a temp dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--only", choices=("open", "detach"), help="run one part")
    p.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        job = json.loads(args.worker)
        role = job.get("role")
        if role == "reader":
            reader_worker(job)
            return 0
        run = {"open": open_worker, "many": many_worker, "writer": writer_worker}[role]
        print(json.dumps(run(job)))
        return 0
    if not sys.platform.startswith("linux"):
        print("bench_live measures Linux file leases; this is not Linux", file=sys.stderr)
        return 2
    repeats = args.repeats or (2 if args.quick else 5)
    if not args.quick and YOLOV4_CFG.is_file():
        cfg_text, cfg_source = YOLOV4_CFG.read_text(encoding="utf-8"), "yolov4.cfg"
    else:
        target = QUICK_FLOATS if args.quick else YOLOV4_FLOATS
        cfg_text, cfg_source = generated_cfg(target), f"generated ({target:,} floats asked)"
    parent = args.dir or Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix="dwf-bench-live-", dir=parent))
    try:
        return _measure(args, repeats, cfg_text, cfg_source, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure(
    args: argparse.Namespace, repeats: int, cfg_text: str, cfg_source: str, folder: Path
) -> int:
    load_start = load_average()
    cfg, weights = write_weights(folder, cfg_text, "bench", seed=0)
    plan = dwf.plan(cfg)
    with_weights = [lp for lp in plan.stored if lp.array("weights") is not None]
    second_half = [lp for lp in with_weights if lp.offset >= plan.total_floats // 2]
    mid = min(second_half or with_weights, key=lambda lp: lp.count)
    size = weights.stat().st_size
    print(f"file: {cfg_source}, {size:,} bytes ({fmt_bytes(size)}), random values, not sparse")
    print(f"`{shlex.join(['python', *sys.argv])}`, {repeats} repeats, medians\n")

    # -- opening
    checkouts: list[tuple[str, Path | None]] = [("this", None)]
    if args.against is not None:
        checkouts.append((str(args.against), args.against.resolve()))
    warm([weights])
    other = max(with_weights, key=lambda lp: lp.count)
    open_rows: dict[str, dict[str, list[float]]] = {}
    detach_rows: list[dict[str, Any]] = []
    repeats_open = 0 if args.only == "detach" else repeats
    job = {"weights": str(weights), "cfg": str(cfg), "layer": mid.name, "other": other.name}
    for _ in range(3 * repeats_open):  # fresh processes are noisy: more of them
        for name, checkout in checkouts:  # alternating, so load hits both alike
            for key, value in _run({**job, "role": "open"}, checkout).items():
                open_rows.setdefault(key, {}).setdefault(name, []).append(value)
    for _ in range(repeats_open):
        for name, checkout in checkouts:
            for key, value in _run({**job, "role": "many", "n": 200}, checkout).items():
                open_rows.setdefault(key, {}).setdefault(name, []).append(value)
    print(f"first view: {mid.name}, second: {other.name}; in a fresh process unless per file")
    print(f"{'opening (warm), ms':<34}" + "".join(f"{n[-24:]:>26}" for n, _ in checkouts))
    for label, by in open_rows.items():
        cells = "".join(f"{fmt_ms(statistics.median(by[n])):>26}" for n, _ in checkouts)
        print(f"{label:<34}{cells}")

    # -- the detach
    print()
    head = f"{'detach':<28} {'cache':<5} {'held':>9} {'writer blocked':>15} {'of which dwf':>13}"
    print(head + f" {'swap':>9} {'anon before':>12} {'anon +':>9} {'views kept':>10}")
    alone: dict[bool, float] = {}
    for held in ("writer alone", "tiny", "big", "all") if args.only != "open" else ():
        for cold in (False, True):
            runs = []
            for _ in range(repeats):
                # the writer truncated the file: write it again (and warm it) for each run
                cfg, weights = write_weights(folder, cfg_text, "bench", seed=0)
                warm([weights])
                runs.append(detach_once(weights, cfg, held, cold))
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in ("blocked_s", "swap_s", "anon_growth", "anon_before", "held_bytes")
                if all(r.get(k) is not None for r in runs)
            }
            kept = all(r.get("same", True) for r in runs)
            row = {"held": held, "cold": cold, "runs": runs, "median": med, "kept": kept}
            detach_rows.append(row)
            label = {
                "writer alone": "writer alone (no reader)",
                "tiny": "reader holds smallest array",
                "big": "reader holds biggest layer",
                "all": "reader holds every array",
            }[held]
            swap = med.get("swap_s")
            if held == "writer alone":
                alone[cold] = med["blocked_s"]
            extra = med["blocked_s"] - alone[cold]
            med["dwf_delay_s"] = extra
            print(
                f"{label:<28} {'cold' if cold else 'warm':<5}"
                f" {fmt_bytes(med.get('held_bytes', 0)):>9}"
                f" {fmt_ms(med['blocked_s']) + ' ms':>15}"
                f" {(fmt_ms(extra) + ' ms') if held != 'writer alone' else '-':>13}"
                f" {(fmt_ms(swap) + ' ms') if swap is not None else '-':>9}"
                f" {fmt_bytes(med.get('anon_before')) if 'anon_before' in med else '-':>12}"
                f" {fmt_bytes(med.get('anon_growth')) if 'anon_growth' in med else '-':>9}"
                f" {'yes' if kept else 'NO':>10}"
            )
    doc = {
        "command": shlex.join(["python", *sys.argv]),
        "file": {"cfg": cfg_source, "size": size, "sparse": False},
        "repeats": repeats,
        "open": open_rows,
        "detach": detach_rows,
        "lease_break_time_s": Path("/proc/sys/fs/lease-break-time").read_text().strip(),
        "machine": machine_info(folder),
        "load_average": {"start": load_start, "end": load_average()},
        "only": args.only,
        "versions": versions(),
        "header_size": HEADER_SIZE,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"\nwritten: {args.out}")
    return 0 if all(r["kept"] for r in detach_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
