"""Who may do what: scopes, the Authorization header, challenges, and the authorizers' shape.

Every request needs a set of scopes, as Docker's token protocol names them::

    GET /v2/                              (none: any authenticated caller)
    GET /v2/_catalog                      registry:catalog:*
    GET, HEAD a manifest, blob, tags      repository:<name>:pull
    POST, PATCH, PUT (a push)             repository:<name>:pull,push
        ... with ?mount=&from=<other>     and repository:<other>:pull
    DELETE                                repository:<name>:delete

An :class:`Authorizer` either lets the request through or raises Unauthorized
carrying the ``WWW-Authenticate`` challenge to answer with::

    Basic realm="moorage registry"
    Bearer realm="https://auth.example/token",service="registry.example",scope="repository:app:pull,push"

Three are provided: :class:`AllowAll` (no ``--htpasswd`` and no token settings),
:class:`~moorage.registry.server.htpasswd.HtpasswdAuthorizer` and
:class:`~moorage.registry.server.tokens.TokenAuthorizer`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from moorage.registry.server.errors import Unauthorized

__all__ = [
    "AllowAll",
    "Authorizer",
    "Scope",
    "challenge",
    "parse_authorization",
    "parse_basic",
    "parse_scope",
    "unauthorized",
]


class Scope(NamedTuple):
    type: str  # "repository" or "registry"
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope:
    """``repository:library/busybox:pull,push`` -> Scope. The name may hold a port's colon
    (``registry:catalog:*`` has none), so the type is the first field, the actions the last."""
    kind, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        raise ValueError(f"invalid scope: {text!r}")
    return Scope(kind, name, tuple(a for a in actions.split(",") if a))


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """``(scheme, credentials)`` of an Authorization header, the scheme lower-cased."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if not scheme or not credentials:
        return None
    return scheme.lower(), credentials


def parse_basic(credentials: str) -> tuple[str, str] | None:
    """``(user, password)`` from Basic credentials, or None if they are not base64 of ``u:p``."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or not user:
        return None
    return user, password


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(scheme: str, params: Mapping[str, str]) -> str:
    """A ``WWW-Authenticate`` value: ``Bearer realm="...",service="..."`` (RFC 7235)."""
    return scheme + " " + ",".join(f"{k}={_quoted(v)}" for k, v in params.items())


def unauthorized(message: str, www_authenticate: str, scopes: Sequence[Scope]) -> Unauthorized:
    detail = [
        {"type": s.type, "name": s.name, "action": action} for s in scopes for action in s.actions
    ]
    return Unauthorized(
        message, detail=detail or None, headers={"WWW-Authenticate": www_authenticate}
    )


class Authorizer(Protocol):
    """Lets a request with this Authorization header through for ``scopes``, or raises
    Unauthorized (with its challenge) or Denied."""

    async def authorize(self, authorization: str | None, scopes: Sequence[Scope]) -> None: ...


class AllowAll:
    """No authentication: every request may do everything."""

    async def authorize(self, authorization: str | None, scopes: Sequence[Scope]) -> None:
        return None
