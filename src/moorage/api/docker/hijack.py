"""Hijacked connections: ``attach`` and ``exec start`` turn HTTP into a raw stream.

The client sends ``Connection: Upgrade`` / ``Upgrade: tcp``; dockerd answers
``101 UPGRADED`` and from then on the socket carries the container's output one
way and its stdin the other, until the process ends. A client that does not ask
for the upgrade gets ``200`` and the same raw stream (no chunking), and the
connection closes at the end.

aiohttp has no public hijack, so after sending the status line and headers we
stop its transport from reading and continue on a duplicate of the socket with
our own asyncio streams. The duplicate matters: the client half-closes its side
when its stdin ends (``docker run -i`` with piped input), and on aiohttp's
transport that end-of-file would close the whole connection before the
container's remaining output is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from aiohttp import web

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


class Hijacked:
    def __init__(
        self,
        response: web.StreamResponse,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.response = response
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> bool:
        """Write to the client; False once it has gone."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            self.writer.close()
            await self.writer.wait_closed()


async def hijack(request: web.Request, multiplexed: bool) -> Hijacked:
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    content_type = MULTIPLEXED_STREAM if multiplexed else RAW_STREAM
    if upgrade:
        response = web.StreamResponse(
            status=101,
            reason="UPGRADED",
            headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"},
        )
    else:
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        # No Content-Length and no chunking: the stream ends when the connection does.
        response._length_check = False  # noqa: SLF001 (what aiohttp's websockets do)
        response.force_close()
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("client went away")
    transport.pause_reading()
    original = transport.get_extra_info("socket")
    duplicate = socket.socket(fileno=socket.dup(original.fileno()))
    reader, writer = await asyncio.open_unix_connection(sock=duplicate)
    # Bytes the client sent right after its headers are already in aiohttp's buffer.
    protocol = request.protocol
    tail = getattr(protocol, "_message_tail", b"")
    if tail:
        reader.feed_data(tail)
        protocol._message_tail = b""  # noqa: SLF001
    return Hijacked(response, reader, writer)
