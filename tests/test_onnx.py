"""The ONNX export computes what Darknet computes.

Three references (issue 14):
1. Darknet itself: ``../shared/forward`` holds AlexeyAB Darknet's outputs for the real networks
   (cut before their first detection layer) on a fixed random input.
2. OpenCV's Darknet importer on hypothesis-generated networks of the layer types it supports,
   with batch-norm variances in [0.5, 1.5] (where OpenCV's epsilon does not matter).
3. ``darknet_reference``, a numpy model of Darknet's CPU loops written from the spec, layer by
   layer, for what OpenCV lacks (connected + batch norm, weighted shortcuts, activations, the
   pjreddie dialect's epsilon, maxpool_depth, reorg3d, legacy transposed connected weights …).

Each runs with onnxruntime; the tests skip without onnx/onnxruntime/OpenCV, and CI installs them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED, shared_path
from darknet_reference import forward as reference_forward
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edit import legacy_header

import dwf
from dwf.format.cfg import tokenize

# CI (.ci/run, which sets DWF_REQUIRE_SHARED) installs onnx, onnxruntime and OpenCV: there a
# missing one is a failure, not a skip.
REQUIRED = bool(os.environ.get("DWF_REQUIRE_SHARED"))


def _need(module: str) -> Any:
    if REQUIRED:
        return importlib.import_module(module)
    return pytest.importorskip(module)


onnx = _need("onnx")
ort = _need("onnxruntime")

Array = np.ndarray[Any, Any]
DETECTION = ("yolo", "region", "Gaussian_yolo", "detection")
TOL = 1e-4  # relative to the largest output value


def rel_err(got: Array, want: Array) -> float:
    got, want = np.asarray(got, np.float64).reshape(-1), np.asarray(want, np.float64).reshape(-1)
    assert got.shape == want.shape, (got.shape, want.shape)
    # Darknet computes NaN in places (its [lrn] can take a negative power): the same places
    assert np.array_equal(np.isnan(got), np.isnan(want)), "NaN in different places"
    got, want = got[~np.isnan(want)], want[~np.isnan(want)]
    if not want.size:
        return 0.0
    scale = max(float(np.abs(want).max()), 1e-30)
    return float(np.abs(got - want).max()) / scale


def run(model: Path, x: Array, extra: list[str] | None = None) -> dict[str, Array]:
    """Run the model with onnxruntime; ``extra`` layer tensors become outputs too."""
    if extra:
        m = onnx.load(str(model), load_external_data=False)
        have = {o.name for o in m.graph.output}
        for name in extra:
            if name not in have:
                m.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
        model = model.with_name(model.stem + ".all.onnx")
        onnx.save(m, str(model))
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))


def cut_before_detection(text: str) -> str:
    """The forward README's rule: the cfg up to the first detection section."""
    keep = []
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("[") and s[1:].split("]")[0].strip() in DETECTION:
            break
        keep.append(line)
    return "\n".join(keep)


# -- 1. Darknet itself ---------------------------------------------------------------------------
def _forward_cases() -> list[str]:
    index = SHARED / "forward" / "index.json"
    return sorted(json.loads(index.read_text())) if index.exists() else ["(absent)"]


def _source(realweights: Path, weights_name: str) -> Path:
    for folder in sorted(realweights.iterdir()):
        if (folder / weights_name).exists():
            return folder
    raise AssertionError(f"{weights_name} not in {realweights}")


@pytest.mark.parametrize("name", _forward_cases())
def test_darknet_forward_outputs(name: str, tmp_path: Path) -> None:
    forward = shared_path("forward")
    realweights = shared_path("realweights")
    case = json.loads((forward / "index.json").read_text())[name]
    folder = _source(realweights, case["weights"])
    text = cut_before_detection((folder / case["cfg"]).read_text(errors="replace"))
    (tmp_path / "net.cfg").write_text(text)
    plan = dwf.Plan.from_text(text)
    assert len(plan.layers) == case["cut_layers"]
    assert plan.layers[-1].name == case["last_layer"]
    with dwf.open(folder / case["weights"], folder / case["cfg"]) as src:
        hsize = src.header.size
    with open(folder / case["weights"], "rb") as fh:
        (tmp_path / "net.weights").write_bytes(fh.read(hsize + 4 * plan.total_floats))

    model = tmp_path / "net.onnx"
    dwf.export(tmp_path / "net.weights", model, cfg=tmp_path / "net.cfg")
    x = np.random.default_rng(0).random(tuple(case["input_shape"]), dtype=np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == case["input_sha256"]
    outs = run(model, x)
    assert list(outs) == [case["last_layer"]]
    want = np.load(forward / f"{name}.npz")["output"]
    assert rel_err(outs[case["last_layer"]], want) < TOL
    # zero-copy: the model is the graph only; every weight points into the .weights file
    assert model.stat().st_size < 200_000
    m = onnx.load(str(model), load_external_data=False)
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            assert {e.key: e.value for e in t.external_data}["location"] == "net.weights"


def test_full_network_outputs_and_metadata(tmp_path: Path) -> None:
    """yolo-fastest-1.1 whole: one output per [yolo] input, in order, with anchors metadata;
    the first equals Darknet's output for the network cut before its first [yolo]."""
    folder = shared_path("realweights", "yolo-fastest-1.1")
    forward = shared_path("forward")
    work = tmp_path / "m"
    work.mkdir()
    for p in folder.iterdir():
        shutil.copy(p, work / p.name)
    model = work / "yolo-fastest-1.1.onnx"
    dwf.export(work / "yolo-fastest-1.1.weights", model)
    assert model.stat().st_size < 100_000
    linked = tmp_path / "linked"
    linked.mkdir()
    for p in folder.iterdir():  # ONNX refuses external data behind a link: embedded then
        os.symlink(p, linked / p.name)
    dwf.export(linked / "yolo-fastest-1.1.weights", linked / "m.onnx")
    assert (linked / "m.onnx").stat().st_size > 1_300_000
    plan = dwf.plan(folder / "yolo-fastest-1.1.cfg")
    yolos = [lp for lp in plan.layers if lp.type == "yolo"]
    m = onnx.load(str(model), load_external_data=False)
    assert [o.name for o in m.graph.output] == [plan.layers[y.index - 1].name for y in yolos]
    assert m.opset_import[0].version >= 17
    props = {p.key: p.value for p in m.metadata_props}
    for y in yolos:
        meta = json.loads(props[f"darknet.{y.name}"])
        opts = {o.key: o.value for o in tokenize(plan.text).sections[y.index + 1].options}
        assert meta["anchors"] == [float(v) for v in opts["anchors"].split(",")]
        assert meta["mask"] == [int(v) for v in opts["mask"].split(",")]
        assert meta["classes"] == int(opts["classes"])
        assert meta["scale_x_y"] == float(opts.get("scale_x_y", 1))
        assert meta["new_coords"] == 0
        assert meta["input"] == plan.layers[y.index - 1].name
    assert json.loads(props["darknet.detection_layers"]) == [y.name for y in yolos]
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    outs = run(model, x)
    want = np.load(forward / "yolo-fastest-1.1.npz")["output"]
    first = plan.layers[yolos[0].index - 1].name
    assert rel_err(outs[first], want) < TOL
    assert outs[first].shape == (1, *plan.layers[yolos[0].index - 1].out_shape)


# -- cfg generation ------------------------------------------------------------------------------
OPENCV_ACTS = ["linear", "leaky", "relu", "logistic", "tanh", "swish", "mish"]
# activations Darknet defines element by element (the normalize_channels ones work across
# channels and exist only in convolutional layers)
ALL_ACTS = [
    "linear",
    "leaky",
    "relu",
    "relu6",
    "logistic",
    "loggy",
    "tanh",
    "elu",
    "selu",
    "gelu",
    "relie",
    "ramp",
    "plse",
    "stair",
    "hardtan",
    "lhtan",
    "swish",
    "mish",
    "hard_mish",
    "revleaky",
    "normalize_channels",
    "normalize_channels_softmax",
    "normalize_channels_softmax_maxval",
]
ELEMENTWISE = [a for a in ALL_ACTS if not a.startswith("normalize_channels")]


@st.composite
def networks(draw: st.DrawFn, opencv: bool) -> str:
    """cfg text of a small random network; ``opencv``: only what OpenCV's importer runs as
    Darknet does (explicit strides/sizes, single-from shortcuts, its activations)."""
    c = draw(st.integers(1, 3))
    h = draw(st.integers(4, 12)) * 2
    w = draw(st.integers(4, 12)) * 2
    lines = [f"[net]\nchannels={c}\nheight={h}\nwidth={w}\n"]
    shapes: list[tuple[int, int, int]] = []  # (c, h, w) per layer; h=w=0 means flat
    acts = OPENCV_ACTS if opencv else ALL_ACTS
    elementwise = OPENCV_ACTS if opencv else ELEMENTWISE
    cur = (c, h, w)
    n_layers = draw(st.integers(2, 7))
    flat_mode = False
    kinds = [
        "conv",
        "conv",
        "maxpool",
        "route",
        "shortcut",
        "upsample",
        "dropout",
        "se",
        "sam",
        "reorg",
        "res",
        "res",
    ]
    terminal = ["avgpool", "connected", "softmax"]  # image in, flat out: the last ones
    if not opencv:
        kinds += [
            "conv_bn_dialect",
            "maxpool_depth",
            "local_avgpool",
            "reorg3d",
            "weighted",
            "downsample",
            "crop",
            "activation",
            "batchnorm",
            "route_groups",
            "normalization",
            "res",
        ]
    for step in range(n_layers):
        ci, hi, wi = cur
        before = len(lines)
        # OpenCV keeps connected/softmax outputs 2-D: only those may follow them there
        flat = hi == 0 or (opencv and flat_mode)
        kind = draw(st.sampled_from(kinds + terminal if step >= n_layers - 2 else kinds))
        if flat and kind not in ("connected", "softmax", "dropout"):
            kind = "connected"
        if kind in ("se", "sam", "dropout") and not shapes:
            continue  # they read an earlier layer (OpenCV also trips on a leading dropout)
        if kind == "softmax" and opencv and not flat and (hi, wi) != (1, 1):
            continue  # OpenCV's softmax runs over channels, Darknet's over the flat buffer
        flat_mode = flat_mode or kind in ("connected", "softmax")
        if kind in ("conv", "conv_bn_dialect"):
            n = draw(st.integers(1, 6))
            size = draw(st.sampled_from([1, 3] if opencv else [1, 2, 3]))
            stride = draw(st.sampled_from([1, 2]))
            pad = draw(st.sampled_from([0, 1]))
            if size > hi or size > wi:
                size = 1
            groups = draw(st.sampled_from([g for g in (1, 2, 3) if ci % g == 0 and n % g == 0]))
            bn = draw(st.integers(0, 1))
            act = draw(st.sampled_from(acts))
            extra = ""
            if not opencv:
                if draw(st.booleans()):
                    sy = draw(st.sampled_from([1, 2]))
                    extra += f"stride_x={stride}\nstride_y={sy}\n"
                    stride_y = sy
                else:
                    stride_y = stride
                if size > 1 and draw(st.booleans()):
                    extra += "dilation=2\n"
                if draw(st.booleans()) and not pad:
                    extra += f"padding={draw(st.integers(0, 2))}\n"
                if draw(st.integers(0, 5)) == 0:
                    extra += "flipped=1\n"
            else:
                stride_y = stride
            lines.append(
                f"[convolutional]\nfilters={n}\nsize={size}\nstride={stride}\npad={pad}\n"
                f"groups={groups}\nbatch_normalize={bn}\nactivation={act}\n{extra}"
            )
            shapes.append((n, -1, -1))
            cur = shapes[-1]
            del stride_y
        elif kind in ("maxpool", "local_avgpool"):
            size = draw(st.sampled_from([2, 3]))
            stride = draw(st.sampled_from([1, 2]))
            extra = ""
            if not opencv and draw(st.booleans()):
                extra = f"stride_x={draw(st.sampled_from([1, 2]))}\n"
            if not opencv and draw(st.booleans()):
                extra += f"padding={draw(st.integers(0, size))}\n"
            lines.append(f"[{kind}]\nsize={size}\nstride={stride}\n{extra}")
            shapes.append((ci, -1, -1))
        elif kind == "maxpool_depth":
            oc = draw(st.integers(1, min(ci, 3)))  # more would leave channels at -FLT_MAX
            lines.append(f"[maxpool]\nmaxpool_depth=1\nout_channels={oc}\n")
            shapes.append((-1, hi, wi))
        elif kind == "avgpool":
            lines.append("[avgpool]\n")
            shapes.append((ci, 1, 1))
        elif kind in ("route", "route_groups"):
            same = [i for i, s in enumerate(shapes) if s[1:] == (hi, wi) and s[1] > 0]
            refs = [len(shapes) - 1] if shapes else []
            if not refs:
                continue
            if len(same) > 1 and draw(st.booleans()):
                refs = [draw(st.sampled_from(same)), len(shapes) - 1]
            rel = ",".join(str(r - len(shapes)) for r in refs)
            extra = ""
            if kind == "route_groups":
                if any(shapes[r][0] % 2 for r in refs):
                    continue  # Darknet's route then records a shape that holds no tensor
                extra = "groups=2\ngroup_id=" + str(draw(st.integers(0, 1))) + "\n"
            lines.append(f"[route]\nlayers={rel}\n{extra}")
            shapes.append((-1, hi, wi))
        elif kind in ("shortcut", "weighted"):
            cands = [i for i, s in enumerate(shapes[:-1]) if s == cur]
            if not opencv:
                cands = [i for i, s in enumerate(shapes[:-1]) if s[1:] == cur[1:] and s[1] > 0]
            if not cands:
                continue
            frm = [draw(st.sampled_from(cands))]
            if kind == "weighted" and len(cands) > 1 and draw(st.booleans()):
                frm.append(draw(st.sampled_from(cands)))
            rel = ",".join(str(i - len(shapes)) for i in frm)
            act = draw(st.sampled_from(elementwise))
            extra = ""
            if kind == "weighted":
                wt = draw(st.sampled_from(["per_feature", "per_channel"]))
                norm = draw(st.sampled_from(["relu", "softmax"]))
                extra = f"weights_type={wt}\nweights_normalization={norm}\n"
            lines.append(f"[shortcut]\nfrom={rel}\nactivation={act}\n{extra}")
            shapes.append(cur)
        elif kind == "res":
            act = draw(st.sampled_from(elementwise))
            lines.append(
                f"[convolutional]\nfilters={ci}\nsize=3\npad=1\nbatch_normalize=1\n"
                f"activation={act}\n"
            )
            extra = ""
            if not opencv and draw(st.booleans()):
                wt = draw(st.sampled_from(["per_feature", "per_channel"]))
                norm = draw(st.sampled_from(["relu", "softmax"]))
                extra = f"weights_type={wt}\nweights_normalization={norm}\n"
            lines.append(f"[shortcut]\nfrom=-2\nactivation={act}\n{extra}")
        elif kind == "upsample":
            if hi * wi > 200:
                continue
            lines.append("[upsample]\nstride=2\n")
            shapes.append((ci, hi * 2, wi * 2))
        elif kind == "downsample":
            if hi < 2 or wi < 2:
                continue
            lines.append("[upsample]\nstride=-2\n" + ("scale=0.5\n" if draw(st.booleans()) else ""))
            shapes.append((ci, hi // 2, wi // 2))
        elif kind in ("reorg", "reorg3d"):
            if hi % 2 or wi % 2 or (kind == "reorg" and ci % 4):
                continue  # Darknet's reorg_cpu divides by c / stride² (0 for fewer channels)
            rev = 0
            if kind == "reorg3d":  # reorg_cpu then runs on c / stride² channels
                rev = draw(st.integers(0, 1)) if ci % 16 == 0 else 0
            elif not opencv and ci % 4 == 0:
                rev = draw(st.integers(0, 1))
            lines.append(f"[{kind}]\nstride=2\nreverse={rev}\n")
            shapes.append((-1, -1, -1))
        elif kind == "dropout":
            lines.append("[dropout]\nprobability=.5\n")
            shapes.append(cur)
        elif kind == "se":
            lines.append("[avgpool]\n")
            lines.append(f"[convolutional]\nfilters={ci}\nsize=1\nactivation=logistic\n")
            lines.append(
                f"[scale_channels]\nfrom=-3\nactivation={draw(st.sampled_from(elementwise))}\n"
                if not opencv
                else "[scale_channels]\nfrom=-3\n"
            )
            shapes += [(ci, 1, 1), (ci, 1, 1), cur]
        elif kind == "sam":
            lines.append(f"[convolutional]\nfilters={ci}\nsize=1\nactivation=logistic\n")
            lines.append("[sam]\nfrom=-2\n")
            shapes += [cur, cur]
        elif kind == "connected":
            out = draw(st.integers(1, 8))
            bn = 0 if opencv else draw(st.integers(0, 1))
            act = draw(st.sampled_from(acts[:5] if opencv else ELEMENTWISE))
            lines.append(f"[connected]\noutput={out}\nbatch_normalize={bn}\nactivation={act}\n")
            shapes.append((out, 0, 0))
        elif kind == "softmax":
            g = ""
            if not opencv and draw(st.booleans()):
                g = "temperature=2\n"
            lines.append(f"[softmax]\n{g}")
            shapes.append((0, 0, 0))
        elif kind == "crop":
            if hi < 4 or wi < 4:
                continue
            lines.append(
                f"[crop]\ncrop_height={hi - 2}\ncrop_width={wi - 2}\n"
                + ("noadjust=1\n" if draw(st.booleans()) else "")
            )
            shapes.append((ci, hi - 2, wi - 2))
        elif kind == "activation":
            lines.append(f"[activation]\nactivation={draw(st.sampled_from(ELEMENTWISE))}\n")
            shapes.append(cur)
        elif kind == "batchnorm":
            lines.append("[batchnorm]\n")
            shapes.append(cur)
        elif kind == "implicit":
            continue
        elif kind == "normalization":
            if ci < 3:
                continue
            lines.append("[normalization]\nsize=3\nalpha=0.1\nbeta=0.75\nkappa=2\n")
            shapes.append(cur)
        # the real shape comes from dwf's planner (checked against Darknet elsewhere); a
        # layer Darknet would not build (kernel larger than the input …) is dropped again
        try:
            plan = dwf.Plan.from_text("\n".join(lines))
        except dwf.DwfError:
            del lines[before:]
            continue
        shapes = [
            (lp.out_c, lp.out_h, lp.out_w) if lp.out_h else (lp.outputs, 0, 0) for lp in plan.layers
        ]
        cur = shapes[-1]
        if cur[1] and (cur[1] < 2 or cur[2] < 2) and cur[1:] != (1, 1):
            break
    if not shapes:
        lines.append("[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    return "\n".join(lines)


def write_net(
    folder: Path, text: str, seed: int, dialect: str = "alexeyab", header: dwf.Header | None = None
) -> tuple[Path, dwf.Plan, dict[str, dict[str, Array]]]:
    """cfg + weights with random arrays; batch-norm variances uniform in [0.5, 1.5]."""
    plan = dwf.Plan.from_text(text, dialect=dialect)
    rng = np.random.default_rng(seed)
    arrays: dict[str, dict[str, Array]] = {}
    for lp, a in plan.arrays():
        if a.name.endswith("rolling_variance"):
            v = rng.uniform(0.5, 1.5, a.shape)
        else:
            v = rng.normal(0, 0.5, a.shape)
        arrays.setdefault(lp.name, {})[a.name] = v.astype(np.float32)
    (folder / "net.cfg").write_text(text)
    flat = {f"{k}.{n}": v for k, d in arrays.items() for n, v in d.items()}
    dwf.save(folder / "net.weights", plan, flat, header=header)
    return folder / "net.weights", plan, arrays


def options(text: str) -> dict[int, dict[str, str]]:
    doc = tokenize(text)
    return {
        i: {o.key: o.value for o in sec.options if o.value is not None}
        for i, sec in enumerate(doc.sections[1:])
    }


# -- 2. OpenCV -----------------------------------------------------------------------------------
OPENCV_SETTINGS = settings(
    max_examples=220,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@pytest.mark.slow  # OpenCV imports every model (~2.5 s)
@OPENCV_SETTINGS
@given(text=networks(opencv=True), seed=st.integers(0, 2**16))
def test_matches_opencv(tmp_path_factory: pytest.TempPathFactory, text: str, seed: int) -> None:
    cv2 = _need("cv2")
    folder = tmp_path_factory.mktemp("cv")
    weights, plan, _ = write_net(folder, text, seed)
    model = folder / "net.onnx"
    dwf.export(weights, model, cfg=folder / "net.cfg")
    net = plan.net
    x = np.random.default_rng(seed).random((1, net.channels, net.height, net.width), np.float32)
    got = list(run(model, x).values())[-1]
    cvnet = cv2.dnn.readNetFromDarknet(str(folder / "net.cfg"), str(weights))
    cvnet.setInput(x)
    want = cvnet.forward()
    assert rel_err(got, want) < TOL, text


# -- 3. numpy reference, layer by layer ----------------------------------------------------------
REF_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


def check_against_reference(
    folder: Path,
    text: str,
    seed: int,
    dialect: str = "alexeyab",
    header: dwf.Header | None = None,
    batch: int = 1,
) -> None:
    """Every layer's output for ``batch`` random images equals the numpy reference's."""
    weights, plan, arrays = write_net(folder, text, seed, dialect, header)
    model = folder / "net.onnx"
    dwf.export(weights, model, cfg=folder / "net.cfg", dialect=dialect)
    net = plan.net
    shape = (batch, net.channels, net.height, net.width)
    x = np.random.default_rng(seed).random(shape, np.float32)
    names = [lp.name for lp in plan.layers]
    got = run(model, x, extra=names)
    for b in range(batch):
        want = reference_forward(plan, arrays, x[b].reshape(-1), options(text))
        for lp, ref in zip(plan.layers, want, strict=True):
            assert rel_err(got[lp.name][b], ref) < TOL, f"{lp.name} ({lp.type}), image {b}\n{text}"


@pytest.mark.slow  # every model run beside a numpy reference (~1.7 s)
@REF_SETTINGS
@given(text=networks(opencv=False), seed=st.integers(0, 2**16))
def test_matches_numpy_reference(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    check_against_reference(tmp_path_factory.mktemp("ref"), text, seed)


@settings(REF_SETTINGS, max_examples=40)
@given(text=networks(opencv=False), seed=st.integers(0, 2**16))
def test_pjreddie_dialect_matches_numpy_reference(
    tmp_path_factory: pytest.TempPathFactory, text: str, seed: int
) -> None:
    if any(k in text for k in ("weights_type", "stride_x", "maxpool_depth", "group_id")):
        return  # AlexeyAB-only options: pjreddie plans them differently, on purpose
    try:
        plan = dwf.Plan.from_text(text, dialect="pjreddie")
    except dwf.DwfError:
        return
    if not all(lp.known for lp in plan.layers):
        return  # a section pjreddie does not know (local_avgpool, reorg3d, scale_channels …)
    check_against_reference(tmp_path_factory.mktemp("pj"), text, seed, "pjreddie")


CONNECTED_BN = """\
[net]
channels=2
height=5
width=4

[convolutional]
filters=3
size=3
pad=1
activation=leaky

[connected]
output=7
batch_normalize=1
activation=mish

[connected]
output=5
activation=gelu
"""


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_connected_batch_norm_and_legacy_transposed_header(tmp_path: Path, dialect: str) -> None:
    """Connected + BN (stored after the weights), with a legacy header whose connected weights
    are stored transposed: a Gemm reads them as stored, no copy."""
    legacy = legacy_header()
    assert legacy.connected_transposed
    check_against_reference(tmp_path, CONNECTED_BN, 3, dialect, legacy)
    m = onnx.load(str(tmp_path / "net.onnx"), load_external_data=False)
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert gemms and all(next(a.i for a in n.attribute if a.name == "transB") == 0 for n in gemms)


def test_pjreddie_epsilon_is_not_alexeyabs(tmp_path: Path) -> None:
    """With tiny variances the two dialects' batch norms differ, and each export follows its own."""
    text = "[net]\nchannels=1\nheight=3\nwidth=3\n[convolutional]\nfilters=2\nsize=1\nbatch_normalize=1\nactivation=linear\n"  # noqa: E501
    outs = {}
    for dialect in ("alexeyab", "pjreddie"):
        folder = tmp_path / dialect
        folder.mkdir()
        plan = dwf.Plan.from_text(text, dialect=dialect)
        arrays = {
            "conv_0.biases": np.zeros(2, np.float32),
            "conv_0.scales": np.ones(2, np.float32),
            "conv_0.rolling_mean": np.zeros(2, np.float32),
            "conv_0.rolling_variance": np.full(2, 1e-6, np.float32),
            "conv_0.weights": np.ones((2, 1, 1, 1), np.float32),
        }
        (folder / "net.cfg").write_text(text)
        dwf.save(folder / "net.weights", plan, arrays)
        dwf.export(
            folder / "net.weights", folder / "net.onnx", cfg=folder / "net.cfg", dialect=dialect
        )
        outs[dialect] = run(folder / "net.onnx", np.ones((1, 1, 3, 3), np.float32))["conv_0"]
    np.testing.assert_allclose(outs["alexeyab"], 1 / np.sqrt(1e-6 + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(outs["pjreddie"], 1 / (np.sqrt(1e-6) + 1e-6), rtol=1e-5)


@pytest.mark.parametrize("act", [*ALL_ACTS, "no_such_activation"])
def test_every_activation(tmp_path: Path, act: str) -> None:
    other = act if act in ELEMENTWISE else "linear"  # normalize_channels: conv only
    text = (
        "[net]\nchannels=3\nheight=6\nwidth=5\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
        f"activation={act}\n[shortcut]\nfrom=-1\nactivation={other}\n"
        f"[activation]\nactivation={other}\n"
    )
    check_against_reference(tmp_path, text, 7)


def test_weights_stored_in_every_mode_give_the_same_model(tmp_path: Path) -> None:
    text = CONNECTED_BN
    weights, plan, _ = write_net(tmp_path, text, 5)
    x = np.random.default_rng(1).random((1, 2, 5, 4), np.float32)
    external = tmp_path / "a.onnx"
    dwf.export(weights, external, cfg=tmp_path / "net.cfg")
    embedded = tmp_path / "b.onnx"
    dwf.export(weights, embedded, cfg=tmp_path / "net.cfg", embed=True)
    data = tmp_path / "c.onnx"
    dwf.export(weights, data, cfg=tmp_path / "net.cfg", data=tmp_path / "c.data")
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = other / "d.onnx"
    dwf.export(weights, moved, cfg=tmp_path / "net.cfg")  # not beside the weights: embedded
    want = run(external, x)["connected_2"]
    for m in (embedded, data, moved):
        np.testing.assert_array_equal(run(m, x)["connected_2"], want)
    assert (tmp_path / "c.data").stat().st_size == 4 * plan.total_floats
    assert external.stat().st_size < embedded.stat().st_size
    ext = onnx.load(str(external), load_external_data=False)
    spans = {f"{lp.name}.{a.name}": a.byte_span(20) for lp, a in plan.arrays()}
    for t in ext.graph.initializer:
        if t.name in spans:
            info = {e.key: e.value for e in t.external_data}
            start, stop = spans[t.name]
            assert (info["location"], int(info["offset"]), int(info["length"])) == (
                "net.weights",
                start,
                stop - start,
            )
    # the export moved with its weights still runs
    shutil.copy(weights, other / "net.weights")


def test_flipped_convolution_is_transposed_by_a_node(tmp_path: Path) -> None:
    text = "[net]\nchannels=3\nheight=6\nwidth=6\n[convolutional]\nfilters=4\nsize=3\npad=1\nflipped=1\nactivation=linear\n"  # noqa: E501
    check_against_reference(tmp_path, text, 2)
    m = onnx.load(str(tmp_path / "net.onnx"), load_external_data=False)
    init = {t.name: list(t.dims) for t in m.graph.initializer}
    assert init["conv_0.weights"] == [27, 4]  # as stored: (c*k*k, n)
    assert any(n.op_type == "Transpose" for n in m.graph.node)


NET = "[net]\nchannels={c}\nheight={h}\nwidth={w}\n"
CONV = "[convolutional]\nfilters={n}\nsize=3\npad=1\nactivation=leaky\n"
LAYER_CASES = {
    "local": NET.format(c=3, h=7, w=6)
    + "[local]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
    "[local]\nfilters=2\nsize=2\nstride=1\npad=0\nactivation=tanh\n",
    "reorg-reverse": NET.format(c=2, h=4, w=6)
    + CONV.format(n=8)
    + "[reorg]\nstride=2\nreverse=1\n"
    + CONV.format(n=4)
    + "[reorg]\nstride=2\n",
    "reorg3d-reverse": NET.format(c=2, h=4, w=6)
    + CONV.format(n=16)
    + "[reorg3d]\nstride=2\nreverse=1\n"
    "[reorg3d]\nstride=2\n",
    "maxpool-wide-padding": NET.format(c=2, h=9, w=7) + "[maxpool]\nsize=3\nstride=2\npadding=6\n"
    "[maxpool]\nsize=5\nstride=1\n[maxpool]\nsize=2\nstride=3\npadding=0\n",
    "maxpool-depth-uneven": NET.format(c=2, h=4, w=4)
    + CONV.format(n=5)
    + "[maxpool]\nmaxpool_depth=1\nout_channels=3\n",
    "lrn": NET.format(c=2, h=4, w=4)
    + CONV.format(n=7)
    + "[lrn]\nsize=5\nalpha=0.3\nbeta=0.75\nkappa=1\n",
    "implicit": NET.format(c=2, h=4, w=4) + "[implicit]\nfilters=3\natoms=2\n",
    "upsample-scale": NET.format(c=2, h=5, w=5) + "[upsample]\nstride=3\nscale=0.5\n"
    "[upsample]\nstride=-2\n",
    "route-flat": NET.format(c=2, h=4, w=4) + CONV.format(n=3) + "[maxpool]\nsize=2\nstride=2\n"
    "[route]\nlayers=-2,-1\n[connected]\noutput=3\nactivation=linear\n",
    "shortcut-channel-mismatch": NET.format(c=2, h=4, w=4)
    + CONV.format(n=3)
    + CONV.format(n=5)
    + "[shortcut]\nfrom=-2\n"
    + CONV.format(n=2)
    + "[shortcut]\nfrom=-2,-3\n",
    "dilated-strided": NET.format(c=3, h=11, w=9) + "[convolutional]\nfilters=4\nsize=3\n"
    "stride_x=2\nstride_y=1\npadding=1\ndilation=3\nactivation=linear\n",
    "conv-groups-uneven-channels": NET.format(c=5, h=4, w=4) + "[convolutional]\nfilters=4\n"
    "size=1\ngroups=2\nactivation=linear\n",
    "antialiasing": NET.format(c=2, h=9, w=8)
    + "[convolutional]\nfilters=3\nsize=3\nstride=2\npad=1\nantialiasing=1\nactivation=leaky\n"
    + "[convolutional]\nfilters=4\nsize=1\nstride=2\nantialiasing=2\nactivation=linear\n"
    + "[maxpool]\nsize=2\nstride=2\nantialiasing=1\n"
    + CONV.format(n=2),
    "antialiasing-referenced": NET.format(c=2, h=8, w=8)
    + "[maxpool]\nsize=2\nstride=2\nantialiasing=2\n"
    + CONV.format(n=2)
    + "[route]\nlayers=-1\n",
    "scale-wh": NET.format(c=3, h=4, w=5)
    + CONV.format(n=4)
    + "[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n"
    + "[scale_channels]\nfrom=-2\nscale_wh=1\n",
    "share-index": NET.format(c=2, h=5, w=5)
    + "[convolutional]\nfilters=2\nsize=3\npad=1\nbatch_normalize=1\nactivation=mish\n"
    + "[convolutional]\nfilters=2\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"
    + "[convolutional]\nfilters=2\nsize=3\npad=1\nbatch_normalize=1\nshare_index=-2\n"
    + "activation=linear\n",
    "softmax-groups": NET.format(c=4, h=2, w=2) + "[softmax]\ngroups=4\ntemperature=3\n",
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_cases_match_numpy_reference(tmp_path: Path, name: str) -> None:
    check_against_reference(tmp_path, LAYER_CASES[name], 11, batch=3)


PJREDDIE_CASES = {
    "l2norm-logistic": NET.format(c=2, h=4, w=4) + CONV.format(n=3) + "[l2norm]\n[logistic]\n",
    "batchnorm": NET.format(c=2, h=4, w=4) + CONV.format(n=3) + "[batchnorm]\n",
}


@pytest.mark.parametrize("name", sorted(PJREDDIE_CASES))
def test_pjreddie_layer_cases_match_numpy_reference(tmp_path: Path, name: str) -> None:
    check_against_reference(tmp_path, PJREDDIE_CASES[name], 11, "pjreddie")


REFUSED = {
    "rnn": "[rnn]\noutput=4\nhidden=4\n",
    "lstm": "[lstm]\noutput=4\n",
    "conv_lstm": "[conv_lstm]\noutput=2\nsize=3\npad=1\n",
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_recurrent_layers_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    text = (
        "[net]\nchannels=2\nheight=4\nwidth=4\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
        + REFUSED[kind]
    )
    weights, _, _ = write_net(tmp_path, text, 1)
    with pytest.raises(dwf.DwfError, match=rf"layer 1 \({kind}_1, {kind}\).*across time"):
        dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")
    assert not (tmp_path / "net.onnx").exists()


def test_reading_a_detection_layer_is_refused(tmp_path: Path) -> None:
    text = (
        "[net]\nchannels=2\nheight=4\nwidth=4\n[convolutional]\nfilters=6\nsize=1\n"
        "activation=linear\n[yolo]\nmask=0\nanchors=1,1\nclasses=1\n"
        "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
    )
    weights, _, _ = write_net(tmp_path, text, 1)
    with pytest.raises(dwf.DwfError, match=r"layer 2 \(conv_2, convolutional\).*yolo_1"):
        dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")


def test_partial_file_and_own_source_are_refused(tmp_path: Path) -> None:
    from dwf.tools.emit_onnx import to_onnx

    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 1)
    part = tmp_path / "part.weights"
    dwf.cut(weights, part, upto=2, cfg=tmp_path / "net.cfg")
    # dwf.export exports what a partial file holds (layers 0..1); the exporter itself refuses
    # a file that lacks layers, and says how to export what it holds
    dwf.export(part, tmp_path / "p.onnx", cfg=tmp_path / "net.cfg")
    assert [o.name for o in onnx.load(str(tmp_path / "p.onnx")).graph.output] == ["connected_1"]
    with (
        dwf.open(part, cfg=tmp_path / "net.cfg") as f,
        pytest.raises(
            dwf.DwfError, match=r"layer 2 \(connected_2, connected\) is not in the file.*upto=2"
        ),
    ):
        to_onnx(f, tmp_path / "q.onnx")
    with pytest.raises(dwf.DwfError, match="never writes over it"):
        dwf.export(weights, tmp_path / "x.onnx", cfg=tmp_path / "net.cfg", data=weights)
    with pytest.raises(dwf.DwfError, match="ONNX export only"):
        dwf.export(weights, tmp_path / "x.npz", cfg=tmp_path / "net.cfg", embed=True)
    with pytest.raises(dwf.DwfError, match="model's folder"):
        dwf.export(
            weights, tmp_path / "x.onnx", cfg=tmp_path / "net.cfg", data=tmp_path.parent / "x.data"
        )


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dwf.interfaces.cli import main

    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 4)
    cfg = str(tmp_path / "net.cfg")
    assert main(["export", str(weights), str(tmp_path / "a.onnx"), "--cfg", cfg]) == 0
    assert main(["export", str(weights), str(tmp_path / "b.bin"), "--format", "onnx", "--cfg",
                 cfg, "--data", str(tmp_path / "b.data")]) == 0  # fmt: skip
    assert main(["export", str(weights), str(tmp_path / "c.onnx"), "--embed", "--cfg", cfg]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"wrote {tmp_path / 'a.onnx'} (onnx, {(tmp_path / 'a.onnx').stat().st_size:,} bytes)"
    )
    x = np.random.default_rng(2).random((1, 2, 5, 4), np.float32)
    want = run(tmp_path / "a.onnx", x)["connected_2"]
    for name in ("b.bin", "c.onnx"):
        np.testing.assert_array_equal(run(tmp_path / name, x)["connected_2"], want)
    # an error is one line and exit code 2
    text = "[net]\nchannels=2\nheight=4\nwidth=4\n[rnn]\noutput=4\nhidden=4\n"
    rnn, _, _ = write_net(tmp_path, text, 1)
    code = main(["export", str(rnn), str(tmp_path / "r.onnx"), "--cfg", str(tmp_path / "net.cfg")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "layer 0 (rnn_0, rnn)" in err[0]


def test_onnx_options_for_another_format_lead_with_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Failed before: no file prefix, and the Python names first on the command line
    # ("decode= and letterbox= apply to the ONNX export only (dwf: --decode, --letterbox)")
    from dwf.interfaces.cli import main

    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 1)
    cfg, out = str(tmp_path / "net.cfg"), tmp_path / "out.npz"
    for flag in ("--decode", "--letterbox", "--embed"):
        assert main(["export", str(weights), str(out), "--cfg", cfg, flag]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"dwf: error: {out}: {flag} applies to the ONNX export only"), err
    assert main(["export", str(weights), str(tmp_path / "a.onnx"), "--cfg", cfg, "--letterbox"])
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dwf: error: {tmp_path / 'a.onnx'}: --letterbox corrects"), err
    with pytest.raises(dwf.DwfError, match=r"^.*out\.npz: decode= and letterbox= apply") as e:
        dwf.export(weights, out, cfg=cfg, decode=True)
    assert e.value.path == str(out)

def test_letterbox_without_decode_names_the_file_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Failed before: dwf.export opened and planned the weights, then said "letterbox=True
    # corrects decoded boxes: …" with no file prefix (the command line checks it up front)
    import dwf.tools.export as export_module

    weights, _, _ = write_net(tmp_path, CONNECTED_BN, 1)
    out = tmp_path / "a.onnx"

    def no_open(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("opened")

    monkeypatch.setattr(export_module, "opened", no_open)
    with pytest.raises(dwf.DwfError, match=r"a\.onnx: letterbox=True corrects decoded boxes") as e:
        dwf.export(weights, out, cfg=tmp_path / "net.cfg", letterbox=True)
    assert e.value.path == str(out) and not out.exists()



def test_reading_an_antialiased_layer_by_reference_is_refused(tmp_path: Path) -> None:
    """Darknet records the stride-1 size of an antialiased layer but leaves the blurred (smaller)
    data in its output, so a route reading it reads past that data."""
    text = NET.format(c=2, h=8, w=8) + "[maxpool]\nsize=2\nstride=2\nantialiasing=1\n"
    text += CONV.format(n=2) + "[route]\nlayers=-2\n"
    weights, _, _ = write_net(tmp_path, text, 1)
    with pytest.raises(dwf.DwfError, match=r"layer 2 \(route_2, route\).*antialiased"):
        dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")


def test_a_net_without_image_dimensions_takes_a_flat_input(tmp_path: Path) -> None:
    text = "[net]\ninputs=12\n[connected]\noutput=5\nactivation=tanh\n[dropout]\n[softmax]\n"
    weights, plan, arrays = write_net(tmp_path, text, 3)
    dwf.export(weights, tmp_path / "net.onnx", cfg=tmp_path / "net.cfg")
    x = np.random.default_rng(3).random((2, 12), np.float32)
    sess = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "input" and sess.get_inputs()[0].shape == ["N", 12]
    (got,) = sess.run(None, {"input": x})
    for b in range(2):
        want = reference_forward(plan, arrays, x[b], options(text))[-1]
        assert rel_err(got[b], want) < TOL


@pytest.mark.slow  # every corpus cfg exported (~3 s)
def test_every_corpus_cfg_exports_or_is_refused_by_name(tmp_path: Path) -> None:
    """The conformance corpus (yolov4, darknet53, enet, xnor, recurrent, …), each with a sparse
    file of zeros: an ONNX model the checker accepts, or a DwfError naming a layer."""
    corpus = shared_path("conformance", "cfg")
    exported = refused = 0
    for cfg in sorted(corpus.glob("*/*.cfg")):
        dialect = cfg.parent.name
        try:
            plan = dwf.plan(cfg, dialect=dialect)
        except dwf.DwfError:
            continue  # cfgs Darknet itself refuses are in the corpus too
        weights = tmp_path / "net.weights"
        header = dwf.Header(0, 2, 5 if dialect == "alexeyab" else 0, 0, 20)
        with open(weights, "wb") as fh:
            fh.write(header.encode())
            fh.truncate(plan.expected_size(20))
        try:
            dwf.export(weights, tmp_path / "net.onnx", cfg=cfg, dialect=dialect)
            exported += 1
        except dwf.DwfError as e:
            assert re.search(r"layer \d+ \(\w+_\d+, \w+\) cannot be exported", str(e)), str(e)
            refused += 1
    assert exported > 100 and refused > 10


def test_a_partial_file_says_what_it_holds_when_there_is_nothing_to_build(tmp_path: Path) -> None:
    """A partial file is exported as the layers it holds. When those hold no detection layer,
    --decode says so of the file (failed before: 'demo.cfg: has no [yolo] … layer', blaming a
    cfg that has two); a file holding only its header says it holds no layer (failed before:
    'demo.cfg:5: the cfg has [net] but no layers')."""
    from dwf.tools.demo import write_demo

    cfg, weights = write_demo(tmp_path)
    part, header_only = tmp_path / "p3.weights", tmp_path / "h.weights"
    dwf.cut(weights, part, 3)
    header_only.write_bytes(Path(weights).read_bytes()[:20])
    with pytest.raises(dwf.DwfError, match=r"holds layers 0\.\.3 of 22.*no \[yolo\]") as e:
        dwf.export(part, tmp_path / "o.onnx", cfg=cfg, decode=True)
    assert e.value.path == str(part)
    with pytest.raises(dwf.DwfError, match="holds no layer's weights") as e:
        dwf.export(header_only, tmp_path / "o.onnx", cfg=cfg)
    assert e.value.path == str(header_only)
    assert not (tmp_path / "o.onnx").exists()
