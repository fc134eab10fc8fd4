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

Prints a table; docs/onnx.md records a run. No figure here is asserted by a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark the checkout this script belongs to
    sys.path.insert(0, str(ROOT))

import dwf  # noqa: E402

CFG = ROOT.parent / "shared" / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat")
    args = ap.parse_args()
    if not CFG.exists():
        print(f"{CFG} not found: the benchmark needs ../shared", file=sys.stderr)
        return 2
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
