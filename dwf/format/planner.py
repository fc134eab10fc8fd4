"""The offset planner: cfg text + dialect → every array's place in the file. Pure: it reads no
file (a cfg file is read by :mod:`dwf.io.cfgfile`).

Darknet's ``.weights`` body is the concatenation of every layer's arrays in layer order, with
nothing in between. What each layer stores depends on its options and on the shape it receives,
so the planner walks the network exactly as Darknet's ``parse_network_cfg`` does
(docs/format.md §6), asks each layer definition in :mod:`dwf.format.layers` for its output
shape and its arrays, and lays the arrays out one after another (docs/format.md §4.1).
"""

from __future__ import annotations

import functools
import os
import re
import weakref
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import attrs

from dwf.errors import CfgError, DwfError, LayerNotFoundError
from dwf.format.cfg import CfgDocument, Section, atoi, shorten, tokenize
from dwf.format.dialects import Dialect, get_dialect
from dwf.format.figures import LayerFigures, compute, total_bflops
from dwf.format.layers import KIND_NAMES, LAYER_TYPES, Built, LayerInput
from dwf.format.options import text_issues
from dwf.format.records import Arr, ArraySpec, LayerPlan

# Which side of Darknet a plan describes: what its loader reads or what its saver writes.
Side = Literal["load", "save"]


@attrs.frozen
class NetInput:
    """What ``[net]`` feeds the first layer: ``height × width × channels`` and ``inputs``."""

    height: int
    width: int
    channels: int
    inputs: int


@attrs.frozen(eq=False, repr=False)
class Plan:
    """Where every array of a network lies in a ``.weights`` file, and its shape.

    Build one with :func:`dwf.plan` (from a cfg file) or :meth:`Plan.from_text`. Plans are
    immutable and cached by cfg content within a process.

    Attributes:
        layers: every layer, parameter-free ones included, in Darknet's order.
        dialect: ``"alexeyab"`` or ``"pjreddie"``.
        side: ``"load"`` (what Darknet's loader reads: ``dontload``, ``dontloadscales`` and
            ``numload`` honoured) or ``"save"`` (what Darknet's saver writes).
        cfg_path: the cfg file, when the plan came from one.
        net: the ``[net]`` input shape.
        warnings: things Darknet accepts silently but that are probably mistakes, with lines.
        text: the cfg text the plan was made from.
        document: the tokenised cfg (:class:`dwf.format.cfg.CfgDocument`): its sections and
            every option with its line, as Darknet reads them; ``document.sections[i + 1]`` is
            layer ``i``'s section. Whatever needs an option reads it here, never re-tokenising.
        rules: the :class:`dwf.Dialect` (the switches) the plan was made with; ``dialect`` is
            its name.
    """

    layers: tuple[LayerPlan, ...]
    dialect: str
    side: Side
    cfg_path: str | None
    net: NetInput
    warnings: tuple[str, ...] = ()
    text: str = attrs.field(default="", repr=False)
    document: CfgDocument | None = attrs.field(default=None, repr=False)
    _by_name: dict[str, LayerPlan] = attrs.field(init=False, repr=False)
    # Every layer's figures (BFLOPs, receptive field, stride), made when first asked for.
    _figures: tuple[LayerFigures, ...] | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        by_name = {}
        # Where each layer's figures come from. A weak reference: a strong one would make every
        # plan a reference cycle, left for the garbage collector instead of freed at once.
        me = weakref.ref(self)
        for lp in self.layers:
            by_name[lp.name] = lp
            object.__setattr__(lp, "_plan", me)
        object.__setattr__(self, "_by_name", by_name)

    def _layer_figures(self) -> tuple[LayerFigures, ...]:
        made = self._figures
        if made is None:
            made = compute(self)
            # Computing it twice (two threads) gives equal records: no lock needed.
            object.__setattr__(self, "_figures", made)
        return made

    @property
    def rules(self) -> Dialect:
        """The :class:`dwf.Dialect` this plan was made with (its switches)."""
        return get_dialect(self.dialect)

    def section(self, layer: int | str | LayerPlan) -> Section:
        """The cfg section of a layer (by index, name or plan), with its options and lines.

        Raises:
            LayerNotFoundError: no such layer.
            DwfError: the plan was not made from cfg text.
        """
        lp = layer if isinstance(layer, LayerPlan) else self.layer(layer)
        return self._document().sections[lp.index + 1]

    @property
    def net_section(self) -> Section:
        """The ``[net]`` section, with its options and lines."""
        return self._document().sections[0]

    def _document(self) -> CfgDocument:
        if self.document is None:
            raise DwfError("this plan was not made from cfg text: it has no sections")
        return self.document

    def __reduce__(self) -> tuple[Any, ...]:
        # A plan travels as its cfg text (a process pool's worker plans it again, from the
        # cache after the first time): a few KiB instead of thousands of records.
        if self.text:
            return (_replan, (self.text, self.dialect, self.side, self.cfg_path))
        return (_rebuild, (self.layers, self.dialect, self.side, self.cfg_path, self.net,
                           self.warnings))

    def __repr__(self) -> str:
        where = self.cfg_path or "<cfg text>"
        return (
            f"<dwf.Plan {where} ({self.dialect}, {self.side} side): {len(self.layers)} layers,"
            f" {len(self.stored)} with arrays, {self.total_floats:,} floats>"
        )

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        dialect: str | Dialect = "alexeyab",
        side: Side = "load",
        path: str | os.PathLike[str] | None = None,
    ) -> Plan:
        """Plan a network from cfg text.

        Raises:
            CfgError: the cfg is one Darknet cannot load; the message names the line.
        """
        d = get_dialect(dialect)
        if side not in ("load", "save"):
            raise DwfError(f"side must be 'load' or 'save', not {side!r}")
        if len(text) > MAX_CFG_BYTES:  # the same bound as a cfg file's (e.g. one in an export)
            where = None if path is None else os.fspath(path)
            raise CfgError(too_big(len(text), grew=True).replace("file ", "", 1), path=where)
        return _plan_cached(text, d.name, side, None if path is None else os.fspath(path))

    @property
    def total_floats(self) -> int:
        """Float32 elements in a complete file's body."""
        return self.layers[-1].stop if self.layers else 0

    @property
    def total_params(self) -> int:
        """Parameters of the whole network: every layer's :attr:`~dwf.LayerPlan.n_params` (the
        same number as :attr:`total_floats`)."""
        return self.total_floats

    @property
    def total_trainable(self) -> int:
        """The parameters training updates (:attr:`dwf.LayerPlan.n_trainable`, summed)."""
        return sum(lp.n_trainable for lp in self.layers)

    @property
    def total_bflops(self) -> float:
        """The network's BFLOPs as Darknet prints them while loading it: AlexeyAB's ``Total
        BFLOPS`` line (the layers' float32 figures summed in float32; compare at its printed
        precision, ``f"{plan.total_bflops:.3f}"``); pjreddie prints no total, so this is the
        sum of the figures it prints."""
        return total_bflops([f.bflops for f in self._layer_figures()], self.rules)

    @property
    def total_output_bytes(self) -> int:
        """Bytes of every layer's output at batch 1, in float32, added up
        (:attr:`dwf.LayerPlan.output_bytes`): the activations of one image."""
        return sum(lp.output_bytes for lp in self.layers)

    def expected_size(self, header_size: int = 20) -> int:
        """Bytes of a complete file with a ``header_size``-byte header."""
        return header_size + 4 * self.total_floats

    @property
    def stored(self) -> tuple[LayerPlan, ...]:
        """The layers that hold at least one array, in file order."""
        return tuple(lp for lp in self.layers if lp.layout)

    def names(self) -> list[str]:
        """Names of every layer."""
        return [lp.name for lp in self.layers]

    def arrays(self) -> Iterator[tuple[LayerPlan, ArraySpec]]:
        """Every ``(layer, array)`` pair in file order."""
        for lp in self.layers:
            for a in lp.arrays:
                yield lp, a

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerPlan]:
        return iter(self.layers)

    def __getitem__(self, key: int | str) -> LayerPlan:
        return self.layer(key)

    def layer(self, key: int | str) -> LayerPlan:
        """A layer by Darknet index (negative counts from the end) or by name.

        Raises:
            LayerNotFoundError: no such layer; the message lists similar names.
        """
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise LayerNotFoundError(
                f"layers are looked up by name ('conv_12') or index (12), not {shorten(repr(key))}",
                key=key,
            )
        if isinstance(key, int):
            n = len(self.layers)
            if -n <= key < n:
                return self.layers[key]
            raise LayerNotFoundError(
                f"layer index {key} is out of range: {self._where()} has {n} layers (0..{n - 1})",
                key=key,
            )
        found = self._by_name.get(key)
        if found is not None:
            return found
        suggestions = self._similar(key)
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise LayerNotFoundError(
            f"no layer named {shorten(repr(key))} in {self._where()}{hint}",
            key=key,
            suggestions=suggestions,
        )

    def _where(self) -> str:
        return self.cfg_path or "this network"

    def _similar(self, key: str) -> tuple[str, ...]:
        # a plausible index (not 5000 digits), after an optional kind: "conv3" → "conv_3"
        m = re.search(r"([A-Za-z]*)_?(?<![0-9])([0-9]{1,9})$", key)
        out: list[str] = []
        if m:
            kind, idx = m.group(1).lower(), int(m.group(2))
            if f"{kind}_{idx}" in self._by_name:
                out.append(f"{kind}_{idx}")
            if 0 <= idx < len(self.layers) and self.layers[idx].name not in out:
                out.append(self.layers[idx].name)
        import difflib  # only when suggesting names: not on the open path

        for name in difflib.get_close_matches(key, list(self._by_name), n=3, cutoff=0.6):
            if name not in out:
                out.append(name)
        return tuple(out[:3])

    def boundaries(self) -> dict[int, int]:
        """Where a file may end on a layer boundary: float offset → index of the last layer a
        file ending there holds (``0`` → the layers before the first stored one, possibly
        ``-1``). ``darknet partial`` files end at one of these."""
        out: dict[int, int] = {}
        stored = self.stored
        out[0] = (stored[0].index if stored else len(self.layers)) - 1
        for i, lp in enumerate(stored):
            nxt = stored[i + 1].index if i + 1 < len(stored) else len(self.layers)
            out[lp.stop] = nxt - 1
        return out



def _replan(text: str, dialect: str, side: Side, path: str | None) -> Plan:
    return Plan.from_text(text, dialect=dialect, side=side, path=path)


def _rebuild(
    layers: tuple[LayerPlan, ...],
    dialect: str,
    side: Side,
    path: str | None,
    net: NetInput,
    warnings: tuple[str, ...],
) -> Plan:
    return Plan(layers, dialect, side, path, net, warnings)


MAX_CFG_BYTES = 64 << 20  # the largest real cfgs are well under 1 MiB
# The most sections a cfg may have. Darknet has no limit, but the largest real networks have a
# few hundred layers, and a plan costs about a kilobyte a layer: a cfg of millions of one-line
# sections (a 16 MB file can hold 4 million) is refused before any work is done.
MAX_LAYERS = 100_000


def cfg_text(data: bytes, path: str) -> str:
    """A cfg file's bytes as text (UTF-8, undecodable bytes replaced), refusing binary data and
    text over 64 MiB (also for a cfg fetched from a URL)."""
    if len(data) > MAX_CFG_BYTES:
        raise CfgError(too_big(len(data)), path=path)
    if b"\x00" in data[:4096] and data[:4] != b"[net":
        raise CfgError(
            "this looks like a binary file, not a cfg (it holds NUL bytes); did you pass the"
            " .weights file as the cfg?",
            path=path,
        )
    return data.decode("utf-8", errors="replace")


def too_big(size: int, *, grew: bool = False) -> str:
    what = "more than" if grew else f"{size:,} bytes,"
    return (
        f"the cfg file is {what} {MAX_CFG_BYTES >> 20} MiB; a Darknet cfg is text of at most a few"
        " hundred KiB: is this the right file?"
    )


@functools.lru_cache(maxsize=128)
def _plan_cached(text: str, dialect: str, side: Side, path: str | None) -> Plan:
    return plan_uncached(text, dialect=dialect, side=side, path=path)


def plan_uncached(
    text: str, *, dialect: str | Dialect, side: Side = "load", path: str | None = None
) -> Plan:
    """:meth:`Plan.from_text` without the plan cache, for throw-away plans (the mismatch
    diagnosis's edited cfgs) that must not stay in memory after use."""
    d = get_dialect(dialect)
    sections = text.count("\n[") + (text[:1] == "[")
    if sections > MAX_LAYERS + 1:
        raise CfgError(
            f"the cfg has {sections:,} sections; dwf plans at most {MAX_LAYERS:,} layers (real"
            " networks have a few hundred): is this the right file?",
            path=path,
        )
    doc = tokenize(text, path=path, strip_cr=d.strip_cr)
    return _plan_document(doc, d, side, text)


def _net_input(doc: CfgDocument) -> NetInput:
    net = doc.sections[0]

    def get(key: str, default: int) -> int:
        opt = net.get(key)
        if opt is None or opt.value is None:
            return default
        n = atoi(opt.value)
        if n is None or n < 0:
            raise CfgError(
                f"[net] {key}={shorten(opt.value)} must be a non-negative 32-bit int",
                path=doc.path,
                line=opt.line,
            )
        return n

    h, w, c = get("height", 0), get("width", 0), get("channels", 0)
    inputs = get("inputs", h * w * c)
    if inputs == 0 and not (h and w and c):
        raise CfgError(
            "[net] gives no input size: set width=, height= and channels= (or inputs=)",
            path=doc.path,
            line=net.line,
        )
    return NetInput(h, w, c, inputs)


_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _layer_kind(type_name: str) -> str:
    kind = KIND_NAMES.get(type_name, type_name.lower())
    if kind.strip("_") == kind and kind and _KIND_CHARS.issuperset(kind):
        return kind  # every known type: no regex compiled on the open path
    return re.sub(r"[^0-9a-z_]+", "_", kind).strip("_") or "layer"


_UNKNOWN = Built(0, 0, 0, 0)


class _Result(NamedTuple):
    """A layer's outcome as the plan records it: its output, the arrays and params it ends up
    with (after dontload/dontsave), their size, and the dims the next layer receives."""

    out_c: int
    out_h: int
    out_w: int
    outputs: int
    arrays: tuple[Arr, ...]
    params: Mapping[str, Any]
    floats: int
    next_dims: tuple[int, int, int, int]


_NOTHING = _Result(0, 0, 0, 0, (), _UNKNOWN.params, 0, (0, 0, 0, 0))


def _plan_document(doc: CfgDocument, d: Dialect, side: Side, text: str) -> Plan:
    net = _net_input(doc)
    warnings = [f"line {line}: {msg}" for line, msg in doc.warnings]
    # What Darknet's parser would not read (or reads as 0), found once per section text (a
    # repeated block is looked at once); each section warns with its own lines.
    net_section = doc.sections[0]
    for offset, _, _, message, _ in text_issues(net_section, "net", d):
        warnings.append(f"line {net_section.line + offset}: [net]: {message}")
    sections = doc.sections[1:]
    loading = side == "load"
    dims = (net.height, net.width, net.channels, net.inputs)
    built: list[LayerPlan] = []
    walker = LayerInput(
        dialect=d,
        loading=loading,
        built=built,
        n_layers=len(sections),
        path=doc.path,
        warnings=warnings,
    )
    # Networks repeat blocks: a layer that reads only its options and its input shape gives
    # the same result wherever the same section meets the same input, so each distinct one is
    # computed once per plan. Not kept: results that read other layers or warned (a warning
    # names its layer), and errors (nothing is kept when a definition raises).
    reuse: dict[tuple[str, str, tuple[int, int, int, int]], _Result] = {}
    # Each type's name prefix (conv, route …), found once per plan; per plan, not in a global
    # cache, so that a hostile cfg's megabyte-long section names go with their plan.
    kinds: dict[str, str] = {}
    types = d.sections
    cursor = 0
    for index, sec in enumerate(sections):
        h, w, c, inputs = dims
        type_name = types.get(sec.header)
        known = type_name is not None
        if type_name is None:
            # Darknet keeps the slot: a zeroed layer that stores nothing and outputs nothing.
            type_name = sec.name or sec.header
        kind = kinds.get(type_name)
        if kind is None:
            kind = kinds[type_name] = _layer_kind(type_name)
        if not known:
            extra = (
                " Stock pjreddie Darknet crashes loading this cfg: it reads the zeroed layer as"
                " a convolution with groups 0 (a division by zero, SIGFPE)"
                if d.name == "pjreddie"
                else ""
            )
            warnings.append(
                f"line {sec.line}: section {shorten(sec.header)!r} is not a layer type the {d.name}"
                f" dialect knows; Darknet keeps its index ({index}) and it stores nothing.{extra}"
            )
            r = _NOTHING
        else:
            key = (type_name, sec.body, dims)
            found = reuse.get(key)
            if found is None:
                x = walker.at(sec, type_name, kind, index, dims)
                n_warnings = len(warnings)
                result = LAYER_TYPES[type_name](x)
                arrays, params = result.arrays, result.params
                if loading and x.num("dontload", 0):
                    arrays, params = (), {**params, "dontload": 1}
                if not loading and d.dontsave and x.num("dontsave", 0):
                    arrays, params = (), {**params, "dontsave": 1}
                r = _Result(
                    result.out_c,
                    result.out_h,
                    result.out_w,
                    result.outputs,
                    arrays,
                    # each definition returns a new dict (or the shared read-only empty one):
                    # wrapping it is enough to keep plans immutable
                    MappingProxyType(params),
                    sum(a.count for a in arrays),
                    result.next_dims
                    or (result.out_h, result.out_w, result.out_c, result.outputs),
                )
                if not x.read_other_layers and len(warnings) == n_warnings:
                    reuse[key] = r
            else:
                r = found
            for offset, _, _, message, _ in text_issues(sec, type_name, d):
                warnings.append(
                    f"line {sec.line + offset}: layer {index} ({kind}_{index}, {type_name}):"
                    f" {message}"
                )
        built.append(
            LayerPlan(  # positional: keywords cost a tenth of a layer's planning
                index,
                type_name,
                f"{kind}_{index}",
                sec.line,
                c,
                h,
                w,
                inputs,
                r.out_c,
                r.out_h,
                r.out_w,
                r.outputs,
                r.arrays,
                cursor,
                r.params,
                known,
            )
        )
        cursor += r.floats
        dims = r.next_dims
    if not built:
        raise CfgError("the cfg has [net] but no layers", path=doc.path, line=doc.sections[0].line)
    if d.needs_2d_layer and not any(lp.out_w > 1 and lp.out_h > 1 for lp in built):
        warnings.append(
            f"line {doc.sections[0].line}: no layer is wider and taller than 1: AlexeyAB's"
            " Darknet crashes loading this cfg"
            " (a division by zero in the statistics it prints while loading); the layout is"
            " what a build that survives reads"
        )
    return Plan(tuple(built), d.name, side, doc.path, net, tuple(warnings), text, doc)
