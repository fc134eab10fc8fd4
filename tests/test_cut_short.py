"""Files cut short while Darknet trains, or copied half-way: never read at a wrong offset.

A 20-byte-header file that lost its last 4 bytes is exactly as long as a complete file with a
16-byte header (the 32-bit ``seen`` of AlexeyAB's 2018-10-03 build); a 16-byte-header file with 4
stray bytes is as long as one with a 64-bit ``seen``. The values decide (docs/format.md §1.5). A
file that ends on a layer boundary although its ``seen`` is not 0 opens, with a warning: Darknet's
``partial`` writes 0 (docs/format.md §7).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shared_path

import dwf
from dwf.interfaces.cli import main

BN_CFG = "[net]\nwidth=16\nheight=16\nchannels=3\n" + "".join(
    f"[convolutional]\nbatch_normalize=1\nfilters={n}\nsize=3\npad=1\nactivation=leaky\n"
    for n in (8, 12, 16, 8, 12, 16)
)
PLAIN_CFG = "[net]\nwidth=16\nheight=16\nchannels=3\n" + "".join(
    f"[convolutional]\nfilters={n}\nsize=3\npad=1\nactivation=leaky\n" for n in (8, 12, 16)
)


def realistic(plan: dwf.Plan, seed: int = 0, first_bias: float | None = None) -> dict[str, Any]:
    """Values as a trained file holds them: signed biases, means and weights, positive
    variances."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for lp, a in plan.arrays():
        values = rng.standard_normal(a.shape)
        if a.name == "rolling_variance":
            values = np.abs(values) + 0.05
        out[f"{lp.name}.{a.name}"] = values.astype(np.float32)
    if first_bias is not None:
        out["conv_0.biases"][0] = first_bias
    return out


def write(
    tmp_path: Path, cfg: str, header: dwf.Header, name: str = "net", **kw: Any
) -> tuple[Path, Path, bytes]:
    """A cfg and a weights file for it; returns (weights, cfg, the weights' bytes)."""
    cfg_path = tmp_path / f"{name}.cfg"
    cfg_path.write_text(cfg, encoding="utf-8")
    plan = dwf.Plan.from_text(cfg)
    weights = tmp_path / f"{name}.weights"
    dwf.save(weights, plan, realistic(plan, **kw), header=header)
    return weights, cfg_path, weights.read_bytes()


AB = dwf.Header(0, 2, 5, 64_000, 20)  # what AlexeyAB's Darknet writes
OLD = dwf.Header(0, 1, 0, 64_000, 16)  # what builds before 2018 wrote


def same_values(f: dwf.WeightsFile, ref: dwf.WeightsFile) -> None:
    """Every array ``f`` holds is the array ``ref`` holds: read at the same offset."""
    for lp in f.plan.layers:
        if lp.arrays and f.holds(lp):
            for key, view in f[lp.name].arrays.items():
                np.testing.assert_array_equal(view, ref[lp.name][key], err_msg=f"{lp.name}.{key}")


# -- 4 bytes short, or 4 bytes long: the values decide ------------------------------------------
def test_file_4_bytes_short_is_refused_not_read_one_float_off(tmp_path: Path) -> None:
    """Failed before: the file opened as "complete" with a 16-byte header (the note called it a
    known writer bug) and every array was read one float off."""
    weights, cfg, data = write(tmp_path, BN_CFG, AB)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-4])
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(cut, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "truncated" and cause.exact
    assert "4 bytes short of a complete file with the 20-byte header" in cause.summary
    assert "batch-norm variances would be negative" in cause.summary
    with dwf.open(cut, cfg, strict=False) as f, dwf.open(weights, cfg) as ref:
        assert f.header.size == 20 and f.header.seen == 64_000
        assert f.mismatch is not None
        same_values(f, ref)


def test_check_connects_negative_variances_to_a_forced_header_width(tmp_path: Path) -> None:
    """Failed before: read one float off (here because the width was forced), check reported
    the negative variances without a word about the header."""
    _, cfg, data = write(tmp_path, BN_CFG, AB)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-4])
    with dwf.open(cut, cfg, header_size=16) as f:
        report = dwf.check(f)
    (last,) = [x for x in report.findings if x.index == -1]
    assert last.kind == "header-width" and last.severity == "warning"
    assert "read with a 16-byte header although version 0.2.5 implies 20" in last.message
    assert last.count == sum(x.count for x in report.findings if x.kind == "negative-variance")


def test_file_of_the_2018_build_opens_with_16_bytes_by_its_values(tmp_path: Path) -> None:
    """0.2.5 with a 4-byte seen: the values refute the 20-byte reading, so it opens as before."""
    weights, cfg, data = write(tmp_path, BN_CFG, AB)
    odd = tmp_path / "odd.weights"
    odd.write_bytes(data[:12] + struct.pack("<I", 64_000) + data[20:])
    with dwf.open(odd, cfg) as f, dwf.open(weights, cfg) as ref:
        assert f.complete and f.mismatch is None
        assert f.header.size == 16 and f.header.seen == 64_000
        assert f.header.note is not None and "its values agree" in f.header.note
        same_values(f, ref)


def test_variances_damaged_in_both_readings_do_not_hide_the_rest(tmp_path: Path) -> None:
    """Variances of random sign: both readings hold negative ones and prove nothing; the bytes
    after the 32-bit seen (a float, not the high half of a count) still decide."""
    cfg = tmp_path / "net.cfg"
    cfg.write_text(BN_CFG, encoding="utf-8")
    plan = dwf.plan(cfg)
    rng = np.random.default_rng(3)
    arrays = {
        f"{lp.name}.{a.name}": rng.standard_normal(a.shape).astype(np.float32)
        for lp, a in plan.arrays()
    }
    full = tmp_path / "net.weights"
    dwf.save(full, plan, arrays, header=AB)
    odd = tmp_path / "odd.weights"
    data = full.read_bytes()
    odd.write_bytes(data[:12] + struct.pack("<I", 77) + data[20:])  # 0.2.5, a 4-byte seen
    with dwf.open(odd, cfg) as f:
        assert f.header.size == 16 and f.header.seen == 77
        np.testing.assert_array_equal(f["conv_0"].biases, arrays["conv_0.biases"])


def test_file_of_the_2017_builds_opens_with_20_bytes_by_its_values(tmp_path: Path) -> None:
    """0.1.0 with an 8-byte seen: the values refute the 16-byte reading."""
    weights, cfg, data = write(tmp_path, BN_CFG, AB)
    odd = tmp_path / "odd.weights"
    odd.write_bytes(struct.pack("<iii", 0, 1, 0) + data[12:])
    with dwf.open(odd, cfg) as f, dwf.open(weights, cfg) as ref:
        assert f.complete and f.header.size == 20 and f.header.seen == 64_000
        same_values(f, ref)


def test_4_stray_bytes_after_a_16_byte_file_are_not_a_wider_header(tmp_path: Path) -> None:
    """Failed before: 0.1.0 (16 bytes) + 4 appended bytes opened as a 20-byte header, every
    array one float off, with a seen made of the first bias."""
    weights, cfg, data = write(tmp_path, BN_CFG, OLD)
    long = tmp_path / "long.weights"
    long.write_bytes(data + b"\0\0\0\0")
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(long, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "trailing-bytes" and cause.exact
    assert "seen would be" in cause.summary  # the first bias, read as the high half of seen
    with dwf.open(long, cfg, strict=False) as f, dwf.open(weights, cfg) as ref:
        assert f.header.size == 16 and f.trailing_bytes == 4
        same_values(f, ref)


def test_when_the_values_cannot_tell_a_strict_open_refuses_and_explains_both(
    tmp_path: Path,
) -> None:
    """No batch norm, a seen below 2**32: nothing in the values tells a 16-byte header from a
    cut 20-byte file. Failed before: it opened with 16 bytes."""
    weights, cfg, data = write(tmp_path, PLAIN_CFG, AB)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-4])
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(cut, cfg)
    kinds = [c.kind for c in info.value.diagnosis.causes]
    assert kinds[:2] == ["truncated", "header-width"]
    message = str(info.value)
    assert "read with a 16-byte header (seen 64,000), fitting exactly" in message
    assert "read with a 20-byte header (seen 64,000), 4 bytes short" in message
    assert "open with header_size=16" in message
    with dwf.open(cut, cfg, strict=False) as f, dwf.open(weights, cfg) as ref:
        assert f.header.size == 20  # the version's width, what Darknet reads
        same_values(f, ref)
    with dwf.open(cut, cfg, header_size=16, strict=False) as f:
        assert f.header.size == 16  # the user may still say which


def test_16_byte_file_whose_values_cannot_tell_is_refused_with_both_readings(
    tmp_path: Path,
) -> None:
    """0.2.5 with a 4-byte seen, no batch norm, and a first bias of exactly 0.0 (as the high
    half of a 64-bit seen would be): both readings are possible; header_size=16 opens it."""
    weights, cfg, data = write(tmp_path, PLAIN_CFG, AB, first_bias=0.0)
    odd = tmp_path / "odd.weights"
    odd.write_bytes(data[:12] + struct.pack("<I", 64_000) + data[20:])
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(odd, cfg)
    assert {c.kind for c in info.value.diagnosis.causes} >= {"truncated", "header-width"}
    with dwf.open(odd, cfg, header_size=16) as f, dwf.open(weights, cfg) as ref:
        same_values(f, ref)


def test_cannot_tell_is_refused_even_when_the_cut_ends_on_a_layer_boundary(
    tmp_path: Path,
) -> None:
    """Failed before (found by test_roundtrip_property's truncated files): when the last layer
    holds one float, a 20-byte file cut by 4 bytes also ends on a layer boundary, and it opened
    as a partial file with 20 bytes although nothing told it from a complete 16-byte file."""
    cfg = PLAIN_CFG + "[implicit]\nfilters=1\n"
    weights, cfg_path, data = write(tmp_path, cfg, AB)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-4])
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(cut, cfg_path)
    message = str(info.value)
    assert "read with a 16-byte header (seen 64,000), fitting exactly" in message
    assert "read with a 20-byte header (seen 64,000)" in message
    with dwf.open(cut, cfg_path, strict=False) as f, dwf.open(weights, cfg_path) as ref:
        assert f.header.size == 20  # the version's width, what Darknet reads
        same_values(f, ref)


def test_partial_file_4_bytes_short_is_not_called_a_16_byte_partial_file(tmp_path: Path) -> None:
    """Failed before: a partial file cut by 4 bytes was diagnosed as a partial file with a
    16-byte header, and the fix proposed reading it one float off."""
    _, cfg, data = write(tmp_path, BN_CFG, dwf.Header(0, 2, 5, 0, 20))
    plan = dwf.plan(cfg)
    stop = plan["conv_3"].stop
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: 20 + 4 * stop - 4])
    with pytest.raises(dwf.SizeMismatchError) as info:
        dwf.open(cut, cfg)
    cause = info.value.diagnosis.cause
    assert cause is not None and cause.kind == "truncated"
    assert "a file ending after layer 3" in cause.summary
    assert "header_size=16" not in str(info.value)


# -- ends on a layer boundary: partial, or cut short ---------------------------------------------
def test_file_cut_at_a_layer_boundary_with_seen_warns_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed before: it opened as "partial file: holds layers 0..2 of 6" and check exited 0."""
    _, cfg, data = write(tmp_path, BN_CFG, dwf.Header(0, 2, 5, 8_000_000, 20))
    plan = dwf.plan(cfg)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: 20 + 4 * plan["conv_2"].stop])
    expected = (
        "the file ends at a layer boundary (layers 0..2 of 6), but seen = 8,000,000; Darknet's"
        " `partial` writes 0 — probably cut short"
    )
    with dwf.open(cut, cfg) as f:
        assert f.partial and f.cut_short == expected
        assert f.warnings == (*plan.warnings, expected)
        assert f.to_dict()["warnings"] == [expected]
    assert main(["info", str(cut), "--cfg", str(cfg)]) == 0
    assert f"warning: {expected}" in " ".join(capsys.readouterr().out.split())  # unwrapped
    assert main(["info", str(cut), "--cfg", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == [expected]
    assert main(["check", str(cut), "--cfg", str(cfg)]) == 1
    assert f"error   file: {expected}" in capsys.readouterr().out
    assert main(["check", str(cut), "--cfg", str(cfg), "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(x["kind"], x["severity"], x["index"]) for x in findings] == [
        ("cut-short", "error", -1)
    ]


def test_partial_file_as_darknet_writes_it_has_no_warning(tmp_path: Path) -> None:
    weights, cfg, _ = write(tmp_path, BN_CFG, AB)
    part = dwf.cut(weights, tmp_path / "net.conv.3", upto=3, cfg=cfg)
    with dwf.open(part, cfg) as f:
        assert f.partial and f.header.seen == 0
        assert f.cut_short is None and f.warnings == ()
        assert not dwf.check(f).findings


# -- the real files --------------------------------------------------------------------------------
# The real files that fit their cfg (the two that do not are diagnosed in test_diagnose.py).
REAL = (
    "darknet-reference-tiny",
    "number-lenet",
    "yolo-fastest-1.1",
    "yolo-fastest-xl-1.0",
    "mnv2-yolov3-nano-voc",
    "yoloface-500k-SE",
    "yoloface-50k",
    "yolo-lite-trial3",
    "yolo-lite-trial3-noBatch",
    "lebhoryi-yolo-fastest-conv109",
    "lebhoryi-yolo-v2-tiny-last",
    "pjreddie-pr1012-cifar-small",
    "sonhm-yolo-fastest-custom-origin",
    "lebhoryi-yolo-s-relu",
)


def real(folder: str) -> tuple[Path, Path]:
    """The folder's weights file and its cfg."""
    where = shared_path("realweights", folder)
    (cfg,) = where.glob("*.cfg")
    (weights,) = (p for p in where.iterdir() if p.suffix not in (".cfg", ".txt"))
    return weights, cfg


def test_real_16_byte_files_still_open_as_today() -> None:
    """The real files of 32-bit writers (0.1.0, 16-byte headers) open as complete files."""
    for folder in ("darknet-reference-tiny", "yolo-lite-trial3", "yolo-lite-trial3-noBatch"):
        weights, cfg = real(folder)
        with dwf.open(weights, cfg) as f:
            assert f.complete and f.header.size == 16 and f.header.note is None
            assert f.cut_short is None


@pytest.mark.parametrize("folder", ["darknet-reference-tiny", "yolo-lite-trial3"])
def test_real_16_byte_file_relabelled_as_the_2018_build_opens_by_its_values(
    tmp_path: Path, folder: str
) -> None:
    weights, cfg = real(folder)
    data = weights.read_bytes()
    odd = tmp_path / weights.name
    odd.write_bytes(struct.pack("<iii", 0, 2, 5) + data[12:])
    with dwf.open(odd, cfg) as f, dwf.open(weights, cfg) as ref:
        assert f.header.size == 16 and f.complete
        same_values(f, ref)


def _outcome(path: Path, cfg: Path, **kw: Any) -> tuple[str, int, str | None]:
    """("refused" or "opened", header width, the file's own warning)."""
    try:
        with dwf.open(path, cfg, **kw) as f:
            return "opened", f.header.size, f.cut_short
    except dwf.SizeMismatchError as e:
        return "refused", e.header_size, None


@pytest.mark.slow
@pytest.mark.parametrize("folder", REAL)
def test_every_real_file_cut_short_is_refused_or_read_at_its_offset(
    tmp_path: Path, folder: str
) -> None:
    """Cut by 1 to 8 bytes, and at every layer boundary with its seen kept: a strict open
    refuses the file or reads it with its own header width (and warns when it ends on a layer
    boundary with seen ≠ 0); a lenient open always reads it with its own header width."""
    weights, cfg = real(folder)
    data = weights.read_bytes()
    with dwf.open(weights, cfg) as ref:
        H, seen, plan = ref.header.size, ref.header.seen, ref.plan
        held = ref.available_floats
    cut = tmp_path / ("cut_" + weights.name)
    sizes = [len(data) - k for k in range(1, 9)]
    sizes += [H + 4 * b for b in plan.boundaries() if b < held]
    for size in sizes:
        cut.write_bytes(data[:size])
        how, width, warning = _outcome(cut, cfg)
        assert width == H, f"{size} bytes: read with a {width}-byte header, not {H}"
        ends_on_boundary = (size - H) % 4 == 0 and (size - H) // 4 in plan.boundaries()
        if how == "opened":
            assert ends_on_boundary, f"{size} bytes opened although it ends inside a layer"
            assert (warning is not None) == (seen != 0), (size, warning)
        lenient = _outcome(cut, cfg, strict=False)
        assert lenient[:2] == ("opened", H), (size, lenient)
