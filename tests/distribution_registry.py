"""The CNCF distribution registry (Debian's ``docker-registry``) for interop tests and
benchmarks, and what tests put in front of it: a token server minting RS256 JWTs, and a
proxy that counts requests and can cut, hold or tamper with blob downloads.

Each runs privately on a free 127.0.0.1 port: the registry as a child process with a
config in its own directory, the token server and the proxy as aiohttp apps on an event
loop in a thread of their own. Every ``start`` has a ``stop`` that a fixture calls in
its teardown.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

REGISTRY_BINARY = "docker-registry"
WAIT = 30.0


def available() -> bool:
    return shutil.which(REGISTRY_BINARY) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``condition`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


class DistributionRegistry:
    """``docker-registry serve`` with a JSON (hence YAML) config written here."""

    def __init__(
        self, base: Path, auth: dict[str, Any] | None = None, address: str = "127.0.0.1"
    ) -> None:
        self.base = base
        self.address = address
        self.port = free_port()
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "registry.log"

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.base / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": "moorage-test-" + uuid.uuid4().hex},
        }
        if self.auth:
            config["auth"] = self.auth
        return config

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        path = self.base / "config.yml"
        path.write_text(json.dumps(self.config(), indent=2))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(path)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + WAIT
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=2)
        try:
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        """A plain request to the registry itself, for checks: (status, headers, body)."""
        conn = http.client.HTTPConnection(self.address, self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def htpasswd_auth(directory: Path, users: dict[str, str]) -> dict[str, Any]:
    """The registry's ``auth`` section for basic auth with bcrypt entries for ``users``."""
    import bcrypt

    path = directory / "htpasswd"
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, password in users.items()
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return {"htpasswd": {"realm": "moorage-test", "path": str(path)}}


class ThreadedApp:
    """An aiohttp app served on 127.0.0.1 from an event loop in its own thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
            self.runner = None
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
        self.loop.close()


class TokenServer:
    """Docker's token flow: ``GET /token?service=&scope=&account=`` with basic auth.

    Known users get what they ask for; anonymous and unknown ones a 401. Tokens are
    RS256 JWTs carrying the signing certificate in ``x5c``, which distribution checks
    against the ``rootcertbundle`` written by :meth:`start` (``cert_path``).
    ``expire_first`` makes the first token already expired (with a normal
    ``expires_in``), so the registry refuses it and the client must fetch another.
    """

    issuer = "moorage-test-issuer"
    service = "moorage-test-registry"

    def __init__(self, directory: Path, users: dict[str, str], *, expire_first: bool = False):
        self.directory = directory
        self.users = users
        self.expire_first = expire_first
        self.fetches: list[tuple[str, tuple[str, ...]]] = []  # (account, scopes)
        app = web.Application()
        app.router.add_get("/token", self._token)
        self.server = ThreadedApp(app)
        self.cert_path = directory / "token.crt"
        self._key: Any = None
        self._x5c = ""

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    def start(self) -> None:
        self._make_key()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def _make_key(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moorage test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    def _account(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == password else None

    async def _token(self, request: web.Request) -> web.Response:
        import jwt

        account = self._account(request)
        scopes = tuple(request.query.getall("scope", []))
        self.fetches.append((account or "", scopes))
        if account is None:
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
            )
        access = []
        for scope in scopes:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind and name:
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        expired = self.expire_first and len(self.fetches) == 1
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            # distribution allows 60 s of clock skew either way: expired is well past it.
            "iat": now - 600 if expired else now - 10,
            "nbf": now - 600 if expired else now - 10,
            "exp": now - 300 if expired else now + 300,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": [self._x5c]})
        return web.json_response({"token": token, "access_token": token, "expires_in": 300})


class Proxy:
    """A reverse proxy in front of ``upstream`` (``host:port``) that records every request.

    Blob downloads (``GET .../blobs/sha256:...`` answered 200 or 206) can be:

    - cut: the first ``cut_times`` bodies longer than ``cut_at`` bytes are cut off
      after that many bytes (the connection is dropped);
    - held: after ``hold_at`` bytes of a body the proxy stops sending and sets
      ``holding`` (a threading.Event) until it is stopped;
    - tampered: with ``tamper``, one byte in the middle of each body of 1 MiB or more is
      changed (smaller ones, configs, go through untouched).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.cut_at: int | None = None
        self.cut_times = 1
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.tamper = False
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.server = ThreadedApp(app)
        self._session: ClientSession | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        if self._session is not None:
            self.server.call(self._session.close())
        self.server.stop()

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for m, path, _ in self.requests if m == method and contains in path)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        if self._session is None:
            self._session = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=None))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = request.content.iter_any() if request.body_exists else None
        async with self._session.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            is_blob = (
                request.method == "GET"
                and "/blobs/sha256:" in request.path
                and upstream.status in (200, 206)
            )
            sent = 0
            cut = (
                is_blob
                and self.cut_at is not None
                and self.cut_times > 0
                and (upstream.content_length or 0) > self.cut_at
            )
            if cut:
                self.cut_times -= 1
            middle = (upstream.content_length or 0) // 2
            tamper = is_blob and self.tamper and (upstream.content_length or 0) >= 1 << 20
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if tamper and sent <= middle < sent + len(chunk):
                    i = middle - sent
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                if is_blob and cut and sent + len(chunk) > (self.cut_at or 0):
                    await response.write(chunk[: (self.cut_at or 0) - sent])
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if is_blob and self.hold_at is not None and sent + len(chunk) > self.hold_at:
                    await response.write(chunk[: self.hold_at - sent])
                    self.holding.set()
                    await asyncio.Event().wait()  # until the proxy is stopped
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response


_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
