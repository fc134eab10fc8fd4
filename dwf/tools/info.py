"""``dwf info`` as a function: what a weights file holds, as plain data — and its summary: what
the network costs (parameters, BFLOPs, memory), at the cfg's input size or another one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from dwf.errors import CfgError, DwfError
from dwf.format.planner import Plan, plan_uncached
from dwf.format.retrain import HEAD_TYPES, with_input_size
from dwf.io.opening import opened
from dwf.io.reader import WeightsFile


def info(
    src: str | os.PathLike[str] | WeightsFile,
    cfg: str | os.PathLike[str] | Plan | None = None,
    *,
    dialect: str = "alexeyab",
    strict: bool = True,
    header_size: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    summary: bool = False,
    batch: int = 1,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The header, sizes, state and every layer of a weights file, as ``dwf info --json`` prints
    them (:meth:`dwf.WeightsFile.to_dict`). For the arrays themselves use :func:`dwf.open`.
    ``src`` may be a URL (``storage_options`` go to fsspec; docs/remote.md).

    With ``summary=True``, what ``dwf info --summary --json`` prints instead: the network's
    totals, its heads and heaviest layers, and its memory for a ``batch`` of images at its
    cfg's input size or at ``size`` = ``(width, height)``, re-planned as Darknet would build it
    at that size (:func:`summarize`).
    """
    options: dict[str, Any] = {"header_size": header_size, "storage_options": storage_options}
    with opened(src, cfg, dialect=dialect, strict=strict, **options) as f:
        if summary:
            return summarize(f.plan, batch=batch, size=size, path=f.path).to_dict()
        return f.to_dict()


@attrs.frozen
class Ranked:
    """One layer in a summary's list: index, name, type, output shape and figures."""

    index: int
    name: str
    type: str
    out_shape: tuple[int, int, int]
    bflops: float
    output_bytes: int
    receptive_field: tuple[float, float]
    stride: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (part of ``dwf info --summary --json``)."""
        d = attrs.asdict(self)
        for key in ("out_shape", "receptive_field", "stride"):
            d[key] = list(d[key])
        return d


@attrs.frozen
class Summary:
    """What a network costs, at one input size and batch.

    Attributes:
        path: the weights file (or cfg) it describes.
        cfg: the cfg.
        dialect: the dialect.
        layers: number of layers.
        width, height, channels: the input size the figures are for.
        resized: whether that is not the cfg's own size (the network was re-planned).
        batch: the images the memory figure is for.
        params, trainable: parameters, and those training updates, at that size (a network
            with ``[connected]`` or ``[local]`` layers has others at another size).
        weights_fit: whether the cfg's own parameters are those at that size (the file would
            load into the re-planned network).
        bflops: BFLOPs per image, as Darknet prints its total at that size.
        output_bytes: every layer's output for the batch, in float32 (what Darknet allocates
            for inference, workspace aside).
        param_bytes: the parameters' bytes.
        heads: the detection heads.
        heaviest: the layers with the most BFLOPs, most first.
        largest: the layer with the largest output (``None`` for an empty network).
        warnings: the cfg warnings that appear at that size only.
    """

    path: str | None
    cfg: str | None
    dialect: str
    layers: int
    width: int
    height: int
    channels: int
    resized: bool
    batch: int
    params: int
    trainable: int
    weights_fit: bool
    bflops: float
    output_bytes: int
    param_bytes: int
    heads: tuple[Ranked, ...]
    heaviest: tuple[Ranked, ...]
    largest: Ranked | None
    warnings: tuple[str, ...]

    @property
    def memory_bytes(self) -> int:
        """``output_bytes + param_bytes``: the batch's outputs and the weights."""
        return self.output_bytes + self.param_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf info --summary --json``)."""
        d = {
            f.name: getattr(self, f.name)
            for f in attrs.fields(Summary)
            if f.name not in ("heads", "heaviest", "largest", "warnings")
        }
        d["memory_bytes"] = self.memory_bytes
        d["heads"] = [r.to_dict() for r in self.heads]
        d["heaviest"] = [r.to_dict() for r in self.heaviest]
        d["largest"] = None if self.largest is None else self.largest.to_dict()
        d["warnings"] = list(self.warnings)
        return d


def _ranked(plan: Plan, index: int) -> Ranked:
    lp = plan.layers[index]
    return Ranked(
        lp.index,
        lp.name,
        lp.type,
        lp.out_shape,
        lp.bflops,
        lp.output_bytes,
        lp.receptive_field,
        lp.stride,
    )


def summarize(
    plan: Plan,
    *,
    batch: int = 1,
    size: tuple[int, int] | None = None,
    top: int = 5,
    path: str | None = None,
) -> Summary:
    """The :class:`Summary` of a plan for ``batch`` images of ``size`` = ``(width, height)``
    (default: the cfg's); another size re-plans the cfg with that ``[net]`` size, as Darknet
    builds the network when the cfg says it.

    Raises:
        DwfError: ``batch`` or ``size`` is not positive, or Darknet cannot build the network at
            that size (the reason names the layer).
    """
    if batch < 1:
        raise DwfError(f"batch must be at least 1, not {batch}")
    cfg = plan.cfg_path
    at = plan
    if size is not None:
        width, height = size
        if width < 1 or height < 1:
            raise DwfError(f"the input size must be at least 1×1, not {width}×{height}")
        if (height, width) != (plan.net.height, plan.net.width):
            if plan.document is None:
                raise DwfError("this plan was not made from cfg text: it cannot be re-planned")
            try:
                at = plan_uncached(
                    with_input_size(plan, height, width),
                    dialect=plan.rules,
                    side=plan.side,
                    path=cfg,
                )
            except CfgError as e:
                raise DwfError(
                    f"at {width}×{height} Darknet cannot build this network: {e.reason}",
                    path=cfg,
                ) from None
    layers = at.layers
    by_cost = sorted(
        (lp for lp in layers if lp.bflops > 0), key=lambda lp: (-lp.bflops, lp.index)
    )
    largest = max(layers, key=lambda lp: (lp.outputs, -lp.index), default=None)
    before = set(plan.warnings)
    return Summary(
        path=path,
        cfg=cfg,
        dialect=at.dialect,
        layers=len(layers),
        width=at.net.width,
        height=at.net.height,
        channels=at.net.channels,
        resized=at is not plan,
        batch=batch,
        params=at.total_params,
        trainable=at.total_trainable,
        weights_fit=at.total_floats == plan.total_floats,
        bflops=at.total_bflops,
        output_bytes=batch * at.total_output_bytes,
        param_bytes=4 * at.total_floats,
        heads=tuple(_ranked(at, lp.index) for lp in layers if lp.type in HEAD_TYPES),
        heaviest=tuple(_ranked(at, lp.index) for lp in by_cost[:top]),
        largest=None if largest is None else _ranked(at, largest.index),
        warnings=tuple(w for w in at.warnings if w not in before),
    )
