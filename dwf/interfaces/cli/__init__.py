"""The ``dwf`` command line (also ``python -m dwf``).

Subcommands: ``info``, ``stats``, ``diff``, ``check``, ``identify``, ``cut``, ``export``,
``import-weights`` (alias ``import``), ``fuse``, ``demo`` — one module each, exposing
``add_parser(subparsers, common)`` and ``run(args) -> int``. Each has ``--help``; those that
report have ``--json`` (schemas in docs/cli.md; the documents are the records' ``to_dict()``).
Tables fit the terminal, or 100 columns when piped (``--wide`` lifts that).

Exit codes: 0 ok; 1 findings (``check`` found errors, ``diff --exit-code`` found differences,
``identify`` found no match); 2 an error — one ``dwf: error:`` line on stderr (and with
``--json`` an ``{"error": ...}`` document on stdout); ``--debug`` shows the traceback instead.
An unexpected exception is a bug in dwf: it also gives exit 2 and one line saying so. 130 when
interrupted; a closed pipe (``dwf info x | head``) is not an error.

"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Sequence

from dwf.errors import DwfError
from dwf.interfaces.cli import (
    check,
    cut,
    demo,
    diff,
    export,
    fuse,
    identify,
    import_weights,
    info,
    render,
    stats,
)
from dwf.version import __version__

# the commands, in the order `dwf --help` lists them
COMMANDS = (info, stats, diff, check, identify, cut, export, import_weights, fuse, demo)
BUG = "this is a bug in dwf, please report it; --debug shows the traceback"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="dwf", description="Look inside Darknet .weights files without loading them."
    )
    parser.add_argument("--version", action="version", version=f"dwf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser


def _silence_stdout() -> None:
    """Send what is still buffered for standard output to the void, so that the interpreter's
    last flush does not fail again (a closed pipe, a full disk)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file: a test's stand-in
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115


def _fail(message: str, args: argparse.Namespace, *, stdout_ok: bool = True) -> int:
    """Report an error: the traceback with ``--debug``, else one line ``dwf: error: <message>``
    (a message of several lines, such as a size mismatch's diagnosis, joined with ``; ``); and
    with ``--json`` an ``{"error": <message>}`` document on stdout. Returns exit code 2."""
    if getattr(args, "debug", False):
        traceback.print_exc()
    else:
        line = "dwf: error: " + render.one_line(message)
        with contextlib.suppress(OSError):
            sys.stderr.write(render.printable(line, sys.stderr) + "\n")
            sys.stderr.flush()
    if stdout_ok and getattr(args, "json", False):
        try:
            render.echo(json.dumps({"error": render.one_line(message)}))
            render.flush()
        except (OSError, DwfError):
            _silence_stdout()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 findings, 2 error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
        render.flush()
        return code
    except BrokenPipeError:
        # `dwf info x | head`: the reader went away; not an error of ours.
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except render.OutputError as e:
        _silence_stdout()
        return _fail(str(e), args, stdout_ok=False)
    except DwfError as e:
        return _fail(str(e), args)
    except Exception as e:
        # one line, whatever the exception says: a bug report starts from it
        what = " ".join(str(e).splitlines())
        return _fail(f"{type(e).__name__}: {what} ({BUG})", args)
