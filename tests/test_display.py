"""Notebook displays and plots: ``_repr_html_`` of files and layers, plain reprs, figures.

The HTML is checked for the facts it must show and for being well-formed enough for a
notebook (every tag closed in order, text escaped). Plots are rendered headless (Agg) to PNG
bytes. Without matplotlib, the plot functions raise a :class:`dwf.DwfError` naming the extra.
"""

from __future__ import annotations

import html.parser
import io
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

import dwf
from dwf.tools.demo import write_demo
from dwf.tools.stats import array_stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"br", "hr", "img", "meta", "link", "input", "col", "wbr"}

MIXED_CFG = """[net]
width=8
height=8
channels=3

[convolutional]
filters=4
size=3
batch_normalize=1
activation=leaky

[connected]
output=5
activation=linear

[my<odd>&layer]
"""


# -- helpers ------------------------------------------------------------------------------------
class _Balance(html.parser.HTMLParser):
    """Records the tags, and fails on an end tag that does not close the innermost open one."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def well_formed(markup: str) -> _Balance:
    """Parse ``markup``; every element must be closed, in order. Returns the parser."""
    p = _Balance()
    p.feed(markup)
    p.close()
    assert p.stack == [], f"unclosed tags {p.stack}"
    return p


def visible_text(markup: str) -> str:
    """The text a reader sees (entities decoded, the <style> block dropped)."""
    p = well_formed(markup.split("</style>", 1)[-1])
    return "".join(p.text)


def rows(markup: str) -> list[str]:
    return markup.split("<tr")[1:]


@attrs.frozen
class Files:
    folder: Path
    cfg: Path
    weights: Path
    part: Path  # layers 0..9
    short: Path  # 100 bytes short
    later: Path  # conv_4.weights moved by 1 %
    zeroed: Path  # conv_0.weights all zeros
    damaged: Path  # one NaN in conv_4.weights
    mixed: Path  # conv, an unknown section, connected
    mixed_cfg: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("display")
    cfg, weights = (Path(p) for p in write_demo(folder))
    with dwf.open(weights) as f:
        w = np.array(f["conv_4"].weights)
        f.save(folder / "demo.conv.9", upto=9)
        f.save(folder / "demo_2000.weights", replace={"conv_4.weights": w * 1.01})
        zero = np.zeros(f["conv_0"].weights.shape, np.float32)
        f.save(folder / "zeroed.weights", replace={"conv_0.weights": zero})
        w[0, 0, 0, 0] = np.nan
        f.save(folder / "damaged.weights", replace={"conv_4.weights": w})
    short = folder / "short.weights"
    short.write_bytes(weights.read_bytes()[:-100])
    mixed_cfg = folder / "mixed.cfg"
    mixed_cfg.write_text(MIXED_CFG)
    plan = dwf.plan(mixed_cfg)
    rng = np.random.default_rng(3)
    arrays = {
        f"{lp.name}.{a.name}": rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
        for lp, a in plan.arrays()
    }
    mixed = folder / "mixed.weights"
    dwf.save(mixed, plan, arrays)
    return Files(
        folder,
        cfg,
        weights,
        folder / "demo.conv.9",
        short,
        folder / "demo_2000.weights",
        folder / "zeroed.weights",
        folder / "damaged.weights",
        mixed,
        mixed_cfg,
    )


@pytest.fixture
def f(files: Files) -> Iterator[dwf.WeightsFile]:
    with dwf.open(files.weights) as wf:
        yield wf


# -- the file's HTML ----------------------------------------------------------------------------
def test_file_html_complete(f: dwf.WeightsFile, files: Files) -> None:
    markup = f._repr_html_()
    text = visible_text(markup)
    assert str(files.weights) in text and str(files.cfg) in text
    assert "header 0.2.5, seen 64,000, 20-byte header; complete" in text
    assert "22 layers, 11 with arrays, 27,202 parameters, 106.3 KB" in text
    body = rows(markup)
    assert len(body) == 1 + 22  # the header row and one row per layer
    assert "<th>#</th><th>name</th><th>type</th>" in body[0]
    assert ">conv_10</td><td>convolutional</td><td>32×8×8</td><td class='n'>416</td>" in body[11]
    assert (
        "biases 32, scales 32, rolling_mean 32, rolling_variance 32, weights 32×1×3×3" in body[11]
    )
    assert ">route_5</td><td>route</td>" in body[6]
    assert "class='miss'" not in markup.split("</style>", 1)[1]
    assert markup.count("<table") == markup.count("</table>") == 1


def test_file_html_partial(files: Files) -> None:
    with dwf.open(files.part, cfg=files.cfg) as p:
        markup = p._repr_html_()
    text = visible_text(markup)
    assert "partial file: layers 0..9" in text
    missing = [r for r in rows(markup) if r.startswith(" class='miss'")]
    names = [r.split("</td><td>")[1] for r in missing]
    assert names == ["conv_10", "conv_11", "conv_13", "conv_16", "conv_19", "conv_20"]


def test_file_html_mismatch_and_note(files: Files, tmp_path: Path) -> None:
    with dwf.open(files.short, cfg=files.cfg, strict=False) as s:
        text = visible_text(s._repr_html_())
    assert "size mismatch (opened with strict=False)" in text
    # a 0.2.5 header written 16 bytes wide (a known writer bug): shown with its note
    odd = tmp_path / "odd.weights"
    with dwf.open(files.weights) as g:
        g.save(odd, header=dwf.Header.decode(g.header.encode(), size=16))
    with dwf.open(odd, cfg=files.cfg) as o:
        text = visible_text(o._repr_html_())
    assert "16-byte header" in text
    assert "note: the version 0.2.5 implies a 20-byte header" in text


def test_file_html_escapes_paths_and_types(files: Files, tmp_path: Path) -> None:
    folder = tmp_path / "a<b>&c"
    _, weights = write_demo(folder)
    with dwf.open(weights) as g:
        markup = g._repr_html_()
    assert "a&lt;b&gt;&amp;c" in markup and "a<b>" not in markup
    assert f"{folder}{'/' if '/' in str(folder) else chr(92)}demo.weights" in visible_text(markup)
    with dwf.open(files.mixed, cfg=files.mixed_cfg) as m:
        markup = m._repr_html_()
        layer_markup = m.layers[2]._repr_html_()
    assert "my&lt;odd&gt;&amp;layer" in markup and "my<odd>" not in markup
    assert "my<odd>&layer" in visible_text(markup)
    assert "my&lt;odd&gt;&amp;layer" in layer_markup
    well_formed(layer_markup)


def test_file_html_reads_no_arrays(files: Files) -> None:
    # the pread backend reads only what views ask for: the display must not ask for any
    with dwf.open(files.weights, backend="pread") as g:
        calls: list[Any] = []
        original = g._read_copy
        g._read_copy = lambda spec: calls.append(spec) or original(spec)  # type: ignore[method-assign]
        g._repr_html_()
        assert calls == []
        g["conv_0"]._repr_html_()  # a layer's display reads that layer only
        assert {c.name for c in calls} == set(g["conv_0"].keys())


# -- a layer's HTML -----------------------------------------------------------------------------
def test_layer_html_with_arrays(f: dwf.WeightsFile) -> None:
    layer = f["conv_10"]
    markup = layer._repr_html_()
    text = visible_text(markup)
    assert "conv_10 (convolutional, layer 10)" in text
    assert "input 32×8×8 → output 32×8×8; bytes 38,900..40,564" in text
    assert "groups=32" in text and "activation=leaky" in text
    body = rows(markup)
    assert len(body) == 1 + 5
    assert [r.split("<td>")[1].split("</td>")[0] for r in body[1:]] == layer.keys()
    st = array_stats(layer.weights)
    cells = [f"{v:.4g}" for v in (st.min, st.max, st.mean, st.std)]
    assert "".join(f"<td class='n'>{c}</td>" for c in cells) in body[5]
    assert "<td>32×1×3×3</td>" in body[5]


def test_layer_html_counts_nan(files: Files) -> None:
    with dwf.open(files.damaged, cfg=files.cfg) as g:
        body = rows(g["conv_4"]._repr_html_())
    weights = next(r for r in body if r.startswith("><td>weights<"))
    assert weights.endswith("<td class='n'>1</td></tr>") or "<td class='n'>1</td></tr>" in weights


def test_layer_html_without_arrays(f: dwf.WeightsFile) -> None:
    markup = f["maxpool_1"]._repr_html_()
    text = visible_text(markup)
    assert "maxpool_1 (maxpool, layer 1)" in text
    assert "input 8×64×64 → output 8×32×32" in text
    assert text.endswith("no arrays")
    assert "<table" not in markup


def test_layer_html_not_in_file(files: Files) -> None:
    with dwf.open(files.part, cfg=files.cfg) as p:
        markup = p.layers[19]._repr_html_()
    text = visible_text(markup)
    assert "conv_19 (convolutional, layer 19)" in text
    assert text.endswith("not in this (partial) file")
    assert "<table" not in markup


def test_html_through_ipython_formatter(f: dwf.WeightsFile) -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    fmt = formatters.HTMLFormatter()
    assert fmt(f) == f._repr_html_()
    assert fmt(f["conv_0"]) == f["conv_0"]._repr_html_()


# -- plain reprs --------------------------------------------------------------------------------
def test_plain_reprs(f: dwf.WeightsFile, files: Files) -> None:
    assert repr(f) == (
        f"<dwf.WeightsFile {str(files.weights)!r} v0.2.5 seen=64000 22 layers,"
        " 27,202 floats (complete)>"
    )
    assert repr(f["conv_13"]) == (
        "<dwf.Layer 13 conv_13 convolutional out 21×8×8: biases[21], weights[21, 32, 1, 1]>"
    )
    assert repr(f["yolo_14"]) == "<dwf.Layer 14 yolo_14 yolo out 21×8×8: no arrays>"
    with dwf.open(files.part, cfg=files.cfg) as p:
        assert repr(p).endswith("(partial: layers 0..9)>")
        assert repr(p.layers[20]).endswith(", not in file>")
    with dwf.open(files.short, cfg=files.cfg, strict=False) as s:
        assert repr(s).endswith("(SIZE MISMATCH)>")


# -- plots --------------------------------------------------------------------------------------
@pytest.fixture
def mpl() -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    return matplotlib


def png(fig: Any) -> bytes:
    """Render a figure to PNG, failing on any warning while drawing."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(buf, format="png", dpi=50)
    data = buf.getvalue()
    assert data.startswith(PNG_MAGIC)
    return data


def test_plot_conv_layer_with_filter_grid(mpl: Any, f: dwf.WeightsFile) -> None:
    from matplotlib.figure import Figure

    fig = f["conv_2"].plot()
    assert isinstance(fig, Figure)
    assert fig._suptitle.get_text() == "conv_2 (convolutional)"
    axes = fig.get_axes()
    assert len(axes) == 5 + 1  # a histogram per array, then the filters
    assert [ax.get_title().split()[0] for ax in axes[:5]] == f["conv_2"].keys()
    assert all(len(ax.patches) == 60 for ax in axes[:5])  # bins
    (image,) = axes[5].images
    assert image.get_array().shape == (4 * 4 - 1, 4 * 4 - 1)  # 16 filters of 3×3, a 4×4 grid
    assert len(png(fig)) > 10_000
    assert len(f["conv_2"].plot(bins=10).get_axes()[0].patches) == 10


def test_plot_1x1_conv_has_no_grid(mpl: Any, f: dwf.WeightsFile) -> None:
    fig = f["conv_8"].plot()
    assert len(fig.get_axes()) == 5 and not any(ax.images for ax in fig.get_axes())
    png(fig)


def test_plot_connected_layer(mpl: Any, files: Files) -> None:
    with dwf.open(files.mixed, cfg=files.mixed_cfg) as m:
        fig = m["connected_1"].plot()
        assert [ax.get_title().split("\n")[0] for ax in fig.get_axes()] == [
            "biases 5",
            "weights 5×144",
        ]
        assert not any(ax.images for ax in fig.get_axes())
        assert len(png(fig)) > 5_000
        fig = m.layers[2].plot()  # the unknown section stores nothing
        assert fig.get_axes() == []
        assert "has no arrays" in fig.texts[0].get_text()
        assert len(png(fig)) > 1_000


def test_plot_layer_without_arrays(mpl: Any, f: dwf.WeightsFile) -> None:
    fig = f["route_5"].plot()
    assert fig.get_axes() == []
    assert fig.texts[0].get_text() == "route_5 (route) has no arrays"
    assert len(png(fig)) > 1_000


def test_plot_file(mpl: Any, f: dwf.WeightsFile) -> None:
    fig = f.plot()
    params, std, _norm = fig.get_axes()
    assert [p.get_height() for p in params.patches] == [lp.count for lp in f.plan.stored]
    assert params.get_yscale() == "log"
    xs, ys = std.get_lines()[0].get_data()
    assert list(xs) == [lp.index for lp in f.plan.stored]
    assert ys[0] == pytest.approx(array_stats(f["conv_0"].weights).std)
    assert len(png(fig)) > 20_000


def test_plot_partial_file(mpl: Any, files: Files) -> None:
    with dwf.open(files.part, cfg=files.cfg) as p:
        fig = p.plot()
        assert len(fig.get_axes()[0].patches) == 5  # the stored layers it holds
        png(fig)


def test_plot_diff_of_two_files_and_of_a_report(mpl: Any, f: dwf.WeightsFile, files: Files) -> None:
    with dwf.open(files.later, cfg=files.cfg) as later:
        fig = dwf.plot_diff(f, later)
        report = dwf.diff(f, later)
    rel, max_abs = fig.get_axes()
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in rel.patches}
    assert heights[4] == pytest.approx(0.01, rel=1e-3)
    assert all(h == 0 for i, h in heights.items() if i != 4)
    assert max(p.get_height() for p in max_abs.patches) > 0
    assert "seen 64,000 → 64,000" in fig._suptitle.get_text()
    assert len(png(fig)) > 10_000
    again = dwf.plot_diff(report)
    assert [p.get_height() for p in again.get_axes()[0].patches] == [
        p.get_height() for p in rel.patches
    ]
    png(again)


def test_plot_diff_with_an_all_zero_layer(mpl: Any, f: dwf.WeightsFile, files: Files) -> None:
    # conv_0's weights are all zeros in A: the relative change is infinite and is not drawn
    with dwf.open(files.zeroed, cfg=files.cfg) as zeroed:
        fig = dwf.plot_diff(zeroed, f)
    assert "conv_0" in fig.get_axes()[0].get_title()
    assert len(png(fig)) > 10_000


def test_plot_diff_needs_two_files(mpl: Any, f: dwf.WeightsFile) -> None:
    with pytest.raises(dwf.DwfError, match="two open weights files"):
        dwf.plot_diff(f)


def test_plots_stay_out_of_pyplot(mpl: Any, f: dwf.WeightsFile) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    before = plt.get_fignums()
    f.plot()
    f["conv_0"].plot()
    dwf.plot_diff(f, f)
    assert plt.get_fignums() == before


@pytest.mark.parametrize("what", ["layer", "file", "diff"])
def test_plots_without_matplotlib_name_the_extra(
    what: str, f: dwf.WeightsFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(dwf.DwfError) as info:
        if what == "layer":
            f["conv_0"].plot()
        elif what == "file":
            f.plot()
        else:
            dwf.plot_diff(f, f)
    assert "pip install 'dwf-darknet[plot]'" in str(info.value)
    assert "matplotlib" in str(info.value)


# -- reports: text for print(), tables for a notebook ---------------------------------------------


def test_reports_print_as_the_command_line_prints_them(
    f: dwf.WeightsFile, capsys: pytest.CaptureFixture[str]
) -> None:
    from dwf.interfaces.cli import main

    stats = dwf.stats(f, layers=[0, 2])
    assert main(["stats", f.path, "--layers", "0,2", "--wide"]) == 0
    assert str(stats) == capsys.readouterr().out.rstrip("\n")
    report = dwf.check(f)
    assert str(report) == report.explain() and "CheckReport(" not in str(report)
    changed = dwf.diff(f, f)
    assert str(changed).splitlines()[-1] == "identical everywhere"
    ident = dwf.identify(f.path)
    assert str(ident) == ident.explain()


def test_reports_and_rows_display_as_tables(f: dwf.WeightsFile, tmp_path: Path) -> None:
    html = dwf.stats(f, layers=[0])._repr_html_()
    assert html.count("<tr>") == 6 and "rolling_variance" in html  # a header and 5 arrays
    assert "0 errors, 0 warnings, 0 notes" in dwf.check(f)._repr_html_()
    assert "identical everywhere" in dwf.diff(f, f)._repr_html_()
    rows = dwf.Rows(dwf.each(dwf.check, [f.path, str(tmp_path / "gone.weights")], jobs=1))
    assert isinstance(rows, list) and len(rows) == 2
    html = rows._repr_html_()
    assert html.count("<tr>") == 3 and "gone.weights" in html and "not found" in html
    lines = str(rows).splitlines()
    assert lines[0].split() == ["file", "result"] and "0 errors" in lines[1]
    assert "error:" in lines[2]
    assert "0 errors" in rows[0]._repr_html_() and "not found" in rows[1]._repr_html_()
    assert str(rows[1]).startswith(f"{tmp_path / 'gone.weights'}: error:")
