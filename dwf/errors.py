"""The errors dwf raises for anything a user can cause.

Every one is a :class:`DwfError`, which is a :class:`ValueError`, so ``except ValueError`` keeps
working for callers that do not know dwf. Messages name the file, the cfg line, the layer and the
byte offsets involved, and say the likely cause. Errors carry the same facts as attributes and
survive pickling (they cross ``multiprocessing`` boundaries intact).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the annotation only: errors.py imports nothing of dwf at run time
    from dwf.format.diagnosis import Diagnosis

# A URL in a message: scheme, optional user information, the rest up to a space or a quote.
_URL_IN_TEXT = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]+://)(?P<user>[^\s/@'\"<>]*@)?(?P<rest>[^\s'\"<>]*)"
)
# A query value: up to the next parameter, fragment, space, quote or sentence punctuation.
_QUERY_VALUE = re.compile(r"=[^&#\s'\"<>:,;)]*")


def _redact_one(m: re.Match[str]) -> str:
    rest = m["rest"]
    path, q, query = rest.partition("?")
    if q:
        query, hash_, fragment = query.partition("#")
        query = _QUERY_VALUE.sub("=***", query) + hash_ + fragment
    return m["scheme"] + ("***@" if m["user"] else "") + path + q + query


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden: user information
    (``https://user:password@host``, a token as user name) and the values of query parameters
    (signed URLs: ``?X-Amz-Signature=…``, ``?sig=…``, ``?token=…``) become ``***``."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_redact_one, text)

# A path longer than this is shortened in messages (PATH_MAX is 4,096; a message quoting one
# twice ran to 12 KB). The attribute ``path`` keeps it whole.
PATH_CHARS = 200


def short_path(path: str) -> str:
    """``path`` as messages show it: whole up to :data:`PATH_CHARS` characters, else its start
    and its end (where the file name is) around ``…``. The one rule for every message."""
    if len(path) <= PATH_CHARS:
        return path
    head = PATH_CHARS // 4
    tail = PATH_CHARS - head - 1
    return f"{path[:head]}…{path[-tail:]}"


def _restore(cls: type[DwfError], message: str, state: dict[str, Any]) -> DwfError:
    # An error that is also an OSError must be made by OSError's constructor (Python refuses
    # ValueError's for it).
    err = OSError.__new__(cls) if issubclass(cls, OSError) else cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class DwfError(ValueError):
    """Base class of every error a user can trigger through dwf.

    The message starts with the file it is about: raise sites give the reason and ``path=``,
    and the class writes ``"{path}: {reason}"`` (a reason that already starts with the path is
    kept as it is).

    Attributes:
        path: the file the error is about, when there is one.
        reason: the message without the ``"{path}: "`` prefix.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        # Messages name URLs, and URLs can carry credentials: never in a message (or a log).
        message = redact(message)
        path = None if path is None else redact(path)
        reason = message
        if path is not None:
            prefix = f"{path}: "
            if message.startswith(prefix):
                reason = message[len(prefix) :]
            message = f"{short_path(path)}: {reason}"
        super().__init__(message)
        self.path = path
        self.reason = reason

    @property
    def message(self) -> str:
        """The human-readable message (the same text as ``str(err)``)."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.message, dict(self.__dict__)))


class CfgError(DwfError):
    """A cfg file Darknet could not load (or would load into a broken network).

    The message starts ``"{cfg}:{line}: "``.

    Attributes:
        path: the cfg file, or ``None`` for text given directly.
        line: 1-based line number in the cfg, or ``None`` when the problem has no single line.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = short_path(path) if path else "<cfg text>"
        prefix = f"{where}:{line}: " if line is not None else f"{where}: "
        super().__init__(prefix + message)
        self.path = None if path is None else redact(path)
        self.reason = redact(message)
        self.line = line


class HeaderError(DwfError):
    """The first bytes of a file are not a Darknet weights header dwf can read."""


class SizeMismatchError(DwfError):
    """The file's size does not match what the cfg says it must hold.

    Attributes:
        expected_size: bytes a complete file for this cfg has (header included).
        actual_size: bytes the file has.
        header_size: header width used for the comparison (16 or 20).
        first_unfilled: ``(layer index, layer name, layer type, array name, start byte,
            stop byte)`` of the first array the file cannot fill, or ``None`` if the file is
            larger than expected.
        diagnosis: the structured explanation (a :class:`dwf.Diagnosis`: the causes, ranked),
            or ``None`` when the error was raised without one.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        expected_size: int = 0,
        actual_size: int = 0,
        header_size: int = 20,
        first_unfilled: tuple[int, str, str, str, int, int] | None = None,
        diagnosis: Diagnosis | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.expected_size = expected_size
        self.actual_size = actual_size
        self.header_size = header_size
        self.first_unfilled = first_unfilled
        self.diagnosis = diagnosis


class LayerNotFoundError(DwfError, KeyError):
    """No layer of that name or index exists in the plan.

    Attributes:
        key: what was asked for.
        suggestions: similar layer names that do exist.
    """

    def __init__(
        self,
        message: str,
        *,
        key: object = None,
        suggestions: tuple[str, ...] = (),
        path: str | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.key = key
        self.suggestions = suggestions


class ArrayNotFoundError(DwfError, KeyError):
    """The layer has no array of that name (``layer["gamma"]``).

    Attributes:
        key: what was asked for.
        layer: the layer's name.
    """

    def __init__(
        self, message: str, *, key: object = None, layer: str = "", path: str | None = None
    ) -> None:
        super().__init__(message, path=path)
        self.key = key
        self.layer = layer


class LayerNotInFileError(DwfError, KeyError):
    """The layer exists in the cfg but its arrays lie past the end of this (partial) file.

    Attributes:
        layer: the layer's name.
        span: ``(start, stop)`` byte offsets the layer would occupy.
        file_size: the file's size in bytes.
    """

    def __init__(
        self,
        message: str,
        *,
        layer: str = "",
        span: tuple[int, int] = (0, 0),
        file_size: int = 0,
        path: str | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.layer = layer
        self.span = span
        self.file_size = file_size


class ArrayError(DwfError):
    """Arrays handed to the writer do not fit the plan (missing, unknown, wrong shape or dtype)."""


class FileChangedError(DwfError):
    """The file changed on disk (size or modification time) since it was opened.

    Darknet rewrites ``*_last.weights`` in place during training: the file is no longer the
    checkpoint that was opened, so dwf hands out no new view of it; views handed out before keep
    their values (docs/robustness.md). Reopen the file to see its new content.

    Attributes:
        opened: ``(size, mtime_ns)`` when the file was opened.
        now: ``(size, mtime_ns)`` now.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        opened: tuple[int, int] = (0, 0),
        now: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__(message, path=path)
        self.opened = opened
        self.now = now


class ClosedFileError(DwfError):
    """A :class:`dwf.WeightsFile` was used after :meth:`~dwf.WeightsFile.close`."""


class WeightsNotFoundError(DwfError, FileNotFoundError):
    """The weights file does not exist (also a :class:`FileNotFoundError`, so
    ``except FileNotFoundError`` catches it as it catches the built-in one)."""


class CfgNotFoundError(CfgError, FileNotFoundError):
    """The cfg file does not exist, or none was given and none lies beside the weights (also a
    :class:`FileNotFoundError`)."""


class UnsupportedLayerError(DwfError):
    """A layer the requested operation cannot handle (an ONNX or PyTorch export of a recurrent
    layer, a fold of a layer without batch norm …); the message names the layer and why.

    With ``line=``, the message starts ``"{cfg}:{line}: "`` as a :class:`CfgError`'s does
    (``path`` is then the cfg, or ``None`` for cfg text).

    Attributes:
        index: the layer's Darknet index, when there is one.
        layer: the layer's name (``"rnn_3"``), when there is one.
        type: the layer's type, when there is one.
        line: the cfg line of the layer's section, when given.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        index: int | None = None,
        layer: str | None = None,
        type: str | None = None,
        line: int | None = None,
    ) -> None:
        if line is not None:
            super().__init__(f"{path or '<cfg text>'}:{line}: {message}")
            self.path = path
            self.reason = message
        else:
            super().__init__(message, path=path)
        self.index = index
        self.layer = layer
        self.type = type
        self.line = line


class RemoteError(DwfError, OSError):
    """A URL could not be read: the server is unreachable, refused the request, timed out or
    answered in a way dwf cannot use. Also an :class:`OSError`, as network failures are in
    Python."""
