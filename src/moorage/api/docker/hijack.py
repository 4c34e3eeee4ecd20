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
container's remaining output is sent. That half-close is no hang-up: a relay ends
early only when the client closes its end (``Hijacked.while_connected``).

The stream's Content-Type is the API version's (``stream_content_type``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from moorage.api.docker.compat import before
from moorage.api.docker.server import api_version
from moorage.sys.hangup import HangupWatch
from moorage.sys.sockets import unread_output

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


def stream_content_type(version: str, *, multiplexed: bool, upgraded: bool = True) -> str:
    """The Content-Type of an attach, exec or logs stream in API ``version``: a
    multiplexed stream says so from 1.42; a hijack that was not upgraded (no
    ``Upgrade: tcp``) is a raw stream whatever it carries, as dockerd labels it."""
    if multiplexed and upgraded and not before(version, "1.42"):
        return MULTIPLEXED_STREAM
    return RAW_STREAM


class Hijacked:
    def __init__(
        self,
        response: web.StreamResponse,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sock: socket.socket | None = None,
    ) -> None:
        self.response = response
        self.reader = reader
        self.writer = writer
        self.sock = sock  # the client's connection (our duplicate of it)

    async def hung_up(self) -> None:
        """Return once the client has closed the connection (a half-close is not that)."""
        if self.sock is None:
            await asyncio.get_running_loop().create_future()  # never: nothing to watch
            return
        watch = HangupWatch(self.sock.fileno())
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def on_hangup() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(watch.fileno(), on_hangup)
        try:
            await gone
        finally:
            loop.remove_reader(watch.fileno())
            watch.close()

    async def while_connected(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` until it ends or the client hangs up; True if it hung up (then
        ``work`` was cancelled)."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(self.hung_up())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, watch):
                pending.cancel()
            await asyncio.gather(task, watch, return_exceptions=True)
        if not task.cancelled():
            task.result()  # its error, if it failed
        return watch.done() and not watch.cancelled()

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
    content_type = stream_content_type(
        api_version(request), multiplexed=multiplexed, upgraded=upgrade
    )
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
    # Never reused for another request: closed once the handler returns (else aiohttp
    # would keep the paused connection for its keep-alive timeout). Set after the
    # headers went out, which would else say "Connection: close" instead of "Upgrade".
    response.force_close()
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
    await _headers_read(transport, duplicate)
    return Hijacked(response, reader, writer, duplicate)


HEADERS_READ_WAIT = 1.0  # seconds; a client that reads later gets the stream anyway


async def _headers_read(transport: asyncio.BaseTransport, sock: socket.socket) -> None:
    """Return once the client has read the response's headers (or after a while).

    docker-py reads a hijacked stream from the raw socket, behind its HTTP parser,
    whose buffer keeps whatever came in the same read as the headers: stream bytes sent
    before the headers were read would be lost to it (an ``exec_run``'s output, the
    ``logs`` of an attach). dockerd mostly gets away with it because its process starts
    after the headers went out; Moorage's may already have written.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEADERS_READ_WAIT
    pending = getattr(transport, "get_write_buffer_size", lambda: 0)
    try:
        while pending() or unread_output(sock.fileno()):
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.001)
    except OSError:
        return  # the client has gone: the relay finds out
