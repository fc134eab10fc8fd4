"""Darknet's threshold and non-maximum suppression, in numpy, on decoded detections
(:mod:`dwf.format.decoding`): what ``get_network_boxes`` does with its ``thresh`` and what the
detector's ``do_nms_sort`` / ``diounms_sort`` then do, to the last tie.

Darknet lists a detection layer's rows by its own rule (:data:`~dwf.format.decoding.LISTED_\
ABOVE_THRESH` …), sets every probability at or below the threshold to 0, moves the rows whose
objectness is 0 to the end of its array (swapping each with the last), and for each class in
turn sorts the others by that class's probability (glibc's ``qsort``, a stable merge sort, so
equal probabilities keep the order the previous sorts left) and, walking them in that order,
sets the class's probability of every later box that overlaps a kept one by more than the NMS
threshold to 0. The overlap is ``box_iou`` (``default`` and ``cornersnms``), ``box_diou`` with
the exponent 0.6 (``greedynms``) or ``box_diounms`` with ``beta_nms`` (``diounms``), computed
in float32 as Darknet's C floats are.

Why NMS stays outside an ONNX model: docs/onnx.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dwf.errors import DwfError
from dwf.format.decoding import LISTED_ABOVE_THRESH, LISTED_ALWAYS, LISTED_ZEROED

Array = np.ndarray[Any, Any]
F32 = np.float32
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")


def _half(v: Array) -> Array:
    out: Array = (v / F32(2)).astype(F32)
    return out


def box_iou(a: Array, b: Array) -> Array:
    """Darknet's ``box_iou`` of box ``a`` ``(4,)`` with each box of ``b`` ``(k, 4)``, float32."""
    a, b = a.astype(F32), b.astype(F32)

    def overlap(x1: Array, w1: Array, x2: Array, w2: Array) -> Array:
        left = np.maximum(x1 - _half(w1), x2 - _half(w2))
        right = np.minimum(x1 + _half(w1), x2 + _half(w2))
        out: Array = (right - left).astype(F32)
        return out

    w = overlap(a[0], a[2], b[:, 0], b[:, 2])
    h = overlap(a[1], a[3], b[:, 1], b[:, 3])
    inter = np.where((w < 0) | (h < 0), F32(0), w * h).astype(F32)
    union = ((a[2] * a[3]) + (b[:, 2] * b[:, 3]) - inter).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = (inter / union).astype(F32)
    out: Array = np.where((inter == 0) | (union == 0), F32(0), iou)
    return out


def box_diou(a: Array, b: Array, beta: float) -> Array:
    """Darknet's ``box_diounms(a, b, beta)`` (``box_diou`` is ``beta`` 0.6): the IoU minus
    (centre distance² / enclosing diagonal²) ** beta, float32."""
    a, b = a.astype(F32), b.astype(F32)
    iou = box_iou(a, b)
    top = np.minimum(a[1] - _half(a[3]), b[:, 1] - _half(b[:, 3]))
    bot = np.maximum(a[1] + _half(a[3]), b[:, 1] + _half(b[:, 3]))
    left = np.minimum(a[0] - _half(a[2]), b[:, 0] - _half(b[:, 2]))
    right = np.maximum(a[0] + _half(a[2]), b[:, 0] + _half(b[:, 2]))
    w, h = (right - left).astype(F32), (bot - top).astype(F32)
    c = (w * w + h * h).astype(F32)
    dx, dy = (a[0] - b[:, 0]).astype(F32), (a[1] - b[:, 1]).astype(F32)
    d = (dx * dx + dy * dy).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.power((d / c).astype(F32).astype(np.float64), float(F32(beta))).astype(F32)
    out: Array = np.where(c == 0, iou, (iou - u).astype(F32))
    return out


def listed(
    objectness: Array, probs: Array, thresh: float, listing: Array
) -> tuple[Array, Array, Array]:
    """``get_network_boxes``' threshold: the rows it lists (indices, in order), their objectness
    and their probabilities as it leaves them (0 at or below ``thresh``)."""
    t = F32(thresh)
    above = objectness > t
    rows = np.flatnonzero(above | (listing != LISTED_ABOVE_THRESH))
    code = listing[rows]
    obj = objectness[rows].astype(F32)
    obj = np.where((code == LISTED_ZEROED) & ~above[rows], F32(0), obj)
    p = probs[rows].astype(F32)
    keep = (p > t) & ((obj != 0) | (code != LISTED_ZEROED))[:, None]
    return rows, obj, np.where(keep, p, F32(0)).astype(F32)


def suppress(
    boxes: Array, objectness: Array, probs: Array, thresh: float, kind: str, beta_nms: float
) -> tuple[Array, Array]:
    """``do_nms_sort`` (``kind="default"``) or ``diounms_sort`` on Darknet's list of
    detections: returns the probabilities after suppression (a copy) and the list's order
    after Darknet's swaps and sorts (indices into the given rows)."""
    if kind not in NMS_KINDS:
        raise DwfError(f"unknown NMS kind {kind!r}: one of {', '.join(NMS_KINDS)}")
    n = len(objectness)
    probs = np.array(probs, F32, copy=True)
    order = np.arange(n)
    last = n - 1
    i = 0
    while i <= last:  # rows with objectness 0 go to the end, each swapped with the last
        if objectness[order[i]] == 0:
            order[i], order[last] = order[last], order[i]
            last -= 1
        else:
            i += 1
    active = order[: last + 1]
    t = F32(thresh)
    for k in range(probs.shape[1] if probs.ndim == 2 else 0):
        p = probs[:, k]
        nonzero = np.flatnonzero(p[active] != 0)
        if not nonzero.size:  # a stable sort of equal keys changes nothing, and none is kept
            continue
        active = active[np.argsort(-p[active], kind="stable")]
        for pos in np.flatnonzero(p[active] != 0):
            i = active[pos]
            if p[i] == 0:
                continue
            rest = active[pos + 1 :]
            rest = rest[p[rest] != 0]  # a zero stays zero: compare only with what is left
            if not rest.size:
                break
            if kind in ("default", "cornersnms"):
                over = box_iou(boxes[i], boxes[rest]) > t
            else:
                beta = 0.6 if kind == "greedynms" else beta_nms
                over = box_diou(boxes[i], boxes[rest], beta) > t
            p[rest[over]] = 0
    order[: last + 1] = active
    return probs, order


def nms(
    boxes: Any,
    objectness: Any,
    probs: Any,
    *,
    thresh: float = 0.25,
    nms: float = 0.45,
    kind: str = "default",
    beta_nms: float = 0.6,
    listing: Any = None,
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Darknet's threshold and NMS on decoded detections: the probabilities Darknet keeps.

    Args:
        boxes, objectness, probs: one image's decoded rows, ``(B, 4)``, ``(B,)`` and
            ``(B, classes)`` (the ``boxes``, ``objectness`` and ``probs`` outputs of a model
            exported with ``decode=True``, or of :func:`dwf.detect`'s runtimes), or a batch of
            them with a leading ``N`` axis.
        thresh: ``get_network_boxes``' threshold (the detector's ``-thresh``, 0.25).
        nms: the NMS overlap threshold (0.45); 0 skips the NMS, as Darknet's ``if (nms)``.
        kind: the NMS: ``"default"`` (``do_nms_sort``), ``"greedynms"``, ``"diounms"``,
            ``"cornersnms"``; Darknet's detector uses its last detection layer's ``nms_kind``.
        beta_nms: the ``diounms`` exponent.
        listing: how Darknet lists each row (``(B,)``: 0 only above the threshold, ``[yolo]``;
            1 always, objectness zeroed at or below it, pjreddie's ``[region]``; 2 always,
            AlexeyAB's ``[region]``); default all 0. A model's ``darknet.decode`` metadata
            gives it per layer (``spans``), as does ``Network.decoding.listing()``.

    Returns:
        float32 probabilities shaped as ``probs``: a row's class probability where Darknet
        keeps it after the threshold and NMS (above ``thresh``), else 0. A detection as
        Darknet prints it is each nonzero entry.

    Raises:
        DwfError: shapes that do not agree, or an unknown ``kind``.
    """
    b, o, p = np.asarray(boxes), np.asarray(objectness), np.asarray(probs)
    lst = None if listing is None else np.asarray(listing)
    if p.ndim != 3:
        return run(b, o, p, thresh, nms, kind, beta_nms, lst)[0]
    if b.shape[:1] != p.shape[:1] or o.shape[:1] != p.shape[:1]:
        raise DwfError(f"boxes {b.shape}, objectness {o.shape} and probs {p.shape}: not one batch")
    out = np.zeros(p.shape, F32)
    for i in range(p.shape[0]):
        out[i] = run(b[i], o[i], p[i], thresh, nms, kind, beta_nms, lst)[0]
    return out


def run(
    boxes: Array,
    objectness: Array,
    probs: Array,
    thresh: float,
    nms_thresh: float,
    kind: str,
    beta_nms: float,
    listing: Array | None,
) -> tuple[Array, Array, Array]:
    """:func:`nms` for one image, also returning each row's objectness as Darknet leaves it and
    the order of Darknet's list after its NMS (row indices): what the detector prints from."""
    n = probs.shape[0] if probs.ndim == 2 else -1
    if boxes.shape != (n, 4) or objectness.shape != (n,):
        raise DwfError(
            f"boxes {boxes.shape}, objectness {objectness.shape} and probs {probs.shape} are"
            " not one image's (B, 4), (B,) and (B, classes)"
        )
    code = (
        np.zeros(len(objectness), np.int8)
        if listing is None
        else np.asarray(listing, np.int8).reshape(-1)
    )
    if code.shape != objectness.shape or not np.isin(code, (0, LISTED_ZEROED, LISTED_ALWAYS)).all():
        raise DwfError(f"listing= must hold 0, 1 or 2 for each of the {len(objectness)} rows")
    rows, obj, p = listed(objectness, probs, thresh, code)
    order = np.arange(len(rows))
    if nms_thresh:
        p, order = suppress(boxes[rows].astype(F32), obj, p, nms_thresh, kind, beta_nms)
    out = np.zeros(probs.shape, F32)
    out[rows] = p
    kept_obj = np.zeros(len(objectness), F32)
    kept_obj[rows] = obj
    return out, kept_obj, rows[order]
