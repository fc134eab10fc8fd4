"""Darknet's activations: every name a fork's ``get_activation`` knows, with the formula its
``activations.c``/``activations.h`` computes, written once — as text for people and as
operations of :mod:`dwf.format.ops` for emitters.

Which names a dialect knows is :attr:`dwf.format.dialects.Dialect.activations`; any other name
is relu there, with a warning (the planner gives it:
:meth:`dwf.format.layers.LayerInput.activation`).
Two places follow the definition rather than AlexeyAB's CPU build: its element-wise
``activate()`` has no case for relu6, hard_mish, swish or mish (it outputs 0 in layers that use
it), and the ``normalize_channels`` activations exist only as convolutional layers' per-pixel
functions (elsewhere the network description refuses them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import attrs

from dwf.format.ops import GraphBuilder

Lower = Callable[[GraphBuilder, str], str]


@attrs.frozen
class Activation:
    """One activation.

    Attributes:
        name: its name in a cfg (``"leaky"``).
        formula: what Darknet computes, in words and symbols.
        lower: adds its operations to a graph: ``lower(builder, x)`` returns the output value.
        per_pixel: it works across the channels of each pixel (``normalize_channels*``), as
            only a convolutional layer can.
    """

    name: str
    formula: str
    lower: Lower = attrs.field(repr=False)
    per_pixel: bool = False


def _linear(g: GraphBuilder, x: str) -> str:
    return x


def _leaky(alpha: float) -> Lower:
    return lambda g, x: g.op("leaky_relu", x, alpha=alpha)


def _loggy(g: GraphBuilder, x: str) -> str:
    return g.op("sub", g.op("mul", g.op("sigmoid", x), g.scalar(2.0)), g.scalar(1.0))


def _elu_tail(g: GraphBuilder, x: str) -> str:
    """exp(x) - 1 for x < 0 (clipped so that large x never overflows)."""
    return g.op("sub", g.op("exp", g.op("clip", x, max=0.0)), g.scalar(1.0))


def _elu(g: GraphBuilder, x: str) -> str:
    return g.op("where", g.op("less", x, g.scalar(0.0)), _elu_tail(g, x), x)


def _selu(g: GraphBuilder, x: str) -> str:
    neg = g.op("mul", _elu_tail(g, x), g.scalar(1.0507 * 1.6732))
    pos = g.op("mul", x, g.scalar(1.0507))
    return g.op("where", g.op("less", x, g.scalar(0.0)), neg, pos)


def _ramp(g: GraphBuilder, x: str) -> str:
    return g.op("add", g.op("relu", x), g.op("mul", x, g.scalar(0.1)))


def _swish(g: GraphBuilder, x: str) -> str:
    return g.op("mul", x, g.op("sigmoid", x))


def _mish(g: GraphBuilder, x: str) -> str:
    # Darknet's softplus with threshold 20: x above 20, exp(x) below -20, log(exp(x) + 1)
    # between; exp is taken of x clipped to 20, so no branch overflows (nor its gradient).
    e = g.op("exp", g.op("clip", x, max=20.0))
    soft = g.op("log", g.op("add", e, g.scalar(1.0)))
    low = g.op("where", g.op("less", x, g.scalar(-20.0)), e, soft)
    sp = g.op("where", g.op("greater", x, g.scalar(20.0)), x, low)
    return g.op("mul", x, g.op("tanh", sp))


def _hard_mish(g: GraphBuilder, x: str) -> str:
    quad = g.op("add", g.op("mul", g.op("mul", x, x), g.scalar(0.5)), x)
    mid = g.op("where", g.op("greater", x, g.scalar(-2.0)), quad, g.scalar(0.0))
    return g.op("where", g.op("greater", x, g.scalar(0.0)), x, mid)


def _gelu(g: GraphBuilder, x: str) -> str:
    x3 = g.op("mul", g.op("mul", x, x), x)
    inner = g.op("add", g.op("mul", x, g.scalar(0.797885)), g.op("mul", x3, g.scalar(0.035677)))
    t = g.op("add", g.op("tanh", inner), g.scalar(1.0))
    return g.op("mul", g.op("mul", x, g.scalar(0.5)), t)


def _plse(g: GraphBuilder, x: str) -> str:
    mid = g.op("add", g.op("mul", x, g.scalar(0.125)), g.scalar(0.5))
    lo = g.op("mul", g.op("add", x, g.scalar(4.0)), g.scalar(0.01))
    hi = g.op("add", g.op("mul", g.op("sub", x, g.scalar(4.0)), g.scalar(0.01)), g.scalar(1.0))
    y = g.op("where", g.op("greater", x, g.scalar(4.0)), hi, mid)
    return g.op("where", g.op("less", x, g.scalar(-4.0)), lo, y)


def _lhtan(g: GraphBuilder, x: str) -> str:
    lo = g.op("mul", x, g.scalar(0.001))
    hi = g.op("add", g.op("mul", g.op("sub", x, g.scalar(1.0)), g.scalar(0.001)), g.scalar(1.0))
    y = g.op("where", g.op("greater", x, g.scalar(1.0)), hi, x)
    return g.op("where", g.op("less", x, g.scalar(0.0)), lo, y)


def _stair(g: GraphBuilder, x: str) -> str:
    n = g.op("floor", x)
    half = g.op("floor", g.op("mul", x, g.scalar(0.5)))
    even = g.op("equal", g.op("fmod", n, g.scalar(2.0)), g.scalar(0.0))
    return g.op("where", even, half, g.op("add", g.op("sub", x, n), half))


def _normalize_channels(g: GraphBuilder, x: str) -> str:
    r = g.op("relu", x)
    total = g.op("reduce_sum", r, axes=(1,))
    return g.op("div", r, g.op("add", total, g.scalar(0.0001)))


def _softmax_channels(maxval: bool) -> Lower:
    def lower(g: GraphBuilder, x: str) -> str:
        shift = g.op("sub", x, g.op("reduce_max", x, axes=(1,))) if maxval else x
        e = g.op("exp", shift)
        return g.op("div", e, g.op("add", g.op("reduce_sum", e, axes=(1,)), g.scalar(0.0001)))

    return lower


def _a(name: str, formula: str, lower: Lower, per_pixel: bool = False) -> Activation:
    return Activation(name, formula, lower, per_pixel)


ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(
    {
        a.name: a
        for a in (
            _a("linear", "x", _linear),
            _a("logistic", "1 / (1 + exp(-x))", lambda g, x: g.op("sigmoid", x)),
            _a("loggy", "2 / (1 + exp(-x)) - 1", _loggy),
            _a("relu", "x if x > 0 else 0", lambda g, x: g.op("relu", x)),
            _a("relu6", "min(max(x, 0), 6)", lambda g, x: g.op("clip", x, min=0.0, max=6.0)),
            _a("elu", "x if x >= 0 else exp(x) - 1", _elu),
            _a("selu", "1.0507·x if x >= 0 else 1.0507·1.6732·(exp(x) - 1)", _selu),
            _a("relie", "x if x > 0 else 0.01·x", _leaky(0.01)),
            _a("ramp", "x·(x > 0) + 0.1·x", _ramp),
            _a("leaky", "x if x > 0 else 0.1·x", _leaky(0.1)),
            _a("revleaky", "as leaky in the forward pass", _leaky(0.1)),
            _a("tanh", "tanh(x) (2 / (1 + exp(-2x)) - 1)", lambda g, x: g.op("tanh", x)),
            _a(
                "plse",
                "0.01·(x + 4) if x < -4, 0.01·(x - 4) + 1 if x > 4, else 0.125·x + 0.5",
                _plse,
            ),
            _a(
                "stair",
                "n = floor(x): floor(x/2) if n is even, else x - n + floor(x/2)",
                _stair,
            ),
            _a("hardtan", "x limited to [-1, 1]", lambda g, x: g.op("clip", x, min=-1.0, max=1.0)),
            _a("lhtan", "0.001·x if x < 0, 0.001·(x - 1) + 1 if x > 1, else x", _lhtan),
            _a(
                "gelu",
                "0.5·x·(1 + tanh(0.797885·x + 0.035677·x³))",
                _gelu,
            ),
            _a("swish", "x / (1 + exp(-x))", _swish),
            _a(
                "mish",
                "x·tanh(softplus(x)), softplus(x) = x if x > 20, exp(x) if x < -20, else"
                " log(exp(x) + 1)",
                _mish,
            ),
            _a("hard_mish", "x if x > 0, x²/2 + x if x > -2, else 0", _hard_mish),
            _a(
                "normalize_channels",
                "relu(x) / (Σ over the pixel's channels of relu(x) + 0.0001)",
                _normalize_channels,
                per_pixel=True,
            ),
            _a(
                "normalize_channels_softmax",
                "exp(x) / (Σ over the pixel's channels of exp(x) + 0.0001)",
                _softmax_channels(maxval=False),
                per_pixel=True,
            ),
            _a(
                "normalize_channels_softmax_maxval",
                "exp(x - m) / (Σ over the pixel's channels of exp(x - m) + 0.0001), m the"
                " pixel's largest channel",
                _softmax_channels(maxval=True),
                per_pixel=True,
            ),
        )
    }
)
