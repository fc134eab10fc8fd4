"""Tokeniser and planner rules of spec §2.1, §5 and §6, on small hand-written cfgs."""

from __future__ import annotations

from pathlib import Path

import pytest

import dwf

NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"


def plan(text: str, dialect: str = "alexeyab") -> dwf.Plan:
    return dwf.Plan.from_text(text, dialect=dialect)


def cfg_error(text: str, dialect: str = "alexeyab") -> dwf.CfgError:
    with pytest.raises(dwf.CfgError) as info:
        dwf.Plan.from_text(text, dialect=dialect)
    return info.value


# -- tokenising (spec §2.1) --------------------------------------------------------------------


def test_whitespace_is_removed_everywhere() -> None:
    p = plan("[ net ]\n width = 8\nheight=  8\n\tchannels =3\n[ conv ]\nfilters = 3 2\nsize = 3\n")
    assert p.net == dwf.NetInput(8, 8, 3, 192)
    conv = p["conv_0"]
    assert conv.type == "convolutional"
    assert conv.params["filters"] == 32
    assert conv.params["size"] == 3
    assert conv.array("weights") is not None
    assert conv.arrays[-1].shape == (32, 3, 3, 3)


def test_comment_lines_are_ignored() -> None:
    text = "# model\n; another\n[net]\n# w\nwidth=8\n;width=99\nheight=8\nchannels=3\n"
    text += "[conv]\n  # filters=9\n  ; filters=9\nfilters=2\n"
    p = plan(text)
    assert p.net.width == 8
    assert p[0].params["filters"] == 2
    assert p.total_floats == 2 + 2 * 3


def test_inline_garbage_is_cut_by_atoi() -> None:
    text = NET + "[conv]\nfilters=40#32\n[conv]\nfilters=4 # was 8\n"
    text += "[route]\nlayers = -1, 0 ###S4\n"
    p = plan(text)
    assert p[0].params["filters"] == 40
    assert p[1].params["filters"] == 4
    assert p[2].params["layers"] == (1, 0)
    assert p[2].out_shape == (44, 8, 8)


def test_atoi_reads_numbers_behind_thousands_of_leading_zeros() -> None:
    # C's atoi reads "000…08" as 8 however many zeros lead; Python's int() refuses strings of
    # more than 4,300 digits, which must not turn a valid cfg into a crash.
    from dwf.format.cfg import atoi, int_list

    zeros = "0" * 5000
    assert atoi(zeros + "8") == 8
    assert atoi("-" + zeros + "8") == -8
    assert atoi("+" + zeros + "8x") == 8
    assert atoi(" " + zeros + "8#c") == 8
    assert atoi(zeros + "99999999999") is None  # still out of range
    assert int_list(f"-1,{zeros}0") == [-1, 0]
    p = plan(NET + f"[conv]\nfilters={zeros}8\nsize=1\n[route]\nlayers=-{zeros}1\n")
    assert p[0].params["filters"] == 8
    assert p[1].params["layers"] == (0,)


def test_long_unknown_section_names_are_not_kept_after_planning() -> None:
    # A hostile cfg's megabyte-long section names must not stay pinned in a cache once their
    # plans are gone (the same rule as atoi's table: only short strings are remembered).
    import gc
    import tracemalloc

    from dwf.format import planner

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for letter in "abcde":
            name = letter * 1_000_000
            p = planner.plan_uncached(NET + f"[conv]\nfilters=2\n[{name}]\n", dialect="alexeyab")
            assert p[1].name == f"{name}_1" and not p[1].known
            del p, name
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept:,} bytes still held after planning"


def test_float_for_int_option_truncates() -> None:
    p = plan(NET + "[conv]\nfilters=2\nsize=3.5\n")
    assert p[0].params["size"] == 3
    assert p[0].array("weights") is not None
    assert p[0].arrays[-1].shape == (2, 3, 3, 3)


def test_first_duplicate_key_wins() -> None:
    p = plan(NET + "[conv]\nfilters=5\nfilters=7\nsize=1\nsize=3\n")
    assert (p[0].params["filters"], p[0].params["size"]) == (5, 1)


def test_key_without_equals_is_absent_and_shadows_later_duplicates() -> None:
    # Darknet stores "filters" with a NULL value; the lookup finds it first and sees "absent".
    p = plan(NET + "[conv]\nfilters\nfilters=7\nstride\n")
    assert p[0].params["filters"] == 1
    assert p[0].params["stride_x"] == 1
    # Darknet says nothing about the lines without "=" (the lookups find them), and "Unused
    # field" about the second filters; dwf says all three (tests/test_options.py)
    assert [w.split(": ", 2)[0] for w in p.warnings] == ["line 6", "line 7", "line 8"]
    assert "'filters' has no '=value'" in p.warnings[0]
    assert "filters is given again (first on line 6)" in p.warnings[1]


def test_key_with_empty_value_is_skipped_with_a_warning() -> None:
    text = NET + "[conv]\nfilters=2\nbatch_normalize=\nbatch_normalize=1\n"
    p = plan(text)
    # The empty line is dropped entirely, so the later duplicate is the one Darknet sees.
    assert p[0].params["batch_normalize"] == 1
    assert [a.name for a in p[0].arrays] == [
        "biases",
        "scales",
        "rolling_mean",
        "rolling_variance",
        "weights",
    ]
    assert len(p.warnings) == 1
    assert p.warnings[0].startswith("line 7:")
    assert "batch_normalize=" in p.warnings[0]


def test_crlf_parses_in_alexeyab() -> None:
    text = (NET + "[conv]\nfilters=4\nsize=3\npad=1\n").replace("\n", "\r\n")
    p = plan(text)
    assert p[0].params["filters"] == 4
    assert p[0].out_shape == (4, 8, 8)
    assert p.total_floats == 4 + 4 * 3 * 9


def test_crlf_fails_in_pjreddie_naming_carriage_return() -> None:
    text = (NET + "[conv]\nfilters=4\n").replace("\n", "\r\n")
    err = cfg_error(text, "pjreddie")
    assert err.line == 1
    assert "carriage return" in str(err)


def test_utf8_bom_is_reported() -> None:
    err = cfg_error("\ufeff" + NET + "[conv]\n")
    assert err.line == 1
    assert "BOM" in str(err)


def test_option_before_first_section_names_its_line() -> None:
    err = cfg_error("# header\n\nwidth=8\n" + NET + "[conv]\n")
    assert err.line == 3
    assert "<cfg text>:3:" in str(err)
    assert "width=8" in str(err)


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n; and another\n"])
def test_text_without_sections_is_an_error(text: str) -> None:
    err = cfg_error(text)
    assert err.line is None
    assert "[net]" in str(err)


def test_first_section_must_be_net() -> None:
    err = cfg_error("\n[convolutional]\nfilters=1\n[net]\nwidth=8\n")
    assert err.line == 2
    assert "[convolutional]" in str(err)


def test_network_section_is_accepted() -> None:
    p = plan(NET.replace("[net]", "[network]") + "[conv]\nfilters=2\n")
    assert p.net == dwf.NetInput(8, 8, 3, 192)
    assert p.total_floats == 8


def test_net_without_layers_is_an_error() -> None:
    assert cfg_error(NET).line == 1


def test_section_names_are_case_sensitive_and_whole_line() -> None:
    p = plan(NET + "[Convolutional]\n[route]\nlayers=-1\n")
    assert p[0].known is False
    assert p[0].type == "Convolutional"
    p = plan(NET + "[conv]x\n")
    assert p[0].known is False


# -- section aliases (spec §3) -----------------------------------------------------------------

ALIASES_AB = [
    ("[conv]", "convolutional", "conv_0"),
    ("[conn]", "connected", "connected_0"),
    ("[max]", "maxpool", "maxpool_0"),
    ("[avg]", "avgpool", "avgpool_0"),
    ("[soft]", "softmax", "softmax_0"),
    ("[local_avg]", "local_avgpool", "local_avgpool_0"),
    ("[lrn]", "normalization", "normalization_0"),
    ("[silence]", "empty", "empty_0"),
]


@pytest.mark.parametrize(("header", "type_", "name"), ALIASES_AB)
def test_section_aliases_alexeyab(header: str, type_: str, name: str) -> None:
    p = plan(NET + header + "\n")
    assert (p[0].type, p[0].name, p[0].known) == (type_, name, True)
    # A one-layer net whose output is 1×1 gets only the warning that AlexeyAB crashes on it.
    assert not [w for w in p.warnings if "no layer is wider and taller than 1" not in w]


def test_aliases_that_only_pjreddie_knows() -> None:
    text = NET + "[deconv]\nfilters=2\nsize=2\nstride=2\n"
    p = plan(text, "pjreddie")
    assert (p[0].type, p[0].name) == ("deconvolutional", "deconv_0")
    assert p[0].out_shape == (2, 16, 16)
    assert [(a.name, a.shape) for a in p[0].arrays] == [("biases", (2,)), ("weights", (3, 2, 2, 2))]
    ab = plan(text)
    assert ab[0].known is False and ab.total_floats == 0
    assert any("[deconv]" in w for w in ab.warnings)


@pytest.mark.parametrize("header", ["[local_avg]", "[silence]", "[conv_lstm]", "[implicit]"])
def test_alexeyab_only_sections_are_unknown_in_pjreddie(header: str) -> None:
    p = plan(NET + header + "\n", "pjreddie")
    assert p[0].known is False
    assert p[0].arrays == ()


# -- layer references (spec §5) ----------------------------------------------------------------

REFS = NET + "[conv]\nfilters=4\n[conv]\nfilters=2\n"


def test_trailing_comma_in_layers_means_absolute_layer_zero() -> None:
    p = plan(REFS + "[route]\nlayers=-1,\n")
    assert p[2].params["layers"] == (1, 0)
    assert p[2].out_shape == (6, 8, 8)
    assert p[2].outputs == 6 * 64


@pytest.mark.parametrize("layers", ["-1, -2", "1, 0", "-1,0", "1,-2"])
def test_relative_and_absolute_references_mix(layers: str) -> None:
    p = plan(REFS + f"[route]\nlayers={layers}\n")
    assert p[2].params["layers"] == (1, 0)
    assert p[2].out_c == 6


@pytest.mark.parametrize(("layers", "shown"), [("5", "5"), ("-3", "-3"), ("-1, 7", "7")])
def test_out_of_range_reference_names_line_and_layer(layers: str, shown: str) -> None:
    err = cfg_error(REFS + f"[route]\nlayers={layers}\n")
    assert err.line == 10
    message = str(err)
    assert "<cfg text>:10:" in message
    assert "layer 2 (route_2, route)" in message
    assert f"refers to layer {shown}" in message


def test_forward_reference_is_a_warning() -> None:
    p = plan(REFS + "[shortcut]\nfrom=3\n[conv]\nfilters=1\n")
    assert p[2].params["from"] == (3,)
    assert p[2].out_shape == (2, 8, 8)
    assert len(p.warnings) == 1
    assert p.warnings[0].startswith("line 10:")
    assert "not built yet" in p.warnings[0]


def test_unknown_section_keeps_its_index_and_stores_nothing() -> None:
    text = NET + "[conv]\nfilters=4\n[foo]\nfilters=9\n[route]\nlayers=0\n[conv]\nfilters=2\n"
    p = plan(text)
    assert p.names() == ["conv_0", "foo_1", "route_2", "conv_3"]
    foo = p["foo_1"]
    assert (foo.known, foo.type, foo.arrays, foo.out_shape, foo.outputs) == (
        False,
        "foo",
        (),
        (0, 0, 0),
        0,
    )
    assert foo.offset == p[0].stop == 16
    assert p[3].offset == 16
    assert p[3].arrays[-1].shape == (2, 4, 1, 1)
    assert len(p.warnings) == 1
    assert "line 7" in p.warnings[0] and "[foo]" in p.warnings[0]


# -- numbers that do not make a network --------------------------------------------------------


def test_filters_that_do_not_fit_an_int() -> None:
    err = cfg_error(NET + "[conv]\nfilters=99999999999\n")
    assert err.line == 6
    assert "filters=99999999999" in str(err)


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("[conv]\nfilters=2\nstride=0\n", 7),
        ("[maxpool]\nstride=0\n", 6),
        ("[upsample]\nstride=0\n", 6),
    ],
)
def test_stride_zero_is_an_error(section: str, line: int) -> None:
    err = cfg_error(NET + section)
    assert err.line == line
    assert "stride" in str(err)


def test_yolo_with_wrong_channels_says_which_filters_fit() -> None:
    text = NET + "[conv]\nfilters=18\n[yolo]\nmask=0,1\nclasses=80\nnum=9\n"
    err = cfg_error(text)
    assert err.line == 7
    assert "filters=170" in str(err)
    # and the corrected cfg plans
    p = plan(text.replace("filters=18", "filters=170"))
    assert p[1].out_shape == (170, 8, 8)


# -- names and lookups -------------------------------------------------------------------------

NAMED = (
    NET
    + "[conv]\nfilters=10\n"  # 0
    + "[Gaussian_yolo]\nmask=0\nclasses=1\n"  # 1
    + "[local_avg]\n"  # 2
    + "[conv]\nfilters=2\n"  # 3
    + "[avgpool]\n"  # 4
    + "[connected]\noutput=3\n"  # 5
)


def test_layer_names() -> None:
    p = plan(NAMED)
    assert p.names() == [
        "conv_0",
        "gaussian_yolo_1",
        "local_avgpool_2",
        "conv_3",
        "avgpool_4",
        "connected_5",
    ]
    assert p[1].type == "Gaussian_yolo"
    pj = plan(NET + "[conv]\n[conv]\n[conv]\n[deconv]\n", "pjreddie")
    assert pj[3].name == "deconv_3"


def test_layer_lookup_by_name_index_and_negative_index() -> None:
    p = plan(NAMED)
    assert p.layer("conv_3") is p["conv_3"] is p[3] is p[-3] is p.layer(3)
    assert p[-1] is p["connected_5"]
    assert p[-1].arrays[-1].shape == (3, 2)
    assert len(p) == 6


@pytest.mark.parametrize(
    ("key", "suggested"), [("conv3", "conv_3"), ("conection_5", "connected_5")]
)
def test_missing_layer_suggests_similar_names(key: str, suggested: str) -> None:
    p = plan(NAMED)
    with pytest.raises(dwf.LayerNotFoundError) as info:
        p[key]
    err = info.value
    assert err.key == key
    assert suggested in err.suggestions
    assert suggested in str(err)
    assert isinstance(err, KeyError)


@pytest.mark.parametrize("key", [6, -7, 100])
def test_index_out_of_range(key: int) -> None:
    with pytest.raises(dwf.LayerNotFoundError) as info:
        plan(NAMED)[key]
    assert info.value.key == key
    assert "0..5" in str(info.value)


@pytest.mark.parametrize("key", [True, 1.0, None])
def test_lookup_with_a_wrong_type(key: object) -> None:
    with pytest.raises(dwf.LayerNotFoundError):
        plan(NAMED).layer(key)  # type: ignore[arg-type]


# -- every CfgError is located -----------------------------------------------------------------

LOCATED = [
    ("width=8\n" + NET + "[conv]\n", 1),
    ("[conv]\n" + NET, 1),
    (NET + "[conv]\nfilters=99999999999\n", 6),
    (NET + "[conv]\nfilters=2\n[route]\nlayers=9\n", 8),
    (NET + "[conv]\nfilters=2\n\n[yolo]\nclasses=3\n", 8),
    (NET + "[conv]\n[shortcut]\nfrom=-1\nweights_type=bogus\n", 8),
    (NET.replace("\n", "\r\n") + "[conv]\r\n", 1),
    ("[net]\nwidth=-4\nheight=8\nchannels=3\n[conv]\n", 2),
]


@pytest.mark.parametrize(("text", "line"), LOCATED)
def test_cfg_errors_carry_path_and_line(tmp_path: Path, text: str, line: int) -> None:
    cfg = tmp_path / "model.cfg"
    cfg.write_bytes(text.encode())
    with pytest.raises(dwf.CfgError) as info:
        dwf.plan(cfg, dialect="pjreddie" if "\r" in text else "alexeyab")
    err = info.value
    assert err.path == str(cfg)
    assert err.line == line
    assert str(err).startswith(f"{cfg}:{line}: ")
    # The same text given directly names "<cfg text>" instead of a file.
    with pytest.raises(dwf.CfgError) as direct:
        dwf.Plan.from_text(text, dialect="pjreddie" if "\r" in text else "alexeyab")
    assert direct.value.path is None
    assert str(direct.value).startswith(f"<cfg text>:{line}: ")


def test_plan_of_a_file_records_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(NET + "[conv]\nfilters=2\n")
    p = dwf.plan(cfg)
    assert p.cfg_path == str(cfg)
    with pytest.raises(dwf.LayerNotFoundError) as info:
        p["conv_9"]
    assert str(cfg) in str(info.value)
