"""Many files at once: what :func:`dwf.check`, :func:`dwf.stats`, :func:`dwf.identify` and
:func:`dwf.drift` do when given a list of files, folders and globs, local or remote
(``s3://bucket/run-*/yolov4_*.weights``).

The work is handed to a :class:`concurrent.futures.Executor`: the one the caller gives (a
``ProcessPoolExecutor``, a Dask cluster's ``Client.get_executor()`` …) or a process pool of
``jobs`` workers. dwf has no scheduler of its own: the executor protocol (``map``, in order) is
the contract, so whatever runs ``concurrent.futures`` runs dwf. Each file is one task; a file
that cannot be read becomes one row with an error, never the end of the run.
"""

from __future__ import annotations

import concurrent.futures
import functools
import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

from dwf.errors import DwfError
from dwf.io import extensions, remote

R = TypeVar("R")
#: What the many-file form of a verb takes: a list (or tuple) of files, folders and globs.
Many = list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...]

_GLOB = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


@attrs.frozen
class Row(Generic[R]):
    """One file's result in a many-file run.

    Attributes:
        path: the file (local path or URL).
        result: the verb's report for it, or ``None`` when it could not be read.
        error: why it could not be read (the :class:`dwf.DwfError` message), else ``None``.
    """

    path: str
    result: R | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was read."""
        return self.error is None

    def __str__(self) -> str:
        """The report as the command line prints it, or ``path: error: …``."""
        text: str = extensions.call("report_text", self)
        return text

    def _repr_html_(self) -> str:
        html: str = extensions.call("report_html", self)
        return html

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (one line of ``--json`` output): the report's fields, or the error."""
        if self.result is None:
            return {"path": self.path, "error": self.error}
        to_dict = getattr(self.result, "to_dict", None)
        body = to_dict() if callable(to_dict) else {"result": self.result}
        return {**body, "path": self.path, "error": None}


class Rows(list[Any]):
    """The rows of a many-file run, collected: ``dwf.Rows(dwf.check(["runs/"]))`` (or any
    reports, such as a :func:`dwf.drift` series). A list that prints as one line per file —
    the file and its report in a few words, or why it could not be read — and displays as that
    table in a notebook."""

    def __str__(self) -> str:
        text: str = extensions.call("report_text", self)
        return text

    def _repr_html_(self) -> str:
        html: str = extensions.call("report_html", self)
        return html


def is_many(src: object) -> bool:
    """Whether a verb was given many sources (a list or tuple), not one file."""
    return isinstance(src, (list, tuple))


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``run_2000`` before ``run_10000`` (checkpoints by iteration)."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


def expand(
    sources: Iterable[str | os.PathLike[str]],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The files ``sources`` name, in order: each a file, a folder (its ``*.weights``,
    ``*.backup`` and ``*.conv.N`` files) or a glob, local or a URL. Folders and globs are sorted
    naturally (``_2000`` before ``_10000``). A glob that matches nothing is kept as it is, so
    that it becomes an error row rather than silently nothing."""
    out: list[str] = []
    for src in sources:
        s = os.fspath(src)
        if remote.is_url(s):
            found = remote.expand(s, storage_options=storage_options)
        elif _GLOB.search(s):
            found = glob.glob(s, recursive=True)
        elif os.path.isdir(s):
            found = [
                e.path for e in os.scandir(s) if e.is_file() and remote.looks_like_weights(e.name)
            ]
        else:
            out.append(s)
            continue
        out.extend(sorted(found, key=natural_key) if found else [s])
    return out


def _row(fn: Callable[[str], R], path: str) -> Row[R]:
    # Any failure of one file is that file's row: the run goes on. Programming errors are
    # reported the same way (with their type) so that one odd file cannot end a long scan.
    if not remote.is_url(path) and os.path.isdir(path):  # a folder expand found nothing in
        return Row(
            path,
            None,
            f"{path}: no weights files in this folder (*.weights, *.backup, *.conv.N;"
            " subfolders are not searched: name them, or a glob such as"
            f" '{os.path.join(path, '*', '*.weights')}')",
        )
    try:
        return Row(path, fn(path))
    except DwfError as e:
        return Row(path, None, e.message)
    except Exception as e:
        return Row(path, None, f"{path}: {type(e).__name__}: {e}")


def _rows(fn: Callable[[str], R], paths: Sequence[str]) -> list[Row[R]]:
    return [_row(fn, p) for p in paths]


def each(
    fn: Callable[[str], R],
    paths: Sequence[str],
    *,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    chunksize: int | None = None,
) -> Iterator[Row[R]]:
    """``fn`` over ``paths`` as :class:`Row` s, streamed back in the order of ``paths``.

    Args:
        fn: a picklable function of one path (a module-level function or a
            :func:`functools.partial` of one) when the executor runs it elsewhere.
        executor: where to run; ``None``: a process pool of ``jobs`` workers made for this run
            and shut down after it.
        jobs: workers of that pool (default: the CPU count); ``1`` runs in this process.
        chunksize: files per task. Default: about 8 tasks per worker (at most 32 files each),
            so that an executor's cost per task (a Dask scheduler's is milliseconds) stays small
            next to the work, and rows still stream back steadily.
    """
    if jobs is not None and jobs < 1:
        raise DwfError(f"jobs must be 1 or more, not {jobs}")
    workers = min(jobs or os.cpu_count() or 1, max(len(paths), 1))
    if executor is None and workers <= 1:
        for p in paths:
            yield _row(fn, p)
        return
    size = chunksize or max(1, min(32, len(paths) // (8 * workers)))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    task = functools.partial(_rows, fn)
    if executor is not None:
        yield from _mapped(executor, task, chunks, len(paths))
        return
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers)
    try:
        yield from _mapped(pool, task, chunks, len(paths))
    finally:
        # stopping early (the caller broke off) must not wait for the rest of the run
        pool.shutdown(wait=True, cancel_futures=True)


def _mapped(
    executor: concurrent.futures.Executor,
    task: Callable[[Sequence[str]], list[Row[R]]],
    chunks: Sequence[Sequence[str]],
    n: int,
) -> Iterator[Row[R]]:
    try:
        for rows in executor.map(task, chunks):
            yield from rows
    except concurrent.futures.BrokenExecutor as e:
        raise DwfError(
            f"a worker died while scanning {n} files ({e}); run again with jobs=1"
            " (dwf: --jobs 1) to find the file that kills it"
        ) from None
