#!/usr/bin/env python3
"""Benchmark suite: dwf against the other ways of looking inside a Darknet ``.weights`` file.

On synthetic files of real networks' sizes — yolov3-tiny (35,434,956 bytes), yolov4
(257,717,640 bytes) and a ~2 GB network — filled with random float32 values, it compares:

1. ``dwf.open`` + one layer's weights;
2. ``np.fromfile`` of the whole body, then slicing (what the PyTorch ports do);
3. ``f.read`` + ``np.frombuffer`` array by array, walking the file (what Keras/TF converters do);
4. OpenCV's ``cv2.dnn.readNetFromDarknet`` (``opencv-python-headless<5``), then ``getParam``;
5. safetensors' ``safe_open(..., framework="np").get_tensor`` on the same arrays exported to a
   ``.safetensors`` file (the reference for lazy tensor loading);
6. ``struct.unpack`` value by value (what some tutorials do), timed on a 1M-float slice and
   extrapolated to the floats the method has to walk through (rows marked ``*``).

Sections (each run in a fresh Python process, counters as in ``bench_open.py``):

- **layer**: open + a small layer (the smallest one in the second half of the file) and open +
  the biggest layer, warm and cold page cache;
- **scan**: open + every array's statistics (``f.check()``, ``dwf.tools.stats.array_stats``) against
  ``np.fromfile`` + numpy reductions; GB/s of body;
- **size**: ``dwf.open`` alone on ~20 MB, ~258 MB, ~2 GB and ~16 GB sparse files whose cfgs
  have the same structure (a darknet53-like net with its widths scaled);
- **micro**: in one warm process, repeated: cfg tokenising and planning (uncached and cached),
  ``dwf.open`` with a cached plan, the file-changed check of every view, safetensors.

Then the issue's targets are checked and printed, met or missed by how much.

    python benchmarks/bench_suite.py            # everything (~10 min, ~4.6 GB of temp files)
    python benchmarks/bench_suite.py --plot     # ... and docs/benchmarks.png
    python benchmarks/bench_suite.py --quick    # ~20 MB generated file, 5 runs per row (~1 min)

OpenCV and safetensors are optional: their rows are skipped, with a note, when missing. The
report is printed; everything, per run, is written to ``benchmarks/out/bench_suite.json``.
docs/benchmarks.md records a run and explains it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _harness import (
    HEADER_SIZE,
    ROOT,
    Job,
    Run,
    cold_runs_note,
    evict,
    fmt_bytes,
    fmt_count,
    fmt_ms,
    generated_cfg,
    load_average,
    machine_info,
    measure,
    positive,
    proc_io,
    run_worker,
    summarize,
    versions,
    warm,
    write_weights,
)

import dwf

SCRIPT = Path(__file__).resolve()
SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
CFG_DIR = SHARED / "conformance" / "cfg" / "alexeyab"
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "bench_suite.json"
DEFAULT_PLOT = ROOT / "docs" / "benchmarks.png"

# name -> (shared cfg, float count of its body: the size a generated stand-in is given)
NETWORKS: dict[str, tuple[str, int]] = {
    "yolov3-tiny": ("yolov3-tiny.cfg", 8_858_734),  # 35,434,956 bytes
    "yolov4": ("yolov4.cfg", 64_429_405),  # 257,717,640 bytes
}
BIG_BYTES = 2_000_000_000  # the multi-GB file: a scaled net of about this size
QUICK_FLOATS = 5 * 2**20  # ~20 MiB
SIZES = {"20 MB": 20e6, "258 MB": 257.7e6, "2 GB": 2e9, "16 GB": 16e9}
QUICK_SIZES = {"20 MB": 20e6, "2 GB": 2e9}
STRUCT_SLICE = 1 << 20  # floats struct.unpack reads one by one; longer walks are extrapolated

METHODS: dict[str, str] = {
    "dwf": "dwf.open+layer",
    "fromfile": "np.fromfile+slice",
    "seqread": "read+frombuffer",
    "opencv": "cv2 readNetFromDarknet",
    "safetensors": "safe_open+get_tensor",
    "struct": "struct.unpack *",
}
SCAN_METHODS: dict[str, str] = {
    "dwf-check": "dwf f.check()",
    "dwf-stats": "dwf array_stats",
    "fromfile-numpy": "np.fromfile+numpy",
    "struct": "struct.unpack *",
}
# --quick: the rows kept cold (every method is run warm)
QUICK_COLD = ("dwf", "fromfile", "dwf-check", "fromfile-numpy")


# == worker side ==================================================================================
def _keep(obj: Any) -> None:
    """Keep ``obj`` alive until the worker exits, so that its map (and the file pages mapped in)
    is still there when the counters are read after the call."""
    _KEPT.append(obj)


_KEPT: list[Any] = []


def _struct_walk(weights: str, floats: int) -> float:
    total = 0.0
    with open(weights, "rb") as fh:
        fh.seek(HEADER_SIZE)
        for _ in range(floats):
            total += struct.unpack("<f", fh.read(4))[0]
    return total


def _numpy_stats(a: np.ndarray[Any, Any]) -> float:
    """What a numpy user writes for one array's statistics."""
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    return float(a.min()) + float(a.max()) + float(a.mean()) + float(a.std()) + bad


def make_layer_call(job: Job) -> Callable[[], float]:
    """The call for one (method, layer): everything but the method's own work is done here."""
    method: str = job["method"]
    weights: str = job["weights"]
    cfg: str = job["cfg"]
    layer: str = job["layer"]

    if method == "dwf":

        def dwf_call() -> float:
            f = dwf.open(weights, cfg)
            _keep(f)
            w = f[layer].weights
            assert w is not None
            return float(w.sum())

        return dwf_call
    if method == "safetensors":
        from safetensors import safe_open

        st_path: str = job["safetensors"]

        def safetensors_call() -> float:
            with safe_open(st_path, framework="np") as fh:
                w = fh.get_tensor(f"{layer}.weights")
            return float(w.sum())

        return safetensors_call
    if method == "opencv":
        cv2 = importlib.import_module("cv2")

        def opencv_call() -> float:
            net = cv2.dnn.readNetFromDarknet(cfg, weights)
            w = net.getParam(net.getLayerId(layer), 0)
            return float(w.sum())

        return opencv_call
    if method == "struct":
        floats: int = job["floats"]
        return lambda: _struct_walk(weights, floats)

    plan = dwf.plan(cfg)  # the baselines get the offsets for free (a real port parses the cfg)
    target = plan.layer(layer).array("weights")
    assert target is not None
    if method == "fromfile":

        def fromfile_call() -> float:
            with open(weights, "rb") as fh:  # the PyTorch-port way: everything, then slice
                np.fromfile(fh, dtype=np.int32, count=HEADER_SIZE // 4)
                body = np.fromfile(fh, dtype=np.float32)
            w = body[target.offset : target.stop].reshape(target.shape)
            return float(w.sum())

        return fromfile_call
    if method == "seqread":
        upto: list[tuple[int, tuple[int, ...]]] = []
        for _, a in plan.arrays():
            upto.append((a.count, a.shape))
            if a is target:
                break

        def seqread_call() -> float:
            with open(weights, "rb") as fh:  # the Keras-converter way: every array in turn
                fh.read(HEADER_SIZE)
                w: np.ndarray[Any, np.dtype[np.float32]] = np.empty(0, dtype=np.float32)
                for count, shape in upto:
                    w = np.frombuffer(fh.read(4 * count), dtype=np.float32).reshape(shape)
            return float(w.sum())

        return seqread_call
    raise ValueError(f"unknown method {method!r}")


def make_scan_call(job: Job) -> Callable[[], float]:
    method: str = job["method"]
    weights: str = job["weights"]
    cfg: str = job["cfg"]
    if method == "dwf-check":

        def check_call() -> float:
            f = dwf.open(weights, cfg)
            _keep(f)
            return float(f.check().floats)

        return check_call
    if method == "dwf-stats":
        from dwf.tools.stats import array_stats

        def stats_call() -> float:
            f = dwf.open(weights, cfg)
            _keep(f)
            return sum(array_stats(view).mean for _, view in f.arrays())

        return stats_call
    if method == "fromfile-numpy":
        plan = dwf.plan(cfg)
        spans = [(a.offset, a.stop) for _, a in plan.arrays()]

        def numpy_call() -> float:
            with open(weights, "rb") as fh:
                np.fromfile(fh, dtype=np.int32, count=HEADER_SIZE // 4)
                body = np.fromfile(fh, dtype=np.float32)
            return sum(_numpy_stats(body[start:stop]) for start, stop in spans)

        return numpy_call
    raise ValueError(f"unknown scan method {method!r}")


def micro(job: Job) -> dict[str, Any]:
    """In one warm process: wall times of repeated calls (seconds), by name."""
    from dwf.format import planner
    from dwf.format.cfg import tokenize
    from dwf.tools.stats import array_stats

    weights, cfg, small, big = job["weights"], job["cfg"], job["small"], job["big"]
    n: int = job["n"]
    text = Path(cfg).read_text(encoding="utf-8")
    out: dict[str, Any] = {}

    def timed(name: str, call: Callable[[], object], count: int) -> None:
        call()  # first call outside: imports, lazy initialisation
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[name] = times

    def uncached() -> object:
        planner._plan_cached.cache_clear()
        return dwf.Plan.from_text(text)

    gc.collect()
    timed("tokenize", lambda: tokenize(text), max(n // 10, 3))
    timed("plan", uncached, max(n // 10, 3))
    timed("plan-cached", lambda: dwf.Plan.from_text(text), n)
    dwf.plan(cfg)
    timed("open", lambda: dwf.open(weights, cfg), n)

    def open_small() -> float:
        w = dwf.open(weights, cfg)[small].weights
        assert w is not None
        return float(w.sum())

    timed("open+small", open_small, n)
    f = dwf.open(weights, cfg)
    timed("view", lambda: f[small].weights, n)
    timed("fstat", f.check_unchanged, n)
    if job.get("safetensors"):
        from safetensors import safe_open

        def st_small() -> float:
            with safe_open(job["safetensors"], framework="np") as fh:
                return float(fh.get_tensor(f"{small}.weights").sum())

        timed("safetensors+small", st_small, n)
    view = f[big].weights
    assert view is not None
    reps = max(n // 50, 3)
    timed("array_stats-big", lambda: array_stats(view), reps)
    timed("numpy-stats-big", lambda: _numpy_stats(view), reps)
    out["big_bytes"] = int(view.nbytes)
    out["cfg_lines"] = text.count("\n") + 1
    return out


def worker(job: Job) -> Any:
    kind = job["kind"]
    if kind == "layer":
        return measure(make_layer_call(job))
    if kind == "scan":
        return measure(make_scan_call(job))
    if kind == "open":
        weights, cfg = job["weights"], job["cfg"]

        def open_call() -> float:
            f = dwf.open(weights, cfg)
            _keep(f)
            return float(f.size)

        run = measure(open_call)
        again = []  # the same open again in this process: the plan now comes from the cache
        for _ in range(job["again"]):
            t0 = time.perf_counter()
            dwf.open(weights, cfg).close()
            again.append(time.perf_counter() - t0)
        run["again_s"] = again
        return run
    if kind == "micro":
        return micro(job)
    raise ValueError(f"unknown job kind {kind!r}")


# == files ========================================================================================
def scaled_cfg(base: int) -> str:
    """An original darknet53-like net (52 convolutions, 23 shortcuts) whose widths are
    ``base × 2^stage``: the same structure, and about the same cfg text, at every size."""
    lines = ["[net]", "batch=1", "subdivisions=1", "width=416", "height=416", "channels=3", ""]

    def conv(filters: int, size: int, stride: int = 1) -> None:
        lines.extend(["[convolutional]", "batch_normalize=1", f"filters={filters}"])
        lines.extend([f"size={size}", f"stride={stride}", "pad=1", "activation=leaky", ""])

    conv(base, 3)
    c = base
    for blocks in (1, 2, 8, 8, 4):
        c *= 2
        conv(c, 3, 2)
        for _ in range(blocks):
            conv(c // 2, 1)
            conv(c, 3)
            lines.extend(["[shortcut]", "from=-3", "activation=linear", ""])
    return "\n".join(lines)


def scaled_for(size: float) -> str:
    """The :func:`scaled_cfg` whose file size is closest to ``size`` bytes."""

    def bytes_of(base: int) -> int:
        return dwf.Plan.from_text(scaled_cfg(base)).expected_size(HEADER_SIZE)

    lo, hi = 1, 4096
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bytes_of(mid) <= size:
            lo = mid
        else:
            hi = mid
    return scaled_cfg(min((lo, hi), key=lambda b: abs(bytes_of(b) - size)))


class Bench:
    """One weights file of the comparisons, its safetensors copy and its two layers."""

    def __init__(
        self, key: str, label: str, cfg_text: str, source: str, folder: Path, seed: int
    ) -> None:
        self.key, self.label, self.source = key, label, source
        t = time.perf_counter()
        self.cfg, self.weights = write_weights(folder, cfg_text, key, seed)
        self.plan = dwf.plan(self.cfg)
        self.safetensors: Path | None = None
        if importlib.util.find_spec("safetensors") is not None:
            from dwf.tools.export import to_safetensors

            self.safetensors = folder / f"{key}.safetensors"
            with dwf.open(self.weights, self.cfg) as f:
                to_safetensors(f, self.safetensors)
        self.write_s = time.perf_counter() - t
        with_weights = [lp for lp in self.plan.stored if lp.array("weights") is not None]
        half = [lp for lp in with_weights if lp.offset >= self.plan.total_floats // 2]
        self.small = min(half or with_weights, key=lambda lp: lp.count)
        self.big = max(with_weights, key=lambda lp: lp.count)
        self.size = self.weights.stat().st_size

    @property
    def paths(self) -> list[Path]:
        extra = [self.safetensors] if self.safetensors else []
        return [self.weights, self.cfg, *extra]

    def layer(self, which: str) -> dwf.LayerPlan:
        return self.small if which == "small" else self.big

    def info(self) -> dict[str, Any]:
        def lp_info(lp: dwf.LayerPlan) -> dict[str, Any]:
            return {"name": lp.name, "bytes": 4 * lp.count, "span": lp.byte_span(HEADER_SIZE)}

        return {
            "label": self.label,
            "cfg_source": self.source,
            "cfg_bytes": self.cfg.stat().st_size,
            "layers": len(self.plan.layers),
            "floats": self.plan.total_floats,
            "file_bytes": self.size,
            "safetensors_bytes": self.safetensors.stat().st_size if self.safetensors else None,
            "small": lp_info(self.small),
            "big": lp_info(self.big),
            "write_s": self.write_s,
        }


# == figure ======================================================================================
def plot_suite(doc: dict[str, Any], path: Path) -> None:
    """Four panels: open + small layer, open + biggest layer, full-scan GB/s (all on the main
    file, warm and cold), and dwf.open time against file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = "quick" if doc["quick"] else "yolov4"
    label = doc["files"][main]["label"]
    colors = {"warm": "#d95f02", "cold": "#1b9e77"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2))

    def bars(ax: Any, rows: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> None:
        labels = list(dict.fromkeys(r["label"] for r in rows))
        for i, cache in enumerate(("warm", "cold")):
            ys, xs = [], []
            for r in rows:
                if r["cache"] == cache:
                    ys.append(labels.index(r["label"]) + (0.2 if i else -0.2))
                    xs.append(value(r))
            ax.barh(ys, xs, height=0.38, color=colors[cache], label=cache)
            for y, x in zip(ys, xs, strict=True):
                ax.annotate(f" {x:,.3g}", (x, y), va="center", fontsize=7, annotation_clip=False)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="x", alpha=0.3)

    for ax, which in ((axes[0][0], "small"), (axes[0][1], "big")):
        rows = [r for r in doc["layer"] if r["file"] == main and r["which"] == which]
        bars(ax, rows, lambda r: 1e3 * r["summary"]["wall_s_median"])
        name = rows[0]["layer"] if rows else "?"
        ax.set_xscale("log")
        ax.set_xlabel("ms, median (log scale; * extrapolated)", fontsize=8)
        ax.set_title(f"open + {which} layer ({name}), {label} file", fontsize=9)
    ax = axes[1][0]
    rows = [r for r in doc["scan"] if r["file"] == main]
    bars(ax, rows, lambda r: r["gb_per_s"])
    ax.set_xscale("log")
    ax.set_xlabel("GB/s of body, median (log scale)", fontsize=8)
    ax.set_title(f"full scan: every array's statistics, {label} file", fontsize=9)
    ax = axes[1][1]
    size = doc["size"]
    xs = [r["file_bytes"] / 1e9 for r in size]
    first = [1e3 * r["summary"]["wall_s_median"] for r in size]
    again = [1e3 * r["summary"]["again_s_median"] for r in size]
    ax.plot(xs, first, "o-", color="#7570b3", label="first open in a process (plans the cfg)")
    ax.plot(xs, again, "s-", color="#e7298a", label="open again (plan cached)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(min(again) / 3, max(first) * 3)
    ax.set_xlabel("file size, GB (log scale)", fontsize=8)
    ax.set_ylabel("ms, median", fontsize=8)
    ax.set_title("dwf.open alone vs file size (same cfg structure)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for a in axes.flat:
        a.tick_params(labelsize=8)
    fig.suptitle("dwf benchmarks: " + doc["machine"]["cpu"], fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)


# == driver =======================================================================================
def available() -> tuple[dict[str, bool], list[str]]:
    """Which optional methods can run here, and notes for the ones that cannot."""
    notes: list[str] = []
    ok = {"safetensors": importlib.util.find_spec("safetensors") is not None, "opencv": False}
    if not ok["safetensors"]:
        notes.append("safetensors is not installed (pip install safetensors): its rows are skipped")
    try:
        cv2 = importlib.import_module("cv2")
        ok["opencv"] = hasattr(cv2.dnn, "readNetFromDarknet")
        if not ok["opencv"]:
            notes.append(
                f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromDarknet (OpenCV 5 dropped"
                " it; pip install 'opencv-python-headless<5'): its rows are skipped"
            )
    except ImportError:
        notes.append(
            "OpenCV is not installed (pip install 'opencv-python-headless<5'): its rows are skipped"
        )
    return ok, notes


def cfg_for(name: str, quick: bool, generated: bool) -> tuple[str, str]:
    shared_name, floats = NETWORKS[name]
    path = CFG_DIR / shared_name
    if not (quick or generated) and path.is_file():
        return path.read_text(encoding="utf-8"), os.path.relpath(path, ROOT)
    return generated_cfg(floats), f"generated here, {floats:,} floats asked"


def job_for(bench: Bench, kind: str, method: str, which: str = "") -> Job:
    job: Job = {
        "kind": kind,
        "method": method,
        "weights": str(bench.weights),
        "cfg": str(bench.cfg),
        "safetensors": str(bench.safetensors) if bench.safetensors else None,
    }
    if which:
        job["layer"] = bench.layer(which).name
    return job


def struct_floats(bench: Bench) -> int:
    return min(STRUCT_SLICE, bench.plan.total_floats)


def extrapolate(runs: list[Run], factor: float) -> list[Run]:
    """``struct`` runs scaled to a longer walk: the times only (the counters are the slice's)."""
    return [{"wall_s": r["wall_s"] * factor, "measured_wall_s": r["wall_s"]} for r in runs]


def summary_or_none(runs: list[Run]) -> dict[str, Any] | None:
    return summarize(runs) if runs else None


LAYER_HEAD = (
    f"{'cache':<5} {'method':<22} {'layer':<9} {'med ms':>8} {'min ms':>8} {'max ms':>8}"
    f" {'minflt':>6} {'majflt':>6} {'RSS +':>9} {'disk':>9}"
)
SCAN_HEAD = (
    f"{'cache':<5} {'method':<17} {'med ms':>8} {'min ms':>8} {'max ms':>7} {'GB/s':>6}"
    f" {'minflt':>6} {'majflt':>6} {'RSS +':>9} {'anon +':>9} {'disk':>9}"
)
SIZE_HEAD = (
    f"{'file':<7} {'bytes':>14} {'layers':>6} {'cfg B':>6} {'med ms':>8} {'min ms':>8}"
    f" {'max ms':>8} {'again ms':>8} {'minflt':>6} {'RSS +':>9} {'rchar':>9}"
)
MICRO_HEAD = f"{'what':<42} {'med µs':>10} {'min µs':>10} {'max µs':>10} {'runs':>6}"


def counters(s: dict[str, Any] | None, extrapolated: bool) -> tuple[str, str, str, str]:
    if s is None or extrapolated:
        return "n/a", "n/a", "n/a", "n/a"
    return (
        fmt_count(s["minflt_median"]),
        fmt_count(s["majflt_median"]),
        fmt_bytes(s["peak_rss_growth_median"]),
        fmt_bytes(s["read_bytes_median"]),
    )


def layer_row(cache: str, method: str, layer: str, s: dict[str, Any]) -> str:
    minflt, majflt, rss, disk = counters(s, method == "struct")
    return (
        f"{cache:<5} {METHODS[method]:<22} {layer:<9} {fmt_ms(s['wall_s_median']):>8}"
        f" {fmt_ms(s['wall_s_min']):>8} {fmt_ms(s['wall_s_max']):>8}"
        f" {minflt:>6} {majflt:>6} {rss:>9} {disk:>9}"
    )


def anon_growth(s: dict[str, Any]) -> float | None:
    """Peak RSS growth beyond the file pages mapped in (``RssFile`` growth)."""
    peak, mapped = s.get("peak_rss_growth_median"), s.get("rss_file_growth_median")
    if peak is None or mapped is None:
        return None
    return max(peak - max(mapped, 0), 0)


def scan_row(cache: str, method: str, s: dict[str, Any], body: int) -> str:
    minflt, majflt, rss, disk = counters(s, method == "struct")
    anon = "n/a" if method == "struct" else fmt_bytes(anon_growth(s))
    gbs = body / s["wall_s_median"] / 1e9
    return (
        f"{cache:<5} {SCAN_METHODS[method]:<17} {fmt_ms(s['wall_s_median']):>8}"
        f" {fmt_ms(s['wall_s_min']):>8} {fmt_ms(s['wall_s_max']):>7} {gbs:>6.2f}"
        f" {minflt:>6} {majflt:>6} {rss:>9} {anon:>9} {disk:>9}"
    )


def micro_rows(m: dict[str, Any], small: str, big: str) -> list[str]:
    big_mb = m["big_bytes"] / 1e6
    labels = {
        "tokenize": f"cfg tokenize ({m['cfg_lines']:,} lines)",
        "plan": "plan, uncached (tokenize + layers)",
        "plan-cached": "plan, cached by cfg content",
        "open": "dwf.open, plan cached",
        "open+small": f"dwf.open + {small} weights sum, cached",
        "view": f"f[{small!r}].weights (incl. fstat)",
        "fstat": "f.check_unchanged() (one fstat)",
        "safetensors+small": f"safe_open + get_tensor {small} + sum",
        "array_stats-big": f"array_stats {big} ({big_mb:.1f} MB)",
        "numpy-stats-big": f"numpy reductions {big} ({big_mb:.1f} MB)",
    }
    rows = []
    for key, label in labels.items():
        times = m.get(key)
        if not times:
            continue
        med = statistics.median(times)
        row = (
            f"{label:<42} {1e6 * med:>10,.1f} {1e6 * min(times):>10,.1f}"
            f" {1e6 * max(times):>10,.1f} {len(times):>6}"
        )
        if key.endswith("-big"):
            row += f"  {m['big_bytes'] / med / 1e9:.2f} GB/s"
        rows.append(row)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="dwf against other ways of reading weights files.")
    p.add_argument("--quick", action="store_true", help="~20 MB file, 5 runs per row (CI smoke)")
    p.add_argument("--repeats", type=positive, help="runs per row (default 7, --quick 5)")
    p.add_argument("--no-big", action="store_true", help="leave out the ~2 GB file")
    p.add_argument(
        "--generated",
        action="store_true",
        help="generated stand-ins even where ../shared has yolov4.cfg and yolov3-tiny.cfg",
    )
    p.add_argument("--dir", type=Path, help="where to write the files (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--plot", action="store_true", help="also draw the figure (matplotlib)")
    p.add_argument("--plot-out", type=Path, default=DEFAULT_PLOT, help="where --plot writes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    repeats = args.repeats or (5 if args.quick else 7)
    parent = args.dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need = 80 * 2**20 if args.quick else (640 * 2**20 + (0 if args.no_big else 4 * 10**9))
    free = shutil.disk_usage(parent).free
    if free < need:
        print(f"not enough space in {parent}: {fmt_bytes(free)} free, need", file=sys.stderr)
        print(f"{fmt_bytes(need)}; use --dir or --no-big", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="dwf-suite-", dir=parent))
    try:
        return Suite(args, repeats, folder).run()
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


class Suite:
    def __init__(self, args: argparse.Namespace, repeats: int, folder: Path) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.repeats = repeats
        self.folder = folder
        self.notes: list[str] = []
        self.ok, notes = available()
        self.notes += notes
        self.doc: dict[str, Any] = {}

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def methods(self) -> list[str]:
        return [m for m in METHODS if self.ok.get(m, True)]

    def caches_for(self, paths: list[Path]) -> list[str]:
        why = cold_runs_note(paths)
        if why is None:
            return ["warm", "cold"]
        note = f"cold runs not possible: {why}; only warm runs were made"
        if note not in self.notes:
            self.notes.append(note)
        return ["warm"]

    def runs(self, jobs: dict[str, Job], caches: list[str], paths: list[Path], repeats: int) -> Any:
        """Run every job ``repeats`` times per cache, interleaved, each in a fresh process."""
        out: dict[tuple[str, str], list[Run]] = {(c, k): [] for c in caches for k in jobs}
        for cache in caches:
            if cache == "warm":
                warm(paths)
            keys = [
                k
                for k in jobs
                if cache == "warm" or not self.quick or k.partition(":")[0] in QUICK_COLD
            ]
            for _ in range(repeats):
                for key in keys:
                    if cache == "cold":
                        evict(paths)
                    out[cache, key].append(run_worker(SCRIPT, jobs[key]))
        return out

    # -- sections ---------------------------------------------------------------------------------
    def benches(self) -> list[Bench]:
        a = self.args
        if self.quick:
            text = generated_cfg(QUICK_FLOATS)
            src = f"generated here, {QUICK_FLOATS:,} floats asked"
            return [Bench("quick", "~20 MB (generated)", text, src, self.folder, a.seed)]
        out = []
        for name in NETWORKS:
            text, src = cfg_for(name, self.quick, a.generated)
            self.log(f"writing the {name}-sized file ...")
            out.append(Bench(name, f"{name}-sized", text, src, self.folder, a.seed))
        if not a.no_big:
            self.log("writing the ~2 GB file ...")
            text = scaled_for(BIG_BYTES)
            src = "generated here (darknet53-like, widths scaled)"
            out.append(Bench("big", "~2 GB", text, src, self.folder, a.seed))
        return out

    def layer_section(self, bench: Bench) -> tuple[list[dict[str, Any]], list[str]]:
        self.log(f"layer section: {bench.label} ...")
        caches = self.caches_for(bench.paths)
        methods = self.methods()
        jobs: dict[str, Job] = {}
        for m in methods:
            if m == "struct":
                jobs["struct"] = {**job_for(bench, "layer", "struct", "small")}
                jobs["struct"]["floats"] = struct_floats(bench)
                continue
            if m == "safetensors" and bench.safetensors is None:
                continue
            for which in ("small", "big"):
                jobs[f"{m}:{which}"] = job_for(bench, "layer", m, which)
        # the big file: fewer runs of the whole-file readers (each reads 2 GB)
        repeats = self.repeats if bench.key != "big" else max(3, self.repeats // 2)
        runs = self.runs(jobs, caches, bench.paths, repeats)
        results: list[dict[str, Any]] = []
        lines = [LAYER_HEAD, "-" * len(LAYER_HEAD)]
        for cache in caches:
            for which in ("small", "big"):
                lp = bench.layer(which)
                for m in methods:
                    if m == "struct":
                        measured = runs.get((cache, "struct"), [])
                        walk = lp.stop  # floats from the start of the body through the layer
                        rs = extrapolate(measured, walk / struct_floats(bench))
                        extra = {"floats_walked": walk, "slice_runs": measured}
                    else:
                        rs = runs.get((cache, f"{m}:{which}"), [])
                        extra = {}
                    s = summary_or_none(rs)
                    if s is None:
                        continue
                    lines.append(layer_row(cache, m, lp.name, s))
                    results.append(
                        {
                            "file": bench.key,
                            "cache": cache,
                            "method": m,
                            "label": METHODS[m],
                            "which": which,
                            "layer": lp.name,
                            "summary": s,
                            "runs": rs,
                            **extra,
                        }
                    )
            lines.append("")
        # the methods must agree on the values they read
        for which in ("small", "big"):
            values = {
                r["value"]
                for res in results
                if res["which"] == which and res["method"] != "struct"
                for r in res["runs"]
            }
            if values and max(values) - min(values) > 1e-3 * max(1.0, *map(abs, values)):
                name = bench.layer(which).name
                self.notes.append(f"ERROR: {bench.label}: methods read different {name} sums")
        return results, lines

    def scan_section(self, bench: Bench, layer_results: list[dict[str, Any]]) -> Any:
        self.log(f"scan section: {bench.label} ...")
        caches = self.caches_for(bench.paths)
        jobs = {m: job_for(bench, "scan", m) for m in SCAN_METHODS if m != "struct"}
        repeats = self.repeats if bench.key != "big" else max(3, self.repeats // 2)
        runs = self.runs(jobs, caches, bench.paths, repeats)
        body = 4 * bench.plan.total_floats
        results = []
        lines = [SCAN_HEAD, "-" * len(SCAN_HEAD)]
        for cache in caches:
            for m in SCAN_METHODS:
                if m == "struct":
                    slice_runs = next(
                        (
                            r["slice_runs"]
                            for r in layer_results
                            if r["method"] == "struct" and r["cache"] == cache
                        ),
                        [],
                    )
                    factor = bench.plan.total_floats / struct_floats(bench)
                    rs = extrapolate(slice_runs, factor)
                else:
                    rs = runs.get((cache, m), [])
                s = summary_or_none(rs)
                if s is None:
                    continue
                lines.append(scan_row(cache, m, s, body))
                results.append(
                    {
                        "file": bench.key,
                        "cache": cache,
                        "method": m,
                        "label": SCAN_METHODS[m],
                        "gb_per_s": body / s["wall_s_median"] / 1e9,
                        "anon_growth_median": None if m == "struct" else anon_growth(s),
                        "summary": s,
                        "runs": rs,
                    }
                )
            lines.append("")
        return results, lines

    def size_section(self) -> tuple[list[dict[str, Any]], list[str]]:
        self.log("size section: writing sparse files ...")
        sizes = QUICK_SIZES if self.quick else SIZES
        files: dict[str, tuple[Path, Path, int, int]] = {}
        for label, size in sizes.items():
            key = "size-" + label.replace(" ", "")
            cfg, weights = write_weights(self.folder, scaled_for(size), key, 0, sparse=True)
            plan = dwf.plan(cfg)
            files[label] = (cfg, weights, len(plan.layers), weights.stat().st_size)
        jobs = {
            label: {"kind": "open", "weights": str(w), "cfg": str(c), "again": 50}
            for label, (c, w, _, _) in files.items()
        }
        paths = [p for c, w, _, _ in files.values() for p in (c, w)]
        repeats = self.repeats if self.quick else max(self.repeats, 11)
        self.log("size section: opening ...")
        runs = self.runs(jobs, ["warm"], paths, repeats)
        results = []
        lines = [SIZE_HEAD, "-" * len(SIZE_HEAD)]
        for label, (cfg, _, layers, size) in files.items():
            rs = runs["warm", label]
            s = summarize(rs)
            again = statistics.median(t for r in rs for t in r["again_s"])
            s["again_s_median"] = again
            cfg_bytes = cfg.stat().st_size
            lines.append(
                f"{label:<7} {size:>14,} {layers:>6} {cfg_bytes:>6,}"
                f" {fmt_ms(s['wall_s_median']):>8}"
                f" {fmt_ms(s['wall_s_min']):>8} {fmt_ms(s['wall_s_max']):>8} {fmt_ms(again):>8}"
                f" {fmt_count(s['minflt_median']):>6} {fmt_bytes(s['peak_rss_growth_median']):>9}"
                f" {fmt_bytes(s['rchar_median']):>9}"
            )
            results.append(
                {
                    "label": label,
                    "file_bytes": size,
                    "layers": layers,
                    "cfg_bytes": cfg_bytes,
                    "summary": s,
                    "runs": rs,
                }
            )
        return results, lines

    def micro_section(self, bench: Bench) -> tuple[dict[str, Any], list[str]]:
        self.log(f"micro section: {bench.label} ...")
        warm(bench.paths)
        job = {
            "kind": "micro",
            "weights": str(bench.weights),
            "cfg": str(bench.cfg),
            "safetensors": str(bench.safetensors) if bench.safetensors else None,
            "small": bench.small.name,
            "big": bench.big.name,
            "n": 100 if self.quick else 1000,
        }
        m: dict[str, Any] = run_worker(SCRIPT, job)
        lines = [
            MICRO_HEAD,
            "-" * len(MICRO_HEAD),
            *micro_rows(m, bench.small.name, bench.big.name),
        ]
        return m, lines

    # -- targets ----------------------------------------------------------------------------------
    def targets(self) -> list[dict[str, Any]]:
        d = self.doc
        main = "quick" if self.quick else "yolov4"
        # what the micro section planned: yolov4.cfg itself, or (--quick, --generated) a stand-in
        planned = self.doc["files"][main]["cfg_source"]
        out: list[dict[str, Any]] = []

        def med(rows: list[dict[str, Any]], **match: str) -> float | None:
            for r in rows:
                if all(r.get(k) == v for k, v in match.items()):
                    return float(r["summary"]["wall_s_median"])
            return None

        def add(name: str, value: float | None, goal: float, higher: bool, text: str) -> None:
            if value is None:
                out.append({"target": name, "value": None, "goal": goal, "met": None, "text": text})
                return
            met = value >= goal if higher else value <= goal
            by = (goal / value if higher else value / goal) if value else float("inf")
            out.append(
                {"target": name, "value": value, "goal": goal, "met": met, "by": by, "text": text}
            )

        layer = d.get("layer", [])
        for cache in ("warm", "cold"):
            dw = med(layer, file=main, cache=cache, method="dwf", which="small")
            ff = med(layer, file=main, cache=cache, method="fromfile", which="small")
            st = med(layer, file=main, cache=cache, method="safetensors", which="small")
            if dw and ff:
                add(
                    f"open+small layer vs np.fromfile ({cache})",
                    ff / dw,
                    20.0,
                    True,
                    f"np.fromfile {fmt_ms(ff)} ms / dwf {fmt_ms(dw)} ms",
                )
            if dw and st:
                add(
                    f"open+small layer vs safetensors ({cache}, first open, imports excluded)",
                    dw / st,
                    1.0,
                    False,
                    f"dwf {fmt_ms(dw)} ms / safetensors {fmt_ms(st)} ms",
                )
        m = d.get("micro") or {}
        if m.get("open+small") and m.get("safetensors+small"):
            dw, st = statistics.median(m["open+small"]), statistics.median(m["safetensors+small"])
            add(
                "open+small layer vs safetensors (warm, plan cached)",
                dw / st,
                1.0,
                False,
                f"dwf {1e3 * dw:.3f} ms / safetensors {1e3 * st:.3f} ms",
            )
        if m.get("plan"):
            p = statistics.median(m["plan"])
            add(
                "plan uncached (ms)",
                1e3 * p,
                1.0,
                False,
                f"median; the cfg: {planned} (the goal is for yolov4.cfg; bench_startup.py)",
            )
        size = d.get("size", [])
        if len(size) >= 2:
            first, last = size[0], size[-1]
            ratio = last["summary"]["wall_s_median"] / first["summary"]["wall_s_median"]
            add(
                f"open {last['label']} / open {first['label']} (fresh process)",
                ratio,
                1.2,
                False,
                f"{fmt_ms(last['summary']['wall_s_median'])} ms /"
                f" {fmt_ms(first['summary']['wall_s_median'])} ms",
            )
            ratio = last["summary"]["again_s_median"] / first["summary"]["again_s_median"]
            add(
                f"open {last['label']} / open {first['label']} (plan cached)",
                ratio,
                1.2,
                False,
                f"{fmt_ms(last['summary']['again_s_median'])} ms /"
                f" {fmt_ms(first['summary']['again_s_median'])} ms",
            )
        for r in d.get("scan", []):
            if r["file"] != main or r["cache"] != "warm" or not r["method"].startswith("dwf"):
                continue
            add(f"{r['label']} warm (GB/s)", r["gb_per_s"], 1.0, True, f"{main}-sized file")
            anon = r["anon_growth_median"]
            if anon is not None:
                add(
                    f"{r['label']} RSS growth beyond mapped pages (MB)",
                    anon / 1e6,
                    32 * 2**20 / 1e6,
                    False,
                    f"peak {fmt_bytes(r['summary']['peak_rss_growth_median'])}, mapped"
                    f" {fmt_bytes(r['summary']['rss_file_growth_median'])}",
                )
        return out

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> int:
        args = self.args
        command = shlex.join(["python", os.path.relpath(SCRIPT, Path.cwd()), *sys.argv[1:]])
        load_start = load_average()
        started = time.time()
        if proc_io() is None:
            self.notes.append("/proc/self/io is not available: rchar and disk columns are n/a")
        benches = self.benches()
        main = benches[0] if self.quick else next(b for b in benches if b.key == "yolov4")
        self.doc["files"] = {b.key: b.info() for b in benches}
        layer_results: list[dict[str, Any]] = []
        scan_results: list[dict[str, Any]] = []
        sections: list[str] = []
        for bench in benches:
            res, lines = self.layer_section(bench)
            layer_results += res
            head = (
                f"open + one layer: {bench.label} file, {bench.size:,} bytes,"
                f" {len(bench.plan.layers)} layers; small {bench.small.name}"
                f" ({fmt_bytes(4 * bench.small.count)}), big {bench.big.name}"
                f" ({fmt_bytes(4 * bench.big.count)})"
            )
            sections.append("\n".join([head, "", *lines]).rstrip())
        self.doc["layer"] = layer_results
        for bench in benches:
            if bench.key == "yolov3-tiny":
                continue
            res, lines = self.scan_section(
                bench, [r for r in layer_results if r["file"] == bench.key]
            )
            scan_results += res
            head = (
                f"full scan, every array's statistics: {bench.label} file,"
                f" {4 * bench.plan.total_floats:,} bytes of body"
            )
            sections.append("\n".join([head, "", *lines]).rstrip())
        self.doc["scan"] = scan_results
        size_results, lines = self.size_section()
        self.doc["size"] = size_results
        head = "dwf.open alone vs file size (sparse files, the same scaled darknet53-like cfg)"
        sections.append("\n".join([head, "", *lines]).rstrip())
        m, lines = self.micro_section(main)
        self.doc["micro"] = m
        head = (
            f"in one warm process, repeated: {main.label} file; the cfg planned: {main.source},"
            f" {len(main.plan.layers)} layers"
        )
        sections.append("\n".join([head, "", *lines]).rstrip())

        targets = self.targets()
        tlines = ["targets:"]
        for t in targets:
            if t["met"] is None:
                state = "not measured"
            elif t["met"]:
                state = "met"
            else:
                state = f"MISSED by {t['by']:.2f}×"
            value = "n/a" if t["value"] is None else f"{t['value']:.3g}"
            goal = f"{'≥' if 'vs np' in t['target'] or 'GB/s' in t['target'] else '≤'}"
            tlines.append(f"  {t['target']}: {value} (goal {goal} {t['goal']:g}) {state}")
            tlines.append(f"      {t['text']}")

        machine = machine_info(self.folder)
        load_end = load_average()
        machine["load_average_1min"] = {"start": load_start, "end": load_end}
        extra: dict[str, str | None] = {"safetensors": None, "opencv": None, "matplotlib": None}
        mods = [("safetensors", "safetensors"), ("cv2", "opencv")]
        if args.plot:
            mods.append(("matplotlib", "matplotlib"))
        for mod, key in mods:
            with contextlib.suppress(ImportError):
                extra[key] = importlib.import_module(mod).__version__
        vers = versions(**extra)
        ram = fmt_bytes(machine["ram_bytes"]) if machine["ram_bytes"] else "?"
        ra = machine["read_ahead_kb"]
        commit = f" ({vers['dwf_commit']})" if vers["dwf_commit"] else ""
        load = (
            f"; load average {load_start:.1f} at the start, {load_end:.1f} at the end"
            if load_start is not None and load_end is not None
            else ""
        )
        head = [
            f"machine:  {machine['cpu']}, {machine['cores']} cores, {ram} RAM",
            f"          {machine['os']}, {machine['filesystem'] or '?'}"
            + (f", block-device read-ahead {ra} KiB" if ra is not None else ""),
            f"versions: Python {vers['python']}, numpy {vers['numpy']}, dwf {vers['dwf']}{commit},",
            f"          safetensors {vers['safetensors'] or '-'}, OpenCV {vers['opencv'] or '-'}",
            f"command:  {command}",
            f"runs:     {self.repeats} per row, each in a fresh process{load}",
        ]
        for b in benches:
            head.append(f"cfg:      {b.key}: {b.source}")
        legend = (
            "times: wall time of the call, median/min/max over the runs;"
            " minflt/majflt: page faults;"
            "\nRSS +: peak RSS growth (file pages mapped in included); anon +: RSS + minus the file"
            "\npages mapped in; disk: bytes read from the device; GB/s: body bytes / median time."
            "\n* struct.unpack is timed on a 1M-float slice read value by value and extrapolated to"
            "\n  the floats it walks through (from the start of the body through the layer; the"
            "\n  whole body for a scan); its counters are n/a."
        )
        report = "\n\n".join(["\n".join(head), *sections, legend, "\n".join(tlines), *self.notes])
        print(report)
        elapsed = time.time() - started

        out: Path = args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.doc.update(
            {
                "command": command,
                "argv": sys.argv,
                "quick": self.quick,
                "repeats": self.repeats,
                "machine": machine,
                "versions": vers,
                "notes": self.notes,
                "targets": targets,
                "report": report,
                "elapsed_s": elapsed,
            }
        )
        out.write_text(json.dumps(self.doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out} ({elapsed:.0f} s)")
        if args.plot:
            plot_suite(self.doc, args.plot_out)
            print(f"wrote {args.plot_out} ({args.plot_out.stat().st_size:,} bytes)")
        return 1 if any(n.startswith("ERROR") for n in self.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
