"""Exec routes: create an exec instance, start it (hijacked or detached), inspect it.

A non-tty exec gets three pipes from the daemon (stdin, stdout, stderr) that the
monitor hands to the process; the daemon frames stdout and stderr in Docker's
multiplexed format. A tty exec gets a pty whose master the monitor passes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from aiohttp import web

from moorage.api.docker import compat, params
from moorage.api.docker.hijack import Hijacked, hijack
from moorage.api.docker.server import ENGINE, Routes, api_version, json_response
from moorage.api.docker.streams import in_daemon_thread
from moorage.engine.logs import frame
from moorage.errors import MoorageError

routes = Routes()


@routes.add("POST", "/containers/{id}/exec")
async def create_exec(request: web.Request) -> web.StreamResponse:
    body = await params.json_body(request, "exec create request")
    body = compat.exec_request(api_version(request), body)
    execs = request.app[ENGINE].execs
    exec_id = await asyncio.to_thread(execs.create, request.match_info["id"], body)
    return json_response({"Id": exec_id}, status=201)


@routes.add("GET", "/exec/{id}/json")
async def inspect_exec(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[ENGINE].execs.get(request.match_info["id"]).inspect())


@routes.add("POST", "/exec/{id}/resize")
async def resize_exec(request: web.Request) -> web.StreamResponse:
    from moorage.engine.monitor_client import MonitorClient

    engine = request.app[ENGINE]
    instance = engine.execs.get(request.match_info["id"])
    c = engine.containers.get(instance.container_id)
    sock = engine.containers.monitor_socket(c)
    await asyncio.to_thread(
        MonitorClient(sock).resize,
        params.integer(request, "h", 0) or 0,
        params.integer(request, "w", 0) or 0,
        instance.id,
    )
    return web.Response(status=200)


@routes.add("POST", "/exec/{id}/start")
async def start_exec(request: web.Request) -> web.StreamResponse:
    from moorage.engine.monitor_client import MonitorClient

    body = await params.json_body(request, "exec start request")
    body = compat.exec_request(api_version(request), body)
    detach = bool(body.get("Detach"))
    engine = request.app[ENGINE]
    instance = engine.execs.claim(request.match_info["id"])
    if body.get("ConsoleSize") is not None:  # the start's size wins over the create's
        from moorage.engine.specgen import console_size

        instance.console_size = console_size(body["ConsoleSize"], "ConsoleSize")
    c = engine.containers.get(instance.container_id)
    sock = engine.containers.monitor_socket(c)
    process = await asyncio.to_thread(engine.execs.process, instance)
    ours: list[int] = []  # the daemon's ends
    theirs: list[int] = []  # the process's ends, closed here once the monitor has them
    if not instance.tty:
        if instance.attach_stdin and not detach:
            r, w = os.pipe2(os.O_CLOEXEC)
            theirs.append(r)
            ours.append(w)
        else:
            theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            ours.append(-1)
        for wanted in (instance.attach_stdout, instance.attach_stderr):
            if wanted and not detach:
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(r)
                theirs.append(w)
            else:
                theirs.append(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
                ours.append(-1)
    try:
        handle = await in_daemon_thread(MonitorClient(sock).exec, process, instance.id, theirs)
    except MoorageError as exc:
        for fd in ours:
            if fd >= 0:
                os.close(fd)
        if detach:
            instance.started = False
            raise
        return await _report_failed_start(request, instance, exc)
    except BaseException:  # cancelled: the client left before the process started
        for fd in ours:
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    instance.running = True
    instance.pid = handle.pid
    waiter = asyncio.create_task(_wait_exit(instance, handle))
    if detach:
        for fd in ours:
            if fd >= 0:
                os.close(fd)
        if handle.master_fd is not None:
            # Nobody reads a detached tty: keep draining it so the process never blocks.
            asyncio.get_running_loop().run_in_executor(None, _drain, handle.master_fd)
        return web.Response(status=200)
    client = await hijack(request, multiplexed=not instance.tty)
    try:
        # A client that hangs up ends the relay: the process sees its pipes close (a
        # terminal stays with the monitor), as when dockerd's copy to a gone client
        # fails; it may run on, detached, as dockerd's does, its exit still recorded.
        if handle.master_fd is not None:
            gone = await client.while_connected(
                _relay_tty(client, handle.master_fd, instance.attach_stdin)
            )
        else:
            gone = await client.while_connected(_relay_pipes(client, ours))
        if not gone:
            await waiter
    finally:
        await client.close()
    return client.response


async def _report_failed_start(
    request: web.Request, instance: Any, error: MoorageError
) -> web.StreamResponse:
    """dockerd's answer when an attached exec cannot start its command: the stream is
    upgraded all the same and carries the error's text (on stdout), and the exec's exit
    code is 127 (not found) or 126 (not runnable), which the client reads back."""
    from moorage.engine.containers import exit_code_of_start_error

    message = str(error)
    instance.exit_code = exit_code_of_start_error(message)
    instance.running = False
    instance.done.set()
    client = await hijack(request, multiplexed=not instance.tty)
    try:
        text = f"{message}\r\n".encode()
        await client.send(text if instance.tty else frame(1, text))
    finally:
        await client.close()
    return client.response


async def _wait_exit(instance: Any, handle: Any) -> None:
    try:
        code = await in_daemon_thread(handle.wait)
    except MoorageError:
        code = 126
    finally:
        handle.close()
    instance.exit_code = code
    instance.running = False
    instance.done.set()


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass
    os.close(fd)


async def _reader_of(fd: int) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    """A reader of ``fd``, and the transport that owns ``fd`` (closing it closes ``fd``)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except OSError:  # EIO from a pty master once the process has gone
        return b""


async def _relay_pipes(client: Hijacked, ours: list[int]) -> None:
    stdin_w, stdout_r, stderr_r = ours
    # Owned here from the start, so that an early end (the client left) closes them all.
    stdin = os.fdopen(stdin_w, "wb", buffering=0) if stdin_w >= 0 else None
    transports: list[asyncio.BaseTransport] = []

    async def out(fd: int, stream: int) -> None:
        if fd < 0:
            return
        reader, transport = await _reader_of(fd)
        transports.append(transport)
        while data := await _read(reader):
            if not await client.send(frame(stream, data)):
                return

    async def inp() -> None:
        if stdin is None:
            return
        with stdin:
            loop = asyncio.get_running_loop()
            try:
                while data := await client.reader.read(65536):
                    await loop.run_in_executor(None, stdin.write, data)
            except (ConnectionError, OSError):
                pass

    feeder = asyncio.create_task(inp())
    try:
        await asyncio.gather(out(stdout_r, 1), out(stderr_r, 2))
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        if stdin is not None:
            stdin.close()  # if the feeder never ran
        for transport in transports:
            transport.close()


async def _relay_tty(client: Hijacked, master: int, stdin: bool) -> None:
    writer_fd = os.dup(master)
    reader, transport = await _reader_of(master)

    async def inp() -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await client.reader.read(65536):
                await loop.run_in_executor(None, os.write, writer_fd, data)
        except (ConnectionError, OSError):
            pass

    feeder = asyncio.create_task(inp()) if stdin else None
    ended = False
    try:
        while data := await _read(reader):
            if not await client.send(data):
                break
        else:
            ended = True
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        os.close(writer_fd)
        if ended:
            transport.close()
        else:
            # The client left a process that runs on: read its terminal for nobody, so
            # that it never blocks on a full one; the transport ends with the process.
            transport.set_protocol(_Discard())
            transport.resume_reading()


class _Discard(asyncio.Protocol):
    """Takes what a read transport reads, and drops it."""

    def data_received(self, data: bytes) -> None:
        pass
