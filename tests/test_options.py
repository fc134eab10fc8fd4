"""Darknet's warnings about cfg options, as Darknet gives them, with the cfg line.

Darknet prints ``Unused field: 'key = value'`` for every option of a layer section its parser did
not look up (a misspelled key, another fork's key, the second of two equal keys), and reads
``filters=abc`` as 0 without a word. dwf says both in ``plan.warnings``, which ``dwf info``,
``dwf check`` and ``--json`` show, and a size mismatch names them when they may explain it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

import dwf
from dwf.format.dialects import DIALECTS
from dwf.interfaces.cli import main

NET = "[net]\nwidth=16\nheight=16\nchannels=3\n"
CONV = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"


def option_warnings(plan: dwf.Plan) -> list[str]:
    return [
        w
        for w in plan.warnings
        if any(
            m in w
            for m in ("does not read", "is given again", "is not a number", "has no '=value'")
        )
    ]


def test_misspelled_key_warns_with_its_line_as_darknet_does() -> None:
    plan = dwf.Plan.from_text(NET + CONV + "[convolutional]\nfilter=8\nsize=1\n")
    assert option_warnings(plan) == [
        "line 12: layer 1 (conv_1, convolutional): Darknet does not read 'filter' in a"
        " [convolutional] section (it prints \"Unused field: 'filter = 8'\"); did you mean"
        " 'filters'?"
    ]


def test_number_that_is_not_one_warns_naming_the_line() -> None:
    plan = dwf.Plan.from_text(NET + CONV + "[convolutional]\nfilters=abc\nsize=1\n")
    assert option_warnings(plan) == [
        "line 12: layer 1 (conv_1, convolutional): filters=abc is not a number: Darknet's atoi"
        " reads 0 without a word"
    ]
    assert plan["conv_1"].out_c == 0  # and that is what Darknet builds


def test_numbers_with_trailing_text_are_read_silently_as_darknet_reads_them() -> None:
    plan = dwf.Plan.from_text(
        NET
        + "[convolutional]\nfilters=12#was 32\nsize=3\n"
        + "[yolo]\nmask=0,1#two\nanchors=1,2, 3,4,\nclasses=1\nnum=2\nscale_x_y=1.05#tuned\n"
    )
    assert option_warnings(plan) == []


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("batch_normalize=\u0661", "batch_normalize=\u0661"),  # ARABIC-INDIC DIGIT ONE
        ("batch_normalize=\u00b2", "batch_normalize=\u00b2"),  # SUPERSCRIPT TWO
        ("dot=\u0661.5", "dot=\u0661.5"),  # read with atof
        ("binary=-\u0661", "binary=-\u0661"),  # after a sign
    ],
)
def test_digits_of_other_scripts_are_not_numbers_as_c_reads_them(option: str, shown: str) -> None:
    # Python's str.isdigit() takes them; C's atoi/atof read 0 (the cfg tokeniser's own rule).
    plan = dwf.Plan.from_text(NET + "[convolutional]\nfilters=8\nsize=1\n" + option + "\n")
    assert option_warnings(plan) == [
        f"line 8: layer 0 (conv_0, convolutional): {shown} is not a number: Darknet's"
        f" {'atof' if option.startswith('dot') else 'atoi'} reads"
        f" {'0.0' if option.startswith('dot') else '0'} without a word"
    ]


def test_list_item_that_is_not_a_number_warns() -> None:
    plan = dwf.Plan.from_text(
        NET + "[convolutional]\nfilters=12\nsize=1\n[yolo]\nmask=0,x\nanchors=1,2,3,4\nnum=2\n"
        "classes=1\n"
    )
    (w,) = option_warnings(plan)
    assert w.startswith("line 9: layer 1 (yolo_1, yolo): mask=0,x is not a number (the item 'x')")


def test_second_of_two_equal_keys_warns_as_unused() -> None:
    plan = dwf.Plan.from_text(NET + "[convolutional]\nfilters=8\nsize=3\nfilters=16\n")
    assert option_warnings(plan) == [
        "line 8: layer 0 (conv_0, convolutional): filters is given again (first on line 6):"
        " Darknet reads the first and ignores this one (it prints \"Unused field: 'filters ="
        " 16'\")"
    ]
    assert plan["conv_0"].out_c == 8


def test_net_section_keys_are_checked_too_though_darknet_says_nothing() -> None:
    plan = dwf.Plan.from_text(NET + "heigth=32\n" + CONV)
    assert option_warnings(plan) == [
        "line 5: [net]: Darknet does not read 'heigth' in [net] (it ignores it there without a"
        " warning); did you mean 'height'?"
    ]


def test_the_keys_are_the_dialect_parsers_not_dwfs() -> None:
    """``hidden`` is read by AlexeyAB's [rnn], not pjreddie's; ``stride_x`` by AlexeyAB's conv
    only; ``numload`` (which dwf reads for pjreddie) is unknown to AlexeyAB's parser."""
    rnn = "[net]\ninputs=4\n[rnn]\noutput=4\nhidden=8\nactivation=leaky\n"
    assert option_warnings(dwf.Plan.from_text(rnn, dialect="alexeyab")) == []
    (w,) = option_warnings(dwf.Plan.from_text(rnn, dialect="pjreddie"))
    assert "Darknet does not read 'hidden' in a [rnn] section" in w
    conv = NET + "[convolutional]\nfilters=4\nsize=3\nstride_x=1\nnumload=2\n"
    ab = option_warnings(dwf.Plan.from_text(conv, dialect="alexeyab"))
    pj = option_warnings(dwf.Plan.from_text(conv, dialect="pjreddie"))
    assert ["numload" in w for w in ab] == [True]
    assert ["stride_x" in w for w in pj] == [True]


@pytest.mark.parametrize("name", ["alexeyab", "pjreddie"])
def test_every_layer_type_of_a_dialect_has_its_parsers_keys(name: str) -> None:
    """The section types (dialects.py) and the keys read per type (options.py) are two lists:
    a type without keys would be screened by nothing, silently."""
    d = DIALECTS[name]
    assert set(d.reads) - {"net"} == set(d.sections.values())


def test_every_repeated_section_warns_with_its_own_line() -> None:
    """The planner computes a repeated block once; its warnings still come once per section,
    each with that section's line."""
    block = "[convolutional]\nfilter=8\nfilters=8\nsize=1\n"
    plan = dwf.Plan.from_text(NET + CONV + block * 40)
    got = option_warnings(plan)
    assert len(got) == 40
    lines = [int(re.match(r"line (\d+):", w).group(1)) for w in got]  # type: ignore[union-attr]
    text = plan.text.split("\n")
    assert all(text[n - 1] == "filter=8" for n in lines)
    assert lines == sorted(set(lines))
    assert [f"layer {i} " in w for i, w in enumerate(got, start=1)] == [True] * 40


def test_warnings_reach_info_check_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = NET + CONV + "[convolutional]\nfilters=8\nsize=1\nbatch_normalise=1\n"
    cfg = tmp_path / "net.cfg"
    cfg.write_text(text, encoding="utf-8")
    plan = dwf.plan(cfg)
    weights = tmp_path / "net.weights"
    dwf.save(
        weights,
        plan,
        {f"{lp.name}.{a.name}": np.ones(a.shape, np.float32) for lp, a in plan.arrays()},
    )
    (expected,) = option_warnings(plan)
    assert "did you mean 'batch_normalize'?" in expected and expected.startswith("line 14:")
    with dwf.open(weights) as f:
        assert expected in f.warnings
    assert main(["info", str(weights)]) == 0
    assert f"warning: {expected}" in " ".join(capsys.readouterr().out.split())
    assert main(["info", str(weights), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == [expected]
    assert main(["check", str(weights)]) == 0
    assert f"cfg     {expected}" in capsys.readouterr().out
    assert main(["check", str(weights), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cfg_warnings"] == [expected]


# -- a size mismatch names the warnings that may explain it -------------------------------------
def _written(tmp_path: Path, text: str) -> Path:
    plan = dwf.Plan.from_text(text)
    weights = tmp_path / "net.weights"
    dwf.save(
        weights,
        plan,
        {f"{lp.name}.{a.name}": np.ones(a.shape, np.float32) for lp, a in plan.arrays()},
    )
    return weights


def test_misspelled_filters_is_named_as_the_exact_cause_of_a_size_mismatch(
    tmp_path: Path,
) -> None:
    weights = _written(tmp_path, NET + CONV + "[convolutional]\nfilters=32\nsize=1\n")
    cfg = tmp_path / "typo.cfg"
    cfg.write_text(NET + CONV + "[convolutional]\nfilter=32\nsize=1\n", encoding="utf-8")
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "cfg-warning" and cause.exact
    assert "line 12: layer 1 (conv_1, convolutional): Darknet does not read 'filter'" in (
        cause.summary
    )
    assert cause.fix == "correct them (line 12: filters=32)"
    assert "likely cause: the cfg has lines Darknet warns about" in str(info.value)


def test_key_given_twice_and_misspelled_section_are_corrected_and_confirmed(
    tmp_path: Path,
) -> None:
    weights = _written(tmp_path, NET + CONV + "[convolutional]\nfilters=32\nsize=1\n")
    cfg = tmp_path / "twice.cfg"
    cfg.write_text(
        NET + CONV + "[convolutional]\nfilters=16\nsize=1\nfilters=32\n", encoding="utf-8"
    )
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "cfg-warning" and cause.exact
    assert cause.fix == "correct them (line 12: delete it)"
    cfg.write_text(NET + CONV + "[convolutonal]\nfilters=32\nsize=1\n", encoding="utf-8")
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "cfg-warning" and cause.exact
    assert "[convolutonal] is not a section Darknet knows" in cause.summary
    assert cause.fix == "correct them (line 11: [convolutional])"


def test_warnings_that_cannot_change_the_size_are_not_named_as_its_cause(
    tmp_path: Path,
) -> None:
    weights = _written(tmp_path, NET + CONV + CONV)
    cfg = tmp_path / "net.cfg"
    cfg.write_text(NET + "batch=1\nbatch=64\n" + CONV + CONV + "jiter=1\n", encoding="utf-8")
    cut = tmp_path / "cut.weights"
    cut.write_bytes(weights.read_bytes()[:-40])
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(cut, cfg)
    assert [c.kind for c in info.value.diagnosis.causes] == ["truncated"]


def test_number_that_is_not_one_is_named_as_a_likely_cause(tmp_path: Path) -> None:
    weights = _written(tmp_path, NET + CONV + "[convolutional]\nfilters=32\nsize=1\n")
    cfg = tmp_path / "typo.cfg"
    cfg.write_text(NET + CONV + "[convolutional]\nfilters=abc\nsize=1\n", encoding="utf-8")
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "cfg-warning" and not cause.exact
    assert "misspelled filters=" in cause.summary
    assert "line 12: layer 1 (conv_1, convolutional): filters=abc is not a number" in (
        cause.summary
    )


# -- the stock cfgs ----------------------------------------------------------------------------
# Each checked by hand against the fork's parser.c: Darknet prints "Unused field" for the layer
# keys, and ignores the [net] ones.
STOCK_WARNINGS = {
    "alexeyab/Gaussian_yolov3_BDD.cfg": ["24 max_epochs"],
    "alexeyab/efficientnet-lite3.cfg": ["33 momentum", "34 decay"],
    "alexeyab/efficientnet_b0.cfg": ["25 momentum", "26 decay"],
    "alexeyab/writing.cfg": ["10 seen"],
    "alexeyab/yolo9000.cfg": ["8 batch", "9 subdivisions"],
    "alexeyab/yolov3-openimages.cfg": ["6 batch", "7 subdivisions"],
    "alexeyab/yolov4-sam-mish-csp-reorg-bfm.cfg": [
        "1156 uc_normalizer",
        "1160 beta1",
        "1290 uc_normalizer",
        "1294 beta1",
        "1424 uc_normalizer",
        "1428 beta1",
    ],
    "pjreddie/pj_crnn.cfg": ["11 size", "12 pad", "18 size", "19 pad"],
    "pjreddie/pj_recurrent_fc.cfg": ["10 hidden", "15 hidden"],
    "pjreddie/rnn.cfg": ["17 hidden", "23 hidden", "29 hidden"],
    "pjreddie/rnn.train.cfg": ["17 hidden", "23 hidden", "29 hidden"],
    "pjreddie/writing.cfg": ["10 seen"],
    "pjreddie/yolo9000.cfg": ["8 batch", "9 subdivisions"],
    "pjreddie/yolov3-openimages.cfg": ["6 batch", "7 subdivisions"],
}


def test_stock_cfgs_warn_where_darknet_would_and_nowhere_else() -> None:
    root = shared_path("conformance", "cfg")
    got: dict[str, list[str]] = {}
    for path in sorted(root.glob("*/*.cfg")):
        dialect = path.parent.name
        try:
            plan = dwf.plan(path, dialect=dialect)
        except dwf.CfgError:
            continue  # cfgs Darknet refuses are tested elsewhere
        for w in option_warnings(plan):
            line = re.match(r"line (\d+):", w).group(1)  # type: ignore[union-attr]
            key = re.search(r"'(\w+)'|: (\w+) is given again", w)
            assert key is not None, w
            got.setdefault(f"{dialect}/{path.name}", []).append(
                f"{line} {key.group(1) or key.group(2)}"
            )
    assert got == STOCK_WARNINGS
