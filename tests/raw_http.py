"""HTTP/1.1 by hand over a unix socket: for requests no well-behaved client would send
(malformed, huge, cut short) and for reading exactly what the daemon answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from typing import Any, NamedTuple

WAIT = 30.0  # seconds for any one answer


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def message(self) -> str:
        """The ``message`` of Docker's error body."""
        data = self.json()
        assert isinstance(data, dict), data
        message = data["message"]
        assert isinstance(message, str), data
        return message


def raw_request(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """The bytes of a request; a body gets a Content-Length (and a JSON Content-Type)."""
    fields = {"Host": "moorage", "Connection": "close", **(headers or {})}
    if body is not None:
        fields.setdefault("Content-Type", "application/json")
        fields["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode() + b"\r\n" + (body or b"")


def exchange(socket_path: str, raw: bytes) -> Answer:
    """Send ``raw`` and read the answer, which may come before all of ``raw`` was taken
    (the refusal of a huge request)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(socket_path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        method = raw.split(b" ", 1)[0].decode(errors="replace")
        response = http.client.HTTPResponse(sock, method=method)  # a HEAD's has no body
        response.begin()
        return Answer(response.status, response.headers, response.read())


def call(socket_path: str, method: str, path: str, body: Any = None, **headers: str) -> Answer:
    """One request; a ``body`` that is not bytes is sent as JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return exchange(socket_path, raw_request(method, path, data, headers))
