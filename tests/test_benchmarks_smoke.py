"""The benchmarks' quick variants run and report what they measured (smoke tests: no timing is
asserted; the figures are in docs/benchmarks.md)."""

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
    assert doc["repeats"] >= 5
    # --quick plans a generated cfg and says so, instead of calling it yolov4.cfg
    plan_target = next(t for t in doc["targets"] if t["target"].startswith("plan "))
    assert "yolov4" not in plan_target["target"]
    assert doc["files"]["quick"]["cfg_source"] in plan_target["text"]
    methods = {row["method"] for row in doc["layer"]}
    assert any("dwf" in m for m in methods) and any("fromfile" in m for m in methods)
    assert doc["scan"] and all(row["gb_per_s"] > 0 for row in doc["scan"])
    assert {t["target"] for t in doc["targets"]}, "no targets evaluated"
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    # the table rows fit a 100-column terminal (the command/path lines may be longer)
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith(("warm ", "cold "))]
    assert rows and max(len(ln) for ln in rows) <= 100


def test_bench_startup_quick_compares_dwf_and_safetensors(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    out = tmp_path / "bench_startup.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_startup.py"),
            "--quick",
            "--dir",
            str(tmp_path),
            "--out",
            str(out),
            "--against",  # this same checkout: the interleaved before/after rows run
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    # every comparison has both sides, the same number of runs, min and median
    for section in ("fresh", "first", "many"):
        rows = doc[section]
        assert "dwf" in rows and any(k.startswith("safetensors") for k in rows), section
        assert {len(r["runs"]) for r in rows.values()} == {doc["repeats"]} and doc["repeats"] >= 5
        assert all(0 < r["min"] <= r["median"] for r in rows.values())
    assert "dwf@against" in doc["fresh"] and doc["against"] == str(ROOT)
    assert doc["imports_against"]["dwf+open path"]["min"] > 0
    assert 0 < doc["imports"]["attrs"]["min"] <= doc["imports"]["attrs"]["median"]
    assert {"dwf-reopen", "st-reopen", "dwf-kept", "st-kept"} <= set(doc["repeated"])
    # the planning row names the cfg it planned and its layer count
    assert doc["plan"]["layers"] > 0 and doc["plan"]["cfg"] in proc.stdout
    assert doc["file"]["label"] in proc.stdout
    names = {t["target"] for t in doc["targets"]}
    assert any("fresh process" in n for n in names) and any("10,000" in n for n in names)
    assert all(t["met"] in (True, False) for t in doc["targets"])
