"""The weights-file header: ``major, minor, revision`` (int32) then ``seen`` (4 or 8 bytes).

Darknet decides the width of ``seen`` from the version (docs/format.md §1.2): 8 bytes when
``major*10 + minor >= 2``, else 4. Files from before December 2015 start with three float32
(learning rate, momentum, decay) instead of a version; read as int32 those are huge, which is how
Darknet recognises them (:attr:`Header.connected_transposed`: their connected weights are stored
transposed, docs/format.md §1.3).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import attrs

from dwf.errors import HeaderError
from dwf.format.dialects import Dialect, get_dialect

_VERSION = struct.Struct("<iii")


def seen_width(major: int, minor: int, dialect: str | Dialect = "alexeyab") -> int:
    """Bytes of ``seen`` Darknet reads after this version (4 or 8): docs/format.md §1.2."""
    d = get_dialect(dialect)
    if major > 1000 or minor > 1000:
        return 4
    if d.seen_below_1000 and (major >= 1000 or minor >= 1000):
        return 4
    return 8 if major * 10 + minor >= 2 else 4


@attrs.frozen
class Header:
    """A decoded weights header.

    Attributes:
        major, minor, revision: the version Darknet wrote (0.2.5 for current AlexeyAB builds).
        seen: images seen in training.
        size: header length in bytes, 16 (4-byte ``seen``) or 20 (8-byte ``seen``).
        note: set when the width was not the one the version implies but the one the file size
            requires (a known Darknet writer bug, docs/format.md §1.5), or was forced by the caller.
    """

    major: int = 0
    minor: int = 2
    revision: int = 5
    seen: int = 0
    size: int = 20
    note: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.size not in (16, 20):
            raise HeaderError(f"header size must be 16 or 20 bytes, not {self.size}")
        limit = 2**64 if self.size == 20 else 2**32
        if not 0 <= self.seen < limit:
            raise HeaderError(
                f"seen={self.seen} does not fit the {self.size - 12}-byte field of a"
                f" {self.size}-byte header"
            )
        for name in ("major", "minor", "revision"):
            v = getattr(self, name)
            if not -(2**31) <= v < 2**31:
                raise HeaderError(f"{name}={v} does not fit an int32")

    @property
    def connected_transposed(self) -> bool:
        """A legacy (pre-2015) header, in whose files connected weights are stored transposed,
        ``(inputs, outputs)`` (docs/format.md §1.3)."""
        return self.major > 1000 or self.minor > 1000

    @property
    def transpose(self) -> bool:
        """Deprecated name (0.1) of :attr:`connected_transposed`."""
        return self.connected_transposed

    @classmethod
    def written_by(cls, dialect: str | Dialect = "alexeyab", seen: int = 0) -> Header:
        """The header a dialect's Darknet writes (``save_weights``, ``darknet partial``).

        AlexeyAB (and hank-ai) write 0.2.5 with a 64-bit ``seen``; pjreddie writes 0.2.0 with a
        64-bit ``size_t``.
        """
        d = get_dialect(dialect)
        return cls(0, 2, 0 if d.name == "pjreddie" else 5, seen, 20)

    @property
    def version(self) -> str:
        """``"major.minor.revision"``."""
        return f"{self.major}.{self.minor}.{self.revision}"

    @property
    def legacy_floats(self) -> tuple[float, float, float] | None:
        """For a legacy header, the (learning rate, momentum, decay) it really holds."""
        if not self.connected_transposed:
            return None
        raw = _VERSION.pack(self.major, self.minor, self.revision)
        lr, momentum, decay = struct.unpack("<fff", raw)
        return (lr, momentum, decay)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``--json``)."""
        return {
            "major": self.major,
            "minor": self.minor,
            "revision": self.revision,
            "version": self.version,
            "seen": self.seen,
            "size": self.size,
            "connected_transposed": self.connected_transposed,
            "note": self.note,
        }

    def encode(self) -> bytes:
        """The header's bytes, as Darknet writes them."""
        seen = struct.pack("<Q" if self.size == 20 else "<I", self.seen)
        return _VERSION.pack(self.major, self.minor, self.revision) + seen

    def width_for(self, dialect: str | Dialect = "alexeyab") -> int:
        """The header width in bytes (16 or 20) Darknet's reader assumes for this version."""
        return 12 + seen_width(self.major, self.minor, dialect)

    @classmethod
    def decode(
        cls,
        data: bytes,
        *,
        dialect: str | Dialect = "alexeyab",
        size: int | None = None,
        path: str | None = None,
        note: str | None = None,
    ) -> Header:
        """Decode the first bytes of a weights file.

        ``size`` forces a 16- or 20-byte header instead of the version's rule.

        Raises:
            HeaderError: too few bytes for a header, or ``size`` not 16/20.
        """
        if len(data) < 12:
            raise HeaderError(
                f"{len(data)} bytes is too short for a Darknet weights header (at least"
                " 16 bytes: major, minor, revision, seen)",
                path=path,
            )
        major, minor, revision = _VERSION.unpack_from(data, 0)
        if size is None:
            size = 12 + seen_width(major, minor, dialect)
        elif size not in (16, 20):
            raise HeaderError(f"header size must be 16 or 20, not {size}", path=path)
        if len(data) < size:
            raise HeaderError(
                f"the file has {len(data)} bytes, fewer than the {size}-byte header"
                f" version {major}.{minor}.{revision} needs",
                path=path,
            )
        fmt = "<Q" if size == 20 else "<I"
        (seen,) = struct.unpack_from(fmt, data, 12)
        rule = 12 + seen_width(major, minor, dialect)
        if note is None and size != rule:
            note = (
                f"read with a {size}-byte header although version {major}.{minor}.{revision}"
                f" implies {rule} bytes"
            )
        return cls(major, minor, revision, seen, size, note)


def other_width(size: int) -> int:
    """The other header width: 20 for 16, 16 for 20. Darknet writers have produced files whose
    header is not as wide as their version says (docs/format.md §1.5), so readers try both."""
    return 36 - size


def sniff(data: bytes) -> str | None:
    """Say in plain words what a file is when its first bytes show it is not weights at all."""
    if not data:
        return "the file is empty"
    head = data[:512]
    low = head.lstrip().lower()
    if low.startswith(b"version https://git-lfs"):
        return (
            "this is a Git LFS pointer (a small text file standing in for the real weights);"
            " fetch the real file with 'git lfs pull'"
        )
    if low.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return (
            "this is an HTML/XML page, not weights: the download saved an error or login page"
            " (e.g. a web link to a file viewer instead of the raw file)"
        )
    packed = _packed(head)
    if packed:
        return packed
    if head.count(_REPLACEMENT) >= 4:
        return (
            "the file went through a text decoder: it is full of EF BF BD (the UTF-8"
            " replacement character), which took the place of every byte that was not valid"
            " text; those bytes are lost. Download it again as binary (curl -L -o, wget, or"
            " requests' .content rather than .text; in Git, mark *.weights as binary)"
        )
    if head.startswith(b"[net]") or head.startswith(b"[network]"):
        return "this is a cfg file, not a weights file"
    if len(head) >= 16 and all(b in b"\t\n\r" or 32 <= b < 127 for b in head[:64]):
        return "this is a text file, not binary Darknet weights"
    if len(head) >= 12:
        major, minor, revision = struct.unpack_from(">iii", head, 0)
        if 0 <= major < 10 and 0 <= minor < 10 and 0 <= revision < 100 and (major or minor):
            le = _VERSION.unpack_from(head, 0)
            if any(v > 1000 or v < 0 for v in le):
                return (
                    f"the header is byte-swapped (big-endian: version {major}.{minor}.{revision});"
                    " the file was written on a big-endian machine and its floats are swapped too"
                )
    return None


_REPLACEMENT = b"\xef\xbf\xbd"

# Magic numbers of the archive and compression formats weights are shipped in, and how to unpack.
_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x1f\x8b", 0, "gzip-compressed", "gunzip it (gzip -dk FILE)"),
    (b"PK\x03\x04", 0, "a zip archive", "unzip it"),
    (b"BZh", 0, "bzip2-compressed", "bunzip2 -k FILE"),
    (b"\xfd7zXZ\x00", 0, "xz-compressed", "unxz -k FILE"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive", "7z x FILE"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd-compressed", "zstd -d FILE"),
    (b"ustar", 257, "a tar archive", "tar -xf FILE"),
)


def _packed(head: bytes) -> str | None:
    for magic, at, what, fix in _MAGIC:
        if head[at : at + len(magic)] == magic:
            return (
                f"this is {what}, not weights: the .weights file is inside it; {fix} and open"
                " the .weights file it holds"
            )
    return None


def crlf_suspect(head: bytes) -> bool:
    """Whether the first bytes could be CRLF-translated: no 0A byte in them comes without a
    0D before it (a file copied in text mode on Windows, or through a tool that rewrote line
    endings, has none). Random float32 data holds a lone 0A about every 256 bytes, so the
    caller confirms on the whole file (:func:`count_crlf`, which stops at the first lone 0A)."""
    body = head[12:]
    return body.count(b"\n") == body.count(b"\r\n")


def count_crlf(chunks: Iterable[bytes]) -> tuple[int, int]:
    """``(CRLF pairs, lone LF bytes)`` in a file read as ``chunks`` (a pair split across two
    chunks counts once). A CRLF-translated file has no lone LF, and was ``pairs`` bytes
    shorter before translation. Stops at the first chunk holding a lone LF: one proves the
    file was not translated."""
    pairs = lone = 0
    prev = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = prev + chunk
        pairs += data.count(b"\r\n")
        lone += data.count(b"\n") - data.count(b"\r\n")
        # A CR at the end may pair with an LF that starts the next chunk: carry it over (it
        # is part of no pair counted here, so it is not counted twice).
        prev = b"\r" if data.endswith(b"\r") else b""
        if lone:
            break
    return pairs, lone
