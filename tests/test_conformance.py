"""The planner against ground truth: what Darknet's own loader reads (../shared/conformance/),
the corpus tables of spec §8.1/§8.2 and the published file sizes of spec §7 item 1.

Everything here reads ../shared at test time; without it each test is a single skipped case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED, shared_path

import dwf
from dwf import Plan
from dwf.format.planner import Side

CONFORMANCE = SHARED / "conformance"
SPEC = SHARED / "spec" / "darknet-format.md"
_ABSENT = "__shared_absent__"


def _glob(folder: Path, pattern: str) -> list[str]:
    """Relative paths matching ``pattern`` under ``folder``, or a placeholder when absent."""
    found = sorted(str(p.relative_to(folder)) for p in folder.glob(pattern))
    return found or [_ABSENT]


def _require(kind: str, rel: str) -> Path:
    """The corpus file ``conformance/<kind>/<rel>``; skips when ../shared is absent."""
    if rel == _ABSENT:
        shared_path("conformance", kind)  # skips (or fails under DWF_REQUIRE_SHARED)
    path = shared_path("conformance") / kind / rel
    assert path.is_file(), f"{path} was collected but is gone"
    return path


EXPECTED = _glob(CONFORMANCE / "expected", "*/*.json")
CFGS = _glob(CONFORMANCE / "cfg", "*/*.cfg")

# Recorded from the writer, because pjreddie's loader crashes on deconvolutional layers
# (conformance README).
WRITER_RECORDED = {"pjreddie/pj_deconv.json"}


def _layer_record(lp: dwf.LayerPlan) -> dict[str, Any]:
    return {
        "index": lp.index,
        "type": lp.type,
        "out_c": lp.out_c,
        "out_h": lp.out_h,
        "out_w": lp.out_w,
        "outputs": lp.outputs,
        "arrays": [[a.name, a.offset, a.count] for a in lp.arrays],
    }


def _first_difference(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> str | None:
    for g, w in zip(got, want, strict=False):  # a length difference is reported below
        if g != w:
            fields = [k for k in w if g.get(k) != w[k]]
            return (
                f"first differing layer: {w['index']} ({w['type']}), fields {fields}\n"
                f"  dwf:      {json.dumps(g)}\n  expected: {json.dumps(w)}"
            )
    if len(got) != len(want):
        return f"layer count: dwf {len(got)}, expected {len(want)}"
    return None


@pytest.mark.parametrize("rel", EXPECTED)
def test_plan_matches_darknet_loader(rel: str) -> None:
    path = _require("expected", rel)
    expected = json.loads(path.read_text())
    dialect = rel.split("/")[0]
    assert expected["dialect"] == dialect
    assert expected["header_bytes"] == 20
    side: Side = "save" if rel in WRITER_RECORDED else "load"
    cfg = shared_path("conformance", "cfg", *expected["cfg"].split("/"))
    p = dwf.plan(cfg, dialect=dialect, side=side)
    got = [_layer_record(lp) for lp in p.layers]
    diff = _first_difference(got, expected["layers"])
    if diff is not None:
        pytest.fail(f"{expected['cfg']} ({dialect}, {side} side): {diff}", pytrace=False)
    assert p.total_floats == expected["total_floats"]
    assert p.expected_size(expected["header_bytes"]) == 20 + 4 * expected["total_floats"]
    # The header Darknet wrote has the width dwf's rule gives for its version.
    major, minor, revision = expected["header"]
    assert dwf.Header(major, minor, revision).width_for(dialect) == 20


@pytest.mark.parametrize("rel", CFGS)
def test_every_cfg_plans(rel: str) -> None:
    """Both views of every corpus cfg plan, with the cfg's own dialect."""
    path = _require("cfg", rel)
    dialect = rel.split("/")[0]
    for side in ("load", "save"):
        p = dwf.plan(path, dialect=dialect, side=side)
        assert len(p) > 0
        assert p.dialect == dialect and p.side == side
        # Arrays are laid out back to back, in layer order.
        cursor = 0
        for lp in p.layers:
            assert lp.offset == cursor
            for a in lp.arrays:
                assert a.offset == cursor and a.count >= 0
                cursor = a.stop
        assert cursor == p.total_floats


def test_conformance_corpus_is_complete() -> None:
    """Every expected file has its cfg, and the counts are what the README promises."""
    root = shared_path("conformance")
    expected = sorted(root.glob("expected/*/*.json"))
    assert len(expected) == 120
    for e in expected:
        cfg = root / "cfg" / e.parent.name / (e.stem + ".cfg")
        assert cfg.is_file(), cfg


# --------------------------------------------------------------------------------------------
# Spec §8.1 / §8.2 tables
# --------------------------------------------------------------------------------------------

_ROW = re.compile(
    r"^\|\s*(?P<cfg>[\w./+-]+\.cfg)\s*\|\s*(?P<layers>\d+)\s*\|[^|\n]*\|"
    r"\s*(?P<floats>\d+)\s*\|\s*(?P<bytes>\d+)\s*\|\s*$",
    re.MULTILINE,
)


def _table(section: str, dialect: str) -> list[tuple[str, str, int, int, int]]:
    """Rows of the spec table under heading ``### <section>``: (dialect, cfg, layers, floats,
    bytes)."""
    if not SPEC.is_file():
        return []
    text = SPEC.read_text(encoding="utf-8")
    start = text.index(f"### {section}")
    end = text.find("\n#", start + 1)
    body = text[start : end if end != -1 else len(text)]
    return [
        (dialect, m["cfg"], int(m["layers"]), int(m["floats"]), int(m["bytes"]))
        for m in _ROW.finditer(body)
    ]


def _spec_rows() -> list[Any]:
    rows = _table("8.1", "alexeyab") + _table("8.2", "pjreddie")
    if not rows:
        return [pytest.param(None, id="spec-absent")]
    return [pytest.param(r, id=f"{r[0]}/{r[1]}") for r in rows]


def test_spec_tables_parsed() -> None:
    shared_path("spec", "darknet-format.md")
    # §8 says: 95 AlexeyAB cfgs, 45 pjreddie cfgs.
    assert len(_table("8.1", "alexeyab")) == 95
    assert len(_table("8.2", "pjreddie")) == 45


@pytest.mark.parametrize("row", _spec_rows())
def test_spec_corpus_table(row: tuple[str, str, int, int, int] | None) -> None:
    if row is None:
        shared_path("spec", "darknet-format.md")
        return
    dialect, name, layers, floats, size = row
    path = shared_path("conformance", "cfg", dialect) / name.replace("/", "__")
    if not path.is_file():
        pytest.skip(f"{name} is not in the conformance corpus")
    p = dwf.plan(path, dialect=dialect)
    assert (len(p), p.total_floats, p.expected_size(20)) == (layers, floats, size)
    assert size == 20 + 4 * floats
    if dialect == "pjreddie":
        # §8.2: "identical totals under AlexeyAB semantics".
        ab = dwf.plan(path, dialect="alexeyab")
        assert (len(ab), ab.total_floats) == (layers, floats)


# --------------------------------------------------------------------------------------------
# Spec §7 item 1: published file sizes
# --------------------------------------------------------------------------------------------


def _ab_plan(name: str) -> Plan:
    return dwf.plan(shared_path("conformance", "cfg", "alexeyab", name))


@pytest.mark.parametrize(
    ("cfg", "floats", "size"),
    [
        ("yolov3.cfg", 62_001_757, 248_007_048),
        ("yolov4.cfg", 64_429_405, 257_717_640),
        ("yolov4-tiny.cfg", 6_062_814, 24_251_276),
        ("yolov3-tiny.cfg", 8_858_734, 35_434_956),
    ],
)
def test_published_sizes(cfg: str, floats: int, size: int) -> None:
    p = _ab_plan(cfg)
    assert p.total_floats == floats
    assert p.expected_size(20) == size


@pytest.mark.parametrize(
    ("cfg", "last", "size"),
    [
        ("yolov3.cfg", 74, 162_482_580),  # darknet53.conv.74
        ("yolov3-spp.cfg", 74, 162_482_580),  # same backbone
        ("yolov4.cfg", 136, 170_038_676),  # yolov4.conv.137
    ],
)
def test_published_partial_sizes(cfg: str, last: int, size: int) -> None:
    p = _ab_plan(cfg)
    assert 20 + 4 * p.layers[last].stop == size
    assert p.layers[last].byte_span(20)[1] == size
    # It is a layer boundary: the next stored layer starts right there.
    nxt = next(lp for lp in p.layers[last + 1 :] if lp.arrays)
    assert nxt.offset == p.layers[last].stop
