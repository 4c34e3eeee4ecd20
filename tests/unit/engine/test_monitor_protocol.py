"""The monitor's control protocol without a container: request framing, the I/O loop
(frames, stdin, slow clients), the client library's errors and replies."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.engine import monitor
from moorage.engine.logs import JsonFileWriter, read_logs, unframe
from moorage.engine.monitor import Task, _read_request, _Streams
from moorage.engine.monitor_client import (
    MonitorClient,
    _read_line,
    error_from_reply,
)
from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

TIMEOUT = 30.0


# -- the task file -------------------------------------------------------------------


def _task(**changes: Any) -> dict[str, Any]:
    task = {
        "id": "c1",
        "bundle": "/b",
        "runtime_root": "/r",
        "log_path": "/l/c1-json.log",
        "socket": "/run/c1.sock",
    }
    task.update(changes)
    return task


def test_task_defaults_and_fields() -> None:
    task = Task.from_dict(_task(tty=True, rootfs_mount="/m", ready_fd=7, log_opts={"a": 1}))
    assert task.tty is True
    assert (task.open_stdin, task.stdin_once) == (False, False)
    assert (task.rootfs_mount, task.ready_fd, task.log_opts) == ("/m", 7, {"a": "1"})
    assert Task.from_dict(_task(ready_fd=-1)).ready_fd is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"socket": None}, "socket"),
        ({"socket": "relative.sock"}, "absolute"),
        ({"id": ""}, "id"),
        ({"tty": "yes"}, "tty"),
        ({"rootfs_mount": "rel"}, "rootfs_mount"),
        ({"log_opts": []}, "log_opts"),
    ],
)
def test_task_rejects_bad_fields(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Task.from_dict(_task(**changes))


def test_task_load_reads_monitor_json(tmp_path: Path) -> None:
    (tmp_path / "monitor.json").write_text(json.dumps(_task()))
    assert Task.load(str(tmp_path)).id == "c1"
    (tmp_path / "monitor.json").write_text("[]")
    with pytest.raises(InvalidArgument, match="not a JSON object"):
        Task.load(str(tmp_path))


# -- requests ------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_a_request_with_descriptors_and_bytes_after_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    r, w = os.pipe()
    try:
        socket.send_fds(client, [b'{"op": "exec"}\nstdin bytes'], [w])
        fds: list[int] = []
        request, rest = _read_request(server, fds)
        assert request == {"op": "exec"}
        assert rest == b"stdin bytes"
        assert len(fds) == 1
        os.write(fds[0], b"!")
        assert os.read(r, 1) == b"!"
        os.close(fds[0])
    finally:
        os.close(r)
        os.close(w)


def test_a_request_split_over_several_writes(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    client.sendall(b'{"op":')
    threading.Timer(0, lambda: client.sendall(b' "state"}\n')).start()
    assert _read_request(server, [])[0] == {"op": "state"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json\n", "bad request"),
        (b"[1]\n", "not a JSON object"),
        (b'{"op": "state"}', "closed before a complete request"),
    ],
)
def test_bad_requests(
    pair: tuple[socket.socket, socket.socket], payload: bytes, message: str
) -> None:
    client, server = pair
    client.sendall(payload)
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(InvalidArgument, match=message):
        _read_request(server, [])


def test_a_request_too_long(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "MAX_REQUEST", 1000)
    client, server = pair
    client.sendall(b"x" * 2000)
    with pytest.raises(InvalidArgument, match="longer than 1000"):
        _read_request(server, [])


def test_a_reply_line_is_read_without_the_stream_after_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    server.sendall(b'{"ok": true}\nSTREAM')
    line, fds = _read_line(client, "test")
    assert (line, fds) == (b'{"ok": true}', [])
    assert client.recv(100) == b"STREAM"
    server.close()
    assert _read_line(client, "test") == (None, [])


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (
            {
                "error": 'exec: "x": executable file not found in $PATH',
                "kind": "FailedPrecondition",
            },
            NotFound,
        ),
        ({"error": "bundle does not exist: /b", "kind": "NotFound"}, NotFound),
        ({"error": "container c1 is already running", "kind": "Conflict"}, Conflict),
        ({"error": "unknown op: 'x'", "kind": "InvalidArgument"}, InvalidArgument),
        ({"error": "something", "kind": "Bogus"}, FailedPrecondition),
        ({"error": "something"}, FailedPrecondition),
        ({}, FailedPrecondition),
    ],
)
def test_error_replies_become_moorage_errors(reply: dict[str, Any], kind: type) -> None:
    exc = error_from_reply({"ok": False, **reply})
    assert type(exc) is kind
    if "error" in reply:
        assert str(exc) == reply["error"]  # the text reaches the daemon intact


# -- the client against a scripted monitor -------------------------------------------


class FakeMonitor:
    """A socket that answers each connection with ``handler(conn, request_line)``."""

    def __init__(self, path: str, handler: Callable[[socket.socket, bytes], None]) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                line = b""
                while not line.endswith(b"\n"):
                    data = conn.recv(4096)
                    if not data:
                        break
                    line += data
                if line:
                    self.requests.append(json.loads(line))
                self.handler(conn, line)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "m.sock")


def _serving(path: str, handler: Callable[[socket.socket, bytes], None]) -> FakeMonitor:
    return FakeMonitor(path, handler)


def test_client_requests_and_replies(sock_path: str) -> None:
    def handler(conn: socket.socket, line: bytes) -> None:
        op = json.loads(line)["op"]
        if op == "state":
            conn.sendall(b'{"ok": true, "status": "running", "pid": 42}\n')
        elif op == "start":
            conn.sendall(b'{"ok": false, "error": "already running", "kind": "Conflict"}\n')
        else:
            conn.sendall(b'{"ok": true}\n')

    fake = _serving(sock_path, handler)
    try:
        client = MonitorClient(sock_path, timeout=TIMEOUT)
        assert client.state() == {"status": "running", "pid": 42}
        with pytest.raises(Conflict, match="already running"):
            client.start()
        client.resize(10, 20, exec_id="e")
        assert fake.requests[-1] == {"op": "resize", "height": 10, "width": 20, "exec_id": "e"}
    finally:
        fake.close()


def test_client_attach_leaves_the_stream_to_the_caller(sock_path: str) -> None:
    fake = _serving(sock_path, lambda conn, _: conn.sendall(b'{"ok": true}\nout'))
    try:
        stream = MonitorClient(sock_path, timeout=TIMEOUT).attach(
            stdin=True, stdout=True, stderr=False
        )
        with stream:
            assert stream.gettimeout() is None
            assert stream.recv(10) == b"out"
        assert fake.requests[-1] == {"op": "attach", "stdin": True, "stdout": True, "stderr": False}
    finally:
        fake.close()


def test_client_exec_gets_the_master_and_the_exit_code(sock_path: str) -> None:
    r, w = os.pipe()

    def handler(conn: socket.socket, _line: bytes) -> None:
        socket.send_fds(conn, [b'{"ok": true, "pid": 9}\n'], [w])
        conn.sendall(b'{"exit_code": 7}\n')

    fake = _serving(sock_path, handler)
    try:
        with MonitorClient(sock_path, timeout=TIMEOUT).exec({"args": ["x"]}, "e1") as handle:
            assert handle.pid == 9
            assert handle.master_fd is not None
            os.write(handle.master_fd, b"m")
            assert os.read(r, 1) == b"m"
            assert handle.wait() == 7
            assert handle.wait() == 7
            os.close(handle.master_fd)  # the caller's to close
        assert handle.sock.fileno() == -1
    finally:
        fake.close()
        os.close(r)
        os.close(w)


def test_an_exec_connection_lost_before_the_exit_code(sock_path: str) -> None:
    fake = _serving(sock_path, lambda conn, _: conn.sendall(b'{"ok": true, "pid": 9}\n'))
    try:
        handle = MonitorClient(sock_path, timeout=TIMEOUT).exec({"args": ["x"]}, "e1")
        with handle, pytest.raises(Unavailable, match="before the exit code"):
            handle.wait()
    finally:
        fake.close()


def test_a_monitor_that_is_not_there_or_says_nothing(sock_path: str, tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="not running"):
        MonitorClient(sock_path).state()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # a socket file nobody listens on
    with pytest.raises(Unavailable, match="not running"):
        MonitorClient(sock_path).state()
    os.unlink(sock_path)
    fake = _serving(sock_path, lambda conn, _: None)
    try:
        with pytest.raises(Unavailable, match="without an answer"):
            MonitorClient(sock_path, timeout=TIMEOUT).state()
    finally:
        fake.close()


# -- the I/O loop --------------------------------------------------------------------


class Loop:
    """A _Streams over pipes standing in for the container's stdio."""

    def __init__(self, tmp_path: Path, *, stdin_once: bool = False) -> None:
        self.log_path = tmp_path / "c-json.log"
        self.writer = JsonFileWriter(self.log_path)
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.in_r, self.in_w = os.pipe()
        self.streams = _Streams(
            self.writer,
            tty=False,
            sources={self.out_r: "stdout", self.err_r: "stderr"},
            stdin_fd=self.in_w,
            stdin_once=stdin_once,
        )
        self.streams.start()

    def attach(self, streams: set[str], stdin: bool = False) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.settimeout(TIMEOUT)
        assert self.streams.attach(theirs, frozenset(streams), stdin, b"")
        assert _read_line(ours, "test")[0] == b'{"ok":true}'
        return ours

    def end(self) -> None:
        """The container is gone: its output ends, the loop finishes."""
        for fd in (self.out_w, self.err_w):
            os.close(fd)
        self.streams.finish()
        self.streams.join()
        self.writer.close()
        os.close(self.in_r)


def _drain(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_the_loop_frames_output_per_client_and_logs_it(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    both = loop.attach({"stdout", "stderr"})
    err = loop.attach({"stderr"})
    os.write(loop.out_w, b"one\n")
    os.write(loop.err_w, b"two\n")
    loop.end()
    assert sorted(unframe(_drain(both))) == [(1, b"one\n"), (2, b"two\n")]
    assert list(unframe(_drain(err))) == [(2, b"two\n")]
    assert sorted((x.stream, x.data) for x in read_logs(loop.log_path)) == [
        ("stderr", b"two\n"),
        ("stdout", b"one\n"),
    ]


def test_the_loop_feeds_stdin_and_stdin_once_closes_it(tmp_path: Path) -> None:
    loop = Loop(tmp_path, stdin_once=True)
    client = loop.attach({"stdout"}, stdin=True)
    client.sendall(b"typed")
    client.shutdown(socket.SHUT_WR)
    with os.fdopen(os.dup(loop.in_r), "rb") as stdin:
        assert stdin.read() == b"typed"  # then end of file: the write end is closed
    loop.end()
    assert _drain(client) == b""


def test_a_client_that_does_not_read_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "CLIENT_BUFFER", 4096)
    loop = Loop(tmp_path)
    slow = loop.attach({"stdout"})
    size = 4 << 20
    for _ in range(size // 65536):
        os.write(loop.out_w, b"a" * 65536)  # never blocked by the client
    loop.end()
    got = _drain(slow)  # what the kernel held for it, then the end of its stream
    assert len(got) < size
    assert sum(len(x.data) for x in read_logs(loop.log_path)) == size
