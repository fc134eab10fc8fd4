#!/usr/bin/env python3
"""Benchmark: exporting a yolov4-sized network to ONNX, by how the weights are stored.

Builds a sparse yolov4-sized weights file (``../shared/conformance/cfg/alexeyab/yolov4.cfg``,
64,429,405 floats = 257,717,640 bytes, zeros; a sparse file costs no disk) in a temporary
folder, then measures in this process (imports done first, outside the timings):

- ``dwf export`` with external data pointing into the ``.weights`` file (the default when the
  model is written beside it): time and bytes written;
- ``dwf export --embed``: the arrays inside the model;
- ``dwf export --data FILE``: the arrays copied to a data file beside the model;
- for comparison, what a converter that builds the model in memory does to get external data:
  ``onnx.save_model(model, save_as_external_data=True)`` of the embedded model (the bytes are
  copied once more);
- onnxruntime's session creation on the zero-copy model and on the embedded one.

    python benchmarks/bench_onnx.py            # 5 repeats
    python benchmarks/bench_onnx.py --quick    # 1 repeat
    python benchmarks/bench_onnx.py --rss [--against CHECKOUT]

``--rss`` runs each of the three dwf exports in a fresh process instead and reports its time
and peak resident memory (VmHWM, reset after the imports; Linux): the memory an export needs
beyond the interpreter, onnx and numpy. ``--against`` runs the same children with another
checkout of dwf (e.g. the previous release) first, in the same run, for a before/after table.

Prints a table; docs/onnx.md records a run. No figure here is asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark the checkout this script belongs to
    sys.path.insert(0, str(ROOT))

import dwf  # noqa: E402

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
CFG = SHARED / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"


def sparse_weights(folder: Path) -> Path:
    """A yolov4.weights-sized file of zeros: the 20-byte header, then a hole."""
    plan = dwf.plan(CFG)
    path = folder / "yolov4.weights"
    with open(path, "wb") as fh:
        fh.write(dwf.Header(0, 2, 5, 0, 20).encode())
        fh.truncate(plan.expected_size(20))
    (folder / "yolov4.cfg").write_bytes(CFG.read_bytes())
    return path


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def written(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


# One export in a fresh process: time and peak RSS growth (VmHWM after the imports reset it).
_CHILD = r"""
import json, sys, time
import numpy, onnx
import dwf
weights, out, mode = sys.argv[1:]
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":"))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status("VmRSS")
kw = {"embed": {"embed": True}, "data": {"data": out[:-5] + ".bin"}}.get(mode, {})
t = time.perf_counter()
dwf.export(weights, out, **kw)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_kib": status("VmHWM") - base, "base_kib": base}))
"""

MODES = (
    ("default", "external data into the .weights"),
    ("embed", "--embed"),
    ("data", "--data dat.bin"),
)


def child_export(checkout: Path, weights: Path, out: Path, mode: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # not in a checkout: "python -c" puts the current folder first
        [sys.executable, "-c", _CHILD, str(weights), str(out), mode],
        env=env,
        cwd=out.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"the {mode} export with {checkout} failed:\n{proc.stderr[-2000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def rss_table(repeats: int, against: Path | None) -> int:
    checkouts = [("before", against)] if against is not None else []
    checkouts.append(("this checkout", ROOT))
    rows = []
    with tempfile.TemporaryDirectory(prefix="dwf-bench-onnx-") as tmp:
        folder = Path(tmp)
        weights = sparse_weights(folder)
        size = weights.stat().st_size
        for mode, label in MODES:
            for who, checkout in checkouts:
                assert checkout is not None
                runs = [
                    child_export(checkout, weights, folder / f"m-{mode}.onnx", mode)
                    for _ in range(repeats)
                ]
                seconds = statistics.median(r["seconds"] for r in runs)
                peak = statistics.median(r["peak_kib"] for r in runs) / 1024
                rows.append((f"{label} ({who})", seconds, peak))
    print(f"yolov4.cfg, {size:,} B weights file; {repeats} run(s) each")
    print(f"{'export':52s} {'median s':>9s} {'peak RSS growth MiB':>20s}")
    for label, seconds, peak in rows:
        print(f"{label:52s} {seconds:9.3f} {peak:20.1f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat")
    ap.add_argument("--rss", action="store_true", help="time and peak RSS, one process each")
    ap.add_argument("--against", type=Path, help="with --rss: another dwf checkout, run first")
    args = ap.parse_args()
    if not CFG.exists():
        print(f"{CFG} not found: the benchmark needs ../shared", file=sys.stderr)
        return 2
    if args.rss:
        return rss_table(1 if args.quick else 3, args.against)
    import onnx
    import onnxruntime as ort

    repeats = 1 if args.quick else 5
    rows: list[tuple[str, list[float], int]] = []
    with tempfile.TemporaryDirectory(prefix="dwf-bench-onnx-") as tmp:
        folder = Path(tmp)
        weights = sparse_weights(folder)
        size = weights.stat().st_size
        ext, emb, dat = folder / "ext.onnx", folder / "emb.onnx", folder / "dat.onnx"
        rows.append(
            (
                "dwf export, external data into the .weights (default)",
                timed(lambda: dwf.export(weights, ext), repeats),
                written(ext),
            )
        )
        rows.append(
            (
                "dwf export --embed",
                timed(lambda: dwf.export(weights, emb, embed=True), repeats),
                written(emb),
            )
        )
        rows.append(
            (
                "dwf export --data dat.bin",
                timed(lambda: dwf.export(weights, dat, data=folder / "dat.bin"), repeats),
                written(dat, folder / "dat.bin"),
            )
        )
        model = onnx.load(str(emb))
        other = folder / "onnx-save.onnx"
        times = []
        for _ in range(repeats):  # save_model moves the data out of the proto: a fresh copy each
            fresh = onnx.ModelProto()
            fresh.CopyFrom(model)
            (folder / "o.data").unlink(missing_ok=True)  # onnx appends to an existing one
            t = time.perf_counter()
            onnx.save_model(fresh, str(other), save_as_external_data=True, location="o.data")
            times.append(time.perf_counter() - t)
        rows.append(
            (
                "onnx.save_model(save_as_external_data=True) of it",
                times,
                written(other, folder / "o.data"),
            )
        )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        for label, path in (("zero-copy", ext), ("embedded", emb)):
            rows.append(
                (
                    f"onnxruntime session, {label} model (no graph optimisation)",
                    timed(
                        lambda p=path: ort.InferenceSession(  # type: ignore[misc]
                            str(p), so, providers=["CPUExecutionProvider"]
                        ),
                        repeats,
                    ),
                    0,
                )
            )
    print(
        f"yolov4.cfg, {size:,} B weights file; {repeats} repeat(s);"
        f" onnx {onnx.__version__}, onnxruntime {ort.__version__}"
    )
    print(f"{'what':60s} {'median s':>9s} {'min s':>7s} {'written B':>13s}")
    for label, times, nbytes in rows:
        shown = f"{nbytes:13,d}" if nbytes else ""
        print(f"{label:60s} {statistics.median(times):9.3f} {min(times):7.3f} {shown}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
