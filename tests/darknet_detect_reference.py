"""A numpy model of Darknet's detection code, loop for loop, written from its C sources and
independent of dwf's decoding (``dwf/format/decoding.py``, ``dwf/format/nms.py``): the
detection layers' CPU forward passes (``forward_yolo_layer``, ``forward_gaussian_yolo_layer``,
``forward_region_layer`` of each fork), ``get_network_boxes`` (``get_yolo_detections``,
``get_gaussian_yolo_detections``, AlexeyAB's ``custom_get_region_detections`` /
``get_region_boxes``, pjreddie's ``get_region_detections``, the ``correct_*_boxes``
letterbox arithmetic), ``do_nms_sort``, ``diounms_sort`` and the detector's printing order
(``get_actual_detections``, sorted by left edge).

Layers are plain dicts the tests build their cfgs from: ``type`` (``yolo``,
``Gaussian_yolo``, ``region``), ``classes``, ``num``, ``mask``, ``anchors`` (Darknet's
``l.biases``), ``w``, ``h``, and the options (``scale_x_y``, ``new_coords``, ``yolo_point``,
``coords``, ``softmax``, ``background``, ``classfix``). Arithmetic is float32 where Darknet's
is ``float`` (a Python float where it goes through ``double``). Batch 1.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
f32 = np.float32


def logistic(x: Any) -> Any:
    """activations.h: 1.f / (1.f + expf(-x))."""
    with np.errstate(over="ignore"):
        return f32(f32(1) / (f32(1) + np.exp(-f32(x))))


def _softmax(values: list[float]) -> list[float]:
    largest = max(values)
    es = [f32(math.exp(float(v) - float(largest))) for v in values]
    total = f32(0)
    for e in es:
        total = f32(total + e)
    return [float(f32(e / total)) for e in es]


# -- forward passes: l.output from the layer's input (flat, C order) --------------------------
def forward(layer: dict[str, Any], x: Array, dialect: str) -> Array:
    out = np.array(x, np.float32).reshape(-1).copy()
    t = layer["type"]
    w, h, n, classes = layer["w"], layer["h"], len(layer["mask"]), layer["classes"]
    wh = w * h
    if t == "yolo":
        k = classes + 5
        s = f32(layer.get("scale_x_y", 1.0)) if dialect == "alexeyab" else f32(1.0)
        beta = f32(-0.5 * (float(s) - 1))
        new = dialect == "alexeyab" and layer.get("new_coords", 0)
        for a in range(n):
            base = a * wh * k
            if not new:
                for i in range(base, base + 2 * wh):
                    out[i] = logistic(out[i])
                for i in range(base + 4 * wh, base + k * wh):
                    out[i] = logistic(out[i])
            if dialect == "alexeyab":
                for i in range(base, base + 2 * wh):
                    out[i] = f32(out[i] * s) + beta
        return out
    if t == "Gaussian_yolo":
        k = classes + 9
        s = f32(layer.get("scale_x_y", 1.0))
        beta = f32(-0.5 * (float(s) - 1))
        for a in range(n):
            base = a * wh * k
            for entry, scaled in (
                (0, True),
                (1, False),
                (2, True),
                (3, False),
                (5, False),
                (7, False),
            ):
                for i in range(base + entry * wh, base + (entry + 1) * wh):
                    out[i] = logistic(out[i])
                    if scaled:
                        out[i] = f32(out[i] * s) + beta
            for i in range(base + 8 * wh, base + k * wh):
                out[i] = logistic(out[i])
        return out
    # region
    num, coords = layer["num"], layer.get("coords", 4)
    size = coords + classes + 1
    if dialect == "alexeyab":
        flat = out.copy()  # flatten(l.output, w*h, size*n, 1, 1)
        layers = size * num
        for c in range(layers):
            for i in range(wh):
                flat[i * layers + c] = out[c * wh + i]
        out = flat
        for i in range(wh * num):
            out[size * i + 4] = logistic(out[size * i + 4])
        if layer.get("softmax", 0):
            for i in range(wh * num):
                at = size * i + 5
                out[at : at + classes] = _softmax(list(out[at : at + classes]))
        return out
    background = layer.get("background", 0)
    for a in range(num):
        base = a * wh * size
        for i in range(base, base + 2 * wh):
            out[i] = logistic(out[i])
        if not background:
            for i in range(base + coords * wh, base + (coords + 1) * wh):
                out[i] = logistic(out[i])
        if not layer.get("softmax", 0):
            for i in range(base + (coords + 1) * wh, base + size * wh):
                out[i] = logistic(out[i])
    if layer.get("softmax", 0):
        first = coords + (0 if background else 1)
        m = classes + background
        raw = np.array(x, np.float32).reshape(-1)
        for a in range(num):
            for g in range(wh):
                idx = [a * wh * size + (first + j) * wh + g for j in range(m)]
                for i, v in zip(idx, _softmax([raw[i] for i in idx]), strict=True):
                    out[i] = v
    return out


# -- get_network_boxes ---------------------------------------------------------------------------
def _correct(
    dets: list[dict[str, Any]], w: int, h: int, netw: int, neth: int, letter: bool, inverse: bool
) -> None:
    """correct_yolo_boxes (``inverse``: widths times 1/ratio) or correct_region_boxes /
    correct_gaussian_yolo_boxes (times netw/new_w)."""
    if letter:
        if f32(netw) / f32(w) < f32(neth) / f32(h):
            new_w, new_h = netw, (h * netw) // w
        else:
            new_w, new_h = (w * neth) // h, neth
    else:
        new_w, new_h = netw, neth
    ratiow, ratioh = f32(new_w) / f32(netw), f32(new_h) / f32(neth)
    for d in dets:
        x, y, bw, bh = d["bbox"]
        x = f32((float(x) - (netw - new_w) / 2.0 / netw) / float(ratiow))
        y = f32((float(y) - (neth - new_h) / 2.0 / neth) / float(ratioh))
        if inverse:
            sw, sh = f32(1) / ratiow, f32(1) / ratioh
        else:
            sw, sh = f32(netw) / f32(new_w), f32(neth) / f32(new_h)
        d["bbox"] = [x, y, f32(bw * sw), f32(bh * sh)]


def _yolo_dets(
    layer: dict[str, Any], out: Array, netw: int, neth: int, thresh: float
) -> list[dict[str, Any]]:
    w, h, classes, mask, biases = (
        layer["w"],
        layer["h"],
        layer["classes"],
        layer["mask"],
        layer["anchors"],
    )
    gauss = layer["type"] == "Gaussian_yolo"
    k = classes + (9 if gauss else 5)
    wh = w * h
    new = layer.get("new_coords", 0)

    def at(a: int, i: int, entry: int) -> Any:
        return out[a * wh * k + entry * wh + i]

    dets = []
    for i in range(wh):
        row, col = i // w, i % w
        for a in range(len(mask)):
            obj = at(a, i, 8 if gauss else 4)
            if not obj > thresh:
                continue
            bw_, bh_ = f32(biases[2 * mask[a]]), f32(biases[2 * mask[a] + 1])
            if gauss:
                bw = f32(math.exp(float(at(a, i, 4))) * float(bw_) / netw)
                bh = f32(math.exp(float(at(a, i, 6))) * float(bh_) / neth)
                bx = f32(f32(col + at(a, i, 0)) / f32(w))
                by = f32(f32(row + at(a, i, 2)) / f32(h))
                point = layer.get("yolo_point", "center")
                if point == "left_top":
                    bx, by = f32(bx + bw / f32(2)), f32(by + bh / f32(2))
                elif point == "right_bottom":
                    bx, by = f32(bx - bw / f32(2)), f32(by - bh / f32(2))
                uc = f32(f32(f32(at(a, i, 1) + at(a, i, 3)) + at(a, i, 5)) + at(a, i, 7))
                certain = 1.0 - float(f32(float(uc) / 4.0))
                probs = [f32(float(f32(obj * at(a, i, 9 + j))) * certain) for j in range(classes)]
            else:
                bx = f32(f32(col + at(a, i, 0)) / f32(w))
                by = f32(f32(row + at(a, i, 1)) / f32(h))
                if new:
                    tw, th = at(a, i, 2), at(a, i, 3)
                    bw = f32(f32(f32(tw * tw) * f32(4)) * bw_) / f32(netw)
                    bh = f32(f32(f32(th * th) * f32(4)) * bh_) / f32(neth)
                else:
                    bw = f32(math.exp(float(at(a, i, 2))) * float(bw_) / netw)
                    bh = f32(math.exp(float(at(a, i, 3))) * float(bh_) / neth)
                probs = [f32(obj * at(a, i, 5 + j)) for j in range(classes)]
            dets.append(
                {
                    "bbox": [bx, by, bw, bh],
                    "objectness": f32(obj),
                    "prob": [p if p > thresh else f32(0) for p in probs],
                }
            )
    return dets


def _region_dets_alexeyab(layer: dict[str, Any], out: Array, thresh: float) -> list[dict[str, Any]]:
    """custom_get_region_detections → get_region_boxes(l, 1, 1, thresh, probs, boxes, 0, 0)."""
    w, h, num, classes, biases = (
        layer["w"],
        layer["h"],
        layer["num"],
        layer["classes"],
        layer["anchors"],
    )
    dets = []
    for i in range(w * h):
        row, col = i // w, i % w
        for a in range(num):
            index = i * num + a
            base = index * (classes + 5)
            scale = out[base + 4]
            if layer.get("classfix", 0) == -1 and scale < 0.5:
                scale = f32(0)
            bx = f32(f32(col + f32(logistic(out[base]))) / f32(w))
            by = f32(f32(row + f32(logistic(out[base + 1]))) / f32(h))
            bw = f32(math.exp(float(out[base + 2])) * float(biases[2 * a]) / w)
            bh = f32(math.exp(float(out[base + 3])) * float(biases[2 * a + 1]) / h)
            probs = [f32(scale * out[base + 5 + j]) for j in range(classes)]
            dets.append(
                {
                    "bbox": [bx, by, bw, bh],
                    "objectness": f32(1),
                    "prob": [p if p > thresh else f32(0) for p in probs],
                }
            )
    return dets


def _region_dets_pjreddie(layer: dict[str, Any], out: Array, thresh: float) -> list[dict[str, Any]]:
    w, h, num, classes, biases = (
        layer["w"],
        layer["h"],
        layer["num"],
        layer["classes"],
        layer["anchors"],
    )
    coords, background = layer.get("coords", 4), layer.get("background", 0)
    size = coords + classes + 1
    wh = w * h
    dets: list[dict[str, Any]] = [{} for _ in range(wh * num)]
    for i in range(wh):
        row, col = i // w, i % w
        for a in range(num):
            index = a * wh + i

            def e(entry: int, a: int = a, i: int = i) -> Any:
                return out[a * wh * size + entry * wh + i]

            scale = f32(1) if background else e(coords)
            bx = f32(f32(col + e(0)) / f32(w))
            by = f32(f32(row + e(1)) / f32(h))
            bw = f32(math.exp(float(e(2))) * float(biases[2 * a]) / w)
            bh = f32(math.exp(float(e(3))) * float(biases[2 * a + 1]) / h)
            obj = scale if scale > thresh else f32(0)
            prob = [f32(0)] * classes
            if obj:
                for j in range(classes):
                    p = f32(scale * e(coords + 1 + j))
                    prob[j] = p if p > thresh else f32(0)
            dets[index] = {"bbox": [bx, by, bw, bh], "objectness": obj, "prob": prob}
    return dets


def get_network_boxes(
    layers: list[tuple[dict[str, Any], Array]],
    netw: int,
    neth: int,
    w: int,
    h: int,
    thresh: float,
    letter: bool,
    dialect: str,
) -> list[dict[str, Any]]:
    """Every detection Darknet lists, in its order, for layers given with their ``l.output``;
    ``letter`` as AlexeyAB's argument (pjreddie always corrects with the letterbox rule)."""
    dets: list[dict[str, Any]] = []
    for layer, out in layers:
        if layer["type"] == "region":
            if dialect == "alexeyab":
                got = _region_dets_alexeyab(layer, out, thresh)
            else:
                got = _region_dets_pjreddie(layer, out, thresh)
        else:
            got = _yolo_dets(layer, out, netw, neth, thresh)
        inverse = dialect == "alexeyab" and layer["type"] != "Gaussian_yolo"
        _correct(got, w, h, netw, neth, letter or dialect == "pjreddie", inverse)
        dets += got
    return dets


# -- NMS ------------------------------------------------------------------------------------------
# box.c's overlap, box_intersection, box_union, box_iou, box_c, box_diou/box_diounms, for box a
# against the boxes b (k, 4) at once: the same float operations, element by element.
def _halves(b: Array) -> tuple[Array, Array, Array, Array]:
    x, y, w, h = (b[:, i].astype(np.float32) for i in range(4))
    return x, y, (w / f32(2)).astype(np.float32), (h / f32(2)).astype(np.float32)


def box_iou(a: Array, b: Array) -> Array:
    ax, ay, aw2, ah2 = _halves(a[None])
    bx, by, bw2, bh2 = _halves(b)
    w = np.minimum(ax + aw2, bx + bw2) - np.maximum(ax - aw2, bx - bw2)
    h = np.minimum(ay + ah2, by + bh2) - np.maximum(ay - ah2, by - bh2)
    inter = np.where((w < 0) | (h < 0), f32(0), w * h).astype(np.float32)
    area_a = f32(a[2]) * f32(a[3])
    union = ((area_a + (b[:, 2] * b[:, 3]).astype(np.float32)) - inter).astype(np.float32)
    out = np.zeros(len(b), np.float32)
    ok = (inter != 0) & (union != 0)
    out[ok] = inter[ok] / union[ok]
    return out


def box_diou(a: Array, b: Array, beta: float) -> Array:
    ax, ay, aw2, ah2 = _halves(a[None])
    bx, by, bw2, bh2 = _halves(b)
    top, bot = np.fmin(ay - ah2, by - bh2), np.fmax(ay + ah2, by + bh2)
    left, right = np.fmin(ax - aw2, bx - bw2), np.fmax(ax + aw2, bx + bw2)
    w, h = (right - left).astype(np.float32), (bot - top).astype(np.float32)
    c = (w * w + h * h).astype(np.float32)
    iou = box_iou(a, b)
    dx, dy = (ax - bx).astype(np.float32), (ay - by).astype(np.float32)
    d = (dx * dx + dy * dy).astype(np.float32)
    out = iou.copy()
    ok = c != 0
    ratio = (d[ok] / c[ok]).astype(np.float32).astype(np.float64)
    out[ok] = (iou[ok] - np.power(ratio, float(f32(beta))).astype(np.float32)).astype(np.float32)
    return out


def _sort_by(dets: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """qsort with nms_comparator_v3 (sort_class k): glibc's merge sort, stable."""

    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        diff = a["prob"][k] - b["prob"][k]
        return 1 if diff < 0 else -1 if diff > 0 else 0

    return sorted(dets, key=functools.cmp_to_key(cmp))


def nms_sort(
    dets: list[dict[str, Any]],
    classes: int,
    thresh: float,
    kind: str = "default",
    beta: float = 0.6,
) -> list[dict[str, Any]]:
    """do_nms_sort (``default``) or diounms_sort; returns the array in its final order."""
    dets = list(dets)
    k = len(dets) - 1
    i = 0
    while i <= k:
        if dets[i]["objectness"] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
        else:
            i += 1
    total = k + 1
    for c in range(classes):
        dets[:total] = _sort_by(dets[:total], c)
        boxes = np.array([d["bbox"] for d in dets[:total]], np.float32).reshape(-1, 4)
        for i in range(total):
            if dets[i]["prob"][c] == 0:
                continue
            later = boxes[i + 1 :]
            if kind in ("default", "cornersnms"):
                hit = box_iou(boxes[i], later) > thresh
            elif kind == "greedynms":
                hit = box_diou(boxes[i], later, 0.6) > thresh
            else:
                hit = box_diou(boxes[i], later, beta) > thresh
            for j in np.flatnonzero(hit):
                dets[i + 1 + j]["prob"][c] = f32(0)
    return dets


def printed(dets: list[dict[str, Any]], classes: int, thresh: float) -> list[tuple[Any, ...]]:
    """draw_detections_v3's text: (bbox, class, prob) per line, boxes by left edge, each with
    its best class first."""
    shown = []
    for d in dets:
        best, best_p = -1, thresh
        for j in range(classes):
            if d["prob"][j] > best_p:
                best, best_p = j, d["prob"][j]
        if best >= 0:
            shown.append((d, best))
    shown.sort(key=lambda db: float(db[0]["bbox"][0] - db[0]["bbox"][2] / 2))
    lines = []
    for d, best in shown:
        lines.append((tuple(float(v) for v in d["bbox"]), best, float(d["prob"][best])))
        for j in range(classes):
            if d["prob"][j] > thresh and j != best:
                lines.append((tuple(float(v) for v in d["bbox"]), j, float(d["prob"][j])))
    return lines


# -- images ---------------------------------------------------------------------------------------
def resize_image(im: Array, w: int, h: int) -> Array:
    """image.c's resize_image on a (c, h, w) float32 image: rows first, then columns."""
    c, ih, iw = im.shape
    if (iw, ih) == (w, h):
        return im.copy()
    part = np.zeros((c, ih, w), np.float32)
    w_scale = f32(iw - 1) / f32(w - 1)
    h_scale = f32(ih - 1) / f32(h - 1)
    for x in range(w):
        if x == w - 1 or iw == 1:
            part[:, :, x] = im[:, :, iw - 1]
        else:
            sx = f32(x * w_scale)
            ix = int(sx)
            dx = f32(sx - ix)
            part[:, :, x] = (f32(1) - dx) * im[:, :, ix] + dx * im[:, :, ix + 1]
    out = np.zeros((c, h, w), np.float32)
    for y in range(h):
        sy = f32(y * h_scale)
        iy = int(sy)
        dy = f32(sy - iy)
        out[:, y, :] = (f32(1) - dy) * part[:, iy, :]
        if y == h - 1 or ih == 1:
            continue
        out[:, y, :] += dy * part[:, iy + 1, :]
    return out


def letterbox_image(im: Array, w: int, h: int) -> Array:
    c, ih, iw = im.shape
    if f32(w) / f32(iw) < f32(h) / f32(ih):
        new_w, new_h = w, (ih * w) // iw
    else:
        new_w, new_h = (iw * h) // ih, h
    boxed = np.full((c, h, w), 0.5, np.float32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy : dy + new_h, dx : dx + new_w] = resize_image(im, new_w, new_h)
    return boxed
