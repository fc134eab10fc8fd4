"""Plots (needs the ``plot`` extra: matplotlib). Every function returns the figure.

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``, so they work
headless and do not pile up in pyplot's global state. A notebook shows a figure only through a
display formatter, which matplotlib registers when pyplot's inline backend starts (``%matplotlib
inline``, or importing pyplot) — never for a figure made without pyplot. So the figures are of a
subclass, :class:`NotebookFigure`, that draws itself as a PNG (``_repr_png_``): a returned
figure shows in a notebook that does nothing special, and still is a ``Figure`` in every other
respect.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from dwf.extras import require
from dwf.tools.stats import array_stats

if TYPE_CHECKING:
    from dwf.io.reader import Layer, WeightsFile
    from dwf.tools.diff import DiffReport

Figure = Any  # matplotlib.figure.Figure; matplotlib is optional, so not imported for typing
_NOTEBOOK_FIGURE: type[Any] | None = None


def _notebook_figure() -> type[Any]:
    """The class :class:`NotebookFigure`, made on first use (matplotlib is imported then)."""
    global _NOTEBOOK_FIGURE
    if _NOTEBOOK_FIGURE is None:
        mfig = require("matplotlib.figure", "plot")

        class NotebookFigure(mfig.Figure):  # type: ignore[misc, name-defined]
            """A matplotlib ``Figure`` that a notebook shows as a PNG, whatever the backend."""

            def _repr_png_(self) -> bytes:
                buffer = io.BytesIO()
                self.savefig(buffer, format="png")
                return buffer.getvalue()

        # found again by name (this module's __getattr__), so that the figures pickle
        NotebookFigure.__module__ = __name__
        NotebookFigure.__qualname__ = "NotebookFigure"
        _NOTEBOOK_FIGURE = NotebookFigure
    return _NOTEBOOK_FIGURE


def __getattr__(name: str) -> Any:
    # ``dwf.interfaces.plot.NotebookFigure``: made when first asked for (pickle asks by name)
    if name == "NotebookFigure":
        return _notebook_figure()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _figure(**kw: Any) -> Figure:
    require("matplotlib.figure", "plot")  # every time: the class may outlive an uninstall
    return _notebook_figure()(**kw)


def _filter_grid(weights: np.ndarray[Any, Any], limit: int = 64) -> np.ndarray[Any, Any]:
    """Conv filters ``(n, c, k, k)`` as one image: each filter averaged over its inputs."""
    n, _, k, _ = weights.shape
    n = min(n, limit)
    tiles = np.asarray(weights[:n], dtype=np.float32).mean(axis=1)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (k + 1) - 1, cols * (k + 1) - 1), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = tiles[i]
    return grid


def plot_layer(layer: Layer, *, bins: int = 60) -> Figure:
    """A histogram of each array of the layer; conv weights with k > 1 also as a filter grid."""
    arrays = layer.arrays
    weights = arrays.get("weights")
    grid = weights is not None and weights.ndim == 4 and weights.shape[-1] > 1
    panels = len(arrays) + (1 if grid else 0)
    if panels == 0:
        fig = _figure(figsize=(4, 1.5))
        fig.text(0.5, 0.5, f"{layer.name} ({layer.type}) has no arrays", ha="center")
        return fig
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig = _figure(figsize=(4 * cols, 2.8 * rows), layout="constrained")
    fig.suptitle(f"{layer.name} ({layer.type})")
    for i, (name, view) in enumerate(arrays.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = np.asarray(view, dtype=np.float32).reshape(-1)
        values = values[np.isfinite(values)]
        ax.hist(values, bins=bins, color="#4477aa")
        st = array_stats(view)
        ax.set_title(
            f"{name} {'×'.join(map(str, view.shape))}\nmean {st.mean:.3g}, std {st.std:.3g}",
            fontsize=9,
        )
    if grid and weights is not None:
        ax = fig.add_subplot(rows, cols, panels)
        img = _filter_grid(weights)
        lim = float(np.nanmax(np.abs(img))) or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"filters (mean over inputs, first {min(64, weights.shape[0])})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_file(f: WeightsFile) -> Figure:
    """Per-layer overview: parameter count and weight standard deviation across the network."""
    layers = list(f.stored)
    fig = _figure(figsize=(10, 5), layout="constrained")
    fig.suptitle(f"{f.path}: {len(layers)} layers with arrays, {f.plan.total_floats:,} floats")
    ax1 = fig.add_subplot(2, 1, 1)
    idx = [lp.index for lp in layers]
    ax1.bar(idx, [lp.count for lp in layers], color="#4477aa")
    ax1.set_yscale("log")
    ax1.set_ylabel("parameters")
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    stds, norms = [], []
    for lp in layers:
        spec = lp.array("weights")
        if spec is None:
            stds.append(np.nan)
            norms.append(np.nan)
            continue
        st = array_stats(f[lp.index]["weights"])
        stds.append(st.std)
        norms.append(math.sqrt((st.std**2 + st.mean**2) * st.count) if st.count else np.nan)
    ax2.plot(idx, stds, "o-", ms=3, label="weights std", color="#228833")
    ax2.set_ylabel("weights std")
    ax2.set_xlabel("layer index")
    ax3 = ax2.twinx()
    ax3.plot(idx, norms, "s-", ms=2, label="weights L2 norm", color="#cc6677", alpha=0.7)
    ax3.set_ylabel("weights L2 norm")
    return fig


def plot_diff(a: WeightsFile | DiffReport, b: WeightsFile | None = None) -> Figure:
    """Per-layer change between two checkpoints (relative L2 and max |Δ|).

    Pass two open files, or a :class:`dwf.tools.diff.DiffReport`.
    """
    from dwf.errors import DwfError
    from dwf.tools.diff import DiffReport, diff

    if isinstance(a, DiffReport):
        report = a
    elif b is None:
        raise DwfError("plot_diff needs two open weights files, or a DiffReport")
    else:
        report = diff(a, b)
    rows = report.layers()
    fig = _figure(figsize=(10, 4.5), layout="constrained")
    fig.suptitle(
        f"{report.a} → {report.b} (seen {report.seen_a:,} → {report.seen_b:,})", fontsize=10
    )
    ax = fig.add_subplot(2, 1, 1)
    idx = [r[0] for r in rows]
    # rel_l2 is infinite where A was all zeros and B is not: such a bar cannot be drawn
    rel = [r[4] if math.isfinite(r[4]) else math.nan for r in rows]
    ax.bar(idx, rel, color="#aa3377")
    ax.set_ylabel("relative L2 change")
    infinite = [r[1] for r in rows if math.isinf(r[4])]
    if infinite:
        ax.set_title(f"not drawn (all zeros in A): {', '.join(infinite[:6])}", fontsize=8)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
    ax2.bar(idx, [r[3] for r in rows], color="#4477aa")
    ax2.set_ylabel("max |Δ|")
    ax2.set_xlabel("layer index")
    return fig
