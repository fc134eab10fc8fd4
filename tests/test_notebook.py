"""The example notebook (docs/example.ipynb) runs, top to bottom, in a real kernel.

It is executed with nbclient in a fresh working directory; no cell may fail, the displays must
come out as HTML and the plots as PNG images. The committed notebook keeps no outputs.
Skipped when nbclient, ipykernel or matplotlib is not installed (CI installs them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "example.ipynb"


def _code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_committed_notebook_has_no_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in _code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def _source_index(nb: Any, start: str) -> int:
    (i,) = [i for i, c in enumerate(nb.cells) if c.source.startswith(start)]
    return i


@pytest.mark.slow  # starts a Jupyter kernel and runs every cell (~4 s)
def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    pytest.importorskip("onnxruntime")  # the ONNX cell runs the exported demo model
    # the kernel is a child process: make sure it imports this checkout's dwf
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [o for c in _code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert errors == []

    def outputs(start: str) -> list[Any]:
        return list(nb.cells[_source_index(nb, start)].outputs)

    def data(start: str, mime: str) -> Any:
        found = [o.data[mime] for o in outputs(start) if mime in o.get("data", {})]
        assert found, f"the cell starting {start!r} displayed no {mime}"
        return found[0]

    assert "conv_10" in data("f = dwf.open(weights)", "text/html")
    assert "conv_2</b> (convolutional, layer 2)" in data('layer = f["conv_2"]', "text/html")
    assert "<svg" in data("f.graph(", "image/svg+xml") and "conv_4" in data("f.graph(", "text/html")
    for start in ("layer.plot()", "f.plot()", "dwf.plot_diff(f, later)"):
        assert len(data(start, "image/png")) > 1_000  # base64 PNG
    text = "".join(o.get("text", "") for o in outputs("report = f.check()"))
    assert "0 errors" in text
    assert "<table" in data("dwf.diff(f, later)", "text/html")  # a report shows as a table
    text = "".join(o.get("text", "") for o in outputs("moved = np.array"))
    assert "conv_4 weights relative change 0.010" in text
    text = "".join(o.get("text", "") for o in outputs("import sys"))
    assert "1 changed, 48 identical" in text
    assert (tmp_path / "dwf-demo" / "demo.npz").is_file()


# A notebook as a user writes it: no %matplotlib magic, no backend set; plots and reports are
# the last expression of their cells.
PLAIN_CELLS = [
    "import dwf\ncfg, weights = dwf.demo('.')\nf = dwf.open(weights)",
    "f.plot()",
    'f["conv_2"].plot()',
    "dwf.plot_diff(f, f)",
    "dwf.check(f)",
    "dwf.stats(f, layers=[0, 2])",
    "dwf.diff(f, f)",
    "dwf.Rows(dwf.each(dwf.check, [weights, 'missing.weights'], jobs=1))",
    "print(dwf.check(f))",
    "print(dwf.stats(f, layers=[0]))",
    "fig = f.plot()\nprint(type(fig).__mro__[1].__name__, len(fig.axes))",
]


@pytest.mark.slow  # starts a Jupyter kernel (~4 s)
def test_a_notebook_without_magics_shows_plots_and_report_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # as in a fresh Jupyter: the kernel's own
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in PLAIN_CELLS])
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    def data(i: int) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for o in nb.cells[i].outputs:
            found.update(o.get("data", {}))
        return found

    def printed(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs)

    for i in (1, 2, 3):  # the plots: images, not "<Figure size 1000x500 with 3 Axes>" alone
        assert len(data(i).get("image/png", "")) > 1_000, (PLAIN_CELLS[i], data(i).keys())
    check, stats, diff, rows = (data(i).get("text/html", "") for i in (4, 5, 6, 7))
    assert "<table" in stats and "rolling_variance" in stats and "demo.weights" in stats
    assert "0 errors, 0 warnings, 0 notes" in check
    assert "<table" not in diff and "identical everywhere" in diff
    assert rows.count("<tr>") == 3 and "0 errors" in rows and "missing.weights" in rows
    assert "error" in rows.split("missing.weights")[1]
    assert "0 errors, 0 warnings, 0 notes" in printed(8)  # print(report): text, not a repr
    assert "CheckReport(" not in printed(8)
    lines = printed(9).splitlines()
    assert lines[0].endswith("demo.weights: 5 arrays") and lines[1].split()[:3] == [
        "layer",
        "array",
        "min",
    ]
    assert printed(10).strip() == "Figure 3"  # the plot returns the figure
