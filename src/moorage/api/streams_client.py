"""Docker's multiplexed stream, read on the client side.

A container without a TTY has two outputs on one connection (logs, attach, exec),
so each piece of output travels in a frame::

    [stream, 0, 0, 0, size (uint32, big-endian)] + size bytes

with ``stream`` 0 (stdin, written out as stdout, as the docker CLI does), 1
(stdout), 2 (stderr) or 3 (an error from the daemon, which ends the stream).
Frames arrive cut anywhere by the socket, so the demultiplexer keeps what it has
not yet been able to place.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import BinaryIO

from moorage.errors import MoorageError

__all__ = ["STDERR", "STDIN", "STDOUT", "SYSTEMERR", "Demultiplexer", "StreamError", "demux"]

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxI")


class StreamError(MoorageError):
    """The stream was malformed, or the daemon reported an error inside it."""


class Demultiplexer:
    """Writes each frame's payload to ``stdout`` or ``stderr`` (None: dropped)."""

    def __init__(self, stdout: BinaryIO | None, stderr: BinaryIO | None) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self._pending = bytearray()

    def feed(self, data: bytes) -> None:
        """Place every whole frame in ``data`` (and what was left over before it)."""
        self._pending += data
        touched: set[int] = set()
        while len(self._pending) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(self._pending)
            end = _HEADER.size + size
            if len(self._pending) < end:
                break
            payload = bytes(self._pending[_HEADER.size : end])
            del self._pending[:end]
            out = self._target(stream, payload)
            if out is not None:
                out.write(payload)
                touched.add(id(out))
        # One flush per read, not per frame: a chatty container writes many small frames.
        for out in (self.stdout, self.stderr):
            if out is not None and id(out) in touched:
                out.flush()

    def _target(self, stream: int, payload: bytes) -> BinaryIO | None:
        if stream in (STDIN, STDOUT):
            return self.stdout
        if stream == STDERR:
            return self.stderr
        if stream == SYSTEMERR:
            raise StreamError(payload.decode(errors="replace").strip() or "error in the stream")
        raise StreamError(f"unrecognized stream header: {stream}")

    def close(self) -> None:
        """The stream ended: it must not end inside a frame."""
        if self._pending:
            left = len(self._pending)
            self._pending.clear()
            raise StreamError(f"stream ended inside a frame ({left} bytes left over)")


def demux(chunks: Iterable[bytes], stdout: BinaryIO | None, stderr: BinaryIO | None) -> None:
    """Copy a whole multiplexed stream, chunk by chunk, to ``stdout`` and ``stderr``."""
    demultiplexer = Demultiplexer(stdout, stderr)
    for chunk in chunks:
        demultiplexer.feed(chunk)
    demultiplexer.close()
