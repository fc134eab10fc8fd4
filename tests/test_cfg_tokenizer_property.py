"""The tokeniser splits a cfg into sections at C speed and parses a section's options only when
they are read (dwf/format/cfg.py). This checks it against the rules of spec §2.1 written out
plainly, line by line, on generated texts: the same sections, options, lines, warnings and
errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dwf.errors import CfgError
from dwf.format.cfg import tokenize

LINES = [
    "[net]",
    "[network]",
    "[convolutional]",
    "[conv]x",
    "[",
    " [ net ] ",
    "filters=3",
    "filters = 3 2",
    "size=1",
    "key=",
    "key =  ",
    "=5",
    "novalue",
    "#comment",
    " ;comment",
    "k=v#c",
    "",
    " ",
    "\t",
    "\r",
    "x\x00y=1",
    "\x00",
    "\ufeff[net]",
    "\ufeffa=1",
    "a=1\r",
    "[net]\r",
    "\v",
]


def reference(text: str, strip_cr: bool) -> object:
    """Spec §2.1 line by line: (sections as (header, line, options), warnings) or the error."""
    strip = " \t\r" if strip_cr else " \t"
    sections: list[tuple[str, int, list[tuple[str, str | None, int]]]] = []
    warnings: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = "".join(ch for ch in raw.split("\x00", 1)[0] if ch not in strip)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            sections.append((line, number, []))
            continue
        if not sections:
            return ("error", number, line[:60])
        key, eq, value = line.partition("=")
        if not eq:
            sections[-1][2].append((line, None, number))
        elif not value:
            warnings.append((number, f"{line!r} has no value after '='; Darknet skips this line"))
        else:
            sections[-1][2].append((key, value, number))
    if not sections:
        return ("error", None, "no [section]")
    if sections[0][0] not in ("[net]", "[network]"):
        return ("error", sections[0][1], "first section")
    return sections, warnings


def actual(text: str, strip_cr: bool) -> object:
    try:
        doc = tokenize(text, strip_cr=strip_cr)
    except CfgError as e:
        if "no [section]" in e.message:
            return ("error", None, "no [section]")
        if "first section" in e.message:
            return ("error", e.line, "first section")
        line = e.message.split("option line ", 1)[1].split(" comes before", 1)[0]
        return ("error", e.line, eval(line))  # the repr of the line, as the message writes it
    sections = [
        (s.header, s.line, [(o.key, o.value, o.line) for o in s.options]) for s in doc.sections
    ]
    return sections, list(doc.warnings)


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(st.sampled_from(LINES), max_size=14),
    start=st.sampled_from(["[net]", "", "[network]", "#c"]),
    crlf=st.booleans(),
    strip_cr=st.booleans(),
)
def test_tokenizer_follows_the_line_rules(
    lines: list[str], start: str, crlf: bool, strip_cr: bool
) -> None:
    text = ("\r\n" if crlf else "\n").join([start, *lines])
    assert actual(text, strip_cr) == reference(text, strip_cr)


def test_section_lines_and_lazy_options() -> None:
    text = "#top\n[net]\nwidth=8\n\n[convolutional]\nfilters=4\nfilters=5\nsize=\n[route]\nx\n"
    doc = tokenize(text)
    net, conv, route = doc.sections
    assert (net.line, conv.line, route.line) == (2, 5, 9)
    assert conv.get("filters") is not None and conv.get("filters").value == "4"  # type: ignore[union-attr]
    assert [o.line for o in conv.options] == [6, 7]
    assert doc.warnings == ((8, "'size=' has no value after '='; Darknet skips this line"),)
    assert route.get("x") is None and [o.key for o in route.options] == ["x"]
