"""The benchmark suite's quick variant runs (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the whole quick benchmark suite (~10 s)

ROOT = Path(__file__).resolve().parents[1]


def test_bench_suite_quick_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench_suite.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_suite.py"),
            "--quick",
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
    methods = {row["method"] for row in doc["layer"]}
    assert any("dwf" in m for m in methods) and any("fromfile" in m for m in methods)
    assert doc["scan"] and all(row["gb_per_s"] > 0 for row in doc["scan"])
    assert {t["target"] for t in doc["targets"]}, "no targets evaluated"
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    # the table rows fit a 100-column terminal (the command/path lines may be longer)
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith(("warm ", "cold "))]
    assert rows and max(len(ln) for ln in rows) <= 100
