"""Reading a cfg file: only a regular file of at most 64 MiB, as text, then planned.

The planner (:mod:`dwf.format.planner`) is pure: it turns cfg *text* into a plan. Where that
text comes from, and what may be opened to get it, is decided here.
"""

from __future__ import annotations

import os
import stat

from dwf.errors import CfgError, CfgNotFoundError
from dwf.format.dialects import Dialect
from dwf.format.planner import MAX_CFG_BYTES, Plan, Side, cfg_text, too_big


def plan(
    cfg: str | os.PathLike[str],
    *,
    dialect: str | Dialect = "alexeyab",
    side: Side = "load",
) -> Plan:
    """Plan the ``.weights`` layout for the cfg file at ``cfg``.

    Raises:
        CfgNotFoundError: there is no such file.
        CfgError: the file cannot be read, or Darknet could not load it (the message names the
            line and the layer).
    """
    path = os.fspath(cfg)
    return Plan.from_text(read_cfg_text(path), dialect=dialect, side=side, path=path)


def read_cfg_text(path: str) -> str:
    """Read a cfg file as text (UTF-8, undecodable bytes replaced, as Darknet reads bytes),
    with dwf errors.

    Only a regular file of at most 64 MiB is read: a FIFO would block, a device such as
    ``/dev/zero`` would never end. The type is checked before opening and again on the open
    descriptor (opened non-blocking, so a FIFO swapped in between cannot block either).
    """
    try:
        _check_cfg_stat(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            _check_cfg_stat(path, os.fstat(fd))
            chunks: list[bytes] = []
            total = 0
            while total <= MAX_CFG_BYTES:
                chunk = os.read(fd, min(1 << 20, MAX_CFG_BYTES + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise CfgNotFoundError("cfg file not found", path=path) from None
    except IsADirectoryError:
        raise CfgError("is a directory, not a cfg file", path=path) from None
    except PermissionError:
        raise CfgError("permission denied reading the cfg file", path=path) from None
    except OSError as e:
        raise CfgError(f"cannot read the cfg file: {e.strerror or e}", path=path) from None
    except ValueError as e:  # a NUL byte in the path (CfgError is a ValueError too)
        if isinstance(e, CfgError):
            raise
        raise CfgError(f"not a usable file name: {e}", path=repr(path)) from None
    if total > MAX_CFG_BYTES:
        raise CfgError(too_big(total, grew=True), path=path)
    return cfg_text(b"".join(chunks), path)


def _check_cfg_stat(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise CfgError("is a directory, not a cfg file", path=path)
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket or other special file"
        )
        raise CfgError(
            f"is {kind}, not a regular file; a cfg must be a regular file", path=path
        )
    if st.st_size > MAX_CFG_BYTES:
        raise CfgError(too_big(st.st_size), path=path)
