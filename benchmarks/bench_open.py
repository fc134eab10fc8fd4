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
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark the checkout this script belongs to
    sys.path.insert(0, str(ROOT))

import dwf  # noqa: E402

SHARED = Path(os.environ.get("DWF_SHARED", ROOT.parent / "shared"))
YOLOV4_CFG = SHARED / "conformance" / "cfg" / "alexeyab" / "yolov4.cfg"
YOLOV4_FLOATS = 64_429_405  # yolov4.cfg's body: 257,717,640 bytes with the 20-byte header
QUICK_FLOATS = 5 * 2**20  # ~20 MiB
HEADER_SIZE = 20
PAGE = resource.getpagesize()
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

Job = dict[str, Any]
Run = dict[str, Any]


# -- counters (used in the worker processes) --------------------------------------------------
def proc_io() -> dict[str, int] | None:
    """``/proc/self/io`` as a dict (``rchar``, ``read_bytes``, ``syscr``...), or ``None``."""
    try:
        with open("/proc/self/io", encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = int(value)
    return out


def proc_status_kib() -> dict[str, int]:
    """``VmRSS``, ``VmHWM``, ``RssAnon``, ``RssFile`` of ``/proc/self/status``, in KiB."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _delta(after: dict[str, int] | None, before: dict[str, int] | None, key: str) -> int | None:
    if after is None or before is None or key not in after or key not in before:
        return None
    return after[key] - before[key]


def measure(call: Callable[[], float]) -> Run:
    """Run ``call`` once and return its wall time and the counters' growth around it."""
    hwm_reset = reset_peak_rss()
    st0 = proc_status_kib()
    io_a = proc_io()
    io0 = proc_io()  # io0 - io_a: what one read of /proc/self/io adds to rchar and syscr
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    value = call()
    t1 = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    io1 = proc_io()
    st1 = proc_status_kib()

    def io_delta(key: str) -> int | None:
        d, cost = _delta(io1, io0, key), _delta(io0, io_a, key)
        return None if d is None or cost is None else d - cost

    if hwm_reset and "VmHWM" in st1 and "VmRSS" in st0:
        peak_kib, peak_how = max(st1["VmHWM"] - st0["VmRSS"], 0), "VmHWM after clear_refs"
    else:  # ru_maxrss is in KiB on Linux, bytes on macOS
        scale = 1 if sys.platform != "darwin" else 1 / 1024
        peak_kib, peak_how = int((ru1.ru_maxrss - ru0.ru_maxrss) * scale), "ru_maxrss delta"
    rss_file = _delta(st1, st0, "RssFile")
    return {
        "wall_s": t1 - t0,
        "minflt": ru1.ru_minflt - ru0.ru_minflt,
        "majflt": ru1.ru_majflt - ru0.ru_majflt,
        "peak_rss_growth": 1024 * peak_kib,
        "peak_rss_how": peak_how,
        "rss_file_growth": None if rss_file is None else 1024 * rss_file,
        "rchar": io_delta("rchar"),
        "syscr": io_delta("syscr"),
        "read_bytes": _delta(io1, io0, "read_bytes"),
        "value": value,
    }


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


# -- building the file ------------------------------------------------------------------------
def generated_cfg(target_floats: int, size: int = 416) -> str:
    """An original, plain deep conv net (batch-normalised 3×3 / 1×1 convolutions) whose body
    holds ``target_floats`` float32 values, or a few hundred fewer."""
    lines = ["[net]", "batch=1", "subdivisions=1", f"width={size}", f"height={size}"]
    lines += ["channels=3", ""]
    state = {"c": 3, "total": 0}

    def cost(filters: int, k: int, bn: bool = True) -> int:
        return (4 if bn else 1) * filters + filters * state["c"] * k * k

    def conv(filters: int, k: int, stride: int = 1, bn: bool = True) -> None:
        state["total"] += cost(filters, k, bn)
        lines.extend(["[convolutional]", *(["batch_normalize=1"] if bn else [])])
        lines.extend([f"filters={filters}", f"size={k}", f"stride={stride}", "pad=1"])
        lines.extend(["activation=leaky" if bn else "activation=linear", ""])
        state["c"] = filters

    def fits(*steps: tuple[int, int]) -> bool:
        c0, total = state["c"], state["total"]
        for filters, k in steps:
            total += (4 + c0 * k * k) * filters
            c0 = filters
        return total <= target_floats

    conv(32, 3)
    width = 32
    for filters, pairs in ((64, 1), (128, 2), (256, 3), (512, 3), (1024, 2)):
        if not fits((filters, 3)):
            break
        conv(filters, 3, stride=2)
        width = filters
        for _ in range(pairs):
            if not fits((filters // 2, 1), (filters, 3)):
                break
            conv(filters // 2, 1)
            conv(filters, 3)
    while fits((width // 2, 1), (width, 3)):
        conv(width // 2, 1)
        conv(width, 3)
    top_up = (target_floats - state["total"]) // (1 + state["c"])
    if top_up > 0:
        conv(top_up, 1, bn=False)
    return "\n".join(lines)


def write_weights(folder: Path, cfg_text: str, name: str, seed: int) -> tuple[Path, Path]:
    """Write ``<name>.cfg`` and ``<name>.weights`` (random float32 values) into ``folder``."""
    cfg = folder / f"{name}.cfg"
    cfg.write_text(cfg_text, encoding="utf-8")
    plan = dwf.plan(cfg)
    body = np.random.default_rng(seed).standard_normal(plan.total_floats, dtype=np.float32)
    body *= np.float32(0.05)
    arrays = {
        f"{lp.name}.{a.name}": body[a.offset : a.stop].reshape(a.shape) for lp, a in plan.arrays()
    }
    weights = folder / f"{name}.weights"
    dwf.save(weights, plan, arrays)
    return cfg, weights


# -- page cache -------------------------------------------------------------------------------
def evict(paths: Iterable[Path]) -> str | None:
    """Drop ``paths`` from the page cache; a note saying why not, if it cannot be done."""
    if not hasattr(os, "posix_fadvise"):
        return "os.posix_fadvise is not available on this platform"
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as e:
            return f"posix_fadvise(POSIX_FADV_DONTNEED) failed: {e}"
        finally:
            os.close(fd)
    return None


def eviction_works(path: Path) -> bool | None:
    """Whether a page read right after :func:`evict` came from the disk (``None``: unknown)."""
    io0 = proc_io()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, PAGE, (os.fstat(fd).st_size // 2) & ~(PAGE - 1))
    finally:
        os.close(fd)
    read = _delta(proc_io(), io0, "read_bytes")
    return None if read is None else read > 0


def warm(paths: Iterable[Path]) -> None:
    """Read ``paths`` once so that they are in the page cache."""
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while fh.read(16 * 2**20):
                pass


# -- machine ----------------------------------------------------------------------------------
def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine_info(folder: Path) -> dict[str, Any]:
    cpu = next(
        (
            line.partition(":")[2].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    ram = next(
        (
            int(line.split()[1]) * 1024
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        None,
    )
    st = os.stat(folder)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    ra = _read(f"/sys/dev/block/{dev}/queue/read_ahead_kb").strip()
    ra = ra or _read(f"/sys/dev/block/{dev}/../queue/read_ahead_kb").strip()
    fstype = ""
    best = -1
    for line in _read("/proc/self/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 3 and str(folder).startswith(parts[1]) and len(parts[1]) > best:
            best, fstype = len(parts[1]), parts[2]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "os": f"{platform.system()} {platform.release()}",
        "filesystem": fstype or None,
        "read_ahead_kb": int(ra) if ra.isdigit() else None,
        "page_size": PAGE,
    }


def versions() -> dict[str, str | None]:
    try:
        commit: str | None = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dwf": dwf.__version__,
        "dwf_commit": commit,
    }


# -- formatting -------------------------------------------------------------------------------
def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 999.95 or unit == "GiB":
            return f"{n:.1f} {unit}"
    return str(n)  # pragma: no cover


def fmt_ms(s: float) -> str:
    ms = 1000 * s
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def median_of(runs: list[Run], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[Run]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    out: dict[str, Any] = {
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "wall_s_max": max(walls),
    }
    for key in ("minflt", "majflt", "peak_rss_growth", "rss_file_growth", "rchar", "syscr"):
        out[f"{key}_median"] = median_of(runs, key)
    out["read_bytes_median"] = median_of(runs, "read_bytes")
    return out


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
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job['scenario']} failed:\n{proc.stderr}")
    result: Run = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


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
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
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
        why = evict([weights, cfg])
        if why is None and eviction_works(weights) is False:
            why = "evicting had no effect (a read after it was served from the page cache)"
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
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
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
