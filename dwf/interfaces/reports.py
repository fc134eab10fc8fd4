"""Reports as tables: text for ``print(report)`` and the command line, HTML for a notebook.

:class:`dwf.CheckReport`, :class:`dwf.StatsReport`, :class:`dwf.DiffReport`, a :class:`dwf.Row`
and :class:`dwf.Rows` (the rows of a many-file run, collected) print as the command line prints
them and display as tables in a notebook. The records live in the tools layer, below this one:
their ``__str__`` and ``_repr_html_`` call :func:`text` and :func:`html` through
:mod:`dwf.io.extensions`, as the reader's convenience methods do.
"""

from __future__ import annotations

import html as _html
import textwrap
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dwf.interfaces.cli import render
from dwf.interfaces.display import _STYLE as STYLE
from dwf.tools.stats import MISMATCH_CAUTION, StatsReport

if TYPE_CHECKING:
    from dwf.tools.check import CheckReport
    from dwf.tools.diff import DiffReport

# The command line's `dwf stats` and `dwf diff` print with this module, and each imports only
# its own tools: the records of the other verbs are imported where an object may be one.

Table = tuple[Sequence[str], list[Sequence[str]], Sequence[int]]  # headers, rows, right-aligned


# -- the tables, once for text and HTML ---------------------------------------------------------
def stats_table(report: StatsReport) -> Table:
    """One row per array: min, max, mean, std, absmax, zeros, NaN, Inf."""
    g = render.g
    rows: list[Sequence[str]] = [
        (
            e.layer,
            e.array,
            g(e.stats.min),
            g(e.stats.max),
            g(e.stats.mean),
            g(e.stats.std),
            g(e.stats.absmax),
            f"{e.stats.zero_fraction:.1%}",
            str(e.stats.nan),
            str(e.stats.inf),
        )
        for e in report.arrays
    ]
    headers = ("layer", "array", "min", "max", "mean", "std", "absmax", "zeros", "nan", "inf")
    return headers, rows, range(2, 10)


def diff_table(report: DiffReport, *, show_all: bool = False) -> Table:
    """One row per changed array (or every array): max |Δ|, relative L2, cosine."""
    g = render.g
    shown = report.arrays if show_all else report.changed
    rows: list[Sequence[str]] = [
        (d.layer, d.array, g(d.max_abs), g(d.rel_l2), g(d.cosine), "yes" if d.identical else "no")
        for d in shown
    ]
    return ("layer", "array", "max |Δ|", "rel L2", "cosine", "identical"), rows, (2, 3, 4)


def check_table(report: CheckReport) -> Table:
    """One row per finding."""
    rows: list[Sequence[str]] = [
        (x.severity, f"{x.layer}.{x.array}", x.kind, f"{x.count:,}", x.message)
        for x in report.findings
    ]
    return ("severity", "array", "kind", "count", "what"), rows, (3,)


def _counted(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def stats_head(report: StatsReport) -> str:
    """``path: 49 arrays``."""
    return f"{report.path}: {_counted(len(report.arrays), 'array')}"


def diff_head(report: DiffReport) -> list[str]:
    """The files, the change in ``seen``, the counts, what only one file holds."""
    fmt = render.fmt
    delta = report.seen_b - report.seen_a
    changed = len(report.changed)
    lines = [
        f"A: {report.a}",
        f"B: {report.b}",
        f"seen: {fmt(report.seen_a)} → {fmt(report.seen_b)}"
        f" ({'+' if delta >= 0 else ''}{fmt(delta)})",
        f"{_counted(len(report.arrays), 'array')} compared: {changed:,} changed,"
        f" {len(report.arrays) - changed:,} identical",
    ]
    if report.identical:
        lines.append("identical everywhere")
    for what, names in (
        ("only in A", report.only_a),
        ("only in B", report.only_b),
        ("shapes differ", report.shape_mismatch),
    ):
        if names:
            lines.append(f"{what}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}")
    return lines


def summary(result: Any) -> str:
    """A report in a few words (a row of a many-file table)."""
    from dwf.format.known import Identification
    from dwf.tools.check import CheckReport
    from dwf.tools.diff import DiffReport
    if isinstance(result, CheckReport):
        return ", ".join(
            _counted(result.count(s), n)
            for s, n in (("error", "error"), ("warning", "warning"), ("info", "note"))
        )
    if isinstance(result, StatsReport):
        return _counted(len(result.arrays), "array")
    if isinstance(result, DiffReport):
        changed = len(result.changed)
        return f"{changed:,} changed, {len(result.arrays) - changed:,} identical"
    if isinstance(result, Identification):
        return result.verdict()
    return str(result)


# -- text -----------------------------------------------------------------------------------------
def _caution(what: str, width: int | None) -> list[str]:
    line = "  " + MISMATCH_CAUTION.format(what=what)
    if width is None:
        return [line]
    return textwrap.wrap(line, width, initial_indent="", subsequent_indent="  ")


def stats_intro(report: StatsReport, width: int | None = None) -> list[str]:
    """The lines before the table of ``dwf stats``: the file, and a caution for a file that
    does not fit its cfg."""
    return [stats_head(report), *(_caution("statistics", width) if report.mismatch else [])]


def stats_lines(report: StatsReport, width: int | None = None) -> list[str]:
    """What ``dwf stats`` prints: one line naming the file, then one table row per array."""
    headers, rows, right = stats_table(report)
    table = render.table(headers, rows, right=right, width=width)
    return [*stats_intro(report, width), *table]


def diff_lines(
    report: DiffReport, *, show_all: bool = False, width: int | None = None
) -> list[str]:
    """What ``dwf diff A B`` prints: the files, the counts, a row per changed array."""
    headers, rows, right = diff_table(report, show_all=show_all)
    table = render.table(headers, rows, right=right, width=width) if rows else []
    return [*diff_head(report), *table]


def rows_table(rows: Iterable[Any]) -> Table:
    """One row per file of a many-file run: the file and its report in a few words (or why it
    could not be read); a report given without its row (a drift series' DiffReports) names
    its file itself."""
    from dwf.tools.batch import Row
    from dwf.tools.diff import DiffReport
    body: list[Sequence[str]] = []
    for row in rows:
        if isinstance(row, Row):
            what = summary(row.result) if row.result is not None else f"error: {row.error}"
            body.append((row.path, what))
        elif isinstance(row, DiffReport):
            body.append((f"{row.a} → {row.b}", summary(row)))
        else:
            body.append((str(getattr(row, "path", "")), summary(row)))
    return ("file", "result"), body, ()


def rows_lines(rows: Iterable[Any], width: int | None = None) -> list[str]:
    """:func:`rows_table` as text."""
    headers, body, right = rows_table(rows)
    return render.table(headers, body, right=right, width=width)


def text(obj: Any) -> str:
    """``str()`` of a report, a row or rows: what the command line prints, uncut."""
    from dwf.format.known import Identification
    from dwf.tools.batch import Row
    from dwf.tools.check import CheckReport
    from dwf.tools.diff import DiffReport
    if isinstance(obj, CheckReport):
        return obj.explain()
    if isinstance(obj, StatsReport):
        return "\n".join(stats_lines(obj))
    if isinstance(obj, DiffReport):
        return "\n".join(diff_lines(obj))
    if isinstance(obj, Row):
        if obj.result is None:
            return f"{obj.path}: error: {obj.error}"
        return str(obj.result)
    if isinstance(obj, Identification):
        return obj.explain()
    return "\n".join(rows_lines(obj))


# -- HTML -----------------------------------------------------------------------------------------
def _e(x: object) -> str:
    return _html.escape(str(x))


def _html_table(table: Table) -> str:
    headers, rows, right = table
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{_e(c)}</td>" if i in right else f"<td>{_e(c)}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _box(*parts: str) -> str:
    return f"{STYLE}<div class='dwf'>{''.join(parts)}</div>"


def html(obj: Any) -> str:
    """The notebook display (``_repr_html_``) of a report, a row or rows: a table."""
    from dwf.format.known import Identification
    from dwf.tools.batch import Row
    from dwf.tools.check import CheckReport
    from dwf.tools.diff import DiffReport
    if isinstance(obj, CheckReport):
        head = _e(obj.explain().splitlines()[0])
        caution = (
            f"<br><span class='miss'>{_e(MISMATCH_CAUTION.format(what='findings'))}</span>"
            if obj.mismatch
            else ""
        )
        warnings = "".join(f"<br>cfg: {_e(w)}" for w in obj.cfg_warnings)
        found = _html_table(check_table(obj)) if obj.findings else ""
        return _box(f"<b>{head}</b>", caution, found, warnings)
    if isinstance(obj, StatsReport):
        caution = (
            f"<br><span class='miss'>{_e(MISMATCH_CAUTION.format(what='statistics'))}</span>"
            if obj.mismatch
            else ""
        )
        return _box(f"<b>{_e(stats_head(obj))}</b>", caution, _html_table(stats_table(obj)))
    if isinstance(obj, DiffReport):
        lines = "<br>".join(_e(line) for line in diff_head(obj))
        changed = diff_table(obj)
        return _box(lines, _html_table(changed) if changed[1] else "")
    if isinstance(obj, Row):
        if obj.result is None:
            return _box(f"<b>{_e(obj.path)}</b>: <span class='miss'>error: {_e(obj.error)}</span>")
        inner = getattr(obj.result, "_repr_html_", None)
        return inner() if callable(inner) else _box(_e(text(obj)))
    if isinstance(obj, Identification):
        return _box(_e(obj.explain()))
    files = rows_table(obj)
    return _box(f"<b>{_counted(len(files[1]), 'file')}</b>", _html_table(files))
