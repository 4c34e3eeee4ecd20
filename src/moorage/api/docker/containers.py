"""Container routes, in the Docker Engine API's shapes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from typing import Any

import orjson
from aiohttp import web

from moorage.api.docker import compat, params
from moorage.api.docker.hijack import Hijacked, hijack, stream_content_type
from moorage.api.docker.server import ENGINE, Routes, api_version, json_response, version_before
from moorage.api.docker.streams import in_daemon_thread
from moorage.engine.logs import frame, parse_time_filter, parse_time_filter_ns, read_logs
from moorage.errors import Conflict, InvalidArgument, MoorageError

routes = Routes()


def _service(request: web.Request) -> Any:
    return request.app[ENGINE].containers


def _ref(request: web.Request) -> str:
    return request.match_info["id"]


def _no_content(modified: bool = True) -> web.Response:
    return web.Response(status=204 if modified else 304)


@routes.add("POST", "/containers/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = await params.json_body(request, "container create request")
    body = compat.create_request(api_version(request), body)
    name = request.query.get("name") or None
    result = await asyncio.to_thread(_service(request).create, body, name)
    return json_response(result, status=201)


@routes.add("GET", "/containers/json")
async def list_containers(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    data = await asyncio.to_thread(
        service.list,
        all_containers=params.flag(request, "all"),
        limit=params.integer(request, "limit", -1) or -1,
        filters=params.filters(request),
        size=params.flag(request, "size"),
    )
    return json_response(data)


@routes.add("POST", "/containers/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    f = params.filters(request)
    unknown = set(f) - {"label", "until"}
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    until = None
    if f.get("until"):
        import time

        until = parse_time_filter(f["until"][0], time.time())
    result = await asyncio.to_thread(_service(request).prune, f.get("label"), until)
    return json_response(result)


@routes.add("GET", "/containers/{id}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    data = await asyncio.to_thread(service.inspect, _ref(request))
    if params.flag(request, "size"):
        c = service.get(_ref(request))
        data["SizeRw"], data["SizeRootFs"] = await asyncio.to_thread(service.sizes, c)
    return json_response(compat.container_inspect(api_version(request), data))


@routes.add("POST", "/containers/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    modified = await in_daemon_thread(_service(request).start, _ref(request))
    return _no_content(modified)


def _stop_signal(request: web.Request) -> str | None:
    """stop's and restart's ``signal``: from API 1.42 (before, the container's own)."""
    if version_before(request, "1.42"):
        return None
    return request.query.get("signal") or None


@routes.add("POST", "/containers/{id}/stop")
async def stop(request: web.Request) -> web.StreamResponse:
    modified = await in_daemon_thread(
        _service(request).stop,
        _ref(request),
        params.integer(request, "t"),
        _stop_signal(request),
    )
    return _no_content(modified)


@routes.add("POST", "/containers/{id}/restart")
async def restart(request: web.Request) -> web.StreamResponse:
    await in_daemon_thread(
        _service(request).restart,
        _ref(request),
        params.integer(request, "t"),
        _stop_signal(request),
    )
    return _no_content()


@routes.add("POST", "/containers/{id}/kill")
async def kill(request: web.Request) -> web.StreamResponse:
    await in_daemon_thread(
        _service(request).kill, _ref(request), request.query.get("signal") or None
    )
    return _no_content()


@routes.add("POST", "/containers/{id}/pause")
async def pause(request: web.Request) -> web.StreamResponse:
    await in_daemon_thread(_service(request).pause, _ref(request))
    return _no_content()


@routes.add("POST", "/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.StreamResponse:
    await in_daemon_thread(_service(request).unpause, _ref(request))
    return _no_content()


@routes.add("POST", "/containers/{id}/update")
async def update(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    body: Any = {}
    if raw.strip():  # dockerd takes an empty body for an update that changes nothing
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"invalid JSON: {exc}") from exc
    body = compat.update_request(body)
    result = await asyncio.to_thread(_service(request).update, _ref(request), body)
    return json_response(result)


@routes.add("POST", "/containers/{id}/rename")
async def rename(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name") or ""
    if not name:
        raise InvalidArgument("rename: name is required")
    await asyncio.to_thread(_service(request).rename, _ref(request), name)
    return _no_content()


@routes.add("DELETE", "/containers/{id}")
async def remove(request: web.Request) -> web.StreamResponse:
    await in_daemon_thread(
        _service(request).remove,
        _ref(request),
        force=params.flag(request, "force"),
        volumes=params.flag(request, "v"),
    )
    return _no_content()


@routes.add("POST", "/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    service = _service(request)
    c = service.get(_ref(request))
    waiter = _ExitWaiter(service, c.id, condition)
    # Docker sends the status line at once and the body when the condition is met,
    # so a client knows the wait is in place before it starts the container.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        code = await waiter.wait()
    finally:
        waiter.close()
    with contextlib.suppress(ConnectionError):  # the client gave up waiting
        await response.write(orjson.dumps({"StatusCode": code, "Error": None}) + b"\n")
        await response.write_eof()
    return response


class _ExitWaiter:
    """Waits, on the event loop, for a container's exit or removal."""

    def __init__(self, service: Any, cid: str, condition: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[int] = self.loop.create_future()
        self.cid = cid
        self.condition = condition
        self.last_code = 0
        self.unsubscribe = service.events.subscribe(self._on_event)
        c = service.get(cid)
        self.last_code = c.state.exit_code
        if condition == "not-running" and not c.running and c.state.status != "restarting":
            self._resolve(c.state.exit_code)

    def _resolve(self, code: int) -> None:
        def settle() -> None:
            if not self.future.done():
                self.future.set_result(code)

        self.loop.call_soon_threadsafe(settle)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("Type") != "container" or event["Actor"]["ID"] != self.cid:
            return
        action = event["Action"]
        if action == "die":
            self.last_code = int(event["Actor"]["Attributes"].get("exitCode", "0"))
            if self.condition in ("not-running", "next-exit"):
                self._resolve(self.last_code)
        elif action == "destroy":
            self._resolve(self.last_code)

    async def wait(self) -> int:
        return await self.future

    def close(self) -> None:
        self.unsubscribe()


@routes.add("GET", "/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    import time

    service = _service(request)
    c = service.get(_ref(request))
    stdout = params.flag(request, "stdout")
    stderr = params.flag(request, "stderr")
    if not stdout and not stderr:
        raise InvalidArgument("You must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = None
    if tail_text not in ("all", ""):
        try:
            tail = int(tail_text)
        except ValueError:
            raise InvalidArgument(f"invalid value for tail: {tail_text!r}") from None
    now = time.time()
    since = request.query.get("since")
    until = request.query.get("until")
    since_ns = parse_time_filter_ns(since, now) if since and since != "0" else None
    until_ns = parse_time_filter_ns(until, now) if until and until != "0" else None
    follow = params.flag(request, "follow")
    timestamps = params.flag(request, "timestamps")
    tty = bool(c.config.get("Tty"))
    path = service.log_path(c)
    cancelled = threading.Event()

    def produce() -> Any:
        return read_logs(
            path,
            follow=follow,
            tail=tail,
            since_ns=since_ns,
            until_ns=until_ns,
            timestamps=timestamps,
            stdout=stdout,
            stderr=stderr,
            # A follower whose client left stops too (its handler is cancelled).
            stop=lambda: cancelled.is_set() or not c.running,
        )

    content_type = stream_content_type(api_version(request), multiplexed=not tty)
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
    loop = asyncio.get_running_loop()

    def pump() -> None:
        lines = produce()
        try:
            for line in lines:
                if cancelled.is_set():
                    return
                data = line.data if tty else frame(1 if line.stream == "stdout" else 2, line.data)
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
        except MoorageError:
            pass
        finally:
            lines.close()
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(queue.put(None), loop)

    thread = threading.Thread(target=pump, name="logs", daemon=True)
    thread.start()
    try:
        while (chunk := await queue.get()) is not None:
            await response.write(chunk)
    finally:
        cancelled.set()
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                queue.get_nowait()  # unblock the pump if it waits on a full queue
    await response.write_eof()
    return response


@routes.add("POST", "/containers/{id}/resize")
async def resize(request: web.Request) -> web.StreamResponse:
    from moorage.engine.monitor_client import MonitorClient

    service = _service(request)
    c = service.get(_ref(request))
    height = params.integer(request, "h", 0) or 0
    width = params.integer(request, "w", 0) or 0
    sock = service.monitor_socket(c)
    await asyncio.to_thread(MonitorClient(sock).resize, height, width)
    return web.Response(status=200)


@routes.add("POST", "/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    from moorage.engine.monitor_client import MonitorClient

    service = _service(request)
    c = service.get(_ref(request))
    want = {
        "stdin": params.flag(request, "stdin"),
        "stdout": params.flag(request, "stdout"),
        "stderr": params.flag(request, "stderr"),
    }
    stream = params.flag(request, "stream")
    logs = params.flag(request, "logs")
    service.attached(c)
    tty = bool(c.config.get("Tty"))
    # With logs, what was logged before the attach comes first (as dockerd sends it);
    # what comes after is the live stream's.
    history_until = time.time_ns()
    if not stream:  # the logs only, or (neither asked for) nothing: as dockerd answers
        client = await hijack(request, multiplexed=not tty)
        if logs:
            await _replay_logs(client, service.log_path(c), want, tty=tty, until_ns=history_until)
        await client.close()
        return client.response
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[socket.socket] = loop.create_future()

    def connect(sock_path: str) -> None:
        if not sock_path:  # the start failed: end the stream
            loop.call_soon_threadsafe(_fail, ready, Conflict("the container did not start"))
            return
        try:
            monitor = MonitorClient(sock_path).attach(**want)
        except MoorageError as exc:
            loop.call_soon_threadsafe(_fail, ready, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, monitor)

    cancel = None
    try:
        if c.running:
            history_until = time.time_ns()
            await in_daemon_thread(connect, service.monitor_socket(c))
        else:
            cancel = service.add_pending_attach(c.id, connect)
        client = await hijack(request, multiplexed=not tty)
        try:
            monitor = await ready
        except MoorageError:
            await client.close()
            return client.response
    except BaseException:
        _discard(ready)  # the client left (or the hijack failed) before the relay
        raise
    finally:
        if cancel is not None:
            cancel()
    if logs and not await _replay_logs(
        client, service.log_path(c), want, tty=tty, until_ns=history_until
    ):
        monitor.close()
        await client.close()
        return client.response
    await relay(client, monitor, stdin=want["stdin"])
    return client.response


async def _replay_logs(
    client: Hijacked, path: str, want: dict[str, bool], *, tty: bool, until_ns: int
) -> bool:
    """Send the container's logged output up to ``until_ns`` (attach's ``logs``); False
    once the client has gone."""
    lines = read_logs(path, until_ns=until_ns, stdout=want["stdout"], stderr=want["stderr"])

    def batch() -> list[Any]:
        return list(itertools.islice(lines, 256))

    try:
        while chunk := await asyncio.to_thread(batch):
            data = b"".join(
                line.data if tty else frame(1 if line.stream == "stdout" else 2, line.data)
                for line in chunk
            )
            if not await client.send(data):
                return False
    except MoorageError:
        pass  # no readable log: nothing to replay
    finally:
        lines.close()
    return True


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
    elif isinstance(value, socket.socket):
        value.close()


def _discard(future: asyncio.Future[Any]) -> None:
    """Nobody will take ``future``'s monitor connection: close it, now or once it comes."""
    if not future.done():
        future.cancel()  # a later _settle closes what it brings
    elif not future.cancelled() and future.exception() is None:
        with contextlib.suppress(OSError):
            future.result().close()


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def relay(client: Hijacked, monitor: socket.socket, *, stdin: bool) -> None:
    """Copy the monitor's stream to the client, and the client's input to the monitor,
    until the monitor ends the stream (the process exited) or the client leaves."""
    monitor.setblocking(False)
    m_reader, m_writer = await asyncio.open_unix_connection(sock=monitor)

    async def downstream() -> None:
        while data := await m_reader.read(65536):
            if not await client.send(data):
                return

    async def upstream() -> None:
        try:
            while data := await client.reader.read(65536):
                m_writer.write(data)
                await m_writer.drain()
            if m_writer.can_write_eof():
                m_writer.write_eof()
        except (ConnectionError, OSError):
            pass

    up = asyncio.create_task(upstream()) if stdin else None
    try:
        await client.while_connected(downstream())  # the client may leave a quiet container
    except (ConnectionError, OSError):
        pass
    finally:
        if up is not None:
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await up
        m_writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await m_writer.wait_closed()
        await client.close()
