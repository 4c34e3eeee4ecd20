"""The Docker Engine API client the ``moor`` CLI uses: HTTP/1.1 over a unix socket.

The stdlib's http.client, not aiohttp: the CLI is short-lived and every
command pays the client's import. Errors come back as the Moorage error classes
the server mapped them from (``{"message": ...}`` bodies), so a caller catches
``NotFound`` the same whether the call was local or remote.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import IO, Any

from moorage.api.docker.errors import ERROR_OF_STATUS
from moorage.errors import MoorageError, Unavailable

API_PREFIX = "/v1.50"
CHUNK = 1024 * 1024


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Response:
    """A response whose body the caller reads: at once, as JSON, or streamed."""

    def __init__(self, raw: http.client.HTTPResponse, conn: _UnixConnection) -> None:
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers
        self._conn = conn

    def read(self) -> bytes:
        try:
            return self.raw.read()
        finally:
            self.close()

    def json(self) -> Any:
        return json.loads(self.read() or b"null")

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        try:
            while chunk := self.raw.read(size):
                yield chunk
        finally:
            self.close()

    def iter_json_lines(self) -> Iterator[Any]:
        """Docker's streams of JSON objects (pull/load progress), one per line."""
        try:
            for line in self.raw:
                if line.strip():
                    yield json.loads(line)
        finally:
            self.close()

    def close(self) -> None:
        self.raw.close()
        self._conn.close()


class Client:
    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | IO[bytes] | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> Response:
        """Send a request; non-2xx statuses raise the mapped Moorage error."""
        query = ""
        if params:
            # A list is a repeated parameter (names=a&names=b); a dict is JSON (filters).
            clean = {
                k: [_param(x) for x in v] if isinstance(v, list | tuple) else _param(v)
                for k, v in params.items()
                if v is not None
            }
            query = "?" + urllib.parse.urlencode(clean, doseq=True)
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            if body is None or isinstance(body, bytes):
                conn.request(method, API_PREFIX + path + query, body=body, headers=all_headers)
            else:
                all_headers.setdefault("Content-Type", "application/x-tar")
                all_headers["Transfer-Encoding"] = "chunked"
                conn.request(
                    method,
                    API_PREFIX + path + query,
                    body=_chunks(body),
                    headers=all_headers,
                    encode_chunked=True,
                )
            raw = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise Unavailable(
                f"cannot connect to the moor daemon at unix://{self.socket_path}: is it running?"
            ) from exc
        except OSError:
            conn.close()
            raise
        response = Response(raw, conn)
        if response.status >= 400:
            raise _error_of(response)
        return response

    def ping(self) -> bool:
        try:
            return self.request("GET", "/_ping").read() == b"OK"
        except (Unavailable, OSError):
            return False

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _chunks(body: IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(body, "read"):
        while chunk := body.read(CHUNK):
            yield chunk
    else:
        yield from body


def _error_of(response: Response) -> MoorageError:
    raw = response.read()
    try:
        message = json.loads(raw)["message"]
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace").strip() or f"HTTP {response.status}"
    cls = ERROR_OF_STATUS.get(response.status, MoorageError)
    return cls(message)
