"""Hijacked.while_connected: a relay runs until it ends or the client hangs up."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web

from moorage.api.docker.hijack import Hijacked

WAIT = 10.0


async def _hijacked(sock: socket.socket) -> Hijacked:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    return Hijacked(web.StreamResponse(), reader, writer, sock)


async def _forever() -> None:
    await asyncio.get_running_loop().create_future()


def test_a_client_that_hangs_up_ends_the_relay() -> None:
    async def main() -> tuple[bool, bool]:
        ours, theirs = socket.socketpair()
        client = await _hijacked(ours)
        relay = asyncio.ensure_future(_forever())
        asyncio.get_running_loop().call_soon(theirs.close)
        try:
            gone = await asyncio.wait_for(client.while_connected(relay), WAIT)
        finally:
            await client.close()
        return gone, relay.cancelled()

    assert asyncio.run(main()) == (True, True)


def test_a_half_close_does_not_end_the_relay() -> None:
    async def main() -> bool:
        ours, theirs = socket.socketpair()
        client = await _hijacked(ours)
        finished = asyncio.Event()

        async def relay() -> None:
            theirs.shutdown(socket.SHUT_WR)
            assert await client.reader.read() == b""  # the client's input ended...
            client.writer.write(b"out")  # ...and it still takes the output
            await client.writer.drain()
            finished.set()

        try:
            gone = await asyncio.wait_for(client.while_connected(relay()), WAIT)
        finally:
            await client.close()
            theirs.close()
        assert finished.is_set()
        return gone

    assert asyncio.run(main()) is False


def test_a_failing_relay_raises_its_error() -> None:
    async def main() -> Any:
        ours, theirs = socket.socketpair()
        client = await _hijacked(ours)

        async def relay() -> None:
            raise OSError("broken")

        try:
            return await client.while_connected(relay())
        except OSError as exc:
            return str(exc)
        finally:
            await client.close()
            theirs.close()

    assert asyncio.run(main()) == "broken"
