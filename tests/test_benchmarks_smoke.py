"""The benchmarks' quick variants run and report what they measured (smoke tests: no timing is
asserted; the figures are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # runs the whole quick benchmark suite (~10 s)

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    """Run ``benchmarks/<script> --quick`` writing its JSON under ``tmp_path``: its document and
    what it printed."""
    out = tmp_path / (Path(script).stem + ".json")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--quick",
            *("--dir", str(tmp_path), "--out", str(out)),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc, proc.stdout


def test_bench_suite_quick_runs_and_writes_json(tmp_path: Path) -> None:
    doc, stdout = run_quick("bench_suite.py", tmp_path)
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
    rows = [ln for ln in stdout.splitlines() if ln.startswith(("warm ", "cold "))]
    assert rows and max(len(ln) for ln in rows) <= 100


def test_bench_startup_quick_compares_dwf_and_safetensors(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    # --against this same checkout: the interleaved before/after rows run
    doc, stdout = run_quick("bench_startup.py", tmp_path, "--against", str(ROOT))
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
    assert doc["plan"]["layers"] > 0 and doc["plan"]["cfg"] in stdout
    assert doc["file"]["label"] in stdout
    names = {t["target"] for t in doc["targets"]}
    assert any("fresh process" in n for n in names) and any("10,000" in n for n in names)
    assert all(t["met"] in (True, False) for t in doc["targets"])


def test_bench_memory_quick_runs_and_writes_json(tmp_path: Path) -> None:
    doc, _ = run_quick("bench_memory.py", tmp_path, "--repeats", "2")
    assert doc["quick"] is True
    commands = {row["what"] for row in doc["memory"]}
    for name in ("fuse", "npz", "safetensors", "cut", "stats", "check", "diff",
                 "import-weights (npz)", "import-weights (safetensors)"):
        assert any(name in c for c in commands), name
    assert doc["writers"]["times"]["import_npz_api"]["min"] > 0
    # every command ran to completion (exit 0 or 1 = findings) and was measured
    assert all(row["rc"] in (0, 1) and row["peak_rss_mib"] > 0 for row in doc["memory"]), doc
    assert doc["scan"]["check_ratio"] > 0 and doc["diff"]["ratio"] > 0
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    assert not list(tmp_path.glob("tmp*/*")), "the benchmark left files behind"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file leases are Linux's")
def test_bench_live_quick_measures_the_guard(tmp_path: Path) -> None:
    doc, stdout = run_quick("bench_live.py", tmp_path, "--repeats", "1")
    assert "first view" in doc["open"] and "open + view (per file)" in doc["open"]
    rows = {(r["held"], r["cold"]): r for r in doc["detach"]}
    assert set(rows) == {(h, c) for h in ("writer alone", "tiny", "big", "all") for c in (0, 1)}
    assert all(r["kept"] for r in doc["detach"])  # every held view kept its values
    everything = rows["all", False]["median"]
    assert everything["held_bytes"] > 16 * 2**20 and everything["swap_s"] > 0
    assert "views kept" in stdout


def test_bench_detect_quick_times_a_real_network(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("PIL")
    from conftest import shared_path

    shared_path("realweights", "yolo-fastest-1.1")
    doc, stdout = run_quick("bench_detect.py", tmp_path)
    (row,) = doc["rows"]
    assert row["decode"]["nodes"] > row["raw"]["nodes"] and row["call_ms"] > 0
    assert row["network"] in stdout
