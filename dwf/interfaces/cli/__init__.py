"""The ``dwf`` command line (also ``python -m dwf``).

Subcommands: ``info``, ``graph``, ``stats``, ``diff``, ``check``, ``identify``, ``cut``, ``export``,
``import-weights`` (alias ``import``), ``fuse``, ``demo``, ``watch``, ``detect`` — one module
each, exposing ``add_parser(subparsers, common)`` and ``run(args) -> int``. Each has ``--help``;
those that report have ``--json`` (schemas in docs/cli.md; the documents are the records'
``to_dict()``). Tables fit the terminal, or 100 columns when piped (``--wide`` lifts that).

Exit codes: 0 ok; 1 findings (``check`` found errors, ``diff --exit-code`` found differences,
``identify`` found no match); 2 an error — one ``dwf: error:`` line on stderr (and with
``--json`` an ``{"error": ...}`` document on stdout); ``--debug`` shows the traceback instead.
An unexpected exception is a bug in dwf: it also gives exit 2 and one line saying so. 130 and
the one line ``dwf: interrupted`` when interrupted (Ctrl-C), from start-up on: this module
imports almost nothing before :func:`main` is running, so the imports of the command itself
run inside its handler. A closed pipe (``dwf info x | head``) is not an error.

"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dwf.version import __version__

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from types import ModuleType

# The commands, in the order `dwf --help` lists them: command word → its module in this package.
COMMANDS = {
    "info": "info",
    "graph": "graph",
    "stats": "stats",
    "diff": "diff",
    "check": "check",
    "identify": "identify",
    "cut": "cut",
    "export": "export",
    "import-weights": "import_weights",
    "fuse": "fuse",
    "demo": "demo",
    "watch": "watch",
    "detect": "detect",
}
# Other words for a command, as its module also registers them with argparse (`aliases=`): a
# word missing here still works, through the parser of every command, only slower.
ALIASES = {"import": "import-weights"}  # the 0.1 name of import-weights
BUG = "this is a bug in dwf, please report it; --debug shows the traceback"


def _module(command: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"dwf.interfaces.cli.{COMMANDS[command]}")


def _chosen(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, when its first word names one (options before it are the
    top-level ``--debug``; anything else means argparse must see every command)."""
    for word in argv:
        if word == "--debug":
            continue
        word = ALIASES.get(word, word)
        return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    Given the arguments, a run that names its command gets a parser with that command only:
    each command module imports the tools it runs, and ``dwf cut`` has no use for the
    identify table or the exporters (half of the command line's imports: docs/benchmarks.md).
    ``dwf --help``, a mistyped command and ``argv=None`` get every command.
    """
    import argparse

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
    chosen = _chosen(argv) if argv is not None else None
    for command in [chosen] if chosen else COMMANDS:
        _module(command).add_parser(sub, common)
    return parser


def _positionals(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[int]:
    """The indices in ``words`` of the positional arguments of the command they run, as its
    parser reads them (an option's value is not one)."""
    import argparse

    command = next((i for i, w in enumerate(words) if w != "--debug"), None)
    sub = next(
        (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
    )
    if command is None or sub is None:
        return []
    chosen = sub.choices.get(ALIASES.get(words[command], words[command]))
    if chosen is None:
        return []
    takes = chosen._option_string_actions
    found: list[int] = []
    i = command + 1
    while i < len(words):
        w = words[i]
        if w == "--":
            found += range(i + 1, len(words))
            break
        if w.startswith("-") and len(w) > 1:
            action = takes.get(w.split("=", 1)[0])
            if action is not None and "=" not in w and action.nargs != 0:
                i += 1  # its value
        else:
            found.append(i)
        i += 1
    return found


def _weights_beside(cfg: str) -> str | None:
    """The weights file of a cfg, by name (``yolov4.cfg`` → ``yolov4.weights``, or the
    checkpoints Darknet writes: ``_final``, ``_last``, ``_best``)."""
    stem = cfg[: -len(".cfg")]
    for suffix in ("", "_final", "_last", "_best"):
        if os.path.isfile(stem + suffix + ".weights"):
            return stem + suffix + ".weights"
    return None


def darknet_order(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[str]:
    """``words`` with Darknet's argument order understood: a ``.cfg`` given first, where the
    weights go (``dwf info yolov4.cfg yolov4.weights``, ``dwf cut cfg weights out N`` as
    ``darknet partial`` takes them), becomes ``--cfg``. A ``.cfg`` alone is answered with the
    command that reads its weights."""
    import argparse

    from dwf.errors import DwfError

    words = list(words)
    if "--cfg" in words or any(w.startswith("--cfg=") for w in words):
        return words
    at = _positionals(parser, words)
    if not at or not words[at[0]].lower().endswith(".cfg"):
        return words
    command = next(w for w in words if w != "--debug")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = sub.choices[ALIASES.get(command, command)]
    first = next((a for a in chosen._actions if not a.option_strings), None)
    if first is None or first.dest != "weights" or "--cfg" not in chosen._option_string_actions:
        return words  # a command whose first argument is not the weights (import-weights)
    cfg = words[at[0]]
    if len(at) == 1 and "CFG" in str(first.metavar or ""):
        return words  # the command reads a cfg alone (dwf graph WEIGHTS_OR_CFG)
    if len(at) == 1:
        weights = _weights_beside(cfg) or "WEIGHTS"
        raise DwfError(
            f"{cfg} is a cfg: give the weights file, and the cfg with --cfg:"
            f" dwf {command} {weights} --cfg {cfg}"
        )
    return [*words[: at[0]], *words[at[0] + 1 :], "--cfg", cfg]


def _silence_stdout() -> None:
    """Send what is still buffered for standard output to the void, so that the interpreter's
    last flush does not fail again (a closed pipe, a full disk)."""
    import contextlib

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
    import contextlib
    import json

    from dwf.errors import DwfError
    from dwf.interfaces.cli import render

    if getattr(args, "debug", False):
        import traceback

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
    restore = _note_interrupts()
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:
        if _by_interrupt(e):  # numpy turns Ctrl-C during its import into an ImportError
            return _interrupted()
        raise
    finally:
        restore()


_SIGINT_SEEN: list[bool] = [False]


def _note_interrupts() -> Callable[[], None]:
    """Note every SIGINT (then raise ``KeyboardInterrupt`` as Python does), so that a Ctrl-C
    that a C extension's import turned into another error (numpy's "could not import module
    datetime") is still known for one; returns what puts the previous handler back."""
    import signal

    _SIGINT_SEEN[0] = False
    try:
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            return lambda: None  # someone else's handler (or not the main thread): keep it

        def noted(signum: int, frame: object) -> None:
            _SIGINT_SEEN[0] = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, noted)
    except (ValueError, OSError):  # not the main thread
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore


def _interrupted() -> int:
    """Ctrl-C from start-up on (the command's imports, parsing, the work): one line, exit 130.
    Whatever was being written was left as it was by the writer."""
    try:
        sys.stderr.write("dwf: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return 130


def _by_interrupt(e: BaseException) -> bool:
    """Whether ``e`` was raised because of a Ctrl-C: a C extension interrupted while it was
    being imported reports an ``ImportError`` (whose cause is the ``KeyboardInterrupt``, or
    not: then the noted SIGINT tells)."""
    if _SIGINT_SEEN[0]:
        return True
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _run(argv: Sequence[str] | None) -> int:
    from dwf.errors import DwfError
    from dwf.interfaces.cli import options, render

    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words)
    try:
        words = darknet_order(parser, words)
    except DwfError as e:
        import argparse

        return _fail(str(e), argparse.Namespace())
    args = parser.parse_args(words)
    from dwf.io.source import reporting_transfers

    # a whole-file download (a server that ignores byte ranges) shows its own bar
    download = render.Progress("download", unit=1, always=True)
    try:
        options.check_writes(args)  # inputs identified before the command loads anything
        markdown = getattr(args, "markdown", False) and not getattr(args, "json", False)
        try:
            with reporting_transfers(download), render.markdown(markdown):
                code = int(args.func(args))
        finally:
            download.close()
        render.flush()
        return code
    except BrokenPipeError:
        # `dwf info x | head`: the reader went away; not an error of ours.
        _silence_stdout()
        return 0
    except render.OutputError as e:
        _silence_stdout()
        return _fail(str(e), args, stdout_ok=False)
    except DwfError as e:
        return _fail(str(e), args)
    except Exception as e:
        if _by_interrupt(e):
            raise KeyboardInterrupt from None
        # one line, whatever the exception says: a bug report starts from it
        what = " ".join(str(e).splitlines())
        return _fail(f"{type(e).__name__}: {what} ({BUG})", args)
