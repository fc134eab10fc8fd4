"""Recognise a weights file without its cfg, by its float count.

A ``.weights`` body has no names, but its length is a fingerprint: dwf ships the float counts of
Darknet's public cfgs (both code bases) and of the partial backbones their READMEs tell users to
cut (``darknet53.conv.74``, ``yolov4.conv.137``, …), computed by dwf's own planner from those
cfgs (``scripts/make_model_table.py``). Several cfgs can share a count; all are listed.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import attrs

from dwf.errors import HeaderError
from dwf.format.header import Header, other_width, sniff


@attrs.frozen
class Match:
    """A known network whose float count equals the file's.

    Attributes:
        name: cfg name (``yolov4.cfg``) or partial file name (``yolov4.conv.137``).
        kind: ``"model"`` (a complete network) or ``"partial"`` (a ``darknet partial`` cut).
        dialects: the code bases whose cfg this is.
        floats: the float count.
        header_size: the header width with which the file matches.
        cfg: for a partial, the cfg it is cut from; upto: how many layers it keeps.
    """

    name: str
    kind: str
    dialects: tuple[str, ...]
    floats: int
    header_size: int
    cfg: str | None = None
    upto: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf identify --json``)."""
        d = attrs.asdict(self)
        d["dialects"] = list(self.dialects)
        return d


@attrs.frozen
class Identification:
    """What a weights file is, judged from its header and size alone.

    Attributes:
        path: the file.
        size: its size in bytes.
        header: the decoded header (``None`` when the file is not weights at all).
        floats: float32 values after the header (``None`` when not a whole number).
        matches: known networks of exactly that many floats (also with the other header width).
        problem: set when the first bytes show the file is not weights, in plain words.
    """

    path: str
    size: int
    header: Header | None
    floats: int | None
    matches: tuple[Match, ...]
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf identify --json``)."""
        h = self.header
        return {
            "path": self.path,
            "size": self.size,
            "floats": self.floats,
            "problem": self.problem,
            "header": None if h is None else h.to_dict(),
            "matches": [m.to_dict() for m in self.matches],
        }

    def explain(self) -> str:
        """One paragraph saying what the file is."""
        if self.problem:
            return f"{self.path}: {self.problem}"
        head = f"{self.path}: {self.size:,} bytes"
        if self.header is not None:
            head += f", header {self.header.version} ({self.header.size} bytes)"
        if self.floats is not None:
            head += f", {self.floats:,} floats"
        elif self.header is not None:
            return (
                head + "; the body after the header is not a whole number of float32 values"
                " (a truncated or corrupted file)"
            )
        if not self.matches:
            return head + "; no known Darknet cfg has this many floats (a custom network?)"
        parts = []
        for m in self.matches:
            what = f"{m.name} ({', '.join(m.dialects)})"
            if m.kind == "partial":
                what = f"{m.name} (layers 0..{(m.upto or 0) - 1} of {m.cfg})"
            if self.header is not None and m.header_size != self.header.size:
                what += f" with a {m.header_size}-byte header"
            parts.append(what)
        verb = "matches" if len(parts) == 1 else f"matches {len(parts)} known networks:"
        return f"{head}; {verb} {'; '.join(parts)}"


@functools.lru_cache(maxsize=1)
def known_models() -> dict[str, Any]:
    """The table of known float counts (``{"models": [...], "partials": [...]}``)."""
    # A plain path beside the package: importlib.resources would cost more to import than
    # this whole module, and dwf is only ever installed as files (pyproject ships data/).
    where = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "known_models.json")
    with open(where, encoding="utf-8") as fh:
        text = fh.read()
    data: dict[str, Any] = json.loads(text)
    return data


def lookup(floats: int, header_size: int) -> list[Match]:
    """Known networks with exactly ``floats`` floats."""
    table = known_models()
    by_name: dict[str, Match] = {}
    for m in table["models"]:
        if m["floats"] == floats:
            old = by_name.get(m["name"])
            dialects = (*old.dialects, m["dialect"]) if old else (m["dialect"],)
            by_name[m["name"]] = Match(m["name"], "model", dialects, floats, header_size)
    out = list(by_name.values())
    for p in table["partials"]:
        if p["floats"] == floats:
            out.append(
                Match(
                    p["name"], "partial", (p["dialect"],), floats, header_size, p["cfg"], p["upto"]
                )
            )
    return out


def identify_head(path: str, head: bytes, size: int) -> Identification:
    """What a file is, from its first bytes (at least the header; 512 are used to recognise
    other formats) and its size — a pure function: :func:`dwf.identify` reads those from a
    file, and the reader uses this to suggest a cfg when none was found."""
    problem = sniff(head)
    if problem and "byte-swapped" not in problem:
        return Identification(path, size, None, None, (), problem)
    try:
        header = Header.decode(head, path=path)
    except HeaderError as e:
        return Identification(path, size, None, None, (), e.message)
    matches: list[Match] = []
    floats: int | None = None
    for h in (header.size, other_width(header.size)):
        body = size - h
        if body < 0 or body % 4:
            continue
        if h == header.size:
            floats = body // 4
        matches += lookup(body // 4, h)
    return Identification(path, size, header, floats, tuple(matches), problem)
