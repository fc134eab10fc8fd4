"""One small definition per Darknet layer type: its output shape and its arrays in file order.

Each definition receives a :class:`LayerInput` (the section's options, what the previous layer
produced, the layers built so far, the dialect) and returns a :class:`Built`. Offsets are not a
concern here: the planner lays the arrays out one after another. Rules: docs/format.md §4 and §6;
dialect differences are read from :class:`dwf.format.dialects.Dialect` switches.

This module is longer than the ~500 lines a module here usually has, on purpose: it is the layer
table, ~37 short definitions side by side, so that "where are a layer type's arrays defined" has
one answer and the definitions can be read against each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from dwf.errors import CfgError
from dwf.format.cfg import ATOI_SEEN, Section, atof, atoi, float_list, int_list, shorten
from dwf.format.dialects import Dialect
from dwf.format.records import Arr, LayerPlan

# Marks "option absent" for share_index, as Darknet does with its own sentinel.
_ABSENT = -1_000_000_000


# Built's default params: shared and read-only, so no layer can change another's.
NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


class Built(NamedTuple):
    """What a layer definition computes.

    ``next_dims`` is ``(h, w, c, inputs)`` handed to the next layer when it differs from the
    layer's recorded output (antialiasing: the blur runs after the recorded output).
    """

    out_c: int
    out_h: int
    out_w: int
    outputs: int
    arrays: tuple[Arr, ...] = ()
    params: Mapping[str, Any] = NO_PARAMS
    next_dims: tuple[int, int, int, int] | None = None


def cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as Darknet computes output sizes."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class LayerInput:
    """Everything a layer definition may look at, plus helpers that raise located errors.

    A definition reads the section's options, the input shape (``h``, ``w``, ``c``,
    ``inputs``), the dialect and ``loading``. The layers built so far are private: the only way
    to another layer is :meth:`ref`, which records that the result depends on more than the
    section and its input, so the planner never reuses it for another layer (see
    :func:`dwf.format.planner._plan_document`).
    """

    __slots__ = (
        "_built",
        "c",
        "dialect",
        "h",
        "index",
        "inputs",
        "kind",
        "loading",
        "n_layers",
        "options",
        "path",
        "read_other_layers",
        "section",
        "type",
        "w",
        "warnings",
    )

    def __init__(
        self,
        *,
        dialect: Dialect,
        loading: bool,
        built: list[LayerPlan],
        n_layers: int,
        path: str | None,
        warnings: list[str],
    ) -> None:
        self.dialect = dialect
        self.loading = loading
        self._built = built
        self.n_layers = n_layers
        self.path = path
        self.warnings = warnings

    def at(
        self,
        section: Section,
        type: str,
        kind: str,
        index: int,
        dims: tuple[int, int, int, int],
    ) -> LayerInput:
        """Move to the next layer: what is per layer changes, the network's context stays (the
        planner walks the network with one input, as Darknet walks it with one ``size_params``).
        """
        self.section = section
        self.options = section.values  # the lookup every option read goes through
        self.type = type
        self.kind = kind
        self.index = index
        self.h, self.w, self.c, self.inputs = dims
        self.read_other_layers = False
        return self

    # -- errors -------------------------------------------------------------------------------
    def fail(self, message: str, key: str | None = None) -> CfgError:
        """A CfgError at the option ``key`` (or the section line), naming the layer."""
        opt = self.section.get(key) if key else None
        line = opt.line if opt else self.section.line
        return CfgError(
            f"layer {self.index} ({self.kind}_{self.index}, {self.type}): {message}",
            path=self.path,
            line=line,
        )

    def warn(self, message: str, key: str | None = None) -> None:
        opt = self.section.get(key) if key else None
        line = opt.line if opt else self.section.line
        self.warnings.append(
            f"line {line}: layer {self.index} ({self.kind}_{self.index}, {self.type}): {message}"
        )

    # -- options ------------------------------------------------------------------------------
    def num(self, key: str, default: int) -> int:
        """The option as Darknet's ``atoi`` reads it, or ``default`` when absent."""
        # The hottest call of planning (~18 per convolution): two dict lookups when the value
        # was seen before, no helper called.
        value = self.options.get(key)
        if value is None:
            return default
        n = ATOI_SEEN.get(value)
        if n is None:
            n = atoi(value)
            if n is None:
                raise self.fail(
                    f"{key}={shorten(value)} does not fit a 32-bit int; Darknet's behaviour is"
                    " undefined",
                    key,
                )
        return n

    def count(self, key: str, default: int) -> int:
        """A size-like option that must not be negative."""
        n = self.num(key, default)
        if n < 0:
            raise self.fail(f"{key}={n} is negative; it must be a size ≥ 0", key)
        return n

    def positive(self, key: str, default: int) -> int:
        """An option that must be ≥ 1 (strides, groups): Darknet divides by it."""
        n = self.num(key, default)
        if n < 1:
            raise self.fail(f"{key}={n} must be ≥ 1 (Darknet divides by it)", key)
        return n

    def real(self, key: str, default: float) -> float:
        """A real-valued option as Darknet's ``atof`` reads it (``1.05#tuned`` is 1.05), or
        ``default`` when absent."""
        value = self.options.get(key)
        return default if value is None else atof(value)

    def text(self, key: str, default: str) -> str:
        value = self.options.get(key)
        return default if value is None else value

    def activation(self, default: str, key: str = "activation") -> str:
        """The activation Darknet's ``get_activation`` makes of the option: a name the dialect
        knows, else relu — with Darknet's warning, at the option's line (the whole value is
        compared: ``leaky#comment`` is not ``leaky``)."""
        name = self.text(key, default)
        if name in self.dialect.activations:
            return name
        self.warn(
            f"couldn't find activation function {shorten(name)!r}, going with ReLU (Darknet"
            " says so too, and computes relu)",
            key,
        )
        return "relu"

    def has(self, key: str) -> bool:
        return self.options.get(key) is not None

    # -- shapes -------------------------------------------------------------------------------
    def need_image(self) -> None:
        if not (self.h and self.w and self.c):
            raise self.fail(
                f"the layer before it outputs {self.c}×{self.h}×{self.w}, not an image;"
                f" Darknet refuses a {self.type} layer there"
            )

    def check_out(self, out_h: int, out_w: int, why: str = "") -> None:
        if out_h < 1 or out_w < 1:
            raise self.fail(
                f"output would be {out_h}×{out_w} for a {self.h}×{self.w} input{why};"
                " Darknet cannot build this layer (kernel larger than the padded input?)"
            )

    def ref(self, value: int, key: str) -> LayerPlan:
        """Resolve a layer reference (``idx = v if v >= 0 else current + v``)."""
        self.read_other_layers = True
        idx = value if value >= 0 else self.index + value
        if idx < 0 or idx >= self.n_layers:
            raise self.fail(
                f"{key}= refers to layer {value} → index {idx}, outside the network's layers"
                f" 0..{self.n_layers - 1}",
                key,
            )
        if idx >= self.index:
            self.warn(
                f"{key}= refers to layer {idx}, which is not built yet (at or after this one);"
                " Darknet reads it as an empty layer of size 0",
                key,
            )
            return _empty_layer(idx)
        return self._built[idx]

    def ref_list(self, key: str, *, first_only: bool = False) -> list[LayerPlan]:
        text = self.options.get(key)
        if text is None:
            raise self.fail(f"{self.type} needs {key}= (Darknet crashes without it)")
        values = int_list(text)
        if first_only:
            values = values[:1]
        out: list[LayerPlan] = []
        for v in values:
            if v is None:
                raise self.fail(
                    f"{key}={shorten(text)} holds a number that does not fit an int", key
                )
            out.append(self.ref(v, key))
        return out

    def conv_groups(self) -> int:
        groups = self.num("groups", 1)
        if self.dialect.xnor_resets_groups:
            if self.num("xnor", 0) or groups < 1:
                groups = 1
        elif groups < 1:
            raise self.fail(f"groups={groups} must be ≥ 1 (Darknet divides by it)", "groups")
        return groups

    def batch_normalize(self) -> int:
        bn = self.num("batch_normalize", 0)
        if self.dialect.conv_extras and self.num("cbn", 0):
            bn = 2
        return bn


def _empty_layer(index: int) -> LayerPlan:
    return LayerPlan(
        index=index,
        type="",
        name="",
        line=0,
        in_c=0,
        in_h=0,
        in_w=0,
        inputs=0,
        out_c=0,
        out_h=0,
        out_w=0,
        outputs=0,
        layout=(),
        offset=0,
    )


# -- blocks shared by several layer types -------------------------------------------------------
def bn_arrays(prefix: str, n: int) -> list[Arr]:
    return [
        Arr(prefix + "scales", n, (n,)),
        Arr(prefix + "rolling_mean", n, (n,)),
        Arr(prefix + "rolling_variance", n, (n,)),
    ]


def conv_block(
    prefix: str,
    n: int,
    c_in: int,
    groups: int,
    size: int,
    bn: bool,
    *,
    flipped: bool = False,
    keep_bn: bool = True,
) -> list[Arr]:
    """biases, BN (if any), weights — the order Darknet's conv loader reads them."""
    cg = c_in // groups
    arrays = [Arr(prefix + "biases", n, (n,))]
    if bn and keep_bn:
        arrays += bn_arrays(prefix, n)
    arrays.append(
        Arr(
            prefix + "weights",
            cg * n * size * size,
            (n, cg, size, size),
            "transposed" if flipped else "plain",
        )
    )
    return arrays


def connected_block(
    prefix: str, inputs: int, outputs: int, bn: bool, *, keep_bn: bool = True
) -> list[Arr]:
    """biases, weights, then BN — connected layers store batch norm *after* the weights."""
    arrays = [
        Arr(prefix + "biases", outputs, (outputs,)),
        Arr(prefix + "weights", outputs * inputs, (outputs, inputs), "transposed-if-legacy"),
    ]
    if bn and keep_bn:
        arrays += bn_arrays(prefix, outputs)
    return arrays


def _conv_out(x: LayerInput, size: int, sy: int, sx: int, padding: int) -> tuple[int, int]:
    return cdiv(x.h + 2 * padding - size, sy) + 1, cdiv(x.w + 2 * padding - size, sx) + 1


def _blur_dims(
    x: LayerInput, aa: int, out_h: int, out_w: int, c: int, sy: int, sx: int, key: str
) -> tuple[int, int, int, int]:
    # The antialiasing blur is a fixed depthwise conv after the layer; it stores nothing.
    if aa == 2:
        bs, bp = 2, 0
    else:
        bs, bp = 3, 1
    bh = cdiv(out_h + 2 * bp - bs, sy) + 1
    bw = cdiv(out_w + 2 * bp - bs, sx) + 1
    if bh < 1 or bw < 1:
        raise x.fail(f"the antialiasing blur would output {bh}×{bw}", key)
    return bh, bw, c, bh * bw * c


def _padding(x: LayerInput, size: int) -> int:
    padding = x.num("padding", 0)
    if x.num("pad", 0):
        padding = size // 2
    return padding


# -- layer definitions --------------------------------------------------------------------------
def convolutional(x: LayerInput) -> Built:
    x.need_image()
    d = x.dialect
    n = x.count("filters", 1)
    size = x.count("size", 1)
    if d.conv_extras:
        sx, sy = x.num("stride_x", -1), x.num("stride_y", -1)
        if sx < 1 or sy < 1:
            stride = x.positive("stride", 1)
            sx = sx if sx >= 1 else stride
            sy = sy if sy >= 1 else stride
    else:
        sx = sy = x.positive("stride", 1)
    padding = _padding(x, size)
    groups = x.conv_groups()
    bn = x.batch_normalize()
    flipped = bool(x.num("flipped", 0))
    aa = x.num("antialiasing", 0) if d.conv_extras else 0
    dilation = x.num("dilation", 1)
    params: dict[str, Any] = {
        "filters": n,
        "size": size,
        "stride_x": sx,
        "stride_y": sy,
        "padding": padding,
        "groups": groups,
        "dilation": 1 if size == 1 else dilation,
        "batch_normalize": bn,
        "activation": x.activation("logistic"),
        "flipped": int(flipped),
        "antialiasing": aa,
        "xnor": x.num("xnor", 0),
        "binary": x.num("binary", 0),
    }
    host_sy, host_sx = (1, 1) if aa else (sy, sx)
    out_h, out_w = _conv_out(x, size, host_sy, host_sx, padding)
    x.check_out(out_h, out_w)
    next_dims = _blur_dims(x, aa, out_h, out_w, n, sy, sx, "antialiasing") if aa else None
    out_c, outputs = n, n * out_h * out_w
    if groups > x.c or x.c % groups:
        x.warn(
            f"groups={groups} does not divide the {x.c} input channels; Darknet uses"
            f" {x.c}//{groups} = {x.c // groups} channels per group",
            "groups",
        )

    share = x.num("share_index", _ABSENT) if d.conv_extras else _ABSENT
    if share != _ABSENT:
        other = x.ref(share, "share_index")
        params["share_index"] = other.index
        op = other.params
        if other.type != "convolutional" or (
            op.get("size"),
            op.get("filters"),
            other.in_c // max(op.get("groups", 1), 1),
        ) != (size, n, x.c // groups):
            raise x.fail(
                f"share_index={share} points at layer {other.index} ({other.name or 'unbuilt'}),"
                " whose size/filters/input channels differ; Darknet refuses to share them",
                "share_index",
            )
        return Built(out_c, out_h, out_w, outputs, params=params, next_dims=next_dims)

    n_read = n
    if d.numload and x.loading:
        k = x.num("numload", 0)
        if k:
            if k < 0 or k > n:
                raise x.fail(f"numload={k} must be between 1 and filters={n}", "numload")
            n_read = k
            params["numload"] = k
    keep_bn = not (x.loading and x.num("dontloadscales", 0) and bn)
    if not keep_bn:
        params["dontloadscales"] = 1
    arrays = conv_block("", n_read, x.c, groups, size, bool(bn), flipped=flipped, keep_bn=keep_bn)
    return Built(out_c, out_h, out_w, outputs, tuple(arrays), params=params, next_dims=next_dims)


def deconvolutional(x: LayerInput) -> Built:
    x.need_image()
    n = x.count("filters", 1)
    size = x.count("size", 1)
    stride = x.positive("stride", 1)
    padding = _padding(x, size)
    bn = x.num("batch_normalize", 0)
    out_h = (x.h - 1) * stride + size - 2 * padding
    out_w = (x.w - 1) * stride + size - 2 * padding
    x.check_out(out_h, out_w)
    if x.loading:
        x.warn(
            "pjreddie's loader crashes on deconvolutional layers (it divides by groups=0);"
            " dwf plans the layout its writer produces"
        )
    arrays = [Arr("biases", n, (n,))]
    if bn:
        arrays += bn_arrays("", n)
    arrays.append(Arr("weights", x.c * n * size * size, (x.c, n, size, size)))
    params = {
        "filters": n,
        "size": size,
        "stride_x": stride,
        "stride_y": stride,
        "padding": padding,
        "batch_normalize": bn,
        "activation": x.activation("logistic"),
    }
    return Built(n, out_h, out_w, n * out_h * out_w, tuple(arrays), params)


def connected(x: LayerInput) -> Built:
    out = x.count("output", 1)
    bn = x.num("batch_normalize", 0)
    keep_bn = not (x.loading and x.num("dontloadscales", 0) and bn)
    arrays = connected_block("", x.inputs, out, bool(bn), keep_bn=keep_bn)
    params = {"output": out, "batch_normalize": bn, "activation": x.activation("logistic")}
    if not keep_bn:
        params["dontloadscales"] = 1
    return Built(out, 1, 1, out, tuple(arrays), params)


def local(x: LayerInput) -> Built:
    x.need_image()
    n = x.count("filters", 1)
    size = x.count("size", 1)
    stride = x.positive("stride", 1)
    pad = x.num("pad", 0)
    out_h = cdiv(x.h - (1 if pad else size), stride) + 1
    out_w = cdiv(x.w - (1 if pad else size), stride) + 1
    x.check_out(out_h, out_w)
    loc = out_h * out_w
    arrays = (
        Arr("biases", loc * n, (n, out_h, out_w)),
        Arr("weights", x.c * n * size * size * loc, (loc, n, x.c, size, size)),
    )
    params = {
        "filters": n,
        "size": size,
        "stride": stride,
        "pad": pad,
        "activation": x.activation("logistic"),
    }
    return Built(n, out_h, out_w, n * loc, arrays, params)


def batchnorm(x: LayerInput) -> Built:
    c = x.c
    arrays = [Arr("biases", c, (c,))] if x.dialect.batchnorm_biases else []
    arrays += bn_arrays("", c)
    return Built(c, x.h, x.w, x.h * x.w * c, tuple(arrays))


def _maxpool_like(x: LayerInput, *, stride_xy: bool, depth_aa: bool) -> Built:
    x.need_image()
    stride = x.num("stride", 1)
    if stride_xy:
        sx, sy = x.num("stride_x", stride), x.num("stride_y", stride)
    else:
        sx = sy = stride
    for key, v in (("stride_x", sx), ("stride_y", sy)):
        if v < 1:
            raise x.fail(
                f"stride {v} must be ≥ 1 (Darknet divides by it)", key if x.has(key) else "stride"
            )
    size = x.count("size", stride)
    padding = x.num("padding", size - 1)
    params: dict[str, Any] = {"size": size, "stride_x": sx, "stride_y": sy, "padding": padding}
    if depth_aa and x.num("maxpool_depth", 0):
        oc = x.count("out_channels", 1)
        params["maxpool_depth"] = oc
        return Built(oc, x.h, x.w, x.h * x.w * oc, params=params)
    aa = x.num("antialiasing", 0) if depth_aa else 0
    hsy, hsx = (1, 1) if aa else (sy, sx)
    out_h = cdiv(x.h + padding - size, hsy) + 1
    out_w = cdiv(x.w + padding - size, hsx) + 1
    x.check_out(out_h, out_w)
    next_dims = _blur_dims(x, aa, out_h, out_w, x.c, sy, sx, "antialiasing") if aa else None
    params["antialiasing"] = aa
    return Built(x.c, out_h, out_w, x.c * out_h * out_w, params=params, next_dims=next_dims)


def maxpool(x: LayerInput) -> Built:
    extras = x.dialect.conv_extras
    return _maxpool_like(x, stride_xy=extras, depth_aa=extras)


def local_avgpool(x: LayerInput) -> Built:
    return _maxpool_like(x, stride_xy=True, depth_aa=False)


def avgpool(x: LayerInput) -> Built:
    x.need_image()
    return Built(x.c, 1, 1, x.c)


def route(x: LayerInput) -> Built:
    refs = x.ref_list("layers")
    groups = x.positive("groups", 1) if x.dialect.route_groups else 1
    group_id = x.num("group_id", 0) if x.dialect.route_groups else 0
    first = refs[0]
    out_h, out_w, out_c = first.out_h, first.out_w, first.out_c
    for nxt in refs[1:]:
        if nxt.out_w == first.out_w and nxt.out_h == first.out_h:
            out_c += nxt.out_c
        else:
            x.warn(
                f"input layer {nxt.index} is {nxt.out_w}×{nxt.out_h}, not"
                f" {first.out_w}×{first.out_h} like layer {first.index}; Darknet sets the"
                " route's shape to 0×0×0",
                "layers",
            )
            out_h = out_w = out_c = 0
    outputs = sum(r.outputs for r in refs) // groups
    params = {"layers": tuple(r.index for r in refs), "groups": groups, "group_id": group_id}
    return Built(out_c // groups, out_h, out_w, outputs, params=params)


# How many weights a weighted [shortcut] stores: none, one per input ("per_feature", which
# Darknet also accepts as "per_layer"), or one per input and channel.
_SHORTCUT_WEIGHTS = {
    "none": "none",
    "per_feature": "per-input",
    "per_layer": "per-input",
    "per_channel": "per-input-channel",
}
_SHORTCUT_NORMS = {"none", "relu", "avg_relu", "softmax"}


def shortcut(x: LayerInput) -> Built:
    d = x.dialect
    refs = x.ref_list("from", first_only=not d.shortcut_weights)
    params: dict[str, Any] = {
        "from": tuple(r.index for r in refs),
        "activation": x.activation("linear"),
    }
    dims = (x.c, x.h, x.w, x.h * x.w * x.c)
    if d.shortcut_size_assert:
        for r in refs:
            # (a layer not built yet has its own warning)
            if r.name and (r.out_w, r.out_h) != (x.w, x.h):
                x.warn(
                    f"joins layer {r.index} ({r.out_w}×{r.out_h}) with a {x.w}×{x.h} input;"
                    " AlexeyAB's Makefile build aborts loading this cfg (an assert in its"
                    " shortcut layer wants equal sizes; release builds compile it out and load"
                    " the layout dwf plans)",
                    "from",
                )
    if not d.shortcut_weights:
        params.update(alpha=x.real("alpha", 1.0), beta=x.real("beta", 1.0))
        return Built(*dims, params=params)
    wtype = x.text("weights_type", "none")
    norm = x.text("weights_normalization", "none")
    if wtype not in _SHORTCUT_WEIGHTS:
        raise x.fail(
            f"weights_type={shorten(wtype)} is not one of none, per_feature, per_layer,"
            " per_channel (an inline comment after the value also breaks it)",
            "weights_type",
        )
    if norm not in _SHORTCUT_NORMS:
        raise x.fail(
            f"weights_normalization={shorten(norm)} is not one of none, relu, avg_relu, softmax",
            "weights_normalization",
        )
    kind = _SHORTCUT_WEIGHTS[wtype]
    if kind != "none" and norm == "none":
        raise x.fail(
            f"weights_type={wtype} needs weights_normalization=relu or softmax;"
            " Darknet rejects 'none' here",
            "weights_type",
        )
    params.update(weights_type=wtype, weights_normalization=norm)
    k = len(refs) + 1
    if kind == "per-input":
        arrays: tuple[Arr, ...] = (Arr("weights", k, (k,)),)
    elif kind == "per-input-channel":
        arrays = (Arr("weights", k * x.c, (k, x.c)),)
    else:
        arrays = ()
    return Built(*dims, arrays, params)


def _from_layer(x: LayerInput, params: dict[str, Any]) -> Built:
    src = x.ref_list("from", first_only=True)[0]
    params["from"] = (src.index,)
    params["activation"] = x.activation("linear")
    return Built(src.out_c, src.out_h, src.out_w, src.out_c * src.out_h * src.out_w, params=params)


def scale_channels(x: LayerInput) -> Built:
    return _from_layer(x, {"scale_wh": x.num("scale_wh", 0)})


def sam(x: LayerInput) -> Built:
    return _from_layer(x, {})


def upsample(x: LayerInput) -> Built:
    stride = x.num("stride", 2)
    if stride == 0:
        raise x.fail("stride=0 gives an empty output", "stride")
    if stride < 0:
        s = -stride
        out_h, out_w = x.h // s, x.w // s
    else:
        out_h, out_w = x.h * stride, x.w * stride
    params = {"stride": stride, "scale": x.real("scale", 1.0)}
    return Built(x.c, out_h, out_w, x.c * out_h * out_w, params=params)


def _reorg(x: LayerInput, *, extra_ok: bool) -> Built:
    x.need_image()
    s = x.positive("stride", 1)
    reverse = x.num("reverse", 0)
    if reverse:
        out_h, out_w, out_c = x.h * s, x.w * s, x.c // (s * s)
    else:
        out_h, out_w, out_c = x.h // s, x.w // s, x.c * s * s
    params: dict[str, Any] = {"stride": s, "reverse": reverse}
    if extra_ok:
        params["flatten"] = x.num("flatten", 0)
        extra = x.num("extra", 0)
        if extra:
            params["extra"] = extra
            return Built(0, 0, 0, x.h * x.w * x.c + extra, params=params)
    return Built(out_c, out_h, out_w, out_c * out_h * out_w, params=params)


def reorg(x: LayerInput) -> Built:
    return _reorg(x, extra_ok=x.dialect.reorg_extra)


def reorg3d(x: LayerInput) -> Built:
    return _reorg(x, extra_ok=False)


def _mask(x: LayerInput) -> tuple[int, ...] | None:
    """``mask=`` as ``parse_yolo_mask`` reads it (``None`` when absent): ``atoi`` of each item,
    as many items as :func:`dwf.format.cfg.list_count` counts (AlexeyAB stops at ``#``)."""
    value = x.options.get("mask")
    if value is None:
        return None
    read = int_list(value, stop_at_hash=x.dialect.yolo_mask_stops_at_hash)
    mask = tuple(m for m in read if m is not None)
    if len(mask) != len(read):
        raise x.fail(f"mask={shorten(value)} holds a number that does not fit an int", "mask")
    return mask


def _anchors(x: LayerInput, room: int, *, stop_at_hash: bool) -> tuple[float, ...]:
    """Darknet's ``l.biases`` of a detection layer: ``room`` values (a width and a height per
    anchor), ``0.5`` where ``anchors=`` gives none, each read with ``atof``."""
    values = [0.5] * room
    text = x.options.get("anchors")
    if text is not None:
        given = float_list(text, stop_at_hash=stop_at_hash)
        if len(given) > room:
            x.warn(
                f"anchors= gives {len(given)} values, but the layer holds {room} (a width and a"
                f" height for each of num={room // 2} anchors); Darknet uses the first {room}"
                " (some builds write the others past the end of the array)",
                "anchors",
            )
        values[: len(given)] = given[:room]
    return tuple(values)


# The nms_kind names each layer type's parser knows; any other name is the default NMS.
_NMS_KINDS = {
    "yolo": ("default", "greedynms", "diounms"),
    "Gaussian_yolo": ("default", "greedynms", "diounms", "cornersnms"),
}


def _detector(x: LayerInput, per_anchor_extra: int) -> Built:
    d = x.dialect
    classes = x.num("classes", 20)
    total = x.num("num", 1)
    mask = _mask(x)
    n = total if mask is None else len(mask)
    out_c = n * (classes + per_anchor_extra)
    outputs = x.h * x.w * out_c
    if outputs != x.inputs:
        raise x.fail(
            f"the layer before it outputs {x.c}×{x.h}×{x.w}, but {n} anchors × (classes={classes}"
            f" + {per_anchor_extra}) needs {out_c} channels: set filters={out_c} in the"
            " [convolutional] before it, or fix classes=/mask=",
        )
    if mask is not None and any(not 0 <= m < total for m in mask):
        x.warn(
            f"mask= names anchor {next(m for m in mask if not 0 <= m < total)}, but num={total}"
            f" gives anchors 0..{total - 1}; Darknet reads past its anchors there",
            "mask",
        )
    gaussian = x.type == "Gaussian_yolo"
    params: dict[str, Any] = {
        "classes": classes,
        "anchors": n,  # how many this layer predicts (len(mask))
        "num": total,
        "mask": tuple(range(total)) if mask is None else mask,
        # [Gaussian_yolo] counts every comma of anchors=, [yolo] stops where mask= does
        "anchor_sizes": _anchors(
            x, 2 * total, stop_at_hash=d.yolo_mask_stops_at_hash and not gaussian
        ),
        "scale_x_y": 1.0,
        "new_coords": 0,
        "nms_kind": "default",
        "beta_nms": 0.6,
    }
    if d.detection_extras:
        params["scale_x_y"] = x.real("scale_x_y", 1.0)
        if not gaussian:
            params["new_coords"] = x.num("new_coords", 0)
        kind = x.text("nms_kind", "default")
        if kind not in _NMS_KINDS[x.type]:
            x.warn(
                f"nms_kind={shorten(kind)} is not one of {', '.join(_NMS_KINDS[x.type])};"
                " Darknet uses the default NMS",
                "nms_kind",
            )
            kind = "default"
        params["nms_kind"] = kind
        params["beta_nms"] = x.real("beta_nms", 0.6)
    if gaussian:
        point = x.text("yolo_point", "center")
        params["yolo_point"] = point if point in ("left_top", "right_bottom") else "center"
    return Built(out_c, x.h, x.w, outputs, params=params)


def yolo(x: LayerInput) -> Built:
    return _detector(x, 5)


def gaussian_yolo(x: LayerInput) -> Built:
    return _detector(x, 9)


def region(x: LayerInput) -> Built:
    classes = x.num("classes", 20)
    coords = x.num("coords", 4)
    num = x.num("num", 1)
    out_c = num * (classes + coords + 1)
    outputs = x.h * x.w * out_c
    if outputs != x.inputs:
        raise x.fail(
            f"the layer before it outputs {x.c}×{x.h}×{x.w}, but num={num} × (classes={classes}"
            f" + coords={coords} + 1) needs {out_c} channels: set filters={out_c} in the"
            " [convolutional] before it, or fix classes=/num=",
        )
    params = {
        "classes": classes,
        "num": num,
        "coords": coords,
        "anchor_sizes": _anchors(x, 2 * num, stop_at_hash=False),
        "softmax": x.num("softmax", 0),
        "background": x.num("background", 0) if x.dialect.region_background else 0,
        "bias_match": x.num("bias_match", 0),
        "classfix": x.num("classfix", 0),  # -1: AlexeyAB's detector zeroes objectness < 0.5
        "tree": x.options.get("tree"),  # a hierarchical softmax file (9000 classes), or None
    }
    return Built(out_c, x.h, x.w, outputs, params=params)


def detection(x: LayerInput) -> Built:
    classes = x.num("classes", 1)
    coords = x.num("coords", 1)
    num = x.num("num", 1)
    side = x.num("side", 7)
    need = side * side * ((1 + coords) * num + classes)
    if need != x.inputs:
        raise x.fail(
            f"side={side}² × ((1 + coords={coords}) × num={num} + classes={classes}) = {need},"
            f" but the layer before it outputs {x.inputs} values; Darknet asserts they match"
        )
    params = {
        "classes": classes,
        "side": side,
        "num": num,
        "coords": coords,
        "softmax": x.num("softmax", 0),
        "sqrt": x.num("sqrt", 0),
    }
    return Built(0, 0, 0, x.inputs, params=params)


def iseg(x: LayerInput) -> Built:
    classes = x.num("classes", 20)
    ids = x.num("ids", 32)
    out_c = classes + ids
    return Built(out_c, x.h, x.w, x.h * x.w * out_c, params={"classes": classes, "ids": ids})


def passthrough(x: LayerInput) -> Built:
    """Layers whose output is their input (empty, l2norm, logistic)."""
    return Built(x.c, x.h, x.w, x.inputs)


def dropout(x: LayerInput) -> Built:
    """Its output is its input at inference; in training it drops elements with
    ``probability`` (AlexeyAB's GPU build drops blocks instead with ``dropblock=1``)."""
    params: dict[str, Any] = {"probability": x.real("probability", x.dialect.dropout_probability)}
    params["dropblock"] = x.num("dropblock", 0) if x.dialect.dropblock else 0
    return Built(x.c, x.h, x.w, x.inputs, params=params)


def activation(x: LayerInput) -> Built:
    return Built(x.c, x.h, x.w, x.inputs, params={"activation": x.activation("linear")})


def normalization(x: LayerInput) -> Built:
    """[lrn]: it rebuilds the h×w×c output from the input dims."""
    params = {
        "size": x.num("size", 5),
        "alpha": x.real("alpha", 0.0001),
        "beta": x.real("beta", 0.75),
        "kappa": x.real("kappa", 1.0),
    }
    return Built(x.c, x.h, x.w, x.h * x.w * x.c, params=params)


def flat(x: LayerInput) -> Built:
    """cost, contrastive: Darknet never sets their output dims."""
    return Built(0, 0, 0, x.inputs)


def softmax(x: LayerInput) -> Built:
    """Darknet never sets its output dims either."""
    params = {
        "groups": x.num("groups", 1),
        "temperature": x.real("temperature", 1.0),
        "tree": x.options.get("tree"),  # a hierarchical softmax file, or None
    }
    return Built(0, 0, 0, x.inputs, params=params)


def crop(x: LayerInput) -> Built:
    x.need_image()
    ch = x.count("crop_height", 1)
    cw = x.count("crop_width", 1)
    return Built(x.c, ch, cw, x.c * ch * cw, params={"noadjust": x.num("noadjust", 0)})


def history(x: LayerInput) -> Built:
    hs = x.count("history_size", 4)
    c = x.c * hs
    return Built(c, x.h, x.w, x.h * x.w * c, params={"history_size": hs})


def implicit(x: LayerInput) -> Built:
    filters = x.count("filters", 128)
    atoms = x.count("atoms", 1)
    arrays = (Arr("weights", filters * atoms, (filters, atoms, 1)),)
    return Built(filters, atoms, 1, filters * atoms, arrays, {"filters": filters, "atoms": atoms})


def rnn(x: LayerInput) -> Built:
    d = x.dialect
    out = x.count("output", 1)
    hidden = x.count("hidden", 1) if d.rnn_hidden else out
    bn = bool(x.num("batch_normalize", 0))
    arrays = (
        connected_block("input_layer.", x.inputs, hidden, bn)
        + connected_block("self_layer.", hidden, hidden, bn)
        + connected_block("output_layer.", hidden, out, bn)
    )
    dims = (out, 1, 1) if d.recurrent_dims else (0, 0, 0)
    params = {
        "output": out,
        "hidden": hidden,
        "batch_normalize": int(bn),
        "activation": x.activation("logistic"),
    }
    return Built(*dims, out, tuple(arrays), params)


def _gated(x: LayerInput, blocks: tuple[tuple[str, bool], ...], dims: bool) -> Built:
    out = x.count("output", 1)
    bn = bool(x.num("batch_normalize", 0))
    arrays: list[Arr] = []
    for prefix, takes_input in blocks:
        arrays += connected_block(prefix + ".", x.inputs if takes_input else out, out, bn)
    d = (out, 1, 1) if dims else (0, 0, 0)
    return Built(*d, out, tuple(arrays), {"output": out, "batch_normalize": int(bn)})


def gru(x: LayerInput) -> Built:
    return _gated(x, x.dialect.gru_blocks, False)


def lstm(x: LayerInput) -> Built:
    return _gated(x, x.dialect.lstm_blocks, x.dialect.recurrent_dims)


def _recurrent_conv_geometry(x: LayerInput) -> tuple[int, int, int, int]:
    """(size, stride, padding, groups) shared by every sub-conv of crnn/conv_lstm."""
    size = x.count("size", 3)
    stride = x.positive("stride", 1)
    padding = _padding(x, size)
    return size, stride, padding, x.conv_groups()


def crnn(x: LayerInput) -> Built:
    # pjreddie builds a crnn on whatever shape it is handed, even the 0×0×0 its [rnn] leaves
    # (then 0 input channels) and the empty output of such a crnn: its loader reads that
    # layout, so dwf plans it.
    empty_ok = x.dialect.crnn_any_input and not (x.h and x.w)
    if empty_ok:
        x.warn(
            f"the layer before it outputs {x.c}×{x.h}×{x.w}, not an image (pjreddie leaves an"
            " [rnn]'s shape unset); pjreddie builds this crnn anyway, with an empty output, and"
            " its loader reads that layout (AlexeyAB refuses it)"
        )
    else:
        x.need_image()
    out_key, hidden_key = x.dialect.crnn_names
    out = x.count(out_key, 1)
    hidden = x.count(hidden_key, 1)
    bn = bool(x.num("batch_normalize", 0))
    xnor = 0
    if x.dialect.crnn_fixed_geometry:
        size, stride, padding, groups = 3, 1, 1, 1  # pjreddie's crnn reads no xnor= either
    else:
        size, stride, padding, groups = _recurrent_conv_geometry(x)
        xnor = x.num("xnor", 0)
    out_h, out_w = _conv_out(x, size, stride, stride, padding)
    if empty_ok:
        out_h, out_w = 0, 0
    else:
        x.check_out(out_h, out_w)
    arrays = (
        conv_block("input_layer.", hidden, x.c, groups, size, bn)
        + conv_block("self_layer.", hidden, hidden, groups, size, bn)
        + conv_block("output_layer.", out, hidden, groups, size, bn)
    )
    params = {
        "output": out,
        "hidden": hidden,
        "size": size,
        "stride": stride,
        "padding": padding,
        "groups": groups,
        "batch_normalize": int(bn),
        "xnor": xnor,
        "activation": x.activation("logistic"),
    }
    return Built(out, out_h, out_w, out * out_h * out_w, tuple(arrays), params)


def conv_lstm(x: LayerInput) -> Built:
    x.need_image()
    f = x.count("output", 1)
    bn = bool(x.num("batch_normalize", 0))
    peephole = x.num("peephole", 0)
    bottleneck = x.num("bottleneck", 0)
    size, stride, padding, groups = _recurrent_conv_geometry(x)
    out_h, out_w = _conv_out(x, size, stride, stride, padding)
    x.check_out(out_h, out_w)
    arrays: list[Arr] = []
    if peephole:
        for p in ("vf", "vi", "vo"):
            arrays += conv_block(p + ".", f, f, groups, size, bn)
    arrays += conv_block("wf.", f, 2 * f if bottleneck else f, groups, size, bn)
    if not bottleneck:
        for p in ("wi", "wg", "wo"):
            arrays += conv_block(p + ".", f, f, groups, size, bn)
    for p in ("uf", "ui", "ug", "uo"):
        arrays += conv_block(p + ".", f, x.c, groups, size, bn)
    params = {
        "output": f,
        "size": size,
        "stride": stride,
        "padding": padding,
        "groups": groups,
        "batch_normalize": int(bn),
        "peephole": peephole,
        "bottleneck": bottleneck,
        "xnor": x.num("xnor", 0),
        "activation": x.activation("linear"),
        "lstm_activation": x.activation("tanh", "lstm_activation"),
    }
    return Built(f, out_h, out_w, f * out_h * out_w, tuple(arrays), params)


LAYER_TYPES: dict[str, Callable[[LayerInput], Built]] = {
    "convolutional": convolutional,
    "deconvolutional": deconvolutional,
    "connected": connected,
    "local": local,
    "batchnorm": batchnorm,
    "rnn": rnn,
    "gru": gru,
    "lstm": lstm,
    "crnn": crnn,
    "conv_lstm": conv_lstm,
    "history": history,
    "implicit": implicit,
    "shortcut": shortcut,
    "scale_channels": scale_channels,
    "sam": sam,
    "route": route,
    "maxpool": maxpool,
    "local_avgpool": local_avgpool,
    "avgpool": avgpool,
    "reorg": reorg,
    "reorg3d": reorg3d,
    "upsample": upsample,
    "dropout": dropout,
    "activation": activation,
    "empty": passthrough,
    "l2norm": passthrough,
    "logistic": passthrough,
    "normalization": normalization,
    "softmax": softmax,
    "cost": flat,
    "contrastive": flat,
    "crop": crop,
    "detection": detection,
    "region": region,
    "yolo": yolo,
    "Gaussian_yolo": gaussian_yolo,
    "iseg": iseg,
}

# Short names used in layer names; every other type uses its lower-cased type name.
KIND_NAMES = {"convolutional": "conv", "deconvolutional": "deconv"}
