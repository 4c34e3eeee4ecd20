"""The token flow and basic auth, with a fake token server and a fake clock: tokens are
cached per host and scope, refreshed when they expire or are refused, fetched once for
concurrent requests, anonymous or with credentials."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence

import pytest

from moorage.registry.client.auth import Authorizer, Credentials, merge_scopes
from moorage.registry.client.challenge import Challenge
from moorage.registry.client.errors import Unauthorized

HOST = "reg.example"
PULL = "repository:team/app:pull"
PUSH = "repository:team/app:pull,push"
BEARER = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})


class FakeTokens:
    """Answers token requests with numbered tokens; records what was asked."""

    def __init__(self, lifetime: int | None = 300, status: int = 200) -> None:
        self.lifetime = lifetime
        self.status = status
        self.gets: list[tuple[str, list[tuple[str, str]], dict[str, str]]] = []
        self.posts: list[tuple[str, list[tuple[str, str]]]] = []

    def _answer(self) -> tuple[int, bytes]:
        if self.status != 200:
            return self.status, b'{"details": "incorrect username or password"}'
        body: dict[str, object] = {"token": f"t{len(self.gets) + len(self.posts)}"}
        if self.lifetime is not None:
            body["expires_in"] = self.lifetime
        return 200, json.dumps(body).encode()

    async def token_get(
        self, url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        self.gets.append((url, list(params), dict(headers)))
        await asyncio.sleep(0)  # let concurrent callers pile up on the lock
        return self._answer()

    async def token_post(self, url: str, form: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        self.posts.append((url, list(form)))
        return self._answer()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authorizer(tokens: FakeTokens, creds: Credentials | None = None) -> tuple[Authorizer, Clock]:
    clock = Clock()
    return Authorizer(lambda host: creds, tokens, clock=clock), clock


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def challenged(
    auth: Authorizer, scopes: list[str], sent: dict[str, str] | None = None
) -> bool:
    return await auth.on_unauthorized(HOST, scopes, [BEARER], sent or {})


def test_nothing_is_sent_before_the_registry_says_how() -> None:
    auth, _ = authorizer(FakeTokens())
    assert run(auth.headers(HOST, [PULL])) == {}


def test_an_anonymous_token_is_fetched_once_and_reused() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens)

    async def scenario() -> list[dict[str, str]]:
        assert await challenged(auth, [PULL])
        return [await auth.headers(HOST, [PULL]) for _ in range(3)]

    assert run(scenario()) == [{"Authorization": "Bearer t1"}] * 3
    [(url, params, headers)] = tokens.gets
    assert url == "https://auth.example/token"
    assert params == [("service", "reg"), ("scope", PULL)]
    assert headers == {}  # anonymous: no basic auth, no account


def test_credentials_go_to_the_token_server_as_basic_auth() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens, Credentials("me", "secret"))
    run(challenged(auth, [PULL]))
    [(_, params, headers)] = tokens.gets
    assert ("account", "me") in params
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:secret").decode()


def test_tokens_are_cached_per_scope() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens)

    async def scenario() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        await challenged(auth, [PULL])
        return (
            await auth.headers(HOST, [PULL]),
            await auth.headers(HOST, [PUSH]),
            await auth.headers(HOST, [PUSH]),
        )

    pull, push, push_again = run(scenario())  # type: ignore[misc]
    assert pull != push
    assert push == push_again
    assert [p for _, p, _ in tokens.gets] == [
        [("service", "reg"), ("scope", PULL)],
        [("service", "reg"), ("scope", PUSH)],
    ]


def test_an_expired_token_is_fetched_again() -> None:
    tokens = FakeTokens(lifetime=60)
    auth, clock = authorizer(tokens)

    async def scenario() -> list[dict[str, str]]:
        await challenged(auth, [PULL])
        first = await auth.headers(HOST, [PULL])
        clock.now += 50  # within 90% of its 60 s
        second = await auth.headers(HOST, [PULL])
        clock.now += 10  # past it
        third = await auth.headers(HOST, [PULL])
        return [first, second, third]

    first, second, third = run(scenario())  # type: ignore[misc]
    assert first == second == {"Authorization": "Bearer t1"}
    assert third == {"Authorization": "Bearer t2"}


def test_a_token_without_expires_in_lives_60_seconds() -> None:
    tokens = FakeTokens(lifetime=None)
    auth, clock = authorizer(tokens)

    async def scenario() -> None:
        await challenged(auth, [PULL])
        clock.now += 53
        await auth.headers(HOST, [PULL])
        clock.now += 2
        await auth.headers(HOST, [PULL])

    run(scenario())
    assert len(tokens.gets) == 2


def test_a_refused_token_is_replaced() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens)

    async def scenario() -> dict[str, str]:
        await challenged(auth, [PULL])
        sent = await auth.headers(HOST, [PULL])
        assert await challenged(auth, [PULL], sent)  # 401 for the token we sent
        return await auth.headers(HOST, [PULL])

    assert run(scenario()) == {"Authorization": "Bearer t2"}


def test_a_token_replaced_by_a_concurrent_request_is_not_fetched_again() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens)

    async def scenario() -> None:
        await challenged(auth, [PULL])
        stale = await auth.headers(HOST, [PULL])
        await challenged(auth, [PULL], stale)  # the first request refetched: t2
        assert await challenged(auth, [PULL], stale)  # the second one just retries

    run(scenario())
    assert len(tokens.gets) == 2


def test_concurrent_requests_share_one_fetch() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens)

    async def scenario() -> list[bool]:
        return list(await asyncio.gather(*(challenged(auth, [PULL]) for _ in range(5))))

    assert run(scenario()) == [True] * 5
    assert len(tokens.gets) == 1


def test_the_challenge_s_scope_is_added_to_the_request_s() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens)
    wider = Challenge("bearer", {**BEARER.params, "scope": "repository:other/base:pull"})
    run(auth.on_unauthorized(HOST, [PUSH], [wider], {}))
    [(_, params, _)] = tokens.gets
    assert params[1:] == [("scope", "repository:other/base:pull"), ("scope", PUSH)]


def test_a_refusing_token_server_is_unauthorized_naming_the_host() -> None:
    auth, _ = authorizer(FakeTokens(status=401), Credentials("me", "wrong"))
    with pytest.raises(Unauthorized, match=r"reg\.example: getting a token .*incorrect username"):
        run(challenged(auth, [PULL]))


def test_an_identity_token_is_exchanged_with_a_post() -> None:
    tokens = FakeTokens()
    auth, _ = authorizer(tokens, Credentials(identity_token="refresh-me"))
    run(challenged(auth, [PULL]))
    assert not tokens.gets
    [(_, form)] = tokens.posts
    assert ("grant_type", "refresh_token") in form
    assert ("refresh_token", "refresh-me") in form
    assert ("scope", PULL) in form


def test_basic_auth_is_sent_once_the_registry_asks_for_it() -> None:
    auth, _ = authorizer(FakeTokens(), Credentials("me", "secret"))
    basic = [Challenge("basic", {"realm": "r"})]

    async def scenario() -> tuple[bool, dict[str, str], bool]:
        again = await auth.on_unauthorized(HOST, [PULL], basic, {})
        headers = await auth.headers(HOST, [PULL])
        # Refused with the credentials themselves: sending them again will not help.
        retry = await auth.on_unauthorized(HOST, [PULL], basic, headers)
        return again, headers, retry

    again, headers, retry = run(scenario())  # type: ignore[misc]
    assert again is True
    assert headers == {"Authorization": "Basic " + base64.b64encode(b"me:secret").decode()}
    assert retry is False


def test_basic_auth_without_credentials_is_not_retried() -> None:
    auth, _ = authorizer(FakeTokens())
    assert run(auth.on_unauthorized(HOST, [PULL], [Challenge("basic", {})], {})) is False


def test_a_registry_token_is_sent_as_is() -> None:
    auth, _ = authorizer(FakeTokens(), Credentials(registry_token="given"))
    assert run(auth.headers(HOST, [PULL])) == {"Authorization": "Bearer given"}


def test_merge_scopes_unions_actions_per_resource() -> None:
    assert merge_scopes(["repository:a:pull", "repository:a:push", "repository:b:pull", ""]) == (
        "repository:a:pull,push",
        "repository:b:pull",
    )
    assert merge_scopes(["repository:a:pull repository:c:*"]) == (
        "repository:a:pull",
        "repository:c:*",
    )
