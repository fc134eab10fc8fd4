"""Mismatches with two causes at once, and files that fit a public cfg instead of the given one.

As in test_diagnose.py, every file is written by ``dwf.save`` from a cfg variant other than the
one it is opened with, so the expected cause is known by construction; the proposed fix is then
applied and must open the file cleanly.
"""

from __future__ import annotations

from pathlib import Path

from conftest import shared_path
from test_diagnose import demo_cfg_text, mismatch, opens_cleanly, write_cfg, write_weights, yolo_cfg

import dwf
from dwf.format.known import known_models


def test_classes_and_batch_norm_changed(tmp_path: Path) -> None:
    weights = tmp_path / "both.weights"
    write_weights(weights, yolo_cfg(classes=7, bn=(0, 0, 0)))
    err = mismatch(weights, write_cfg(tmp_path, yolo_cfg(classes=2)))
    cause = err.diagnosis.causes[0]
    assert cause.kind == "classes+batch-normalize", str(err)
    assert "trained for 7 classes (the cfg says 2)" in cause.summary
    assert "without batch norm in all 3 layers" in cause.summary
    assert "download" not in str(err)
    opens_cleanly(weights, yolo_cfg(classes=7, bn=(0, 0, 0)), tmp_path).close()


def test_classes_changed_in_one_head_only(tmp_path: Path) -> None:
    """yolov3-tiny's two heads read 512 and 256 channels: a change in one is told by size."""
    cfgs = shared_path("conformance", "cfg", "alexeyab")
    text = (cfgs / "yolov3-tiny.cfg").read_text()
    plan = dwf.Plan.from_text(text)
    from dwf.format.retrain import heads, with_classes

    second = heads(plan)[1]
    edited = with_classes(plan, 4, only=[second.index])
    floats = dwf.Plan.from_text(edited).total_floats
    weights = tmp_path / "onehead.weights"
    with open(weights, "wb") as fh:
        fh.write(dwf.Header().encode())
        fh.truncate(20 + 4 * floats)
    err = mismatch(weights, write_cfg(tmp_path, text))
    cause = err.diagnosis.causes[0]
    assert cause.kind == "classes", str(err)
    assert f"only layer {second.index}" in cause.summary and "classes=4" in cause.summary
    assert cause.fix == (
        f"set classes=4 in layer {second.index} and filters=27 in layer {second.feeder}"
    )
    opens_cleanly(weights, edited, tmp_path).close()


def test_one_head_or_every_head_is_a_tie_when_heads_weigh_the_same(tmp_path: Path) -> None:
    text = demo_cfg_text()
    lines = text.split("\n")
    heads = [i for i, line in enumerate(lines) if line.strip() == "classes=2"]
    filters = [i for i, line in enumerate(lines) if line.strip() == "filters=21"]
    lines[heads[1]] = "classes=4"
    lines[filters[1]] = "filters=27"
    weights = tmp_path / "onehead.weights"
    write_weights(weights, "\n".join(lines))
    err = mismatch(weights, write_cfg(tmp_path, text))
    kinds = [c.summary for c in err.diagnosis.causes if c.kind == "classes"]
    assert len(kinds) == 2
    assert "trained for 3 classes" in kinds[0]
    assert "layer 14 with classes=4, layer 21 with classes=4" in kinds[1]
    assert "cannot tell" in kinds[1]


def test_other_dialect_with_other_classes(tmp_path: Path) -> None:
    weights = tmp_path / "pj.weights"
    write_weights(weights, yolo_cfg(classes=6, batchnorm_layer=True), dialect="pjreddie")
    cfg = write_cfg(tmp_path, yolo_cfg(classes=2, batchnorm_layer=True))
    err = mismatch(weights, cfg)
    cause = err.diagnosis.causes[0]
    assert cause.kind == "dialect+classes", str(err)
    assert "pjreddie's Darknet" in cause.summary and "6 classes" in cause.summary
    with dwf.open(
        weights,
        write_cfg(tmp_path, yolo_cfg(classes=6, batchnorm_layer=True), "f.cfg"),
        dialect="pjreddie",
    ) as f:
        assert f.complete


def test_a_public_cfg_retrained_is_named_from_the_table(tmp_path: Path) -> None:
    """A yolov3-tiny file retrained for 3 classes, opened with yolov4-tiny.cfg: no cfg beside
    it fits, but the table knows the public one."""
    cfgs = shared_path("conformance", "cfg", "alexeyab")
    [row] = [
        m
        for m in known_models()["models"]
        if m["name"] == "yolov3-tiny.cfg" and m["dialect"] == "alexeyab"
    ]
    floats = row["floats"] + row["per_class"] * (3 - row["classes"])
    weights = tmp_path / "mine_final.weights"
    with open(weights, "wb") as fh:
        fh.write(dwf.Header().encode())
        fh.truncate(20 + 4 * floats)
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text((cfgs / "yolov4-tiny.cfg").read_text())
    err = mismatch(weights, cfg)
    first = err.diagnosis.causes[0]
    assert first.kind == "known-network", str(err)
    assert "yolov3-tiny.cfg retrained for 3 classes" in first.summary
    assert (
        str(err).splitlines()[0].startswith(f"{weights}: this file fits the public yolov3-tiny.cfg")
    )
    assert "download" not in str(err)
