"""Shared machinery of the benchmark scripts: counters, worker processes, page cache, files.

Every measured call runs in a fresh Python process (the script started again with ``--worker
JOB``), so that import costs stay out and nothing is cached in the process. The worker reads its
counters, makes one call and reads them again (:func:`measure`): wall time, minor and major page
faults, peak RSS growth, file pages mapped in, bytes through read syscalls and bytes fetched from
the disk. The driver controls the page cache between runs (:func:`evict`, :func:`warm`).

Used by ``bench_open.py`` and ``bench_suite.py``; not a module of dwf.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The checkout whose dwf is imported: the one these scripts belong to, or, in a worker process
# of a before/after comparison (bench_startup.py --against), the other one.
DWF_ROOT = Path(os.environ.get("DWF_BENCH_ROOT") or ROOT)
if sys.path[:1] != [str(DWF_ROOT)]:
    sys.path.insert(0, str(DWF_ROOT))

import dwf  # noqa: E402

# dwf loads its reader on first use; load it here, outside every measured region.
dwf.WeightsFile  # noqa: B018

PAGE = resource.getpagesize()
HEADER_SIZE = 20

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


def delta(after: dict[str, int] | None, before: dict[str, int] | None, key: str) -> int | None:
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
        d, cost = delta(io1, io0, key), delta(io0, io_a, key)
        return None if d is None or cost is None else d - cost

    if hwm_reset and "VmHWM" in st1 and "VmRSS" in st0:
        peak_kib, peak_how = max(st1["VmHWM"] - st0["VmRSS"], 0), "VmHWM after clear_refs"
    else:  # ru_maxrss is in KiB on Linux, bytes on macOS
        scale = 1 if sys.platform != "darwin" else 1 / 1024
        peak_kib, peak_how = int((ru1.ru_maxrss - ru0.ru_maxrss) * scale), "ru_maxrss delta"
    rss_file = delta(st1, st0, "RssFile")
    return {
        "wall_s": t1 - t0,
        "minflt": ru1.ru_minflt - ru0.ru_minflt,
        "majflt": ru1.ru_majflt - ru0.ru_majflt,
        "peak_rss_growth": 1024 * peak_kib,
        "peak_rss_how": peak_how,
        "rss_file_growth": None if rss_file is None else 1024 * rss_file,
        "rchar": io_delta("rchar"),
        "syscr": io_delta("syscr"),
        "read_bytes": delta(io1, io0, "read_bytes"),
        "value": value,
    }


# -- worker processes -------------------------------------------------------------------------
def worker_env() -> dict[str, str]:
    """The environment of a worker: bytecode caches allowed (an installed package has its .pyc
    files; without them every import recompiles, which is slow but outside the measurement)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_worker(script: Path, job: Job, *, timeout: float | None = None) -> Run:
    """Run ``script --worker JOB`` in a fresh interpreter; its last stdout line is the result."""
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
        env=worker_env(),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job.get('scenario', job)} failed:\n{proc.stderr}")
    result: Run = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- building files ---------------------------------------------------------------------------
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


def write_weights(
    folder: Path, cfg_text: str, name: str, seed: int, *, sparse: bool = False
) -> tuple[Path, Path]:
    """Write ``<name>.cfg`` and ``<name>.weights`` into ``folder``: a version 0.2.5 header and
    random float32 values (normal, σ 0.05), streamed in 64 MiB chunks so that memory stays small
    whatever the size — the bytes ``dwf.save`` writes for the same values. ``sparse``: the body
    is a hole (reads as zeros, takes no disk space), for files that are only opened."""
    cfg = folder / f"{name}.cfg"
    cfg.write_text(cfg_text, encoding="utf-8")
    plan = dwf.plan(cfg)
    weights = folder / f"{name}.weights"
    total = plan.total_floats
    with open(weights, "wb") as fh:
        fh.write(dwf.Header().encode())
        if sparse:
            fh.truncate(HEADER_SIZE + 4 * total)
        else:
            rng = np.random.default_rng(seed)
            step = 16 * 2**20
            for start in range(0, total, step):
                chunk = rng.standard_normal(min(step, total - start), dtype=np.float32)
                chunk *= np.float32(0.05)
                fh.write(chunk.tobytes())
    with dwf.open(weights, cfg) as f:  # the file fits its cfg exactly
        assert f.complete and f.size == plan.expected_size(HEADER_SIZE)
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
    read = delta(proc_io(), io0, "read_bytes")
    return None if read is None else read > 0


def cold_runs_note(paths: list[Path]) -> str | None:
    """Evict ``paths`` and check that it worked: ``None``, or why cold runs cannot be made."""
    why = evict(paths)
    if why is None and eviction_works(paths[0]) is False:
        why = "evicting had no effect (a read after it was served from the page cache)"
    return why


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


def load_average() -> float | None:
    """The 1-minute load average, where the platform has one."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


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


def versions(**extra: str | None) -> dict[str, str | None]:
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
        **extra,
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


def fmt_ms(s: float | None) -> str:
    if s is None:
        return "n/a"
    ms = 1000 * s
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    return f"{ms:.1f}" if ms < 10_000 else f"{ms:,.0f}"


def fmt_count(v: float | None) -> str:
    return "n/a" if v is None else f"{round(v):,}"


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


def positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n
