"""The network description (``dwf.format.network``): one entry per layer type, one per
activation, every decoding attribute resolved the way each dialect reads it, refusals with their
reasons, and a contract complete enough that an emitter written against it alone (numpy, in
``ir_numpy``) computes what the ONNX export computes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shared_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_numpy import OPS as NUMPY_OPS
from ir_numpy import run as run_numpy
from test_onnx import LAYER_CASES, PJREDDIE_CASES, networks, ort, rel_err, run, write_net

import dwf
from dwf.format.activations import ACTIVATIONS
from dwf.format.dialects import DIALECTS
from dwf.format.figures import inputs
from dwf.format.layers import LAYER_TYPES
from dwf.format.lowering import LOWERINGS, REFUSED
from dwf.format.network import DETECTION_TYPES, Network, describe
from dwf.format.ops import OPS
from dwf.tools import emit_onnx
from dwf.tools.demo import demo_cfg_text

DEMO_CFG = demo_cfg_text()

Array = np.ndarray[Any, Any]


def test_every_layer_type_has_one_entry() -> None:
    entries = [set(LOWERINGS), set(REFUSED), set(DETECTION_TYPES)]
    assert set(LAYER_TYPES) == set().union(*entries)
    assert sum(len(e) for e in entries) == len(set().union(*entries))  # each once


def test_every_activation_a_dialect_knows_has_a_formula() -> None:
    for d in DIALECTS.values():
        assert d.activations <= set(ACTIVATIONS), d.activations - set(ACTIVATIONS)
    assert set(ACTIVATIONS) == DIALECTS["alexeyab"].activations
    assert DIALECTS["pjreddie"].activations < DIALECTS["alexeyab"].activations
    assert {"mish", "swish", "gelu", "relu6"}.isdisjoint(DIALECTS["pjreddie"].activations)
    for a in ACTIVATIONS.values():
        assert a.formula and a.name


def test_the_onnx_emitter_implements_every_operation() -> None:
    assert set(emit_onnx._OPS) == set(OPS)
    assert set(NUMPY_OPS) | {"broadcast_batch"} == set(OPS)


def _valid(net: Network) -> None:
    """Every node reads values made before it, carries its op's attributes, and has a shape."""
    known = {*net.inputs, *net.weights, *net.constants}
    for node in net.nodes():
        spec = OPS[node.op]
        assert set(node.attrs) == set(spec.attrs), (node.op, dict(node.attrs))
        fixed = [i for i in spec.inputs if not i.endswith("?") and not i.startswith("*")]
        assert len(node.inputs) >= len(fixed), node
        assert set(node.inputs) <= known, (node, set(node.inputs) - known)
        known.add(node.output)
    assert set(net.outputs) <= known
    for lay in net.layers:
        assert (lay.refusal is None) or not lay.ops
        if lay.output is not None:
            assert lay.output == lay.name and lay.ops[-1].output == lay.name


def test_every_corpus_cfg_is_described() -> None:
    """The conformance corpus: every cfg dwf plans is described, each layer computed or refused
    with a reason, and the graph well formed."""
    corpus = shared_path("conformance", "cfg")
    described = refused = 0
    for cfg in sorted(corpus.glob("*/*.cfg")):
        try:
            plan = dwf.plan(cfg, dialect=cfg.parent.name)
        except dwf.DwfError:
            continue
        net = describe(plan)
        _valid(net)
        # Failed before: the description recorded the layers its lowering happened to read (a
        # [sam]'s from= before the previous layer; a refused layer's only up to its refusal)
        # beside figures.inputs, which the picture and the receptive field use. One answer now.
        for lp, lay in zip(plan.layers, net.layers, strict=True):
            assert lay.inputs == inputs(lp), (cfg.name, lp.index, lp.type)
        described += 1
        refused += bool(net.refused)
        for lay in net.refused:
            assert lay.refusal and not lay.ops
    assert described > 110 and refused > 10


def test_every_corpus_detector_is_described_with_its_decoding() -> None:
    """With decode=True, every corpus cfg with [yolo]/[region]/[Gaussian_yolo] layers gets
    the three decoded outputs (or a refusal naming a layer), and the graph stays well formed."""
    corpus = shared_path("conformance", "cfg")
    decoded = 0
    for cfg in sorted(corpus.glob("*/*.cfg")):
        try:
            plan = dwf.plan(cfg, dialect=cfg.parent.name)
        except dwf.DwfError:
            continue
        if not any(lp.type in ("yolo", "region", "Gaussian_yolo") for lp in plan.layers):
            continue
        try:
            net = describe(plan, decode=True, letterbox=True)
        except dwf.DwfError as e:  # detection layers of different class counts
            assert "classes" in str(e)
            continue
        _valid(net)
        if net.decoding is None:
            assert net.refused
            continue
        decoded += 1
        d = net.decoding
        assert net.outputs[-3:] == (d.boxes, d.objectness, d.probs)
        assert net.inputs == ("input", "image_size")
        assert net.shape(d.boxes) == (None, d.rows, 4)
        assert net.shape(d.probs) == (None, d.rows, d.classes)
        assert [s.layer for s in d.spans] == [x.name for x in net.detections]
    assert decoded > 40


def test_batch_norm_formula_per_dialect() -> None:
    text = "[net]\nchannels=1\nheight=3\nwidth=3\n[convolutional]\nfilters=2\nsize=1\nbatch_normalize=1\n"  # noqa: E501
    got = {}
    for dialect in ("alexeyab", "pjreddie"):
        bn = [
            n
            for n in describe(dwf.Plan.from_text(text, dialect=dialect)).nodes()
            if n.op == "batch_norm"
        ]
        got[dialect] = (bn[0].attrs["epsilon"], bn[0].attrs["epsilon_outside_sqrt"])
    assert got == {"alexeyab": (1e-5, False), "pjreddie": (1e-6, True)}


def test_weights_name_their_owner_and_stored_layout() -> None:
    text = LAYER_CASES["share-index"]
    net = describe(dwf.Plan.from_text(text))
    assert set(net.layers[2].weights) == {
        "conv_0.weights",
        "conv_0.biases",
        "conv_0.scales",
        "conv_0.rolling_mean",
        "conv_0.rolling_variance",
    }
    assert not net.weights["conv_0.rolling_mean"].trainable
    assert net.weights["conv_0.weights"].trainable
    flipped = describe(
        dwf.Plan.from_text(
            "[net]\nchannels=3\nheight=6\nwidth=6\n[convolutional]\nfilters=4\nsize=3\nflipped=1\n"
        )
    )
    w = flipped.weights["conv_0.weights"]
    assert w.transposed and w.shape == (27, 4) and w.spec.shape == (4, 3, 3, 3)
    conn = dwf.Plan.from_text("[net]\ninputs=6\n[connected]\noutput=3\n")
    legacy = dwf.Header(1001, 2, 0, 0, 16)  # a pre-2015 header: connected stored (in, out)
    assert describe(conn, legacy).weights["connected_0.weights"].shape == (6, 3)
    assert describe(conn).weights["connected_0.weights"].shape == (3, 6)


YOLO = """\
[net]
channels=2
height=4
width=4
[convolutional]
filters={filters}
size=1
activation=linear
[{kind}]
{options}
"""


def _head(kind: str, options: str, filters: int, dialect: str = "alexeyab") -> Any:
    plan = dwf.Plan.from_text(
        YOLO.format(kind=kind, options=options, filters=filters), dialect=dialect
    )
    (det,) = describe(plan).detections
    return det, plan


def test_yolo_attributes_as_darknet_reads_them() -> None:
    det, _ = _head(
        "yolo",
        "classes=1\nnum=3\nmask=1,2#x\nanchors=1,2,3#,4,5,6\n"
        "scale_x_y=1.05#tuned\nnew_coords=1#n\nnms_kind=diounms\nbeta_nms=0.5x",
        12,
    )
    assert det.mask == (1, 2) and det.num == 3 and det.classes == 1
    # AlexeyAB stops counting anchors at '#': 3 given, the rest stay 0.5
    assert det.anchors == (1.0, 2.0, 3.0, 0.5, 0.5, 0.5)
    assert (det.scale_x_y, det.new_coords, det.nms_kind, det.beta_nms) == (1.05, 1, "diounms", 0.5)
    assert det.input == "conv_0" and det.input_shape == (12, 4, 4)
    d = det.to_dict()
    assert d["options"]["scale_x_y"] == "1.05#tuned" and json.dumps(d)
    # pjreddie counts every comma and knows none of AlexeyAB's options
    det, _ = _head(
        "yolo",
        "classes=1\nnum=3\nmask=1,2#x,0\nanchors=1,2,3#,4,5,6\n"
        "scale_x_y=1.05\nnew_coords=1\nnms_kind=diounms",
        18,
        "pjreddie",
    )
    assert det.mask == (1, 2, 0)
    assert det.anchors == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert (det.scale_x_y, det.new_coords, det.nms_kind) == (1.0, 0, "default")


def test_detection_defaults_and_warnings() -> None:
    det, plan = _head("yolo", "classes=1\nnum=2\nnms_kind=fastnms", 12)
    assert det.mask == (0, 1) and det.anchors == (0.5,) * 4 and det.nms_kind == "default"
    assert any("nms_kind=fastnms" in w for w in plan.warnings)
    _, plan = _head("yolo", "classes=1\nnum=1\nmask=0\nanchors=1,2,3,4", 6)
    assert any("anchors= gives 4 values" in w for w in plan.warnings)
    _, plan = _head("yolo", "classes=1\nnum=1\nmask=3", 6)
    assert any("mask= names anchor 3" in w for w in plan.warnings)
    det, _ = _head(
        "Gaussian_yolo", "classes=1\nnum=1\nyolo_point=left_top\nnms_kind=cornersnms", 10
    )
    assert (det.yolo_point, det.nms_kind) == ("left_top", "cornersnms")


def test_region_and_detection_attributes() -> None:
    options = "classes=2\ncoords=4\nnum=2\nanchors=1,2,3,4\nsoftmax=1\nbackground=1\nbias_match=1"
    ab, _ = _head("region", options, 14)
    pj, _ = _head("region", options, 14, "pjreddie")
    assert (ab.softmax, ab.coords, ab.bias_match, ab.anchors) == (1, 4, 1, (1.0, 2.0, 3.0, 4.0))
    assert (ab.background, pj.background) == (0, 1)  # AlexeyAB never reads background=
    assert ab.tree is None and ab.mask == (0, 1)
    assert (
        describe(
            dwf.Plan.from_text(
                YOLO.format(kind="yolo", options="classes=1\nnum=1", filters=6).replace(
                    "[net]", "[net]\nletter_box=1#x"
                )
            )
        ).letter_box
        == 1
    )
    text = "[net]\ninputs=28\n[detection]\nclasses=2\ncoords=4\nnum=1\nside=2\nsqrt=1\nsoftmax=1\n"
    (det,) = describe(dwf.Plan.from_text(text)).detections
    assert (det.side, det.coords, det.sqrt, det.softmax, det.classes) == (2, 4, 1, 1, 2)


def test_refusals_are_described_with_their_reasons() -> None:
    text = (
        "[net]\nchannels=2\nheight=4\nwidth=4\n[rnn]\noutput=4\nhidden=4\n"
        "[convolutional]\nfilters=2\nsize=1\n[maxpool]\nsize=0\nstride=1\n"
    )
    net = describe(dwf.Plan.from_text(text))
    rnn, conv, pool = net.layers
    assert rnn.refusal == REFUSED["rnn"]
    assert conv.refusal is not None and "rnn_0" in conv.refusal and "refused" in conv.refusal
    assert pool.refusal is not None and "size=0" in pool.refusal
    with pytest.raises(
        dwf.UnsupportedLayerError,
        match=r"<cfg text>:5: layer 0 \(rnn_0, rnn\)"
        r" cannot be exported to PyTorch: a recurrent",
    ) as err:
        net.require("PyTorch")
    assert (err.value.line, err.value.index, err.value.type) == (5, 0, "rnn")


# -- a second emitter computes what the ONNX export computes --------------------------------------
def _numpy_matches_onnx(folder: Path, text: str, seed: int, dialect: str = "alexeyab") -> None:
    weights, plan, arrays = write_net(folder, text, seed, dialect)
    model = folder / "net.onnx"
    dwf.export(weights, model, cfg=folder / "net.cfg", dialect=dialect)
    net = describe(plan)
    shape = net.input_shape[1:]
    x = np.random.default_rng(seed).random((2, *shape), np.float32)  # type: ignore[arg-type]
    names = [lay.name for lay in net.layers if lay.output is not None]
    got = run(model, x, extra=names)
    flat = {f"{lp}.{a}": v for lp, d in arrays.items() for a, v in d.items()}
    env = run_numpy(net, flat, x)
    for name in names:
        assert rel_err(got[name], env[name]) < 1e-4, (name, text)


@pytest.mark.parametrize("letterbox", [False, True])
def test_numpy_emitter_decodes_what_onnx_decodes(tmp_path: Path, letterbox: bool) -> None:
    """The decoding is made of the same operations as the rest: the numpy emitter, which knows
    nothing of it, gives the ONNX model's boxes, objectness and probabilities."""
    weights, plan, arrays = write_net(tmp_path, DEMO_CFG, 3)
    model = tmp_path / "net.onnx"
    dwf.export(weights, model, cfg=tmp_path / "net.cfg", decode=True, letterbox=letterbox)
    net = describe(plan, decode=True, letterbox=letterbox)
    x = np.random.default_rng(1).random((2, 3, 64, 64), np.float32)
    sizes = np.array([[64, 64], [100, 37]], np.float32)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {"input": x, "image_size": sizes} if letterbox else {"input": x}
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    flat = {f"{lp}.{a}": v for lp, d in arrays.items() for a, v in d.items()}
    env = run_numpy(net, flat, x, **({"image_size": sizes} if letterbox else {}))
    for name in ("boxes", "objectness", "probs"):
        assert rel_err(got[name], env[name]) < 1e-5, name


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_numpy_emitter_matches_onnx_on_the_layer_cases(tmp_path: Path, name: str) -> None:
    _numpy_matches_onnx(tmp_path, LAYER_CASES[name], 5)


@pytest.mark.parametrize("name", sorted(PJREDDIE_CASES))
def test_numpy_emitter_matches_onnx_in_pjreddie(tmp_path: Path, name: str) -> None:
    _numpy_matches_onnx(tmp_path, PJREDDIE_CASES[name], 5, "pjreddie")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(text=networks(opencv=False), seed=st.integers(0, 2**16))
def test_numpy_emitter_matches_onnx_on_generated_networks(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    _numpy_matches_onnx(tmp_path_factory.mktemp("np"), text, seed)
