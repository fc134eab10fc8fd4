"""Identification of public networks as users really have them: retrained for their own classes,
cut as partial backbones, saved without batch norm, and several files at once.

The float counts come from planning the *public cfg in ../shared*, edited for another class count
(the head's ``classes=`` and its feeding layer's ``filters=``), not from the shipped table: a
wrong ``per_class`` in the table fails here. Files are sparse (a real header, then a hole).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_path

import dwf
from dwf.format.known import known_models
from dwf.tools.identify import identify

CLASS_COUNTS = (1, 2, 3, 7, 26, 80, 91)
MODELS: list[dict[str, Any]] = known_models()["models"]
DETECTORS = [m for m in MODELS if m.get("per_class")]


def sparse(path: Path, floats: int, *, header_size: int = 20) -> Path:
    version = (0, 2, 5) if header_size == 20 else (0, 1, 0)
    seen = struct.pack("<Q" if header_size == 20 else "<I", 6400)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<iii", *version) + seen)
        fh.truncate(header_size + 4 * floats)
    return path


def cfg_path(row: dict[str, Any]) -> Path:
    return shared_path("conformance", "cfg", row["dialect"], row["name"].replace("/", "__"))


def retrained_text(text: str, classes: int) -> str:
    """The cfg edited by hand the way the Darknet README says: classes= in each head, filters=
    (or a YOLOv1 connected layer's output=) before it — written independently of dwf's own
    editing code, by walking the sections."""
    import re

    blocks = re.split(r"(?m)^(?=\s*\[)", text)
    heads = {"[yolo]", "[region]", "[Gaussian_yolo]", "[detection]"}
    out = list(blocks)
    for i, block in enumerate(blocks):
        name = block.strip().split("\n", 1)[0].strip()
        if name not in heads:
            continue

        def opt(key: str, default: int, block: str = block) -> int:
            m = re.search(rf"(?m)^\s*{key}\s*=\s*([0-9]+)", block)
            return int(m.group(1)) if m else default

        old = opt("classes", 20)
        j = i - 1
        while not out[j].strip().startswith(("[convolutional]", "[connected]")):
            j -= 1
        key = "output" if name == "[detection]" else "filters"
        feed = re.search(rf"(?m)^\s*{key}\s*=\s*([0-9]+)", out[j])
        assert feed is not None
        per = opt("side", 7) ** 2 if name == "[detection]" else 0
        if not per:
            mask = re.search(r"(?m)^\s*mask\s*=\s*([0-9, ]+)", block)
            per = len(mask.group(1).split(",")) if mask else opt("num", 1)
        size = int(feed.group(1)) + per * (classes - old)
        out[j] = out[j][: feed.start(1)] + str(size) + out[j][feed.end(1) :]
        m = re.search(r"(?m)^(\s*classes\s*=\s*)([0-9]+)", block)
        assert m is not None
        out[i] = block[: m.start(2)] + str(classes) + block[m.end(2) :]
    return "".join(out)


@pytest.mark.slow  # every public detector retrained (~2.6 s in all)
@pytest.mark.parametrize("row", DETECTORS, ids=[f"{m['dialect']}-{m['name']}" for m in DETECTORS])
def test_retrained_detectors_are_identified_with_their_class_count(
    tmp_path: Path, row: dict[str, Any]
) -> None:
    text = cfg_path(row).read_text(encoding="utf-8", errors="replace")
    for classes in CLASS_COUNTS:
        plan = dwf.Plan.from_text(retrained_text(text, classes), dialect=row["dialect"])
        ident = identify(sparse(tmp_path / f"custom_{classes}.weights", plan.total_floats))
        found = [m for m in ident.matches if m.name == row["name"] and row["dialect"] in m.dialects]
        assert found, (classes, ident.explain())
        assert found[0].classes == classes
        assert found[0].cfg_classes == row["classes"]
        if classes != row["classes"]:
            assert found[0].variant == "retrained"
            assert f"{row['name']} retrained for {classes} classes" in ident.explain()
        else:
            assert found[0].variant == "published" and not found[0].retrained


def test_yolov4_tiny_retrained_for_3_classes_is_the_first_match(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov4-tiny.cfg"]
    text = cfg_path(row).read_text(encoding="utf-8")
    plan = dwf.Plan.from_text(retrained_text(text, 3), dialect="alexeyab")
    path = sparse(tmp_path / "yolov4-tiny-obj_final.weights", plan.total_floats)
    ident = dwf.identify(path)
    best = ident.matches[0]
    assert (best.name, best.classes, best.header_size) == ("yolov4-tiny.cfg", 3, 20)
    assert (
        ident.explain()
        .split("; ", 1)[1]
        .startswith("matches yolov4-tiny.cfg retrained for 3 classes")
        or "yolov4-tiny.cfg retrained for 3 classes (published: 80)" in ident.explain()
    )
    assert "input size cannot be told from the weights" in ident.explain()
    d = ident.to_dict()
    assert d["header_size"] == 20
    assert d["matches"][0]["classes"] == 3 and d["matches"][0]["header_size"] == 20


def test_retrained_with_a_16_byte_header_says_which_width(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov2-tiny.cfg" and m["dialect"] == "pjreddie"]
    floats = row["floats"] + row["per_class"] * (5 - row["classes"])
    ident = identify(sparse(tmp_path / "x.weights", floats, header_size=16))
    [m] = [m for m in ident.matches if m.name == "yolov2-tiny.cfg"]
    assert (m.classes, m.header_size) == (5, 16)


def test_no_batch_norm_variant(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov3-tiny.cfg" and m["dialect"] == "alexeyab"]
    text = cfg_path(row).read_text(encoding="utf-8")
    plan = dwf.Plan.from_text(text.replace("batch_normalize=1", "batch_normalize=0"))
    ident = identify(sparse(tmp_path / "x.weights", plan.total_floats))
    found = [m for m in ident.matches if m.name == "yolov3-tiny.cfg" and not m.batch_normalize]
    assert found and found[0].variant == "no-batch-norm"
    assert "yolov3-tiny.cfg saved without batch norm" in ident.explain()


def test_partial_cut_named_conv_n(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov3-tiny_3l.cfg"]
    plan = dwf.plan(cfg_path(row))
    floats = max(lp.stop for lp in plan.layers[:20])
    ident = identify(sparse(tmp_path / "yolov3-tiny_3l.conv.20", floats))
    found = [m for m in ident.matches if m.cfg == "yolov3-tiny_3l.cfg"]
    assert found and found[0].kind == "partial" and found[0].upto == 20


def test_near_miss_is_explained(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov4.cfg" and m["dialect"] == "alexeyab"]
    ident = identify(sparse(tmp_path / "x.weights", row["floats"] + 1000))
    assert not [m for m in ident.matches if m.name == "yolov4.cfg"]
    assert any("yolov4.cfg" in n for n in ident.near)
    assert "closest:" in ident.explain()


def test_identify_many_files_and_a_folder(tmp_path: Path) -> None:
    [row] = [m for m in MODELS if m["name"] == "yolov4-tiny.cfg"]
    sparse(tmp_path / "a.weights", row["floats"])
    sparse(tmp_path / "b.weights", row["floats"] + row["per_class"] * (7 - row["classes"]))
    sparse(tmp_path / "c.weights", 12_345)
    (tmp_path / "notes.txt").write_text("not weights")
    rows = list(dwf.each(dwf.identify, [tmp_path], jobs=1))  # one row per file, in order
    assert [Path(r.path).name for r in rows] == ["a.weights", "b.weights", "c.weights"]
    results = [r.result for r in rows]
    assert all(r is not None for r in results)
    assert results[1] is not None and results[1].matches[0].classes == 7
    assert results[2] is not None and not results[2].matches


def test_real_files_recognised_without_a_cfg() -> None:
    """The count docs/identify.md reports: which real files identify names without a cfg."""
    root = shared_path("realweights")
    files = sorted(
        p for p in root.glob("*/*") if p.suffix not in (".cfg", ".txt", ".md") and p.is_file()
    )
    assert len(files) == 16
    by_table = [p.name for p in files if identify(p, nearby=False).matches]
    assert by_table == ["tiny.weights"]  # docs/identify.md gives these numbers
    with_nearby = [p.name for p in files if identify(p).recognised]
    # The two it cannot name: the truncated upload, and trial8, whose own cfg is wrong.
    assert {p.name for p in files} - set(with_nearby) == {
        "yolov4-tiny.conv.29",
        "tiny-yolov2-trial8.weights",
    }
    assert len(with_nearby) == 14
