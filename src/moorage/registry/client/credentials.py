"""Stored registry credentials: a file shaped like docker's ``config.json``.

::

    {"auths": {"localhost:5000": {"auth": "<base64 of user:password>"},
               "https://index.docker.io/v1/": {"auth": "...", "identitytoken": "..."}}}

Where: ``$MOOR_CONFIG/config.json``, else ``~/.moor/config.json``. Reading falls back
to docker's file (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) for a
registry that Moorage's file does not name, so a ``docker login`` is good for ``moor``
too. Only Moorage's own file is ever written: atomically (a new file, mode 0600 from
its creation, fsynced, renamed over the old one), keeping whatever other keys it holds.

Keys name a registry in any of the forms docker writes (``host:port``,
``https://host/v1/``, ``http://host:5000``); lookups compare them normalised, and
Docker Hub is filed under docker's key ``https://index.docker.io/v1/``. Credential
helpers (``credsStore``, ``credHelpers``) are not run: such entries are skipped.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from moorage.errors import InvalidArgument
from moorage.oci.reference import DEFAULT_DOMAIN
from moorage.registry.client.resolve import DOCKER_HUB_KEY, normalize_server

__all__ = [
    "CredentialStore",
    "Credentials",
    "decode_auth_entry",
    "default_path",
    "docker_path",
    "encode_auth_entry",
    "server_key",
]

CONFIG_NAME = "config.json"


class Credentials(NamedTuple):
    """What one registry knows us by. All empty: anonymous."""

    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token from an earlier login
    registry_token: str = ""  # a bearer token handed over as is (X-Registry-Auth's)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)


def default_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("MOOR_CONFIG")
    return Path(base) / CONFIG_NAME if base else Path.home() / ".moor" / CONFIG_NAME


def docker_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG")
    return Path(base) / CONFIG_NAME if base else Path.home() / ".docker" / CONFIG_NAME


def server_key(server: str) -> str:
    """The key a registry's entry is filed under: docker's for Docker Hub, else host[:port]."""
    host = normalize_server(server)
    return DOCKER_HUB_KEY if host == DEFAULT_DOMAIN else host


def encode_auth_entry(credentials: Credentials) -> dict[str, str]:
    raw = f"{credentials.username}:{credentials.password}".encode()
    entry = {"auth": base64.b64encode(raw).decode("ascii")}
    if credentials.identity_token:
        entry["identitytoken"] = credentials.identity_token
    return entry


def decode_auth_entry(entry: object, where: str) -> Credentials | None:
    """An ``auths`` entry as credentials; None for one that holds nothing usable."""
    if not isinstance(entry, dict):
        return None
    username = entry.get("username") if isinstance(entry.get("username"), str) else ""
    password = entry.get("password") if isinstance(entry.get("password"), str) else ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            text = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidArgument(
                f"{where}: invalid auth value: not base64 of user:password"
            ) from exc
        username, colon, password = text.partition(":")
        if not colon:
            raise InvalidArgument(f"{where}: invalid auth value: no ':' between user and password")
    token = entry.get("identitytoken")
    identity = token if isinstance(token, str) else ""
    if not (username or identity):
        return None
    return Credentials(str(username), str(password), identity)


class CredentialStore:
    """Moorage's credentials file, read with docker's as a fallback (module docstring)."""

    def __init__(self, path: Path | None = None, fallback: Path | None = None) -> None:
        self.path = path or default_path()
        # Only when docker's default is asked for: an explicit path stands alone.
        self.fallback = (
            fallback if fallback is not None else (docker_path() if path is None else None)
        )

    def get(self, server: str) -> Credentials | None:
        """The stored credentials for ``server`` (any form of it), or None."""
        host = normalize_server(server)
        for path in (self.path, self.fallback):
            if path is None:
                continue
            auths = _read(path).get("auths")
            if not isinstance(auths, dict):
                continue
            for key, entry in auths.items():
                try:
                    same = isinstance(key, str) and normalize_server(key) == host
                except InvalidArgument:
                    same = False
                if same:
                    found = decode_auth_entry(entry, f"{path}: auths[{key!r}]")
                    if found is not None:
                        return found
        return None

    def servers(self) -> list[str]:
        """Every server that has an entry (Moorage's file first, then docker's)."""
        found: list[str] = []
        for path in (self.path, self.fallback):
            if path is None:
                continue
            auths = _read(path).get("auths")
            if isinstance(auths, dict):
                found += [key for key in auths if isinstance(key, str) and key not in found]
        return found

    def store(self, server: str, credentials: Credentials) -> None:
        """File ``credentials`` for ``server``, replacing any entry for it."""
        data = _read(self.path)
        auths = data.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        _drop(auths, normalize_server(server))
        auths[server_key(server)] = encode_auth_entry(credentials)
        data["auths"] = auths
        self._write(data)

    def erase(self, server: str) -> bool:
        """Forget ``server``'s entry in Moorage's file; False when there was none."""
        data = _read(self.path)
        auths = data.get("auths")
        if not isinstance(auths, dict) or not _drop(auths, normalize_server(server)):
            return False
        self._write(data)
        return True

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = directory / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        # 0600 from the start: the secrets are never readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read: {exc.strerror}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{path}: invalid json: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: want a json object")
    return data


def _drop(auths: dict[str, Any], host: str) -> bool:
    """Remove every key that names ``host``; True if one did."""
    gone = False
    for key in list(auths):
        try:
            same = normalize_server(key) == host
        except InvalidArgument:
            same = False
        if same:
            del auths[key]
            gone = True
    return gone
