"""Identification without a cfg: a file's float count against Darknet's public cfgs.

Files are sparse: a real header, then ``truncate`` to the size. Creating them is instant and
identification only reads the header and the size. Published sizes (spec §7) are checked
independently of the shipped table, so a wrongly regenerated table fails here.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_path

import dwf
from dwf.format.known import Identification, known_models, lookup
from dwf.interfaces.cli import main
from dwf.tools.identify import identify

TABLE: dict[str, Any] = known_models()
MODELS: list[dict[str, Any]] = TABLE["models"]
PARTIALS: list[dict[str, Any]] = TABLE["partials"]

# float count → every name the table gives it (models and partials)
NAMES_BY_COUNT: dict[int, set[str]] = defaultdict(set)
for _row in MODELS + PARTIALS:
    NAMES_BY_COUNT[_row["floats"]].add(_row["name"])


def sparse(
    path: Path, floats: int, *, header_size: int = 20, version: tuple[int, int, int] = (0, 2, 5)
) -> Path:
    """A file of exactly ``header_size + 4 * floats`` bytes with a real header, body a hole."""
    seen = struct.pack("<Q" if header_size == 20 else "<I", 12_800)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<iii", *version) + seen)
        fh.truncate(header_size + 4 * floats)
    return path


def names(ident: Identification) -> set[str]:
    """Names of the matches as published (retrained variants of others are listed after)."""
    return {m.name for m in ident.matches if m.variant in ("published", "partial")}


def test_table_shape() -> None:
    assert len(MODELS) > 100
    assert {p["name"] for p in PARTIALS} >= {
        "darknet53.conv.74",
        "yolov4.conv.137",
        "yolov4-tiny.conv.29",
    }
    for row in MODELS:
        assert row["name"].endswith(".cfg") and row["dialect"] in ("alexeyab", "pjreddie")
        assert row["floats"] > 0 and row["layers"] > 0
    for p in PARTIALS:
        whole = [m for m in MODELS if m["name"] == p["cfg"] and m["dialect"] == p["dialect"]]
        assert whole, f"{p['name']} is cut from {p['cfg']}, which the table lacks"
        assert 0 < p["floats"] < whole[0]["floats"]
        assert 0 < p["upto"] < whole[0]["layers"]


@pytest.mark.parametrize("row", MODELS, ids=[f"{m['dialect']}-{m['name']}" for m in MODELS])
def test_every_model_is_identified(tmp_path: Path, row: dict[str, Any]) -> None:
    ident = identify(sparse(tmp_path / "x.weights", row["floats"]))
    assert ident.floats == row["floats"]
    assert ident.problem is None
    # exactly the table's names for this count: the model itself and every cfg sharing it
    assert names(ident) == NAMES_BY_COUNT[row["floats"]]
    [m] = [m for m in ident.matches if m.name == row["name"]]
    assert m.kind == "model" and m.header_size == 20
    assert row["dialect"] in m.dialects
    assert row["name"] in ident.explain()


@pytest.mark.parametrize("row", PARTIALS, ids=[p["name"] for p in PARTIALS])
def test_every_partial_is_identified(tmp_path: Path, row: dict[str, Any]) -> None:
    ident = identify(sparse(tmp_path / "x.conv", row["floats"]))
    [m] = [m for m in ident.matches if m.name == row["name"]]
    assert m.kind == "partial"
    assert (m.cfg, m.upto) == (row["cfg"], row["upto"])
    assert f"{row['name']} (layers 0..{row['upto'] - 1} of {row['cfg']})" in ident.explain()


@pytest.mark.parametrize(
    ("size", "name", "header_size"),
    [
        (248_007_048, "yolov3.cfg", 20),
        (257_717_640, "yolov4.cfg", 20),
        (24_251_276, "yolov4-tiny.cfg", 20),
        (35_434_956, "yolov3-tiny.cfg", 20),
        (203_934_260, "yolov2.cfg", 16),  # the official yolov2.weights: v0.1.0, 16-byte header
        (162_482_580, "darknet53.conv.74", 20),
        (170_038_676, "yolov4.conv.137", 20),
        (19_789_716, "yolov4-tiny.conv.29", 20),
    ],
)
def test_published_sizes(tmp_path: Path, size: int, name: str, header_size: int) -> None:
    version = (0, 2, 5) if header_size == 20 else (0, 1, 0)
    floats = (size - header_size) // 4
    path = sparse(tmp_path / "pub.weights", floats, header_size=header_size, version=version)
    assert path.stat().st_size == size
    ident = identify(path)
    assert ident.header is not None and ident.header.size == header_size
    assert name in names(ident)
    assert all(m.header_size == header_size for m in ident.matches if m.name == name)


def test_ambiguous_count_lists_every_name(tmp_path: Path) -> None:
    ident = identify(sparse(tmp_path / "v4.weights", 64_429_405))
    expected = {"yolov4.cfg", "yolov4-custom.cfg", "cd53paspp-gamma.cfg"}
    assert expected <= names(ident)
    assert names(ident) == NAMES_BY_COUNT[64_429_405]
    text = ident.explain()
    assert f"matches {len(ident.matches)} known networks:" in text
    for n in expected:
        assert n in text


def test_a_cfg_in_both_code_bases_is_one_match_with_both_dialects(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov3.cfg" and m["dialect"] == "pjreddie"]
    ident = identify(sparse(tmp_path / "v3.weights", row["floats"]))
    [m] = [m for m in ident.matches if m.name == "yolov3.cfg"]
    assert set(m.dialects) == {"alexeyab", "pjreddie"}


def test_16_byte_header_file_of_yolov2(tmp_path: Path) -> None:
    [floats] = {m["floats"] for m in MODELS if m["name"] == "yolov2.cfg"}
    path = sparse(tmp_path / "yolov2.weights", floats, header_size=16, version=(0, 1, 0))
    ident = identify(path)
    assert ident.header is not None and ident.header.size == 16
    assert ident.floats == floats
    assert "yolov2.cfg" in names(ident)
    assert "with a" not in ident.explain()  # the width the version implies: nothing to note


def test_16_byte_header_where_version_says_20_still_matches(tmp_path: Path) -> None:
    # The 2018-10-03 AlexeyAB writer bug (spec §1.5): version 0.2.5 with a 4-byte seen.
    [floats] = {m["floats"] for m in MODELS if m["name"] == "yolov2.cfg"}
    path = sparse(tmp_path / "bug.weights", floats, header_size=16, version=(0, 2, 5))
    ident = identify(path)
    assert ident.header is not None and ident.header.size == 20
    [m] = [m for m in ident.matches if m.name == "yolov2.cfg"]
    assert m.header_size == 16
    assert "yolov2.cfg (alexeyab, pjreddie) with a 16-byte header" in ident.explain()


def test_unknown_size_matches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sparse(tmp_path / "custom.weights", 12_345)
    assert not lookup(12_345, 20) and not lookup(12_344, 16)
    ident = identify(path)
    assert ident.matches == () and ident.floats == 12_345
    assert "no known Darknet cfg has this many floats" in ident.explain()
    assert main(["identify", str(path)]) == 1
    assert "no known Darknet cfg" in capsys.readouterr().out


def test_cli_identify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sparse(tmp_path / "backbone.weights", 40_620_640)
    assert main(["identify", str(path)]) == 0
    assert "darknet53.conv.74 (layers 0..73 of yolov3.cfg)" in capsys.readouterr().out
    assert main(["identify", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["floats"] == 40_620_640 and data["problem"] is None
    assert data["header"] == dwf.Header(0, 2, 5, 12_800, 20).to_dict()  # Header.to_dict()
    [m] = data["matches"]
    assert m["name"] == "darknet53.conv.74" and m["kind"] == "partial" and m["upto"] == 74


def test_not_whole_floats(tmp_path: Path) -> None:
    path = sparse(tmp_path / "odd.weights", 1000)
    with open(path, "ab") as fh:
        fh.write(b"\x01\x02")
    ident = identify(path)
    assert ident.floats is None and ident.matches == ()
    assert "not a whole number of float32 values" in ident.explain()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"<html><body>404 Not Found</body></html>\n" * 3, "HTML"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n", "Git LFS"),
    ],
    ids=["empty", "html", "lfs"],
)
def test_not_weights_is_a_problem_not_a_match(
    tmp_path: Path, content: bytes, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.weights"
    path.write_bytes(content)
    ident = identify(path)
    assert ident.problem is not None and words in ident.problem
    assert ident.header is None and ident.matches == ()
    assert ident.explain() == f"{path}: {ident.problem}"
    assert main(["identify", str(path)]) == 1
    assert words in capsys.readouterr().out


def test_unreadable_path_is_a_dwf_error(tmp_path: Path) -> None:
    """Failed before: a plain DwfError ("cannot read: No such file or directory") where
    dwf.open and every other verb raise WeightsNotFoundError, a FileNotFoundError too."""
    with pytest.raises(dwf.WeightsNotFoundError, match="weights file not found") as info:
        identify(tmp_path / "missing.weights")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(dwf.DwfError, match="is a directory, not a weights file"):
        identify(tmp_path)


def test_open_without_cfg_names_the_identified_model(tmp_path: Path) -> None:
    folder = tmp_path / "nocfg"
    folder.mkdir()
    path = sparse(folder / "backbone.weights", 40_620_640)
    with pytest.raises(dwf.CfgError) as info:
        dwf.open(path)
    msg = str(info.value)
    assert "no cfg given and none found" in msg and "backbone.cfg" in msg
    assert "by its size matches darknet53.conv.74 (layers 0..73 of yolov3.cfg)" in msg


def test_open_without_cfg_lists_every_ambiguous_model(tmp_path: Path) -> None:
    path = sparse(tmp_path / "mystery.weights", 64_429_405)
    with pytest.raises(dwf.CfgError) as info:
        dwf.open(path)
    for n in NAMES_BY_COUNT[64_429_405]:
        assert n in str(info.value)


def test_open_without_cfg_and_unknown_size_says_nothing_about_size(tmp_path: Path) -> None:
    path = sparse(tmp_path / "mystery.weights", 777)
    with pytest.raises(dwf.CfgError) as info:
        dwf.open(path)
    assert "by its size" not in str(info.value)


def test_real_tiny_darknet_is_identified() -> None:
    folder = shared_path("realweights", "darknet-reference-tiny")
    ident = identify(folder / "tiny.weights")
    assert ident.header is not None and ident.header.size == 16
    assert ident.floats == 1_046_488
    assert "tiny.cfg" in names(ident)


def test_real_truncated_file_is_not_identified() -> None:
    folder = shared_path("realweights", "firedet-yolov4-tiny-conv29-truncated")
    ident = identify(folder / "yolov4-tiny.conv.29")
    assert ident.matches == () and ident.floats is None
    assert "truncated" in ident.explain()


def test_table_agrees_with_the_planner() -> None:
    """Every row of the shipped table is what dwf's planner says for the public cfg now."""
    cfgs = shared_path("conformance", "cfg")
    for row in MODELS:
        path = cfgs / row["dialect"] / row["name"].replace("yolov1/", "yolov1__")
        plan = dwf.plan(path, dialect=row["dialect"])
        assert (len(plan.layers), plan.total_floats) == (row["layers"], row["floats"]), row
    for p in PARTIALS:
        plan = dwf.plan(cfgs / p["dialect"] / p["cfg"], dialect=p["dialect"])
        assert max(lp.stop for lp in plan.layers[: p["upto"]]) == p["floats"], p
