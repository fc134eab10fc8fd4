"""Recognise a weights file without its cfg, by its float count.

A ``.weights`` body has no names, but its length is a fingerprint: dwf ships the float counts of
Darknet's public cfgs (both code bases) and of the partial backbones their READMEs tell users to
cut (``darknet53.conv.74``, ``yolov4.conv.137``, …), computed by dwf's own planner from those
cfgs (``scripts/make_model_table.py``). Several cfgs can share a count; all are listed.

Most real files are a public network retrained for the user's own classes: only the detection
heads (and the convolutions feeding them) change, so the float count is
``base + per_class * classes``. The table stores ``per_class`` for each detector (measured by
re-planning the cfg at other class counts), and :func:`lookup` solves for the class count. It
also stores the float count through every layer (for ``darknet partial`` cuts) and the floats
of the batch-norm arrays (for a variant saved without batch norm).
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

import attrs

from dwf.errors import HeaderError
from dwf.format.header import Header, other_width, sniff

# Class counts beyond this are not a retrained network but a coincidence of sizes (yolo9000's own
# 9,418 is the largest any public cfg uses).
MAX_CLASSES = 10_000
# A cut at an arbitrary layer boundary is reported without a `.conv.N` name only when it is this
# large: small counts are the first layers of many networks and say nothing.
_MIN_UNNAMED_PARTIAL = 1_000_000

# Rank of a kind of match: what the size alone makes most likely comes first.
_RANKS = {"published": 0, "partial": 1, "retrained": 2, "cut": 3, "no-batch-norm": 4}


@attrs.frozen
class Match:
    """A known network whose float count equals the file's.

    Attributes:
        name: cfg name (``yolov4.cfg``) or partial file name (``yolov4.conv.137``).
        kind: ``"model"`` (a complete network) or ``"partial"`` (a ``darknet partial`` cut).
        dialects: the code bases whose cfg this is.
        floats: the float count.
        header_size: the header width (16 or 20 bytes) with which the file matches.
        cfg: for a partial, the cfg it is cut from; upto: how many layers it keeps.
        classes: the class count the file was trained for (the cfg's own when unchanged);
            ``None`` for a network without detection heads, or a cut before them.
        cfg_classes: the class count the published cfg has.
        batch_normalize: ``False`` for a variant saved without batch norm in every layer.
        variant: ``"published"`` (the cfg as published), ``"retrained"`` (other classes),
            ``"partial"`` (a named backbone), ``"cut"`` (a cut at another layer),
            ``"no-batch-norm"``.
        input_size_free: the network stores nothing that depends on its input size, so the
            input size cannot be told from the weights.
    """

    name: str
    kind: str
    dialects: tuple[str, ...]
    floats: int
    header_size: int
    cfg: str | None = None
    upto: int | None = None
    classes: int | None = None
    cfg_classes: int | None = None
    batch_normalize: bool = True
    variant: str = "published"
    input_size_free: bool = False

    @property
    def retrained(self) -> bool:
        """The class count differs from the published cfg's."""
        return self.classes is not None and self.classes != self.cfg_classes

    def describe(self) -> str:
        """What the match says, in words: ``yolov4-tiny.cfg retrained for 3 classes``."""
        if self.kind == "partial":
            what = f"{self.name} (layers 0..{(self.upto or 0) - 1} of {self.cfg})"
        else:
            what = self.name
        if self.retrained:
            what += f" retrained for {self.classes} classes (published: {self.cfg_classes})"
        if not self.batch_normalize:
            what += " saved without batch norm"
        return f"{what} ({', '.join(self.dialects)})" if self.kind == "model" else what

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf identify --json``)."""
        d = attrs.asdict(self)
        d["dialects"] = list(self.dialects)
        return d


@attrs.frozen
class CfgFit:
    """Another cfg that a file fits (found beside it, or in the identify table).

    Attributes:
        cfg: the cfg as shown to the user (a path relative to the working folder when short).
        how: ``"exact"``, ``"partial"`` (ends on a layer boundary) or ``"classes"`` (fits when
            that cfg's ``classes=`` is changed to :attr:`classes`).
        dialect: the dialect it fits in.
        header_size: the header width it fits with.
        layers: its layer count; floats: its float count (as fitted).
        classes: for ``"classes"``, the class count the file was trained for.
        upto: for ``"partial"``, how many layers the file holds.
    """

    cfg: str
    how: str
    dialect: str
    header_size: int
    layers: int
    floats: int
    classes: int | None = None
    upto: int | None = None

    def describe(self) -> str:
        """``fits ../cfg/trial10.cfg exactly (15 layers, 572,317 floats, alexeyab)``."""
        facts = f"{self.layers} layers, {self.floats:,} floats, {self.dialect}"
        if self.header_size != 20:
            facts += f", {self.header_size}-byte header"
        if self.how == "exact":
            return f"fits {self.cfg} exactly ({facts})"
        if self.how == "partial":
            last = (self.upto or 0) - 1
            return f"fits {self.cfg} as a partial file holding layers 0..{last} ({facts})"
        return f"fits {self.cfg} with classes={self.classes} ({facts})"


@attrs.frozen
class Identification:
    """What a weights file is, judged from its header and size alone.

    Attributes:
        path: the file.
        size: its size in bytes.
        header: the decoded header (``None`` when the file is not weights at all).
        floats: float32 values after the header (``None`` when not a whole number).
        matches: known networks of exactly that many floats (also with the other header width),
            most likely first: as published, named partial backbones, retrained for other
            classes, other cuts, variants without batch norm.
        problem: set when the first bytes show the file is not weights, in plain words.
        near: when nothing matches, the closest known networks, in words.
        fits: cfg files beside the weights that the file fits (:func:`dwf.identify` looks in
            its folder, the parent and their ``cfg/`` folders).
    """

    path: str
    size: int
    header: Header | None
    floats: int | None
    matches: tuple[Match, ...]
    problem: str | None = None
    near: tuple[str, ...] = ()
    fits: tuple[CfgFit, ...] = ()

    @property
    def recognised(self) -> bool:
        """Whether something names what the file is: a known network or a cfg beside it."""
        return bool(self.matches or self.fits)

    @property
    def best(self) -> Match | None:
        """The most likely match."""
        return self.matches[0] if self.matches else None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dwf identify --json``)."""
        h = self.header
        return {
            "path": self.path,
            "size": self.size,
            "floats": self.floats,
            "problem": self.problem,
            "header": None if h is None else h.to_dict(),
            "header_size": None if h is None else h.size,
            "matches": [m.to_dict() for m in self.matches],
            "near": list(self.near),
            "fits": [attrs.asdict(f) for f in self.fits],
        }

    def verdict(self) -> str:
        """What the file is, in a few words (a row of ``dwf identify DIR``'s table)."""
        if self.problem:
            return self.problem.split(":", 1)[0].split(";", 1)[0]
        if self.floats is None and not self.matches:
            return "not whole floats: truncated or corrupted"
        text = ""
        if self.matches:
            text = self.matches[0].describe()
            if len(self.matches) > 1:
                text += f" (+{len(self.matches) - 1} more)"
        if self.fits:
            f = self.fits[0]
            fit = attrs.evolve(f, cfg=f.cfg.replace("\\", "/").rsplit("/", 1)[-1]).describe()
            text = f"{text}; {fit}" if text else fit
        return text or "no known network, no cfg beside it fits"

    def __str__(self) -> str:
        """:meth:`explain`: what ``dwf identify`` prints."""
        return self.explain()

    def explain(self) -> str:
        """One paragraph saying what the file is."""
        if self.problem:
            return f"{self.path}: {self.problem}"
        head = f"{self.path}: {self.size:,} bytes"
        if self.header is not None:
            head += f", header {self.header.version} ({self.header.size} bytes)"
        if self.floats is not None:
            head += f", {self.floats:,} floats"
        elif self.header is not None and not self.matches:
            return (
                head + "; the body after the header is not a whole number of float32 values"
                " (a truncated or corrupted file)" + "".join(f"; {n}" for n in self.near)
            )
        beside = "".join(f"; {f.describe()}" for f in self.fits[:3])
        if not self.matches:
            text = head + "; no known Darknet cfg has this many floats"
            text += "" if self.fits else " (a custom network?)"
            if self.near:
                text += "; closest: " + "; ".join(self.near)
            return text + beside
        parts = []
        for m in self.matches:
            what = m.describe()
            if self.header is not None and m.header_size != self.header.size:
                what += f" with a {m.header_size}-byte header"
            parts.append(what)
        verb = "matches" if len(parts) == 1 else f"matches {len(parts)} known networks:"
        text = f"{head}; {verb} {'; '.join(parts)}"
        ranks = {_RANKS[m.variant] for m in self.matches}
        if len(parts) > 1 and len(ranks) == 1:
            text += " (the size alone cannot tell these apart)"
        best = self.matches[0]
        if best.kind == "model" and best.input_size_free:
            text += "; input size cannot be told from the weights"
        return text + beside


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


def _name_hint(path: str | None) -> tuple[str, int | None]:
    """The file's base name, lower-cased, and N of a ``.conv.N`` suffix."""
    if not path:
        return "", None
    base = os.path.basename(path).lower()
    m = re.search(r"\.conv\.(\d+)$", base)
    return base, int(m.group(1)) if m else None


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(".cfg").lower()


def lookup(floats: int, header_size: int, path: str | None = None) -> list[Match]:
    """Known networks with exactly ``floats`` floats, most likely first.

    ``path`` (the weights file's name) only orders ties and admits cuts named ``.conv.N``.
    """
    table = known_models()
    base_name, conv_n = _name_hint(path)
    found: dict[tuple[Any, ...], Match] = {}

    def add(m: Match) -> None:
        key = (m.name, m.kind, m.upto, m.classes, m.batch_normalize, m.variant)
        old = found.get(key)
        if old is None:
            found[key] = m
        elif m.dialects[0] not in old.dialects:
            found[key] = attrs.evolve(old, dialects=(*old.dialects, *m.dialects))

    for row in table["models"]:
        dialects = (row["dialect"],)
        c0 = row.get("classes")
        per = row.get("per_class", 0)
        free = bool(row.get("size_free"))
        common = {"cfg_classes": c0, "input_size_free": free}
        for bn, variant in ((True, None), (False, "no-batch-norm")):
            total = row["floats"] - (0 if bn else row.get("bn_floats", 0))
            if not bn and total == row["floats"]:
                continue
            if total == floats:
                classes, default = c0, "published"
            elif per and c0 is not None and (floats - total) % per == 0:
                classes, default = c0 + (floats - total) // per, "retrained"
                if not 1 <= classes <= MAX_CLASSES:
                    continue
            else:
                continue
            add(
                Match(
                    row["name"],
                    "model",
                    dialects,
                    floats,
                    header_size,
                    classes=classes,
                    batch_normalize=bn,
                    variant=variant or default,
                    **common,
                )
            )
        stops = row.get("stops") or []
        if floats < row["floats"] and (conv_n is not None or floats >= _MIN_UNNAMED_PARTIAL):
            upto = _cut_at(stops, floats, conv_n)
            if upto is not None:
                add(
                    Match(
                        f"{row['name'].removesuffix('.cfg')}.conv.{upto}",
                        "partial",
                        dialects,
                        floats,
                        header_size,
                        row["name"],
                        upto,
                        variant="cut",
                        input_size_free=free,
                    )
                )
    for p in table["partials"]:
        if p["floats"] == floats:
            add(
                Match(
                    p["name"],
                    "partial",
                    (p["dialect"],),
                    floats,
                    header_size,
                    p["cfg"],
                    p["upto"],
                    variant="partial",
                )
            )
    # A named backbone stands for the cuts of every cfg that shares it.
    named = any(m.variant == "partial" for m in found.values())
    out = [m for m in found.values() if not (named and m.variant == "cut")]

    def order(m: Match) -> tuple[int, int, int, str]:
        stem = _stem(m.cfg or m.name)
        by_name = 0 if stem and base_name.startswith(stem) else 1
        far = abs((m.classes or 0) - (m.cfg_classes or 0))
        return (_RANKS[m.variant], by_name, far, m.name)

    return sorted(out, key=order)


def _cut_at(stops: list[int], floats: int, conv_n: int | None) -> int | None:
    """The layer count of a cut holding ``floats`` floats (the named one if it fits)."""
    if conv_n is not None:
        if 0 < conv_n <= len(stops) and stops[conv_n - 1] == floats:
            return conv_n
        return None
    for i, stop in enumerate(stops):
        if stop == floats:
            # The cut darknet's users make ends right after the last layer with weights.
            return i + 1
        if stop > floats:
            return None
    return None


def near_misses(floats: int, header_size: int, limit: int = 3) -> list[str]:
    """The published networks closest to ``floats``, within 1% (retrained variants are left
    out: with enough classes almost any count comes within a few floats of one)."""
    out: list[tuple[int, str, str]] = []
    for row in known_models()["models"]:
        diff = floats - row["floats"]
        if diff and abs(diff) <= floats // 100:
            rel = "more" if diff > 0 else "fewer"
            out.append(
                (
                    abs(diff),
                    row["name"],
                    f"the file has {abs(diff):,} floats {rel} than"
                    f" {row['name']} ({row['dialect']}): a modified copy (layers or filters"
                    " changed)?",
                )
            )
    out.sort()
    texts: list[str] = []
    names: set[str] = set()
    for _, name, text in out:
        if name not in names:
            names.add(name)
            texts.append(text)
    return texts[:limit]


def _named_like(path: str, size: int, header_size: int) -> tuple[str, ...]:
    """When the file's name is that of a known network or backbone, how big that file is."""
    base = os.path.basename(path)
    table = known_models()
    named = [(p["name"], p["floats"]) for p in table["partials"] if p["name"] == base]
    named += [
        (m["name"], m["floats"])
        for m in table["models"]
        if base in (m["name"].removesuffix(".cfg") + ".weights",)
    ]
    out = []
    for name, floats in named[:1]:
        full = header_size + 4 * floats
        if size < full:
            out.append(
                f"its name is that of {name}, which is {full:,} bytes; this file holds"
                f" {100 * size / full:.1f}% of that: it looks cut off (an interrupted download"
                " or upload)"
            )
    return tuple(out)


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
        why = e.reason  # explain() names the file itself
        return Identification(path, size, None, None, (), why)
    matches: list[Match] = []
    floats: int | None = None
    for h in (header.size, other_width(header.size)):
        body = size - h
        if body < 0 or body % 4:
            continue
        if h == header.size:
            floats = body // 4
        matches += lookup(body // 4, h, path)
    # The version's own width first, then the other (a known writer bug, docs/format.md §1.5).
    matches.sort(key=lambda m: (_RANKS[m.variant], m.header_size != header.size))
    near: tuple[str, ...] = ()
    if not matches and floats is not None:
        near = tuple(near_misses(floats, header.size))
    if not matches:
        near += _named_like(path, size, header.size)
    return Identification(path, size, header, floats, tuple(matches), problem, near)
