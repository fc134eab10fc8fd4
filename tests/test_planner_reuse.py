"""The planner computes each distinct (section, input shape) once per plan and reuses the result
(dwf/format/planner.py); these check that reuse never changes what a plan says."""

from __future__ import annotations

import dwf

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"
CONV = "[convolutional]\nfilters={f}\nsize=3\nstride=1\npad=1\ngroups={g}\nactivation=leaky\n"


def test_repeated_section_warns_at_every_layer() -> None:
    # groups=2 does not divide 3 input channels: each such layer warns, with its own line
    text = NET + CONV.format(f=3, g=2) + CONV.format(f=3, g=2) + CONV.format(f=3, g=2)
    p = dwf.Plan.from_text(text)
    warned = [w for w in p.warnings if "groups=2 does not divide" in w]
    assert len(warned) == 3
    assert {w.split(":")[0] for w in warned} == {"line 10", "line 17", "line 24"}


def test_same_section_on_different_inputs_differs() -> None:
    text = NET + CONV.format(f=8, g=1) + CONV.format(f=16, g=1) + CONV.format(f=16, g=1)
    p = dwf.Plan.from_text(text)
    # conv_1 sees 8 channels, conv_2 (same text) sees 16: different weights
    assert p["conv_1"].array("weights").shape == (16, 8, 3, 3)  # type: ignore[union-attr]
    assert p["conv_2"].array("weights").shape == (16, 16, 3, 3)  # type: ignore[union-attr]
    assert p["conv_2"].offset == p["conv_1"].stop


def test_same_route_text_refers_to_different_layers() -> None:
    text = (
        NET
        + CONV.format(f=4, g=1)
        + CONV.format(f=6, g=1)
        + "[route]\nlayers=-2\n"
        + CONV.format(f=6, g=1)
        + CONV.format(f=6, g=1)
        + "[route]\nlayers=-2\n"
    )
    p = dwf.Plan.from_text(text)
    # both routes receive 6×32×32 and read "layers=-2": layer 0 (4 channels), layer 3 (6)
    assert p["route_2"].in_c == p["route_5"].in_c == 6
    assert p["route_2"].out_c == 4
    assert p["route_5"].out_c == 6


def test_repeated_layers_get_their_own_offsets_and_dontload() -> None:
    text = (
        NET
        + CONV.format(f=4, g=1)
        + CONV.format(f=4, g=1).replace("[convolutional]\n", "[convolutional]\ndontload=1\n")
        + CONV.format(f=4, g=1)
        + CONV.format(f=4, g=1)
    )
    p = dwf.Plan.from_text(text)
    assert p["conv_1"].arrays == () and p["conv_1"].params["dontload"] == 1
    assert p["conv_2"].arrays and p["conv_3"].arrays
    assert p["conv_2"].offset == p["conv_0"].stop  # dontload moved nothing
    assert p["conv_3"].arrays[0].offset == p["conv_2"].stop
    assert p["conv_2"].params == p["conv_3"].params and "dontload" not in p["conv_3"].params
    assert p.total_floats == p["conv_0"].count + 2 * p["conv_3"].count
