"""Writing a tar archive as a stream of chunks, member by member.

``tarfile.addfile`` copies a member's data in one call; for a 500 MB layer in a
``save`` that would mean holding or blocking on all of it. Here a member is its
header, then its data in chunks, then padding: a generator the HTTP layer can
send as it comes.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator
from typing import IO

CHUNK = 1024 * 1024
_BLOCK = tarfile.BLOCKSIZE


def _header(name: str, size: int, *, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.type = kind
    info.mtime = 0  # reproducible archives: the content says when, not the clock
    return info.tobuf(format=tarfile.PAX_FORMAT)


def directory(name: str) -> bytes:
    return _header(name.rstrip("/") + "/", 0, mode=0o755, kind=tarfile.DIRTYPE)


def member_bytes(name: str, data: bytes) -> bytes:
    return _header(name, len(data)) + data + _padding(len(data))


def member_stream(name: str, size: int, source: IO[bytes]) -> Iterator[bytes]:
    """A member whose ``size`` bytes come from ``source``; a short source is an error."""
    yield _header(name, size)
    left = size
    while left:
        chunk = source.read(min(CHUNK, left))
        if not chunk:
            raise OSError(f"{name}: source ended {left} bytes early")
        left -= len(chunk)
        yield chunk
    yield _padding(size)


def end() -> bytes:
    return b"\0" * (2 * _BLOCK)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def now_rfc3339() -> str:
    """Now, as Go's RFC3339Nano writes it (Docker's and skopeo's image configs): the
    fraction without trailing zeros. A tool that re-encodes an image config in Go
    (skopeo converting to OCI does) then writes the very same bytes: a "...440Z"
    would come back "...44Z", and the image would get another digest."""
    ns = time.time_ns()
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"
