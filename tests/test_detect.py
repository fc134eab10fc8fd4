"""Detections exactly as Darknet finds them (issue 23).

Three references:
1. Darknet itself: ``../shared/detect`` holds AlexeyAB Darknet's detection-layer outputs and
   detections for the real networks on three photographs (fed the recorded input tensor).
2. ``darknet_detect_reference``, a numpy model of Darknet's detection C loops, written
   independently of dwf's decoding, on generated networks with every decoding option
   (``scale_x_y``, ``new_coords``, ``[Gaussian_yolo]`` points, ``[region]`` softmax, coords,
   background and classfix in both forks, letterbox, each ``nms_kind``).
3. The same model's ``resize_image``/``letterbox_image``, for the image preparation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import darknet_detect_reference as ref
import numpy as np
import pytest
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st

import dwf
from dwf.format import nms as dnms
from dwf.format.network import describe
from dwf.io import images

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
PIL = pytest.importorskip("PIL.Image")

Array = np.ndarray[Any, Any]
TOL = 1e-4


# -- generated networks -------------------------------------------------------------------------
def channels(head: dict[str, Any]) -> int:
    if head["type"] == "region":
        return int(head["num"] * (head.get("coords", 4) + head["classes"] + 1))
    extra = 9 if head["type"] == "Gaussian_yolo" else 5
    return len(head["mask"]) * (head["classes"] + extra)


def section(head: dict[str, Any]) -> str:
    lines = [f"[{head['type']}]"]
    for key, value in head.items():
        if key in ("type", "half", "w", "h"):
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def network(heads: list[dict[str, Any]], size: tuple[int, int], letter_box: int = 0) -> str:
    """A cfg: a 1×1 convolution to the heads' channels, then each head, at full size or (a
    route back to the convolution and a 2×2 maxpool) half size."""
    w, h = size
    k = channels(heads[0])
    assert all(channels(x) == k for x in heads)
    text = f"[net]\nwidth={w}\nheight={h}\nchannels=3\n"
    if letter_box:
        text += f"letter_box={letter_box}\n"
    text += f"[convolutional]\nfilters={k}\nsize=1\nstride=1\npad=0\nactivation=linear\n"
    for i, head in enumerate(heads):
        if i:
            text += "[route]\nlayers=0\n"
        if head.get("half"):
            text += "[maxpool]\nsize=2\nstride=2\n"
        text += section(head)
    return text


def write(folder: Path, text: str, seed: int, dialect: str) -> tuple[Path, Array, Array]:
    plan = dwf.Plan.from_text(text, dialect=dialect)
    rng = np.random.default_rng(seed)
    k = plan.layers[0].out_c
    weights = rng.normal(0, 0.8, (k, 3, 1, 1)).astype(np.float32)
    biases = rng.normal(0, 0.5, k).astype(np.float32)
    (folder / "net.cfg").write_text(text)
    dwf.save(folder / "net.weights", plan, {"conv_0.weights": weights, "conv_0.biases": biases})
    return folder / "net.weights", weights, biases


def reference_layers(heads: list[dict[str, Any]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """The heads as the reference takes them: sizes, Darknet's bias array, the mask."""
    out = []
    for head in heads:
        w, h = size if not head.get("half") else (size[0] // 2, size[1] // 2)
        total = head["num"]
        anchors = [0.5] * (2 * total)
        anchors[: len(head["anchors"])] = head["anchors"][: 2 * total]
        mask = head.get("mask", list(range(total)))
        out.append({**head, "w": w, "h": h, "anchors": anchors, "mask": mask})
    return out


def reference_detect(
    layers: list[dict[str, Any]],
    x: Array,
    conv: tuple[Array, Array],
    dialect: str,
    image: tuple[int, int],
    thresh: float,
    nms: float,
    letter: bool,
    kind: str,
    beta: float,
    size: tuple[int, int],
) -> list[dict[str, Any]]:
    """Darknet's list of detections for one network input ``x`` (3, h, w), after NMS."""
    weights, biases = conv
    y = np.einsum("kc,chw->khw", weights[:, :, 0, 0], x).astype(np.float32)
    y += biases[:, None, None]
    outs = []
    for layer in layers:
        inp = y
        if layer.get("half"):
            k, h, w = y.shape
            inp = y.reshape(k, h // 2, 2, w // 2, 2).max(axis=(2, 4))
        outs.append((layer, ref.forward(layer, inp, dialect)))
    dets = ref.get_network_boxes(
        outs, size[0], size[1], image[0], image[1], thresh, letter, dialect
    )
    if nms:
        dets = ref.nms_sort(dets, layers[0]["classes"], nms, kind, beta)
    return dets


def _anchors(rng: np.random.Generator, n: int, scale: float) -> list[float]:
    return [round(float(v), 3) for v in rng.uniform(0.2, 1.0, 2 * n) * scale]


def yolo_heads(
    rng: np.random.Generator, kind: str, count: int, options: dict[str, Any]
) -> list[dict[str, Any]]:
    classes, per = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    total = per * count
    anchors = _anchors(rng, total, 8.0)
    heads = []
    for i in range(count):
        head: dict[str, Any] = {
            "type": kind,
            "mask": list(range(i * per, (i + 1) * per)),
            "anchors": anchors,
            "classes": classes,
            "num": total,
            "half": i % 2 == 1,
        }
        head.update(options)
        heads.append(head)
    return heads


def region_heads(rng: np.random.Generator, options: dict[str, Any]) -> list[dict[str, Any]]:
    classes, num = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    head = {"type": "region", "classes": classes, "num": num, "anchors": _anchors(rng, num, 1.5)}
    head.update(options)
    return [head]


# name: (dialect, heads maker, nms_kind, letterbox)
CASES: dict[str, tuple[str, Any]] = {
    "yolo": ("alexeyab", lambda r: yolo_heads(r, "yolo", 2, {})),
    "yolo-scale_x_y": ("alexeyab", lambda r: yolo_heads(r, "yolo", 2, {"scale_x_y": 1.1})),
    "yolo-new_coords": (
        "alexeyab",
        lambda r: yolo_heads(r, "yolo", 2, {"scale_x_y": 2.0, "new_coords": 1}),
    ),
    "yolo-greedynms": (
        "alexeyab",
        lambda r: yolo_heads(r, "yolo", 2, {"nms_kind": "greedynms", "beta_nms": 0.6}),
    ),
    "yolo-diounms": (
        "alexeyab",
        lambda r: yolo_heads(r, "yolo", 3, {"nms_kind": "diounms", "beta_nms": 0.8}),
    ),
    "gaussian-center": ("alexeyab", lambda r: yolo_heads(r, "Gaussian_yolo", 2, {})),
    "gaussian-left_top-cornersnms": (
        "alexeyab",
        lambda r: yolo_heads(
            r, "Gaussian_yolo", 1, {"yolo_point": "left_top", "nms_kind": "cornersnms"}
        ),
    ),
    "gaussian-right_bottom-scaled": (
        "alexeyab",
        lambda r: yolo_heads(
            r, "Gaussian_yolo", 2, {"yolo_point": "right_bottom", "scale_x_y": 1.05}
        ),
    ),
    "region-softmax": ("alexeyab", lambda r: region_heads(r, {"softmax": 1})),
    "region-raw-classfix": ("alexeyab", lambda r: region_heads(r, {"classfix": -1})),
    "region-coords5": ("alexeyab", lambda r: region_heads(r, {"coords": 5, "softmax": 1})),
    "pj-yolo": ("pjreddie", lambda r: yolo_heads(r, "yolo", 2, {})),
    "pj-region-softmax": ("pjreddie", lambda r: region_heads(r, {"softmax": 1})),
    "pj-region-logistic": ("pjreddie", lambda r: region_heads(r, {"softmax": 0})),
    "pj-region-background": (
        "pjreddie",
        lambda r: region_heads(r, {"softmax": 1, "background": 1}),
    ),
    "pj-region-coords6": ("pjreddie", lambda r: region_heads(r, {"coords": 6, "softmax": 1})),
}


def _case(name: str, seed: int) -> tuple[str, list[dict[str, Any]], tuple[int, int]]:
    dialect, make = CASES[name]
    rng = np.random.default_rng(seed)
    heads = make(rng)
    size = (int(rng.integers(1, 4)) * 8, int(rng.integers(1, 4)) * 8)
    return dialect, heads, size


def _session(model: Path) -> Any:
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def _close(got: Array, want: Array) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("letter", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_decoded_rows_are_darknets(tmp_path: Path, name: str, letter: bool) -> None:
    """Every row of the ONNX decode outputs, in order, is what get_network_boxes lists with no
    threshold: box, objectness, probabilities (letterboxed from images of other sizes)."""
    dialect, heads, size = _case(name, 7)
    layers = reference_layers(heads, size)
    weights, conv_w, conv_b = write(tmp_path, network(heads, size), 3, dialect)
    model = tmp_path / "m.onnx"
    dwf.export(weights, model, dialect=dialect, decode=True, letterbox=letter)
    rng = np.random.default_rng(11)
    x = rng.random((2, 3, size[1], size[0]), dtype=np.float32)
    frames = [(size[0], size[1]), (size[0] * 3 + 1, size[1] * 2 - 3)] if letter else [size] * 2
    sess = _session(model)
    feeds: dict[str, Array] = {"input": x}
    if letter:
        feeds["image_size"] = np.array(frames, np.float32)
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(None, feeds), strict=True))
    assert names[-3:] == ["boxes", "objectness", "probs"]
    for i in range(2):
        dets = reference_detect(
            layers, x[i], (conv_w, conv_b), dialect, frames[i], -np.inf, 0, letter, "", 0, size
        )
        _close(out["boxes"][i], np.array([d["bbox"] for d in dets], np.float32))
        _close(out["objectness"][i], np.array([d["objectness"] for d in dets], np.float32))
        _close(out["probs"][i], np.array([d["prob"] for d in dets], np.float32))


def _nms_setting(heads: list[dict[str, Any]]) -> tuple[str, float]:
    last = heads[-1]
    return str(last.get("nms_kind", "default")), float(last.get("beta_nms", 0.6))


@pytest.mark.slow  # a network per case (~0.2 s each)
@pytest.mark.parametrize("name", sorted(CASES))
def test_detect_on_a_tensor_prints_what_darknet_prints(tmp_path: Path, name: str) -> None:
    dialect, heads, size = _case(name, 5)
    layers = reference_layers(heads, size)
    weights, conv_w, conv_b = write(tmp_path, network(heads, size), 4, dialect)
    x = np.random.default_rng(2).random((3, 3, size[1], size[0]), dtype=np.float32)
    kind, beta = _nms_setting(heads)
    got = dwf.detect(weights, x, dialect=dialect, thresh=0.2, nms=0.3)
    total = 0
    for i in range(3):
        dets = reference_detect(
            layers, x[i], (conv_w, conv_b), dialect, size, 0.2, 0.3, False, kind, beta, size
        )
        want = ref.printed(dets, layers[0]["classes"], 0.2)
        assert [(d.class_index, d.name) for d in got[i]] == [(c, str(c)) for _, c, _ in want]
        for d, (box, _, prob) in zip(got[i], want, strict=True):
            np.testing.assert_allclose(d.box, box, rtol=2e-5, atol=2e-6)
            assert abs(d.prob - prob) < 1e-5
        total += len(want)
    assert total  # the case shows something


@pytest.mark.slow  # a network per case, on images (~0.6 s each)
@pytest.mark.parametrize(
    "name", ["yolo", "yolo-diounms", "gaussian-left_top-cornersnms", "region-softmax", "pj-yolo",
             "pj-region-background"]
)  # fmt: skip
@pytest.mark.parametrize("letter", [False, True])
def test_detect_on_images_with_darknets_resize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, letter: bool
) -> None:
    """Images of other sizes, resized or letterboxed and the boxes mapped back: with the
    resize swapped for the reference's own (how close Pillow's is, is measured below), dwf.detect
    prints what Darknet prints."""
    dialect, heads, size = _case(name, 9)
    layers = reference_layers(heads, size)
    weights, conv_w, conv_b = write(tmp_path, network(heads, size, int(letter)), 4, dialect)
    monkeypatch.setattr(images, "resize", ref.resize_image)
    rng = np.random.default_rng(3)
    pics = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in ((50, 30), (17, 61))]
    boxed = letter or dialect == "pjreddie"  # what Darknet's detector does for this cfg
    got = dwf.detect(weights, pics, dialect=dialect, thresh=0.15)
    kind, beta = _nms_setting(heads)
    for pic, found in zip(pics, got, strict=True):
        im = pic.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        x = ref.letterbox_image(im, *size) if boxed else ref.resize_image(im, *size)
        frame = (pic.shape[1], pic.shape[0])
        dets = reference_detect(
            layers, x, (conv_w, conv_b), dialect, frame, 0.15, 0.45, boxed, kind, beta, size
        )
        want = ref.printed(dets, layers[0]["classes"], 0.15)
        assert [d.class_index for d in found] == [c for _, c, _ in want]
        for d, (box, _, prob) in zip(found, want, strict=True):
            np.testing.assert_allclose(d.box, box, rtol=2e-5, atol=2e-6)
            assert abs(d.prob - prob) < 1e-5
            left, _, _, h = d.box_pixels
            assert abs(left - (box[0] - box[2] / 2) * frame[0]) < 1e-3
            assert abs(h - box[3] * frame[1]) < 1e-3


# -- NMS -------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 40),
    classes=st.integers(1, 4),
    kind=st.sampled_from(dnms.NMS_KINDS),
    seed=st.integers(0, 2**16),
    thresh=st.sampled_from([0.3, 0.45, 0.6]),
)
def test_nms_is_darknets_to_the_last_tie(
    n: int, classes: int, kind: str, seed: int, thresh: float
) -> None:
    """do_nms_sort / diounms_sort on boxes with repeats, equal probabilities, zero objectness:
    the same probabilities survive and Darknet's array ends in the same order."""
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0.05, 0.6, (n, 4)).astype(np.float32)
    boxes[:, :2] = rng.uniform(0.2, 0.8, (n, 2)).astype(np.float32)
    if n > 3:
        boxes[1] = boxes[0]  # an exact duplicate
        boxes[3, :2] = boxes[2, :2]  # the same centre (DIoU's distance 0)
    levels = np.float32([0, 0, 0.3, 0.5, 0.5, 0.7, 0.9])  # repeats: ties to break
    probs = rng.choice(levels, (n, classes)).astype(np.float32)
    obj = rng.choice(np.float32([0, 0.4, 0.8]), n).astype(np.float32)
    got, order = dnms.suppress(boxes, obj, probs, thresh, kind, 0.7)
    dets = [
        {"bbox": list(b), "objectness": o, "prob": list(p), "row": i}
        for i, (b, o, p) in enumerate(zip(boxes, obj, probs, strict=True))
    ]
    done = ref.nms_sort(dets, classes, thresh, kind, 0.7)
    assert [d["row"] for d in done] == list(order)
    want = np.zeros_like(probs)
    for d in done:
        want[d["row"]] = d["prob"]
    assert np.array_equal(got, want)


def test_nms_threshold_and_listing() -> None:
    boxes = np.array(
        [[0.5, 0.5, 0.2, 0.2], [0.51, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]], np.float32
    )
    obj = np.array([0.9, 0.2, 0.3], np.float32)
    probs = np.array([[0.8], [0.15], [0.25]], np.float32)
    kept = dwf.nms(boxes, obj, probs, thresh=0.25)
    assert kept.tolist() == [[pytest.approx(0.8)], [0.0], [0.0]]  # 0.25 is not above 0.25
    # AlexeyAB's [region] lists every row (objectness 1); pjreddie's zeroes a low objectness
    obj2 = np.array([1.0, 1.0, 1.0], np.float32)
    probs2 = np.array([[0.1], [0.9], [0.5]], np.float32)
    assert dwf.nms(boxes, obj2, probs2, listing=[2, 2, 2]).tolist() == [
        [0.0],
        [pytest.approx(0.9)],
        [0.5],
    ]
    low = np.array([0.9, 0.2, 0.9], np.float32)
    assert dwf.nms(boxes, low, probs2, listing=[1, 1, 1], nms=0).tolist() == [[0.0], [0.0], [0.5]]
    batch = dwf.nms(boxes[None].repeat(2, 0), obj[None].repeat(2, 0), probs[None].repeat(2, 0))
    assert batch.shape == (2, 3, 1) and np.array_equal(batch[0], kept)
    with pytest.raises(dwf.DwfError, match="unknown NMS kind"):
        dwf.nms(boxes, obj, probs, kind="softnms")
    with pytest.raises(dwf.DwfError, match="not one image"):
        dwf.nms(boxes[:2], obj, probs)


# -- Darknet's own detections ----------------------------------------------------------------------
def _detect_cases() -> list[str]:
    from conftest import SHARED

    index = SHARED / "detect" / "index.json"
    return sorted(json.loads(index.read_text())) if index.exists() else ["(absent)"]


def _source(case: dict[str, Any]) -> Path:
    realweights = shared_path("realweights")
    for folder in sorted(realweights.iterdir()):
        if (folder / case["weights"]).exists():
            return folder
    raise AssertionError(case["weights"])


def _recorded(z: Any, thresh: float) -> list[tuple[Array, int, float]]:
    return [
        (b, int(c), float(p[c]))
        for b, p in zip(z["boxes"], z["probs"], strict=True)
        for c in np.flatnonzero(p > thresh)
    ]


def _same_set(got: list[tuple[Array, int, float]], want: list[tuple[Array, int, float]]) -> None:
    """The same detections, matched by position: box within 1e-4, class, probability."""
    assert len(got) == len(want), (len(got), len(want))
    free = list(range(len(got)))
    for box, c, p in want:
        hits = [
            i for i in free if got[i][1] == c and np.abs(np.asarray(got[i][0]) - box).max() < TOL
        ]
        assert hits, (box, c, p)
        i = hits[0]
        assert abs(got[i][2] - p) < TOL
        free.remove(i)


@pytest.mark.slow  # the real networks on Darknet's photographs (~0.3-3 s each)
@pytest.mark.parametrize("name", _detect_cases())
def test_darknets_own_detections(name: str, tmp_path: Path) -> None:
    detect_dir = shared_path("detect")
    case = json.loads((detect_dir / "index.json").read_text())[name]
    folder = _source(case)
    z = np.load(detect_dir / f"{name}.npz")
    weights, cfg = folder / case["weights"], folder / case["cfg"]
    if case["network"] == "yolo-lite-trial8":
        _trial8(weights, cfg, z, case)
        return
    with dwf.open(weights, cfg) as f:
        net = describe(f.plan, f.header, decode=True)
        assert [d.name for d in net.detections] == [
            f"{f.plan.layers[int(k.split('_')[1])].name}" for k in case["detection_layers"]
        ]
        model = tmp_path / "m.onnx"
        dwf.export(f, model, embed=True, decode=True)
    # the detection layers' own outputs (their forward pass), as Darknet's l.output
    m = onnx.load(str(model))
    for d in net.detections:
        m.graph.output.append(onnx.helper.make_tensor_value_info(d.name, 1, None))
    out = dict(zip([o.name for o in m.graph.output], _run(m, z["input"]), strict=True))
    for d in net.detections:
        want = z[f"layer_{d.index}"]
        got = out[d.name].reshape(-1)
        # The recorded build (-Ofast) computes NaN for the logistic of an input below -88.7,
        # where expf overflows and C's arithmetic gives 1/(1 + inf) = 0: dwf gives the 0.
        fast = np.isnan(want)
        assert (got[fast] == 0).all(), d.name
        assert np.abs(got - want)[~fast].max() <= TOL * max(1.0, np.abs(want[~fast]).max())
    # every recorded box among the decoded rows: x, y, w, h and objectness within 1e-4
    boxes, obj = out["boxes"][0], out["objectness"][0]
    for box, o in zip(z["boxes"], z["objectness"], strict=True):
        if o == 0 and not box.any():
            # make_network_boxes counted a row get_yolo_detections did not fill: its -Ofast
            # comparisons of a NaN objectness (above) disagree; the zeroed row finds nothing
            continue
        err = np.abs(boxes - box).max(axis=1) + np.abs(obj - o)
        assert err.min() < TOL, (name, box, o, err.min())
    # the detections after threshold and NMS, through dwf.detect
    for runtime in _runtimes():
        found = dwf.detect(weights, z["input"], cfg=cfg, runtime=runtime)[0]
        got_set = [(np.array(d.box), d.class_index, d.prob) for d in found]
        _same_set(got_set, _recorded(z, case["thresh"]))


def _run(model: Any, x: Array) -> list[Array]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(sess.run(None, {"input": x}))


def _runtimes() -> list[str]:
    pytest.importorskip("torch")
    return ["onnxruntime", "torch"]


def _trial8(weights: Path, cfg: Path, z: Any, case: dict[str, Any]) -> None:
    """Darknet read this file against a cfg it does not fit (its batch-norm arrays are not in
    the file) and computed NaN everywhere; dwf refuses the file, and its decoding of that
    layer output lists every box as NaN with objectness 1 and finds nothing, as Darknet did."""
    with pytest.raises(dwf.SizeMismatchError):
        dwf.open(weights, cfg)
    text = cfg.read_text()
    region = text[text.index("[region]") :]
    plan = dwf.Plan.from_text(text)
    lp = plan.layers[int(case["detection_layers"][0].split("_")[1])]
    head = f"[net]\nwidth={lp.in_w}\nheight={lp.in_h}\nchannels={lp.in_c}\n{region}"
    net = describe(dwf.Plan.from_text(head), decode=True)
    from ir_numpy import run as run_numpy

    env = run_numpy(net, {}, z["layer_15"].reshape(1, lp.in_c, lp.in_h, lp.in_w))
    assert np.isnan(env["boxes"]).all() and np.isnan(z["boxes"]).all()
    assert (env["objectness"] == 1).all() and (z["objectness"] == 1).all()
    kept = dwf.nms(env["boxes"][0], env["objectness"][0], env["probs"][0], listing=[2] * 245)
    assert not kept.any() and not (z["probs"] > 0).any()


# -- images -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "src,dst", [((640, 480), (320, 320)), ((640, 480), (320, 240)), ((37, 100), (224, 224)),
                ((500, 375), (416, 416)), ((7, 5), (64, 64)), ((1, 1), (8, 8)),
                ((1920, 1080), (608, 608))]
)  # fmt: skip
def test_resize_is_darknets(src: tuple[int, int], dst: tuple[int, int]) -> None:
    """Pillow's bilinear affine transform against Darknet's resize_image loops: the same
    interpolation, Pillow's positions in double where Darknet's are float, so they differ by
    about the error of Darknet's positions (a few 1e-8 × the image's size: 7e-5 of the [0, 1]
    range from a 640-pixel image, 8e-5 from 1920, a fiftieth of one 8-bit level); Darknet's
    nearly black last row (480 → 240) is the same."""
    rng = np.random.default_rng(0)
    im = (rng.integers(0, 256, (3, src[1], src[0])) / 255).astype(np.float32)
    bound = 1e-7 * max(src) + 1e-5
    got, want = images.resize(im, *dst), ref.resize_image(im, *dst)
    assert np.abs(got - want).max() < bound
    boxed, want_boxed = images.letterbox(im, *dst), ref.letterbox_image(im, *dst)
    assert np.abs(boxed - want_boxed).max() < bound


def test_images_decode_like_darknet(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    PIL.fromarray(rgb).save(tmp_path / "a.png")
    got = images.load(tmp_path / "a.png")
    assert got.shape == (3, 9, 13) and np.array_equal(got, rgb.transpose(2, 0, 1) / np.float32(255))
    assert np.array_equal(images.load(rgb), got)
    assert images.load(tmp_path / "a.png", 1).shape == (1, 9, 13)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(dwf.DwfError, match=r"bad\.jpg: cannot read the image"):
        images.load(tmp_path / "bad.jpg")
    with pytest.raises(dwf.DwfError, match="shape"):
        images.load(np.zeros((4, 4, 5), np.uint8))


# -- the real networks as a user runs them -------------------------------------------------------
def _real() -> tuple[Path, Any]:
    folder = shared_path("realweights", "yolo-fastest-1.1")
    z = np.load(shared_path("detect", "yolo-fastest-1.1--horses.npz"))
    return folder / "yolo-fastest-1.1.weights", z


def test_batches_give_what_single_images_give(tmp_path: Path) -> None:
    weights, z = _real()
    base = z["input"][0]
    pics = [base, base[:, ::-1, :], base[:, :, ::-1]]
    x = np.ascontiguousarray(np.stack(pics))
    together = dwf.detect(weights, x)
    alone = [dwf.detect(weights, x[i : i + 1])[0] for i in range(3)]
    for a, b in zip(together, alone, strict=True):
        assert [d.class_index for d in a] == [d.class_index for d in b]
        for da, db in zip(a, b, strict=True):
            np.testing.assert_allclose(da.box, db.box, atol=1e-5)
            assert abs(da.prob - db.prob) < 1e-5
    # images too: a list of 10 (more than one batch of the runtime) gives each its own
    arrays = [np.round(p.transpose(1, 2, 0) * 255).astype(np.uint8) for p in pics] * 4
    many = dwf.detect(weights, arrays[:10])
    assert [len(r) for r in many] == [len(r) for r in (many[:3] * 4)[:10]]


def _png(path: Path, x: Array) -> Path:
    PIL.fromarray(np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8)).save(path)
    return path


def test_names_files(tmp_path: Path) -> None:
    weights, z = _real()
    names = [f"thing{i}" for i in range(80)]
    found = dwf.detect(weights, z["input"], names=names)[0]
    assert found and all(d.name == f"thing{d.class_index}" for d in found)
    (tmp_path / "coco.names").write_text("\n".join(names) + "\n")
    (tmp_path / "obj.data").write_text("classes = 80\nnames = coco.names\n")
    by_file = dwf.detect(weights, z["input"], names=tmp_path / "obj.data")[0]
    assert [d.name for d in by_file] == [d.name for d in found]
    plain = dwf.detect(weights, z["input"])[0]
    assert [d.name for d in plain] == [str(d.class_index) for d in plain]


def test_a_names_file_found_beside_that_points_nowhere_says_it_was_found(tmp_path: Path) -> None:
    """Failed before: an obj.data beside the weights whose ``names =`` points nowhere (Darknet
    reads it from where it runs: ``data/obj.names``) stopped ``dwf detect W IMG`` — no --names
    given — with ``obj.data: names = …: no such file``, saying neither that dwf had picked the
    file up by itself nor how to choose the names instead."""
    real, z = _real()
    weights = tmp_path / real.name
    os.symlink(real, weights)
    os.symlink(real.with_suffix(".cfg"), weights.with_suffix(".cfg"))
    (tmp_path / "obj.data").write_text("classes = 80\nnames = elsewhere/coco.names\n")
    with pytest.raises(dwf.DwfError) as e:
        dwf.detect(weights, z["input"])
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'obj.data'}: names = elsewhere/coco.names"), message
    assert "dwf found it beside" in message and "names=" in message, message
    assert "--names" in message, message
    found = dwf.detect(weights, z["input"], names=[f"n{i}" for i in range(80)])[0]
    assert found and found[0].name.startswith("n")


def _drawn_where_json_says(image: Path, png: Path, detections: list[dict[str, Any]]) -> None:
    """The picture is the image with each box drawn where its JSON says: every box's four
    edges are painted in box colours, and every changed pixel is on a box's edge or in the
    band above a box where its label goes."""
    from dwf.interfaces.draw import colour

    before = np.asarray(PIL.open(image).convert("RGB")).astype(int)
    pic = np.asarray(PIL.open(png).convert("RGB")).astype(int)
    assert pic.shape == before.shape  # the image's own size
    h, w, _ = pic.shape
    thick = max(1, int(h * 0.002))
    palette = {colour(d["class_index"]) for d in detections} | {(0, 0, 0)}  # and label text
    painted = np.zeros((h, w), bool)
    for rgb in palette:
        painted |= np.all(pic == np.array(rgb), axis=2)
    allowed = np.zeros((h, w), bool)
    for d in detections:
        x, y, bw, bh = d["box"]
        left, right = max(int((x - bw / 2) * w), 0), min(int((x + bw / 2) * w), w - 1)
        top, bot = max(int((y - bh / 2) * h), 0), min(int((y + bh / 2) * h), h - 1)
        edges = np.zeros((h, w), bool)
        for rows, cols in (
            (slice(top, top + thick), slice(left, right + 1)),
            (slice(bot - thick + 1, bot + 1), slice(left, right + 1)),
            (slice(top, bot + 1), slice(left, left + thick)),
            (slice(top, bot + 1), slice(right - thick + 1, right + 1)),
        ):
            edges[rows, cols] = True
        assert painted[edges].all(), d
        allowed |= edges
        allowed[max(top - 20, 0) : top + 20, left:] = True  # its label
    changed = np.any(pic != before, axis=2)
    assert changed.any() and not (changed & ~allowed).any()


def test_command_line_on_a_real_network(tmp_path: Path) -> None:
    from dwf.interfaces.cli import main

    weights, z = _real()
    png = _png(tmp_path / "horses.png", z["input"][0])
    out = tmp_path / "drawn"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["detect", str(weights), str(png), "--json", "--out", str(out)]) == 0
    doc = json.loads(buf.getvalue())
    assert doc[0]["image"] == str(png) and doc[0]["drawn"] == str(out / "horses.png")
    dets = doc[0]["detections"]
    want = dwf.detect(weights, png)[0]
    assert [d["class_index"] for d in dets] == [d.class_index for d in want] and dets
    _drawn_where_json_says(png, out / "horses.png", dets)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["detect", str(weights), str(png)]) == 0
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"{png}: {len(dets)} detections"
    first = want[0]
    left, top, bw, bh = (round(v) for v in first.box_pixels)
    assert lines[1] == (
        f"{first.name}: {first.prob * 100:.0f}%  (left_x: {left}  top_y: {top}  width: {bw}"
        f"  height: {bh})"
    )


def test_command_line_on_the_demo_model(tmp_path: Path) -> None:
    from dwf.interfaces.cli import main
    from dwf.tools.demo import write_demo

    _, weights = write_demo(tmp_path)
    yy, xx = np.mgrid[0:192, 0:256]
    pic = tmp_path / "gradient.png"
    PIL.fromarray(np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)).save(pic)
    import contextlib
    import io

    buf = io.StringIO()
    out = tmp_path / "drawn"
    args = ["detect", weights, str(pic), "--thresh", "0.6", "--json", "--out", str(out)]
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    doc = json.loads(buf.getvalue())
    assert doc[0]["detections"]
    _drawn_where_json_says(pic, out / "gradient.png", doc[0]["detections"])
    # never over an input: the image itself as the output
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        assert main(["detect", weights, str(pic), "--out", str(tmp_path)]) == 2
    assert "dwf: error:" in buf.getvalue()


# -- refusals and errors -------------------------------------------------------------------------
def test_refusals(tmp_path: Path) -> None:
    text = "[net]\ninputs=28\n[detection]\nclasses=2\ncoords=4\nnum=1\nside=2\nsqrt=1\n"
    net = describe(dwf.Plan.from_text(text), decode=True)
    with pytest.raises(dwf.UnsupportedLayerError, match=r"\[detection\] \(YOLOv1\)"):
        net.require("ONNX")
    tree = "[net]\nwidth=4\nheight=4\nchannels=7\n[region]\nclasses=2\nnum=1\ntree=x.tree\n"
    with pytest.raises(dwf.UnsupportedLayerError, match=r"tree=x\.tree"):
        describe(dwf.Plan.from_text(tree), decode=True).require("ONNX")
    with pytest.raises(dwf.DwfError, match="no \\[yolo\\]"):
        describe(
            dwf.Plan.from_text("[net]\nwidth=4\nheight=4\nchannels=1\n[maxpool]\n"), decode=True
        )
    weights, _ = _real()
    with pytest.raises(dwf.DwfError, match="ONNX export only"):
        dwf.export(weights, tmp_path / "a.npz", decode=True)
    with pytest.raises(dwf.DwfError, match="pass decode=True"):
        dwf.export(weights, tmp_path / "a.onnx", letterbox=True)
    with pytest.raises(dwf.DwfError, match=r"\(N, 3, 320, 320\)"):
        dwf.detect(weights, np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(dwf.DwfError, match="unknown runtime"):
        dwf.detect(weights, np.zeros((1, 3, 320, 320), np.float32), runtime="tvm")
    with pytest.raises(dwf.DwfError, match=r"missing\.png"):
        dwf.detect(weights, tmp_path / "missing.png")
    assert not os.path.exists(tmp_path / "a.onnx")


# -- the PyTorch module decodes what the ONNX model decodes ----------------------------------------
@pytest.mark.parametrize(
    "name",
    ["yolo-new_coords", "gaussian-right_bottom-scaled", "region-coords5", "pj-region-softmax"],
)
def test_torch_module_decodes_what_onnx_decodes(tmp_path: Path, name: str) -> None:
    torch = pytest.importorskip("torch")
    dialect, heads, size = _case(name, 13)
    weights, _, _ = write(tmp_path, network(heads, size), 5, dialect)
    model = tmp_path / "m.onnx"
    dwf.export(weights, model, dialect=dialect, decode=True, letterbox=True)
    module = dwf.to_torch(weights, dialect=dialect, decode=True, letterbox=True)
    x = np.random.default_rng(1).random((2, 3, size[1], size[0]), dtype=np.float32)
    frames = np.array([[size[0] * 2, size[1]], [7, 90]], np.float32)
    onnx_out = _session(model).run(
        ["boxes", "objectness", "probs"], {"input": x, "image_size": frames}
    )
    with torch.inference_mode():
        torch_out = module(torch.from_numpy(x), torch.from_numpy(frames))[-3:]
    for a, b in zip(onnx_out, torch_out, strict=True):
        _close(b.numpy(), a)
    assert module.output_names[-3:] == ("boxes", "objectness", "probs")
    import pickle

    again = pickle.loads(pickle.dumps(module))  # described again, with its decoding
    with torch.inference_mode():
        np.testing.assert_array_equal(
            again(torch.from_numpy(x), torch.from_numpy(frames))[-1].numpy(), torch_out[-1].numpy()
        )
    with pytest.raises(dwf.DwfError, match="image_size"):
        module(torch.from_numpy(x))
