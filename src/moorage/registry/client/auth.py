"""Authorization for registry requests: Docker's token flow and basic auth.

How a registry asks (the distribution spec's auth, and Docker's token spec): a request
without the right credentials gets a 401 and a ``WWW-Authenticate`` challenge.

- ``Basic realm=...``: send ``Authorization: Basic base64(user:pass)``, from then on
  with every request to that host.
- ``Bearer realm=URL,service=S,scope=repository:NAME:pull``: get a token from the realm
  (``GET realm?service=S&scope=...``, with basic credentials when there are any, none
  for anonymous access; with an identity token, OAuth2's ``POST`` of a refresh token)
  and send ``Authorization: Bearer <token>``.

:class:`Authorizer` remembers, per host, which of the two the registry wants, so later
requests are authorized up front instead of paying a 401 each. Tokens are cached per
host and set of scopes and fetched again when they expire (``expires_in``, 60 s when
the server gives none) or when the registry refuses one (a 401 for a token we sent: it
was revoked, or its scope was too narrow). Concurrent requests that need the same token
wait for one fetch. Example::

    auth = Authorizer(lambda host: Credentials("me", "secret"), http)
    headers = await auth.headers("registry.example", ["repository:me/app:pull"])
    ... a 401 comes back with challenges ...
    if await auth.on_unauthorized("registry.example", scopes, challenges, headers):
        ... send the request again with await auth.headers(...) ...
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from moorage.registry.client.challenge import Challenge
from moorage.registry.client.credentials import Credentials
from moorage.registry.client.errors import Unauthorized, registry_message

__all__ = [
    "Authorizer",
    "Credentials",
    "CredentialsFor",
    "TokenHTTP",
    "basic_header",
    "merge_scopes",
    "repository_scope",
]

DEFAULT_TOKEN_LIFETIME = 60.0  # seconds; Docker's token spec says so when none is given
CLIENT_ID = "moorage"


CredentialsFor = Callable[[str], Credentials | None]
"""``credentials(host)``: the credentials for registry ``host`` (as the reference names
it, ``docker.io`` or ``localhost:5000``), or None for anonymous access."""


class TokenHTTP(Protocol):
    """The two requests a token fetch makes; the transport provides them."""

    async def token_get(
        self, url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
    ) -> tuple[int, bytes]: ...

    async def token_post(self, url: str, form: Sequence[tuple[str, str]]) -> tuple[int, bytes]: ...


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def repository_scope(repository: str, *actions: str) -> str:
    """``repository:library/busybox:pull,push``."""
    return f"repository:{repository}:{','.join(actions)}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """One scope per resource with the union of its actions, sorted: a stable cache key.

    ``repository:a:pull`` and ``repository:a:push`` make ``repository:a:pull,push``.
    """
    actions: dict[str, set[str]] = {}
    for scope in scopes:
        for item in scope.split(" "):
            resource, colon, wanted = item.rpartition(":")
            if not item:
                continue
            if not colon or not resource:
                actions.setdefault(item, set())
                continue
            actions.setdefault(resource, set()).update(a for a in wanted.split(",") if a)
    out = []
    for resource in sorted(actions):
        names = sorted(actions[resource])
        out.append(f"{resource}:{','.join(names)}" if names else resource)
    return tuple(out)


class _Token(NamedTuple):
    value: str
    expires_at: float  # on the authorizer's clock


class _HostState:
    def __init__(self) -> None:
        self.scheme: str | None = None  # "basic" or "bearer", once the registry said
        self.realm = ""
        self.service = ""
        self.tokens: dict[tuple[str, ...], _Token] = {}
        self.locks: dict[tuple[str, ...], asyncio.Lock] = {}


class Authorizer:
    """Per-host authorization state for one client (see the module docstring)."""

    def __init__(
        self,
        credentials: CredentialsFor,
        http: TokenHTTP,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._http = http
        self._clock = clock
        self._hosts: dict[str, _HostState] = {}
        self.token_fetches = 0  # how many tokens were fetched: the cache's effect, for tests

    def _state(self, host: str) -> _HostState:
        return self._hosts.setdefault(host, _HostState())

    def credentials(self, host: str) -> Credentials:
        return self._credentials(host) or Credentials()

    async def headers(self, host: str, scopes: Sequence[str]) -> dict[str, str]:
        """The Authorization header for a request to ``host`` needing ``scopes``, if known."""
        creds = self.credentials(host)
        if creds.registry_token:
            return {"Authorization": f"Bearer {creds.registry_token}"}
        state = self._state(host)
        if state.scheme == "basic":
            return {"Authorization": basic_header(creds)} if creds.username else {}
        if state.scheme == "bearer":
            token = await self._token(host, state, merge_scopes(scopes), creds)
            return {"Authorization": f"Bearer {token}"} if token else {}
        return {}

    async def on_unauthorized(
        self,
        host: str,
        scopes: Sequence[str],
        challenges: Sequence[Challenge],
        sent: Mapping[str, str],
    ) -> bool:
        """Learn from a 401; True when sending the request again may succeed.

        ``sent`` is the headers the refused request carried.
        """
        creds = self.credentials(host)
        state = self._state(host)
        by_scheme = {c.scheme: c for c in challenges}
        sent_auth = sent.get("Authorization", "")
        bearer = by_scheme.get("bearer")
        if bearer is not None and bearer.params.get("realm"):
            if creds.registry_token:
                return False  # a token handed to us: nothing to fetch instead
            state.scheme = "bearer"
            state.realm = bearer.params["realm"]
            state.service = bearer.params.get("service", "")
            key = merge_scopes(scopes)
            wanted = merge_scopes([*scopes, bearer.params.get("scope", "")])
            if sent_auth.startswith("Bearer "):
                cached = state.tokens.get(key)
                if cached is not None and sent_auth != f"Bearer {cached.value}":
                    return True  # a concurrent request replaced it already: use that one
                state.tokens.pop(key, None)  # refused (expired early, revoked, too narrow)
            await self._token(host, state, key, creds, fetch_scopes=wanted)
            return True
        if "basic" in by_scheme:
            if not creds.username or sent_auth.startswith("Basic "):
                return False
            state.scheme = "basic"
            return True
        return False

    async def _token(
        self,
        host: str,
        state: _HostState,
        key: tuple[str, ...],
        creds: Credentials,
        *,
        fetch_scopes: tuple[str, ...] | None = None,
    ) -> str:
        lock = state.locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = state.tokens.get(key)
            if cached is not None and self._clock() < cached.expires_at:
                return cached.value
            value, lifetime = await self._fetch(host, state, fetch_scopes or key, creds)
            # Refreshed a little before the end, so a token does not expire in flight.
            state.tokens[key] = _Token(value, self._clock() + lifetime * 0.9)
            return value

    async def _fetch(
        self, host: str, state: _HostState, scopes: tuple[str, ...], creds: Credentials
    ) -> tuple[str, float]:
        self.token_fetches += 1
        if creds.identity_token:
            form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", creds.identity_token),
                ("service", state.service),
                ("client_id", CLIENT_ID),
            ]
            if scopes:
                form.append(("scope", " ".join(scopes)))
            status, body = await self._http.token_post(state.realm, form)
        else:
            params = [("service", state.service)] if state.service else []
            params += [("scope", s) for s in scopes]
            headers: dict[str, str] = {}
            if creds.username:
                params.append(("account", creds.username))
                headers["Authorization"] = basic_header(creds)
            status, body = await self._http.token_get(state.realm, params, headers)
        if status != 200:
            raise Unauthorized(
                f"{host}: getting a token from {state.realm} failed: "
                f"{registry_message(status, body)}"
            )
        return _parse_token(host, body)


def _parse_token(host: str, body: bytes) -> tuple[str, float]:
    import json

    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Unauthorized(f"{host}: the token server answered something that is not json")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise Unauthorized(f"{host}: the token server's answer has no token")
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return value, float(lifetime)
