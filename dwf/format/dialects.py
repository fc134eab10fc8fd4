"""The two Darknet dialects, as a handful of switches (docs/format.md §3).

Everything that differs between AlexeyAB's fork (also what hank-ai writes) and pjreddie's
original code is one field here; layer definitions read these fields and never test a dialect's
name.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from dwf.format.options import ALEXEYAB_READS, PJREDDIE_READS, OptionTable

# Section names both forks know, mapped to the canonical type name dwf reports.
_COMMON_SECTIONS: dict[str, str] = {
    "[conv]": "convolutional",
    "[convolutional]": "convolutional",
    "[conn]": "connected",
    "[connected]": "connected",
    "[local]": "local",
    "[batchnorm]": "batchnorm",
    "[rnn]": "rnn",
    "[gru]": "gru",
    "[lstm]": "lstm",
    "[crnn]": "crnn",
    "[shortcut]": "shortcut",
    "[route]": "route",
    "[max]": "maxpool",
    "[maxpool]": "maxpool",
    "[avg]": "avgpool",
    "[avgpool]": "avgpool",
    "[reorg]": "reorg",
    "[upsample]": "upsample",
    "[dropout]": "dropout",
    "[activation]": "activation",
    "[lrn]": "normalization",
    "[normalization]": "normalization",
    "[soft]": "softmax",
    "[softmax]": "softmax",
    "[cost]": "cost",
    "[crop]": "crop",
    "[detection]": "detection",
    "[region]": "region",
    "[yolo]": "yolo",
}

_ALEXEYAB_SECTIONS = {
    **_COMMON_SECTIONS,
    "[conv_lstm]": "conv_lstm",
    "[history]": "history",
    "[implicit]": "implicit",
    "[scale_channels]": "scale_channels",
    "[sam]": "sam",
    "[local_avg]": "local_avgpool",
    "[local_avgpool]": "local_avgpool",
    "[reorg3d]": "reorg3d",
    "[Gaussian_yolo]": "Gaussian_yolo",
    "[contrastive]": "contrastive",
    "[empty]": "empty",
    "[silence]": "empty",
}

_PJREDDIE_SECTIONS = {
    **_COMMON_SECTIONS,
    "[deconv]": "deconvolutional",
    "[deconvolutional]": "deconvolutional",
    "[iseg]": "iseg",
    "[logistic]": "logistic",
    "[l2norm]": "l2norm",
}


# The names each fork's get_activation knows (any other name is relu there, with a printed
# warning); what each computes is in dwf/format/activations.py.
_PJREDDIE_ACTIVATIONS = frozenset(
    {
        "logistic", "loggy", "relu", "elu", "selu", "relie", "plse", "hardtan", "lhtan",
        "linear", "ramp", "leaky", "tanh", "stair",
    }
)  # fmt: skip
_ALEXEYAB_ACTIVATIONS = _PJREDDIE_ACTIVATIONS | {
    "swish", "mish", "hard_mish", "relu6", "gelu", "revleaky", "normalize_channels",
    "normalize_channels_softmax", "normalize_channels_softmax_maxval",
}  # fmt: skip


@attrs.frozen
class Dialect:
    """What one Darknet code base does differently from the other.

    Attributes:
        name: ``"alexeyab"`` or ``"pjreddie"``.
        sections: section header (brackets included) → canonical layer type.
        strip_cr: ``\\r`` is removed like other whitespace (AlexeyAB) or kept (pjreddie).
        seen_below_1000: the 8-byte ``seen`` also needs ``major < 1000 and minor < 1000``
            (pjreddie).
        xnor_resets_groups: ``xnor=1`` forces ``groups=1`` and ``groups<1`` becomes 1.
        conv_extras: conv/maxpool understand ``stride_x``/``stride_y``, ``antialiasing``,
            ``share_index``; maxpool understands ``maxpool_depth``.
        route_groups: ``[route]`` understands ``groups``/``group_id``.
        shortcut_weights: ``[shortcut]`` takes a ``from`` list and ``weights_type`` and adds
            flat buffers (AlexeyAB); otherwise one ``from``, ``alpha``/``beta`` and pjreddie's
            strided add.
        batchnorm_biases: ``[batchnorm]`` stores ``biases`` before the three BN arrays.
        rnn_hidden: ``[rnn]`` has a ``hidden`` size (else hidden = output).
        recurrent_dims: rnn/lstm record a 1×1×output shape (pjreddie leaves 0×0×0).
        gru_blocks: GRU sub-layers in file order, ``(prefix, takes the layer input)``.
        lstm_blocks: LSTM sub-layers in file order, ``(prefix, takes the layer input)``.
        crnn_names: option names for (output, hidden) of ``[crnn]``.
        crnn_fixed_geometry: crnn ignores size/stride/pad options (3×3, stride 1, pad 1).
        yolo_mask_stops_at_hash: ``mask=`` counting stops at ``#``.
        numload: conv ``numload=k`` reads only k filters.
        dontsave: ``dontsave=1`` layers are not written.
        reorg_extra: ``[reorg]`` understands ``extra`` and ``flatten``.
        crnn_any_input: ``[crnn]`` is built on any input shape, even 0×0×0 (pjreddie).
        shortcut_size_assert: the stock build's ``[shortcut]`` asserts equal width/height (an
            assert AlexeyAB's Makefile build keeps and its release builds compile out).
        needs_2d_layer: the stock loader divides by the number of layers wider and taller than 1
            (AlexeyAB's statistics): a network without one crashes it.
        activations: the activation names ``get_activation`` knows; any other is relu, with a
            warning.
        bn_epsilon: batch norm's epsilon in ``normalize_cpu``.
        bn_epsilon_outside_sqrt: batch norm divides by ``sqrt(var) + eps`` (pjreddie) rather
            than ``sqrt(var + eps)`` (AlexeyAB).
        dropout_probability: ``[dropout]``'s ``probability`` when the cfg gives none.
        dropblock: ``[dropout]`` reads ``dropblock`` (AlexeyAB's DropBlock, run by its GPU
            build only).
        detection_extras: ``[yolo]`` reads ``scale_x_y``, ``new_coords``, ``nms_kind`` and
            ``beta_nms``, and ``[net]`` reads ``letter_box`` (AlexeyAB).
        region_background: ``[region]`` reads ``background=`` (AlexeyAB never sets it: 0).
        region_flattens: ``[region]``'s CPU forward reorders its output cell by cell (each
            anchor's entries together), applies the logistic to entry 4 only, and the detector
            decodes it with ``get_region_boxes``: rows cell by cell, the logistic of x and y
            taken there, objectness 1, ``classfix``, the letterbox rule of ``[yolo]``
            (AlexeyAB). Otherwise the activations are applied in place and
            ``get_region_detections`` lists rows anchor by anchor (pjreddie).
        detector_letterboxes: the detector always letterboxes its input and
            ``get_network_boxes`` always corrects for it (pjreddie); otherwise only when asked
            or ``[net] letter_box=1`` (AlexeyAB).
        keeps_bflops: the loader keeps each layer's BFLOPs as a float (convolutions from their
            integer weight count, /32 for ``xnor``; pooling, shortcuts, crnn, conv_lstm too) and
            prints their total (AlexeyAB); else only convolutions print a figure, in double,
            and no total (pjreddie). See :mod:`dwf.format.figures`.
        reads: the options its parser reads per section type (canonical type, ``"net"`` for
            ``[net]``) and how (:mod:`dwf.format.options`): what Darknet does not read it
            reports as "Unused field".
    """

    name: str
    sections: Mapping[str, str]
    strip_cr: bool
    seen_below_1000: bool
    xnor_resets_groups: bool
    conv_extras: bool
    route_groups: bool
    shortcut_weights: bool
    batchnorm_biases: bool
    rnn_hidden: bool
    recurrent_dims: bool
    gru_blocks: tuple[tuple[str, bool], ...]
    lstm_blocks: tuple[tuple[str, bool], ...]
    crnn_names: tuple[str, str]
    crnn_fixed_geometry: bool
    yolo_mask_stops_at_hash: bool
    numload: bool
    dontsave: bool
    reorg_extra: bool
    crnn_any_input: bool = False
    shortcut_size_assert: bool = False
    needs_2d_layer: bool = False
    activations: frozenset[str] = _ALEXEYAB_ACTIVATIONS
    bn_epsilon: float = 1e-5
    bn_epsilon_outside_sqrt: bool = False
    dropout_probability: float = 0.2
    dropblock: bool = True
    detection_extras: bool = True
    region_background: bool = False
    region_flattens: bool = True
    detector_letterboxes: bool = False
    keeps_bflops: bool = False
    reads: OptionTable = attrs.field(default=ALEXEYAB_READS, eq=False, repr=False)


ALEXEYAB = Dialect(
    name="alexeyab",
    sections=_ALEXEYAB_SECTIONS,
    strip_cr=True,
    seen_below_1000=False,
    xnor_resets_groups=True,
    conv_extras=True,
    route_groups=True,
    shortcut_weights=True,
    batchnorm_biases=True,
    rnn_hidden=True,
    recurrent_dims=True,
    gru_blocks=(
        ("input_z_layer", True),
        ("input_r_layer", True),
        ("input_h_layer", True),
        ("state_z_layer", False),
        ("state_r_layer", False),
        ("state_h_layer", False),
    ),
    lstm_blocks=(
        ("wf", False),
        ("wi", False),
        ("wg", False),
        ("wo", False),
        ("uf", True),
        ("ui", True),
        ("ug", True),
        ("uo", True),
    ),
    crnn_names=("output", "hidden"),
    crnn_fixed_geometry=False,
    yolo_mask_stops_at_hash=True,
    numload=False,
    dontsave=False,
    reorg_extra=False,
    shortcut_size_assert=True,
    needs_2d_layer=True,
    activations=_ALEXEYAB_ACTIVATIONS,
    keeps_bflops=True,
    reads=ALEXEYAB_READS,
)

PJREDDIE = Dialect(
    name="pjreddie",
    sections=_PJREDDIE_SECTIONS,
    strip_cr=False,
    seen_below_1000=True,
    xnor_resets_groups=False,
    conv_extras=False,
    route_groups=False,
    shortcut_weights=False,
    batchnorm_biases=False,
    rnn_hidden=False,
    recurrent_dims=False,
    gru_blocks=(
        ("wz", False),
        ("wr", False),
        ("wh", False),
        ("uz", True),
        ("ur", True),
        ("uh", True),
    ),
    lstm_blocks=(
        ("wi", False),
        ("wf", False),
        ("wo", False),
        ("wg", False),
        ("ui", True),
        ("uf", True),
        ("uo", True),
        ("ug", True),
    ),
    crnn_names=("output_filters", "hidden_filters"),
    crnn_fixed_geometry=True,
    yolo_mask_stops_at_hash=False,
    numload=True,
    dontsave=True,
    reorg_extra=True,
    crnn_any_input=True,
    activations=_PJREDDIE_ACTIVATIONS,
    bn_epsilon=1e-6,
    bn_epsilon_outside_sqrt=True,
    dropout_probability=0.5,
    dropblock=False,
    detection_extras=False,
    region_background=True,
    region_flattens=False,
    detector_letterboxes=True,
    reads=PJREDDIE_READS,
)

DIALECTS: dict[str, Dialect] = {"alexeyab": ALEXEYAB, "pjreddie": PJREDDIE}
# hank-ai's Darknet/YOLO writes AlexeyAB's layout.
_ALIASES = {"ab": "alexeyab", "hank-ai": "alexeyab", "hankai": "alexeyab", "pj": "pjreddie"}


def get_dialect(dialect: str | Dialect) -> Dialect:
    """Resolve a dialect name (``"alexeyab"``, ``"pjreddie"``, ``"hank-ai"``) or pass one through.

    Raises:
        DwfError: for an unknown name.
    """
    if isinstance(dialect, Dialect):
        return dialect
    key = str(dialect).strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return DIALECTS[key]
    except KeyError:
        from dwf.errors import DwfError

        raise DwfError(
            f"unknown dialect {dialect!r}: use 'alexeyab' (AlexeyAB's fork and hank-ai,"
            " the default) or 'pjreddie' (the original Darknet)"
        ) from None
