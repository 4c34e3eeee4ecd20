"""The transport's retries and backoff, scheme fallback and 401 handling, against a fake
HTTP session that fails as scripted; sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from moorage.registry.client.backoff import Backoff, retry_after
from moorage.registry.client.credentials import Credentials
from moorage.registry.client.errors import RegistryUnavailable
from moorage.registry.client.resolve import HostPolicy
from moorage.registry.client.transport import Transport

POLICY = Backoff(attempts=4, initial=0.5, factor=2, maximum=1.5, jitter=0)


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b""):
        self.status = status
        self.headers = CIMultiDict(headers or {})
        self.body = body
        self.released = False

    def release(self) -> None:
        self.released = True

    async def read(self) -> bytes:
        return self.body

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


Step = Callable[[str, Any, dict[str, str]], FakeResponse]


class FakeSession:
    """Plays ``script`` in order: each item is a response, an exception, or a function."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        headers = dict(kwargs.get("headers") or {})
        self.calls.append((method, str(url), headers))
        item = self.script.pop(0)
        session = self

        class Call:
            def __await__(self) -> Any:
                return session._play(item, method, url, headers).__await__()

            async def __aenter__(self) -> FakeResponse:
                return await session._play(item, method, url, headers)

            async def __aexit__(self, *exc: object) -> None:
                pass

        return Call()

    async def _play(
        self, item: Any, method: str, url: Any, headers: dict[str, str]
    ) -> FakeResponse:
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(method, url, headers)  # type: ignore[no-any-return]
        assert isinstance(item, FakeResponse)
        return item

    async def close(self) -> None:
        pass


def transport(
    script: list[Any], *, insecure: tuple[str, ...] = (), creds: Credentials | None = None
) -> tuple[Transport, FakeSession, list[float]]:
    session = FakeSession(script)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    t = Transport(
        HostPolicy(insecure),
        (lambda host: creds),
        backoff=POLICY,
        sleep=sleep,
        session=session,  # type: ignore[arg-type]
    )
    return t, session, sleeps


def request(t: Transport, host: str = "reg.example", **kwargs: Any) -> FakeResponse:
    return asyncio.run(t.request("GET", host, "/v2/", **kwargs))  # type: ignore[return-value]


def reset() -> aiohttp.ClientConnectionError:
    return aiohttp.ServerDisconnectedError("connection reset")


def test_backoff_delays_grow_to_the_maximum() -> None:
    assert list(POLICY.delays()) == [0.5, 1.0, 1.5]
    assert [POLICY.wait_for(n) for n in range(4)] == [0.5, 1.0, 1.5, 1.5]


def test_jitter_adds_at_most_its_fraction() -> None:
    import random

    policy = Backoff(attempts=50, initial=1, factor=1, maximum=1, jitter=0.25)
    delays = list(policy.delays(random.Random(1)))
    assert all(1 <= d <= 1.25 for d in delays)
    assert len(set(delays)) > 1


def test_retry_after() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert POLICY.wait_for(0, "60") == 1.5  # capped by the policy's maximum


def test_connection_errors_are_retried_with_backoff() -> None:
    t, session, sleeps = transport([reset(), reset(), FakeResponse(200)])
    assert request(t).status == 200
    assert sleeps == [0.5, 1.0]
    assert len(session.calls) == 3


def test_after_the_last_try_a_connection_error_is_unavailable() -> None:
    t, session, sleeps = transport([reset()] * 4)
    with pytest.raises(RegistryUnavailable, match=r"reg\.example: GET .* \(after 4 tries\)"):
        request(t)
    assert sleeps == [0.5, 1.0, 1.5]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    failing = FakeResponse(status)
    t, _, sleeps = transport([failing, FakeResponse(200)])
    assert request(t).status == 200
    assert failing.released
    assert sleeps == [0.5]


def test_retry_after_is_honoured() -> None:
    t, _, sleeps = transport([FakeResponse(429, {"Retry-After": "1"}), FakeResponse(200)])
    request(t)
    assert sleeps == [1.0]


def test_the_last_transient_answer_is_returned_to_the_caller() -> None:
    t, _, sleeps = transport([FakeResponse(503)] * 4)
    assert request(t).status == 503
    assert len(sleeps) == 3


@pytest.mark.parametrize("status", [400, 403, 404, 501])
def test_other_statuses_are_not_retried(status: int) -> None:
    t, session, sleeps = transport([FakeResponse(status)])
    assert request(t).status == status
    assert sleeps == []


def test_a_request_that_may_not_be_repeated_is_not() -> None:
    t, _, sleeps = transport([reset()])
    with pytest.raises(RegistryUnavailable):
        request(t, retry=False)
    t, _, sleeps = transport([FakeResponse(503)])
    assert request(t, retry=False).status == 503
    assert sleeps == []


def test_a_secure_host_is_https_only() -> None:
    t, session, _ = transport([FakeResponse(200)])
    request(t)
    assert session.calls[0][1] == "https://reg.example/v2/"


def test_docker_hub_goes_to_its_endpoint() -> None:
    t, session, _ = transport([FakeResponse(200)])
    request(t, host="docker.io")
    assert session.calls[0][1] == "https://registry-1.docker.io/v2/"


def test_an_insecure_host_falls_back_to_plain_http_and_keeps_it() -> None:
    tls_refused = aiohttp.ClientConnectionError("wrong version number")
    t, session, sleeps = transport(
        [tls_refused, FakeResponse(200), FakeResponse(200)], insecure=("myreg:5000",)
    )
    request(t, host="myreg:5000")
    request(t, host="myreg:5000")
    assert [url for _, url, _ in session.calls] == [
        "https://myreg:5000/v2/",
        "http://myreg:5000/v2/",
        "http://myreg:5000/v2/",
    ]
    assert sleeps == []  # a fallback is not a retry


def test_an_insecure_host_that_speaks_https_keeps_https() -> None:
    t, session, _ = transport([FakeResponse(200), FakeResponse(200)])
    request(t, host="localhost:5000")
    request(t, host="localhost:5000")
    assert all(url.startswith("https://") for _, url, _ in session.calls)


def test_a_401_fetches_a_token_and_repeats_the_request() -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg"'}
    token = FakeResponse(200, body=json.dumps({"token": "abc", "expires_in": 300}).encode())
    t, session, _ = transport(
        [FakeResponse(401, challenge), token, FakeResponse(200), FakeResponse(200)],
        creds=Credentials("me", "pw"),
    )
    assert request(t, scopes=["repository:a:pull"]).status == 200
    assert request(t, scopes=["repository:a:pull"]).status == 200  # token reused, no 401
    methods_urls = [(m, u.split("?")[0]) for m, u, _ in session.calls]
    assert methods_urls == [
        ("GET", "https://reg.example/v2/"),
        ("GET", "https://auth.example/token"),
        ("GET", "https://reg.example/v2/"),
        ("GET", "https://reg.example/v2/"),
    ]
    assert session.calls[2][2]["Authorization"] == "Bearer abc"
    assert session.calls[3][2]["Authorization"] == "Bearer abc"


def test_a_401_that_nothing_can_fix_is_returned() -> None:
    t, session, _ = transport([FakeResponse(401, {"WWW-Authenticate": 'Basic realm="r"'})])
    assert request(t).status == 401  # no credentials: no second try
    assert len(session.calls) == 1
