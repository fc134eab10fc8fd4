"""Output of the command line: tables, the progress bar, ``--json`` documents, numbers.

Everything a command prints on standard output goes through :func:`echo` (text) or :func:`dump`
(JSON), so that a failing standard output (a full disk, ``> /dev/full``) becomes one
``dwf: error:`` line instead of a traceback, and file names that are not UTF-8 still print.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from dwf.errors import DwfError, short_path

TABLE_WIDTH = 100  # tables fit this many columns when standard output is not a terminal
BIG_FILE = 1 << 30  # long work: show progress on a terminal beyond this many bytes


class OutputError(DwfError):
    """Standard output cannot be written (``ENOSPC``, ``> /dev/full``, a closed terminal)."""


# ``--markdown``: tables as Markdown tables, text lines as paragraphs (for an issue or a PR).
# Off: None; on: whether anything was printed yet (blocks after the first get a blank line).
_MARKDOWN: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "markdown", default=None
)


def markdown_on() -> bool:
    """Whether the command runs with ``--markdown``."""
    return _MARKDOWN.get() is not None


@contextlib.contextmanager
def markdown(on: bool) -> Iterator[None]:
    """Within the block, :func:`echo` and :func:`print_table` write Markdown (when ``on``)."""
    token = _MARKDOWN.set([False] if on else None)
    try:
        yield
    finally:
        _MARKDOWN.reset(token)


# -- text ---------------------------------------------------------------------------------------
def printable(text: str, stream: TextIO) -> str:
    """``text`` as ``stream`` can encode it: what it cannot (file names that are not UTF-8,
    held as surrogates) becomes backslash escapes instead of an error."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        try:
            return text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def echo(text: str = "") -> None:
    """Print one line (or several) on standard output (with ``--markdown``:
    :func:`as_markdown`)."""
    md = _MARKDOWN.get()
    if md is not None and text:
        text = ("\n" if md[0] else "") + as_markdown(text)
        md[0] = True
    out = sys.stdout
    try:
        out.write(printable(text, out) + "\n")
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None


def as_markdown(text: str) -> str:
    """Text lines as Markdown: each line its own paragraph (so that none runs into the next),
    except the lines of a Markdown table (starting with ``|``), which stay together."""
    blocks: list[str] = []
    rows: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows:
            blocks.append("\n".join(rows))
            rows = []
        if line:
            blocks.append(line)
    if rows:
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def flush() -> None:
    """Flush standard output, so that a write error surfaces while it can still be reported."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None


# -- many files ---------------------------------------------------------------------------------
def note(message: str) -> None:
    """A one-line ``dwf: note:`` on standard error: worth saying, not an error."""
    with contextlib.suppress(OSError):
        sys.stderr.write(printable(f"dwf: note: {one_line(message)}", sys.stderr) + "\n")


def warn(message: str) -> None:
    """A one-line ``dwf: warning:`` on standard error: the result stands, but may mislead (a
    plan's warning, with its cfg line; seen going backwards in a diff)."""
    with contextlib.suppress(OSError):
        sys.stderr.write(printable(f"dwf: warning: {one_line(message)}", sys.stderr) + "\n")


def one_line(message: str) -> str:
    """``message`` on one line: its lines stripped and joined with ``; `` (the command line's
    contract is one error line, which scripts and logs can take whole)."""
    return "; ".join(part for part in (ln.strip() for ln in message.splitlines()) if part)


def rows(
    label: str,
    results: Iterator[Any],
    json_lines: bool,
    text: Callable[[Any], str],
    finding: Callable[[Any], bool],
) -> int:
    """Print a many-file run as its rows arrive: a report per file (or with ``--json`` one JSON
    object per line), an ``error:`` line for a file that could not be read. Exit code: 2 if any
    file could not be read, else 1 if any has findings, else 0."""
    bad = found = done = 0
    bar = Progress(label, unit=1, always=True, files=True)
    try:
        for row in results:
            done += 1
            bar.close()
            if json_lines:
                echo(json.dumps(jsonable(row.to_dict()), allow_nan=False))
            elif row.result is None:
                why = str(row.error)
                prefixes = (f"{row.path}: ", f"{short_path(row.path)}: ")
                why = next((why[len(p) :] for p in prefixes if why.startswith(p)), why)
                echo(f"{row.path}: error: {one_line(why)}")
            else:
                echo(text(row.result))
            if row.result is None:
                bad += 1
            elif finding(row.result):
                found += 1
            flush()
            bar(done, 0, row.path.rsplit("/", 1)[-1])
    finally:
        bar.close()
    return 2 if bad else 1 if found else 0


# -- JSON ---------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """``obj`` with every NaN and ±inf replaced by ``None`` (JSON has neither), tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def dump(obj: Any) -> None:
    """Print ``obj`` (a record's ``to_dict()``, or a list or dict of them) as standard JSON."""
    echo(json.dumps(jsonable(obj), indent=2, allow_nan=False))


# -- numbers ------------------------------------------------------------------------------------
def fmt(n: int) -> str:
    """An integer with thousands separators: ``27,202``."""
    return f"{n:,}"


def g(x: float) -> str:
    """A float to 4 significant digits; ``nan``, ``inf`` and ``-inf`` spelled out."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def size(n: int) -> str:
    """A byte count in binary units: ``512 B``, ``1.5 KiB``, ``660.3 MiB``."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(x) < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{x:,.1f} {unit}"
        x /= 1024
    return f"{x:,.1f} GiB"  # pragma: no cover


def pair(p: Sequence[float]) -> str:
    """A (height, width) figure: ``32`` when both are equal, else ``16×32``."""
    h, w = (str(v) if isinstance(v, int) else f"{v:g}" for v in p)
    return h if h == w else f"{h}×{w}"


def shape(dims: Sequence[int]) -> str:
    """A shape as ``8×3×3×3`` (``scalar`` for none)."""
    return "×".join(str(n) for n in dims) if dims else "scalar"


# -- tables -------------------------------------------------------------------------------------
def width(args: argparse.Namespace) -> int | None:
    """The width tables are cut to: None with ``--wide`` or ``--markdown``; the terminal's width
    when standard output is a terminal; else :data:`TABLE_WIDTH`."""
    if getattr(args, "wide", False) or getattr(args, "markdown", False):
        return None
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        import shutil  # only for tables: not on every command's start-up path

        return max(shutil.get_terminal_size((TABLE_WIDTH, 24)).columns, 20)
    return TABLE_WIDTH


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[int] = (),
    width: int | None = TABLE_WIDTH,
    drop: Sequence[int] = (),
    last: int = 16,
) -> list[str]:
    """Aligned text table; the last column is cut with ``…`` to fit ``width`` (None: no cut).

    ``drop`` lists columns that may be left out, first to go first, while the table would not
    fit ``width`` with at least ``last`` characters of its last column.
    """
    all_rows = [list(headers), *[list(r) for r in rows]]
    n = len(headers)
    widths = [max(len(r[i]) for r in all_rows) for i in range(n - 1)]
    if width is not None and drop:
        keep = list(range(n))
        tail = min(last, max(len(r[n - 1]) for r in all_rows))
        for col in drop:
            if sum(widths[i] + 2 for i in keep[:-1]) + tail <= width:
                break
            if col != n - 1 and col in keep:  # the last column is cut, never left out
                keep.remove(col)
        if len(keep) < n:
            moved = {old: new for new, old in enumerate(keep)}
            right = [moved[i] for i in right if i in moved]
            all_rows = [[r[i] for i in keep] for r in all_rows]
            n = len(keep)
            widths = [widths[i] for i in keep[:-1]]
    lines = []
    for r in all_rows:
        cells = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(n - 1)
        ]
        line = "  ".join([*cells, r[n - 1]]).rstrip()
        if width is not None and len(line) > width:
            line = line[: width - 1] + "…"
        lines.append(line)
    return lines


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()
) -> list[str]:
    """A Markdown (GitHub) table: every column whole, ``|`` escaped, ``right`` columns
    right-aligned; a last column that is empty throughout (a spacer) is left out."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    if len(headers) > 1 and not any(r[-1] for r in all_rows):
        all_rows = [r[:-1] for r in all_rows]

    def cells(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"

    rule = ["--:" if i in right else "---" for i in range(len(all_rows[0]))]
    return [cells(all_rows[0]), "|" + "|".join(rule) + "|", *(cells(r) for r in all_rows[1:])]


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[int] = (),
    width: int | None = TABLE_WIDTH,
    drop: Sequence[int] = (),
) -> None:
    """:func:`table`, printed (with ``--markdown``, :func:`markdown_table`, whole)."""
    if markdown_on():
        echo("\n".join(markdown_table(headers, rows, right=right)))
        return
    for line in table(headers, rows, right=right, width=width, drop=drop):
        echo(line)


# -- progress -----------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, shown only on a terminal and only for long work.

    Call it as a tool's ``progress(done, total, what)``. The work is long when ``total`` times
    ``unit`` bytes exceeds :data:`BIG_FILE` (or ``always``).
    """

    def __init__(
        self,
        label: str,
        *,
        unit: int = 4,
        always: bool = False,
        stream: TextIO | None = None,
        files: bool = False,
    ) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.files = files  # counting files done (many-file runs), not bytes
        self.unit = unit
        self.always = always
        self.enabled: bool | None = None  # decided at the first call, when the total is known
        self._last = 0.0
        self._shown = False

    def _decide(self, total: int) -> bool:
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return tty and (self.always or total * self.unit > BIG_FILE)

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.enabled is None:
            self.enabled = self._decide(total)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        if self.files:
            self.stream.write(f"\r{self.label}: {done:,} files done, last {what[:40]:<40}")
            self.stream.flush()
            self._shown = True
            return
        frac = min(done / max(total, 1), 1.0)
        bar = "█" * int(30 * frac)
        # the bytes count is what was read (for a URL: transferred, plus read-ahead)
        read = f"{done * self.unit / 1e6:,.0f} MB"
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {read:>9} {what[:20]:<20}")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """Erase the bar (before the output is printed)."""
        if self._shown:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
            self._shown = False
