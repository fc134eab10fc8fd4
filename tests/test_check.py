"""Anomaly scan: ``dwf.tools.check.check`` (``f.check()``) and ``dwf check``.

A small net is written with known anomalies injected at known places; the scan must report each
one with the right kind, severity and count, and nothing else. Streaming is checked by scanning
with a tiny chunk (same result) and by measuring memory while scanning a ~200 MB file.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shared_path

import dwf
from dwf.interfaces.cli import main
from dwf.tools.check import CheckReport, Finding, check
from dwf.tools.demo import write_demo
from dwf.tools.stats import array_stats, zero_rows

CFG = """[net]
width=8
height=8
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=1
activation=leaky

[connected]
output=10
activation=linear
"""

Key = tuple[str, str, str]  # (layer name, array, kind)


def clean_arrays(plan: dwf.Plan, seed: int = 1) -> dict[str, np.ndarray[Any, Any]]:
    """Plausible values with no anomaly: no zeros, no denormals, nothing large."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for lp, a in plan.arrays():
        if a.name == "rolling_variance":
            v = rng.uniform(0.5, 1.5, a.shape)
        elif a.name == "scales":
            v = rng.uniform(0.8, 1.2, a.shape)
        else:
            v = rng.uniform(0.01, 0.5, a.shape) * rng.choice([-1.0, 1.0], a.shape)
        out[f"{lp.name}.{a.name}"] = v.astype(np.float32)
    return out


def inject(arrays: dict[str, np.ndarray[Any, Any]]) -> dict[Key, tuple[str, int]]:
    """Put anomalies into ``arrays``; return what the scan must find: key → (severity, count)."""
    w0 = arrays["conv_0.weights"]  # (16, 3, 3, 3)
    w0[1, 0, 0, :3] = np.nan
    w0[2, 1, 1, 0] = np.inf
    w0[2, 1, 1, 1] = -np.inf
    w0[3, 2, 2, 2] = np.inf
    w0[5] = 0.0  # one dead filter
    arrays["conv_0.scales"][[4, 9]] = 0.0
    var = arrays["conv_0.rolling_variance"]
    var[0], var[1] = -0.5, -2.0  # real negatives: NaN in Darknet
    var[2] = -1e-7  # small negative: finite after + 1e-5
    var[3], var[4] = -7e-44, -1.4e-45  # denormal rounding noise, as in real files
    var[5:8] = 0.0
    arrays["conv_1.biases"][[0, 7]] = [1e9, -2e9]
    arrays["conv_1.rolling_mean"][:4] = 1e-40  # positive denormals
    arrays["connected_2.weights"][3] = 0.0  # one dead output unit
    arrays["connected_2.biases"][9] = np.nan
    return {
        ("conv_0", "weights", "nan"): ("error", 3),
        ("conv_0", "weights", "inf"): ("error", 3),
        ("conv_0", "weights", "zero-filters"): ("warning", 1),
        ("conv_0", "scales", "dead-bn-channels"): ("warning", 2),
        ("conv_0", "rolling_variance", "negative-variance"): ("error", 2),
        ("conv_0", "rolling_variance", "small-negative-variance"): ("warning", 1),
        ("conv_0", "rolling_variance", "denormal-negative-variance"): ("info", 2),
        ("conv_0", "rolling_variance", "zero-variance"): ("info", 3),
        ("conv_0", "rolling_variance", "denormals"): ("info", 2),
        ("conv_1", "biases", "extreme"): ("warning", 2),
        ("conv_1", "rolling_mean", "denormals"): ("info", 4),
        ("connected_2", "weights", "zero-filters"): ("warning", 1),
        ("connected_2", "biases", "nan"): ("error", 1),
    }


def found(report: CheckReport) -> dict[Key, tuple[str, int]]:
    out: dict[Key, tuple[str, int]] = {}
    for x in report.findings:
        key = (x.layer, x.array, x.kind)
        assert key not in out, f"duplicate finding {key}"
        out[key] = (x.severity, x.count)
    return out


@pytest.fixture
def bad(tmp_path: Path) -> tuple[Path, Path, dict[Key, tuple[str, int]]]:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(CFG)
    plan = dwf.plan(cfg)
    arrays = clean_arrays(plan)
    expected = inject(arrays)
    weights = tmp_path / "bad.weights"
    dwf.save(weights, plan, arrays)
    return weights, cfg, expected


def test_clean_file_has_no_findings(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.cfg"
    cfg.write_text(CFG)
    plan = dwf.plan(cfg)
    dwf.save(tmp_path / "ok.weights", plan, clean_arrays(plan))
    with dwf.open(tmp_path / "ok.weights", cfg) as f:
        report = check(f)
    assert report.findings == ()
    assert not report.serious
    assert report.arrays == sum(len(lp.arrays) for lp in plan.layers) == 12
    assert report.floats == plan.total_floats


def test_injected_anomalies_are_found_with_counts_and_severities(
    bad: tuple[Path, Path, dict[Key, tuple[str, int]]],
) -> None:
    weights, cfg, expected = bad
    with dwf.open(weights, cfg) as f:
        report = check(f)
    assert found(report) == expected
    assert report.serious
    assert report.count("error") == 4 and report.count("warning") == 5
    assert report.count("info") == 4
    # file order: layer by layer, array by array as the plan lays them out
    plan = dwf.plan(cfg)
    position = {(lp.index, a.name): a.offset for lp, a in plan.arrays()}
    offsets = [position[(x.index, x.array)] for x in report.findings]
    assert offsets == sorted(offsets)
    by_key = {(x.layer, x.array, x.kind): x for x in report.findings}
    neg = by_key[("conv_0", "rolling_variance", "negative-variance")]
    assert (neg.index, neg.type) == (0, "convolutional")
    assert "NaN" in neg.message
    assert "-7e-44" in by_key[("conv_0", "rolling_variance", "denormal-negative-variance")].message
    assert "2e+09" in by_key[("conv_1", "biases", "extreme")].message
    assert "of 16 filters" in by_key[("conv_0", "weights", "zero-filters")].message
    assert "of 10 filters" in by_key[("connected_2", "weights", "zero-filters")].message
    text = report.explain()
    assert text.splitlines()[0].endswith("4 errors, 5 warnings, 4 notes")
    assert "  error   conv_0.rolling_variance: 2 batch-norm variances below -1e-05" in text


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_small_chunks_give_the_same_report(
    bad: tuple[Path, Path, dict[Key, tuple[str, int]]], chunk: int
) -> None:
    weights, cfg, _ = bad
    with dwf.open(weights, cfg) as f:
        assert check(f, chunk=chunk) == check(f)


def test_extreme_threshold_is_configurable(
    bad: tuple[Path, Path, dict[Key, tuple[str, int]]],
) -> None:
    weights, cfg, _ = bad
    with dwf.open(weights, cfg) as f:
        loose = found(check(f, extreme=1e10))
        tight = found(check(f, extreme=0.45))
    assert ("conv_1", "biases", "extreme") not in loose
    # uniform(0.01, 0.5) weights: some exceed 0.45 in every weights array
    assert tight[("conv_0", "weights", "extreme")][0] == "warning"
    assert tight[("conv_1", "biases", "extreme")][1] >= 2


def test_array_stats_streaming_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0, 2, 1001).astype(np.float32)
    a[[5, 500]] = np.nan
    a[7] = np.inf
    a[[8, 9]] = 0.0
    a[10] = -1e-42
    a[11] = 3e7
    finite = a[np.isfinite(a)].astype(np.float64)

    for chunk in (1, 7, 1000, 1 << 20):
        st = array_stats(a, chunk=chunk)
        assert (st.count, st.nan, st.inf, st.zeros, st.denormals, st.extreme) == (
            1001,
            2,
            1,
            2,
            1,
            1,
        )
        assert st.negatives == int(np.count_nonzero(finite < 0))
        assert st.min == finite.min() and st.max == finite.max() == pytest.approx(3e7)
        # float32 sums inside a chunk, float64 across chunks: ~1e-7 relative even with a 3e7
        # outlier among values of magnitude 2 (see dwf.tools.stats.array_stats)
        assert st.mean == pytest.approx(finite.mean(), rel=1e-6)
        assert st.std == pytest.approx(finite.std(), rel=1e-6)
    assert zero_rows(np.zeros((5, 3), np.float32), chunk=2) == 5
    assert zero_rows(np.eye(5, dtype=np.float32)[:, :3], chunk=1) == 2


def test_transposed_connected_weights_are_scanned_by_logical_rows(tmp_path: Path) -> None:
    # A legacy header (three floats instead of a version) stores connected weights transposed:
    # a dead output unit is a *column* of the stored matrix, a row of the logical view.
    cfg = tmp_path / "legacy.cfg"
    cfg.write_text("[net]\ninputs=6\n\n[connected]\noutput=5\nactivation=linear\n")
    plan = dwf.plan(cfg)
    arrays = clean_arrays(plan)
    arrays["connected_0.weights"][2] = 0.0
    arrays["connected_0.weights"][0, 0] = np.nan
    lr, momentum, decay = struct.unpack("<iii", struct.pack("<fff", 0.001, 0.9, 0.0005))
    header = dwf.Header(lr, momentum, decay, 0, 16)
    assert header.transpose
    dwf.save(tmp_path / "legacy.weights", plan, arrays, header=header)
    with dwf.open(tmp_path / "legacy.weights", cfg) as f:
        view = f["connected_0"].weights
        assert view is not None and not view.flags.c_contiguous
        report = check(f)
        assert check(f, chunk=1) == check(f, chunk=4) == report
    assert found(report) == {
        ("connected_0", "weights", "zero-filters"): ("warning", 1),
        ("connected_0", "weights", "nan"): ("error", 1),
    }


def test_partial_file_scans_the_layers_it_holds(
    tmp_path: Path, bad: tuple[Path, Path, dict[Key, tuple[str, int]]]
) -> None:
    weights, cfg, expected = bad
    with dwf.open(weights, cfg) as f:
        f.save(tmp_path / "bad.conv.1", upto=1)
    with dwf.open(tmp_path / "bad.conv.1", cfg) as p:
        assert p.partial
        report = check(p)
    assert report.arrays == 5
    assert found(report) == {k: v for k, v in expected.items() if k[0] == "conv_0"}


def test_mismatched_file_report_carries_a_caution(
    tmp_path: Path, bad: tuple[Path, Path, dict[Key, tuple[str, int]]]
) -> None:
    weights, cfg, _ = bad
    cut = tmp_path / "cut.weights"
    cut.write_bytes(weights.read_bytes()[:-8])
    with dwf.open(cut, cfg, strict=False) as f:
        report = check(f)
    assert report.mismatch == f.mismatch
    assert "caution: the file does not fit its cfg" in report.explain()
    with dwf.open(weights, cfg) as g:
        assert check(g).mismatch is None
        assert "caution" not in check(g).explain()


# -- command line ----------------------------------------------------------------------------


def test_cli_check_exit_codes_and_json(
    tmp_path: Path,
    bad: tuple[Path, Path, dict[Key, tuple[str, int]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights, cfg, expected = bad
    assert main(["check", str(weights), "--cfg", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "4 errors" in out and "conv_0.weights: 3 NaN values" in out
    assert main(["check", str(weights), "--cfg", str(cfg), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["serious"] is True and data["path"] == str(weights)
    got = {
        (x["layer"], x["array"], x["kind"]): (x["severity"], x["count"]) for x in data["findings"]
    }
    assert got == expected
    assert set(data["findings"][0]) == {f.name for f in Finding.__attrs_attrs__}

    demo_cfg, demo_weights = write_demo(tmp_path / "demo")
    assert main(["check", demo_weights, "--cfg", demo_cfg]) == 0
    assert "0 errors" in capsys.readouterr().out
    assert main(["check", demo_weights, "--json"]) == 0  # finds demo.cfg beside it
    data = json.loads(capsys.readouterr().out)
    assert data["serious"] is False
    assert all(x["severity"] != "error" for x in data["findings"])


def test_cli_check_warnings_only_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "w.cfg"
    cfg.write_text(CFG)
    plan = dwf.plan(cfg)
    arrays = clean_arrays(plan)
    arrays["conv_1.weights"][0] = 0.0
    arrays["conv_0.rolling_variance"][0] = -1e-7
    dwf.save(tmp_path / "w.weights", plan, arrays)
    assert main(["check", str(tmp_path / "w.weights"), "--cfg", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "0 errors, 2 warnings" in out


# -- real files ------------------------------------------------------------------------------

REAL = [
    ("darknet-reference-tiny", "tiny.weights", "tiny.cfg"),
    ("number-lenet", "number_lenet.weights", "number_lenet.cfg"),
    ("yolo-fastest-1.1", "yolo-fastest-1.1.weights", "yolo-fastest-1.1.cfg"),
    ("yolo-fastest-xl-1.0", "yolo-fastest-xl.weights", "yolo-fastest-xl.cfg"),
    ("mnv2-yolov3-nano-voc", "MobileNetV2-YOLOv3-Nano-voc.weights", None),
    ("yoloface-500k-SE", "yoloface-500k-SE.weights", None),
    ("yoloface-50k", "yoloface-50k.weights", None),
    ("yolo-lite-trial3", "tiny-yolov2-trial3.weights", None),
    ("yolo-lite-trial3-noBatch", "tiny-yolov2-trial3-noBatch.weights", None),
    ("yolo-lite-trial8", "tiny-yolov2-trial8.weights", None),
    ("lebhoryi-yolo-fastest-conv109", "yolo-fastest.conv.109", "yolo-fastest.cfg"),
    ("lebhoryi-yolo-v2-tiny-last", "yolo_v2_tiny_last.weights", "yolo_v2_tiny.cfg"),
    ("pjreddie-pr1012-cifar-small", "cifar_small.backup", "cifar_small.cfg"),
    ("sonhm-yolo-fastest-custom-origin", "origin.weights", "origin.cfg"),
    ("lebhoryi-yolo-s-relu", "yolo-s_with_relu_last.weights", "yolo-s_with_relu.cfg"),
    ("firedet-yolov4-tiny-conv29-truncated", "yolov4-tiny.conv.29", "yolov4-tiny.cfg"),
]


@pytest.mark.parametrize(("folder", "weights", "cfg"), REAL, ids=[r[0] for r in REAL])
def test_real_files_have_no_errors(
    tmp_path: Path, folder: str, weights: str, cfg: str | None
) -> None:
    d = shared_path("realweights", folder)
    cfg_path = d / (cfg or Path(weights).with_suffix(".cfg").name)
    kw: dict[str, Any] = {}
    if folder == "yolo-lite-trial8":
        # INDEX.md: saved without batch_normalize; read it with the cfg that fits, not garbage.
        fixed = tmp_path / "trial8-nobn.cfg"
        fixed.write_text(cfg_path.read_text().replace("batch_normalize=1", "batch_normalize=0"))
        cfg_path = fixed
    if folder.endswith("-truncated"):
        kw["strict"] = False  # the layers before the cut are read at the right offsets
    with dwf.open(d / weights, cfg_path, **kw) as f:
        report = check(f)
        assert report.arrays > 0
    errors = [x for x in report.findings if x.severity == "error"]
    assert not errors, report.explain()
    for x in report.findings:
        if x.kind in ("denormals", "denormal-negative-variance", "zero-variance"):
            assert x.severity == "info", x


def test_real_denormals_are_info() -> None:
    d = shared_path("realweights", "mnv2-yolov3-nano-voc")
    with dwf.open(d / "MobileNetV2-YOLOv3-Nano-voc.weights") as f:
        report = check(f)
    assert found(report) == {
        ("conv_1", "rolling_mean", "denormals"): ("info", 3),
        ("conv_1", "rolling_variance", "denormals"): ("info", 3),
    }
    assert not report.serious


# -- bounded memory --------------------------------------------------------------------------

MEMORY_PROBE = textwrap.dedent(
    """
    import gc, json, sys, tracemalloc
    import numpy as np
    import dwf
    from dwf.tools.check import check

    f = dwf.open(sys.argv[1], sys.argv[2])
    gc.collect()
    tracemalloc.start()  # numpy reports its buffers to tracemalloc: what the scan allocates
    report = check(f)
    _, check_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    copy = np.array(f[0].weights)  # control: a whole-array copy must show up in the measure
    _, copy_peak = tracemalloc.get_traced_memory()
    print(json.dumps({
        "check_growth_kb": check_peak // 1024,
        "copy_growth_kb": copy_peak // 1024,
        "kinds": sorted({x.kind for x in report.findings}),
        "floats": report.floats,
    }))
    """
)


def test_scan_memory_is_bounded(tmp_path: Path) -> None:
    """Scanning a ~205 MB file allocates far less than the file.

    The measure: the peak of what Python and numpy allocate during the scan (tracemalloc; numpy
    reports its buffers to it), in a fresh process. Not the process's RSS: the page cache's
    pages of a map count there and may be reclaimed under memory pressure (a busy machine made
    an RSS-based measure of this test report 105 MB of "growth"). A whole-array copy afterwards
    must show up as ≥ 150 MB, proving the measure can fail.
    """
    cfg = tmp_path / "big.cfg"
    cfg.write_text("[net]\ninputs=7168\n\n[connected]\nbatch_normalize=1\noutput=7168\n")
    plan = dwf.plan(cfg)
    weights = tmp_path / "big.weights"
    with open(weights, "wb") as fh:  # sparse: header, then a hole of zeros
        fh.write(dwf.Header().encode())
        fh.truncate(plan.expected_size(20))
    size_mb = weights.stat().st_size / 2**20
    assert size_mb > 190
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(weights), str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["floats"] == plan.total_floats
    assert "zero-filters" in m["kinds"]  # the scan really read the (all-zero) data
    assert m["copy_growth_kb"] > 150 * 1024, m
    assert m["check_growth_kb"] < 64 * 1024, m
