"""Bridges between aiohttp's async streams and the engine's synchronous code.

A request body is read by the engine (in a worker thread) through the event
loop, chunk by chunk, so a 500 MB ``load`` is never spooled or held in memory.
A streamed response pulls chunks from a synchronous generator in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson
from aiohttp import web

from moorage.errors import MoorageError

T = TypeVar("T")


class BodyReader(io.RawIOBase):
    """A blocking, file-like view of a request body, for use off the event loop."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        future = asyncio.run_coroutine_threadsafe(self._content.read(len(view)), self._loop)
        data = future.result()
        view[: len(data)] = data
        return len(data)


def body_of(request: web.Request) -> io.BufferedReader:
    return io.BufferedReader(BodyReader(request, asyncio.get_running_loop()), 1024 * 1024)


async def stream_bytes(
    request: web.Request,
    produce: Callable[[], Iterator[bytes]],
    content_type: str = "application/x-tar",
) -> web.StreamResponse:
    """Send what ``produce()`` yields (run in a thread) as a chunked response.

    Errors before the first chunk still become an error status; after it, the
    connection is cut, which is all HTTP allows.
    """
    chunks = await asyncio.to_thread(produce)
    first = await asyncio.to_thread(next, chunks, None)
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    while first is not None:
        await response.write(first)
        first = await asyncio.to_thread(next, chunks, None)
    await response.write_eof()
    return response


async def stream_json_lines(
    request: web.Request, produce: Callable[[], Iterator[dict[str, Any]]]
) -> web.StreamResponse:
    """Docker's progress streams: one JSON object per line; a failure becomes an
    ``{"errorDetail": ..., "error": ...}`` line, as the docker CLI expects."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    events = await asyncio.to_thread(produce)
    try:
        while (event := await asyncio.to_thread(next, events, None)) is not None:
            await response.write(orjson.dumps(event) + b"\r\n")
    except MoorageError as exc:
        line = {"errorDetail": {"message": str(exc)}, "error": str(exc)}
        await response.write(orjson.dumps(line) + b"\r\n")
    await response.write_eof()
    return response


async def in_daemon_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func`` in a thread of its own that never holds up the daemon's exit.

    For engine calls that may block for long (a stop's grace period, an exec that
    runs for hours): the default executor's threads are joined at shutdown, so one
    of these there would keep a stopping daemon alive.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def run() -> None:
        try:
            value = func(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting coroutine
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, name=getattr(func, "__name__", "engine"), daemon=True).start()
    return await future
