"""The options Darknet's parser reads in each section type, and what it says about the others.

After building each layer, Darknet prints ``Unused field: 'key = value'`` for every option of its
section that no lookup asked for: a misspelled key (``filter=8``), a key of another layer type or
of the other fork, and the second of two lines with the same key (a lookup finds the first). It
reads numbers with ``atoi``/``atof``, so ``filters=abc`` is 0 without a word. This module holds,
per dialect, the keys each section type's parser looks up — every ``option_find*`` call of
``parse_<type>`` and of the loop that calls it (``clip``, ``dontload``, ``learning_rate`` … for
every layer), read from AlexeyAB's and pjreddie's ``parser.c`` — with how each value is read. It
is independent of which options dwf itself needs, on purpose: Darknet's warnings are about
Darknet's parser.

A key read only under a condition (``stride`` when ``stride_x`` is absent, ``B1`` when ``adam=1``)
counts as read: dwf does not warn where Darknet might not. Darknet never warns about ``[net]``;
dwf does, saying so, because a misspelled ``[net]`` key (``heigth=416``) changes the network too.

:func:`text_issues` is what the planner calls per distinct section text (``plan.warnings``);
:func:`section_issues` what the mismatch diagnosis calls to look for a misspelled option
(:mod:`dwf.format.cfg_causes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple

from dwf.format.cfg import Section, has_number, shorten

if TYPE_CHECKING:
    from dwf.format.dialects import Dialect

# How a value is read: i = atoi, f = atof, s = text, I = comma-separated atoi, F = comma-separated
# atof.
OptionTable = Mapping[str, Mapping[str, str]]


def _table(spec: Mapping[str, str], common: str) -> OptionTable:
    """``{type: "key:kind key:kind …"}`` → ``{type: {key: kind}}``, with the keys every layer's
    loop reads (``common``) added to each layer type (not to ``net``)."""
    shared = dict(item.split(":") for item in common.split())
    out: dict[str, Mapping[str, str]] = {}
    for kind, keys in spec.items():
        read = dict(item.split(":") for item in keys.split())
        # plain dicts (looked up once per option of every planned section), read-only by use
        out[kind] = read if kind == "net" else {**shared, **read}
    return MappingProxyType(out)


ALEXEYAB_READS: OptionTable = _table(
    {
        "net": "max_batches:i batch:i learning_rate:f learning_rate_min:f sgdr_cycle:i"
        " sgdr_mult:i momentum:f decay:f subdivisions:i time_steps:i track:i augment_speed:i"
        " sequential_subdivisions:i try_fix_nan:i weights_reject_freq:i equidistant_point:i"
        " badlabels_rejection_percentage:f num_sigmas_reject_badlabels:f ema_alpha:f"
        " use_cuda_graph:i loss_scale:f dynamic_minibatch:i optimized_memory:i"
        " workspace_size_limit_MB:f adam:i B1:f B2:f eps:f height:i width:i channels:i inputs:i"
        " max_crop:i min_crop:i flip:i blur:i gaussian_noise:i mixup:i cutmix:i mosaic:i"
        " letter_box:i mosaic_bound:i contrastive:i contrastive_jit_flip:i contrastive_color:i"
        " unsupervised:i label_smooth_eps:f resize_step:f attention:i adversarial_lr:f"
        " max_chart_loss:f angle:f aspect:f saturation:f exposure:f hue:f power:f policy:s"
        " burn_in:i step:i scale:f steps:I scales:F seq_scales:F gamma:f"
        " show_receptive_field:f",
        "convolutional": "filters:i groups:i size:i stride:i stride_x:i stride_y:i dilation:i"
        " antialiasing:i pad:i padding:i activation:s assisted_excitation:f share_index:i"
        " batch_normalize:i cbn:i binary:i xnor:i bin_output:i sway:i rotate:i stretch:i"
        " stretch_sway:i flipped:i dot:f angle:f grad_centr:i reverse:f coordconv:i stream:i"
        " wait_stream:i",
        "local": "filters:i size:i stride:i pad:i activation:s",
        "crnn": "size:i stride:i dilation:i pad:i padding:i output:i hidden:i groups:i"
        " activation:s batch_normalize:i xnor:i shortcut:i",
        "rnn": "output:i hidden:i activation:s batch_normalize:i logistic:i shortcut:i",
        "gru": "output:i batch_normalize:i",
        "lstm": "output:i batch_normalize:i",
        "conv_lstm": "size:i stride:i dilation:i pad:i padding:i output:i groups:i"
        " activation:s batch_normalize:i xnor:i peephole:i bottleneck:i state_constrain:i"
        " shortcut:i lstm_activation:s time_normalizer:f",
        "history": "history_size:i",
        "connected": "output:i activation:s batch_normalize:i",
        "softmax": "groups:i temperature:f tree:s spatial:f noloss:i",
        "contrastive": "classes:i yolo_layer:i temperature:f cls_normalizer:f max_delta:f"
        " contrastive_neg_max:i",
        "yolo": "classes:i num:i mask:I max:i show_details:i max_delta:f counters_per_class:I"
        " label_smooth_eps:f scale_x_y:f objectness_smooth:i new_coords:i iou_normalizer:f"
        " obj_normalizer:f cls_normalizer:f delta_normalizer:f iou_loss:s iou_thresh_kind:s"
        " beta_nms:f nms_kind:s jitter:f resize:f focal_loss:i ignore_thresh:f truth_thresh:f"
        " iou_thresh:f random:f track_history_size:i sim_thresh:f dets_for_track:i"
        " dets_for_show:i track_ciou_norm:f embedding_layer:i map:s anchors:F",
        "Gaussian_yolo": "classes:i max:i num:i mask:I max_delta:f counters_per_class:I"
        " label_smooth_eps:f scale_x_y:f objectness_smooth:i uc_normalizer:f iou_normalizer:f"
        " obj_normalizer:f cls_normalizer:f delta_normalizer:f iou_loss:s iou_thresh_kind:s"
        " beta_nms:f nms_kind:s yolo_point:s jitter:f resize:f ignore_thresh:f truth_thresh:f"
        " iou_thresh:f random:f map:s anchors:F",
        "region": "coords:i classes:i num:i max:i log:i sqrt:i softmax:i focal_loss:i jitter:f"
        " resize:f rescore:i thresh:f classfix:i absolute:i random:f coord_scale:f"
        " object_scale:f noobject_scale:f mask_scale:f class_scale:f bias_match:i tree:s map:s"
        " anchors:F",
        "detection": "coords:i classes:i rescore:i num:i side:i softmax:i sqrt:i max:i"
        " coord_scale:f forced:i object_scale:f noobject_scale:f class_scale:f jitter:f"
        " resize:f random:f reorg:i",
        "cost": "type:s scale:f ratio:f",
        "crop": "crop_height:i crop_width:i flip:i angle:f saturation:f exposure:f noadjust:i"
        " shift:f",
        "reorg3d": "stride:i reverse:i",
        "reorg": "stride:i reverse:i",
        "local_avgpool": "stride:i stride_x:i stride_y:i size:i padding:i",
        "maxpool": "stride:i stride_x:i stride_y:i size:i padding:i maxpool_depth:i"
        " out_channels:i antialiasing:i maxpool_zero_nonmax:i",
        "avgpool": "",
        "dropout": "probability:f dropblock:i dropblock_size_rel:f dropblock_size_abs:f",
        "normalization": "alpha:f beta:f kappa:f size:i",
        "batchnorm": "",
        "shortcut": "activation:s weights_type:s weights_normalization:s from:I",
        "scale_channels": "from:i scale_wh:i activation:s",
        "sam": "from:i activation:s",
        "implicit": "mean:f std:f filters:i atoms:i",
        "activation": "activation:s",
        "upsample": "stride:i scale:f",
        "route": "layers:I groups:i group_id:i stream:i wait_stream:i",
        "empty": "",
    },
    "clip:f onlyforward:i dont_update:i burnin_update:i stopbackward:i train_only_bn:i"
    " dontload:i dontloadscales:i learning_rate:f",
)
"""What AlexeyAB's ``parser.c`` reads per section type (canonical type names; ``net`` for
``[net]``)."""

PJREDDIE_READS: OptionTable = _table(
    {
        "net": "batch:i learning_rate:f momentum:f decay:f subdivisions:i time_steps:i"
        " notruth:i random:i adam:i B1:f B2:f eps:f height:i width:i channels:i inputs:i"
        " max_crop:i min_crop:i max_ratio:f min_ratio:f center:i clip:f angle:f aspect:f"
        " saturation:f exposure:f hue:f policy:s burn_in:i power:f step:i scale:f steps:I"
        " scales:F gamma:f max_batches:i",
        "convolutional": "filters:i size:i stride:i pad:i padding:i groups:i activation:s"
        " batch_normalize:i binary:i xnor:i flipped:i dot:f",
        "deconvolutional": "filters:i size:i stride:i activation:s batch_normalize:i pad:i"
        " padding:i",
        "local": "filters:i size:i stride:i pad:i activation:s",
        "crnn": "output_filters:i hidden_filters:i activation:s batch_normalize:i shortcut:i",
        "rnn": "output:i activation:s batch_normalize:i shortcut:i",
        "gru": "output:i batch_normalize:i tanh:i",
        "lstm": "output:i batch_normalize:i",
        "connected": "output:i activation:s batch_normalize:i",
        "softmax": "groups:i temperature:f tree:s spatial:f noloss:i",
        "yolo": "classes:i num:i mask:I max:i jitter:f ignore_thresh:f truth_thresh:f random:i"
        " map:s anchors:F",
        "iseg": "classes:i ids:i",
        "region": "coords:i classes:i num:i log:i sqrt:i softmax:i background:i max:i jitter:f"
        " rescore:i thresh:f classfix:i absolute:i random:i coord_scale:f object_scale:f"
        " noobject_scale:f mask_scale:f class_scale:f bias_match:i tree:s map:s anchors:F",
        "detection": "coords:i classes:i rescore:i num:i side:i softmax:i sqrt:i max:i"
        " coord_scale:f forced:i object_scale:f noobject_scale:f class_scale:f jitter:f"
        " random:i reorg:i",
        "cost": "type:s scale:f ratio:f noobj:f thresh:f",
        "crop": "crop_height:i crop_width:i flip:i angle:f saturation:f exposure:f noadjust:i"
        " shift:f",
        "reorg": "stride:i reverse:i flatten:i extra:i",
        "maxpool": "stride:i size:i padding:i",
        "avgpool": "",
        "dropout": "probability:f",
        "normalization": "alpha:f beta:f kappa:f size:i",
        "batchnorm": "",
        "shortcut": "from:i activation:s alpha:f beta:f",
        "l2norm": "",
        "logistic": "",
        "activation": "activation:s",
        "upsample": "stride:i scale:f",
        "route": "layers:I",
    },
    "truth:i onlyforward:i stopbackward:i dontsave:i dontload:i numload:i dontloadscales:i"
    " learning_rate:f smooth:f",
)
"""What pjreddie's ``parser.c`` reads per section type."""


IssueKind = Literal["unread", "repeated", "no-value", "not-a-number"]


class Issue(NamedTuple):
    """One option line Darknet would warn about, or read as 0 without a word.

    Attributes:
        line: the cfg line.
        key: the option's key.
        kind: ``"unread"`` (the parser does not look the key up: "Unused field"),
            ``"repeated"`` (a second line with a key: the lookup finds the first),
            ``"no-value"`` (a line without ``=``: the default is used) or ``"not-a-number"``
            (``atoi``/``atof`` find no digits: 0).
        message: what is wrong and what Darknet does (without the line).
        guess: for a key Darknet does not read, the key it probably misspells, else ``None``.
    """

    line: int
    key: str
    kind: IssueKind
    message: str
    guess: str | None = None


# (line offset from the section header, key, kind, message, guess): a section text's issues,
# the same wherever that text appears (a network repeats its blocks).
Found = tuple[tuple[int, str, IssueKind, str, str | None], ...]


def text_issues(section: Section, kind: str, dialect: Dialect) -> Found:
    """What :func:`section_issues` finds, with lines counted from the section's header line:
    the same for every section with this text. Remembered per text (real networks repeat their
    blocks, and cfgs share them), for texts of at most 2 KiB and 4,096 texts at a time, so
    that a hostile cfg's huge sections are not kept after their plan."""
    key = (dialect.name, kind, section.body)
    found = _SEEN.get(key)
    if found is None:
        table = dialect.reads.get(kind)
        found = () if table is None or _clean(section, table) else _find(section, kind, table)
        if len(section.body) <= _SEEN_TEXT:
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.clear()
            _SEEN[key] = found
    return found


_SEEN: dict[tuple[str, str, str], Found] = {}
_SEEN_TEXT = 2048
_SEEN_MAX = 4096


def section_issues(section: Section, kind: str, dialect: Dialect) -> tuple[Issue, ...]:
    """The options of ``section`` (of canonical type ``kind``, or ``"net"``) that Darknet's
    parser would not read, reads twice, or reads as 0 because they are not numbers."""
    base = section.line
    return tuple(
        Issue(base + offset, key, what, message, guess)
        for offset, key, what, message, guess in text_issues(section, kind, dialect)
    )


def _clean(section: Section, table: Mapping[str, str]) -> bool:
    """Whether Darknet has nothing to say about the section: every key read, once, with a value,
    every number a number. The planner's path, for every distinct section text: plain loops, no
    message written, the regular expression only for a number that does not start with a
    digit."""
    values = section.values
    if len(values) != len(section.lines):  # a key given twice
        return False
    if not values.keys() <= table.keys():  # a key the parser does not read
        return False
    for key, value in values.items():
        if value is None:
            return False
        if value.isascii() and value.isdigit():  # "32", "1": most values, however read
            continue
        how = table[key]
        if how == "s":
            continue
        if how == "i" or how == "f":
            if not has_number(value, floating=how == "f"):
                return False
        elif not _digits_only(value, how) and _not_numbers(value, how) is not None:
            return False
    return True


def _digits_only(value: str, how: str) -> bool:
    """A list of plain numbers (``10,14,23``; ``1.08,1.19`` for floats): no item to look at."""
    bare = value.replace(",", "")
    return bare.isascii() and (bare.replace(".", "") if how == "F" else bare).isdigit()


def _find(section: Section, kind: str, table: Mapping[str, str]) -> Found:
    out: list[tuple[int, str, IssueKind, str, str | None]] = []
    first: dict[str, int] = {}
    for key, value, offset in section.lines:
        if key in first:
            told = _told(kind, key, value)
            out.append(
                (
                    offset,
                    key,
                    "repeated",
                    f"{shorten(key, 60)} is given again (first on line"
                    f" {section.line + first[key]}): Darknet reads the first and ignores this"
                    f" one{told}",
                    None,
                )
            )
            continue
        first[key] = offset
        how = table.get(key)
        if how is None:
            guess = closest(key, table)
            where = (
                "in [net] (it ignores it there without a warning)"
                if kind == "net"
                else f"in a [{kind}] section"
            )
            hint = f"; did you mean '{guess}'?" if guess else ""
            out.append(
                (
                    offset,
                    key,
                    "unread",
                    f"Darknet does not read '{shorten(key, 60)}' {where}"
                    f"{_told(kind, key, value)}{hint}",
                    guess,
                )
            )
        elif value is None:
            out.append(
                (
                    offset,
                    key,
                    "no-value",
                    f"'{shorten(key, 60)}' has no '=value': Darknet finds the key without a value"
                    " and uses its default",
                    None,
                )
            )
        elif how != "s":
            bad = _not_numbers(value, how)
            if bad is not None:
                c = "atof" if how in "fF" else "atoi"
                zero = "0.0" if how in "fF" else "0"
                item = "" if how in "if" else f" (the item {shorten(bad, 60)!r})"
                out.append(
                    (
                        offset,
                        key,
                        "not-a-number",
                        f"{shorten(key, 60)}={shorten(value, 60)} is not a number{item}:"
                        f" Darknet's {c} reads {zero} without a word",
                        None,
                    )
                )
    return tuple(out)


def closest(word: str, known: Iterable[str]) -> str | None:
    """The one of ``known`` that ``word`` probably misspells (difflib's ratio at least 0.75),
    or ``None``: the "did you mean" of a key or a section name Darknet does not know."""
    import difflib  # only for a word Darknet does not know: not on every plan's path

    found = difflib.get_close_matches(word, list(known), n=1, cutoff=0.75)
    return found[0] if found else None


def _told(kind: str, key: str, value: str | None) -> str:
    """What Darknet prints for an option it did not read (nothing for ``[net]``)."""
    if kind == "net":
        return ""
    shown = f"'{shorten(key, 60)} = {'(null)' if value is None else shorten(value, 60)}'"
    return f' (it prints "Unused field: {shown}")'


def _not_numbers(value: str, how: str) -> str | None:
    """The first part of ``value`` that C's ``atoi``/``atof`` read as 0 for want of digits (the
    value itself for a single number; an item of a list), or ``None``."""
    floating = how in "fF"
    if how in "if":
        return None if has_number(value, floating=floating) else value
    for item in value.split(","):
        if not item:  # a trailing comma: no number, and no text either
            continue
        if not has_number(item, floating=floating):
            return item
        if "#" in item:  # the rest of the line is a comment
            break
    return None
