"""Detections as Darknet finds them (``dwf detect``, :func:`detect`): the network run on images
by a runtime (onnxruntime, or PyTorch), its detection layers decoded as the network description
says (:mod:`dwf.format.decoding`), then Darknet's threshold and NMS (:mod:`dwf.format.nms`),
and the detections listed as Darknet's detector prints them.

A runtime is an emitter of the description with ``decode=True``: whatever computes the network
outputs the same ``boxes``, ``objectness`` and ``probs``, and everything after them is numpy
here, once.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from dwf.errors import DwfError
from dwf.extras import install_line, require
from dwf.format import nms as nms_
from dwf.format.decoding import Decoding
from dwf.format.dialects import Dialect
from dwf.format.network import Network, describe, letter_box
from dwf.format.planner import Plan
from dwf.io import images
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile

Array = np.ndarray[Any, Any]
RUNTIMES = ("onnxruntime", "torch")
# Images run through the network at most this many at a time (memory stays bounded).
BATCH = 8
Runner = Callable[[Array, Array], tuple[Array, Array, Array]]


@attrs.frozen
class Detected:
    """One detection: a box and one class whose probability passed the threshold after NMS.

    Attributes:
        box: centre x, centre y, width, height, relative to the image (0 … 1).
        box_pixels: left, top, width, height in pixels of the original image (what Darknet's
            ``-ext_output`` prints, before rounding).
        objectness: the box's objectness as Darknet leaves it (AlexeyAB's ``[region]``: 1).
        class_index: the class.
        prob: its probability (objectness × class probability, as Darknet computes it).
        name: the class's name (from the names file), else its index.
        layer: the detection layer that found it (``"yolo_30"``).
    """

    box: tuple[float, float, float, float]
    box_pixels: tuple[float, float, float, float]
    objectness: float
    class_index: int
    prob: float
    name: str
    layer: str

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON values (``dwf detect --json``)."""
        return {
            "name": self.name,
            "class_index": self.class_index,
            "prob": self.prob,
            "objectness": self.objectness,
            "box": list(self.box),
            "box_pixels": list(self.box_pixels),
            "layer": self.layer,
        }


# -- names ----------------------------------------------------------------------------------------
def _read_names(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as e:
        raise DwfError(f"cannot read the names: {e.strerror or e}", path=path) from None
    if path.lower().endswith(".data"):  # Darknet's obj.data: names = data/obj.names
        return _read_names(_data_names(path, text))
    return [line.rstrip("\r") for line in text.split("\n")][: text.count("\n") + 1]


def _data_names(path: str, text: str) -> str:
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == "names":
            value = value.strip()
            beside = os.path.join(os.path.dirname(path), value)
            # Darknet opens it from where it runs; beside the .data file is what else works
            base = os.path.join(os.path.dirname(path), os.path.basename(value))
            for candidate in (value, beside, base):
                if os.path.isfile(candidate):
                    return candidate
            raise DwfError(f"names = {value}: no such file (looked there and beside it)", path=path)
    raise DwfError("has no 'names = …' line", path=path)


def find_names(weights: str | None, cfg: str | None) -> str | None:
    """The names file beside the weights or the cfg: ``<stem>.names``, ``obj.names``, the only
    ``.names`` file there, ``<stem>.data`` or ``obj.data`` (its ``names =``)."""
    folders: list[str] = []
    stems: list[str] = []
    for p in (weights, cfg):
        if p:
            folders.append(os.path.dirname(os.path.abspath(p)))
            stems.append(os.path.splitext(os.path.basename(p))[0])
    for folder in dict.fromkeys(folders):
        for name in [f"{s}.names" for s in stems] + ["obj.names"]:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
        try:
            found = sorted(e for e in os.listdir(folder) if e.lower().endswith(".names"))
        except OSError:
            found = []
        if len(found) == 1:
            return os.path.join(folder, found[0])
        for name in [f"{s}.data" for s in stems] + ["obj.data"]:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return None


def class_names(
    names: str | os.PathLike[str] | Sequence[str] | None,
    classes: int,
    weights: str | None = None,
    cfg: str | None = None,
) -> list[str]:
    """One name per class: from ``names`` (a ``.names`` file, an ``obj.data`` file, or the
    names themselves), else the names file beside the weights or cfg, else the indices."""
    if names is None:
        found = find_names(weights, cfg)
        try:
            got = _read_names(found) if found is not None else []
        except DwfError as e:  # the user named no file: say this one was picked up, and how not
            raise DwfError(
                f"{e.reason}; dwf found it beside the weights or cfg: choose the class"
                " names with names= (dwf: --names FILE)",
                path=e.path,
            ) from None
    elif isinstance(names, (str, os.PathLike)):
        got = _read_names(os.fspath(names))
    else:
        got = [str(n) for n in names]
    return [got[i] if i < len(got) and got[i] else str(i) for i in range(classes)]


# -- runtimes -------------------------------------------------------------------------------------
def default_runtime() -> str:
    """onnxruntime when it is installed, else PyTorch when it is."""
    for name in RUNTIMES:
        if importlib.util.find_spec(name) is not None:
            return name
    raise DwfError(
        f"detect needs a runtime, onnxruntime or PyTorch: for onnxruntime,"
        f" {install_line('detect')}; for PyTorch, {install_line('torch')}"
    )


def _onnxruntime(f: WeightsFile, network: Network) -> Runner:
    from dwf.tools.emit_onnx import in_memory

    ort = require("onnxruntime", "detect")
    require("onnx", "detect")  # builds the model the session runs
    model, arrays = in_memory(f, network)
    options = ort.SessionOptions()
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays.values()]
    options.add_external_initializers(list(arrays), values)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    d = network.decoding
    assert d is not None
    wanted = [d.boxes, d.objectness, d.probs]

    def run(x: Array, sizes: Array) -> tuple[Array, Array, Array]:
        feeds = {network.input: x}
        if d.image_size is not None:
            feeds[d.image_size] = sizes
        _keep = (arrays, values)  # the session reads these; they live as long as it does
        boxes, obj, probs = session.run(wanted, feeds)
        del _keep
        return boxes, obj, probs

    return run


def _torch(f: WeightsFile, network: Network) -> Runner:
    torch = require("torch", "torch")
    from dwf.tools.emit_torch import to_torch

    d = network.decoding
    assert d is not None
    module = to_torch(f, decode=True, letterbox=d.image_size is not None)

    def run(x: Array, sizes: Array) -> tuple[Array, Array, Array]:
        size = torch.from_numpy(sizes) if d.image_size is not None else None
        with torch.inference_mode():
            *_, boxes, obj, probs = module(torch.from_numpy(x), size)
        return boxes.numpy(), obj.numpy(), probs.numpy()

    return run


_RUNTIMES: dict[str, Callable[[WeightsFile, Network], Runner]] = {
    "onnxruntime": _onnxruntime,
    "torch": _torch,
}
# The last network made ready to run, kept for the next call on the same version of the same
# file (building the description, the model and the session costs ~0.1 s for a small network,
# many times what one image costs); one at a time, so memory holds one copy of the weights.
_LAST: list[tuple[Hashable, Network, Runner]] = []


def _ready(f: WeightsFile, runtime: str, boxed: bool) -> tuple[Network, Runner]:
    """The description with its decoding and a runner of it, reused while the file, the cfg
    and the options are the same."""
    plan = f.plan
    key = (
        runtime,
        boxed,
        f.source.name,
        f.source.identity,
        f.header.encode(),
        plan.dialect,
        plan.cfg_path,
        plan.text,
    )
    if _LAST and _LAST[0][0] == key:
        return _LAST[0][1], _LAST[0][2]
    _LAST.clear()
    network = describe(plan, f.header, decode=True, letterbox=boxed)
    network.require(runtime)
    run = _RUNTIMES[runtime](f, network)
    _LAST.append((key, network, run))
    return network, run


def letterboxes(plan: Plan) -> bool:
    """Whether Darknet's detector letterboxes this network's input: AlexeyAB's when
    ``[net] letter_box=1``, pjreddie's always."""
    return bool(letter_box(plan)) or plan.rules.detector_letterboxes


# -- detections ---------------------------------------------------------------------------------
def _listed(
    d: Decoding,
    boxes: Array,
    obj: Array,
    probs: Array,
    size: tuple[int, int],
    thresh: float,
    nms: float,
    names: list[str],
) -> list[Detected]:
    """One image's detections, as Darknet's ``draw_detections_v3`` prints them: boxes from
    left to right, each with its best class, then its other classes above ``thresh``."""
    kept, objectness, order = nms_.run(
        boxes, obj, probs, thresh, nms, d.nms_kind, d.beta_nms, d.listing()
    )
    span_of = np.zeros(len(obj), np.int64)
    for i, s in enumerate(d.spans):
        span_of[s.start : s.stop] = i
    t = np.float32(thresh)
    shown: list[tuple[int, int]] = []
    some = (kept > t).any(axis=1)
    for r in order[some[order]]:  # the rows with a probability left, in Darknet's order
        best, best_p = -1, t
        for j in map(int, np.flatnonzero(kept[r] > t)):
            if kept[r, j] > best_p and not names[j].startswith("dont_show"):
                best, best_p = j, kept[r, j]
        if best >= 0:
            shown.append((int(r), best))
    shown.sort(key=lambda rb: float(boxes[rb[0], 0] - boxes[rb[0], 2] / 2))
    iw, ih = size
    out = []
    for r, best in shown:
        x, y, w, h = (float(v) for v in boxes[r])
        pixels = ((x - w / 2) * iw, (y - h / 2) * ih, w * iw, h * ih)
        others = [int(j) for j in np.flatnonzero(kept[r] > t) if j != best]
        for j in [best, *others]:
            out.append(
                Detected(
                    box=(x, y, w, h),
                    box_pixels=pixels,
                    objectness=float(objectness[r]),
                    class_index=j,
                    prob=float(kept[r, j]),
                    name=names[j],
                    layer=d.spans[int(span_of[r])].layer,
                )
            )
    return out


def _inputs(
    inputs: Any, channels: int, w: int, h: int, boxed: bool
) -> Iterable[tuple[Array, Array]]:
    """Batches of network inputs ``(n, c, h, w)`` with each image's ``(width, height)``."""
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        x = np.asarray(inputs, np.float32)
        if x.shape[1:] != (channels, h, w):
            raise DwfError(
                f"a network input of shape {x.shape}: the network takes (N, {channels}, {h}, {w})"
            )
        for i in range(0, x.shape[0], BATCH):
            part = np.ascontiguousarray(x[i : i + BATCH])
            yield part, np.tile(np.array([w, h], np.float32), (part.shape[0], 1))
        return
    items = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    for i in range(0, len(items), BATCH):
        done = [images.prepare(src, channels, w, h, boxed) for src in items[i : i + BATCH]]
        yield np.stack([x for x, _ in done]), np.array([s for _, s in done], np.float32)


def detect(
    src: str | os.PathLike[str] | WeightsFile,
    inputs: Any,
    *,
    cfg: str | os.PathLike[str] | Plan | None = None,
    dialect: str | Dialect = "alexeyab",
    names: str | os.PathLike[str] | Sequence[str] | None = None,
    thresh: float = 0.25,
    hier_thresh: float = 0.5,
    nms: float = 0.45,
    letterbox: bool | None = None,
    runtime: str | None = None,
) -> list[list[Detected]]:
    """Run the network on images and return, per image, Darknet's detections
    (``dwf detect``).

    Args:
        src: the weights file, open or by path (the cfg beside it, or ``cfg=``).
        inputs: an image (a path Pillow reads, or a decoded ``(h, w, 3)`` RGB array, uint8 or
            floats in [0, 1]), a list of them, or a ready network input: float32
            ``(N, c, h, w)`` at the network's size (boxes then relative to it).
        cfg, dialect: how to open ``src`` when it is a path.
        names: the class names: a ``.names`` file, an ``obj.data`` file, or a list; by default
            the names file beside the weights or cfg, else the class indices.
        thresh: Darknet's ``-thresh``: the least probability shown (and objectness listed).
        hier_thresh: Darknet's ``-hier``; it only matters for ``[region] tree=``
            (hierarchical classes), which the decoding refuses, so it has no effect.
        nms: the NMS overlap threshold (0 for none); the NMS is the last detection layer's
            ``nms_kind``, as Darknet's detector runs it.
        letterbox: resize images keeping their ratio (Darknet's ``letterbox_image``) and map
            the boxes back; ``None``: as Darknet's detector does for this network
            (AlexeyAB: ``[net] letter_box=1``; pjreddie: always).
        runtime: ``"onnxruntime"`` (the default when installed) or ``"torch"``.

    Returns:
        For each image, its :class:`Detected` list, in Darknet's printing order.

    Raises:
        UnsupportedLayerError: a layer the network description cannot compute or decode.
        DwfError: no runtime, an image that cannot be read, an input of the wrong shape, a
            network without detection layers.
    """
    if runtime is None:
        runtime = default_runtime()
    if runtime not in _RUNTIMES:
        raise DwfError(f"unknown runtime {runtime!r}: one of {', '.join(RUNTIMES)}")
    del hier_thresh  # only a tree= [region] reads it; those are refused
    with opened(src, cfg, dialect=dialect) as f:
        plan = f.plan
        net = plan.net
        boxed = letterboxes(plan) if letterbox is None else letterbox
        tensor = isinstance(inputs, np.ndarray) and inputs.ndim == 4
        network, run = _ready(f, runtime, boxed and not tensor)
        d = network.decoding
        assert d is not None
        labels = class_names(
            names, d.classes, None if f.backend == "remote" else f.path, plan.cfg_path
        )
        c = net.channels
        out: list[list[Detected]] = []
        for x, sizes in _inputs(inputs, c, net.width, net.height, boxed and not tensor):
            boxes, obj, probs = run(x, sizes)
            for i in range(x.shape[0]):
                size = (int(sizes[i][0]), int(sizes[i][1]))
                out.append(_listed(d, boxes[i], obj[i], probs[i], size, thresh, nms, labels))
        return out
