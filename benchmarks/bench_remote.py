#!/usr/bin/env python3
"""Benchmark: remote files and many files (docs/remote.md).

1. A yolov4-sized file (257,717,640 bytes, ``../shared/conformance/cfg/alexeyab/yolov4.cfg``)
   served over HTTP by a local aiohttp server (range requests, ETags; the server's own log counts
   the body bytes it sent): ``dwf.open`` of the URL; open + one small layer (``conv_12``); open +
   the biggest layer; ``dwf.check`` of the whole file over HTTP (a full scan); against
   downloading the file (fsspec ``get_file``) and then opening it locally. Bytes transferred,
   requests and wall time (median of the repeats, after one warm-up call).
2. ``dwf.check`` over 200 small checkpoints (6 KB), then 200 larger ones (600 KB): a plain loop
   (``jobs=1``), a process pool of 2 (``jobs=2``, as ``dwf check --jobs 2``, the pool's start-up
   included) and a 2-worker Dask ``LocalCluster`` (its start-up timed apart).

    python benchmarks/bench_remote.py            # 3 repeats (--repeats N)
    python benchmarks/bench_remote.py --quick    # 1 repeat, 40 checkpoints, no full scan
    python benchmarks/bench_remote.py --only remote   # part 1 only (--only many: part 2)

Part 1 also reads the file from ``python -m http.server``, which ignores ranges: ``dwf.check``
then reads the whole response once into a temporary file (bytes: the body dwf received).

Needs ``pip install 'dwf-darknet[remote,dask]'``. Writes ``benchmarks/out/bench_remote.json``.
The server runs in this process (a thread), on 127.0.0.1: the network cost is the loopback's,
so the times are a lower bound; the byte counts are what any server would send.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):  # the checkout's dwf, and the test servers and files
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from remote_helpers import small_checkpoint, sparse_yolov4  # noqa: E402
from remote_servers import HttpServer, StaticServer  # noqa: E402

import dwf  # noqa: E402

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))  # as tests/conftest.py
CFG = SHARED / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"


def timed(fn: Callable[[], Any], server: HttpServer | None, repeats: int) -> dict[str, Any]:
    times: list[float] = []
    sent = requests = 0
    fn()  # warm-up, not counted: connections, worker imports, the cfg's plan cache
    for _ in range(repeats):
        if server is not None:
            server.log.clear()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if server is not None:
            sent = server.transferred
            requests = len(server.gets())
    return {"seconds": statistics.median(times), "bytes": sent, "requests": requests}


def remote_rows(folder: Path, repeats: int, quick: bool) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "yolov4.cfg").write_bytes(CFG.read_bytes())
    sparse_yolov4(folder / "yolov4.weights", CFG)
    size = (folder / "yolov4.weights").stat().st_size
    server = HttpServer(folder).start()
    url, cfg = f"{server.url}/yolov4.weights", f"{server.url}/yolov4.cfg"
    biggest = max(dwf.plan(CFG).stored, key=lambda lp: lp.count).name
    cfg_bytes = CFG.stat().st_size
    print(f"(bytes include the cfg, {cfg_bytes:,} B, fetched by every open)")
    rows: list[dict[str, Any]] = []
    try:

        def open_only() -> None:
            dwf.open(url, cfg=cfg).close()

        def one_layer(name: str) -> Callable[[], None]:
            def run() -> None:
                with dwf.open(url, cfg=cfg) as f:
                    f[name].arrays  # noqa: B018

            return run

        def download_then_open() -> None:
            import fsspec

            local = folder / "downloaded.weights"
            fsspec.filesystem("http").get_file(url, str(local))
            with dwf.open(local, cfg=CFG) as f:
                f["conv_12"].weights.sum()  # type: ignore[union-attr]
            local.unlink()

        cases: list[tuple[str, Callable[[], None]]] = [
            ("dwf.open(url)", open_only),
            ("open + conv_12", one_layer("conv_12")),
            (f"open + {biggest} (biggest)", one_layer(biggest)),
            ("download file, open, conv_12", download_then_open),
        ]
        if not quick:
            cases.append(("dwf.check(url): full scan", lambda: dwf.check(url, cfg=cfg)))
        for name, fn in cases:
            row = {
                "case": name,
                "file_bytes": size,
                "cfg_bytes": cfg_bytes,
                **timed(fn, server, repeats),
            }
            rows.append(row)
            print(
                f"{name:34} {row['bytes']:>13,} B {row['requests']:>5} req"
                f" {row['seconds'] * 1000:>9.1f} ms",
                flush=True,
            )
        if not quick:
            rows.append(no_ranges_row(folder, size, cfg_bytes, repeats))
    finally:
        server.stop()
    return rows


def no_ranges_row(folder: Path, size: int, cfg_bytes: int, repeats: int) -> dict[str, Any]:
    """``dwf.check`` of the file served by ``python -m http.server`` (no ranges): the whole
    response is read once into a temporary file, then checked from there."""
    static = StaticServer(folder).start()
    url, cfg = f"{static.url}/yolov4.weights", f"{static.url}/yolov4.cfg"
    received: list[int] = []

    def run() -> None:
        with dwf.open(url, cfg=cfg) as f:
            dwf.check(f)
            received.append(getattr(f.source, "transferred", 0))

    case = "http.server (no ranges): dwf.check(url)"
    try:
        row = {"case": case, "file_bytes": size, "cfg_bytes": cfg_bytes,
               **timed(run, None, repeats)}
    except dwf.DwfError as e:  # (before dwf read such servers: "does not answer ranges")
        print(f"{case:34} failed: {e}")
        return {"case": case, "error": str(e)}
    finally:
        static.stop()
    row["bytes"] = received[-1] + cfg_bytes
    print(f"{row['case']:34} {row['bytes']:>13,} B {'':>9} {row['seconds'] * 1000:>9.1f} ms",
          flush=True)
    return row


def many_rows(folder: Path, n: int, repeats: int, big: bool = False) -> list[dict[str, Any]]:
    for i in range(1, n + 1):
        small_checkpoint(folder, f"ckpt_{i}", seed=i, big=big)
    kb = (folder / "ckpt_1.weights").stat().st_size / 1000
    print(f"({n} checkpoints of {kb:,.0f} KB)")
    src = [folder]
    rows: list[dict[str, Any]] = []

    def add(name: str, fn: Callable[[], Any], extra: dict[str, Any] | None = None) -> None:
        row = {
            "case": name,
            "files": n,
            "file_kb": kb,
            **timed(fn, None, repeats),
            **(extra or {}),
        }
        del row["bytes"], row["requests"]
        rows.append(row)
        print(f"{name:34} {n:>5} files {row['seconds'] * 1000:>9.1f} ms", flush=True)

    add("check: plain loop (jobs=1)", lambda: list(dwf.check(src, jobs=1)))
    add("check: process pool (jobs=2)", lambda: list(dwf.check(src, jobs=2)))
    try:
        import distributed
    except ImportError:
        print("(dask not installed: pip install 'dwf-darknet[dask]')")
        return rows
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster)
    startup = time.perf_counter() - t0
    try:
        ex = client.get_executor()
        add(
            "check: Dask LocalCluster, 2 workers",
            lambda: list(dwf.check(src, executor=ex)),
            {"cluster_startup_seconds": startup},
        )
        print(f"  (cluster start-up, not included: {startup * 1000:.0f} ms)")
    finally:
        client.close()
        cluster.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 40 files, no full scan")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_remote.json"))
    ap.add_argument("--only", choices=("remote", "many"), action="append",
                    help="run only this part (repeatable; default: both)")
    args = ap.parse_args()
    parts = set(args.only or ("remote", "many"))
    repeats = 1 if args.quick else args.repeats
    doc: dict[str, Any] = {"quick": args.quick, "repeats": repeats, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if "remote" not in parts:
            pass
        elif CFG.exists():
            print("-- a yolov4-sized file over HTTP (127.0.0.1)")
            doc["remote"] = remote_rows(Path(tmp) / "http", repeats, args.quick)
        else:
            print(f"({CFG} not found: the HTTP rows need ../shared)")
            doc["remote"] = []
        n = 40 if args.quick else 200
        if "many" in parts:
            print("-- check over many small checkpoints")
            doc["many"] = many_rows(Path(tmp) / "many", n, repeats)
        if "many" in parts and not args.quick:
            print("-- the same with larger checkpoints")
            doc["many_large"] = many_rows(Path(tmp) / "large", n, repeats, big=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
