"""Registry servers for tests and benchmarks: ``moor registry serve`` and the CNCF
distribution registry (Debian's ``docker-registry``), each a private process on a
127.0.0.1 port with its own storage, plus what tests feed them: OCI layouts on disk,
htpasswd files, RS256 tokens signed by a throwaway key, and a small HTTP client.

Every server is stopped by ``stop()`` (SIGTERM, then SIGKILL), which the fixtures call
in their teardown whatever the test did.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DISTRIBUTION = "/usr/bin/docker-registry"
START_TIMEOUT = 30.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def distribution_available() -> bool:
    return os.access(DISTRIBUTION, os.X_OK)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]


def call(
    host: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    tls: bool = False,
    timeout: float = 60.0,
) -> Reply:
    """One request on a fresh connection to ``host`` (``127.0.0.1:port``)."""
    if tls:
        import ssl

        context = ssl._create_unverified_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        all_headers = dict(headers or {})
        if body is not None or method in ("POST", "PUT", "PATCH"):
            all_headers.setdefault("Content-Length", str(len(body or b"")))
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read() if method != "HEAD" else b""
        return Reply(response.status, response.headers, data)
    finally:
        conn.close()


def wait_listening(host: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    address, port = host.rsplit(":", 1)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection((address, int(port)), 1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"registry did not start: {log.read_text()[-3000:]}")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------- servers


@dataclass
class Registry:
    kind: str  # "moorage" or "distribution"
    base: Path
    host: str = ""
    tls: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return call(self.host, method, path, body, headers, tls=self.tls)

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@dataclass
class Auth:
    """How a server is to authenticate: an htpasswd file, or token settings."""

    htpasswd: Path | None = None
    token_realm: str | None = None
    token_service: str | None = None
    token_issuer: str | None = None
    token_cert: Path | None = None


def start_moorage(
    base: Path,
    *,
    auth: Auth | None = None,
    read_only: bool = False,
    tls: tuple[Path, Path] | None = None,
    root: Path | None = None,
    extra: Sequence[str] = (),
) -> Registry:
    """``moor registry serve`` on a free port (it picks one and says which)."""
    base.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "moorage.cli.main",
        "registry",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--root",
        str(root or base / "root"),
        "--log-level",
        "warning",
        *extra,
    ]
    if auth is not None and auth.htpasswd is not None:
        args += ["--htpasswd", str(auth.htpasswd)]
    if auth is not None and auth.token_realm is not None:
        args += ["--token-realm", auth.token_realm, "--token-service", str(auth.token_service)]
        args += ["--token-key", str(auth.token_cert)]
        if auth.token_issuer:
            args += ["--token-issuer", auth.token_issuer]
    if read_only:
        args.append("--read-only")
    if tls is not None:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    log = base / "moor-registry.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    registry = Registry("moorage", base, tls=tls is not None, proc=proc)
    try:
        registry.host = _read_listening(proc, log)
    except BaseException:
        registry.stop()
        raise
    return registry


def _read_listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The host:port from the server's "listening on URL" line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"registry did not start: {log.read_text()[-3000:]}")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                proc.wait(10)
                raise RuntimeError(f"registry exited: {log.read_text()[-3000:]}")
            line += byte
    text = line.decode().strip()
    if not text.startswith("listening on "):
        raise RuntimeError(f"unexpected first line from the registry: {text!r}")
    return text.removeprefix("listening on ").split("://", 1)[1]


def start_distribution(
    base: Path,
    *,
    auth: Auth | None = None,
    read_only: bool = False,
    tls: tuple[Path, Path] | None = None,
) -> Registry:
    """docker-registry with deletes enabled, on a port picked free just before.

    It cannot be told to pick one itself; a port taken in between fails the start,
    which is retried on another port.
    """
    base.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = free_port()
        config = _distribution_config(base, port, auth, read_only, tls)
        (base / "config.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        log = base / "docker-registry.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [DISTRIBUTION, "serve", str(base / "config.yml")],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        registry = Registry("distribution", base, f"127.0.0.1:{port}", tls is not None, proc)
        try:
            wait_listening(registry.host, proc, log)
            return registry
        except RuntimeError:
            registry.stop()
            if "address already in use" not in log.read_text():
                raise
    raise RuntimeError("docker-registry found no free port")


def _distribution_config(
    base: Path,
    port: int,
    auth: Auth | None,
    read_only: bool,
    tls: tuple[Path, Path] | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(base / "data")},
            "delete": {"enabled": True},
            "maintenance": {
                "uploadpurging": {"enabled": False},
                "readonly": {"enabled": read_only},
            },
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "moorage-test-secret"},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    if auth is not None and auth.htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "moorage registry", "path": str(auth.htpasswd)}}
    if auth is not None and auth.token_realm is not None:
        config["auth"] = {
            "token": {
                "realm": auth.token_realm,
                "service": auth.token_service,
                "issuer": auth.token_issuer,
                "rootcertbundle": str(auth.token_cert),
            }
        }
    return config


# --------------------------------------------------------------------------- credentials


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    import bcrypt

    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode()}" for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class TokenSigner:
    """A throwaway RSA key and self-signed certificate that mint registry tokens."""

    directory: Path
    issuer: str = "moorage-test-issuer"
    service: str = "moorage-test-registry"
    cert_path: Path = field(init=False)
    key_path: Path = field(init=False)

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moorage test token signer")])
        now = datetime.now(UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.directory / "token-cert.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.key_path = self.directory / "token-key.pem"
        self.key_path.write_bytes(
            self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def auth(self, realm: str = "https://auth.invalid/token") -> Auth:
        return Auth(
            token_realm=realm,
            token_service=self.service,
            token_issuer=self.issuer,
            token_cert=self.cert_path,
        )

    def token(
        self,
        access: Iterable[tuple[str, str, Sequence[str]]],
        *,
        expires_in: float = 300.0,
        audience: str | None = None,
    ) -> str:
        """A JWT granting ``(type, name, actions)`` entries. Its header carries the
        certificate (x5c), which distribution needs to pick the key; Moorage ignores it."""
        import jwt
        from cryptography.hazmat.primitives import serialization

        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "tester",
            "aud": audience or self.service,
            "exp": now + int(expires_in),
            "nbf": now - 10,
            "iat": now - 10,
            "jti": os.urandom(8).hex(),
            "access": [
                {"type": kind, "name": name, "actions": list(actions)}
                for kind, name, actions in access
            ],
        }
        der = self._cert.public_bytes(serialization.Encoding.DER)
        headers = {"x5c": [base64.b64encode(der).decode()]}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def bearer(self, access: Iterable[tuple[str, str, Sequence[str]]], **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(access, **kw)}"}


def self_signed_tls(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, for serving HTTPS in tests."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --------------------------------------------------------------------------- images


def tar_of(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar of regular files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_of_directory(root: Path) -> bytes:
    """A deterministic tar of a directory tree (symlinks kept), for a layer."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.mtime = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


@dataclass
class Layout:
    path: Path
    tag: str
    manifest_digest: str
    layer_digests: list[str]

    @property
    def ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"


def write_oci_layout(
    path: Path,
    layers: Sequence[bytes | Path],
    *,
    tag: str = "latest",
    gzip_layers: bool = True,
) -> Layout:
    """An OCI image layout of one image: a config, and ``layers`` (tars, or files with
    tars) as blobs, gzipped unless ``gzip_layers`` is false."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    descriptors, diff_ids = [], []
    for layer in layers:
        if isinstance(layer, Path):
            digest, size = _put_file(blobs, layer)
            diff_ids.append(digest)
            descriptors.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
            continue
        diff_ids.append(sha256(layer))
        data = gzip.compress(layer, compresslevel=6, mtime=0) if gzip_layers else layer
        media_type = OCI_LAYER_GZIP if gzip_layers else OCI_LAYER
        descriptors.append({"mediaType": media_type, "digest": put(data), "size": len(data)})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": put(config), "size": len(config)},
            "layers": descriptors,
        },
        separators=(",", ":"),
    ).encode()
    manifest_digest = put(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return Layout(path, tag, manifest_digest, [d["digest"] for d in descriptors])


def _put_file(blobs: Path, source: Path) -> tuple[str, int]:
    """Move a big layer file into the layout as a blob, hashing it in chunks."""
    hasher = hashlib.sha256()
    with open(source, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    digest = "sha256:" + hasher.hexdigest()
    target = blobs / hasher.hexdigest()
    shutil.move(source, target)
    return digest, target.stat().st_size


def skopeo(*args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------- in process


class InProcessRegistry:
    """The server's app over ``root`` on a 127.0.0.1 port, its event loop in a thread,
    for tests that need no process. ``close()`` stops it."""

    def __init__(self, root: Path, *, authorizer: Any = None, read_only: bool = False) -> None:
        import asyncio
        import threading

        from aiohttp import web

        from moorage.registry.server.app import Registry as App
        from moorage.registry.server.app import build_app
        from moorage.registry.server.storage import Storage

        self.storage = Storage(root)
        self.app = App(self.storage, authorizer, read_only=read_only)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(build_app(self.app), access_log=None, shutdown_timeout=1.0)

        async def start() -> str:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()
            address = self.runner.addresses[0]
            return f"{address[0]}:{address[1]}"

        self.host = self._run(start())

    def _run(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return call(self.host, method, path, body, headers)

    def close(self) -> None:
        self._run(self.runner.cleanup())
        self.app.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        self.storage.close()


class TokenServer:
    """A token endpoint for the Docker token flow, on a 127.0.0.1 port in a thread.

    It grants every scope asked for, except actions on repositories under ``denied/``
    and, when ``users`` is given, anything to a caller without their basic credentials.
    ``requests`` records each query, for tests to look at.
    """

    def __init__(self, signer: TokenSigner, users: Mapping[str, str] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        from moorage.registry.server.auth import parse_scope

        self.signer = signer
        self.users = dict(users or {})
        self.requests: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                outer.requests.append(query)
                if outer.users and not outer._authenticated(self.headers.get("Authorization")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="tokens"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for text in " ".join(query.get("scope", [])).split():
                    scope = parse_scope(text)
                    if not scope.name.startswith("denied/"):
                        access.append((scope.type, scope.name, scope.actions))
                token = outer.signer.token(access)
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _authenticated(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
