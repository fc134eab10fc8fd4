"""``dwf info``'s figures, ``--summary`` (re-planned at another size and batch) and
``--markdown`` on info, stats, diff and check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import call_cli

import dwf
from dwf.interfaces.cli import render
from dwf.tools.demo import write_demo
from dwf.tools.info import summarize


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo")
    cfg, weights = write_demo(folder)
    return Path(cfg), Path(weights)


def _resized(cfg: Path, width: int, height: int) -> dwf.Plan:
    """The demo cfg with another [net] size, edited here by hand."""
    text = cfg.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^width=\d+", f"width={width}", text, count=1)
    text = re.sub(r"(?m)^height=\d+", f"height={height}", text, count=1)
    return dwf.Plan.from_text(text)


def test_summary_of_the_cfgs_own_size(demo: tuple[Path, Path]) -> None:
    cfg, weights = demo
    plan = dwf.plan(cfg)
    s = summarize(plan, path=str(weights))
    assert (s.width, s.height, s.channels, s.batch, s.resized) == (64, 64, 3, 1, False)
    assert (s.params, s.trainable) == (plan.total_params, plan.total_trainable)
    assert s.bflops == plan.total_bflops and s.weights_fit
    assert s.output_bytes == sum(4 * lp.outputs for lp in plan)
    assert s.param_bytes == 4 * 27_202 and s.memory_bytes == s.output_bytes + s.param_bytes
    assert [r.name for r in s.heads] == ["yolo_14", "yolo_21"]
    assert [r.stride for r in s.heads] == [(8, 8), (4, 4)]
    costs = [r.bflops for r in s.heaviest]
    assert costs == sorted(costs, reverse=True) and len(costs) == 5
    assert costs[0] == max(lp.bflops for lp in plan)
    assert s.largest is not None and s.largest.output_bytes == max(lp.output_bytes for lp in plan)
    json.dumps(s.to_dict())
    assert dwf.info(weights, summary=True) == s.to_dict()


def test_summary_at_another_size_and_batch(demo: tuple[Path, Path]) -> None:
    cfg, _ = demo
    s = summarize(dwf.plan(cfg), batch=8, size=(416, 320))
    other = _resized(cfg, 416, 320)
    assert (s.width, s.height, s.resized) == (416, 320, True)
    assert s.bflops == other.total_bflops
    assert s.output_bytes == 8 * sum(4 * lp.outputs for lp in other)
    assert s.weights_fit and s.params == 27_202  # fully convolutional


def test_a_network_with_connected_layers_has_other_parameters_elsewhere() -> None:
    plan = dwf.Plan.from_text(
        "[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
        "activation=leaky\n\n[connected]\noutput=10\nactivation=linear\n"
    )
    s = summarize(plan, size=(32, 32))
    assert not s.weights_fit and s.params == 4 + 4 * 27 + 10 + 10 * 4 * 32 * 32


def test_summary_refusals(demo: tuple[Path, Path]) -> None:
    plan = dwf.plan(demo[0])
    with pytest.raises(dwf.DwfError, match="batch must be at least 1"):
        summarize(plan, batch=0)
    with pytest.raises(dwf.DwfError, match="at least 1×1"):
        summarize(plan, size=(0, 5))
    with pytest.raises(dwf.DwfError, match="at 2×2 Darknet cannot build this network: layer"):
        summarize(plan, size=(2, 2))


def test_summary_command(demo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, weights = demo
    argv = ("info", weights, "--summary", "--batch", "4", "--size", "128x96")
    code, out, err = call_cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert "input: 128×96×3 (re-planned at this size, as Darknet would), 22 layers" in out
    assert "for a batch of 4" in out and "heaviest layers:" in out
    code, out, _ = call_cli(capsys, "info", weights, "--summary", "--json", "--size", "128")
    doc = json.loads(out)
    assert (doc["width"], doc["height"], doc["batch"]) == (128, 128, 1)
    assert doc["bflops"] == _resized(Path(str(weights)[:-8] + ".cfg"), 128, 128).total_bflops
    for bad, says in (
        (["--summary", "--size", "big"], "give the input size as WxH"),
        (["--batch", "2"], "--batch and --size go with --summary"),
        (["--summary", "--size", "2x2"], "cannot build"),
    ):
        code, out, err = call_cli(capsys, "info", weights, *bad)
        assert code == 2 and says in err and err.count("\n") == 1, err


def test_summary_shows_the_files_warnings(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed before: ``dwf info --summary`` of a file cut short at a layer boundary (seen
    kept) said nothing of it, though ``dwf info`` warns; the summary warns the same way."""
    cfg, weights = demo
    short = tmp_path / "short.weights"
    with dwf.open(weights) as f:
        boundary = f.plan.layers[5].byte_span(f.header.size)[1]
    short.write_bytes(weights.read_bytes()[:boundary])
    code, out, err = call_cli(capsys, "info", short, "--cfg", cfg, "--summary", "--wide")
    assert (code, err) == (0, "")
    assert "warning: the file ends at a layer boundary" in out and "cut short" in out


def test_info_table_columns_fit(
    demo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, weights = demo
    code, out, _ = call_cli(capsys, "info", weights)  # not a terminal: 100 columns
    header = next(ln for ln in out.splitlines() if ln.lstrip().startswith("#"))
    assert header.split() == ["#", "name", "type", "output", "c×h×w", "params", "BFLOPs", "RF",
                              "bytes", "arrays"]  # fmt: skip
    assert all(len(ln) <= 100 for ln in out.splitlines() if not ln.startswith("warning"))
    # Failed before: "26,770 trainable parameters" only, while the params column (and dwf
    # graph's title) add up to 27,202: both counts, labelled, show why they differ
    assert "compute: 0.016 BFLOPs, 27,202 parameters (26,770 trainable)," in out
    code, out, _ = call_cli(capsys, "info", weights, "--wide")
    assert code == 0
    header = next(ln for ln in out.splitlines() if ln.lstrip().startswith("#"))
    assert {"memory", "RF", "stride"} <= set(header.split())


def test_table_leaves_out_columns_in_order() -> None:
    rows = [("1", "aaaa", "bbbbbbbb", "cccccccc", "arrays arrays arrays")]
    full = render.table(("#", "n", "b", "c", "arrays"), rows, width=None, drop=(3, 2))
    assert full[0].split() == ["#", "n", "b", "c", "arrays"]
    one = render.table(("#", "n", "b", "c", "arrays"), rows, width=40, drop=(3, 2))
    assert one[0].split() == ["#", "n", "b", "arrays"]
    two = render.table(("#", "n", "b", "c", "arrays"), rows, width=30, drop=(3, 2), right=(2,))
    assert two[0].split() == ["#", "n", "arrays"] and len(two[1]) <= 30


def _tables(out: str) -> list[list[list[str]]]:
    """The Markdown tables of ``out``: rows of cells (header and rule included)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*out.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif current:
            tables.append(current)
            current = []
    for t in tables:
        assert len({len(r) for r in t}) == 1, t  # every row has every cell
        assert all(re.fullmatch(r"-{3}|-{2}:", c) for c in t[1]), t[1]
    return tables


def test_markdown_tables(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    code, out, _ = call_cli(capsys, "info", weights, "--markdown")
    (table,) = _tables(out)
    assert table[0][:4] == ["#", "name", "type", "output c×h×w"] and len(table) == 2 + 22
    assert "\n\nheader: version 0.2.5" in out  # text lines are paragraphs
    code, out, _ = call_cli(capsys, "info", weights, "--summary", "--markdown")
    assert len(_tables(out)) == 1
    code, out, _ = call_cli(capsys, "stats", weights, "--markdown", "--layers", "0-2")
    (table,) = _tables(out)
    assert table[0][:2] == ["layer", "array"]
    later = tmp_path / "later.weights"
    bad = tmp_path / "bad.weights"
    with dwf.open(weights) as f:
        w = np.array(f["conv_4"].weights)
        f.save(later, replace={"conv_4.weights": w * 1.5})
        w[0, 0, 0, 0] = np.nan
        f.save(bad, replace={"conv_4.weights": w})
    code, out, _ = call_cli(capsys, "diff", weights, later, "--cfg", cfg, "--markdown")
    (table,) = _tables(out)
    assert [r[0] for r in table[2:]] == ["conv_4"]
    code, out, _ = call_cli(capsys, "diff", weights, later, weights, "--cfg", cfg, "--markdown")
    (table,) = _tables(out)
    assert table[0] == ["layer", "0→1", "1→2"]  # the drift table, without its spacer column
    code, out, _ = call_cli(capsys, "check", bad, "--cfg", cfg, "--markdown")
    assert code == 1
    (table,) = _tables(out)
    assert table[0] == ["severity", "layer", "array", "kind", "count", "what"]
    assert ["error", "conv_4", "weights", "nan", "1", "1 NaN value (in filter 0)"] in table
    # --json wins over --markdown
    code, out, _ = call_cli(capsys, "check", bad, "--cfg", cfg, "--markdown", "--json")
    json.loads(out)


def test_markdown_of_many_files_starts_with_the_first_file(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file's report is its paragraphs and table; the output starts with the first."""
    cfg, weights = demo
    other = tmp_path / "other.weights"
    other.write_bytes(weights.read_bytes())
    code, out, _ = call_cli(
        capsys, "stats", weights, other, "--cfg", cfg, "--markdown", "--jobs", "1"
    )
    assert code == 0 and len(_tables(out)) == 2
    assert out.startswith(f"{weights}: ")
    assert f"\n\n{other}: " in out


def test_notebook_table_shows_the_figures(demo: tuple[Path, Path]) -> None:
    with dwf.open(demo[1]) as f:
        html = f._repr_html_()
    assert "<th>BFLOPs</th>" in html and "<th>RF</th>" in html and "0.016 BFLOPs" in html
