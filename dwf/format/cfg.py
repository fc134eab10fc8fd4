"""Darknet cfg tokenising, exactly as Darknet's ``read_cfg`` does it (docs/format.md §2.1).

Darknet deletes every whitespace character anywhere in a line (so ``filters = 3 2`` is
``filters=32``), ignores lines starting with ``#`` or ``;`` once stripped, never strips inline
comments (``filters=40#32`` is read by ``atoi`` as 40), keeps the *first* of duplicate keys, and
reads numbers with C's ``atoi``/``atof``: the longest numeric prefix, garbage ignored, no digits
meaning 0. This module reproduces that and remembers the line of every section and option, so
every later error can point at the line that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from dwf.errors import CfgError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# C isspace() also covers \v and \f, which atoi skips before the number; strip() does not remove
# them (docs/format.md §2.1), so they can survive into a value.
# ASCII digits only: C's atoi/atof do not read other scripts' digits (Python's \d would).
# Strings, not compiled patterns: re compiles (and caches) them on first use, so importing the
# tokeniser costs nothing for the cfgs (nearly all) whose numbers are plain digits.
_ATOI = r"[ \t\n\r\v\f]*([+-]?[0-9]+)"
# C's atof is strtod: decimal, hexadecimal ("0x1.8p3") and inf/infinity/nan, any case.
_ATOF = (
    r"(?i)[ \t\n\r\v\f]*([+-]?)(?:"
    r"0x((?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    r"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf(?:inity)?|nan))"
)
# More significant digits than any C int has: out of range without converting (int() of
# thousands of digits is slow, and refused past 4300 digits).
_INT_DIGITS = 10


class Option(NamedTuple):
    """One ``key=value`` line of a section.

    Attributes:
        key: the key, whitespace removed.
        value: the value, whitespace removed; ``None`` for a line without ``=`` (Darknet stores
            it but every lookup treats it as absent).
        line: 1-based line number in the cfg.
    """

    key: str
    value: str | None
    line: int


# An option line as the tokeniser reads it: (key, value or None for a line without "=", line).
_Raw = tuple[str, "str | None", int]


class _Body(NamedTuple):
    """What a section body says, read once per distinct body text and shared by every section
    with the same text (a network repeats its blocks): lines are counted from the header."""

    raw: tuple[_Raw, ...]  # every option line; the line is an offset (1 = just after the header)
    values: dict[str, str | None]  # key → value of its first line (what Darknet's lookup finds)
    no_value: tuple[tuple[int, str], ...]  # (offset, text) of "key=" lines, which Darknet skips


def _read_body(body: str) -> _Body:
    raw: list[_Raw] = []
    values: dict[str, str | None] = {}
    no_value: list[tuple[int, str]] = []
    for offset, line in enumerate(body.split("\n"), start=1):
        if not line or line[0] == "#" or line[0] == ";":
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raw.append((line, None, offset))
            values.setdefault(line, None)
        elif not value:
            no_value.append((offset, line))
        else:
            raw.append((key, value, offset))
            values.setdefault(key, value)
    return _Body(tuple(raw), values, tuple(no_value))


class Section:
    """One ``[section]`` of a cfg and its options.

    Attributes:
        header: the stripped section line, brackets included (``"[convolutional]"``); Darknet
            compares this whole string, so ``[conv]x`` is an unknown section.
        line: 1-based line number of the section header.
        body: the lines after the header up to the next section, whitespace removed (comments
            and empty lines included): two sections with the same body give every lookup the
            same answer.
        options: every option line, in file order (duplicates included).
        values: key → the value of the first line with that key, the one Darknet's lookup
            finds (``None`` for a line without ``=``). Read-only.
        first: key → ``(key, value, line)`` of that first line. Read-only.
    """

    __slots__ = ("_body", "_first", "_shared", "body", "header", "line")

    def __init__(
        self, header: str, line: int, body: str, shared: dict[str, _Body] | None = None
    ) -> None:
        self.header = header
        self.line = line
        self.body = body
        # Read on first use, once per distinct body text of a document (``shared``): the planner
        # reuses what it computed for an identical section without reading this one's options,
        # and sections with the same text but another input read the same parse.
        self._shared = shared
        self._body: _Body | None = None
        self._first: dict[str, _Raw] | None = None

    def _parsed(self) -> _Body:
        b = self._body
        if b is None:
            shared = self._shared
            b = shared.get(self.body) if shared is not None else None
            if b is None:
                b = _read_body(self.body)
                if shared is not None:
                    shared[self.body] = b
            self._body = b
        return b

    @property
    def values(self) -> Mapping[str, str | None]:
        """Key → the value Darknet's lookup finds for it (see the class attributes). Shared by
        the sections of a document with the same text: read it, never change it."""
        return self._parsed().values

    @property
    def first(self) -> dict[str, _Raw]:
        """Key → the option line Darknet's lookup finds for it (see the class attributes)."""
        if self._first is None:
            first: dict[str, _Raw] = {}
            for key, value, offset in self._parsed().raw:
                if key not in first:
                    first[key] = (key, value, self.line + offset)
            self._first = first
        return self._first

    @property
    def skipped(self) -> list[tuple[int, str]]:
        """``(line, text)`` of the ``key=`` lines without a value, which Darknet skips."""
        return [(self.line + offset, text) for offset, text in self._parsed().no_value]

    @property
    def lines(self) -> tuple[tuple[str, str | None, int], ...]:
        """Every option line as ``(key, value, offset)``, in file order (duplicates included;
        ``value`` ``None`` for a line without ``=``), ``offset`` counted from the header line:
        the same for every section with this text (shared, nothing built per call)."""
        return self._parsed().raw

    @property
    def options(self) -> tuple[Option, ...]:
        """Every option line, in file order (duplicates included)."""
        line = self.line
        return tuple(Option(k, v, line + offset) for k, v, offset in self._parsed().raw)

    def __repr__(self) -> str:
        return f"Section({self.header!r}, line={self.line}, {len(self.options)} options)"

    @property
    def name(self) -> str:
        """The section name without brackets (``"convolutional"`` for ``[convolutional]``)."""
        h = self.header[1:] if self.header.startswith("[") else self.header
        return h[:-1] if h.endswith("]") else h

    def get(self, key: str) -> Option | None:
        """The option Darknet's lookup finds for ``key`` (the first one), or ``None``."""
        raw = self.first.get(key)
        if raw is None or raw[1] is None:
            return None
        return Option._make(raw)

    def value(self, key: str) -> str | None:
        """The value of the option Darknet's lookup finds for ``key``, or ``None``."""
        return self._parsed().values.get(key)

    def __iter__(self) -> Iterator[Option]:
        return iter(self.options)


class CfgDocument(NamedTuple):
    """A tokenised cfg: its sections, in order, and what Darknet would have warned about.

    Attributes:
        path: the file it came from, or ``None`` for text.
        sections: every section, ``[net]`` first.
        warnings: ``(line, message)`` for lines Darknet skips with a warning.
    """

    path: str | None
    sections: tuple[Section, ...]
    warnings: tuple[tuple[int, str], ...]


def _strip_table(strip_cr: bool) -> dict[int, None]:
    # "\n" needs no entry: the text is split on it before anything else.
    chars = " \t\r" if strip_cr else " \t"
    return {ord(ch): None for ch in chars}


_STRIP_AB = _strip_table(True)
_STRIP_PJ = _strip_table(False)


def _check_preamble(chunk: str, path: str | None) -> None:
    """Lines before the first section may only be empty or comments (Darknet crashes else)."""
    for number, line in enumerate(chunk.split("\n"), start=1):
        if not line or line[0] == "#" or line[0] == ";":
            continue
        hint = ""
        if line[0] == "\ufeff":
            hint = (
                " The file starts with a UTF-8 byte-order mark (BOM), which Darknet does not"
                " skip; save the cfg without a BOM."
            )
        raise CfgError(
            f"option line {line[:60]!r} comes before any [section]; Darknet crashes on"
            f" such a cfg.{hint}",
            path=path,
            line=number,
        )


def tokenize(text: str, *, path: str | None = None, strip_cr: bool = True) -> CfgDocument:
    """Split cfg text into sections and options with Darknet's rules.

    ``strip_cr`` is AlexeyAB's behaviour (``\\r`` counts as whitespace); pjreddie keeps it, which
    breaks CRLF files there exactly as it does in Darknet.

    Raises:
        CfgError: options before the first section, no sections at all, or a first section that
            is not ``[net]``/``[network]`` (Darknet refuses all three).
    """
    table = _STRIP_AB if strip_cr else _STRIP_PJ
    if "\x00" in text:
        # fgetl hands Darknet a C string: anything after a NUL byte does not exist for it.
        text = "\n".join(raw.split("\x00", 1)[0] for raw in text.split("\n"))
    # Whitespace goes from everywhere at once (the same as stripping every line), and with it
    # every line starting with "[" is a section header: splitting at "\n[" cuts the text into
    # sections without looking at each line in Python.
    chunks = text.translate(table).split("\n[")
    sections: list[Section] = []
    warnings: list[tuple[int, str]] = []
    shared: dict[str, _Body] = {}
    number = 1  # the line each chunk starts on
    for i, chunk in enumerate(chunks):
        start = number
        number += chunk.count("\n") + 1
        if i == 0 and not chunk.startswith("["):
            _check_preamble(chunk, path)
            continue
        head, _, body = chunk.partition("\n")
        sec = Section(head if i == 0 else "[" + head, start, body, shared)
        if "=\n" in body or body.endswith("="):  # a "key=" line, maybe: warn now, in order
            for line, skipped in sec.skipped:
                msg = f"{shorten(skipped)!r} has no value after '='; Darknet skips this line"
                warnings.append((line, msg))
        sections.append(sec)
    if not sections:
        raise CfgError(
            "no [section] found: this is not a Darknet cfg (it must start with [net])", path=path
        )
    if sections[0].header not in ("[net]", "[network]"):
        s = sections[0]
        hint = ""
        if s.header.rstrip("\r") in ("[net]", "[network]"):
            hint = (
                " The line ends with a carriage return (Windows line ending), which pjreddie's"
                " Darknet keeps; convert the cfg to Unix line endings or use dialect 'alexeyab'."
            )
        raise CfgError(
            f"the first section is {shorten(s.header)!r}, but Darknet requires [net] or"
            " [network] first."
            + hint,
            path=path,
            line=s.line,
        )
    return CfgDocument(path, tuple(sections), tuple(warnings))


QUOTE_LIMIT = 200


def shorten(token: str, limit: int = QUOTE_LIMIT) -> str:
    """``token`` as a message may quote it: at most about ``limit`` characters, the cut marked.

    A cfg line can be megabytes long; an error that echoed it whole would bury the message.
    """
    if len(token) <= limit:
        return token
    keep = max(limit - 40, 1)
    return f"{token[:keep]}…[{len(token) - keep:,} more characters]"


def atoi(value: str) -> int | None:
    """C ``atoi``: the leading integer of ``value`` (``"40#32"`` → 40); 0 when there is none.

    Returns ``None`` when the number does not fit a C ``int`` (Darknet's behaviour is then
    undefined; callers turn that into an error).
    """
    n = ATOI_SEEN.get(value)
    if n is None:
        n = _atoi(value)
        # Only short values are remembered: a hostile cfg's megabyte-long values must not stay
        # pinned here after its plan is gone; the table is emptied when it fills.
        if n is not None and len(value) <= 64:
            if len(ATOI_SEEN) >= 4096:
                ATOI_SEEN.clear()
            ATOI_SEEN[value] = n
    return n


# A network repeats a handful of values ("1", "3", "-1") hundreds of times: each distinct string
# is converted once. A plain dict, not functools.lru_cache, so that the planner's hottest call
# (LayerInput.num, ~18 per convolution) can look a value up without a function call. Only atoi
# writes it; readers must treat a miss as "call atoi".
ATOI_SEEN: dict[str, int] = {}


def _atoi(value: str) -> int | None:
    # The common cases, "32" and "-1", without a regex (compiling one costs more than planning
    # a small network).
    digits = value[1:] if value[:1] in ("-", "+") else value
    if digits.isascii() and digits.isdigit():
        return _c_int(value[:1] == "-", digits)
    m = re.match(_ATOI, value)
    if m is None:
        return 0
    number = m.group(1)
    return _c_int(number[0] == "-", number.lstrip("+-"))


def _c_int(negative: bool, digits: str) -> int | None:
    """The C int a run of ASCII digits spells, or ``None`` past 32 bits. Leading zeros are
    dropped before converting: C reads any number of them, while Python's ``int()`` refuses
    strings of more than 4,300 digits."""
    significant = digits.lstrip("0")
    if len(significant) > _INT_DIGITS:
        return None
    n = int(significant or "0")
    if negative:
        n = -n
    return n if INT32_MIN <= n <= INT32_MAX else None


def atof(value: str) -> float:
    """C ``atof`` (``strtod``): the leading floating-point number of ``value`` (``"1.05#tuned"``
    → 1.05, ``"0x1p-2"`` → 0.25, ``"1e999"`` → inf); 0.0 when there is none. Darknet reads
    every real-valued option with it (``scale_x_y``, ``alpha``, ``anchors`` …)."""
    # Plain decimals ("0.5", "1.05", ".0001") without a regex: float() reads them exactly as
    # strtod does. Anything else (signs, exponents, junk, "1_0", which float() would accept)
    # goes through the pattern.
    if value.isascii() and value.replace(".", "", 1).isdigit():
        return float(value)
    m = re.match(_ATOF, value)
    if m is None:
        return 0.0
    sign, hexa, dec = m.groups()
    x = float.fromhex(hexa) if hexa is not None else float(dec)
    return -x if sign == "-" else x


_DIGITS = frozenset("0123456789")


def has_number(value: str, *, floating: bool = False) -> bool:
    """Whether C's ``atoi`` (``atof`` when ``floating``) finds a number at the start of
    ``value``: ``"abc"`` and ``""`` have none (Darknet then reads 0 without a word), ``"40#32"``
    has one."""
    # A leading ASCII digit (or a sign and one; for atof also ".5") is a number: the common case
    # (the planner screens every option value), decided without the regular expression.
    # str.isdigit() alone would take other scripts' digits ("\u0661"), which C does not read.
    first = value[:1]
    if first in _DIGITS:
        return True
    if first in ("+", "-") or (floating and first == "."):
        second = value[1:2]
        if second in _DIGITS or (floating and second == "." and value[2:3] in _DIGITS):
            return True
    return re.match(_ATOF if floating else _ATOI, value) is not None


def int_list(value: str, *, stop_at_hash: bool = False) -> list[int | None]:
    """Darknet's list parsing for ``layers=``/``from=``/``mask=``: one ``atoi`` per
    comma-separated item, :func:`list_count` items (``None`` for one that does not fit an int).

    The count is the number of commas plus one, so a trailing comma adds an item ``atoi("")``
    = 0 (absolute layer 0), exactly as Darknet does.
    """
    parts = value.split(",")
    if stop_at_hash:
        parts = parts[: list_count(value, stop_at_hash=True)]
    return [atoi(part) for part in parts]


def list_count(value: str, *, stop_at_hash: bool = False) -> int:
    """How many items Darknet reads from a comma-separated list option: the commas plus one,
    counting only those before the first ``#`` when ``stop_at_hash`` (AlexeyAB's ``mask=`` and
    ``[yolo]`` ``anchors=``; a :class:`dwf.format.dialects.Dialect` switch)."""
    if stop_at_hash:
        value = value.split("#", 1)[0]
    return value.count(",") + 1


def float_list(value: str, *, stop_at_hash: bool = False) -> list[float]:
    """A list option of reals (``anchors=``) as Darknet reads it: :func:`list_count` items,
    each ``atof`` of the text after the previous comma (so ``"1,2#x"`` is ``[1.0, 2.0]``)."""
    parts = value.split(",")
    return [atof(part) for part in parts[: list_count(value, stop_at_hash=stop_at_hash)]]
