"""Client.hijack against a tiny threaded unix-socket server: the upgrade, the echo,
the half-close, errors mapped like any other response; and Client.begin."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.api.client import Client, ConnectionFailed
from moorage.errors import Conflict, NotFound, Unavailable

Handler = Callable[[socket.socket, bytes], None]


def _read_request(conn: socket.socket) -> bytes:
    """The request's head and body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(4096)
    return head + b"\r\n\r\n" + body


class FakeDaemon:
    """Serves each connection with ``handler(conn, request)`` in a thread."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = str(path)
        self.handler = handler
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            self.requests.append(request)
            self.handler(conn, request)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Handler], FakeDaemon]]:
    daemons: list[FakeDaemon] = []

    def start(handler: Handler) -> FakeDaemon:
        daemon = FakeDaemon(tmp_path / f"d{len(daemons)}.sock", handler)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.close()


UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\n"
    b"Content-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: tcp\r\n\r\n"
)


def _echo(conn: socket.socket, request: bytes) -> None:
    """Answer 101 with a greeting right behind the headers, then echo until EOF."""
    conn.sendall(UPGRADED + b"early:")
    while data := conn.recv(4096):
        conn.sendall(data)
    conn.sendall(b":bye")


def _read_all(hijacked: object) -> bytes:
    out = b""
    while data := hijacked.read(3):  # type: ignore[attr-defined]
        out += data
    return out


def test_upgrade_echo_and_half_close(serve: Callable[[Handler], FakeDaemon]) -> None:
    daemon = serve(_echo)
    client = Client(daemon.path)
    with client.hijack(
        "POST", "/containers/abc/attach", params={"stream": 1, "stdin": True}
    ) as stream:
        assert stream.status == 101
        assert stream.headers["content-type"] == "application/vnd.docker.raw-stream"
        stream.send(b"ping")
        stream.close_write()  # the daemon sees EOF, answers, and closes
        assert _read_all(stream) == b"early:ping:bye"
    head = daemon.requests[0].decode()
    assert head.startswith("POST /v1.50/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\n")
    assert "Connection: Upgrade\r\n" in head
    assert "Upgrade: tcp\r\n" in head


def test_json_body_is_sent(serve: Callable[[Handler], FakeDaemon]) -> None:
    daemon = serve(_echo)
    with Client(daemon.path).hijack("POST", "/exec/e1/start", body={"Detach": False}) as stream:
        stream.close_write()
        _read_all(stream)
    head, _, body = daemon.requests[0].partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"Detach": False}


def test_a_200_without_upgrade_is_a_stream_too(serve: Callable[[Handler], FakeDaemon]) -> None:
    def plain(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
        conn.sendall(b"raw output")

    with Client(serve(plain).path).hijack("POST", "/containers/x/attach") as stream:
        assert stream.status == 200
        assert _read_all(stream) == b"raw output"


def test_a_chunked_200_is_decoded(serve: Callable[[Handler], FakeDaemon]) -> None:
    def chunked(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        conn.sendall(b"3;ext=1\r\nefg\r\n0\r\n\r\n")

    with Client(serve(chunked).path).hijack("POST", "/containers/x/attach") as stream:
        assert _read_all(stream) == b"abcdefg"


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            b"Content-Length: 37\r\n\r\n"
            b'{"message":"No such container: nope"}',
            NotFound,
            "No such container: nope",
        ),
        (
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'1b\r\n{"message":"container is pa\r\n6\r\nused"}\r\n0\r\n\r\n',
            Conflict,
            "container is paused",
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy, not JSON",
            Unavailable,
            "busy, not JSON",
        ),
    ],
)
def test_errors_are_mapped(
    serve: Callable[[Handler], FakeDaemon],
    response: bytes,
    error: type[Exception],
    message: str,
) -> None:
    def refuse(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response)

    with pytest.raises(error, match=message):
        Client(serve(refuse).path).hijack("POST", "/containers/nope/attach")


def test_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailed, match="cannot connect to the moor daemon"):
        Client(str(tmp_path / "absent.sock")).hijack("POST", "/containers/x/attach")


def test_a_garbled_status_line(serve: Callable[[Handler], FakeDaemon]) -> None:
    def garbage(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

    with pytest.raises(Exception, match="malformed response"):
        Client(serve(garbage).path).hijack("POST", "/containers/x/attach")


def test_begin_sends_before_the_response_is_read(serve: Callable[[Handler], FakeDaemon]) -> None:
    arrived = threading.Event()
    release = threading.Event()

    def slow_wait(conn: socket.socket, request: bytes) -> None:
        arrived.set()
        release.wait(10)
        body = b'{"StatusCode":3,"Error":null}'
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    client = Client(serve(slow_wait).path)
    pending = client.begin("POST", "/containers/c/wait", params={"condition": "next-exit"})
    assert arrived.wait(10)  # on the daemon's side before anyone reads the answer
    release.set()
    assert pending.response().json() == {"StatusCode": 3, "Error": None}
