"""Registry credentials between a client and the daemon: Docker's ``X-Registry-Auth``.

The header is base64url (padded or not) of a JSON object, as the docker CLI sends it::

    {"username": "me", "password": "secret", "serveraddress": "localhost:5000"}
    {"identitytoken": "<refresh token>", "serveraddress": "https://index.docker.io/v1/"}

``encode`` is the CLI's side (from credentials kept by :class:`CredentialStore`, which
this module re-exports so that the CLI needs no registry import of its own); ``decode``
is the daemon's. A header that cannot be read means anonymous, as dockerd treats it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import Any

from moorage.errors import MoorageError
from moorage.registry.client.credentials import Credentials, CredentialStore, server_key
from moorage.registry.client.resolve import normalize_server

__all__ = [
    "AUTH_HEADER",
    "REGISTRY_CONFIG_HEADER",
    "decode_registry_config",
    "encode_registry_config",
    "CredentialStore",
    "Credentials",
    "decode_registry_auth",
    "encode_registry_auth",
    "normalize_server",
    "server_key",
]

AUTH_HEADER = "X-Registry-Auth"


def encode_registry_auth(credentials: Credentials | None, server: str = "") -> str:
    """The header value for ``credentials`` (``{}``, anonymous, for None)."""
    data: dict[str, str] = {}
    if credentials is not None:
        if credentials.identity_token:
            data["identitytoken"] = credentials.identity_token
        else:
            data["username"] = credentials.username
            data["password"] = credentials.password
        if server:
            data["serveraddress"] = server
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


REGISTRY_CONFIG_HEADER = "X-Registry-Config"


def encode_registry_config(store: CredentialStore | None = None) -> str | None:
    """``X-Registry-Config`` for a build: every stored login, as the docker CLI sends
    them (base64url of ``{server: AuthConfig}``); None when there is none."""
    store = store or CredentialStore()
    logins: dict[str, dict[str, str]] = {}
    for server in store.servers():
        try:
            credentials = store.get(server)
        except MoorageError:
            continue  # an unreadable entry: that registry is pulled from anonymously
        if credentials is None:
            continue
        if credentials.identity_token:
            logins[server] = {"identitytoken": credentials.identity_token}
        else:
            logins[server] = {"username": credentials.username, "password": credentials.password}
    if not logins:
        return None
    raw = json.dumps(logins, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_registry_config(header: str | None) -> dict[str, Credentials]:
    """An ``X-Registry-Config`` value as {server key: credentials}; unreadable: none."""
    data = _json_of(header)
    if not isinstance(data, dict):
        return {}
    logins = {}
    for server, auth in data.items():
        credentials = credentials_from_json(auth)
        if credentials is not None and isinstance(server, str):
            logins[server_key(server)] = credentials
    return logins


def decode_registry_auth(header: str | None) -> Credentials | None:
    """The credentials in an ``X-Registry-Auth`` value; None for none or an unreadable one."""
    return credentials_from_json(_json_of(header))


def _json_of(header: str | None) -> Any:
    """The JSON in a base64url (padded or not) header value; None when unreadable."""
    if not header or not header.strip():
        return None
    text = header.strip().replace("-", "+").replace("_", "/")
    try:
        return json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None


def credentials_from_json(data: Any) -> Credentials | None:
    """Docker's AuthConfig object (``/auth``'s body, the header's content) as credentials."""
    if not isinstance(data, dict):
        return None

    def text(key: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) else ""

    username, password = text("username"), text("password")
    auth = text("auth")
    if auth and not username:
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            username, _, password = base64.b64decode(auth).decode().partition(":")
    found = Credentials(username, password, text("identitytoken"), text("registrytoken"))
    return None if found.anonymous else found
