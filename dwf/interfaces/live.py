"""A watch in a notebook: :func:`live_table` shows the records of :func:`dwf.watch` as one
table updated in place (an IPython display handle), or one line each where there is no
notebook."""

from __future__ import annotations

import html
import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

from dwf.tools.watch import Checkpoint

_STYLE = (
    "<style>.dwf-live table{border-collapse:collapse;font-size:12px}"
    ".dwf-live td,.dwf-live th{padding:1px 8px;text-align:left;vertical-align:top}"
    ".dwf-live td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".dwf-live .bad{color:#b00}</style>"
)


def _e(x: object) -> str:
    return html.escape(str(x))


def table_html(records: Iterable[Checkpoint]) -> str:
    """An HTML table of checkpoints: file, ``seen``, the one before, what moved most, what
    appeared."""
    rows = []
    for r in records:
        if r.error is not None:
            rows.append(
                f"<tr><td>{_e(os.path.basename(r.path))}</td><td></td><td></td><td></td>"
                f"<td class='bad'>{_e(r.error)}</td></tr>"
            )
            continue
        before = (
            f"{_e(os.path.basename(r.previous))} ({r.previous_seen:,})"
            if r.previous is not None and r.previous_seen is not None
            else "—"
        )
        moved = ", ".join(_e(c.explain()) for c in r.changes)
        notes = [
            f"<span class='{'bad' if f.severity == 'error' else ''}'>"
            f"{_e(f.layer)}{'' if f.array == '*' else '.' + _e(f.array)}: {_e(f.message)}</span>"
            for f in r.findings
        ] + [_e(w) for w in r.warnings]
        rows.append(
            f"<tr><td>{_e(os.path.basename(r.path))}</td><td class='n'>{r.seen or 0:,}</td>"
            f"<td>{before}</td><td>{moved}</td><td>{'<br>'.join(notes)}</td></tr>"
        )
    head = "<tr><th>file</th><th>seen</th><th>since</th><th>moved most (rel L2)</th>"
    head += "<th>findings</th></tr>"
    return f"{_STYLE}<div class='dwf-live'><table>{head}{''.join(rows)}</table></div>"


def _notebook() -> Any | None:
    """IPython's display module when running inside IPython (a notebook, a console)."""
    if "IPython" not in sys.modules:  # not running under IPython: never import it
        return None
    try:
        ipython = importlib.import_module("IPython")
        display = importlib.import_module("IPython.display")
    except ImportError:
        return None
    if getattr(ipython, "get_ipython", lambda: None)() is None:
        return None
    return display


def live_table(records: Iterable[Checkpoint], *, rows: int = 20) -> list[Checkpoint]:
    """Show checkpoints as :func:`dwf.watch` yields them, and return them all when it ends
    (``count``, ``timeout``, or the notebook's stop button).

    In IPython, one table of the last ``rows`` checkpoints, updated in place through a display
    handle; elsewhere one line per checkpoint (:meth:`dwf.Checkpoint.explain`).
    """
    display = _notebook()
    seen: list[Checkpoint] = []
    handle = None
    if display is not None:
        handle = display.display(display.HTML(table_html([])), display_id=True)
    for r in records:
        seen.append(r)
        if handle is not None and display is not None:
            handle.update(display.HTML(table_html(seen[-rows:])))
        else:
            print(r.explain(), flush=True)
    return seen
