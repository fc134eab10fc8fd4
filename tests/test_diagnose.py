"""Mismatch diagnosis: ``SizeMismatchError.diagnosis`` names the right cause first.

Every synthetic case writes a file with ``dwf.save`` from a *different* cfg variant than the one
it is opened with (other classes, batch norm removed or added, the other dialect, …), so the
expected cause is known by construction. Where the diagnosis proposes a fix, the test applies it
and checks that the file then opens cleanly: the fix text must carry the right numbers.
"""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shared_path

import dwf
from dwf.format.diagnosis import Cause, Diagnosis
from dwf.interfaces.cli import main
from dwf.tools.check import check
from dwf.tools.demo import demo_cfg_text

# -- building test files ---------------------------------------------------------------------


def yolo_cfg(
    *,
    classes: int = 2,
    bn: tuple[int, int, int] = (1, 1, 1),
    filters: tuple[int, int, int] = (8, 16, 32),
    batchnorm_layer: bool = False,
    route_groups: bool = False,
) -> str:
    """A tiny YOLO net: conv, maxpool, conv, [batchnorm]?, [route groups]?, conv, head conv, yolo.

    The three trunk convs have distinct filter counts by default, so a batch-norm change on one
    of them is identifiable by size alone.
    """
    f0, f1, f2 = filters
    parts = [
        "[net]\nwidth=32\nheight=32\nchannels=3\n",
        f"[convolutional]\nbatch_normalize={bn[0]}\nfilters={f0}\nsize=3\npad=1\nactivation=leaky\n",
        "[maxpool]\nsize=2\nstride=2\n",
        f"[convolutional]\nbatch_normalize={bn[1]}\nfilters={f1}\nsize=3\npad=1\nactivation=leaky\n",
    ]
    if batchnorm_layer:
        parts.append("[batchnorm]\n")
    if route_groups:
        parts.append("[route]\nlayers=-1\ngroups=2\ngroup_id=1\n")
    parts += [
        f"[convolutional]\nbatch_normalize={bn[2]}\nfilters={f2}\nsize=3\npad=1\nactivation=leaky\n",
        f"[convolutional]\nfilters={3 * (classes + 5)}\nsize=1\npad=1\nactivation=linear\n",
        f"[yolo]\nmask=0,1,2\nanchors=4,6, 8,10, 12,16\nclasses={classes}\nnum=3\n",
    ]
    return "\n".join(parts)


REGION_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters={filters}
size=1
activation=linear

[region]
anchors=1,1, 2,2, 3,3, 4,4, 5,5
classes={classes}
coords=4
num=5
"""


def arrays_for(plan: dwf.Plan, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        f"{lp.name}.{a.name}": (rng.random(a.shape) + 0.5).astype(np.float32)
        for lp, a in plan.arrays()
    }


def write_weights(
    path: Path,
    cfg_text: str,
    *,
    dialect: str = "alexeyab",
    upto: int | None = None,
    header: dwf.Header | None = None,
) -> dwf.Plan:
    plan = dwf.Plan.from_text(cfg_text, dialect=dialect)
    dwf.save(path, plan, arrays_for(plan), upto=upto, header=header)
    return plan


def write_cfg(tmp_path: Path, text: str, name: str = "net.cfg") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def mismatch(weights: Path, cfg: Path, **kw: Any) -> dwf.SizeMismatchError:
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(weights, cfg, **kw)
    err = info.value
    assert isinstance(err.diagnosis, Diagnosis)
    assert err.diagnosis.causes, "a mismatch must come with at least one cause"
    assert all(isinstance(c, Cause) for c in err.diagnosis.causes)
    return err


def first_cause(err: dwf.SizeMismatchError) -> Cause:
    cause: Cause = err.diagnosis.causes[0]
    assert err.diagnosis.cause == cause
    return cause


def opens_cleanly(weights: Path, cfg_text: str, tmp_path: Path, **kw: Any) -> dwf.WeightsFile:
    """Open ``weights`` with ``cfg_text`` strictly: the proposed fix must make them agree."""
    cfg = write_cfg(tmp_path, cfg_text, "fixed.cfg")
    f = dwf.open(weights, cfg, **kw)
    assert f.mismatch is None
    return f


# -- real files ------------------------------------------------------------------------------


def test_real_trial8_is_batch_norm_removed_from_all_six_layers(tmp_path: Path) -> None:
    folder = shared_path("realweights", "yolo-lite-trial8")
    weights = folder / "tiny-yolov2-trial8.weights"
    cfg = folder / "tiny-yolov2-trial8.cfg"
    err = mismatch(weights, cfg)
    cause = first_cause(err)
    assert cause.kind == "batch-normalize"
    assert cause.exact
    for name in ("conv_0", "conv_3", "conv_5", "conv_8", "conv_10", "conv_13"):
        assert re.search(rf"\b{name}\b", cause.summary), name
    assert "all 6" in cause.summary
    assert "1,872 floats" in cause.summary  # INDEX.md: 3 × 624 floats short
    assert cause.fix is not None and "batch_normalize=0" in cause.fix
    assert err.actual_size == 2_289_284 and err.header_size == 16
    assert err.expected_size == 16 + 4 * 574_189
    msg = str(err)
    assert "2,289,284 bytes" in msg and "2,296,772 bytes" in msg
    assert "likely cause:" in msg
    # Applying the fix makes the file fit exactly, and its values are then sane.
    fixed = cfg.read_text().replace("batch_normalize=1", "batch_normalize=0")
    with opens_cleanly(weights, fixed, tmp_path) as f:
        assert f.complete
        assert not check(f).serious


def test_real_truncated_conv29_says_mod_4_and_the_real_size() -> None:
    folder = shared_path("realweights", "firedet-yolov4-tiny-conv29-truncated")
    weights = folder / "yolov4-tiny.conv.29"
    err = mismatch(weights, folder / "yolov4-tiny.cfg")
    cause = first_cause(err)
    assert cause.kind == "truncated"
    assert cause.exact  # a body that is not whole floats proves damage
    msg = str(err)
    assert "% 4 == 1" in msg
    assert "19,789,716 bytes" in msg  # the real yolov4-tiny.conv.29 (layers 0..28)
    assert "173,641 bytes" in msg
    assert err.first_unfilled is not None and err.first_unfilled[1] == "conv_2"


def test_real_partial_conv109_opens_as_partial() -> None:
    folder = shared_path("realweights", "lebhoryi-yolo-fastest-conv109")
    with dwf.open(folder / "yolo-fastest.conv.109", folder / "yolo-fastest.cfg") as f:
        assert f.partial and not f.complete
        assert f.mismatch is None
        assert f.last_layer == 108
        assert f.size == 840_692


# -- classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "filters"),
    [(3, 24), (1, 18), (80, 255)],
    ids=["more-classes", "fewer-classes", "coco"],
)
def test_classes_changed(tmp_path: Path, written: int, filters: int) -> None:
    weights = tmp_path / "net.weights"
    write_weights(weights, yolo_cfg(classes=written))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg(classes=2)))
    cause = first_cause(err)
    assert cause.kind == "classes"
    assert cause.exact
    assert f"trained for {written} classes, the cfg says 2" in cause.summary
    assert cause.fix is not None
    assert f"classes={written}" in cause.fix
    assert f"filters={filters}" in cause.fix
    assert "layer 4" in cause.fix  # the conv feeding the [yolo] head
    # The fix is right: the cfg it describes fits the file exactly.
    opens_cleanly(weights, yolo_cfg(classes=written), tmp_path).close()


def test_classes_changed_in_both_heads_of_the_demo(tmp_path: Path) -> None:
    text = demo_cfg_text()
    assert text.count("classes=2") == 2 and text.count("filters=21") == 2
    five = text.replace("classes=2", "classes=5").replace("filters=21", "filters=30")
    weights = tmp_path / "demo5.weights"
    write_weights(weights, five)
    err = mismatch(weights, write_cfg(tmp_path, text))
    cause = first_cause(err)
    assert cause.kind == "classes"
    assert cause.fix is not None
    assert "classes=5" in cause.fix
    assert "filters=30 in layer 13" in cause.fix and "filters=30 in layer 20" in cause.fix
    opens_cleanly(weights, five, tmp_path).close()


def test_classes_changed_in_a_region_head(tmp_path: Path) -> None:
    # yolo_v2_tiny_1000.weights in spec §1.6: the last conv has 75 instead of 125 filters.
    weights = tmp_path / "region.weights"
    write_weights(weights, REGION_CFG.format(filters=75, classes=10))
    err = mismatch(weights, write_cfg(tmp_path, REGION_CFG.format(filters=125, classes=20)))
    cause = first_cause(err)
    assert cause.kind == "classes"
    assert cause.fix is not None
    assert "classes=10" in cause.fix and "filters=75" in cause.fix
    assert "[region]" in cause.fix
    # 50 filters × (16 inputs + 1 bias) floats short
    assert err.expected_size - err.actual_size == 4 * 50 * 17


# -- batch_normalize -------------------------------------------------------------------------


def test_batch_norm_removed_on_all_layers(tmp_path: Path) -> None:
    weights = tmp_path / "nobn.weights"
    write_weights(weights, yolo_cfg(bn=(0, 0, 0)))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg()))
    cause = first_cause(err)
    assert cause.kind == "batch-normalize"
    assert "without batch norm in all 3 batch_normalize layers" in cause.summary
    assert "conv_0, conv_2, conv_3" in cause.summary
    assert f"({3 * (8 + 16 + 32)} floats)" in cause.summary
    assert cause.fix == "set batch_normalize=0 in all 3 batch_normalize layers"
    opens_cleanly(weights, yolo_cfg(bn=(0, 0, 0)), tmp_path).close()


def test_batch_norm_removed_on_one_layer(tmp_path: Path) -> None:
    weights = tmp_path / "one.weights"
    write_weights(weights, yolo_cfg(bn=(1, 0, 1)))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg()))
    cause = first_cause(err)
    assert cause.kind == "batch-normalize"
    assert "layer 2 (conv_2)" in cause.summary
    assert "conv_0" not in cause.summary and "conv_3" not in cause.summary
    assert cause.fix == "set batch_normalize=0 in layer 2"
    opens_cleanly(weights, yolo_cfg(bn=(1, 0, 1)), tmp_path).close()


def test_batch_norm_added_on_one_layer(tmp_path: Path) -> None:
    weights = tmp_path / "more.weights"
    write_weights(weights, yolo_cfg(bn=(0, 0, 1)))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg(bn=(0, 0, 0))))
    cause = first_cause(err)
    assert cause.kind == "batch-normalize"
    assert "with batch norm in layer 3 (conv_3)" in cause.summary
    assert cause.fix == "set batch_normalize=1 in layer 3"
    assert err.first_unfilled is None  # the file is longer than the cfg
    opens_cleanly(weights, yolo_cfg(bn=(0, 0, 1)), tmp_path).close()


def test_batch_norm_on_one_of_two_equal_layers_names_both(tmp_path: Path) -> None:
    # conv_2 and conv_3 both have 16 filters: the size cannot tell which lost its batch norm,
    # and the diagnosis must not pretend it can.
    same = (8, 16, 16)
    weights = tmp_path / "ambiguous.weights"
    write_weights(weights, yolo_cfg(filters=same, bn=(1, 1, 0)))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg(filters=same)))
    cause = first_cause(err)
    assert cause.kind == "batch-normalize"
    assert "one of layers 2, 3" in cause.summary
    assert "conv_2" in cause.summary and "conv_3" in cause.summary
    assert cause.fix is not None and "cannot tell which" in cause.fix


# -- dialect ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "opened", "text"),
    [
        ("pjreddie", "alexeyab", yolo_cfg(batchnorm_layer=True)),
        ("alexeyab", "pjreddie", yolo_cfg(batchnorm_layer=True)),
        ("pjreddie", "alexeyab", yolo_cfg(route_groups=True)),
    ],
    ids=["batchnorm-3-arrays", "batchnorm-4-arrays", "route-groups"],
)
def test_other_dialect(tmp_path: Path, written: str, opened: str, text: str) -> None:
    weights = tmp_path / "dialect.weights"
    write_weights(weights, text, dialect=written)
    cfg = write_cfg(tmp_path, text)
    err = mismatch(weights, cfg, dialect=opened)
    cause = first_cause(err)
    assert cause.kind == "dialect"
    assert f"read as {written}'s Darknet" in cause.summary
    assert cause.fix == f"open with dialect={written!r}"
    assert err.diagnosis.dialect == opened
    with dwf.open(weights, cfg, dialect=written) as f:
        assert f.complete


# -- truncation, trailing bytes --------------------------------------------------------------


@pytest.fixture
def full(tmp_path: Path) -> tuple[Path, dwf.Plan, bytes]:
    """A complete file for ``yolo_cfg()`` and its cfg (``net.cfg``)."""
    weights = tmp_path / "full.weights"
    plan = write_weights(weights, yolo_cfg())
    write_cfg(tmp_path, yolo_cfg())
    return weights, plan, weights.read_bytes()


def test_truncated_mid_layer_on_a_float_boundary(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, plan, data = full
    conv2 = plan["conv_2"]
    floats = conv2.offset + 100  # inside conv_2's weights
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: 20 + 4 * floats])
    err = mismatch(cut, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "truncated"
    assert not cause.exact  # whole floats: only the absence of a better explanation
    assert f"holds {floats:,} of {plan.total_floats:,} floats" in cause.summary
    assert "ends inside layer 2 (conv_2); a file through that layer would be" in cause.summary
    assert f"{20 + 4 * conv2.stop:,} bytes" in cause.summary
    assert err.first_unfilled is not None
    idx, name, typ, array, start, stop = err.first_unfilled
    assert (idx, name, typ) == (2, "conv_2", "convolutional")
    spec = conv2.array(array)
    assert spec is not None and (start, stop) == spec.byte_span(20)
    msg = str(err)
    assert "first layer that cannot be filled: 2 (conv_2, convolutional)" in msg
    assert f"{len(data):,} bytes" in msg and f"{20 + 4 * floats:,} bytes" in msg


def test_truncated_to_a_non_multiple_of_4(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, plan, data = full
    size = 20 + 4 * (plan["conv_3"].offset + 7) + 2
    cut = tmp_path / "odd.weights"
    cut.write_bytes(data[:size])
    err = mismatch(cut, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "truncated"
    assert cause.exact
    assert "(size - 20) % 4 == 2" in cause.summary
    assert "layer 3 (conv_3)" in cause.summary


def test_truncated_file_named_conv_n_says_the_size_it_should_have(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, plan, data = full
    cut = tmp_path / "net.conv.3"
    cut.write_bytes(data[: 20 + 4 * 300])
    err = mismatch(cut, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "truncated"
    assert f"holds layers 0..2, which would be {20 + 4 * plan['conv_2'].stop:,} bytes" in (
        cause.summary
    )


@pytest.mark.parametrize("extra", [40, 4 * 1000])
def test_extra_whole_floats_appended(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes], extra: int
) -> None:
    _, _, data = full
    longer = tmp_path / "long.weights"
    longer.write_bytes(data + bytes(extra))
    err = mismatch(longer, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "trailing-bytes"
    assert f"{extra // 4:,} floats more than the cfg" in cause.summary
    assert err.first_unfilled is None
    assert f"the file is {extra:,} bytes too long" in str(err)


def test_stray_byte_appended_is_trailing_not_truncated(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    # A file that holds every float the cfg needs plus a newline is not a truncated download.
    _, plan, data = full
    longer = tmp_path / "newline.weights"
    longer.write_bytes(data + b"\n")
    err = mismatch(longer, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "trailing-bytes"
    assert f"all {plan.total_floats:,} floats" in cause.summary
    assert all(c.kind != "truncated" for c in err.diagnosis.causes)


# -- header width and partial files ----------------------------------------------------------


def test_partial_file_with_16_byte_header_where_version_says_20(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    weights, plan, data = full
    assert struct.unpack_from("<iii", data) == (0, 2, 5)
    stop = plan["conv_2"].stop
    odd = tmp_path / "narrow.weights"
    odd.write_bytes(data[:16] + data[20 : 20 + 4 * stop])  # seen cut to 4 bytes
    err = mismatch(odd, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "header-width"
    assert "partial file (layers 0..2)" in cause.summary
    assert "16-byte header instead of the 20-byte one version 0.2.5 implies" in cause.summary
    assert cause.fix == "open with header_size=16"
    with (
        dwf.open(odd, tmp_path / "net.cfg", header_size=16) as f,
        dwf.open(weights, tmp_path / "net.cfg") as ref,
    ):
        assert f.partial and f.last_layer == 2
        for name in ("conv_0", "conv_2"):
            for key, view in f[name].arrays.items():
                np.testing.assert_array_equal(view, ref[name][key])


def test_partial_file_with_20_byte_header_where_version_says_16(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, plan, data = full
    stop = plan["conv_0"].stop
    odd = tmp_path / "wide.weights"
    odd.write_bytes(struct.pack("<iiiQ", 0, 1, 0, 64) + data[20 : 20 + 4 * stop])
    err = mismatch(odd, tmp_path / "net.cfg")
    cause = first_cause(err)
    assert cause.kind == "header-width"
    assert "20-byte header instead of the 16-byte one version 0.1.0 implies" in cause.summary
    assert cause.fix == "open with header_size=20"


def test_exact_fit_with_the_other_header_width_is_not_a_mismatch(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, _, data = full
    odd = tmp_path / "bug.weights"
    odd.write_bytes(data[:12] + struct.pack("<I", 77) + data[20:])
    with dwf.open(odd, tmp_path / "net.cfg") as f:
        assert f.complete and f.mismatch is None
        assert f.header.size == 16 and f.header.seen == 77
        assert f.header.note is not None and "16-byte" in f.header.note


def test_partial_file_on_a_layer_boundary_is_not_a_mismatch(tmp_path: Path) -> None:
    weights = tmp_path / "net.conv.3"
    plan = write_weights(weights, yolo_cfg(), upto=3)
    with dwf.open(weights, write_cfg(tmp_path, yolo_cfg())) as f:
        assert f.partial and f.mismatch is None
        assert f.last_layer == 2
        assert "conv_2" in f and "conv_3" not in f
        assert f.available_floats == plan["conv_2"].stop


# -- not a weights file ----------------------------------------------------------------------

NOT_WEIGHTS = {
    "empty": (b"", "the file is empty"),
    "html": (
        b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>x</body></html>\n" * 4,
        "HTML",
    ),
    "lfs": (
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4a751cbd7fcf63f24a751cbd7fcf63f24a751cbd7fcf63f24a751cbd7fcf63f2\n"
        b"size 552856\n",
        "Git LFS pointer",
    ),
    "text": (b"these are not the weights you are looking for\n" * 3, "text file"),
    "cfg": (b"[net]\nwidth=32\nheight=32\nchannels=3\n", "cfg file"),
    "short": (b"\x00\x00\x00\x00\x02\x00", "6 bytes"),
}


@pytest.mark.parametrize("case", sorted(NOT_WEIGHTS))
def test_not_weights_is_a_header_error_in_plain_words(tmp_path: Path, case: str) -> None:
    content, words = NOT_WEIGHTS[case]
    bad = tmp_path / "bad.weights"
    bad.write_bytes(content)
    with pytest.raises(dwf.HeaderError) as info:
        dwf.open(bad, write_cfg(tmp_path, yolo_cfg()))
    msg = str(info.value)
    assert "not a Darknet weights file" in msg
    assert words in msg
    assert info.value.path == str(bad)


def _byte_swapped(data: bytes) -> bytes:
    major, minor, revision, seen = struct.unpack_from("<iiiQ", data)
    body = np.frombuffer(data, "<f4", offset=20).astype(">f4").tobytes()
    return struct.pack(">iiiQ", major, minor, revision, seen) + body


def test_byte_swapped_file_says_so(tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]) -> None:
    _, _, data = full
    swapped = tmp_path / "swapped.weights"
    swapped.write_bytes(_byte_swapped(data)[:-400])
    with pytest.raises(dwf.DwfError) as info:
        dwf.open(swapped, tmp_path / "net.cfg")
    assert "byte-swapped" in str(info.value)
    if isinstance(info.value, dwf.SizeMismatchError):
        cause = first_cause(info.value)
        assert cause.kind == "not-weights"
        assert "big-endian" in cause.summary


def test_byte_swapped_file_of_the_exact_size_is_refused(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, _, data = full
    swapped = tmp_path / "swapped.weights"
    swapped.write_bytes(_byte_swapped(data))
    with pytest.raises(dwf.DwfError, match="byte-swapped"):
        dwf.open(swapped, tmp_path / "net.cfg").close()


# -- the error object ------------------------------------------------------------------------


def test_message_has_sizes_first_unfilled_and_ranked_causes(tmp_path: Path) -> None:
    # Two exact explanations at once: the pjreddie [batchnorm] layer after a 48-filter conv
    # stores 48 floats fewer than alexeyab's, which is also what batch norm on a 16-filter conv
    # weighs. Both must be listed, each verified, in rank order (batch norm before dialect).
    text = yolo_cfg(filters=(16, 48, 32), bn=(1, 0, 1), batchnorm_layer=True)
    weights = tmp_path / "two.weights"
    write_weights(weights, text, dialect="pjreddie")
    err = mismatch(weights, write_cfg(tmp_path, text))
    kinds = [c.kind for c in err.diagnosis.causes]
    assert kinds == ["batch-normalize", "dialect"]
    assert all(c.exact for c in err.diagnosis.causes)
    assert "layer 0 (conv_0)" in err.diagnosis.causes[0].summary
    msg = str(err)
    lines = msg.splitlines()
    assert lines[0].startswith(f"{weights}: {err.actual_size:,} bytes, but ")
    assert f"needs {err.expected_size:,} bytes (20-byte header" in lines[0]
    assert "(dialect alexeyab)" in lines[0]
    assert lines[1].startswith("  first layer that cannot be filled:")
    assert "the file is 192 bytes short (48 floats)" in msg
    likely = next(i for i, x in enumerate(lines) if x.startswith("  likely cause: "))
    other = next(i for i, x in enumerate(lines) if x.startswith("  or: "))
    assert likely < other
    assert "dialect='pjreddie'" in lines[other + 1]
    assert lines[-1] == (
        "  open with strict=False (dwf: --lenient) to read the layers the file holds completely"
    )
    assert msg == err.diagnosis.explain()


def test_error_attributes_agree_with_the_diagnosis(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, plan, data = full
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-40])
    err = mismatch(cut, tmp_path / "net.cfg")
    d = err.diagnosis
    assert issubclass(type(err), ValueError)  # `except ValueError` keeps working
    assert (err.expected_size, err.actual_size, err.header_size) == (
        d.expected_size,
        d.actual_size,
        d.header_size,
    )
    assert err.expected_size == plan.expected_size(20) == len(data)
    assert err.actual_size == len(data) - 40
    assert err.first_unfilled == d.first_unfilled
    assert d.path == str(cut) and d.cfg == str(tmp_path / "net.cfg")


def test_error_pickles_with_its_diagnosis(tmp_path: Path) -> None:
    weights = tmp_path / "net.weights"
    write_weights(weights, yolo_cfg(classes=3))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg()))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is dwf.SizeMismatchError
    assert str(back) == str(err)
    assert back.diagnosis == err.diagnosis
    assert isinstance(back.diagnosis, Diagnosis)
    assert back.diagnosis.causes[0].kind == "classes"
    assert back.expected_size == err.expected_size and back.path == err.path


def test_strict_false_opens_and_keeps_the_explanation(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes]
) -> None:
    _, plan, data = full
    floats = plan["conv_3"].offset + 5
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: 20 + 4 * floats])
    err = mismatch(cut, tmp_path / "net.cfg")
    with dwf.open(cut, tmp_path / "net.cfg", strict=False) as f:
        assert f.mismatch == str(err)
        assert "likely cause: a truncated download" in f.mismatch
        assert not f.partial and not f.complete
        assert "SIZE MISMATCH" in repr(f)
        assert f.last_layer == 2
        assert f["conv_2"].weights is not None  # complete layers stay readable
        with pytest.raises(dwf.LayerNotInFileError):
            f["conv_3"]


def test_cli_info_prints_the_diagnosis(
    tmp_path: Path, full: tuple[Path, dwf.Plan, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, data = full
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-40])
    assert main(["info", str(cut), "--cfg", str(tmp_path / "net.cfg")]) == 2
    err = capsys.readouterr().err
    assert "likely cause: a truncated download" in err
    assert main(["info", str(cut), "--cfg", str(tmp_path / "net.cfg"), "--lenient"]) == 0
    assert "SIZE MISMATCH" in capsys.readouterr().out
