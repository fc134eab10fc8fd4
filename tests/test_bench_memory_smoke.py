"""benchmarks/bench_memory.py --quick runs (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_memory_quick_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench_memory.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_memory.py"),
            "--quick",
            "--repeats",
            "2",
            "--dir",
            str(tmp_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["quick"] is True
    commands = {row["what"] for row in doc["memory"]}
    for name in ("fuse", "npz", "safetensors", "cut", "stats", "check", "diff"):
        assert any(name in c for c in commands), name
    # every command ran to completion (exit 0 or 1 = findings) and was measured
    assert all(row["rc"] in (0, 1) and row["peak_rss_mib"] > 0 for row in doc["memory"]), doc
    assert doc["scan"]["check_ratio"] > 0 and doc["diff"]["ratio"] > 0
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    assert not list(tmp_path.glob("tmp*/*")), "the benchmark left files behind"
