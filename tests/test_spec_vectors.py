"""Spec §11: the synthetic test vectors, written out as cfgs from the spec's prose.

Each vector's numbers were recorded from instrumented Darknet builds (20-byte header). The cfgs
here are the project's own transcription of the prose; options the prose does not mention
(activation, …) are set to something arbitrary because they do not change shapes. "@N" in the
spec is a byte offset in a file with a 20-byte header, i.e. ``20 + 4 * float_offset``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import dwf
from dwf import Plan

HEADER = 20


def _cfg(net: str, *sections: str) -> str:
    return "\n\n".join(
        ["[net]\nbatch=1\nsubdivisions=1\n" + net.strip(), *map(str.strip, sections)]
    )


def _at(plan: Plan, index: int) -> int:
    """Byte offset of layer ``index``'s data in a file with a 20-byte header."""
    return plan.layers[index].byte_span(HEADER)[0]


def _check_contiguous(plan: Plan) -> None:
    """Every array starts where the previous one ends (no gaps, no overlaps)."""
    cursor = 0
    for _, a in plan.arrays():
        assert a.offset == cursor, f"{a.name} at {a.offset}, expected {cursor}"
        cursor = a.stop
    assert cursor == plan.total_floats


def _outs(plan: Plan) -> list[tuple[int, int, int]]:
    """``(out_w, out_h, out_c)`` of every layer."""
    return [(lp.out_w, lp.out_h, lp.out_c) for lp in plan.layers]


def _floats(plan: Plan) -> list[int]:
    return [lp.count for lp in plan.layers]


def _sub(plan: Plan, index: int) -> dict[str, int]:
    return {a.name: a.count for a in plan.layers[index].arrays}


# --------------------------------------------------------------------------------------------
# A. AlexeyAB aa.cfg
# --------------------------------------------------------------------------------------------

AA_CFG = _cfg(
    "width=64\nheight=64\nchannels=3",
    "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=2\npad=1\nantialiasing=1\n"
    "activation=leaky",
    "[maxpool]\nsize=2\nstride=2\nantialiasing=1",
    "[convolutional]\nfilters=8\nsize=3\nstride_x=2\nstride_y=1\npad=1\nactivation=leaky",
    "[route]\nlayers=0",
    "[convolutional]\nfilters=4\nsize=1\nactivation=linear",
)


def test_a_antialiasing_shapes() -> None:
    p = Plan.from_text(AA_CFG, dialect="alexeyab")
    assert len(p) == 5
    assert _outs(p) == [(64, 64, 16), (32, 32, 16), (8, 16, 8), (64, 64, 16), (64, 64, 4)]
    # The antialiased layers record stride-1 dims, but the next layer gets the blurred ones.
    assert (p[1].in_w, p[1].in_h, p[1].in_c) == (32, 32, 16)
    assert (p[2].in_w, p[2].in_h, p[2].in_c) == (16, 16, 16)
    # The route to layer 0 sees layer 0's recorded (stride-1) dims.
    assert p[3].outputs == 64 * 64 * 16
    assert (p[4].in_w, p[4].in_h, p[4].in_c) == (64, 64, 16)


def test_a_antialiasing_offsets() -> None:
    p = Plan.from_text(AA_CFG, dialect="alexeyab")
    assert _floats(p) == [496, 0, 1160, 0, 68]
    assert (_at(p, 0), _at(p, 2), _at(p, 4)) == (20, 2004, 6644)
    assert p.expected_size(HEADER) == 6916
    # The blur kernel is not stored: layer 0 is a plain conv block.
    assert _sub(p, 0) == {
        "biases": 16,
        "scales": 16,
        "rolling_mean": 16,
        "rolling_variance": 16,
        "weights": 432,
    }
    assert p[0].array("weights").shape == (16, 3, 3, 3)  # type: ignore[union-attr]
    _check_contiguous(p)


# --------------------------------------------------------------------------------------------
# B. AlexeyAB misc.cfg
# --------------------------------------------------------------------------------------------

MISC_CFG = _cfg(
    "width=32\nheight=32\nchannels=6",
    # L0
    "[convolutional]\nbatch_normalize=1\nfilters=12\nsize=3\npad=1\ngroups=3\nxnor=1\n"
    "activation=leaky",
    # L1
    "[convolutional]\nbatch_normalize=1\nfilters=12\nsize=3\npad=1\ngroups=3\ndilation=2\n"
    "activation=leaky",
    # L2
    "[maxpool]\nmaxpool_depth=1\nout_channels=5\nstride=2\nsize=2",
    # L3
    "[upsample]\nstride=-2",
    # L4, L5
    "[convolutional]\nfilters=10\nsize=3\npad=1\nactivation=leaky",
    "[convolutional]\nfilters=10\nsize=3\npad=1\nactivation=leaky",
    # L6, L7
    "[shortcut]\nfrom=-2\nweights_type=per_channel\nweights_normalization=relu\nactivation=linear",
    "[shortcut]\nfrom=-2,-3\nweights_type=per_feature\nweights_normalization=softmax\n"
    "activation=linear",
    # L8
    "[implicit]\nfilters=7\natoms=2",
    # L9
    "[route]\nlayers=-3\ngroups=2\ngroup_id=1",
    # L10
    "[batchnorm]",
    # L11
    "[local]\nfilters=3\nsize=3\nstride=2\npad=1\nactivation=leaky",
    # L12
    "[connected]\noutput=11\nbatch_normalize=1\nactivation=leaky",
    # L13, L14
    "[gru]\noutput=9",
    "[lstm]\noutput=5",
    # L15
    "[rnn]\noutput=4\nhidden=6\nbatch_normalize=1\nactivation=leaky",
)


def test_b_misc_shapes() -> None:
    p = Plan.from_text(MISC_CFG, dialect="alexeyab")
    assert len(p) == 16
    assert _outs(p) == [
        (32, 32, 12),
        (32, 32, 12),
        (32, 32, 5),
        (16, 16, 5),
        (16, 16, 10),
        (16, 16, 10),
        (16, 16, 10),
        (16, 16, 10),
        (1, 2, 7),
        (16, 16, 5),
        (16, 16, 5),
        (8, 8, 3),
        (1, 1, 11),
        (0, 0, 0),
        (1, 1, 5),
        (1, 1, 4),
    ]
    assert p[13].outputs == 9
    assert p[12].inputs == 8 * 8 * 3


def test_b_misc_offsets() -> None:
    p = Plan.from_text(MISC_CFG, dialect="alexeyab")
    assert _floats(p) == [696, 480, 0, 0, 460, 910, 20, 3, 14, 0, 20, 8832, 2156, 594, 320, 154]
    stored = {
        0: 20,
        1: 2804,
        4: 4724,
        5: 6564,
        6: 10204,
        7: 10284,
        8: 10296,
        10: 10352,
        11: 10432,
        12: 45760,
        13: 54384,
        14: 56760,
        15: 58040,
    }
    assert {i: _at(p, i) for i in stored} == stored
    assert p.expected_size(HEADER) == 58656
    _check_contiguous(p)


def test_b_misc_array_details() -> None:
    p = Plan.from_text(MISC_CFG, dialect="alexeyab")
    # xnor resets groups to 1 (AlexeyAB): 6*12*9 weights, not 2*12*9.
    assert _sub(p, 0)["weights"] == 648
    # Dilation does not change stored sizes; groups=3 is kept without xnor.
    assert _sub(p, 1)["weights"] == 432
    assert p[6].array("weights").shape == (2, 10)  # type: ignore[union-attr]
    assert p[7].array("weights").shape == (3,)  # type: ignore[union-attr]
    # local: biases 192 then weights 8640.
    assert [(a.name, a.count) for a in p[11].arrays] == [("biases", 192), ("weights", 8640)]
    # connected: b 11, W 2112, BN 33 (BN after the weights).
    assert [(a.name, a.count) for a in p[12].arrays] == [
        ("biases", 11),
        ("weights", 2112),
        ("scales", 11),
        ("rolling_mean", 11),
        ("rolling_variance", 11),
    ]
    # gru: input_z/r/h W 99 each, then state_z/r/h W 81 each.
    w = [a.count for a in p[13].arrays if a.name.endswith("weights")]
    assert w == [99, 99, 99, 81, 81, 81]
    names = [a.name.split(".")[0] for a in p[13].arrays if a.name.endswith("weights")]
    assert names == [
        "input_z_layer",
        "input_r_layer",
        "input_h_layer",
        "state_z_layer",
        "state_r_layer",
        "state_h_layer",
    ]


# --------------------------------------------------------------------------------------------
# C. AlexeyAB convlstm.cfg
# --------------------------------------------------------------------------------------------

CONVLSTM_CFG = _cfg(
    "width=16\nheight=16\nchannels=3",
    # L0
    "[conv_lstm]\noutput=8\nsize=3\npad=1\npeephole=1\nbatch_normalize=1",
    # L1
    "[conv_lstm]\noutput=6\nsize=3\npad=0\nbottleneck=1",
    # L2
    "[crnn]\noutput=5\nhidden=7\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky",
    # L3
    "[history]\nhistory_size=3",
    # L4 .. L8
    "[convolutional]\nfilters=4\nsize=1\nactivation=leaky",
    "[convolutional]\nfilters=4\nsize=1\nactivation=leaky",
    "[convolutional]\nfilters=4\nsize=1\nshare_index=-1\nactivation=leaky",
    "[convolutional]\nfilters=4\nsize=1\nbatch_normalize=1\ndontloadscales=1\nactivation=leaky",
    "[convolutional]\nfilters=4\nsize=1\ndontload=1\nactivation=leaky",
    # L9 .. L14
    "[reorg3d]\nstride=2",
    "[reorg]\nstride=2\nreverse=1",
    "[local_avgpool]\nsize=2\nstride=2",
    "[empty]",
    "[activation]\nactivation=linear",
    "[crop]\ncrop_height=3\ncrop_width=3",
)


def test_c_convlstm_shapes() -> None:
    for side in ("load", "save"):
        p = Plan.from_text(CONVLSTM_CFG, dialect="alexeyab", side=side)
        assert len(p) == 15
        assert _outs(p) == [
            (16, 16, 8),
            (14, 14, 6),
            (14, 14, 5),
            (14, 14, 15),
            *[(14, 14, 4)] * 5,
            (7, 7, 16),
            (14, 14, 4),
            (7, 7, 4),
            (7, 7, 4),
            (7, 7, 4),
            (3, 3, 4),
        ], side


def test_c_convlstm_written_floats() -> None:
    p = Plan.from_text(CONVLSTM_CFG, dialect="alexeyab", side="save")
    assert _floats(p) == [5248, 2406, 1210, 0, 64, 20, 0, 32, 20, 0, 0, 0, 0, 0, 0]
    assert (_at(p, 0), _at(p, 1), _at(p, 2)) == (20, 21012, 30636)
    assert p.expected_size(HEADER) == 36020
    _check_contiguous(p)


def test_c_convlstm_blocks() -> None:
    p = Plan.from_text(CONVLSTM_CFG, dialect="alexeyab", side="save")
    blocks0: dict[str, int] = {}
    for a in p[0].arrays:
        prefix = a.name.split(".")[0]
        blocks0[prefix] = blocks0.get(prefix, 0) + a.count
    # File order: vf, vi, vo, wf, wi, wg, wo (8+24+576 each), then uf..uo (8+24+216 each).
    assert list(blocks0) == ["vf", "vi", "vo", "wf", "wi", "wg", "wo", "uf", "ui", "ug", "uo"]
    assert [blocks0[k] for k in blocks0] == [608] * 7 + [248] * 4
    blocks1: dict[str, int] = {}
    for a in p[1].arrays:
        prefix = a.name.split(".")[0]
        blocks1[prefix] = blocks1.get(prefix, 0) + a.count
    # Bottleneck: wf reads 2F channels (6 + 648); uf..uo 6 + 432 each; no wi/wg/wo.
    assert blocks1 == {"wf": 654, "uf": 438, "ui": 438, "ug": 438, "uo": 438}


def test_c_convlstm_loader_reads_128_bytes_less() -> None:
    writer = Plan.from_text(CONVLSTM_CFG, dialect="alexeyab", side="save")
    reader = Plan.from_text(CONVLSTM_CFG, dialect="alexeyab", side="load")
    assert writer.total_floats - reader.total_floats == 32  # 128 bytes
    assert reader.expected_size(HEADER) == 36020 - 128
    # L7: dontloadscales skips the 12 BN floats; L8: dontload reads nothing.
    assert (reader[7].count, reader[8].count) == (20, 0)
    assert [a.name for a in reader[7].arrays] == ["biases", "weights"]
    # Same layout up to L7, then misaligned.
    assert [lp.offset for lp in reader.layers[:8]] == [lp.offset for lp in writer.layers[:8]]
    assert reader[9].offset != writer[9].offset


# --------------------------------------------------------------------------------------------
# D. pjreddie pj2.cfg
# --------------------------------------------------------------------------------------------

# The prose says "L10 rnn 4 (no hidden)" without batch_normalize; the stated file size
# (55,256 bytes) only adds up with batch_normalize=1 on that rnn (3 BN arrays × 3 blocks × 4 =
# 36 floats), as in vector B's rnn, so the cfg sets it. (The other way to reach 55,256 — writing
# the dontsave layer's 36 floats — contradicts the spec's "writes 0" for L4.)
PJ2_CFG = _cfg(
    "width=16\nheight=16\nchannels=6",
    # L0
    "[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\ngroups=3\nxnor=1\n"
    "activation=leaky",
    # L1
    "[batchnorm]",
    # L2
    "[crnn]\noutput_filters=5\nhidden_filters=7\nbatch_normalize=1\nactivation=leaky",
    # L3
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=1\nnumload=3\nactivation=leaky",
    # L4
    "[convolutional]\nfilters=4\nsize=1\ndontsave=1\nactivation=leaky",
    # L5, L6
    "[reorg]\nstride=2",
    "[reorg]\nextra=5",
    # L7
    "[connected]\noutput=11\nbatch_normalize=1\nactivation=leaky",
    # L8, L9, L10
    "[gru]\noutput=9",
    "[lstm]\noutput=5",
    "[rnn]\noutput=4\nbatch_normalize=1\nactivation=leaky",
)


def test_d_pj2_writer() -> None:
    p = Plan.from_text(PJ2_CFG, dialect="pjreddie", side="save")
    assert len(p) == 11
    header = dwf.Header(0, 2, 0, size=20)
    assert header.width_for("pjreddie") == 20
    assert p.expected_size(header.size) == 55256
    f = _floats(p)
    assert f[0] == 132 and _sub(p, 0)["weights"] == 108  # pjreddie keeps groups with xnor
    assert f[1] == 18 and list(_sub(p, 1)) == ["scales", "rolling_mean", "rolling_variance"]
    assert f[2] == 1210
    assert f[3] == 72  # numload: the writer writes all 8 filters
    assert f[4] == 0  # dontsave
    assert f[5] == f[6] == 0
    assert f[7] == 11 + 11 * 1029 + 33
    assert f[8:] == [594, 320, 64 + 36]  # gru, lstm, rnn (with its 3 × 12 BN floats)
    assert p.total_floats == 13809
    _check_contiguous(p)


def test_d_pj2_reader() -> None:
    writer = Plan.from_text(PJ2_CFG, dialect="pjreddie", side="save")
    p = Plan.from_text(PJ2_CFG, dialect="pjreddie", side="load")
    assert p[3].count == 27  # numload=3: 3 + 9 + 15
    assert _sub(p, 3)["weights"] == 3 * 5
    assert p[4].count == 36  # dontsave layers are still read
    assert p.total_floats == writer.total_floats - 72 + 27 + 36


def test_d_pj2_shapes() -> None:
    p = Plan.from_text(PJ2_CFG, dialect="pjreddie", side="load")
    assert (p[2].out_w, p[2].out_h, p[2].out_c) == (16, 16, 5)  # pjreddie crnn: always h×w
    assert (p[5].out_w, p[5].out_h, p[5].out_c) == (8, 8, 16)
    assert (p[6].out_w, p[6].out_h, p[6].out_c, p[6].outputs) == (0, 0, 0, 1029)
    assert p[7].inputs == 1029
    # gru: wz/wr/wh (81 W each) first, then uz/ur/uh (99 each).
    gru = [(a.name, a.count) for a in p[8].arrays if a.name.endswith("weights")]
    assert gru == [
        ("wz.weights", 81),
        ("wr.weights", 81),
        ("wh.weights", 81),
        ("uz.weights", 99),
        ("ur.weights", 99),
        ("uh.weights", 99),
    ]
    lstm = [a.name.split(".")[0] for a in p[9].arrays if a.name.endswith("weights")]
    assert lstm == ["wi", "wf", "wo", "wg", "ui", "uf", "uo", "ug"]
    # rnn without hidden: input(5→4), self(4→4), output(4→4).
    rnn = [a.count for a in p[10].arrays if a.name.endswith("weights")]
    assert rnn == [20, 16, 16]


# --------------------------------------------------------------------------------------------
# E. Unknown section
# --------------------------------------------------------------------------------------------

UNKNOWN_CFG = _cfg(
    "width=8\nheight=8\nchannels=3",
    "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky",
    "[foo]\nbar=1",
    "[route]\nlayers=-2",
    "[convolutional]\nfilters=5\nsize=1\nactivation=leaky",
)


def test_e_unknown_section_alexeyab() -> None:
    p = Plan.from_text(UNKNOWN_CFG, dialect="alexeyab")
    assert len(p) == 4  # the unknown section keeps its index
    assert p[1].type == "foo" and not p[1].known and p[1].count == 0
    assert p[1].out_shape == (0, 0, 0)
    assert (p[2].out_c, p[2].out_h, p[2].out_w) == (4, 8, 8)  # the route past it works
    assert p[3].arrays[0].offset == p[0].stop == 4 + 4 * 3 * 9
    assert p.total_floats == 112 + 5 + 5 * 4
    assert any("foo" in w for w in p.warnings)


def test_e_unknown_section_pjreddie_warns_about_crash() -> None:
    p = Plan.from_text(UNKNOWN_CFG, dialect="pjreddie")
    assert len(p) == 4 and p[1].count == 0
    assert any("SIGFPE" in w for w in p.warnings)


# --------------------------------------------------------------------------------------------
# F. Old header
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["alexeyab", "pjreddie"])
def test_f_old_header_loads_identically(tmp_path: Path, dialect: str) -> None:
    text = _cfg(
        "width=8\nheight=8\nchannels=3",
        "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky",
        "[maxpool]\nsize=2\nstride=2",
        "[connected]\noutput=6\nactivation=linear",
    )
    p = Plan.from_text(text, dialect=dialect)
    rng = np.random.default_rng(7)
    arrays = {
        f"{lp.name}.{a.name}": rng.standard_normal(a.shape).astype("<f4") for lp, a in p.arrays()
    }
    new, old = tmp_path / "new.weights", tmp_path / "old.weights"
    dwf.save(new, p, arrays, header=dwf.Header(0, 2, 5, seen=1234, size=20))
    # Rewrite as (0,1,0) + uint32 seen: a 16-byte header, same body.
    body = new.read_bytes()[20:]
    old.write_bytes(struct.pack("<iiiI", 0, 1, 0, 1234) + body)
    with dwf.open(new, p, dialect=dialect) as a, dwf.open(old, p, dialect=dialect) as b:
        assert (a.header.size, b.header.size) == (20, 16)
        assert a.header.seen == b.header.seen == 1234
        assert b.header.note is None  # the version rule gives 16 for 0.1.0: nothing to fix
        got_a = dict(a.arrays())
        got_b = dict(b.arrays())
        assert list(got_a) == list(got_b) == list(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(got_a[k], v)
            np.testing.assert_array_equal(got_b[k], v)
