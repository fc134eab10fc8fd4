"""Rich notebook displays (``_repr_html_``) of weights files and layers.

The file display reads nothing but the plan and header; the layer display reads that one layer
to show a few statistics.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from dwf.format.records import LayerPlan
from dwf.interfaces.cli.render import pair

if TYPE_CHECKING:
    from dwf.io.reader import Layer, WeightsFile

_STYLE = (
    "<style>.dwf table{border-collapse:collapse;font-size:12px}"
    ".dwf td,.dwf th{padding:1px 8px;text-align:left;white-space:nowrap}"
    ".dwf td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".dwf .scroll{max-height:420px;overflow:auto}.dwf .miss{color:#b00}</style>"
)


def _e(x: object) -> str:
    return html.escape(str(x))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def _arrays(lp: LayerPlan) -> str:
    return ", ".join(f"{a.name} {'×'.join(map(str, a.shape))}" for a in lp.arrays)


def file_html(f: WeightsFile) -> str:
    """HTML summary of an open file: header, totals and a compact layer table."""
    h = f.header
    state = "complete"
    if f.partial:
        state = f"partial file: layers 0..{f.last_layer}"
    elif f.mismatch:
        state = "size mismatch (opened with strict=False)"
    params = f.plan.total_floats
    rows = []
    for lp in f.plan.layers:
        held = f.holds(lp)
        cls = "" if held or not lp.arrays else " class='miss'"
        rows.append(
            f"<tr{cls}><td class='n'>{lp.index}</td><td>{_e(lp.name)}</td><td>{_e(lp.type)}</td>"
            f"<td>{lp.out_c}×{lp.out_h}×{lp.out_w}</td><td class='n'>{lp.count:,}</td>"
            f"<td class='n'>{f'{lp.bflops:.3f}' if lp.bflops else ''}</td>"
            f"<td class='n'>{_size(lp.output_bytes)}</td><td class='n'>{pair(lp.receptive_field)}"
            f"</td><td class='n'>{pair(lp.stride)}</td><td>{_e(_arrays(lp))}</td></tr>"
        )
    note = f"<br><b>note:</b> {_e(h.note)}" if h.note else ""
    return (
        f"{_STYLE}<div class='dwf'><b>{_e(f.path)}</b> — cfg {_e(f.cfg_path or '?')}"
        f" ({_e(f.plan.dialect)})<br>header {_e(h.version)}, seen {h.seen:,},"
        f" {h.size}-byte header{', legacy (transposed)' if h.connected_transposed else ''};"
        f" {state}<br>"
        f"{len(f.plan.layers)} layers, {len(f.plan.stored)} with arrays, {params:,} parameters,"
        f" {_size(f.size)}; {f.plan.total_bflops:.3f} BFLOPs,"
        f" {_size(f.plan.total_output_bytes)} of outputs per image{note}"
        "<div class='scroll'><table><tr><th>#</th><th>name</th><th>type</th><th>output</th>"
        "<th>params</th><th>BFLOPs</th><th>memory</th><th>RF</th><th>stride</th><th>arrays</th>"
        "</tr>" + "".join(rows) + "</table></div></div>"
    )


def layer_html(layer: Layer) -> str:
    """HTML summary of one layer: its arrays, shapes and a few statistics."""
    from dwf.tools.stats import array_stats

    lp = layer.plan
    head = (
        f"{_STYLE}<div class='dwf'><b>{_e(lp.name)}</b> ({_e(lp.type)}, layer {lp.index}) —"
        f" input {lp.in_c}×{lp.in_h}×{lp.in_w} → output {lp.out_c}×{lp.out_h}×{lp.out_w};"
        f" bytes {layer.span[0]:,}..{layer.span[1]:,}"
    )
    params = ", ".join(f"{k}={v}" for k, v in lp.params.items())
    if params:
        head += f"<br>{_e(params)}"
    if not lp.arrays:
        return head + "<br>no arrays</div>"
    if not layer.in_file:
        return head + "<br><span class='miss'>not in this (partial) file</span></div>"
    rows = []
    for name, view in layer.arrays.items():
        st = array_stats(view)
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_e('×'.join(map(str, view.shape)))}</td>"
            + "".join(f"<td class='n'>{v:.4g}</td>" for v in (st.min, st.max, st.mean, st.std))
            + f"<td class='n'>{st.zero_fraction:.1%}</td><td class='n'>{st.nan + st.inf}</td>"
            "</tr>"
        )
    return (
        head + "<table><tr><th>array</th><th>shape</th><th>min</th><th>max</th><th>mean</th>"
        "<th>std</th><th>zeros</th><th>nan/inf</th></tr>" + "".join(rows) + "</table></div>"
    )
