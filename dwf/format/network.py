"""What a Darknet network computes, described once: :func:`describe` turns a
:class:`dwf.Plan` into a :class:`Network` that every emitter (ONNX, PyTorch, a decoder of
detections) is written against, so that Darknet's semantics live here and nowhere else.

A :class:`Network` has one :class:`LayerNode` per Darknet layer, in Darknet's order: its
resolved options (``LayerPlan.params``, read once by the planner with Darknet's ``atoi``/
``atof``), the layers and the arrays it reads, and the :class:`dwf.format.ops.Node`
operations that compute it — or the reason it has no such form (a refusal). Detection layers
carry every attribute their decoding needs (:class:`Detection`). The arrays are
:class:`Weight` values, named ``"conv_12.weights"``, in the layout the file stores them (a
node transposes what is stored transposed, so an emitter can point at the file's bytes).

**What an emitter implements** (the contract; see also docs/architecture.md):

1. Call :meth:`Network.require` with its name: it raises :class:`dwf.UnsupportedLayerError`
   for the first layer that cannot be computed.
2. Make a value for :attr:`Network.input` (``(N, *input_shape[1:])`` float32), one for each
   :attr:`Network.weights` entry (its bytes, stored shape :attr:`Weight.shape`: from the file,
   or a trainable parameter) and each :attr:`Network.constants` entry.
3. For each node of :meth:`Network.nodes`, in order, compute ``node.op`` (one of
   :data:`dwf.format.ops.OPS`, whose docs say exactly what each computes) of the values named
   by ``node.inputs`` with ``node.attrs``, and name the result ``node.output``.
4. Return the values named by :attr:`Network.outputs` (the tensors entering each detection
   layer, then the last layer's output when it is not one). Every layer's output is also a
   value named after the layer (``LayerNode.output``).
5. Described with ``decode=True``, the detection layers compute their own forward pass (their
   output is Darknet's ``l.output``) and :attr:`Network.decoding` names three more outputs,
   ``boxes``, ``objectness`` and ``probs`` (:mod:`dwf.format.decoding`), made of the same
   operations; with ``letterbox=True`` too, a second input, ``decoding.image_size`` ``(N, 2)``
   float32 (each image's width and height), feeds them.

How each layer type is computed is the lowering table, :mod:`dwf.format.lowering`; the
activations are :mod:`dwf.format.activations`; the operations and values,
:mod:`dwf.format.ops`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import numpy as np

from dwf.errors import DwfError, UnsupportedLayerError
from dwf.format import decoding
from dwf.format.cfg import atoi
from dwf.format.decoding import Decoding
from dwf.format.figures import inputs
from dwf.format.header import Header
from dwf.format.lowering import LOWERINGS, REFUSED, Lowering, Refused
from dwf.format.ops import Node, Shape, Weight
from dwf.format.planner import Plan
from dwf.format.records import LayerPlan

DETECTION_TYPES = ("yolo", "region", "Gaussian_yolo", "detection")


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


@attrs.frozen
class Detection:
    """A detection layer and every attribute its decoding needs, as Darknet resolves them.

    Attributes:
        index, name, type: the layer (``"yolo"``, ``"Gaussian_yolo"``, ``"region"``,
            ``"detection"``).
        input: the value entering it (a network output): Darknet's raw predictions.
        input_shape: ``(c, h, w)`` the layer receives.
        classes: ``classes=``.
        num: ``num=``: the anchors the cfg declares.
        mask: the anchors this layer predicts (``mask=`` of ``[yolo]``/``[Gaussian_yolo]``;
            ``range(num)`` for the other types).
        anchors: Darknet's ``l.biases``: a width and a height for each of the ``num`` anchors
            (2·num values, in input pixels for ``[yolo]``, grid cells for ``[region]``), 0.5
            where ``anchors=`` gives none.
        coords: box coordinates per prediction (4; ``[detection]``: ``coords=``).
        scale_x_y: ``[yolo]``'s grid sensitivity (1.0 where the dialect does not read it).
        new_coords: ``[yolo]``'s ``new_coords`` (YOLOv4-csp/v7 box formula).
        softmax: ``[region]``/``[detection]`` apply a softmax to the class scores.
        background: pjreddie's ``[region]`` ``background=`` (AlexeyAB: always 0).
        bias_match: ``[region]``'s ``bias_match=`` (training).
        classfix: ``[region]``'s ``classfix=``; -1: AlexeyAB's detector counts an objectness
            under 0.5 as 0.
        nms_kind: ``"default"`` (``do_nms_sort``), ``"greedynms"``, ``"diounms"`` or
            ``"cornersnms"``; Darknet's detector uses the last detection layer's.
        beta_nms: the DIoU-NMS exponent.
        side: ``[detection]``'s grid side (0 otherwise).
        sqrt: ``[detection]`` predicts the square roots of width and height.
        yolo_point: ``[Gaussian_yolo]``: ``"center"``, ``"left_top"`` or ``"right_bottom"``.
        tree: ``[region]``'s hierarchical softmax file (YOLO9000), or ``None``.
        options: every option of the section as written (first of duplicates).
    """

    index: int
    name: str
    type: str
    input: str
    input_shape: tuple[int, int, int]
    classes: int
    num: int
    mask: tuple[int, ...]
    anchors: tuple[float, ...]
    coords: int = 4
    scale_x_y: float = 1.0
    new_coords: int = 0
    softmax: int = 0
    background: int = 0
    bias_match: int = 0
    classfix: int = 0
    nms_kind: str = "default"
    beta_nms: float = 0.6
    side: int = 0
    sqrt: int = 0
    yolo_point: str = "center"
    tree: str | None = None
    options: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen)

    def to_dict(self) -> dict[str, Any]:
        """The attributes a decoder of this type needs, as plain JSON values (the ONNX model's
        ``darknet.<layer>`` metadata)."""
        out: dict[str, Any] = {
            "type": self.type,
            "index": self.index,
            "input": self.input,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "num": self.num,
            "anchors": list(self.anchors),
        }
        if self.type in ("yolo", "Gaussian_yolo"):
            out.update(
                mask=list(self.mask),
                scale_x_y=self.scale_x_y,
                new_coords=self.new_coords,
                nms_kind=self.nms_kind,
                beta_nms=self.beta_nms,
            )
            if self.type == "Gaussian_yolo":
                out["yolo_point"] = self.yolo_point
        elif self.type == "region":
            out.update(
                coords=self.coords,
                softmax=self.softmax,
                background=self.background,
                bias_match=self.bias_match,
                classfix=self.classfix,
                tree=self.tree,
            )
        else:
            out.update(side=self.side, coords=self.coords, softmax=self.softmax, sqrt=self.sqrt)
        out["options"] = dict(self.options)
        return out


@attrs.frozen
class LayerNode:
    """One Darknet layer of the description.

    Attributes:
        index, name, type, line: the layer (its plan's fields; ``line`` is its section's).
        attrs: its resolved options (``LayerPlan.params``), read-only.
        activation: the activation it applies (resolved: an unknown name is ``"relu"``), or
            ``None``.
        inputs: the layers whose outputs it reads, ``-1`` for the network input
            (:func:`dwf.format.figures.inputs`, the one answer; the lowering reads no other).
        weights: the names of the :class:`Weight` values it reads.
        output: the value holding its output (named after the layer), or ``None``.
        shape: that value's shape (``()`` when there is none).
        ops: the operations computing it, in order (empty for a refused or detection layer).
        refusal: why it cannot be computed (an emitter refuses the network), or ``None``.
        blocked: why no other layer may read its output (a detection layer, whose decoding is
            not part of the graph; an unknown section), or ``None``.
        detection: for a detection layer, its attributes.
    """

    index: int
    name: str
    type: str
    line: int
    attrs: Mapping[str, Any] = attrs.field(converter=_frozen)
    activation: str | None = None
    inputs: tuple[int, ...] = ()
    weights: tuple[str, ...] = ()
    output: str | None = None
    shape: Shape = ()
    ops: tuple[Node, ...] = ()
    refusal: str | None = None
    blocked: str | None = None
    detection: Detection | None = None


@attrs.frozen(eq=False)
class Network:
    """What a Darknet network computes (see the module's docstring for the emitter contract).

    Attributes:
        dialect: ``"alexeyab"`` or ``"pjreddie"``.
        cfg_path: the cfg the plan came from, or ``None``.
        input: the name of the network input value (``"input"``).
        input_shape: its shape: ``(None, c, h, w)``, or ``(None, inputs)`` for a ``[net]``
            without an image size.
        input_ops: the operations that give the first layer its input (a flat input as an
            ``(inputs, 1, 1)`` image).
        layers: one :class:`LayerNode` per Darknet layer.
        weights: every array the network reads, by value name, in order of first use.
        constants: small float32 constants by value name (scalars, blur kernels …).
        outputs: the value names of the network's outputs, in order.
        warnings: the plan's warnings (Darknet's own among them), with their cfg lines.
        net_options: the ``[net]`` options as written.
        letter_box: ``[net]``'s ``letter_box`` as the dialect reads it (``atoi``; 0 where it
            does not): Darknet's detector letterboxes its input and corrects the boxes.
        connected_transposed: the file's header says connected weights are stored transposed.
        decoding: described with ``decode=True``, the decoded outputs and what their
            post-processing needs (:class:`dwf.format.decoding.Decoding`); else ``None``.
        decode_ops: the operations of the decoding (after every layer's).
    """

    dialect: str
    cfg_path: str | None
    input: str
    input_shape: Shape
    input_ops: tuple[Node, ...]
    layers: tuple[LayerNode, ...]
    weights: Mapping[str, Weight]
    constants: Mapping[str, np.ndarray[Any, Any]]
    outputs: tuple[str, ...]
    warnings: tuple[str, ...]
    net_options: Mapping[str, str]
    letter_box: int
    connected_transposed: bool
    decoding: Decoding | None = None
    decode_ops: tuple[Node, ...] = ()

    def nodes(self) -> Iterator[Node]:
        """Every operation, in an order where each reads only values made before it."""
        yield from self.input_ops
        for layer in self.layers:
            yield from layer.ops
        yield from self.decode_ops

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input values: :attr:`input`, and the decoding's ``image_size`` when it has one."""
        d = self.decoding
        return (self.input,) if d is None or d.image_size is None else (self.input, d.image_size)

    @property
    def detections(self) -> tuple[Detection, ...]:
        """The detection layers, in order."""
        return tuple(lay.detection for lay in self.layers if lay.detection is not None)

    @property
    def refused(self) -> tuple[LayerNode, ...]:
        """The layers that cannot be computed, in order."""
        return tuple(lay for lay in self.layers if lay.refusal is not None)

    def shape(self, value: str) -> Shape:
        """The shape of any value of the description."""
        return self._shapes[value]

    @property
    def _shapes(self) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {self.input: self.input_shape}
        if self.decoding is not None and self.decoding.image_size is not None:
            shapes[self.decoding.image_size] = (None, 2)
        shapes.update((w.name, w.shape) for w in self.weights.values())
        shapes.update((n, c.shape) for n, c in self.constants.items())
        shapes.update((node.output, node.shape) for node in self.nodes())
        return shapes

    def require(self, target: str) -> None:
        """Raise for the first layer that cannot be computed, naming ``target`` (``"ONNX"``).

        Raises:
            UnsupportedLayerError: with the cfg line, the layer (index, name, type) and why.
        """
        for lay in self.refused:
            raise UnsupportedLayerError(
                f"layer {lay.index} ({lay.name}, {lay.type}) cannot be exported to {target}:"
                f" {lay.refusal}",
                path=self.cfg_path,
                line=lay.line,
                index=lay.index,
                layer=lay.name,
                type=lay.type,
            )


# -- detection layers ---------------------------------------------------------------------------
def _detection(x: Lowering, lp: LayerPlan, value: str) -> Detection:
    p = lp.params
    options = {k: v for k, v in x.plan.section(lp).values.items() if v is not None}
    common: dict[str, Any] = {
        "index": lp.index,
        "name": lp.name,
        "type": lp.type,
        "input": value,
        "input_shape": (lp.in_c, lp.in_h, lp.in_w),
        "classes": p["classes"],
        "num": p["num"],
        "options": options,
    }
    if lp.type in ("yolo", "Gaussian_yolo"):
        return Detection(
            **common,
            mask=tuple(p["mask"]),
            anchors=tuple(p["anchor_sizes"]),
            scale_x_y=p["scale_x_y"],
            new_coords=p["new_coords"],
            nms_kind=p["nms_kind"],
            beta_nms=p["beta_nms"],
            yolo_point=p.get("yolo_point", "center"),
        )
    if lp.type == "region":
        return Detection(
            **common,
            mask=tuple(range(p["num"])),
            anchors=tuple(p["anchor_sizes"]),
            coords=p["coords"],
            softmax=p["softmax"],
            background=p["background"],
            bias_match=p["bias_match"],
            classfix=p.get("classfix", 0),
            tree=p["tree"],
        )
    return Detection(
        **common,
        mask=tuple(range(p["num"])),
        anchors=(),
        coords=p["coords"],
        side=p["side"],
        softmax=p["softmax"],
        sqrt=p["sqrt"],
    )


def _check_layer(lp: LayerPlan) -> None:
    """What refuses a layer whatever its type."""
    if lp.outputs == 0 or (lp.out_c * lp.out_h * lp.out_w not in (0, lp.outputs)):
        raise Refused(
            f"Darknet records its output as {lp.out_c}×{lp.out_h}×{lp.out_w} with"
            f" {lp.outputs} values, which no tensor can hold (an input of another size or a"
            " channel count its groups= do not divide?)"
        )
    if lp.params.get("dontload"):
        raise Refused(
            "dontload=1: Darknet does not load its weights and runs it with their random"
            " initial values"
        )
    if lp.params.get("dontloadscales"):
        raise Refused(
            "dontloadscales=1: Darknet does not load its batch-norm arrays and runs it with"
            " their initial values"
        )


def describe(
    plan: Plan, header: Header | None = None, *, decode: bool = False, letterbox: bool = False
) -> Network:
    """What ``plan``'s network computes, for a file with ``header`` (only whether its connected
    weights are stored transposed matters; ``None``: a current header).

    Layers that cannot be computed are described with their reason (:attr:`LayerNode.refusal`);
    :meth:`Network.require` raises for the first.

    With ``decode``, the detection layers compute their forward pass and the network outputs
    Darknet's boxes too (:attr:`Network.decoding`, :mod:`dwf.format.decoding`); a detection
    layer whose decoding has no exact form is refused with the reason. With ``letterbox``, the
    boxes are corrected for a letterboxed input as ``get_network_boxes(.., letter=1)`` does,
    from a second input holding each image's size.

    Raises:
        DwfError: ``decode`` for a network without a detection layer, or with detection layers
            of different class counts (Darknet's detections hold one class count).
    """
    x = Lowering(plan, bool(header is not None and header.connected_transposed))
    g = x.g
    net = plan.net
    if net.channels and net.height and net.width:
        input_shape: Shape = (None, net.channels, net.height, net.width)
        g.declare("input", input_shape)
    else:  # [net] gives inputs= only: a flat (N, inputs) input, an (inputs, 1, 1) image inside
        input_shape = (None, net.inputs)
        g.declare("input", input_shape)
        x.first = g.reshape("input", (net.inputs, 1, 1))
    input_ops = tuple(g.nodes)
    g.nodes.clear()
    layers: list[LayerNode] = []
    for lp in plan.layers:
        layers.append(_describe_layer(x, lp, decode))
    # outputs: what enters each detection layer, then the last layer's own output
    outputs: list[str] = []
    for lay in layers:
        if lay.detection is not None and lay.detection.input not in outputs:
            outputs.append(lay.detection.input)
    last = layers[-1]
    if last.detection is None and last.refusal is None:
        if last.blocked is not None:
            layers[-1] = attrs.evolve(last, refusal=last.blocked)
        elif last.output is not None and last.output not in outputs:
            outputs.append(last.output)
    found: Decoding | None = None
    decode_ops: tuple[Node, ...] = ()
    if decode:
        found, decode_ops = _decode(x, plan, layers, letterbox)
        if found is not None:
            outputs += [found.boxes, found.objectness, found.probs]
    net_options = {k: v for k, v in plan.net_section.values.items() if v is not None}
    return Network(
        dialect=plan.dialect,
        cfg_path=plan.cfg_path,
        input="input",
        input_shape=input_shape,
        input_ops=input_ops,
        layers=tuple(layers),
        weights=MappingProxyType(dict(x.weights)),
        constants=MappingProxyType(dict(g.constants)),
        outputs=tuple(outputs),
        warnings=plan.warnings,
        net_options=MappingProxyType(net_options),
        letter_box=letter_box(plan),
        connected_transposed=x.legacy,
        decoding=found,
        decode_ops=decode_ops,
    )


def letter_box(plan: Plan) -> int:
    """``[net]``'s ``letter_box`` as the dialect reads it (``atoi``; 0 where it does not)."""
    value = plan.net_section.values.get("letter_box")
    if not plan.rules.detection_extras or value is None:
        return 0
    return atoi(value) or 0


def _decode(
    x: Lowering, plan: Plan, layers: list[LayerNode], letterbox: bool
) -> tuple[Decoding | None, tuple[Node, ...]]:
    """The decoding nodes over the detection layers (none when one is refused: then
    :meth:`Network.require` names it)."""
    ready: list[tuple[LayerPlan, Detection, str]] = []
    for lay in layers:
        if lay.type not in DETECTION_TYPES:
            continue
        det = lay.detection
        if lay.refusal is not None or lay.output is None or det is None:
            return None, ()
        if ready and det.classes != ready[0][1].classes:
            raise DwfError(
                f"layer {lay.index} ({lay.name}) has classes={det.classes}, but the first"
                f" detection layer has {ready[0][1].classes}: Darknet's detections hold one"
                " class count for all ('Different [yolo] layers have different number of"
                " classes')",
                path=plan.cfg_path,
            )
        ready.append((plan.layers[lay.index], det, lay.output))
    if not ready:
        raise DwfError(
            "has no [yolo], [Gaussian_yolo] or [region] layer: there are no detections to decode",
            path=plan.cfg_path,
        )
    mark = len(x.g.nodes)
    found = decoding.decode(x, ready, plan.net.width, plan.net.height, letterbox)
    return found, tuple(x.g.nodes[mark:])


def _describe_layer(x: Lowering, lp: LayerPlan, decode: bool = False) -> LayerNode:
    g = x.g
    g.layer, g.base = lp.index, lp.name
    x.read_weights = []
    act = lp.params.get("activation")
    base = LayerNode(
        lp.index,
        lp.name,
        lp.type,
        lp.line,
        lp.params,
        activation=None if act is None else str(act),
        inputs=inputs(lp),
    )
    if not lp.known:
        x.blocked[lp.index] = "an unknown section, which Darknet leaves empty"
        return attrs.evolve(base, blocked=x.blocked[lp.index])
    mark = g.mark()
    known_weights = len(x.weights)
    try:
        if lp.type in REFUSED:
            raise Refused(REFUSED[lp.type])
        if lp.type in DETECTION_TYPES:
            # The tensor entering the head is a network output. Nothing may read the head's
            # own output: its forward pass is described only when decoding (below), and
            # Darknet's GPU and CPU builds leave different values there.
            value = x.use(lp, lp.index - 1, "input")
            x.values[lp.index] = value
            x.blocked[lp.index] = "a detection layer, whose output no other layer reads here"
            det = _detection(x, lp, value)
            if not decode:
                return attrs.evolve(
                    base,
                    shape=g.shape(value),
                    blocked=x.blocked[lp.index],
                    detection=det,
                )
            y = g.op("identity", decoding.forward(x, lp, det, value), out=lp.name)
            return attrs.evolve(
                base,
                output=y,
                shape=g.shape(y),
                ops=tuple(g.nodes[mark[0] :]),
                blocked=x.blocked[lp.index],
                detection=det,
            )
        _check_layer(lp)
        lower = LOWERINGS.get(lp.type)
        if lower is None:
            raise Refused("no form for this layer type")
        y = lower(x, lp)
    except Refused as e:
        g.rollback(mark)
        for name in list(x.weights)[known_weights:]:
            del x.weights[name]
        x.refused.add(lp.index)
        return attrs.evolve(base, refusal=e.reason)
    if y != lp.name:
        y = g.op("identity", y, out=lp.name)
    x.values[lp.index] = y
    ops = tuple(g.nodes[mark[0] :])
    return attrs.evolve(
        base,
        weights=tuple(dict.fromkeys(x.read_weights)),
        output=y,
        shape=g.shape(y),
        ops=ops,
    )
