"""Byte ranges: ``Range`` on blob reads (RFC 9110) and ``Content-Range`` on upload chunks.

A read asks for one range of a blob; several ranges would need a multipart reply, which
no registry client asks for, so such a request gets the whole blob (RFC 9110 lets a
server ignore Range). An upload chunk names the inclusive byte range it carries, as
the distribution spec writes it (``0-1023``); the ``bytes 0-1023/*`` form of RFC 9110
is accepted too, as some clients send it. The upload status the server reports back
(``Range: 0-<last byte>``) is :func:`upload_range`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from moorage.registry.server.errors import BlobUploadInvalid, RangeNotSatisfiable

__all__ = ["ByteRange", "parse_content_range", "parse_range", "upload_range"]

_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.ASCII)
_CHUNK = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?", re.ASCII)


class ByteRange(NamedTuple):
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range a blob read asks for, clamped to ``size``; None for the whole blob.

    None too for a header this server does not serve (several ranges, other units, a
    malformed one). RangeNotSatisfiable when the range starts past the end.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # bytes=-N: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: RFC 9110 says to ignore it
    if start >= size:
        raise _unsatisfiable(header, size)
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"range not satisfiable: {header[:100]} of a {size}-byte blob",
        headers={"Content-Range": f"bytes */{size}"},
    )


def parse_content_range(header: str) -> ByteRange:
    """The inclusive range an upload chunk carries; BlobUploadInvalid if malformed."""
    match = _CHUNK.fullmatch(header.strip())
    if match is None:
        raise BlobUploadInvalid(f"invalid Content-Range: {header[:100]!r} (want <start>-<end>)")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise BlobUploadInvalid(f"invalid Content-Range: {header[:100]!r} (end before start)")
    return ByteRange(start, end)


def upload_range(offset: int) -> str:
    """The ``Range`` header of an upload holding ``offset`` bytes.

    ``0-<last byte>``; an empty upload is ``0-0`` too, as distribution reports it
    (clients read the next offset as end + 1 only once they have sent something).
    """
    return f"0-{max(offset - 1, 0)}"
