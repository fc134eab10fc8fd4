"""What several commands share: their common options, layer selection, opening the file."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from dwf.errors import DwfError
from dwf.format.records import LayerPlan
from dwf.interfaces.cli import render
from dwf.io.opening import find_cfg, open_weights
from dwf.io.reader import WeightsFile

DIALECTS = ["alexeyab", "pjreddie"]
_GLOB = re.compile(r"[*?\[]")

Subparsers = Any  # argparse's _SubParsersAction, private in typeshed


# -- options ------------------------------------------------------------------------------------
def add_source(p: argparse.ArgumentParser, *, weights: bool = True, many: bool = False) -> None:
    """The weights file (or with ``many``: files, folders, globs), ``--cfg`` and ``--dialect``."""
    if weights and many:
        p.add_argument(
            "weights",
            nargs="+",
            help="weights files, folders or globs; local paths or URLs (https://, s3:// …)",
        )
        add_jobs(p)
    elif weights:
        p.add_argument(
            "weights", help="the .weights file (or a partial *.conv.N file); a path or a URL"
        )
    p.add_argument("--cfg", help="the cfg (default: the .cfg with the same name beside it)")
    p.add_argument(
        "--dialect",
        default="alexeyab",
        choices=DIALECTS,
        help="Darknet code base that wrote the file (default alexeyab)",
    )
    add_storage(p)


def add_storage(p: argparse.ArgumentParser) -> None:
    """``--storage-option KEY=VALUE`` (repeatable): what the Python API takes as
    ``storage_options``."""
    p.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        dest="storage_option",
        help="for URLs: an fsspec storage option (repeatable); VALUE is read as JSON when it is"
        " JSON (true, 3, {...}), else as text; KEY a.b sets b inside a (e.g."
        " client_kwargs.endpoint_url=URL); download_limit=4GB lets dwf download up to that"
        " from a server that ignores byte ranges",
    )


def parse_storage_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``--storage-option`` values as the ``storage_options`` dict.

    ``KEY=VALUE``: the value is JSON when it parses as JSON (``true``, ``false``, ``null``,
    numbers, ``"text"``, ``{...}``, ``[...]``), else the text as it is; a dotted key
    (``client_kwargs.endpoint_url``) sets a nested option.

    Raises:
        DwfError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise DwfError(
                f"--storage-option {item!r}: write KEY=VALUE, e.g. anon=true or"
                " client_kwargs.endpoint_url=https://s3.example.org"
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.split(".")
        where = out
        for part in parents:
            nested = where.setdefault(part, {})
            if not isinstance(nested, dict):
                raise DwfError(f"--storage-option {item!r}: {part} is already set to a value")
            where = nested
        where[leaf] = value
    return out


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The command's ``--storage-option`` values (``None`` without any)."""
    return parse_storage_options(getattr(args, "storage_option", None)) or None


def writes(
    p: argparse.ArgumentParser,
    outputs: tuple[str, ...],
    inputs: tuple[str, ...] = ("weights", "cfg"),
) -> None:
    """Name the arguments a command writes (``outputs``) and reads (``inputs``): before the
    command runs — before anything is opened or loaded — every output is checked against every
    input and every other output (:func:`check_writes`)."""
    p.set_defaults(writes=outputs, reads=inputs)


def check_writes(args: argparse.Namespace) -> None:
    """Refuse an output that is one of the command's inputs (the same path, a symlink or a hard
    link), another of its outputs, or a special file — before the command loads anything. The
    cfg found beside the weights when ``--cfg`` is not given counts as an input too. The tools
    check again when they write (they know every file they opened)."""
    outputs = [str(v) for k in getattr(args, "writes", ()) if (v := getattr(args, k, None))]
    if not outputs:
        return
    from dwf.io.writer import check_destination

    reads = getattr(args, "reads", ())
    inputs = [str(v) for k in reads if (v := getattr(args, k, None)) and isinstance(v, str)]
    weights = getattr(args, "weights", None)
    if "cfg" in reads and not args.cfg and isinstance(weights, str) and "://" not in weights:
        beside, _ = find_cfg(weights)
        if beside is not None:
            inputs.append(beside)
    for i, out in enumerate(outputs):
        check_destination(out, inputs=inputs, others=[*outputs[:i], *outputs[i + 1 :]])


def add_jobs(p: argparse.ArgumentParser) -> None:
    """``--jobs N``: worker processes for many files."""
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="with many files: N worker processes (default: the CPU count; 1: none)",
    )


def is_many(args: argparse.Namespace) -> bool:
    """Whether ``args.weights`` names many files (several, a folder or a glob); when not, it
    becomes the one path, as the single-file commands expect."""
    paths: list[str] = args.weights
    one = paths[0] if len(paths) == 1 else None
    # a folder: a local directory, or a URL ending in "/" (a remote "directory" is a prefix)
    if one is not None and not _GLOB.search(one) and not os.path.isdir(one) and one[-1:] != "/":
        args.weights = paths[0]
        return False
    return True


def add_lenient(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--lenient", action="store_true", help=what)


def add_select(p: argparse.ArgumentParser) -> None:
    """``--layers`` and ``--type``."""
    p.add_argument("--layers", metavar="RANGES", help="only these layers, e.g. 10-20 or 3,7")
    p.add_argument(
        "--type", metavar="TYPE", help="only layers of this type (convolutional or conv, route, …)"
    )


def add_output(p: argparse.ArgumentParser, *, wide: bool = True, markdown: bool = False) -> None:
    """``--json``, (for tables) ``--wide`` and (with ``markdown``) ``--markdown``."""
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if wide:
        p.add_argument(
            "--wide", action="store_true", help="do not cut tables to the terminal (or 100 columns)"
        )
    if markdown:
        p.add_argument(
            "--markdown",
            action="store_true",
            help="tables as Markdown, to paste into an issue or a pull request",
        )


# -- layer selection ----------------------------------------------------------------------------
def parse_layers(spec: str | None) -> Callable[[int], bool]:
    """``--layers 10-20,3``: which layer indices are wanted."""
    if not spec:
        return lambda _i: True
    wanted: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else ("0", part[1:])
                wanted.append((int(lo), int(hi)))
            else:
                wanted.append((int(part), int(part)))
        except ValueError:
            raise DwfError(
                f"--layers {spec!r}: use indices and ranges like 10-20 or 3,7,10-12"
            ) from None
        first, last = wanted[-1]
        if first > last:  # would select nothing, silently: a typo for last-first
            raise DwfError(f"--layers {part}: a range runs from low to high ({last}-{first})")
    return lambda i: any(lo <= i <= hi for lo, hi in wanted)


def type_filter(kind: str | None) -> Callable[[LayerPlan], bool]:
    """``--type conv``: a layer type, or the prefix of its name."""
    if not kind:
        return lambda _lp: True
    k = kind.lower()
    return lambda lp: lp.type.lower() == k or lp.name.rsplit("_", 1)[0] == k


def selected(f: WeightsFile, args: argparse.Namespace) -> list[LayerPlan]:
    """The layers ``--layers`` and ``--type`` select, in file order."""
    layers, kind = getattr(args, "layers", None), getattr(args, "type", None)
    by_index = parse_layers(layers)
    by_type = type_filter(kind)
    chosen = [lp for lp in f.plan.layers if by_index(lp.index) and by_type(lp)]
    if not chosen and (layers or kind):
        # An empty table alone would read as "nothing there"; say what the network has, on
        # standard error (standard output stays a table, or valid JSON).
        parts = (f"--layers {layers}" if layers else "", f"--type {kind}" if kind else "")
        asked = " and ".join(x for x in parts if x)
        kinds = ", ".join(sorted({lp.type for lp in f.plan.layers}))
        render.note(
            f"{asked} selects no layer; the network has layers 0..{len(f.plan) - 1} of types"
            f" {kinds}"
        )
    return chosen


def open_file(args: argparse.Namespace, path: str | None = None) -> WeightsFile:
    """Open ``path`` (default ``args.weights``) with the command's ``--cfg``, ``--dialect``,
    ``--lenient`` and ``--header-size``."""
    return open_weights(
        path or args.weights,
        args.cfg,
        dialect=args.dialect,
        strict=not getattr(args, "lenient", False),
        header_size=getattr(args, "header_size", None),
        storage_options=storage_options(args),
    )
