"""Darknet cfg tokenising, exactly as Darknet's ``read_cfg`` does it (spec §2.1).

Darknet deletes every whitespace character anywhere in a line (so ``filters = 3 2`` is
``filters=32``), ignores lines starting with ``#`` or ``;`` once stripped, never strips inline
comments (``filters=40#32`` is read by ``atoi`` as 40), keeps the *first* of duplicate keys, and
reads numbers with C's ``atoi``/``atof``: the longest numeric prefix, garbage ignored, no digits
meaning 0. This module reproduces that and remembers the line of every section and option, so
every later error can point at the line that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

import attrs

from dwf.errors import CfgError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# C isspace() also covers \v and \f, which atoi skips before the number; strip() does not remove
# them (spec §2.1), so they can survive into a value.
# ASCII digits only: C's atoi/atof do not read other scripts' digits (Python's \d would).
_ATOI = re.compile(r"[ \t\n\r\v\f]*([+-]?[0-9]+)")
_ATOF = re.compile(
    r"[ \t\n\r\v\f]*([+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan))",
    re.IGNORECASE,
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


class Section:
    """One ``[section]`` of a cfg and its options.

    Attributes:
        header: the stripped section line, brackets included (``"[convolutional]"``); Darknet
            compares this whole string, so ``[conv]x`` is an unknown section.
        line: 1-based line number of the section header.
        options: every option line, in file order (duplicates included).
    """

    __slots__ = ("_first", "header", "line", "options")

    def __init__(self, header: str, line: int, options: tuple[Option, ...]) -> None:
        self.header = header
        self.line = line
        self.options = options
        first: dict[str, Option] = {}
        for opt in options:
            if opt.key not in first:
                first[opt.key] = opt
        self._first = first

    def __repr__(self) -> str:
        return f"Section({self.header!r}, line={self.line}, {len(self.options)} options)"

    @property
    def name(self) -> str:
        """The section name without brackets (``"convolutional"`` for ``[convolutional]``)."""
        h = self.header[1:] if self.header.startswith("[") else self.header
        return h[:-1] if h.endswith("]") else h

    def get(self, key: str) -> Option | None:
        """The option Darknet's lookup finds for ``key`` (the first one), or ``None``."""
        opt = self._first.get(key)
        if opt is None or opt.value is None:
            return None
        return opt

    def __iter__(self) -> Iterator[Option]:
        return iter(self.options)


@attrs.frozen(eq=False)
class CfgDocument:
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


def tokenize(text: str, *, path: str | None = None, strip_cr: bool = True) -> CfgDocument:
    """Split cfg text into sections and options with Darknet's rules.

    ``strip_cr`` is AlexeyAB's behaviour (``\\r`` counts as whitespace); pjreddie keeps it, which
    breaks CRLF files there exactly as it does in Darknet.

    Raises:
        CfgError: options before the first section, no sections at all, or a first section that
            is not ``[net]``/``[network]`` (Darknet refuses all three).
    """
    table = _STRIP_AB if strip_cr else _STRIP_PJ
    sections: list[Section] = []
    warnings: list[tuple[int, str]] = []
    header: str | None = None
    header_line = 0
    options: list[Option] = []
    if "\x00" in text:
        # fgetl hands Darknet a C string: anything after a NUL byte does not exist for it.
        raw_lines = [raw.split("\x00", 1)[0] for raw in text.split("\n")]
        lines = [raw.translate(table) for raw in raw_lines]
    else:
        # One translate over the whole text: the same as stripping every line, much faster.
        lines = text.translate(table).split("\n")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        first = line[0]
        if first == "#" or first == ";":
            continue
        if first == "[":
            if header is not None:
                sections.append(Section(header, header_line, tuple(options)))
            header, header_line, options = line, number, []
            continue
        if header is None:
            hint = ""
            if first == "\ufeff":
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
        key, eq, value = line.partition("=")
        if not eq:
            options.append(Option(line, None, number))
        elif not value:
            warnings.append(
                (number, f"{shorten(line)!r} has no value after '='; Darknet skips this line")
            )
        else:
            options.append(Option(key, value, number))
    if header is not None:
        sections.append(Section(header, header_line, tuple(options)))
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
    if value.isascii() and value.isdigit():  # the common case: plain digits
        if len(value.lstrip("0")) > _INT_DIGITS:
            return None
        n = int(value)
        return n if n <= INT32_MAX else None
    m = _ATOI.match(value)
    if m is None:
        return 0
    if len(m.group(1).lstrip("+-").lstrip("0")) > _INT_DIGITS:
        return None
    n = int(m.group(1))
    if n < INT32_MIN or n > INT32_MAX:
        return None
    return n


def atof(value: str) -> float:
    """C ``atof``: the leading floating-point number of ``value``; 0.0 when there is none."""
    m = _ATOF.match(value)
    if m is None:
        return 0.0
    return float(m.group(1))


def int_list(value: str) -> list[int | None]:
    """Darknet's list parsing for ``layers=``/``from=``: one ``atoi`` per comma-separated item.

    The count is the number of commas plus one, so a trailing comma adds an item ``atoi("")``
    = 0 (absolute layer 0), exactly as Darknet does.
    """
    return [atoi(part) for part in value.split(",")]
