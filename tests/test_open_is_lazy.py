"""Opening reads the header and the cfg, nothing of the body; using a layer touches its pages.

Behaviour only, no timings: the counters are read in a fresh Python process so that nothing
else (imports, the test runner) adds to them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dwf

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_open.py"
PAGE = 4096
KIB = 1024
MIB = 1024 * KIB

HAS_PROC_IO = Path("/proc/self/io").exists()


@pytest.mark.slow  # runs the quick open benchmark (~8 s)
def test_bench_open_quick_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "out" / "bench_open.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--dir", str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["quick"] is True and doc["repeats"] == 2
    assert doc["file"]["file_bytes"] < 32 * MIB
    scenarios = {(r["cache"], r["scenario"]) for r in doc["results"]}
    assert ("warm", "open") in scenarios and ("warm", "fromfile+big") in scenarios
    assert all(len(r["runs"]) == 2 for r in doc["results"])
    assert "dwf.open" in proc.stdout and "np.fromfile" in proc.stdout
    assert all(len(line) <= 100 for line in doc["table"].splitlines())
    # the generated files are removed
    assert not any(p.suffix == ".weights" for p in tmp_path.rglob("*"))
    if HAS_PROC_IO:
        by = {(r["cache"], r["scenario"]): r["summary"] for r in doc["results"]}
        size = doc["file"]["file_bytes"]
        assert by["warm", "open"]["rchar_median"] < 64 * KIB + doc["file"]["cfg_bytes"]
        assert by["warm", "fromfile+big"]["rchar_median"] >= size - 20


# An original test network: ~64 MB of float32, one smallish layer (conv_2, 288 KiB of weights)
# and one big one (conv_6, 36 MiB).
LAYERS = [(32, 3, 1), (64, 3, 2), (128, 3, 2), (256, 3, 2), (512, 3, 2), (1024, 3, 2), (1024, 3, 1)]
LAYERS += [(256, 1, 1)]
SMALL, BIG = "conv_2", "conv_6"


def lazy_cfg() -> str:
    parts = ["[net]\nbatch=1\nwidth=416\nheight=416\nchannels=3\n"]
    for filters, size, stride in LAYERS:
        parts.append(
            "[convolutional]\nbatch_normalize=1\n"
            f"filters={filters}\nsize={size}\nstride={stride}\npad=1\nactivation=leaky\n"
        )
    return "\n".join(parts)


# Runs in a fresh process: counter growth during dwf.open, then using SMALL, then BIG.
PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import dwf

    def snap():
        with open("/proc/self/io") as fh:
            rchar = next(int(v) for k, v in (ln.split(":") for ln in fh) if k == "rchar")
        rss_file = None
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssFile:"):
                    rss_file = 1024 * int(line.split()[1])
        minflt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        return {"rchar": rchar, "minflt": minflt, "rss_file": rss_file}

    def grew(a, b, cost):
        return {k: None if a[k] is None else b[k] - a[k] - cost.get(k, 0) for k in a}

    weights, cfg, small, big = sys.argv[1:5]
    # The counters are the process's: Python reading dwf's own modules (source files where no
    # bytecode was cached, as in a fresh checkout or an install without .pyc files) counts too.
    # Every module opening needs is imported first, by opening the file once: then what the
    # measured open reads is the file's and the cfg's.
    dwf.open(weights, cfg).close()
    import dwf.io.guard  # loaded with the first view (the lease): before counting too
    c = snap()
    s0 = snap()
    cost = {"rchar": s0["rchar"] - c["rchar"]}  # what reading the counters adds to rchar
    f = dwf.open(weights, cfg)
    s1 = snap()
    small_sum = float(f[small].weights.sum())
    s2 = snap()
    big_sum = float(f[big].weights.sum())
    s3 = snap()
    print(json.dumps({
        "open": grew(s0, s1, cost),
        "small": grew(s1, s2, cost),
        "big": grew(s2, s3, cost),
        "small_sum": small_sum,
        "big_sum": big_sum,
    }))
    """
)


@pytest.mark.skipif(not HAS_PROC_IO, reason="needs /proc/self/io (Linux)")
def test_open_reads_only_header_and_cfg_and_layers_touch_their_pages(tmp_path: Path) -> None:
    cfg = tmp_path / "lazy.cfg"
    cfg.write_text(lazy_cfg(), encoding="utf-8")
    plan = dwf.plan(cfg)
    body = np.random.default_rng(1).standard_normal(plan.total_floats, dtype=np.float32)
    arrays = {
        f"{lp.name}.{a.name}": body[a.offset : a.stop].reshape(a.shape) for lp, a in plan.arrays()
    }
    weights = tmp_path / "lazy.weights"
    dwf.save(weights, plan, arrays)
    size = weights.stat().st_size
    file_pages = size // PAGE
    assert 60 * MIB < size < 68 * MIB and file_pages > 15_000
    small_bytes = 4 * plan.layer(SMALL).count
    big_bytes = 4 * plan.layer(BIG).count
    assert small_bytes < 300 * KIB and big_bytes > 30 * MIB

    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(weights), str(cfg), SMALL, BIG],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    opened, small, big = out["open"], out["small"], out["big"]

    # the values are the file's
    small_w, big_w = plan.layer(SMALL).array("weights"), plan.layer(BIG).array("weights")
    assert small_w is not None and big_w is not None
    expect_small = float(body[small_w.offset : small_w.stop].sum())
    expect_big = float(body[big_w.offset : big_w.stop].sum())
    assert out["small_sum"] == pytest.approx(expect_small, rel=1e-4, abs=1e-3)
    assert out["big_sum"] == pytest.approx(expect_big, rel=1e-3, abs=1e-1)

    # opening reads the cfg and the header through read syscalls, not the body (the modules
    # opening needs were imported before counting: these are the file's reads, ~1.3 KB here)
    assert opened["rchar"] < 8 * KIB + cfg.stat().st_size
    # ... and faults in far fewer pages than the file has
    assert opened["minflt"] < 2_000 < file_pages

    # using a layer reads nothing through syscalls: the values come from the map
    assert small["rchar"] < 4 * KIB and big["rchar"] < 4 * KIB
    # a small layer faults in about its pages, not the file's
    small_pages = -(-small_bytes // PAGE)
    assert small["minflt"] <= small_pages + 500 < file_pages // 10

    if opened["rss_file"] is not None:  # RssFile: file pages mapped into the process
        assert opened["rss_file"] < 1 * MIB  # opening maps no page of the body in
        # the small layer maps its pages and a few around them (fault-around, large folios)
        assert small["rss_file"] < small_bytes + 4 * MIB
        # the counter does see pages: using the big layer maps at least half of its bytes
        assert big["rss_file"] > big_bytes // 2


# What opening a file and reading a layer must not import: each is needed only by a rarer path
# (a size mismatch, identification, saving, name suggestions, reports), and importing it is
# most of what a fresh process spends before it can open a file (docs/benchmarks.md). attrs is
# not in the list: the records are attrs classes by design (a run-time dependency).
NOT_ON_THE_OPEN_PATH = (
    "json",
    "tempfile",
    "shutil",
    "difflib",
    "importlib.resources",
    "dwf.format.diagnosis",
    "dwf.format.known",
    "dwf.io.writer",
    "dwf.io.remote",  # URLs only: a local path never imports the remote backend
    "dwf.tools",
)


@pytest.mark.parametrize("cfg_beside", [True, False], ids=["cfg-found", "cfg-given"])
def test_opening_imports_only_what_opening_needs(tmp_path: Path, cfg_beside: bool) -> None:
    from dwf.tools.demo import write_demo

    cfg, weights = write_demo(tmp_path)
    opened = (
        f"dwf.open({str(weights)!r})"
        if cfg_beside
        else (f"dwf.open({str(weights)!r}, cfg={str(cfg)!r})")
    )
    code = textwrap.dedent(
        f"""
        import sys
        import numpy
        before = set(sys.modules)
        import dwf
        f = {opened}
        layer = f[f.keys()[0]]
        float(layer.weights.sum()), layer.out_shape, f.plan.total_floats
        print(" ".join(sorted(set(sys.modules) - before)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "dwf.io.reader" in loaded  # the probe did open the file
    pulled = sorted(
        m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_ON_THE_OPEN_PATH)
    )
    assert not pulled, f"opening a file imported {', '.join(pulled)}"
