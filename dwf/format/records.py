"""Immutable records a plan is made of: where each array lies and what shape it has."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import attrs
import numpy as np

from dwf.errors import DwfError

if TYPE_CHECKING:
    from dwf.format.figures import LayerFigures
    from dwf.format.planner import Plan

# Darknet stores little-endian float32, whatever the machine.
F32 = np.dtype("<f4")

Storage = Literal["plain", "transposed", "transposed-if-legacy"]

# Arrays training does not update (batch norm's running statistics), by their name's last part.
_NOT_TRAINED = ("rolling_mean", "rolling_variance")


@attrs.frozen
class ArraySpec:
    """One float32 array in the weights file.

    Attributes:
        name: the array's name within its layer (``"weights"``, ``"uf.biases"``, …).
        offset: position of its first element, in float32 elements from the end of the header.
        count: number of float32 elements.
        shape: logical shape (what a view of it has), e.g. ``(n, c // groups, size, size)``.
        storage: ``"plain"`` when the bytes are the logical shape in C order; ``"transposed"``
            when they hold the transpose of the ``(shape[0], prod(shape[1:]))`` matrix (conv
            ``flipped=1``); ``"transposed-if-legacy"`` for connected weights, stored transposed
            only in files with a legacy header (``Header.connected_transposed``).
    """

    name: str
    offset: int
    count: int
    shape: tuple[int, ...]
    storage: Storage = "plain"

    @property
    def stop(self) -> int:
        """One past the last element, in float32 elements from the end of the header."""
        return self.offset + self.count

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return 4 * self.count

    def byte_span(self, header_size: int) -> tuple[int, int]:
        """``(start, stop)`` byte offsets in a file whose header is ``header_size`` bytes."""
        return (header_size + 4 * self.offset, header_size + 4 * self.stop)

    def to_dict(self, header_size: int = 20) -> dict[str, Any]:
        """Plain dict (``dwf info --json``), with the byte span in a file of that header."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "count": self.count,
            "span": list(self.byte_span(header_size)),
        }

    def stored_transposed(self, legacy_header: bool) -> bool:
        """Whether the bytes hold the transpose of the logical matrix, in a file whose header
        is (``legacy_header``) or is not a legacy one."""
        return self.storage == "transposed" or (
            self.storage == "transposed-if-legacy" and legacy_header
        )


class Arr(NamedTuple):
    """An array a layer stores, before it has an offset: what a layer definition declares."""

    name: str
    # shadows tuple.count on purpose: the same word as ArraySpec.count
    count: int  # type: ignore[assignment]
    shape: tuple[int, ...]
    storage: Storage = "plain"


def replace_offset(spec: ArraySpec, offset: int) -> ArraySpec:
    """``spec`` moved to ``offset`` (for arrays read into their own buffer)."""
    return attrs.evolve(spec, offset=offset)


def _frozen_params(params: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(params, MappingProxyType):
        return params
    return MappingProxyType(dict(params or {}))


@attrs.frozen
class LayerPlan:
    """One Darknet layer: its place in the network, its output shape and its arrays.

    Attributes:
        index: Darknet's 0-based layer index (what ``layers=`` refers to).
        type: canonical section type (``"convolutional"``, ``"route"``, …); for a section the
            dialect does not know, its name as written.
        name: ``<kind>_<index>`` (``conv_12``, ``route_3``, ``gaussian_yolo_106``).
        line: the cfg line of the section header.
        in_c, in_h, in_w, inputs: what the layer receives from the previous one.
        out_c, out_h, out_w, outputs: what Darknet records as the layer's output.
        layout: the arrays the file holds for this layer, in file order, without their offsets
            (may be empty); :attr:`arrays` places them from ``offset`` on.
        offset: where the layer's data starts (float32 elements after the header), also for
            layers that hold nothing.
        params: the resolved options that define the layer (filters, size, strides, groups,
            batch_normalize, activation, referenced layers …), read-only.
        known: ``False`` for a section the dialect does not know (it holds nothing).

    What the layer costs and sees — :attr:`n_params`, :attr:`n_trainable`, :attr:`bflops`,
    :attr:`output_bytes`, :attr:`receptive_field`, :attr:`stride` — are properties, computed
    for the whole plan on first use (:mod:`dwf.format.figures`).
    """

    index: int
    type: str
    name: str
    line: int
    in_c: int
    in_h: int
    in_w: int
    inputs: int
    out_c: int
    out_h: int
    out_w: int
    outputs: int
    layout: tuple[Arr, ...]
    offset: int
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_params)
    known: bool = True
    # The ArraySpec records, made when first asked for (opening a file looks at one or two
    # layers). Not compared, copied or exported.
    _arrays: tuple[ArraySpec, ...] | None = attrs.field(
        default=None, init=False, eq=False, repr=False, hash=False
    )
    # The plan the layer belongs to (weakly), set by the plan: the figures need the layers
    # before it.
    _plan: weakref.ref[Plan] | None = attrs.field(
        default=None, init=False, eq=False, repr=False, hash=False
    )

    def __reduce__(self) -> tuple[Any, ...]:
        # params is a read-only mapping proxy, which pickle cannot take: it travels as a dict.
        fields = [getattr(self, f.name) for f in attrs.fields(LayerPlan) if f.init]
        fields[14] = dict(self.params)
        return (LayerPlan, tuple(fields))

    @property
    def arrays(self) -> tuple[ArraySpec, ...]:
        """The arrays the file holds for this layer, in file order (may be empty)."""
        made = self._arrays
        if made is None:
            specs = []
            cursor = self.offset
            for a in self.layout:
                specs.append(ArraySpec(a.name, cursor, a.count, a.shape, a.storage))
                cursor += a.count
            made = tuple(specs)
            # Computing it twice (two threads) gives equal records: no lock needed.
            object.__setattr__(self, "_arrays", made)
        return made

    @property
    def count(self) -> int:
        """Number of float32 elements the layer holds in the file."""
        return sum(a.count for a in self.layout)

    @property
    def stop(self) -> int:
        """One past the layer's last element (float32 elements after the header)."""
        return self.offset + self.count

    # -- figures ------------------------------------------------------------------------------
    # ``params`` is the layer's options: the parameter count is ``n_params``.
    @property
    def n_params(self) -> int:
        """Parameters: the floats the layer's arrays hold (the same number as :attr:`count`),
        batch norm's running statistics included."""
        return self.count

    @property
    def n_trainable(self) -> int:
        """The parameters training updates: all but batch norm's running statistics
        (``rolling_mean``, ``rolling_variance``)."""
        return sum(a.count for a in self.layout if not a.name.endswith(_NOT_TRAINED))

    @property
    def output_bytes(self) -> int:
        """Bytes of the layer's output at batch 1, in float32 (``4 × outputs``)."""
        return 4 * self.outputs

    @property
    def bflops(self) -> float:
        """Billions of floating-point operations, exactly as Darknet figures them: AlexeyAB's
        ``l.bflops`` (the ``BF`` column it prints while loading; 0 for the layer types it gives
        none) or, in the pjreddie dialect, the ``BFLOPs`` pjreddie prints (convolutions only).
        See :attr:`dwf.Plan.total_bflops`."""
        return self._figures().bflops

    @property
    def receptive_field(self) -> tuple[float, float]:
        """``(height, width)``: how many input pixels one output position depends on (the
        largest over a route's or shortcut's inputs); ``(0, 0)`` for a layer that reads no
        input. An antialiased layer's is after its blur (what the next layer reads)."""
        return self._figures().receptive_field

    @property
    def stride(self) -> tuple[float, float]:
        """``(height, width)``: input pixels between two neighbouring output positions (32 for
        a YOLO head on a 1/32 grid; below 1 after upsampling past the input's size)."""
        return self._figures().stride

    def _figures(self) -> LayerFigures:
        ref = self._plan
        plan = None if ref is None else ref()
        if plan is None:
            raise DwfError(
                f"layer {self.index} ({self.name}) is not part of a plan any more (a copy of one"
                " layer, or its plan is gone): its BFLOPs, receptive field and stride need the"
                " plan, so keep the plan and ask its layers"
            )
        return plan._layer_figures()[self.index]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(out_c, out_h, out_w)``."""
        return (self.out_c, self.out_h, self.out_w)

    def byte_span(self, header_size: int) -> tuple[int, int]:
        """``(start, stop)`` byte offsets in a file whose header is ``header_size`` bytes."""
        return (header_size + 4 * self.offset, header_size + 4 * self.stop)

    def to_dict(self, header_size: int = 20) -> dict[str, Any]:
        """Plain dict (``dwf info --json``), with byte spans in a file of that header."""
        return {
            "index": self.index,
            "name": self.name,
            "type": self.type,
            "out_shape": [self.out_c, self.out_h, self.out_w],
            "outputs": self.outputs,
            "span": list(self.byte_span(header_size)),
            "n_params": self.n_params,
            "n_trainable": self.n_trainable,
            "bflops": self.bflops,
            "output_bytes": self.output_bytes,
            "receptive_field": list(self.receptive_field),
            "stride": list(self.stride),
            "arrays": [a.to_dict(header_size) for a in self.arrays],
        }

    def array(self, name: str) -> ArraySpec | None:
        """The array called ``name``, or ``None``."""
        for a in self.arrays:
            if a.name == name:
                return a
        return None
