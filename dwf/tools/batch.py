"""Many files at once: :func:`each` runs any verb of one file (``dwf.check``, ``dwf.stats``,
``dwf.identify``, ``dwf.info`` … or a function of one's own) over files, folders and globs,
local or remote (``s3://bucket/run-*/yolov4_*.weights``), and streams back one :class:`Row`
per file, in order.

The work is handed to a :class:`concurrent.futures.Executor`: the one the caller gives (a
``ProcessPoolExecutor``, a Dask cluster's ``Client.get_executor()`` …) or a process pool of
``jobs`` workers. dwf has no scheduler of its own: the executor protocol (``map``, in order) is
the contract, so whatever runs ``concurrent.futures`` runs dwf. A file that cannot be read
becomes one row with an error, never the end of the run. What cannot travel to another process
(an open file, a lambda) is refused at the call with the reason, before any worker starts: a
pickling failure inside a pool is where pools hang.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import os
import pickle
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast

import attrs

from dwf.errors import DwfError, redact
from dwf.io import extensions, remote
from dwf.io.reader import WeightsFile
from dwf.tools.walk import expand, natural_key

__all__ = ["Row", "Rows", "each", "expand", "natural_key", "one_file", "path_of", "run"]

R = TypeVar("R")
P = ParamSpec("P")
#: One source of a many-file run: a file, folder or glob (local or a URL), or an open file.
Source = str | os.PathLike[str] | WeightsFile


def _shown_path(path: str | os.PathLike[str]) -> str:
    """A row's path as messages name it (a URL's credentials redacted); a path object too."""
    return redact(os.fspath(path))


@attrs.frozen
class Row(extensions.Shown, Generic[R]):
    """One file's result in a many-file run.

    Attributes:
        path: the file as messages name it: its local path, or its URL with the credentials
            redacted (:func:`dwf.errors.redact`: ``https://***@host/…``), as rows are printed
            and written as JSON.
        result: the verb's report for it, or ``None`` when it could not be read.
        error: why it could not be read (the :class:`dwf.DwfError` message), else ``None``.
    """

    path: str = attrs.field(converter=_shown_path)
    result: R | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was read."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (one line of ``--json`` output): the report's fields, or the error."""
        if self.result is None:
            return {"path": self.path, "error": self.error}
        to_dict = getattr(self.result, "to_dict", None)
        body = to_dict() if callable(to_dict) else {"result": self.result}
        return {**body, "path": self.path, "error": None}


class Rows(extensions.Shown, list[Any]):
    """The rows of a many-file run, collected: ``dwf.Rows(dwf.each(dwf.check, ["runs/"]))``
    (or any reports, such as a :func:`dwf.drift` series). A list that prints as one line per
    file — the file and its report in a few words, or why it could not be read — and displays
    as that table in a notebook."""


def each(
    verb: Callable[..., R],
    sources: Source | Iterable[Source],
    *,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    chunksize: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Iterator[Row[R]]:
    """``verb(file, **options)`` for every file ``sources`` name, as :class:`Row` s streamed
    back in order (``dwf check A B …``, ``dwf stats DIR``, ``dwf identify 'run/*.weights'``).

    Args:
        verb: a function of one file: ``dwf.check``, ``dwf.stats``, ``dwf.identify``,
            ``dwf.info``, or one's own (module-level, so that a process pool can send it).
        sources: files, folders (their ``*.weights``, ``*.backup``, ``*.conv.N`` files) and
            globs (``**`` too), local or URLs; one of them alone is a source too. Open files
            run in this process only.
        executor: where to run: any :class:`concurrent.futures.Executor` (a Dask cluster's
            ``client.get_executor()`` …); ``None``: a process pool of ``jobs`` workers made for
            this run and shut down after it.
        jobs: workers of that pool (default: the CPU count); ``1`` runs in this process.
        chunksize: files per task. Default: about 8 tasks per worker (at most 32 files each),
            so that an executor's cost per task stays small next to the work, and rows still
            stream back steadily.
        storage_options: for URLs: options passed to fsspec (to list and to read them).
        options: passed to ``verb`` for every file (``cfg=dwf.plan(...)``, ``strict=False`` …).

    A file the verb cannot read is a row with the error; the run goes on. Arguments are checked
    at the call: what cannot go to a pool's workers (an open file, a lambda, a local function)
    raises :class:`dwf.DwfError` before any work starts.
    """
    if jobs is not None and jobs < 1:
        raise DwfError(f"jobs must be 1 or more, not {jobs}")
    _takes_one(verb)
    if isinstance(sources, (str, os.PathLike, WeightsFile)):
        sources = [sources]
    items: list[str | WeightsFile] = []
    pending: list[str | os.PathLike[str]] = []
    for src in sources:
        if isinstance(src, WeightsFile):
            items.extend(expand(pending, storage_options=storage_options))
            pending = []
            items.append(src)
        else:
            pending.append(src)
    items.extend(expand(pending, storage_options=storage_options))
    if storage_options is not None:
        options["storage_options"] = storage_options
    fn = functools.partial(verb, **options) if options else verb
    return run(fn, items, executor=executor, jobs=jobs, chunksize=chunksize)


def _name(verb: Callable[..., Any]) -> str:
    return getattr(verb, "__qualname__", None) or getattr(verb, "__name__", None) or repr(verb)


def _takes_one(verb: Callable[..., Any]) -> None:
    """Refuse a verb that needs more than one file (``dwf.diff``): one row per file would
    call it with one."""
    try:
        params = inspect.signature(verb).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let it try
        return
    needed = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(needed) > 1:
        names = ", ".join(p.name for p in needed)
        hint = "; dwf.drift(series) compares consecutive files" if _name(verb) == "diff" else ""
        raise DwfError(
            f"dwf.each runs a verb of one file, and {_name(verb)} needs {len(needed)}"
            f" ({names}){hint}"
        )


def run(
    fn: Callable[[Any], R],
    items: Sequence[Any],
    *,
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    chunksize: int | None = None,
    key: Callable[[Any], str] | None = None,
) -> Iterator[Row[R]]:
    """``fn`` over ``items`` (paths, open files, or what ``fn`` takes) as :class:`Row` s,
    streamed back in order, on ``executor`` or a pool of ``jobs`` processes; ``key`` gives a
    row's ``path`` (default: the item's path). Checks at the call what must travel."""
    if jobs is not None and jobs < 1:
        raise DwfError(f"jobs must be 1 or more, not {jobs}")
    workers = min(jobs or os.cpu_count() or 1, max(len(items), 1))
    local = executor is None and workers <= 1
    if not local:
        opened = [
            f
            for x in items
            for f in (x if isinstance(x, tuple) else (x,))
            if isinstance(f, WeightsFile)
        ]
        if opened:
            raise DwfError(
                f"{opened[0].path}: an open file stays in its process and cannot go to other"
                " workers; give its path (and cfg=f.plan) instead, or run with jobs=1"
            )
        if executor is None or isinstance(executor, concurrent.futures.ProcessPoolExecutor):
            _can_travel(fn)
    return _stream(fn, list(items), executor, workers, chunksize, key or path_of, local)


def path_of(item: Any) -> str:
    """The path of a row's item: a path, a URL, an open file's path."""
    if isinstance(item, WeightsFile):
        return item.path
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else str(item)


def _can_travel(fn: Callable[..., Any]) -> None:
    """Whether ``fn`` (a verb with its options) can be sent to worker processes: a failed
    pickling inside :class:`concurrent.futures.ProcessPoolExecutor` surfaces late, raw, and
    on some Python versions leaves the pool's shutdown waiting forever."""
    parts: list[tuple[str, Any]] = []
    if isinstance(fn, functools.partial):
        parts = [("the verb " + _name(fn.func), fn.func)]
        parts += [(f"the option {k}=", v) for k, v in fn.keywords.items()]
        parts += [(f"argument {i}", v) for i, v in enumerate(fn.args)]
    else:
        parts = [("the verb " + _name(fn), fn)]
    for what, value in parts:
        try:
            pickle.dumps(value)
        except Exception as e:
            raise DwfError(
                f"{what} cannot be sent to worker processes ({type(e).__name__}: {e}); give"
                " a module-level function and plain values (a path, a dwf.Plan), or run in"
                " this process with jobs=1"
            ) from None


def _stream(
    fn: Callable[[Any], R],
    items: list[Any],
    executor: concurrent.futures.Executor | None,
    workers: int,
    chunksize: int | None,
    key: Callable[[Any], str],
    local: bool,
) -> Iterator[Row[R]]:
    if local:
        for item in items:
            yield _row(fn, key, item)
        return
    size = chunksize or max(1, min(32, len(items) // (8 * workers)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    task = functools.partial(_rows, fn, key)
    if executor is not None:
        yield from _mapped(executor, task, chunks, len(items))
        return
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers)
    try:
        yield from _mapped(pool, task, chunks, len(items))
    finally:
        # stopping early (the caller broke off) waits only for the tasks already running
        pool.shutdown(wait=True, cancel_futures=True)


def _row(fn: Callable[[Any], R], key: Callable[[Any], str], item: Any) -> Row[R]:
    # Any failure of one file is that file's row: the run goes on. Programming errors are
    # reported the same way (with their type) so that one odd file cannot end a long scan.
    path = key(item)
    if isinstance(item, str) and not remote.is_url(item) and os.path.isdir(item):
        return Row(  # a folder expand found nothing in
            path,
            None,
            f"{path}: no weights files in this folder (*.weights, *.backup, *.conv.N;"
            " subfolders are not searched: name them, or a glob such as"
            f" '{os.path.join(path, '**', '*.weights')}')",
        )
    try:
        return Row(path, fn(item))
    except DwfError as e:
        return Row(path, None, e.message)
    except Exception as e:
        return Row(path, None, redact(f"{path}: {type(e).__name__}: {e}"))


def _rows(fn: Callable[[Any], R], key: Callable[[Any], str], items: Sequence[Any]) -> list[Row[R]]:
    return [_row(fn, key, x) for x in items]


def _mapped(
    executor: concurrent.futures.Executor,
    task: Callable[[Sequence[Any]], list[Row[R]]],
    chunks: Sequence[Sequence[Any]],
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
    except DwfError:
        raise
    except Exception as e:  # the executor could not carry a task or bring a result back
        raise DwfError(
            f"the executor failed while scanning {n} files ({type(e).__name__}: {e}); run"
            " again with jobs=1 (dwf: --jobs 1) to work in this process"
        ) from None


# -- the 0.2 form (one file or a list), kept for one release --------------------------------------
def one_file(verb: Callable[P, R]) -> Callable[P, R]:
    """Keep ``verb``'s 0.2 list form working for one release: ``verb([a, b], jobs=2)`` warns
    (``DeprecationWarning``) and returns ``dwf.each(verb, [a, b], jobs=2)``; ``executor=`` and
    ``jobs=`` given with one file are ignored, with the same warning. The signature stays the
    one form (one file, one report)."""
    name = verb.__name__

    @functools.wraps(verb)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        many = bool(args) and isinstance(args[0], (list, tuple))
        if not many and "executor" not in kwargs and "jobs" not in kwargs:
            return verb(*args, **kwargs)
        run_on = {k: kwargs.pop(k) for k in ("executor", "jobs") if k in kwargs}
        if not many:
            warnings.warn(
                f"dwf.{name}(file, {', '.join(f'{k}=' for k in run_on)}): executor= and jobs="
                f" apply to many files, with dwf.each(dwf.{name}, files, ...); ignored here",
                DeprecationWarning,
                stacklevel=2,
            )
            return verb(*args, **kwargs)
        warnings.warn(
            f"dwf.{name}([...]) is deprecated (removed in 0.4): use dwf.each(dwf.{name},"
            f" [...], jobs=..., executor=..., ...), which runs any verb over many files",
            DeprecationWarning,
            stacklevel=2,
        )
        kwargs.pop("progress", None)  # the list form never reported progress
        options: dict[str, Any] = {**run_on, **kwargs}
        return cast(R, each(call, cast(Any, args[0]), **options))

    return call
