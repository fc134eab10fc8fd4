"""The command line end to end: every subcommand, its exit codes, ``--json`` and its errors.

Each subcommand runs at least once as a real process (``python -m dwf …``): exit codes, the
``--json`` document parsed and its keys checked against the schema documented in docs/cli.md,
errors printed as one ``dwf: error:`` message without a traceback. The many small variants run
in-process through :func:`dwf.interfaces.cli.main`, which is what the ``dwf`` script calls.

Inputs are the demo model, checkpoints made from it, and every real file in
``../shared/realweights/`` (skipped without ``../shared``). ``../shared`` has no two checkpoints
of one training run, so one is made from a real file: a second checkpoint with a few layers
changed (and a later ``seen``, also written with a 16-byte header), a third one after it, and a
partial file cut from it; ``dwf diff`` must name exactly the changed layers.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from conftest import SHARED, shared_path

import dwf
import dwf.interfaces.cli
from dwf.interfaces.cli import main, render
from dwf.tools.demo import write_demo

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
REAL = SHARED / "realweights"
SUBCOMMANDS = [
    "info",
    "graph",
    "stats",
    "diff",
    "check",
    "identify",
    "cut",
    "export",
    "import-weights",
    "fuse",
    "demo",
    "watch",
    "detect",
]

# -- the --json schemas (docs/cli.md documents every key) -----------------------------------------
INFO_KEYS = {
    "total_params",
    "total_trainable",
    "total_bflops",
    "total_output_bytes",
    "path",
    "cfg",
    "dialect",
    "header",
    "size",
    "expected_size",
    "total_floats",
    "complete",
    "partial",
    "last_layer",
    "mismatch",
    "warnings",
    "layers",
}
HEADER_KEYS = {"major", "minor", "revision", "version", "seen", "size", "note"}
HEADER_KEYS |= {"connected_transposed"}
LAYER_KEYS = {"index", "name", "type", "out_shape", "outputs", "span", "in_file", "arrays"}
LAYER_KEYS |= {"n_params", "n_trainable", "bflops", "output_bytes", "receptive_field", "stride"}
LAYER_ARRAY_KEYS = {"name", "shape", "count", "span"}
STATS_KEYS = {"path", "arrays", "mismatch"}
STATS_ARRAY_KEYS = {"index", "layer", "type", "array", "shape", "count", "min", "max", "mean"}
STATS_ARRAY_KEYS |= {"std", "absmax", "zero_fraction", "nan", "inf", "denormals", "zeros"}
STATS_ARRAY_KEYS |= {"negatives", "extreme"}
DIFF_KEYS = {"a", "b", "seen_a", "seen_b", "identical", "only_a", "only_b", "shape_mismatch"}
DIFF_KEYS |= {"arrays", "warnings"}
DIFF_ARRAY_KEYS = {"index", "layer", "type", "array", "count", "identical", "max_abs", "rel_l2"}
DIFF_ARRAY_KEYS |= {"cosine"}
CHECK_KEYS = {"path", "arrays", "floats", "serious", "mismatch", "findings", "cfg_warnings"}
FINDING_KEYS = {"index", "layer", "type", "array", "kind", "severity", "count", "message"}
FINDING_KEYS |= {"indices"}
IDENTIFY_KEYS = {
    "path", "size", "floats", "problem", "header", "header_size", "matches", "near", "fits"
}
IDENTIFY_HEADER_KEYS = HEADER_KEYS
MATCH_KEYS = {
    "name", "kind", "dialects", "floats", "header_size", "cfg", "upto", "classes", "cfg_classes",
    "batch_normalize", "variant", "input_size_free",
}


# -- helpers ------------------------------------------------------------------------------------
def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m dwf ARGS`` as a real process, standard output and error piped."""
    return _run([sys.executable, "-m", "dwf", *map(str, args)], cwd)


def _run(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@attrs.frozen
class Result:
    code: int
    out: str
    err: str


def call(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Result:
    """Run the command line in-process; argparse usage errors give their exit code too."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return Result(code, out, err)


def strict_json(text: str) -> Any:
    """Parse JSON that must be standard: NaN and Infinity are not JSON."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in --json output")

    return json.loads(text, parse_constant=refuse)


def assert_error(err: str, out: str, *, says: str, as_json: bool = False) -> None:
    """One ``dwf: error:`` message on standard error, no traceback; nothing on standard output,
    or with ``--json`` (``as_json``) only ``{"error": <the same message>}``."""
    assert err.startswith("dwf: error: "), err
    assert err.count("dwf: error:") == 1, err
    assert "Traceback" not in err, err
    assert says in err, err
    if as_json:
        assert strict_json(out) == {"error": err.removeprefix("dwf: error: ").rstrip("\n")}
    else:
        assert out == ""


def assert_usage_error(err: str) -> None:
    assert "usage: dwf" in err and "error:" in err, err
    assert "Traceback" not in err, err


def table_lines(out: str) -> list[str]:
    """The lines of a table: from its header row (starting with ``#`` or ``layer``) on."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*(#|layer)\s+\S", line):
            return [ln for ln in lines[i:] if not ln.startswith("warning:")]
    raise AssertionError(f"no table in\n{out}")


def changed(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """``(layer, array)`` of the arrays a ``diff --json`` document reports as changed."""
    return {(d["layer"], d["array"]) for d in doc["arrays"] if not d["identical"]}


# -- fixtures -----------------------------------------------------------------------------------
@attrs.frozen
class Demo:
    folder: Path
    cfg: Path
    weights: Path
    later: Path  # conv_4.weights moved by 1 %, seen 128,000
    damaged: Path  # a NaN and a dead filter in conv_4, a negative variance in conv_2


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("demo")
    cfg, weights = (Path(p) for p in write_demo(folder))
    with dwf.open(weights) as f:
        w = np.array(f["conv_4"].weights)
        f.save(
            folder / "demo_2000.weights",
            replace={"conv_4.weights": w * 1.01},
            header=dwf.Header(seen=128_000),
        )
        bad = w.copy()
        bad[3] = 0.0
        bad[0, 0, 0, 0] = np.nan
        var = np.array(f["conv_2"].rolling_variance)
        var[5] = -1.0
        f.save(
            folder / "damaged.weights",
            replace={"conv_4.weights": bad, "conv_2.rolling_variance": var},
        )
    return Demo(folder, cfg, weights, folder / "demo_2000.weights", folder / "damaged.weights")


@attrs.frozen
class RealFile:
    folder: str
    weights: Path
    cfg: Path
    verdict: str  # "complete", "partial" or "mismatch", from INDEX.md

    @property
    def ok(self) -> bool:
        return self.verdict != "mismatch"


def _real_files() -> list[Any]:
    index = REAL / "INDEX.md"
    if not index.is_file():
        return [pytest.param(None, id="realweights-absent")]
    params = []
    for line in index.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        folder, weights, verdict = cells[0], cells[1], cells[-1]
        kind = "complete" if verdict.startswith("matches exactly") else "mismatch"
        if verdict.startswith("partial"):
            kind = "partial"
        (cfg,) = sorted((REAL / folder).glob("*.cfg"))
        params.append(pytest.param(RealFile(folder, REAL / folder / weights, cfg, kind), id=folder))
    return params


@pytest.fixture(params=_real_files())
def real(request: pytest.FixtureRequest) -> RealFile:
    if request.param is None:
        shared_path("realweights")  # skips, or fails in CI
    assert isinstance(request.param, RealFile)
    return request.param


# -- help, version, usage -----------------------------------------------------------------------
def test_help_and_version_as_a_process(tmp_path: Path) -> None:
    r = run("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s", r.stdout, re.M), f"dwf --help does not list {name}"
    r = run("--version", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, f"dwf {dwf.__version__}")


def test_every_subcommand_is_known() -> None:
    parser = dwf.interfaces.cli.build_parser()
    subs = next(a.choices for a in parser._actions if isinstance(a.choices, dict))
    assert set(subs) == {*SUBCOMMANDS, "import"}  # the 0.1 name of import-weights stays


def test_a_command_imports_only_its_own_tools(demo: Demo, tmp_path: Path) -> None:
    # `dwf cut` in a fresh process: the other commands' tools (the identify table, the
    # exporters, diff, check) are not imported; `dwf --help` still lists every command.
    code = (
        "import sys; from dwf.interfaces.cli import main;"
        f" rc = main(['cut', {str(demo.weights)!r}, {str(tmp_path / 'cut.weights')!r}, '2']);"
        " print(rc, sorted(m for m in sys.modules if m.startswith('dwf.')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rc, _, loaded = r.stdout.strip().splitlines()[-1].partition(" ")
    assert rc == "0", r.stdout + r.stderr
    assert "'dwf.tools.cut'" in loaded
    for other in ("dwf.tools.identify", "dwf.format.known", "dwf.tools.export", "dwf.tools.diff",
                  "dwf.tools.check", "dwf.interfaces.cli.identify", "dwf.interfaces.cli.info"):
        assert f"'{other}'" not in loaded, other


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_of_each_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, name, "--help")
    assert r.code == 0
    assert r.out.startswith(f"usage: dwf {name}")
    parser = dwf.interfaces.cli.build_parser()
    subs = next(a.choices for a in parser._actions if isinstance(a.choices, dict))
    for action in subs[name]._actions:
        for opt in action.option_strings:
            assert opt in r.out, f"dwf {name} --help does not show {opt}"
    assert "--debug" in r.out  # also accepted after the subcommand


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["info"],
        ["info", "x.weights", "--header-size", "17"],
        ["diff"],
        ["export", "x.weights", "out.npz", "--format", "pickle"],
        ["cut", "x.weights", "out", "many"],
        ["check", "x.weights", "--extreme", "big"],
    ],
    ids=lambda a: " ".join(a) or "nothing",
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, *argv)
    assert r.code == 2
    assert_usage_error(r.err)


def test_usage_error_as_a_process(tmp_path: Path) -> None:
    r = run("info", cwd=tmp_path)
    assert r.returncode == 2
    assert_usage_error(r.stderr)
    assert r.stdout == ""


# -- info ---------------------------------------------------------------------------------------
def test_info_as_a_process(demo: Demo) -> None:
    r = run("info", "demo.weights", cwd=demo.folder)
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert lines[0] == "demo.weights  (cfg demo.cfg, dialect alexeyab)"
    assert lines[1] == "header: version 0.2.5, seen 64,000 (20-byte header, 64-bit seen)"
    assert "(complete)" in lines[2]
    rows = table_lines(r.stdout)[1:]
    assert len(rows) == 22  # one row per layer, parameter-free ones included
    assert rows[10].split()[:3] == ["10", "conv_10", "convolutional"]
    assert all(len(line) <= 100 for line in lines)


def test_info_json_as_a_process(demo: Demo) -> None:
    r = run("info", demo.weights, "--json", cwd=demo.folder)
    assert (r.returncode, r.stderr) == (0, "")
    doc = strict_json(r.stdout)
    assert set(doc) == INFO_KEYS
    assert set(doc["header"]) == HEADER_KEYS
    assert {k for layer in doc["layers"] for k in layer} == LAYER_KEYS
    arrays = [a for layer in doc["layers"] for a in layer["arrays"]]
    assert {k for a in arrays for k in a} == LAYER_ARRAY_KEYS
    assert doc["size"] == doc["expected_size"] == demo.weights.stat().st_size
    assert doc["complete"] and not doc["partial"] and doc["mismatch"] is None
    assert doc["total_floats"] == sum(a["count"] for a in arrays) == 27_202
    assert doc["header"]["seen"] == 64_000 and doc["header"]["size"] == 20
    with dwf.open(demo.weights) as f:
        for layer in doc["layers"]:
            lp = f.plan[layer["index"]]
            assert (layer["name"], tuple(layer["span"])) == (lp.name, lp.byte_span(20))
            for a, spec in zip(layer["arrays"], lp.arrays, strict=True):
                assert (a["name"], tuple(a["shape"])) == (spec.name, spec.shape)


def test_info_filters(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "info", demo.weights, "--layers", "10-13,2")
    assert [ln.split()[0] for ln in table_lines(r.out)[1:]] == ["2", "10", "11", "12", "13"]
    r = call(capsys, "info", demo.weights, "--type", "conv")
    assert {ln.split()[2] for ln in table_lines(r.out)[1:]} == {"convolutional"}
    r = call(capsys, "info", demo.weights, "--type", "route", "--json")
    assert [x["name"] for x in strict_json(r.out)["layers"]] == [
        "route_5",
        "route_7",
        "route_15",
        "route_18",
    ]
    r = call(capsys, "info", demo.weights, "--type", "lstm")
    assert table_lines(r.out)[1:] == []


def test_info_of_a_partial_file(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    part = demo.folder / "demo.conv.9"
    assert call(capsys, "cut", demo.weights, part, "9").code == 0
    r = call(capsys, "info", part)
    assert r.code == 0
    assert "partial file: holds layers 0..9 of 22" in r.out
    missing = [ln.split()[1] for ln in table_lines(r.out)[1:] if "(missing)" in ln]
    assert missing == ["conv_10", "conv_11", "conv_13", "conv_16", "conv_19", "conv_20"]
    doc = strict_json(call(capsys, "info", part, "--json").out)
    assert doc["partial"] and not doc["complete"] and doc["last_layer"] == 9
    assert [x["in_file"] for x in doc["layers"]][9:11] == [True, False]


def test_info_lenient_and_header_size(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    short = demo.folder / "short.weights"
    short.write_bytes(demo.weights.read_bytes()[:-100])
    r = call(capsys, "info", short, "--cfg", demo.cfg)
    assert_error(r.err, r.out, says="needs 108,828 bytes")
    assert "likely cause" in r.err
    r = call(capsys, "info", short, "--cfg", demo.cfg, "--lenient")
    assert r.code == 0 and "SIZE MISMATCH" in r.out
    doc = strict_json(call(capsys, "info", short, "--cfg", demo.cfg, "--lenient", "--json").out)
    assert doc["mismatch"] and "bytes" in doc["mismatch"] and not doc["complete"]
    # forcing the other header width makes the size fit nothing: an error, not a crash
    r = call(capsys, "info", demo.weights, "--header-size", "16")
    assert_error(r.err, r.out, says="16-byte header")


# -- stats --------------------------------------------------------------------------------------
def test_stats_json_as_a_process(demo: Demo) -> None:
    r = run("stats", demo.weights, "--json", cwd=demo.folder)
    assert (r.returncode, r.stderr) == (0, "")
    doc = strict_json(r.stdout)
    assert set(doc) == STATS_KEYS
    assert len(doc["arrays"]) == 49
    assert {k for a in doc["arrays"] for k in a} == STATS_ARRAY_KEYS
    first = doc["arrays"][0]
    with dwf.open(demo.weights) as f:
        view = np.asarray(f["conv_0"].biases, dtype=np.float64)
    assert (first["layer"], first["array"], first["count"]) == ("conv_0", "biases", 8)
    assert first["min"] == pytest.approx(view.min()) and first["max"] == pytest.approx(view.max())
    assert first["mean"] == pytest.approx(view.mean()) and first["std"] == pytest.approx(view.std())
    assert first["absmax"] == pytest.approx(np.abs(view).max())


def test_stats_table_and_filters(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "stats", demo.weights, "--layers", "13")
    assert r.code == 0
    assert r.out.splitlines()[0].endswith(": 2 arrays")
    header, *rows = table_lines(r.out)
    assert header.split() == [
        "layer",
        "array",
        "min",
        "max",
        "mean",
        "std",
        "absmax",
        "zeros",
        "nan",
        "inf",
    ]
    assert [row.split()[:2] for row in rows] == [["conv_13", "biases"], ["conv_13", "weights"]]
    r = call(capsys, "stats", demo.damaged, "--cfg", demo.cfg, "--type", "convolutional")
    row = next(ln for ln in r.out.splitlines() if ln.startswith("conv_4 ") and "weights" in ln)
    assert row.split()[-2:] == ["1", "0"]  # one NaN, no Inf
    doc = strict_json(call(capsys, "stats", demo.damaged, "--cfg", demo.cfg, "--json").out)
    (w4,) = [a for a in doc["arrays"] if (a["layer"], a["array"]) == ("conv_4", "weights")]
    assert w4["nan"] == 1 and w4["zero_fraction"] == pytest.approx(144 / 4608)


def test_stats_of_a_partial_file_reads_what_it_holds(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    part = demo.folder / "stats.conv.5"
    assert call(capsys, "cut", demo.weights, part, "5").code == 0
    doc = strict_json(call(capsys, "stats", part, "--cfg", demo.cfg, "--json").out)
    assert {a["layer"] for a in doc["arrays"]} == {"conv_0", "conv_2", "conv_4"}


# -- diff ---------------------------------------------------------------------------------------
def test_diff_json_exit_code_as_a_process(demo: Demo) -> None:
    r = run("diff", demo.weights, demo.later, "--json", "--exit-code", cwd=demo.folder)
    assert (r.returncode, r.stderr) == (1, "")
    doc = strict_json(r.stdout)
    assert set(doc) == DIFF_KEYS
    assert {k for a in doc["arrays"] for k in a} == DIFF_ARRAY_KEYS
    assert changed(doc) == {("conv_4", "weights")}
    assert (doc["seen_a"], doc["seen_b"], doc["identical"]) == (64_000, 128_000, False)
    (d,) = [a for a in doc["arrays"] if not a["identical"]]
    assert d["rel_l2"] == pytest.approx(0.01, rel=1e-3)
    assert d["cosine"] == pytest.approx(1.0) and d["cosine"] <= 1.0  # never past 1 by rounding
    assert all(a["max_abs"] == 0 for a in doc["arrays"] if a["identical"])


def test_diff_text(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "diff", demo.weights, demo.later)
    assert r.code == 0  # differences are findings only with --exit-code
    assert "seen: 64,000 → 128,000 (+64,000)" in r.out
    assert "49 arrays compared: 1 changed, 48 identical" in r.out
    header, *rows = table_lines(r.out)
    assert header.split()[:2] == ["layer", "array"]
    assert [row.split()[:2] for row in rows] == [["conv_4", "weights"]]
    r = call(capsys, "diff", demo.weights, demo.later, "--all")
    assert len(table_lines(r.out)) == 1 + 49
    r = call(capsys, "diff", demo.later, demo.weights)
    assert "seen: 128,000 → 64,000 (-64,000)" in r.out


def test_diff_of_a_file_and_itself(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "diff", demo.weights, demo.weights, "--exit-code")
    assert r.code == 0
    assert "identical everywhere" in r.out
    doc = strict_json(call(capsys, "diff", demo.weights, demo.weights, "--json").out)
    assert doc["identical"] and not changed(doc) and len(doc["arrays"]) == 49
    assert all(a["max_abs"] == 0 and a["rel_l2"] == 0 for a in doc["arrays"])
    assert all(a["cosine"] == pytest.approx(1.0) for a in doc["arrays"])


def test_diff_with_nan_gives_valid_json(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "diff", demo.weights, demo.damaged, "--cfg", demo.cfg, "--json")
    doc = strict_json(r.out)
    assert changed(doc) == {("conv_4", "weights"), ("conv_2", "rolling_variance")}


# -- check, identify ----------------------------------------------------------------------------
def test_check_json_as_a_process(demo: Demo) -> None:
    r = run("check", demo.damaged, "--cfg", demo.cfg, "--json", cwd=demo.folder)
    assert (r.returncode, r.stderr) == (1, "")  # errors found
    doc = strict_json(r.stdout)
    assert set(doc) == CHECK_KEYS
    assert {k for x in doc["findings"] for k in x} == FINDING_KEYS
    assert doc["serious"] and doc["arrays"] == 49 and doc["floats"] == 27_202
    kinds = {(x["layer"], x["array"], x["kind"], x["severity"]) for x in doc["findings"]}
    assert kinds == {
        ("conv_4", "weights", "nan", "error"),
        ("conv_4", "weights", "zero-filters", "warning"),
        ("conv_2", "rolling_variance", "negative-variance", "error"),
    }


def test_check_text_and_exit_codes(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "check", demo.weights)
    assert (r.code, r.out.strip()) == (
        0,
        f"{demo.weights}: scanned 49 arrays, 27,202 floats: 0 errors, 0 warnings, 0 notes",
    )
    r = call(capsys, "check", demo.damaged, "--cfg", demo.cfg)
    assert r.code == 1 and "2 errors, 1 warning," in r.out
    # --extreme: a warning, not an error: exit 0
    r = call(capsys, "check", demo.weights, "--extreme", "0.5", "--json")
    doc = strict_json(r.out)
    assert r.code == 0 and not doc["serious"]
    assert {x["kind"] for x in doc["findings"]} == {"extreme"}


def test_identify_json_as_a_process(demo: Demo) -> None:
    r = run("identify", demo.weights, "--json", cwd=demo.folder)
    assert (r.returncode, r.stderr) == (0, "")  # no known network, but demo.cfg beside it fits
    doc = strict_json(r.stdout)
    assert set(doc) == IDENTIFY_KEYS
    assert set(doc["header"]) == IDENTIFY_HEADER_KEYS
    assert (doc["floats"], doc["matches"], doc["problem"]) == (27_202, [], None)
    assert [(f["cfg"], f["how"]) for f in doc["fits"]] == [("demo.cfg", "exact")]


def test_identify_a_known_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mystery = tmp_path / "mystery.weights"
    with mystery.open("wb") as out:
        out.write(dwf.Header(seen=5).encode())
        out.truncate(20 + 4 * 8_858_734)  # YOLOv3-tiny's float count, sparse zeros
    r = call(capsys, "identify", mystery, "--json")
    assert r.code == 0
    doc = strict_json(r.out)
    assert {k for m in doc["matches"] for k in m} == MATCH_KEYS
    assert "yolov3-tiny.cfg" in [m["name"] for m in doc["matches"]]
    text = tmp_path / "notes.weights"
    text.write_text("hello, this is text\n" * 10)
    r = call(capsys, "identify", text, "--json")
    doc = strict_json(r.out)
    assert r.code == 1 and doc["problem"] and doc["header"] is None


# -- cut, export, import, fuse, demo ------------------------------------------------------------
def test_cut_as_a_process(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "demo.conv.5"
    r = run("cut", demo.weights, out, "5", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"wrote {out}: layers 0..4")
    with dwf.open(out, cfg=demo.cfg) as part, dwf.open(demo.weights) as full:
        assert (
            part.partial and part.header.seen == 0 and part.keys() == ["conv_0", "conv_2", "conv_4"]
        )
        np.testing.assert_array_equal(part["conv_2"].weights, full["conv_2"].weights)


def test_export_and_import_as_processes(demo: Demo, tmp_path: Path) -> None:
    npz = tmp_path / "demo.npz"
    r = run("export", demo.weights, npz, "--format", "npz", "--compress", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"wrote {npz} (npz, ")
    with np.load(npz) as z, dwf.open(demo.weights) as f:
        np.testing.assert_array_equal(z["conv_19.weights"], f["conv_19"].weights)
    back = tmp_path / "back.weights"
    r = run("import-weights", npz, back, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert back.read_bytes() == demo.weights.read_bytes()


def test_export_safetensors(demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("safetensors")
    out = tmp_path / "demo.safetensors"
    assert call(capsys, "export", demo.weights, out, "--format", "safetensors").code == 0
    back = tmp_path / "back.weights"
    assert call(capsys, "import", out, back, "--seen", "7").code == 0
    with dwf.open(back, cfg=demo.cfg) as g, dwf.open(demo.weights) as f:
        assert g.header.seen == 7
        np.testing.assert_array_equal(g["conv_20"].weights, f["conv_20"].weights)


def test_export_format_from_the_extension(
    demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.npz"
    r = call(capsys, "export", demo.weights, out)  # no --format: .npz says npz
    assert (r.code, r.err) == (0, "")
    assert r.out.startswith(f"wrote {out} (npz, ")
    with np.load(out) as z, dwf.open(demo.weights) as f:
        np.testing.assert_array_equal(z["conv_13.weights"], f["conv_13"].weights)


def test_export_refuses_a_format_the_extension_contradicts(
    demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.safetensors"
    r = call(capsys, "export", demo.weights, out, "--format", "npz")
    assert r.code == 2
    assert len(r.err.splitlines()) == 1
    assert_error(r.err, r.out, says="the extension .safetensors says safetensors")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file
    r = call(capsys, "export", demo.weights, tmp_path / "out.bin")  # no format to be had
    assert_error(r.err, r.out, says="cannot tell the export format")
    assert list(tmp_path.iterdir()) == []


def test_import_weights_and_its_old_name(
    demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    npz = tmp_path / "demo.npz"
    assert call(capsys, "export", demo.weights, npz).code == 0
    for name in ("import-weights", "import"):
        back = tmp_path / f"{name}.weights"
        r = call(capsys, name, npz, back)
        assert (r.code, r.err) == (0, "")
        assert back.read_bytes() == demo.weights.read_bytes()


def test_fuse_as_a_process(demo: Demo, tmp_path: Path) -> None:
    out, cfg_out = tmp_path / "fused.weights", tmp_path / "fused.cfg"
    r = run("fuse", demo.weights, out, cfg_out, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    with dwf.open(out, cfg=cfg_out) as g, dwf.open(demo.weights) as f:
        assert g["conv_0"].keys() == ["biases", "weights"]
        weights, biases = f["conv_0"].fused()
        np.testing.assert_allclose(g["conv_0"].weights, weights, rtol=1e-6)
        np.testing.assert_allclose(g["conv_0"].biases, biases, rtol=1e-6, atol=1e-7)


def test_demo_as_a_process(tmp_path: Path) -> None:
    r = run("demo", "--json", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    doc = strict_json(r.stdout)  # only the info document
    assert set(doc) == INFO_KEYS
    assert doc["path"] == os.path.join("dwf-demo", "demo.weights") and doc["complete"]
    assert (tmp_path / "dwf-demo" / "demo.cfg").is_file()


def test_demo_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "demo", tmp_path / "here")
    assert r.code == 0
    assert r.out.startswith(f"wrote {tmp_path / 'here' / 'demo.cfg'} and ")
    assert "(complete)" in r.out and "yolo_21" in r.out


# -- errors -------------------------------------------------------------------------------------
@pytest.fixture
def broken(demo: Demo, tmp_path: Path) -> dict[str, Path]:
    three = tmp_path / "three.cfg"
    text = (
        demo.cfg.read_text().replace("classes=2", "classes=3").replace("filters=21", "filters=24")
    )
    three.write_text(text)
    lonely = tmp_path / "lonely.weights"  # no cfg beside it
    lonely.write_bytes(demo.weights.read_bytes())
    return {
        "weights": demo.weights,
        "cfg": demo.cfg,
        "three": three,
        "lonely": lonely,
        "missing": tmp_path / "missing.weights",
        "dir": tmp_path,
        "out": tmp_path / "out.weights",
        "nodir": tmp_path / "no" / "such" / "dir" / "x.npz",
    }


ERRORS = [
    (["info", "{missing}"], "weights file not found"),
    (["info", "{dir}"], "is a directory, not a weights file"),
    (["info", "{lonely}"], "no cfg given and none found beside the weights"),
    (["info", "{weights}", "--cfg", "{missing}"], "missing.weights"),
    (["info", "{cfg}", "--cfg", "{cfg}"], "not a Darknet weights file"),
    (["info", "{weights}", "--cfg", "{three}"], "the cfg says 3"),
    (["stats", "{weights}", "--layers", "ten"], "--layers 'ten'"),
    (["stats", "{weights}", "--cfg", "{three}"], "likely cause"),
    (["check", "{weights}", "--cfg", "{three}"], "likely cause"),
    (["diff", "{weights}"], "at least two"),
    (["diff", "{weights}", "{missing}"], "weights file not found"),
    (["cut", "{weights}", "{out}", "99"], "upto=99"),
    (["export", "{weights}", "{nodir}", "--format", "npz"], "cannot create a file"),
    (["import", "{cfg}", "{out}"], "unknown export format"),
    (["import", "{missing}", "{out}"], "missing.weights"),
    (["fuse", "{missing}", "{out}", "{nodir}"], "weights file not found"),
    (["identify", "{missing}"], "weights file not found"),
    # `identify {dir}` identifies the files in it (tests/test_cli_many.py)
]


@pytest.mark.parametrize(
    ("argv", "says"), ERRORS, ids=lambda x: " ".join(x) if isinstance(x, list) else None
)
def test_errors_exit_2_with_one_message(
    argv: list[str], says: str, broken: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    r = call(capsys, *(a.format(**broken) for a in argv))
    assert r.code == 2
    assert_error(r.err, r.out, says=says)
    # one line, whatever the message: a size mismatch's diagnosis is joined with "; "
    assert len(r.err.splitlines()) == 1, r.err


def test_is_a_directory_is_not_reworded(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "info", demo.folder)
    assert r.err == f"dwf: error: {demo.folder}: is a directory, not a weights file\n"


def test_error_as_a_process_has_no_traceback(tmp_path: Path) -> None:
    r = run("stats", "nothing.weights", "--json", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == "dwf: error: nothing.weights: weights file not found\n"
    assert strict_json(r.stdout) == {"error": "nothing.weights: weights file not found"}
    r = run("stats", "nothing.weights", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")


def test_debug_after_the_subcommand_as_a_process(tmp_path: Path) -> None:
    r = run("check", "nothing.weights", "--debug", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert r.stderr.rstrip().endswith(
        "dwf.errors.WeightsNotFoundError: nothing.weights: weights file not found"
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["diff", "a.weights", "b.weights"]
    r = call(capsys, *(["--debug", *argv] if where == "before" else [*argv, "--debug"]))
    assert r.code == 2
    assert "Traceback (most recent call last)" in r.err
    assert "WeightsNotFoundError: a.weights: weights file not found" in r.err
    assert "dwf: error:" not in r.err


def _explode(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize("json_flag", [False, True])
def test_an_unexpected_exception_is_one_line_asking_for_a_report(
    json_flag: bool,
    demo: Demo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import dwf.interfaces.cli.stats as stats_cmd

    monkeypatch.setattr(stats_cmd, "stats", _explode)
    r = call(capsys, "stats", demo.weights, *(["--json"] if json_flag else []))
    assert r.code == 2
    (line,) = r.err.splitlines()
    assert line.startswith("dwf: error: RuntimeError: boom second line")
    assert "please report" in line and "--debug" in line and "Traceback" not in line
    if json_flag:
        assert strict_json(r.out) == {"error": line.removeprefix("dwf: error: ")}
    else:
        assert r.out == ""
    r = call(capsys, "stats", demo.weights, "--debug")
    assert r.code == 2
    assert "Traceback (most recent call last)" in r.err and "RuntimeError: boom" in r.err


def test_json_errors_are_a_json_document(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["info", "missing.weights", "--json"],
        ["check", "missing.weights", "--json"],
        ["diff", str(demo.weights), "missing.weights", "--json"],
        ["identify", "missing.weights", "--json"],
        ["stats", str(demo.weights), "--layers", "ten", "--json"],
    ):
        r = call(capsys, *argv)
        assert r.code == 2, argv
        assert_error(r.err, r.out, says="", as_json=True)


def test_a_full_standard_output_is_one_error(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    class Full(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(28, "No space left on device")

    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", Full())
    monkeypatch.setattr(sys, "stderr", err)
    try:
        assert main(["info", str(demo.weights), "--json"]) == 2
    finally:
        sys.stdout.close()  # main swapped in os.devnull; monkeypatch restores the real one
    assert (
        err.getvalue() == "dwf: error: cannot write to standard output: No space left on device\n"
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_as_a_process(demo: Demo) -> None:
    with open("/dev/full", "w") as full:
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        )
        r = subprocess.run(
            [sys.executable, "-m", "dwf", "info", str(demo.weights)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    assert r.returncode == 2
    assert r.stderr == "dwf: error: cannot write to standard output: No space left on device\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_a_file_name_that_is_not_utf8_prints(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.weights")  # Latin-1: not UTF-8, held as a surrogate
    r = run("info", name, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == "dwf: error: caf\\udce9.weights: weights file not found\n"


def test_broken_pipe_is_not_an_error(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    try:
        assert main(["info", str(demo.weights)]) == 0
    finally:
        sys.stdout.close()  # main swapped in os.devnull; monkeypatch restores the real one


# -- tables and progress ------------------------------------------------------------------------
def test_table_cuts_the_last_column_to_fit() -> None:
    rows = [("1", "x" * 200), ("22", "short")]
    lines = render.table(("#", "text"), rows, right=(0,))
    assert lines[0] == " #  text"
    assert len(lines[1]) == 100 and lines[1].endswith("…") and lines[1].startswith(" 1  xxx")
    assert lines[2] == "22  short"
    wide = render.table(("#", "text"), rows, right=(0,), width=None)
    assert wide[1] == " 1  " + "x" * 200


def test_wide_keeps_long_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a short path in the first line
    # a layer with a long array list: an LSTM has 8 sub-layers of weights and biases
    cfg = tmp_path / "lstm.cfg"
    cfg.write_text(
        "[net]\nwidth=1\nheight=1\nchannels=64\n\n[lstm]\noutput=64\nbatch_normalize=1\n"
    )
    plan = dwf.plan(cfg)
    arrays = {f"{lp.name}.{a.name}": np.ones(a.shape, np.float32) for lp, a in plan.arrays()}
    weights = "lstm.weights"
    dwf.save(weights, plan, arrays)
    narrow = call(capsys, "info", weights).out
    wide = call(capsys, "info", weights, "--wide").out
    assert max(map(len, narrow.splitlines())) <= 100
    assert any(ln.endswith("…") for ln in narrow.splitlines())
    assert max(map(len, wide.splitlines())) > 100
    assert "…" not in wide


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_on_a_terminal(
    tty: bool, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "BIG_FILE", 0)  # every file counts as big
    stream = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(["stats", str(demo.weights)]) == 0
    assert main(["check", str(demo.weights)]) == 0
    assert main(["diff", str(demo.weights), str(demo.weights), str(demo.later)]) == 0
    bars = stream.getvalue()
    if tty:
        for what in ("stats", "check", "diff"):
            assert f"\r{what} [" in bars, what
        assert "100.0%" in bars
        assert bars.endswith("\r")  # the bar is erased before the output
    else:
        assert bars == ""


PROGRAM = (
    "import sys, dwf.interfaces.cli as c, dwf.interfaces.cli.render as r; r.BIG_FILE = 0;"
    " sys.exit(c.main(sys.argv[1:]))"
)


def test_no_progress_bar_when_piped(demo: Demo) -> None:
    r = _run([sys.executable, "-c", PROGRAM, "stats", str(demo.weights)], demo.folder)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"{demo.weights}: 49 arrays")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_on_a_pseudo_terminal(demo: Demo) -> None:
    import pty

    try:
        master, slave = pty.openpty()
    except OSError as e:  # a sandbox without pseudo-terminals
        pytest.skip(f"no pseudo-terminal: {e}")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, "stats", str(demo.weights)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    assert "stats [" in b"".join(chunks).decode()
    assert out.decode().startswith(f"{demo.weights}: 49 arrays")


# -- real files ---------------------------------------------------------------------------------
def test_real_file_every_reporting_subcommand(
    real: RealFile, capsys: pytest.CaptureFixture[str]
) -> None:
    w, cfg = real.weights, real.cfg
    info = call(capsys, "info", w, "--cfg", cfg)
    if not real.ok:
        assert_error(info.err, info.out, says="likely cause")
        for cmd in ("stats", "check"):
            r = call(capsys, cmd, w, "--cfg", cfg)
            assert r.code == 2 and r.err.startswith("dwf: error: ")
        r = call(capsys, "diff", w, w, "--cfg", cfg)
        assert r.code == 2 and "Traceback" not in r.err
    else:
        assert (info.code, info.err) == (0, "")
        assert all(len(line) <= 100 for line in info.out.splitlines()[1:] if "warning:" not in line)
        assert ("partial file" in info.out) == (real.verdict == "partial")
    lenient = ["--cfg", str(cfg), "--lenient"]
    doc = strict_json(call(capsys, "info", w, *lenient, "--json").out)
    assert set(doc) == INFO_KEYS
    assert doc["complete"] == (real.verdict == "complete")
    assert doc["partial"] == (real.verdict == "partial")
    assert (doc["mismatch"] is not None) == (real.verdict == "mismatch")
    held = [(x["name"], a["name"]) for x in doc["layers"] if x["in_file"] for a in x["arrays"]]

    stats = call(capsys, "stats", w, *lenient)
    assert stats.code == 0
    assert all(len(line) <= 100 for line in stats.out.splitlines()[1:])
    sdoc = strict_json(call(capsys, "stats", w, *lenient, "--json").out)
    assert [(a["layer"], a["array"]) for a in sdoc["arrays"]] == held
    assert all(a["nan"] == 0 and a["inf"] == 0 for a in sdoc["arrays"])

    check = call(capsys, "check", w, *lenient, "--json")
    cdoc = strict_json(check.out)
    assert set(cdoc) == CHECK_KEYS and cdoc["arrays"] == len(held)
    assert check.code == (1 if cdoc["serious"] else 0)
    if real.verdict == "mismatch":
        assert cdoc["mismatch"]
    else:  # real, healthy files: oddities at most, no errors
        assert not cdoc["serious"], cdoc["findings"]

    ident = call(capsys, "identify", w, "--json")
    idoc = strict_json(ident.out)
    named = idoc["matches"] or idoc["fits"]
    assert set(idoc) == IDENTIFY_KEYS and ident.code == (0 if named else 1)

    if real.ok:
        same = call(capsys, "diff", w, w, "--cfg", cfg, "--exit-code", "--json")
        ddoc = strict_json(same.out)
        assert same.code == 0 and ddoc["identical"]
        assert [(a["layer"], a["array"]) for a in ddoc["arrays"]] == held
        assert all(a["max_abs"] == 0 for a in ddoc["arrays"])


@pytest.mark.parametrize(
    ("folder", "code"),
    [
        ("darknet-reference-tiny", 0),  # 16-byte header
        ("lebhoryi-yolo-fastest-conv109", 0),  # a partial file, found by its name's stem
        ("yolo-lite-trial8", 2),  # does not fit its cfg
    ],
)
def test_real_file_info_as_a_process(folder: str, code: int, tmp_path: Path) -> None:
    d = shared_path("realweights", folder)
    (weights,) = [p for p in d.iterdir() if p.suffix not in (".cfg", ".txt")]
    r = run("info", weights, "--json", cwd=tmp_path)
    assert r.returncode == code
    if code:
        assert_error(r.stderr, r.stdout, says="batch_normalize=0", as_json=True)
        return
    assert r.stderr == ""
    doc = strict_json(r.stdout)
    assert doc["size"] == weights.stat().st_size
    if folder == "darknet-reference-tiny":
        assert doc["header"]["size"] == 16 and doc["header"]["version"] == "0.1.0"
    else:
        assert doc["partial"] and doc["last_layer"] == 108 and doc["header"]["seen"] == 0


# -- two (and three) checkpoints of one run, made from a real file ------------------------------
@attrs.frozen
class Run:
    cfg: Path
    a: Path  # the real file
    b: Path  # a later checkpoint: a few arrays changed, seen + 64,000
    b16: Path  # the same as b, with a 16-byte header (version 0.1.0)
    c: Path  # after b: one more layer changed
    part: Path  # a partial file cut from a
    flipped: str  # the layer whose weights b negates
    changed_ab: frozenset[tuple[str, str]]
    changed_bc: frozenset[tuple[str, str]]
    seen: int


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Run:
    src = shared_path("realweights", "yolo-fastest-1.1")
    a, cfg = src / "yolo-fastest-1.1.weights", src / "yolo-fastest-1.1.cfg"
    out = tmp_path_factory.mktemp("run")
    with dwf.open(a, cfg=cfg) as f:
        names = f.keys()
        l1, l2, l3, l4 = names[3], names[40], names[-2], names[60]
        step = {
            f"{l1}.weights": np.array(f[l1].weights) * 1.001,
            f"{l2}.biases": np.array(f[l2].biases) + 0.01,
            f"{l2}.rolling_variance": np.array(f[l2].rolling_variance) * 1.1,
            f"{l3}.weights": -np.array(f[l3].weights),
        }
        seen = f.header.seen
        b, b16 = out / "yolo-fastest-1.1_2000.weights", out / "yolo-fastest-1.1_2000_v010.weights"
        f.save(b, replace=step, header=dwf.Header(seen=seen + 64_000))
        f.save(b16, replace=step, header=dwf.Header(0, 1, 0, seen + 64_000, size=16))
        f.save(out / "yolo-fastest-1.1.conv.50", upto=50)
    with dwf.open(b, cfg=cfg) as g:
        c = out / "yolo-fastest-1.1_3000.weights"
        g.save(
            c,
            replace={f"{l4}.scales": np.array(g[l4].scales) * 0.5},
            header=dwf.Header(seen=seen + 128_000),
        )
    changed_ab = frozenset(tuple(k.split(".", 1)) for k in step)
    return Run(
        cfg,
        a,
        b,
        b16,
        c,
        out / "yolo-fastest-1.1.conv.50",
        l3,
        changed_ab,  # type: ignore[arg-type]
        frozenset({(l4, "scales")}),
        seen,
    )


def test_checkpoints_diff_names_exactly_the_changed_layers(checkpoints: Run) -> None:
    run_ = checkpoints
    r = run("diff", run_.a, run_.b, "--cfg", run_.cfg, "--json", "--exit-code", cwd=run_.a.parent)
    assert (r.returncode, r.stderr) == (1, "")
    doc = strict_json(r.stdout)
    assert changed(doc) == run_.changed_ab
    assert (doc["seen_a"], doc["seen_b"]) == (run_.seen, run_.seen + 64_000)
    assert not doc["only_a"] and not doc["only_b"] and not doc["shape_mismatch"]
    with dwf.open(run_.a, cfg=run_.cfg) as f:
        assert len(doc["arrays"]) == sum(len(f[n].keys()) for n in f)
    flipped = [a for a in doc["arrays"] if a["cosine"] is not None and a["cosine"] < 0]
    assert [
        (a["layer"], a["array"], round(a["rel_l2"], 6), round(a["cosine"], 6)) for a in flipped
    ] == [(run_.flipped, "weights", 2.0, -1.0)]


def test_checkpoints_diff_table(checkpoints: Run, capsys: pytest.CaptureFixture[str]) -> None:
    r = call(capsys, "diff", checkpoints.a, checkpoints.b, "--cfg", checkpoints.cfg)
    assert r.code == 0
    assert "(+64,000)" in r.out and "4 changed" in r.out
    rows = table_lines(r.out)[1:]
    assert {tuple(row.split()[:2]) for row in rows} == checkpoints.changed_ab
    assert all(len(line) <= 100 for line in table_lines(r.out))


def test_checkpoints_across_header_widths(
    checkpoints: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    info = strict_json(
        call(capsys, "info", checkpoints.b16, "--cfg", checkpoints.cfg, "--json").out
    )
    assert info["header"]["size"] == 16 and info["complete"]
    r = call(capsys, "diff", checkpoints.a, checkpoints.b16, "--cfg", checkpoints.cfg, "--json")
    doc = strict_json(r.out)
    assert changed(doc) == checkpoints.changed_ab
    assert doc["seen_b"] - doc["seen_a"] == 64_000
    r = call(capsys, "diff", checkpoints.b, checkpoints.b16, "--cfg", checkpoints.cfg, "--json")
    doc = strict_json(r.out)
    assert doc["identical"]  # the same arrays under different headers


def test_checkpoint_and_itself_as_a_process(checkpoints: Run) -> None:
    a = checkpoints.a
    r = run("diff", a, a, "--cfg", checkpoints.cfg, "--exit-code", cwd=a.parent)
    assert (r.returncode, r.stderr) == (0, "")
    assert "identical everywhere" in r.stdout
    assert "0 changed" in r.stdout and "seen: " in r.stdout and "(+0)" in r.stdout


def test_partial_against_full_compares_what_both_hold(
    checkpoints: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = checkpoints.cfg
    with dwf.open(checkpoints.part, cfg=cfg) as p, dwf.open(checkpoints.a, cfg=cfg) as f:
        held = p.keys()
        beyond = [n for n in f if n not in held]
    r = call(capsys, "diff", checkpoints.part, checkpoints.a, "--cfg", cfg, "--json", "--exit-code")
    doc = strict_json(r.out)
    assert r.code == 1 and not doc["identical"]  # B holds layers A does not
    assert doc["only_b"] == beyond and doc["only_a"] == []
    assert [n for n in dict.fromkeys(a["layer"] for a in doc["arrays"])] == held
    assert all(a["identical"] for a in doc["arrays"])
    r = call(capsys, "diff", checkpoints.b, checkpoints.part, "--cfg", cfg, "--json")
    doc = strict_json(r.out)
    assert doc["only_a"] == beyond
    assert changed(doc) == {x for x in checkpoints.changed_ab if x[0] in held}
    text = call(capsys, "diff", checkpoints.part, checkpoints.a, "--cfg", cfg).out
    assert f"only in B: {', '.join(beyond[:8])} …" in text


def test_drift_series_as_a_process(checkpoints: Run) -> None:
    c = checkpoints
    r = run("diff", c.a, c.b, c.c, "--cfg", c.cfg, cwd=c.a.parent)
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert lines[:3] == [f"[0] {c.a}", f"[1] {c.b}", f"[2] {c.c}"]
    header, *rows = table_lines(r.stdout)
    assert header.split() == ["layer", "0→1", "1→2"]
    moved = {row.split()[0]: row.split()[1:3] for row in rows if len(row.split()) == 3}
    first = {name for name, steps in moved.items() if steps[0] != "0"}
    second = {name for name, steps in moved.items() if steps[1] != "0"}
    assert first == {name for name, _ in c.changed_ab}
    assert second == {name for name, _ in c.changed_bc}
    s = c.seen
    assert lines[-1] == f"seen: {s:,} → {s + 64_000:,} → {s + 128_000:,}"


def test_drift_series_json(checkpoints: Run, capsys: pytest.CaptureFixture[str]) -> None:
    c = checkpoints
    r = call(capsys, "diff", c.a, c.b, c.c, "--cfg", c.cfg, "--json", "--exit-code")
    doc = strict_json(r.out)
    assert r.code == 1 and set(doc) == {"series"} and len(doc["series"]) == 2
    assert all(set(x) == DIFF_KEYS for x in doc["series"])
    assert changed(doc["series"][0]) == c.changed_ab
    assert changed(doc["series"][1]) == c.changed_bc
    assert [(x["a"], x["b"]) for x in doc["series"]] == [(str(c.a), str(c.b)), (str(c.b), str(c.c))]


# -- the documented schema ----------------------------------------------------------------------
def test_every_json_key_is_documented_in_cli_md() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    keys = INFO_KEYS | HEADER_KEYS | LAYER_KEYS | LAYER_ARRAY_KEYS | STATS_ARRAY_KEYS
    keys |= DIFF_KEYS | DIFF_ARRAY_KEYS | CHECK_KEYS | FINDING_KEYS | IDENTIFY_KEYS | MATCH_KEYS
    keys |= {"series"}
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/cli.md does not describe the --json keys {missing}"


def _iter_options() -> Iterator[tuple[str, str]]:
    parser = dwf.interfaces.cli.build_parser()
    subs = next(a.choices for a in parser._actions if isinstance(a.choices, dict))
    for name, sub in subs.items():
        for action in sub._actions:
            for opt in action.option_strings:
                yield name, opt


def test_cli_md_documents_wide_version_debug() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    for word in ("--wide", "--version", "--debug", "--exit-code", "--json"):
        assert f"`{word}" in text or f"{word}`" in text, word
    assert re.search(r"--debug.*after", text), "cli.md should say --debug also works after"
    assert {opt for _, opt in _iter_options()} >= {"--json", "--wide", "--debug", "--cfg"}


@pytest.mark.parametrize("selection", [["--layers", "100"], ["--type", "foo"]])
def test_a_selection_that_matches_nothing_says_so(
    demo: Demo, selection: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by a new user: these printed an empty table and nothing else.
    for command in ("info", "stats"):
        r = call(capsys, command, demo.weights, *selection)
        assert r.code == 0
        assert r.err.startswith("dwf: note: ") and "selects no layer" in r.err
        assert "layers 0..21 of types" in r.err and len(r.err.splitlines()) == 1
