"""``dwf graph`` and :func:`dwf.graph`: one box per layer, one edge per input, heads marked,
highlights and cut points — checked by parsing the SVG.

The expected inputs of each layer are read here from the cfg text (a route's ``layers=``, a
shortcut's ``from=``), not from dwf's plan.
"""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, call_cli, shared_path
from fuzz.strategies import KNOWN_SECTIONS  # the sections each dialect knows (spec §3)

import dwf
from dwf.tools.demo import write_demo

SVG = "{http://www.w3.org/2000/svg}"
_CFG_DIR = SHARED / "conformance" / "cfg"
CFGS = sorted(str(p.relative_to(_CFG_DIR)) for p in _CFG_DIR.glob("*/*.cfg")) or ["__absent__"]
HEADS = {"[yolo]", "[region]", "[detection]", "[Gaussian_yolo]"}


def sections(text: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = re.sub(r"\s+", "", raw)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            out.append((line, {}))
        elif "=" in line and out and line.split("=", 1)[1]:
            out[-1][1].setdefault(*line.split("=", 1))
    return out


def expected_inputs(text: str, dialect: str) -> int:
    """How many inputs the layers of a cfg read, counted from its text."""
    n = 0
    for header, opts in sections(text)[1:]:
        if header not in KNOWN_SECTIONS[dialect] or header == "[implicit]":
            continue
        if header == "[route]":
            n += opts["layers"].count(",") + 1
        elif header == "[shortcut]":
            n += 1 + (opts["from"].count(",") + 1 if dialect == "alexeyab" else 1)
        elif header in ("[scale_channels]", "[sam]"):
            n += 2
        else:
            n += 1
    return n


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def boxes(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "layer" in g.get("class", "").split()]


def edges(root: ET.Element) -> list[ET.Element]:
    return [p for p in root.iter(f"{SVG}path") if p.get("class", "").startswith("edge")]


@pytest.mark.parametrize("rel", CFGS)
def test_every_corpus_cfg_draws(rel: str) -> None:
    """A valid SVG with one box per layer and one edge per input, heads marked."""
    if rel == "__absent__":
        shared_path("conformance", "cfg")
    path = shared_path("conformance", "cfg") / rel
    dialect = rel.split("/")[0]
    plan = dwf.plan(path, dialect=dialect)
    root = parse(dwf.graph(plan).svg())
    assert root.tag == f"{SVG}svg"
    found = boxes(root)
    assert [int(g.get("data-index", "-1")) for g in found] == list(range(len(plan)))
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = edges(root)
    assert len(lines) == expected_inputs(text, dialect)
    heads = [h for h, _ in sections(text)[1:] if h in HEADS]
    assert sum("head" in g.get("class", "").split() for g in found) == len(heads)
    for p in lines:  # each edge ends at a layer and starts at one (or the input)
        assert -1 <= int(p.get("data-from", "")) < len(plan)
        assert 0 <= int(p.get("data-to", "")) < len(plan)


def test_yolov4_edges_are_its_routes_and_shortcuts() -> None:
    path = shared_path("conformance", "cfg", "alexeyab", "yolov4.cfg")
    plan = dwf.plan(path)
    t0 = time.perf_counter()
    svg = dwf.graph(path).svg()
    elapsed = time.perf_counter() - t0  # measured, not asserted (docs/benchmarks.md)
    print(f"yolov4: graph and SVG in {elapsed * 1e3:.0f} ms")
    root = parse(svg)
    got = {
        (int(p.get("data-from", "")), int(p.get("data-to", ""))): p.get("class")
        for p in edges(root)
    }
    # layer 3 is "[route] layers=-2": from 1; layer 7 "[shortcut] from=-3": from 6 and 4
    assert got[(1, 3)] == "edge route"
    assert got[(6, 7)] == "edge flow" and got[(4, 7)] == "edge shortcut"
    assert got[(-1, 0)] == "edge flow"
    # the SPP block: "[route] layers=-1,-3,-5,-6" at layer 113
    assert {s for (s, d) in got if d == 113} == {112, 110, 108, 107}
    assert plan.layers[113].type == "route"


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    cfg, weights = write_demo(tmp_path)
    return Path(cfg), Path(weights)


def test_highlights_and_cut(demo: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, weights = demo
    with dwf.open(weights) as f:
        w = np.array(f["conv_4"].weights)
        w[0, 0, 0, 0] = np.nan
        f.save(tmp_path / "bad.weights", replace={"conv_4.weights": w})
        later = tmp_path / "later.weights"
        f.save(later, replace={"conv_8.weights": np.array(f["conv_8"].weights) * 1.5})
    with dwf.open(tmp_path / "bad.weights", cfg=cfg) as bad:
        g = bad.graph(highlight="check", cut=12)
    root = parse(g.svg())
    marked = {int(b.get("data-index", "")) for b in boxes(root) if "hl" in b.get("class", "")}
    assert marked == {4}
    faded = {int(b.get("data-index", "")) for b in boxes(root) if "cut" in b.get("class", "")}
    assert faded == set(range(12, 22))
    title = next(b for b in boxes(root) if b.get("data-index") == "4").find(f"{SVG}title")
    assert title is not None and "NaN" in (title.text or "")
    with dwf.open(weights) as a, dwf.open(later, cfg=cfg) as b:
        report = dwf.diff(a, b)
        g = dwf.graph(a, highlight=report)
    assert [nd.index for nd in g.nodes if nd.flag] == [8]
    g = dwf.graph(weights, highlight=["conv_2", 5, "10-11"])
    assert [nd.index for nd in g.nodes if nd.flag] == [2, 5, 10, 11]
    g = dwf.graph(cfg, highlight={"conv_0": "the stem"})
    assert g.nodes[0].flag == "the stem"
    with pytest.raises(dwf.LayerNotFoundError):
        dwf.graph(weights, highlight=["conv_3"])
    with pytest.raises(dwf.DwfError, match="cut point"):
        dwf.graph(weights, cut=0)
    with pytest.raises(dwf.DwfError, match="weights file"):
        dwf.graph(cfg, highlight="check")


def test_dot_and_mermaid(demo: tuple[Path, Path]) -> None:
    g = dwf.graph(demo[1])
    dot = g.dot()
    assert dot.startswith("digraph dwf {") and dot.rstrip().endswith("}")
    assert len(re.findall(r"^\s+(?:input|L\d+) -> L\d+", dot, re.M)) == len(g.edges)
    assert len(re.findall(r"^\s+L\d+ \[label=", dot, re.M)) == len(g.nodes)
    mer = g.mermaid()
    assert "flowchart TD" in mer
    assert len(re.findall(r"^\s+(?:input|L\d+) (?:-->|==>|-\.->) L\d+$", mer, re.M)) == len(g.edges)
    assert g.render("svg") == g._repr_svg_() and "<svg" in g._repr_html_()
    with pytest.raises(dwf.DwfError, match="unknown graph format"):
        g.render("png")  # type: ignore[arg-type]


def test_hostile_names_stay_valid_xml() -> None:
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=2\nsize=1\n\n"
    text += "[<&\"'\x01weird>]\n"
    plan = dwf.Plan.from_text(text)
    root = parse(dwf.graph(plan).svg())
    assert len(boxes(root)) == 2
    assert "unknown" in boxes(root)[1].get("class", "")
    dwf.graph(plan).dot()
    dwf.graph(plan).mermaid()


def test_command_line(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, weights = demo
    out_svg = tmp_path / "net.svg"
    code, out, err = call_cli(capsys, "graph", weights, "-o", out_svg)
    assert (code, err) == (0, "")
    assert out == f"wrote {out_svg} (svg): 22 layers, 25 edges\n"
    assert len(boxes(parse(out_svg.read_text(encoding="utf-8")))) == 22
    code, out, _ = call_cli(capsys, "graph", cfg, "--format", "dot")
    assert code == 0 and out.startswith("digraph dwf {")
    code, out, _ = call_cli(
        capsys, "graph", weights, "-o", tmp_path / "net.mmd", "--highlight", "conv_2"
    )
    assert code == 0 and "1 highlighted (conv_2)" in out
    assert "flowchart TD" in (tmp_path / "net.mmd").read_text(encoding="utf-8")
    later = tmp_path / "later.weights"
    with dwf.open(weights) as f:
        f.save(later, replace={"conv_13.weights": np.array(f["conv_13"].weights) + 1})
    code, out, _ = call_cli(capsys, "graph", weights, "--highlight", f"diff:{later}", "-o", out_svg)
    assert code == 0 and "1 highlighted (conv_13)" in out
    # never over an input; refusals are one error line
    before = weights.read_bytes()
    code, out, err = call_cli(capsys, "graph", weights, "-o", weights)
    assert code == 2 and err.startswith("dwf: error:") and weights.read_bytes() == before
    code, out, err = call_cli(capsys, "graph", cfg, "--highlight", "check")
    assert code == 2 and "give a .weights file" in err
    code, out, err = call_cli(capsys, "graph", weights, "--cut", "99")
    assert code == 2 and "cut point" in err


def test_a_backwards_highlight_range_is_an_error(demo: tuple[Path, Path]) -> None:
    """Failed before: ``--highlight 20-10`` highlighted nothing, silently (``--layers 20-10``
    is an error)."""
    cfg, _ = demo
    with pytest.raises(dwf.DwfError, match="low to high"):
        dwf.graph(cfg, highlight="20-10")
    assert [n.index for n in dwf.graph(cfg, highlight="10-12").nodes if n.flag] == [10, 11, 12]


def test_never_written_over_the_file_a_diff_highlight_reads(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed before: ``dwf graph A --highlight diff:B -o B`` replaced B by the picture (exit
    0), and so did saving a graph highlighted with a diff over its second file."""
    cfg, weights = demo
    other = tmp_path / "other.weights"
    with dwf.open(weights) as f:
        f.save(other, replace={"conv_13.weights": np.array(f["conv_13"].weights) + 1})
    before = other.read_bytes()
    code, out, err = call_cli(capsys, "graph", weights, "--highlight", f"diff:{other}", "-o", other)
    assert code == 2 and err.startswith("dwf: error:") and "inputs" in err, err
    assert out == "" and other.read_bytes() == before
    # refused by the command line before anything is opened (the weights need not exist)
    missing = tmp_path / "missing.weights"
    code, out, err = call_cli(capsys, "graph", missing, "--highlight", f"diff:{other}", "-o", other)
    assert code == 2 and "inputs" in err and "not found" not in err, err
    picture = dwf.graph(weights, highlight=dwf.diff(weights, other, cfg=cfg))
    with pytest.raises(dwf.DwfError, match="inputs"):
        picture.save(other)
    assert other.read_bytes() == before


@pytest.mark.slow  # starts a Jupyter kernel (~4 s)
def test_graph_displays_inline_in_a_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import dwf\nfrom dwf.tools.demo import write_demo\n"
            "cfg, weights = write_demo('dwf-demo')\nf = dwf.open(weights)"
        ),
        nbformat.v4.new_code_cell("f.graph()"),
        nbformat.v4.new_code_cell("dwf.graph(cfg, cut=10)"),
    ]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    for cell in nb.cells[1:]:
        (shown,) = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert "<svg" in shown.data["text/html"] and "<svg" in shown.data["image/svg+xml"]
        root_el = parse(shown.data["image/svg+xml"])
        assert len(boxes(root_el)) == 22


def test_the_title_says_how_many_parameters_are_trainable(demo: tuple[Path, Path]) -> None:
    # Failed before: "27,202 params" only, while dwf demo and dwf info said 26,770 trainable
    assert "· 27,202 params (26,770 trainable) ·" in dwf.graph(demo[1]).title


def test_the_picture_in_the_docs_is_current(demo: tuple[Path, Path]) -> None:
    """docs/demo-graph.svg is what ``dwf graph`` draws for the demo model today (remake it
    with ``dwf graph dwf-demo/demo.weights -o docs/demo-graph.svg``)."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "demo-graph.svg"
    assert docs.read_text(encoding="utf-8") == dwf.graph(demo[1]).svg()


def test_a_picture_extension_is_an_error_not_svg_in_disguise(
    demo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed before: ``dwf graph W -o net.png`` wrote SVG text into ``net.png`` and said
    ``wrote net.png (svg)``; an image viewer then cannot open it. dwf draws SVG, DOT and
    Mermaid only, so an image extension is refused before anything is read or written."""
    cfg, weights = demo
    png = tmp_path / "net.png"
    code, out, err = call_cli(capsys, "graph", weights, "-o", png)
    assert (code, out) == (2, "") and not png.exists()
    assert err.count("\n") == 1 and f"{png}: " in err and ".svg" in err and "dot -Tpng" in err
    with pytest.raises(dwf.DwfError, match=r"net\.pdf: .*\.svg"):
        dwf.graph(cfg).save(tmp_path / "net.pdf")
    # an explicit format is the user's choice; other and no extensions stay SVG
    code, _, _ = call_cli(capsys, "graph", weights, "-o", png, "--format", "svg")
    assert code == 0 and png.read_text(encoding="utf-8").startswith("<svg")
    assert dwf.graph(cfg).save(tmp_path / "net") == str(tmp_path / "net")
