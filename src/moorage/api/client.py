"""The Docker Engine API client the ``moor`` CLI uses: HTTP/1.1 over a unix socket.

Spoken by hand over a socket, neither aiohttp nor the stdlib's http.client: the CLI
is short-lived and every command pays the client's import (http.client brings the
email package and ssl, about 13 ms of a ~50 ms ``moor run``), and the exchanges are
few and simple: one request per connection (``Connection: close``), a body by
Content-Length or by chunks, a response read by Content-Length, by chunks or to the
close. Errors come back as the Moorage error classes the server mapped them from
(``{"message": ...}`` bodies), so a caller catches ``NotFound`` the same whether the
call was local or remote.

Attach and exec need the connection itself once the response headers are read
(Docker's "hijacked" stream: stdin goes up, stdout/stderr come down on the same
socket): :meth:`Client.hijack` hands the socket over.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterable, Iterator
from typing import IO, Any

from moorage.api.docker.errors import ERROR_OF_STATUS
from moorage.errors import MoorageError, Unavailable

API_PREFIX = "/v1.50"
CHUNK = 1024 * 1024
_MAX_HEADER_BYTES = 64 * 1024
_RECV = 65536


class ConnectionFailed(Unavailable):
    """Nobody answers on the daemon's socket (as opposed to the daemon answering 503)."""


class Headers(dict[str, str]):
    """Response headers by lower-cased name; lookups ignore case, as HTTP's do."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Body:
    """A response body as a file: by Content-Length, by chunks, or up to the close."""

    def __init__(self, sock: socket.socket, buffered: bytes, headers: Headers, empty: bool) -> None:
        self._sock: socket.socket | None = sock
        self._out = bytearray()
        self._chunks: _ChunkDecoder | None = None
        self._left: int | None = None  # raw bytes still due; None: until the close
        if empty:
            self._left = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunks = _ChunkDecoder()
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise MoorageError(
                    f"malformed response from the daemon: Content-Length "
                    f"{headers['content-length']!r}"
                ) from None
        self._eof = self._left == 0
        if buffered:
            self._take_in(buffered)

    def _take_in(self, data: bytes) -> None:
        if self._chunks is not None:
            try:
                self._chunks.feed(data)
            except ValueError:
                raise MoorageError("malformed chunked response from the daemon") from None
            self._out += self._chunks.take_all()
            self._eof = self._chunks.done
        elif self._left is not None:
            data = data[: self._left]
            self._left -= len(data)
            self._out += data
            self._eof = self._left == 0
        else:
            self._out += data

    def _fill(self) -> bool:
        """Read more from the socket; False at the body's end."""
        while not self._out:
            if self._eof or self._sock is None:
                return False
            data = self._sock.recv(_RECV)
            if not data:
                if self._chunks is not None or self._left:
                    raise Unavailable("the daemon closed the connection in the middle of a body")
                self._eof = True
                return False
            self._take_in(data)
        return True

    def read1(self, n: int = _RECV) -> bytes:
        """What is there now, at most ``n`` bytes (waiting only when nothing is); b"" at the end."""
        if not self._fill():
            return b""
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes, fewer only at the end; everything left when ``n`` < 0."""
        parts = bytearray()
        while n < 0 or len(parts) < n:
            data = self.read1(_RECV if n < 0 else n - len(parts))
            if not data:
                break
            parts += data
        return bytes(parts)

    def readline(self) -> bytes:
        line = bytearray()
        while self._fill():
            end = self._out.find(b"\n")
            if end >= 0:
                line += self._out[: end + 1]
                del self._out[: end + 1]
                return bytes(line)
            line += self._out
            self._out.clear()
        return bytes(line)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Response:
    """A response whose body the caller reads: at once, as JSON, or streamed."""

    def __init__(self, status: int, headers: Headers, body: Body) -> None:
        self.status = status
        self.headers = headers
        self.raw = body

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

    def iter_available(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body as it arrives (``logs -f``): each chunk is what one read gave,
        where :meth:`iter_chunks` waits to fill ``size``."""
        try:
            while chunk := self.raw.read1(size):
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
        return self.begin(
            method, path, params=params, body=body, headers=headers, json_body=json_body
        ).response()

    def begin(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | IO[bytes] | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> PendingRequest:
        """Send a request now and read its response later.

        ``moor run`` needs this: its ``wait`` must reach the daemon before the
        container starts, or a quick exit is missed; the answer comes at the exit.
        """
        head = {"Host": "localhost", "Connection": "close", **(headers or {})}
        chunks: Iterator[bytes] | None = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            head["Content-Type"] = "application/json"
        if body is None or isinstance(body, bytes):
            payload = body or b""
            if body is not None or method in ("POST", "PUT"):
                head["Content-Length"] = str(len(payload))
        else:
            payload = b""
            head.setdefault("Content-Type", "application/x-tar")
            head["Transfer-Encoding"] = "chunked"
            chunks = _chunks(body)
        lines = [f"{method} {API_PREFIX}{path}{_query(params)} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in head.items()]
        sock = self._connect()
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
            if chunks is not None:
                for chunk in chunks:
                    if chunk:
                        sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
        except BaseException:
            sock.close()
            raise
        return PendingRequest(sock, method)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise self._unreachable() from exc
        except BaseException:
            sock.close()
            raise
        return sock

    def hijack(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> HijackedConnection:
        """Docker's attach/exec-start exchange: after the headers, the socket is the stream.

        ``body`` is sent as JSON unless it is bytes. The daemon answers 101 (it
        took the upgrade) or 200 (it did not, the stream follows all the same);
        an error status raises the mapped Moorage error.
        """
        payload = b""
        content_type = ""
        if isinstance(body, bytes):
            payload = body
        elif body is not None:
            payload = json.dumps(body).encode()
            content_type = "Content-Type: application/json\r\n"
        head = (
            f"{method} {API_PREFIX}{path}{_query(params)} HTTP/1.1\r\n"
            "Host: localhost\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: tcp\r\n"
            f"{content_type}"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        sock = self._connect()
        try:
            sock.sendall(head.encode("latin-1") + payload)
            status, response_headers, rest = _read_head(sock)
            if status >= 400:
                raise _error_from(status, _read_body(sock, response_headers, rest))
            if status not in (101, 200):
                raise MoorageError(f"{method} {path}: unexpected HTTP {status} for a stream")
        except BaseException:
            sock.close()
            raise
        # The stream itself blocks for as long as the container is quiet.
        sock.settimeout(None)
        chunked = status == 200 and "chunked" in response_headers.get("transfer-encoding", "")
        return HijackedConnection(sock, rest, status, response_headers, chunked=chunked)

    def _unreachable(self) -> ConnectionFailed:
        return ConnectionFailed(
            f"cannot connect to the moor daemon at unix://{self.socket_path}: is it running?"
        )

    def ping(self) -> bool:
        try:
            return self.request("GET", "/_ping").read() == b"OK"
        except (Unavailable, OSError):
            return False

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()


class PendingRequest:
    """A request on the wire whose response has not been read yet."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self._sock = sock
        self._method = method

    def response(self) -> Response:
        """Block for the response; non-2xx statuses raise the mapped Moorage error."""
        try:
            status, headers, rest = _read_head(self._sock)
        except BaseException:
            self._sock.close()
            raise
        empty = self._method == "HEAD" or status in (204, 304) or 100 <= status < 200
        response = Response(status, headers, Body(self._sock, rest, headers, empty))
        if status >= 400:
            raise _error_of(response)
        return response

    def close(self) -> None:
        self._sock.close()


class HijackedConnection:
    """The socket of an attach or exec stream, with the bytes read past the headers."""

    def __init__(
        self,
        sock: socket.socket,
        buffered: bytes,
        status: int,
        headers: Headers,
        *,
        chunked: bool = False,
    ) -> None:
        self.sock = sock
        self.status = status
        self.headers = headers  # lower-cased names
        self._pending = bytearray(buffered)
        # A daemon that did not take the upgrade may still frame its 200 as chunks.
        self._chunks = _ChunkDecoder() if chunked else None

    def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes of the stream; b"" at its end."""
        if self._chunks is None:
            return self._read_raw(n)
        while True:
            data = self._chunks.take(n)
            if data or self._chunks.done:
                return data
            more = self._read_raw(n)
            if not more:
                return b""
            self._chunks.feed(more)

    def _read_raw(self, n: int) -> bytes:
        if self._pending:
            data = bytes(self._pending[:n])
            del self._pending[:n]
            return data
        return self.sock.recv(n)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Tell the daemon stdin is done (its EOF), keeping the output side open."""
        # Already closed or reset: then there is nothing left to tell.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HijackedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ChunkDecoder:
    """Incremental HTTP/1.1 chunked transfer decoding."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._out = bytearray()
        self._left = 0  # bytes of the current chunk still to come
        self._crlf = False  # the CRLF after a chunk's data is due
        self.done = False

    def feed(self, data: bytes) -> None:
        self._raw += data
        while not self.done:
            if self._left:
                piece = self._raw[: self._left]
                self._out += piece
                del self._raw[: len(piece)]
                self._left -= len(piece)
                if self._left:
                    return
                self._crlf = True
            if self._crlf:
                if len(self._raw) < 2:
                    return
                del self._raw[:2]
                self._crlf = False
            end = self._raw.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(self._raw[:end]).split(b";")[0] or b"0", 16)
            del self._raw[: end + 2]
            if size == 0:
                self.done = True
            self._left = size

    def take(self, n: int) -> bytes:
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def take_all(self) -> bytes:
        return self.take(len(self._out))


def _query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    # A list is a repeated parameter (names=a&names=b); a dict is JSON (filters).
    pairs = [
        f"{quote(k)}={quote(_param(x))}"
        for k, v in params.items()
        if v is not None
        for x in (v if isinstance(v, list | tuple) else [v])
    ]
    return "?" + "&".join(pairs)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str) -> str:
    """Percent-encoding of a query component (RFC 3986 unreserved kept). By hand, not
    urllib.parse: that import costs the CLI more than this function's few lines."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def _read_head(sock: socket.socket) -> tuple[int, Headers, bytes]:
    """Status and headers of a response, and what was read past them."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEADER_BYTES:
            raise MoorageError("the daemon's response headers are too long")
        data = sock.recv(65536)
        if not data:
            raise Unavailable("the daemon closed the connection before answering")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise MoorageError(f"malformed response from the daemon: {status_line!r}")
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def _read_body(sock: socket.socket, headers: Headers, rest: bytes) -> bytes:
    """The (error) body after the headers: by length, by chunks, or up to the close."""
    if "content-length" in headers:
        want = int(headers["content-length"])
        data = bytearray(rest)
        while len(data) < want and (more := sock.recv(65536)):
            data += more
        return bytes(data[:want])
    if "chunked" in headers.get("transfer-encoding", ""):
        decoder = _ChunkDecoder()
        decoder.feed(rest)
        while not decoder.done and (more := sock.recv(65536)):
            decoder.feed(more)
        return decoder.take_all()
    data = bytearray(rest)
    while more := sock.recv(65536):
        data += more
    return bytes(data)


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
    try:
        raw = response.read()
    except OSError:
        raw = b""
    return _error_from(response.status, raw)


def _error_from(status: int, raw: bytes) -> MoorageError:
    try:
        message = json.loads(raw)["message"]
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace").strip() or f"HTTP {status}"
    cls = ERROR_OF_STATUS.get(status, MoorageError)
    return cls(message)
