"""HTTP to registries: the scheme, TLS, authorization and retries of every request.

One :class:`Transport` per client holds an aiohttp session and, per registry host,
what it learnt: the scheme that works and (through :class:`Authorizer`) how the
registry wants to be authorized. :meth:`Transport.request` does, for each request:

1. the URL: ``https://<endpoint><path>``. A secure host is spoken to over HTTPS,
   verified against the system's CAs. An insecure one (loopback, or in the insecure
   list) is tried over HTTPS without verification first and, when that cannot connect,
   over plain HTTP, as dockerd does; the scheme that worked is kept for the host;
2. the Authorization header, when the host's scheme is known; on a 401, the challenge
   is handed to the authorizer and the request sent once more (twice when the
   registry refused a token we sent: it is fetched anew);
3. retries: a connection error, or a 429 or 5xx answer, is tried again after a
   backoff (the ``Retry-After`` of a 429 or 503 is honoured), up to the policy's
   number of attempts, unless the caller says the request cannot be repeated.

The session does not decompress (``auto_decompress=False``) and asks for identity
encoding: blobs are hashed as sent, and a transparently gunzipped layer would not
match its digest.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from moorage import __version__
from moorage.registry.client.auth import Authorizer, CredentialsFor
from moorage.registry.client.backoff import (
    DEFAULT_BACKOFF,
    RETRY_STATUSES,
    Backoff,
    Sleep,
    default_sleep,
)
from moorage.registry.client.challenge import parse_challenges
from moorage.registry.client.errors import RegistryUnavailable
from moorage.registry.client.resolve import HostPolicy, endpoint_of

__all__ = ["BodyFactory", "Transport"]

log = logging.getLogger(__name__)

BodyFactory = Callable[[], AsyncIterator[bytes]]
"""A request body that can be produced again, for a retry: called once per try."""

USER_AGENT = f"moorage/{__version__}"
_CONNECT_TIMEOUT = 30.0
# A stalled body read ends the try after this; the download then resumes where it was.
_READ_TIMEOUT = 120.0
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


class Transport:
    """See the module docstring. Use as ``async with Transport(...) as t``."""

    def __init__(
        self,
        policy: HostPolicy | None = None,
        credentials: CredentialsFor | None = None,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Sleep = default_sleep,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.policy = policy or HostPolicy()
        self.backoff = backoff
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self._schemes: dict[str, str] = {}  # endpoint -> "https" or "http"
        self._verified = ssl.create_default_context()  # the system's CAs
        self.auth = Authorizer(credentials or (lambda host: None), self)

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=_READ_TIMEOUT
                ),
                auto_decompress=False,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                trust_env=True,  # HTTP(S)_PROXY and NO_PROXY, as dockerd honours them
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _ssl_for(self, host: str) -> ssl.SSLContext | bool:
        return False if self.policy.is_insecure(host) else self._verified

    def base_url(self, host: str) -> URL:
        """``scheme://endpoint`` for registry ``host``, with the scheme known to work."""
        endpoint = endpoint_of(host)
        return URL(f"{self._schemes.get(endpoint, 'https')}://{endpoint}")

    def url(self, host: str, path_or_url: str | URL) -> URL:
        """An absolute URL: ``path_or_url`` itself, or a path on registry ``host``."""
        url = URL(path_or_url) if isinstance(path_or_url, str) else path_or_url
        if url.is_absolute():
            return url
        return self.base_url(host).join(url)

    async def request(
        self,
        method: str,
        host: str,
        path_or_url: str | URL,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | BodyFactory | None = None,
        retry: bool = True,
        allow_redirects: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request to registry ``host``; the caller reads and releases the answer.

        ``path_or_url`` is a path on the registry (``/v2/...``) or an absolute URL (an
        upload's ``Location``). A 429 or 5xx after the last try is returned as it is;
        a connection error after the last try raises :class:`RegistryUnavailable`.
        """
        endpoint = endpoint_of(host)
        attempt = 0
        auth_tries = 0
        while True:
            url = self.url(host, path_or_url)
            sent = {**(headers or {}), **await self.auth.headers(host, scopes)}
            data: Any = body() if callable(body) else body
            try:
                response = await self.session.request(
                    method,
                    url,
                    headers=sent,
                    params=params,
                    data=data,
                    ssl=self._ssl_for(url.host_port_subcomponent or host),
                    allow_redirects=allow_redirects,
                )
            except _CONNECTION_ERRORS as exc:
                if self._fall_back_to_http(endpoint, url) or self._scheme_changed(endpoint, url):
                    continue
                if isinstance(exc, aiohttp.ClientSSLError):
                    raise RegistryUnavailable(
                        f"{host}: {method} {url}: tls handshake failed ({_describe(exc)}); "
                        f"a registry that speaks plain http must be named an insecure registry"
                    ) from exc
                # A name that does not resolve will not resolve a second later either.
                if not retry or isinstance(exc, aiohttp.ClientConnectorDNSError):
                    raise RegistryUnavailable(f"{host}: {method} {url}: {_describe(exc)}") from exc
                if attempt + 1 >= self.backoff.attempts:
                    raise RegistryUnavailable(
                        f"{host}: {method} {url}: {_describe(exc)} "
                        f"(after {self.backoff.attempts} tries)"
                    ) from exc
                wait = self.backoff.wait_for(attempt)
                log.info("%s %s: %s; trying again in %.2fs", method, url, _describe(exc), wait)
                attempt += 1
                await self._sleep(wait)
                continue
            if url.scheme == "https" and url.host_port_subcomponent == endpoint:
                self._schemes.setdefault(endpoint, "https")
            if response.status == 401 and self._may_authorize_again(auth_tries, sent):
                auth_tries += 1
                challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
                try:
                    again = await self.auth.on_unauthorized(host, scopes, challenges, sent)
                except BaseException:
                    response.release()
                    raise
                if again:
                    response.release()
                    continue
                return response  # nothing better to send: the caller reports the 401
            if response.status in RETRY_STATUSES and retry and attempt + 1 < self.backoff.attempts:
                wait = self.backoff.wait_for(attempt, response.headers.get("Retry-After"))
                log.info(
                    "%s %s: http %d; trying again in %.2fs", method, url, response.status, wait
                )
                response.release()
                attempt += 1
                await self._sleep(wait)
                continue
            return response

    @staticmethod
    def _may_authorize_again(tries: int, sent: Mapping[str, str]) -> bool:
        """After a 401: once to learn the challenge, and once more when the registry
        refused a token of ours (expired or revoked early), which is then replaced."""
        return tries == 0 or (tries == 1 and sent.get("Authorization", "").startswith("Bearer "))

    def _scheme_changed(self, endpoint: str, url: URL) -> bool:
        """Whether a concurrent request found the host's scheme while this one tried another."""
        known = self._schemes.get(endpoint)
        return known is not None and known != url.scheme and url.host_port_subcomponent == endpoint

    def _fall_back_to_http(self, endpoint: str, url: URL) -> bool:
        """On a failed first HTTPS try to an insecure host: use plain HTTP from now on."""
        if endpoint in self._schemes or url.scheme != "https":
            return False
        if url.host_port_subcomponent != endpoint or not self.policy.is_insecure(endpoint):
            return False  # a secure host, or a redirect elsewhere
        log.debug("%s: no https, falling back to plain http", endpoint)
        self._schemes[endpoint] = "http"
        return True

    # --- the token server's two requests (auth.TokenHTTP) ----------------------------------

    async def token_get(
        self, url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        return await self._token_request("GET", url, params=params, headers=headers)

    async def token_post(self, url: str, form: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        return await self._token_request("POST", url, data=aiohttp.FormData(list(form)))

    async def _token_request(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        target = URL(url)
        host = target.host_port_subcomponent or ""
        for attempt in range(self.backoff.attempts):
            try:
                async with self.session.request(
                    method, target, ssl=self._ssl_for(host), **kwargs
                ) as response:
                    body = await response.read()
            except _CONNECTION_ERRORS as exc:
                if attempt + 1 >= self.backoff.attempts or isinstance(exc, aiohttp.ClientSSLError):
                    raise RegistryUnavailable(f"token server {url}: {_describe(exc)}") from exc
                await self._sleep(self.backoff.wait_for(attempt))
                continue
            if response.status in RETRY_STATUSES and attempt + 1 < self.backoff.attempts:
                await self._sleep(
                    self.backoff.wait_for(attempt, response.headers.get("Retry-After"))
                )
                continue
            return response.status, body
        raise AssertionError("unreachable")  # the loop returns or raises


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Its own text names the ssl argument (an object's repr), which helps nobody.
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
