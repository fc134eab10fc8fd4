"""Darknet's detection layers as operations: what ``[yolo]``, ``[Gaussian_yolo]`` and
``[region]`` compute in their forward pass (the in-layer activation), and how the detector turns
that into boxes (``get_network_boxes(net, w, h, thresh, hier, map=0, relative=1, letter)``),
described once in the operations of :mod:`dwf.format.ops` for every emitter.

:func:`forward` lowers a detection layer's own forward: its output value is Darknet's
``l.output``, in Darknet's memory order, shaped as the layer's recorded ``(c, h, w)``.
:func:`decode` adds, after every layer, the values ``boxes`` ``(N, B, 4)`` (centre x, y, width,
height, relative to the network input, or to the original image when letterboxed),
``objectness`` ``(N, B)`` and ``probs`` ``(N, B, classes)``: one row for each detection
``get_network_boxes`` can list, in Darknet's order (layer by layer; in a layer, the rows of
``get_yolo_detections``/``get_region_boxes``/``get_region_detections``), before any threshold.
The threshold and the non-maximum suppression, which depend on values an emitter cannot know
in advance, are :mod:`dwf.format.nms`.

Nothing here is new to an emitter: every step is an existing operation (reshape, transpose,
slice, sigmoid, softmax, exp, arithmetic with constant grids and anchors, floor, less, where).
With ``letterbox``, the description has a second input, :attr:`Decoding.image_size`: each
image's width and height, from which Darknet's ``correct_*_boxes`` arithmetic (integer sizes,
as C's integer division makes them) maps the boxes back to the original image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from dwf.format.lowering import Lowering, Refused
from dwf.format.records import LayerPlan

if TYPE_CHECKING:
    from dwf.format.network import Detection

# How get_network_boxes lists a layer's rows, which decides what its threshold does to them.
LISTED_ABOVE_THRESH = 0
"""``[yolo]``, ``[Gaussian_yolo]``: only rows whose objectness is above the threshold."""
LISTED_ZEROED = 1
"""pjreddie's ``[region]``: every row; an objectness at or below the threshold becomes 0 (and
the row keeps no probability)."""
LISTED_ALWAYS = 2
"""AlexeyAB's ``[region]``: every row, objectness 1."""

DECODED_TYPES = ("yolo", "Gaussian_yolo", "region")

_Column = np.ndarray[Any, Any]  # one constant value per row, (rows, 1)


@attrs.frozen
class Span:
    """The rows of one detection layer in the decoded outputs.

    Attributes:
        layer: the layer's name (``"yolo_30"``).
        type: its type.
        start, stop: its rows, ``boxes[:, start:stop]``.
        listing: how ``get_network_boxes`` lists them (:data:`LISTED_ABOVE_THRESH`,
            :data:`LISTED_ZEROED`, :data:`LISTED_ALWAYS`).
    """

    layer: str
    type: str
    start: int
    stop: int
    listing: int

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON values."""
        return attrs.asdict(self)


@attrs.frozen
class Decoding:
    """What a described network's decoding outputs, and what its post-processing needs.

    Attributes:
        boxes, objectness, probs: the value names of the three outputs.
        image_size: with ``letterbox``, the second input: ``(N, 2)`` float32, each image's
            width and height in pixels; ``None`` otherwise.
        letterbox: the boxes are corrected for a letterboxed input (relative to each original
            image); otherwise they are relative to the network input.
        spans: the rows of each detection layer, in order.
        classes: the probabilities per row.
        nms_kind, beta_nms: the NMS Darknet's detector runs: the last detection layer's.
        net_size: the network input's ``(width, height)``.
    """

    boxes: str
    objectness: str
    probs: str
    image_size: str | None
    letterbox: bool
    spans: tuple[Span, ...]
    classes: int
    nms_kind: str
    beta_nms: float
    net_size: tuple[int, int]

    @property
    def rows(self) -> int:
        """How many rows the outputs have (per image)."""
        return self.spans[-1].stop if self.spans else 0

    def listing(self) -> np.ndarray[Any, np.dtype[np.int8]]:
        """Each row's listing code (see :class:`Span`), for :func:`dwf.nms`."""
        out = np.zeros(self.rows, np.int8)
        for s in self.spans:
            out[s.start : s.stop] = s.listing
        return out

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON values (the ONNX model's ``darknet.decode`` metadata)."""
        d = attrs.asdict(self, recurse=True)
        d["spans"] = [s.to_dict() for s in self.spans]
        d["net_size"] = list(self.net_size)
        return d


# -- refusals -------------------------------------------------------------------------------------
def check(x: Lowering, lp: LayerPlan, det: Detection) -> None:
    """Raise :class:`Refused` for a detection layer whose decoding has no exact form."""
    if det.type == "detection":
        raise Refused(
            "[detection] (YOLOv1) layers are not decoded: get_network_boxes gives their boxes in"
            " pixels of the w×h it is passed (not relative, no letterbox correction), and"
            " Darknet's detector does not run them"
        )
    if det.type not in DECODED_TYPES:
        raise Refused(f"no decoding for a [{det.type}] layer")
    if det.tree is not None:
        raise Refused(
            f"tree={det.tree}: the hierarchical softmax (YOLO9000) needs its tree file, which"
            " the decoding does not read"
        )
    if det.type in ("yolo", "Gaussian_yolo") and any(not 0 <= m < det.num for m in det.mask):
        raise Refused(
            f"mask={','.join(map(str, det.mask))} names an anchor past num={det.num}: Darknet"
            " reads whatever lies after its anchors"
        )
    if det.type == "region" and det.coords < 4:
        raise Refused(
            f"coords={det.coords}: Darknet's [region] decoding reads 4 box values and the"
            " objectness at fixed places, past the entries of a smaller row"
        )
    c, h, w = det.input_shape
    if not (c and h and w):
        raise Refused("its input has no image shape")


# -- forward: the in-layer activation -------------------------------------------------------------
def _scaled(x: Lowering, v: str, s: float) -> str:
    """Darknet's ``scal_add_cpu(.., scale_x_y, -0.5·(scale_x_y - 1))`` (nothing when 1)."""
    g = x.g
    if s == 1.0:
        return v
    return g.op("add", g.op("mul", v, g.scalar(s)), g.scalar(-0.5 * (s - 1.0)))


def _entries(x: Lowering, v: str, start: int, stop: int, axis: int) -> str:
    return x.g.slice(v, [start], [stop], [axis])


def _cat(x: Lowering, parts: list[str], axis: int) -> str:
    return parts[0] if len(parts) == 1 else x.g.op("concat", *parts, axis=axis)


def _yolo_forward(x: Lowering, det: Detection, inp: str) -> str:
    g = x.g
    c, h, w = det.input_shape
    n, k = len(det.mask), det.classes + 5
    v = g.reshape(inp, (n, k, h, w))
    xy = _entries(x, v, 0, 2, 2)
    wh = _entries(x, v, 2, 4, 2)
    rest = _entries(x, v, 4, k, 2)
    if not det.new_coords:  # new_coords: the layer activates nothing, the conv did
        xy = g.op("sigmoid", xy)
        rest = g.op("sigmoid", rest)
    y = g.op("concat", _scaled(x, xy, det.scale_x_y), wh, rest, axis=2)
    return g.reshape(y, (c, h, w))


def _gaussian_forward(x: Lowering, det: Detection, inp: str) -> str:
    g = x.g
    c, h, w = det.input_shape
    n, k = len(det.mask), det.classes + 9
    v = g.reshape(inp, (n, k, h, w))
    sig = g.op("sigmoid", v)
    s = det.scale_x_y
    # entries: x, σx, y, σy, w, σw, h, σh, objectness, classes; w and h stay raw
    parts = [
        _scaled(x, _entries(x, sig, 0, 1, 2), s),
        _entries(x, sig, 1, 2, 2),
        _scaled(x, _entries(x, sig, 2, 3, 2), s),
        _entries(x, sig, 3, 4, 2),
        _entries(x, v, 4, 5, 2),
        _entries(x, sig, 5, 6, 2),
        _entries(x, v, 6, 7, 2),
        _entries(x, sig, 7, k, 2),
    ]
    return g.reshape(g.op("concat", *parts, axis=2), (c, h, w))


def _region_forward_flat(x: Lowering, det: Detection, inp: str) -> str:
    """AlexeyAB: ``flatten`` (cell by cell, each anchor's entries together), the logistic of
    entry 4, the softmax of entries 5 … 5+classes (fixed places, whatever ``coords`` is)."""
    g = x.g
    c, h, w = det.input_shape
    n, size, classes = det.num, det.coords + det.classes + 1, det.classes
    v = g.reshape(inp, (n * size, h * w))
    v = g.reshape(g.op("transpose", v, perm=(0, 2, 1)), (h * w * n, size))
    parts = [_entries(x, v, 0, 4, 2), g.op("sigmoid", _entries(x, v, 4, 5, 2))]
    if det.softmax:
        parts.append(g.op("softmax", _entries(x, v, 5, 5 + classes, 2), axis=2))
        if 5 + classes < size:
            parts.append(_entries(x, v, 5 + classes, size, 2))
    elif size > 5:
        parts.append(_entries(x, v, 5, size, 2))
    return g.reshape(_cat(x, parts, 2), (c, h, w))


def _region_forward_in_place(x: Lowering, det: Detection, inp: str) -> str:
    """pjreddie: per anchor, the logistic of x, y and (without ``background``) the objectness;
    of the classes, a softmax over them (and the background entry), or the logistic."""
    g = x.g
    c, h, w = det.input_shape
    n, coords, classes = det.num, det.coords, det.classes
    size = coords + classes + 1
    v = g.reshape(inp, (n, size, h, w))
    parts = [g.op("sigmoid", _entries(x, v, 0, 2, 2))]
    if coords > 2:
        parts.append(_entries(x, v, 2, coords, 2))
    if det.softmax and det.background:  # the objectness entry is the softmax's first
        parts.append(g.op("softmax", _entries(x, v, coords, size, 2), axis=2))
    else:
        obj = _entries(x, v, coords, coords + 1, 2)
        parts.append(obj if det.background else g.op("sigmoid", obj))
        cls = _entries(x, v, coords + 1, size, 2)
        parts.append(g.op("softmax", cls, axis=2) if det.softmax else g.op("sigmoid", cls))
    return g.reshape(_cat(x, parts, 2), (c, h, w))


def forward(x: Lowering, lp: LayerPlan, det: Detection, inp: str) -> str:
    """The detection layer's forward pass: the value of Darknet's ``l.output`` (CPU build),
    shaped ``(N, c, h, w)`` in Darknet's memory order.

    Raises:
        Refused: a layer whose decoding has no exact form (:func:`check`).
    """
    check(x, lp, det)
    if det.type == "yolo":
        return _yolo_forward(x, det, inp)
    if det.type == "Gaussian_yolo":
        return _gaussian_forward(x, det, inp)
    if x.rules.region_flattens:
        return _region_forward_flat(x, det, inp)
    return _region_forward_in_place(x, det, inp)


# -- decoding: get_network_boxes before its threshold ----------------------------------------------
@attrs.frozen
class _Rows:
    """One layer's decoded values: boxes (N, rows, 4), objectness (N, rows), probs."""

    boxes: str
    objectness: str
    probs: str
    rows: int
    listing: int


def _grid(h: int, w: int, n: int, cell_major: bool) -> tuple[np.ndarray[Any, Any], ...]:
    """Column, row and anchor index of each row, as ``(rows, 1)`` float32/int arrays, rows
    cell by cell (anchors inside) or anchor by anchor (cells inside)."""
    cells = np.arange(h * w)
    anchors = np.arange(n)
    if cell_major:
        cell, anchor = np.repeat(cells, n), np.tile(anchors, h * w)
    else:
        cell, anchor = np.tile(cells, n), np.repeat(anchors, h * w)
    col = (cell % w).astype(np.float32).reshape(-1, 1)
    row = (cell // w).astype(np.float32).reshape(-1, 1)
    return col, row, anchor


def _column(x: Lowering, v: str, i: int) -> str:
    """Entry ``i`` of ``(N, rows, k)`` rows, as ``(N, rows, 1)``."""
    return x.g.slice(v, [i], [i + 1], [2])


def _cell_rows(x: Lowering, y: str, n: int, k: int, hw: int) -> str:
    """A ``(N, n·k·hw)`` layer output laid out anchor, entry, cell as ``(N, hw·n, k)`` rows
    cell by cell, anchors inside."""
    g = x.g
    v = g.reshape(y, (n, k, hw))
    return g.reshape(g.op("transpose", v, perm=(0, 3, 1, 2)), (hw * n, k))


def _anchor_rows(x: Lowering, y: str, n: int, k: int, hw: int) -> str:
    """The same layout as ``(N, n·hw, k)`` rows anchor by anchor, cells inside."""
    g = x.g
    v = g.reshape(y, (n, k, hw))
    return g.reshape(g.op("transpose", v, perm=(0, 1, 3, 2)), (n * hw, k))


def _xy(x: Lowering, tx: str, ty: str, col: Any, row: Any, lw: int, lh: int) -> tuple[str, str]:
    """``(i + tx) / lw`` and ``(j + ty) / lh``: the cell's corner plus the offset, in float as
    Darknet adds the int and divides by the int."""
    g = x.g
    bx = g.op("div", g.op("add", tx, g.const(col)), g.scalar(float(lw)))
    by = g.op("div", g.op("add", ty, g.const(row)), g.scalar(float(lh)))
    return bx, by


def _size(x: Lowering, t: str, anchor: Any, over: int, square: bool = False) -> str:
    """A box side from its raw value: ``exp(t)·anchor / over`` (``t·t·4·anchor / over`` for
    ``new_coords``), in Darknet's order of operations."""
    g = x.g
    s = g.op("mul", g.op("mul", t, t), g.scalar(4.0)) if square else g.op("exp", t)
    return g.op("div", g.op("mul", s, g.const(anchor)), g.scalar(float(over)))


def _anchor_sides(det: Detection, which: Any) -> tuple[_Column, _Column]:
    """The width and height of anchors ``which`` (one per row), as ``(rows, 1)`` arrays."""
    a = np.asarray(det.anchors, np.float32)
    return a[2 * which].reshape(-1, 1), a[2 * which + 1].reshape(-1, 1)


def _masked_rows(
    x: Lowering, det: Detection, y: str, k: int
) -> tuple[str, _Column, _Column, _Column, _Column]:
    """``[yolo]``/``[Gaussian_yolo]``: the ``(N, rows, k)`` rows cell by cell, each row's
    column and row, and its anchor's width and height (the anchors ``mask=`` names)."""
    _, h, w = det.input_shape
    n = len(det.mask)
    col, row, anchor = _grid(h, w, n, cell_major=True)
    aw, ah = _anchor_sides(det, np.asarray(det.mask, np.int64)[anchor])
    return _cell_rows(x, y, n, k, h * w), col, row, aw, ah


def _yolo_rows(x: Lowering, det: Detection, y: str, net_w: int, net_h: int) -> _Rows:
    g = x.g
    _, h, w = det.input_shape
    n, k = len(det.mask), det.classes + 5
    v, col, row, aw, ah = _masked_rows(x, det, y, k)
    bx, by = _xy(x, _column(x, v, 0), _column(x, v, 1), col, row, w, h)
    bw = _size(x, _column(x, v, 2), aw, net_w, bool(det.new_coords))
    bh = _size(x, _column(x, v, 3), ah, net_h, bool(det.new_coords))
    boxes = g.op("concat", bx, by, bw, bh, axis=2)
    obj = _column(x, v, 4)
    probs = g.op("mul", obj, _entries(x, v, 5, k, 2))
    return _Rows(boxes, g.reshape(obj, (h * w * n,)), probs, h * w * n, LISTED_ABOVE_THRESH)


def _gaussian_rows(x: Lowering, det: Detection, y: str, net_w: int, net_h: int) -> _Rows:
    g = x.g
    _, h, w = det.input_shape
    n, k = len(det.mask), det.classes + 9
    v, col, row, aw, ah = _masked_rows(x, det, y, k)
    bw, bh = _size(x, _column(x, v, 4), aw, net_w), _size(x, _column(x, v, 6), ah, net_h)
    bx, by = _xy(x, _column(x, v, 0), _column(x, v, 2), col, row, w, h)
    if det.yolo_point != "center":  # the point predicted is a corner: move to the centre
        half_w = g.op("div", bw, g.scalar(2.0))
        half_h = g.op("div", bh, g.scalar(2.0))
        move = "add" if det.yolo_point == "left_top" else "sub"
        bx, by = g.op(move, bx, half_w), g.op(move, by, half_h)
    boxes = g.op("concat", bx, by, bw, bh, axis=2)
    obj = _column(x, v, 8)
    # objectness · class · (1 - the mean of the four uncertainties)
    uc = g.op(
        "add",
        g.op("add", _column(x, v, 1), _column(x, v, 3)),
        g.op("add", _column(x, v, 5), _column(x, v, 7)),
    )
    certain = g.op("sub", g.scalar(1.0), g.op("div", uc, g.scalar(4.0)))
    probs = g.op("mul", g.op("mul", obj, _entries(x, v, 9, k, 2)), certain)
    return _Rows(boxes, g.reshape(obj, (h * w * n,)), probs, h * w * n, LISTED_ABOVE_THRESH)


def _region_rows_flat(x: Lowering, det: Detection, y: str) -> _Rows:
    """AlexeyAB's ``get_region_boxes`` on the flattened output: rows of ``classes + 5``
    values, cell by cell, whatever ``coords`` is."""
    g = x.g
    c, h, w = det.input_shape
    n, classes = det.num, det.classes
    rows, k = h * w * n, classes + 5
    v = g.flat(y)
    if rows * k != c * h * w:
        v = g.slice(v, [0], [rows * k], [1])
    v = g.reshape(v, (rows, k))
    col, row, anchor = _grid(h, w, n, cell_major=True)
    aw, ah = _anchor_sides(det, anchor)
    tx = g.op("sigmoid", _column(x, v, 0))
    ty = g.op("sigmoid", _column(x, v, 1))
    bx, by = _xy(x, tx, ty, col, row, w, h)
    bw, bh = _size(x, _column(x, v, 2), aw, w), _size(x, _column(x, v, 3), ah, h)
    boxes = g.op("concat", bx, by, bw, bh, axis=2)
    scale = _column(x, v, 4)
    if det.classfix == -1:  # a scale under one half counts as none
        scale = g.op("where", g.op("less", scale, g.scalar(0.5)), g.scalar(0.0), scale)
    probs = g.op("mul", scale, _entries(x, v, 5, k, 2))
    ones = g.op("broadcast_batch", g.const(np.ones(rows, np.float32)))
    return _Rows(boxes, ones, probs, rows, LISTED_ALWAYS)


def _region_rows_in_place(x: Lowering, det: Detection, y: str) -> _Rows:
    """pjreddie's ``get_region_detections``: rows anchor by anchor."""
    g = x.g
    _, h, w = det.input_shape
    n, coords, classes = det.num, det.coords, det.classes
    size = coords + classes + 1
    rows = h * w * n
    v = _anchor_rows(x, y, n, size, h * w)
    col, row, anchor = _grid(h, w, n, cell_major=False)
    aw, ah = _anchor_sides(det, anchor)
    bx, by = _xy(x, _column(x, v, 0), _column(x, v, 1), col, row, w, h)
    bw, bh = _size(x, _column(x, v, 2), aw, w), _size(x, _column(x, v, 3), ah, h)
    boxes = g.op("concat", bx, by, bw, bh, axis=2)
    if det.background:
        scale = g.op("broadcast_batch", g.const(np.ones((rows, 1), np.float32)))
    else:
        scale = _column(x, v, coords)
    probs = g.op("mul", scale, _entries(x, v, coords + 1, size, 2))
    return _Rows(boxes, g.reshape(scale, (rows,)), probs, rows, LISTED_ZEROED)


def _floor_div(x: Lowering, a: str, b: str) -> str:
    """C's integer division of positive whole numbers held in float32 (below 2**24): the
    rounded quotient's floor, corrected by one where the rounding crossed a whole number."""
    g = x.g
    q = g.op("floor", g.op("div", a, b))
    one = g.scalar(1.0)
    q = g.op("where", g.op("greater", g.op("mul", q, b), a), g.op("sub", q, one), q)
    up = g.op("add", q, one)
    return g.op("where", g.op("greater", g.op("mul", up, b), a), q, up)


def _letterbox(x: Lowering, boxes: str, size: str, net_w: int, net_h: int) -> str:
    """``correct_yolo_boxes(.., letter=1)``: the image of each ``(w, h)`` was resized to
    ``new_w × new_h`` (the network's size along the side that limits it) and centred; map the
    boxes back to the image."""
    g = x.g
    iw, ih = g.slice(size, [0], [1], [1]), g.slice(size, [1], [2], [1])
    nw_, nh_ = g.scalar(float(net_w)), g.scalar(float(net_h))
    wide = g.op("less", g.op("div", nw_, iw), g.op("div", nh_, ih))
    new_w = g.op("where", wide, nw_, _floor_div(x, g.op("mul", iw, nh_), ih))
    new_h = g.op("where", wide, _floor_div(x, g.op("mul", ih, nw_), iw), nh_)
    two = g.scalar(2.0)
    dx = g.op("div", g.op("div", g.op("sub", nw_, new_w), two), nw_)
    dy = g.op("div", g.op("div", g.op("sub", nh_, new_h), two), nh_)
    rw, rh = g.op("div", new_w, nw_), g.op("div", new_h, nh_)
    zero = g.op("mul", dx, g.scalar(0.0))
    shift = g.reshape(g.op("concat", dx, dy, zero, zero, axis=1), (1, 4))
    ratio = g.reshape(g.op("concat", rw, rh, rw, rh, axis=1), (1, 4))
    return g.op("div", g.op("sub", boxes, shift), ratio)


def decode(
    x: Lowering,
    decoded: list[tuple[LayerPlan, Detection, str]],
    net_w: int,
    net_h: int,
    letterbox: bool,
) -> Decoding:
    """Add the nodes of ``get_network_boxes`` over the detection layers ``decoded`` (each with
    its forward output value) and return what they give. Their nodes are appended to
    ``x.g.nodes``; the caller keeps them apart from the layers' own."""
    g = x.g
    spans: list[Span] = []
    parts: list[_Rows] = []
    start = 0
    for lp, det, y in decoded:
        g.layer, g.base = lp.index, f"{lp.name}/decode"
        if det.type == "yolo":
            r = _yolo_rows(x, det, y, net_w, net_h)
        elif det.type == "Gaussian_yolo":
            r = _gaussian_rows(x, det, y, net_w, net_h)
        elif x.rules.region_flattens:
            r = _region_rows_flat(x, det, y)
        else:
            r = _region_rows_in_place(x, det, y)
        parts.append(r)
        spans.append(Span(lp.name, det.type, start, start + r.rows, r.listing))
        start += r.rows
    g.layer, g.base = -1, "decode"
    image_size = None
    boxes = _cat(x, [p.boxes for p in parts], 1)
    if letterbox:
        image_size = g.declare("image_size", (None, 2))
        boxes = _letterbox(x, boxes, image_size, net_w, net_h)
    boxes = g.op("identity", boxes, out="boxes")
    objectness = g.op("identity", _cat(x, [p.objectness for p in parts], 1), out="objectness")
    probs = g.op("identity", _cat(x, [p.probs for p in parts], 1), out="probs")
    last = decoded[-1][1]
    return Decoding(
        boxes=boxes,
        objectness=objectness,
        probs=probs,
        image_size=image_size,
        letterbox=letterbox,
        spans=tuple(spans),
        classes=decoded[0][1].classes,
        nms_kind=last.nms_kind,
        beta_nms=last.beta_nms,
        net_size=(net_w, net_h),
    )
