"""The pull-through cache (``moor registry serve --proxy``) in process, in front of the
client tests' fake registry: what is fetched, when a tag is checked again, what is
fetched once, and what the upstream's failures become."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from registry_client_fake import FakeRegistry, digest_of

from moorage.errors import InvalidArgument
from moorage.oci import mediatypes as mt
from moorage.registry.client.backoff import Backoff
from moorage.registry.server.app import Registry, build_app
from moorage.registry.server.config import ServerConfig
from moorage.registry.server.proxy import Proxy
from moorage.registry.server.storage import Storage

REPO = "team/app"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(
        self, upstream: FakeRegistry, url: str, client: TestClient[Any, Any], clock: Clock
    ) -> None:
        self.upstream = upstream
        self.url = url
        self.client = client
        self.clock = clock

    async def get(self, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
        async with self.client.request(method, path) as response:
            return response.status, await response.read(), dict(response.headers)


def run(tmp_path: Path, body: Callable[[Env], Awaitable[None]], *, stopped: bool = False) -> None:
    """``body`` against a cache of a fake upstream (or of a port nobody listens on)."""

    async def main() -> None:
        async with FakeRegistry() as upstream:
            url = f"http://{upstream.host}"
            if stopped:
                await upstream.server.close()
            storage = Storage(tmp_path / "cache")
            clock = Clock()
            proxy = Proxy(
                storage, url, clock=clock, backoff=Backoff(attempts=2, initial=0, jitter=0)
            )
            registry = Registry(storage, proxy=proxy)
            client: TestClient[Any, Any] = TestClient(TestServer(build_app(registry)))
            await client.start_server()
            try:
                await body(Env(upstream, url, client, clock))
            finally:
                await client.close()
                await proxy.close()
                registry.close()
                storage.close()

    asyncio.run(main())


def add_image(upstream: FakeRegistry, tag: str = "1", layer: bytes = b"layer") -> str:
    config = b'{"os":"linux","architecture":"amd64"}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": upstream.add_blob(REPO, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": mt.OCI_LAYER,
                    "digest": upstream.add_blob(REPO, layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return upstream.add_manifest(REPO, [tag], mt.OCI_MANIFEST, manifest)


def codes(body: bytes) -> list[str]:
    return [e["code"] for e in json.loads(body)["errors"]]


def test_a_manifest_by_tag_is_fetched_once_within_the_ttl(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        digest = add_image(env.upstream)
        first = await env.get(f"/v2/{REPO}/manifests/1")
        second = await env.get(f"/v2/{REPO}/manifests/1")
        assert first[0] == second[0] == 200
        assert digest_of(first[1]) == digest_of(second[1]) == digest
        assert first[2]["Docker-Content-Digest"] == digest
        assert first[2]["Content-Type"] == mt.OCI_MANIFEST
        assert env.upstream.count("GET", "/manifests/") == 1
        assert env.upstream.count("HEAD", "/manifests/") == 0

    run(tmp_path, body)


def test_a_stale_tag_is_checked_with_a_head(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        add_image(env.upstream)
        await env.get(f"/v2/{REPO}/manifests/1")
        env.clock.now += 61
        status, _, _ = await env.get(f"/v2/{REPO}/manifests/1")
        assert status == 200
        assert env.upstream.count("HEAD", "/manifests/1") == 1
        assert env.upstream.count("GET", "/manifests/") == 1

    run(tmp_path, body)


def test_a_stale_tag_follows_the_upstream(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        add_image(env.upstream, layer=b"old")
        await env.get(f"/v2/{REPO}/manifests/1")
        moved = add_image(env.upstream, layer=b"new")
        env.clock.now += 61
        status, raw, _ = await env.get(f"/v2/{REPO}/manifests/1")
        assert status == 200
        assert digest_of(raw) == moved

    run(tmp_path, body)


def test_a_cached_tag_is_served_when_the_upstream_is_gone(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        digest = add_image(env.upstream)
        await env.get(f"/v2/{REPO}/manifests/1")
        await env.upstream.server.close()
        env.clock.now += 61
        status, raw, _ = await env.get(f"/v2/{REPO}/manifests/1")
        assert status == 200
        assert digest_of(raw) == digest

    run(tmp_path, body)


def test_a_manifest_by_digest_is_fetched_and_kept(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        digest = add_image(env.upstream)
        await env.get(f"/v2/{REPO}/manifests/{digest}", "HEAD")
        status, raw, _ = await env.get(f"/v2/{REPO}/manifests/{digest}")
        assert status == 200
        assert digest_of(raw) == digest
        assert env.upstream.count("GET", f"/manifests/{digest}") == 1

    run(tmp_path, body)


def test_concurrent_requests_fetch_a_blob_once(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        data = b"x" * (3 << 20)
        digest = env.upstream.add_blob(REPO, data)
        replies = await asyncio.gather(*(env.get(f"/v2/{REPO}/blobs/{digest}") for _ in range(5)))
        assert [(status, raw == data) for status, raw, _ in replies] == [(200, True)] * 5
        assert env.upstream.count("GET", f"/blobs/{digest}") == 1

    run(tmp_path, body)


def test_a_blob_head_does_not_fetch_the_blob(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        digest = env.upstream.add_blob(REPO, b"twelve bytes")
        status, _, headers = await env.get(f"/v2/{REPO}/blobs/{digest}", "HEAD")
        assert status == 200
        assert headers["Content-Length"] == "12"
        assert headers["Docker-Content-Digest"] == digest
        assert env.upstream.count("GET", "/blobs/") == 0

    run(tmp_path, body)


def test_a_blob_of_another_upstream_repository_is_not_served(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        digest = env.upstream.add_blob("other", b"private")
        assert (await env.get(f"/v2/other/blobs/{digest}"))[0] == 200
        status, raw, _ = await env.get(f"/v2/{REPO}/blobs/{digest}")
        assert (status, codes(raw)) == (404, ["BLOB_UNKNOWN"])

    run(tmp_path, body)


def test_upstream_404s_are_manifest_and_blob_unknown(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        status, raw, _ = await env.get("/v2/missing/manifests/1")
        assert (status, codes(raw)) == (404, ["MANIFEST_UNKNOWN"])
        status, raw, _ = await env.get(f"/v2/missing/blobs/{digest_of(b'nothing')}")
        assert (status, codes(raw)) == (404, ["BLOB_UNKNOWN"])

    run(tmp_path, body)


def test_an_unreachable_upstream_is_503_naming_it(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        status, raw, _ = await env.get(f"/v2/{REPO}/manifests/1")
        error = json.loads(raw)["errors"][0]
        assert (status, error["code"]) == (503, "UNAVAILABLE")
        assert f"upstream registry {env.url} unavailable" in error["message"]
        assert error["detail"] == {"upstream": env.url}

    run(tmp_path, body, stopped=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"/v2/{REPO}/manifests/1"),
        ("DELETE", f"/v2/{REPO}/manifests/1"),
        ("POST", f"/v2/{REPO}/blobs/uploads/"),
        ("DELETE", f"/v2/{REPO}/blobs/{digest_of(b'x')}"),
    ],
)
def test_writes_are_refused(tmp_path: Path, method: str, path: str) -> None:
    async def body(env: Env) -> None:
        status, raw, headers = await env.get(path, method)
        assert (status, codes(raw)) == (405, ["UNSUPPORTED"])
        assert headers["Allow"] == "GET, HEAD"

    run(tmp_path, body)


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("ftp://example.com", "ftp://example.com"),
        ("https://example.com/some/path", "some/path"),
        ("https://user:secret@example.com", "credentials go in --proxy-username"),
    ],
)
def test_invalid_upstream_urls_are_refused(proxy: str, shown: str) -> None:
    with pytest.raises(InvalidArgument, match=shown) as caught:
        ServerConfig(proxy=proxy).check()
    assert "secret" not in str(caught.value)


def test_proxy_credentials_need_a_proxy() -> None:
    with pytest.raises(InvalidArgument, match="need --proxy"):
        ServerConfig(proxy_username="u", proxy_password="p").check()
