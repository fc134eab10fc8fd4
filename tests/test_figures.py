"""The network at a glance: BFLOPs against Darknet's own arithmetic, parameters, memory,
receptive field and stride.

The references here are written from Darknet's sources by hand and use nothing of dwf's figures
code: Darknet's output shapes come from the conformance corpus (what its loader recorded), the
options from a small cfg reader of this file, and the formulas from each ``make_*_layer``
(AlexeyAB: convolutional_layer.c, maxpool_layer.c, shortcut_layer.c, crnn_layer.c,
conv_lstm_layer.c and the total in parser.c; pjreddie: the line convolutional_layer.c prints).
Rounding to C ``float`` goes through :mod:`struct`, C ``int`` overflow through :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED, shared_path

import dwf

CONFORMANCE = SHARED / "conformance"
KNOWN_TOTALS = {
    "yolov4": "128.459",
    "yolov3": "65.879",
    "yolov4-tiny": "6.910",
    "yolov3-tiny": "5.571",
    "yolov7-tiny": "5.802",
    "yolov4-csp": "77.003",
}


def _expected(dialect: str) -> list[str]:
    found = sorted(p.stem for p in (CONFORMANCE / "expected" / dialect).glob("*.json"))
    return found or ["__shared_absent__"]


# -- an independent cfg reader: sections and their first value per key ----------------------------
def read_sections(path: Path) -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = re.sub(r"\s+", "", raw)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            sections.append((line, {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            if value:
                sections[-1][1].setdefault(key, value)
    return sections


def c_atoi(text: str | None, default: int) -> int:
    if text is None:
        return default
    m = re.match(r"[+-]?[0-9]+", text)
    return int(m.group()) if m else 0


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def c_int(n: int) -> int:
    return ctypes.c_int32(n).value


def f32_sum(values: list[float]) -> float:
    acc = 0.0
    for v in values:
        acc = f32(acc + v)
    return acc


# -- AlexeyAB: l.bflops, from make_*_layer ---------------------------------------------------------
def ab_conv(c: int, n: int, groups: int, size: int, oh: int, ow: int, xnor: bool) -> float:
    nweights = c_int((c // groups) * n * size * size)  # convolutional_layer.c: l.nweights
    b = f32((2.0 * nweights * oh * ow) / 1e9)
    return f32(b / 32) if xnor else b


def ab_reference(opts: dict[str, str], layer: dict[str, Any], c: int) -> float:
    t, oh, ow = layer["type"], layer["out_h"], layer["out_w"]

    def num(key: str, default: int) -> int:
        return c_atoi(opts.get(key), default)

    xnor = bool(num("xnor", 0))
    groups = 1 if xnor or num("groups", 1) < 1 else num("groups", 1)
    if t == "convolutional":
        return ab_conv(c, num("filters", 1), groups, num("size", 1), oh, ow, xnor)
    if t in ("maxpool", "local_avgpool"):
        size = num("size", num("stride", 1))
        return f32(c_int(size * size * c * oh * ow) / 1e9)
    if t == "shortcut":
        n = opts["from"].count(",") + 1
        b = f32(c_int(ow * oh * layer["out_c"] * n) / 1e9)
        return f32(b * 2) if opts.get("weights_type", "none") != "none" else b
    if t == "crnn":
        k, hid, out = num("size", 3), num("hidden", 1), num("output", 1)
        parts = [
            ab_conv(c, hid, groups, k, oh, ow, xnor),
            ab_conv(hid, hid, groups, k, oh, ow, xnor),
            ab_conv(hid, out, groups, k, oh, ow, xnor),
        ]
        return f32_sum(parts)
    if t == "conv_lstm":
        k, f = num("size", 3), num("output", 1)
        peep, neck = num("peephole", 0), num("bottleneck", 0)
        u = ab_conv(c, f, groups, k, oh, ow, xnor)
        ff = ab_conv(f, f, groups, k, oh, ow, xnor)
        w = [ab_conv(2 * f, f, groups, k, oh, ow, xnor), 0.0, 0.0, 0.0] if neck else [ff] * 4
        v = [ff] * 3 if peep else [0.0] * 3
        b = f32_sum([u] * 4 + w + v)
        return f32(b + c_int((12 if peep else 9) * layer["outputs"] * 1) / 1e9)
    return 0.0


def pj_conv(c: int, n: int, groups: int, size: int, oh: int, ow: int) -> float:
    # convolutional_layer.c prints (2.0 * l.n * l.size*l.size*l.c/l.groups * l.out_h*l.out_w)/1e9
    return (2.0 * n * size * size * c / groups * oh * ow) / 1000000000.0


def pj_reference(opts: dict[str, str], layer: dict[str, Any], c: int) -> float:
    t, oh, ow = layer["type"], layer["out_h"], layer["out_w"]
    if t == "convolutional":
        n = c_atoi(opts.get("filters"), 1)
        return pj_conv(c, n, c_atoi(opts.get("groups"), 1), c_atoi(opts.get("size"), 1), oh, ow)
    if t == "crnn":  # three 3×3 sub-convolutions, each printing its line
        hid = c_atoi(opts.get("hidden_filters"), 1)
        out = c_atoi(opts.get("output_filters"), 1)
        return (
            pj_conv(c, hid, 1, 3, oh, ow)
            + pj_conv(hid, hid, 1, 3, oh, ow)
            + pj_conv(hid, out, 1, 3, oh, ow)
        )
    return 0.0


def _corpus(dialect: str, name: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
    if name == "__shared_absent__":
        shared_path("conformance", "expected")
    path = shared_path("conformance") / "expected" / dialect / f"{name}.json"
    expected = json.loads(path.read_text())
    sections = read_sections(shared_path("conformance") / "cfg" / expected["cfg"])
    return expected, sections


def _references(
    expected: dict[str, Any], sections: list[tuple[str, dict[str, str]]], dialect: str
) -> list[float]:
    net = sections[0][1]
    c = c_atoi(net.get("channels"), 0)
    refs = []
    reference = ab_reference if dialect == "alexeyab" else pj_reference
    for layer, (_, opts) in zip(expected["layers"], sections[1:], strict=True):
        refs.append(reference(opts, layer, c))
        c = layer["out_c"]  # what the next layer reads (an antialiasing blur keeps it)
    return refs


@pytest.mark.parametrize("name", _expected("alexeyab"))
def test_bflops_as_alexeyab_computes_them(name: str) -> None:
    """Every layer's figure within 1e-6 (they are in fact equal), and the total exactly as
    Darknet prints it, for every cfg of the corpus AlexeyAB's Darknet loads."""
    expected, sections = _corpus("alexeyab", name)
    plan = dwf.plan(CONFORMANCE / "cfg" / expected["cfg"], dialect="alexeyab")
    refs = _references(expected, sections, "alexeyab")
    for lp, ref in zip(plan.layers, refs, strict=True):
        assert lp.bflops == pytest.approx(ref, rel=1e-6, abs=0), (lp.index, lp.name, lp.type)
    total = f32_sum([b for b in refs if b > 0])  # parser.c: if (l.bflops > 0) bflops += ...
    assert f"{plan.total_bflops:5.3f}" == f"{total:5.3f}"
    assert plan.total_bflops == total


@pytest.mark.parametrize("name", _expected("pjreddie"))
def test_bflops_as_pjreddie_prints_them(name: str) -> None:
    expected, sections = _corpus("pjreddie", name)
    plan = dwf.plan(CONFORMANCE / "cfg" / expected["cfg"], dialect="pjreddie")
    refs = _references(expected, sections, "pjreddie")
    for lp, ref in zip(plan.layers, refs, strict=True):
        assert lp.bflops == pytest.approx(ref, rel=1e-6, abs=0), (lp.index, lp.name, lp.type)
    assert plan.total_bflops == pytest.approx(sum(refs), rel=1e-9)


@pytest.mark.parametrize("name", sorted(KNOWN_TOTALS))
def test_known_totals(name: str) -> None:
    """The "Total BFLOPS" lines Darknet prints for the public networks."""
    cfg = shared_path("conformance", "cfg", "alexeyab", f"{name}.cfg")
    assert f"{dwf.plan(cfg).total_bflops:.3f}" == KNOWN_TOTALS[name]


# -- small networks: each rule on its own ----------------------------------------------------------
def _plan(
    body: str, dialect: str = "alexeyab", net: str = "width=64\nheight=64\nchannels=3"
) -> dwf.Plan:
    return dwf.Plan.from_text(f"[net]\n{net}\n\n{body}", dialect=dialect)


def test_convolution_figures() -> None:
    p = _plan(
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\n"
        "activation=leaky\n\n"
        "[convolutional]\nfilters=8\ngroups=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    )
    a, b = p.layers
    assert (a.n_params, a.n_trainable) == (8 + 3 * 8 + 8 * 3 * 9, 8 + 8 + 8 * 3 * 9)
    assert a.output_bytes == 4 * 8 * 32 * 32
    assert a.bflops == f32(2.0 * (3 * 8 * 9) * 32 * 32 / 1e9)
    assert b.bflops == f32(2.0 * (1 * 8 * 9) * 32 * 32 / 1e9)  # depthwise: c / groups = 1
    assert a.receptive_field == (3, 3) and a.stride == (2, 2)
    assert b.receptive_field == (3 + 2 * 2, 7) and b.stride == (2, 2)
    assert p.total_params == a.n_params + b.n_params == p.total_floats
    assert p.total_trainable == a.n_trainable + b.n_trainable
    assert p.total_output_bytes == a.output_bytes + b.output_bytes
    assert p.total_bflops == f32(a.bflops + b.bflops)


def test_xnor_divides_by_32_in_alexeyab_only() -> None:
    body = "[convolutional]\nfilters=32\nsize=3\npad=1\nxnor=1\nactivation=linear\n"
    full = 2.0 * (3 * 32 * 9) * 64 * 64 / 1e9
    assert _plan(body).layers[0].bflops == f32(f32(full) / 32)
    assert _plan(body, "pjreddie").layers[0].bflops == pytest.approx(full, rel=1e-12)


def test_pjreddie_divides_channels_by_groups_exactly() -> None:
    # 3 channels in 2 groups: AlexeyAB's integer weight count uses 3 // 2 = 1, pjreddie's
    # printed figure 3 / 2 = 1.5
    body = "[convolutional]\nfilters=4\ngroups=2\nsize=1\nactivation=linear\n"
    assert _plan(body).layers[0].bflops == f32(2.0 * 1 * 4 * 64 * 64 / 1e9)
    assert _plan(body, "pjreddie").layers[0].bflops == pytest.approx(
        2.0 * 4 * 1.5 * 64 * 64 / 1e9, rel=1e-12
    )


def test_pjreddie_prints_no_figure_for_pooling_and_shortcuts() -> None:
    body = (
        "[maxpool]\nsize=2\nstride=2\n\n"
        "[convolutional]\nfilters=3\nsize=1\nactivation=linear\n\n"
        "[shortcut]\nfrom=-2\n"
    )
    ab, pj = _plan(body), _plan(body, "pjreddie")
    assert [lp.bflops > 0 for lp in ab] == [True, True, True]
    assert [lp.bflops > 0 for lp in pj] == [False, True, False]


def test_int_overflow_and_the_total_skip_as_darknet_does() -> None:
    """maxpool's figure is a product of C ints: past 2³¹ it wraps, and the total leaves out a
    figure that is not positive — both as Darknet computes them."""
    net = "width=40000\nheight=40000\nchannels=3"
    p = _plan("[maxpool]\nsize=2\nstride=2\n\n[maxpool]\nsize=3\nstride=1\n", net=net)
    a, b = p.layers
    assert a.bflops == f32(c_int(2 * 2 * 3 * 20000 * 20000) / 1e9)
    assert b.bflops == f32(c_int(3 * 3 * 3 * 20000 * 20000) / 1e9) < 0
    assert p.total_bflops == f32(a.bflops)


def test_receptive_field_rules() -> None:
    p = _plan(
        "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=linear\n\n"  # 0
        "[convolutional]\nfilters=4\nsize=3\ndilation=2\npad=1\nactivation=linear\n\n"  # 1
        "[maxpool]\nsize=2\nstride=2\n\n"  # 2
        "[upsample]\nstride=2\n\n"  # 3
        "[route]\nlayers=-1,0\n\n"  # 4 (not the same size: Darknet empties it) -> skip
        "[route]\nlayers=1\n\n"  # 5
        "[shortcut]\nfrom=0\n\n"  # 6
        "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nantialiasing=1\n\n"  # 7
        "[avgpool]\n"  # 8
    )
    rf = [lp.receptive_field for lp in p]
    st = [lp.stride for lp in p]
    assert rf[0] == (3, 3) and st[0] == (2, 2)
    assert rf[1] == (3 + 4 * 2, 11) and st[1] == (2, 2)  # dilated 3×3 spans 5
    assert rf[2] == (13, 13) and st[2] == (4, 4)
    assert rf[3] == (13, 13) and st[3] == (2, 2)
    assert rf[5] == rf[1] and st[5] == st[1]
    assert rf[6] == rf[5]  # the largest of the previous layer and from=0
    # antialiased: a 3×3 at stride 1, then the 3×3 blur with stride 2
    assert rf[7] == (11 + 2 * 2 + 2 * 2, 19) and st[7] == (4, 4)
    # global average: the whole 16×16 input
    assert rf[8] == (19 + 15 * 4, 79)


def test_upsampling_past_the_input_gives_a_fractional_stride() -> None:
    p = _plan(
        "[upsample]\nstride=2\n\n[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
    )
    assert p.layers[0].stride == (0.5, 0.5) and p.layers[0].receptive_field == (1, 1)
    assert p.layers[1].receptive_field == (2, 2)


def test_a_layer_that_reads_nothing() -> None:
    p = _plan(
        "[implicit]\nfilters=3\n\n[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
    )
    assert p.layers[0].receptive_field == (0, 0) and p.layers[0].stride == (0, 0)


def test_a_copied_layer_says_what_it_needs() -> None:
    import copy

    lp = copy.deepcopy(_plan("[convolutional]\nfilters=2\nsize=1\nactivation=linear\n").layers[0])
    assert (
        lp.n_params == 2 + 2 * 3 and lp.output_bytes == 4 * 2 * 64 * 64
    )  # these need nothing else
    with pytest.raises(dwf.DwfError, match="not part of a plan"):
        _ = lp.bflops


def test_figures_are_in_the_json_layer_records() -> None:
    p = _plan("[convolutional]\nfilters=2\nsize=3\nstride=2\npad=1\nactivation=linear\n")
    d = p.layers[0].to_dict()
    assert {
        k: d[k] for k in ("n_params", "n_trainable", "output_bytes", "receptive_field", "stride")
    } == {
        "n_params": 2 + 2 * 27,
        "n_trainable": 2 + 2 * 27,
        "output_bytes": 4 * 2 * 32 * 32,
        "receptive_field": [3, 3],
        "stride": [2, 2],
    }
    assert d["bflops"] == p.layers[0].bflops
    json.dumps(d)


# -- receptive field: Darknet's own show_receptive_field, for the networks it computes exactly ----
# parser.c accumulates, per layer, rf += (size + (dilation - 1) * 2 - 1) * scale and
# scale *= stride; a route takes the largest of its inputs; upsample divides the scale. That is
# exact for networks of plain convolutions, pooling, routes, shortcuts and upsampling.
_PLAIN = {"convolutional", "maxpool", "route", "shortcut", "upsample", "yolo", "dropout"}


def darknet_receptive_fields(sections: list[tuple[str, dict[str, str]]]) -> list[int] | None:
    kinds = {
        "[convolutional]": "convolutional",
        "[conv]": "convolutional",
        "[maxpool]": "maxpool",
        "[max]": "maxpool",
        "[route]": "route",
        "[shortcut]": "shortcut",
        "[upsample]": "upsample",
        "[yolo]": "yolo",
        "[dropout]": "dropout",
    }
    rf, scale = 1, 1
    per_layer: list[tuple[int, int]] = []
    for index, (header, o) in enumerate(sections[1:]):
        t = kinds.get(header)
        if t is None or t not in _PLAIN or o.get("antialiasing") or o.get("maxpool_depth"):
            return None
        if t == "route":
            rf = scale = 0
            for v in o["layers"].split(","):
                i = c_atoi(v, 0)
                i = i if i >= 0 else index + i
                rf, scale = max(rf, per_layer[i][0]), max(scale, per_layer[i][1])
        elif t == "upsample":
            scale //= c_atoi(o.get("stride"), 2)
        else:
            size = stride = dilation = 1
            if t in ("convolutional", "maxpool"):
                stride = c_atoi(o.get("stride"), 1)
                size = c_atoi(o.get("size"), 1 if t == "convolutional" else stride)
                if o.get("stride_x") or o.get("stride_y"):
                    return None
            if t == "convolutional":
                dilation = c_atoi(o.get("dilation"), 1) if size > 1 else 1
                if dilation > 1 and size != 3:
                    return None  # Darknet's increase is exact for 3×3 only
            rf += max(0, size + (dilation - 1) * 2 - 1) * scale
            scale *= max(stride, 1)
        per_layer.append((rf, scale))
    return [r for r, _ in per_layer]


def test_receptive_fields_agree_with_darknets_printout() -> None:
    checked = []
    for cfg in sorted((shared_path("conformance") / "cfg" / "alexeyab").glob("*.cfg")):
        refs = darknet_receptive_fields(read_sections(cfg))
        if refs is None:
            continue
        plan = dwf.plan(cfg)
        assert [lp.receptive_field[1] for lp in plan] == refs, cfg.name
        checked.append(cfg.stem)
    assert {"yolov3", "yolov4", "yolov4-tiny", "yolov3-tiny", "yolov7-tiny"} <= set(checked)
