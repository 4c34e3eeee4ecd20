"""Pull and push against an in-process fake registry, into and out of a real content
store: platform selection from an index, resumed and refused downloads, manifest
checks, pushes that skip, mount and upload (in one piece or in chunks)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from registry_client_fake import FakeRegistry, digest_of

from moorage.errors import NotFound
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest
from moorage.oci.platform import Platform
from moorage.registry.client.backoff import Backoff
from moorage.registry.client.blobs import ingest_ref
from moorage.registry.client.client import RegistryClient
from moorage.registry.client.errors import (
    DigestMismatch,
    ManifestTooLarge,
    RegistryNotFound,
    RegistryNotSupported,
)
from moorage.registry.client.progress import Progress
from moorage.store.content import ContentStore

T = TypeVar("T")
REPO = "team/app"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ContentStore]:
    s = ContentStore(tmp_path / "root")
    try:
        yield s
    finally:
        s.close()


async def no_sleep(seconds: float) -> None:
    pass


def with_registry(body: Callable[[FakeRegistry, RegistryClient], Awaitable[T]], **client: Any) -> T:
    async def main() -> T:
        async with FakeRegistry() as registry:
            backoff = Backoff(attempts=3, initial=0, jitter=0)
            async with RegistryClient(backoff=backoff, sleep=no_sleep, **client) as c:
                return await body(registry, c)

    return asyncio.run(main())


def image(registry: FakeRegistry, arch: str, layer_bytes: bytes, repo: str = REPO) -> Descriptor:
    """A one-layer image in ``registry``; returns its manifest's descriptor."""
    layer = gzip.compress(layer_bytes, mtime=0)
    config = json.dumps(
        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": registry.add_blob(repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": mt.OCI_LAYER_GZIP,
                    "digest": registry.add_blob(repo, layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    digest = registry.add_manifest(repo, [arch], mt.OCI_MANIFEST, manifest)
    return Descriptor(mt.OCI_MANIFEST, Digest(digest), len(manifest))


def layer_of(registry: FakeRegistry, manifest: Descriptor, repo: str = REPO) -> Descriptor:
    raw = registry.manifests[(repo, str(manifest.digest))][1]
    layer = json.loads(raw)["layers"][0]
    return Descriptor(layer["mediaType"], Digest(layer["digest"]), layer["size"])


def index_of(registry: FakeRegistry, entries: list[tuple[Descriptor, Platform]]) -> str:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [{**d._replace(platform=p).to_dict()} for d, p in entries],
        }
    ).encode()
    return registry.add_manifest(REPO, ["multi"], mt.OCI_INDEX, raw)


def big(n: int = 3 << 20) -> bytes:
    import os

    return os.urandom(n)


# --- pull --------------------------------------------------------------------------------


def test_an_index_pulls_the_manifest_for_the_platform(store: ContentStore) -> None:
    events: list[Progress] = []

    async def body(registry: FakeRegistry, client: RegistryClient) -> Any:
        amd = image(registry, "amd64", b"amd64 layer")
        arm = image(registry, "arm64", b"arm64 layer")
        index = index_of(registry, [(amd, AMD64), (arm, ARM64)])
        result = await client.pull(
            store, f"{registry.host}/{REPO}:multi", platform=ARM64, progress=events.append
        )
        return registry, registry.host, amd, arm, index, result

    registry, host, amd, arm, index, result = with_registry(body)
    assert str(result.root.digest) == index
    assert result.root.media_type == mt.OCI_INDEX
    assert result.manifest.digest == arm.digest
    assert result.root_index is not None
    assert store.exists(str(arm.digest))
    assert store.exists(str(layer_of(registry, arm).digest))
    assert not store.exists(str(amd.digest))  # the other platform is not fetched
    assert not store.exists(str(layer_of(registry, amd).digest))
    layer = str(layer_of(registry, arm).digest)
    assert [e.action for e in events if e.digest == layer][:2] == ["waiting", "downloading"]
    assert events[-1] == Progress("downloaded", layer, events[-1].total, events[-1].total)
    label = f"containerd.io/distribution.source.{host}"
    assert store.info(layer).labels[label] == REPO
    assert store.info(index).labels[label] == REPO


def test_no_manifest_for_the_platform_names_what_there_is(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> None:
        index_of(registry, [(image(registry, "amd64", b"x"), AMD64)])
        await client.pull(
            store, f"{registry.host}/{REPO}:multi", platform=Platform("linux", "s390x")
        )

    with pytest.raises(
        RegistryNotFound, match=r"no manifest for platform linux/s390x .*linux/amd64"
    ):
        with_registry(body)


def test_layers_in_the_store_are_not_fetched(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> tuple[int, Any]:
        image(registry, "amd64", b"shared")
        await client.pull(store, f"{registry.host}/{REPO}:amd64")
        before = registry.count("GET", "/blobs/")
        events: list[Progress] = []
        await client.pull(store, f"{registry.host}/{REPO}:amd64", progress=events.append)
        return registry.count("GET", "/blobs/") - before, events

    fetched, events = with_registry(body)
    assert fetched == 0
    assert [e.action for e in events] == ["resolved", "exists"]


def test_a_cut_download_resumes_with_a_range(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> tuple[FakeRegistry, str]:
        manifest = image(registry, "amd64", big())
        layer = layer_of(registry, manifest)
        registry.cut_at = layer.size // 2
        await client.pull(store, f"{registry.host}/{REPO}:amd64")
        return registry, str(layer.digest)

    registry, layer = with_registry(body)
    ranges = [h.get("Range") for m, p, h in registry.log if m == "GET" and layer in p]
    assert ranges[0] is None
    assert ranges[1] is not None
    assert int(ranges[1][6:-1]) > 0
    assert store.exists(layer)


def test_a_partial_ingest_from_an_earlier_pull_is_continued(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> tuple[FakeRegistry, str, int]:
        manifest = image(registry, "amd64", big())
        layer = layer_of(registry, manifest)
        data = registry.blobs[str(layer.digest)]
        # What a daemon killed half-way leaves behind.
        w = store.writer(
            ingest_ref(str(layer.digest)), expected=str(layer.digest), total=layer.size
        )
        w.write(data[: len(data) // 3])
        w.close()
        await client.pull(store, f"{registry.host}/{REPO}:amd64")
        return registry, str(layer.digest), len(data) // 3

    registry, layer, offset = with_registry(body)
    [(_, _, headers)] = [x for x in registry.log if x[0] == "GET" and layer in x[1]]
    assert headers["Range"] == f"bytes={offset}-"
    assert store.exists(layer)
    assert store.ingests() == []


def test_a_registry_that_ignores_range_gets_the_data_replaced(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> str:
        manifest = image(registry, "amd64", big())
        layer = layer_of(registry, manifest)
        registry.cut_at = layer.size // 2
        registry.ignore_range = True
        await client.pull(store, f"{registry.host}/{REPO}:amd64")
        return str(layer.digest)

    layer = with_registry(body)
    with store.reader(layer) as f:
        assert digest_of(f.read()) == layer


def test_tampered_content_is_refused_and_nothing_is_stored(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> str:
        manifest = image(registry, "amd64", big())
        layer = str(layer_of(registry, manifest).digest)
        registry.tamper = True
        with pytest.raises(DigestMismatch, match=rf"{REPO}@{layer}: .*digest is sha256:"):
            await client.pull(store, f"{registry.host}/{REPO}:amd64")
        return layer

    layer = with_registry(body)
    assert not store.exists(layer)
    stored = [info.digest for info in store.walk()]
    for digest in stored:  # manifest and config only, each under its own digest
        with store.reader(digest) as f:
            assert digest_of(f.read()) == digest
    assert store.ingests() == []


def test_a_manifest_over_4_mib_is_refused(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> None:
        raw = b'{"schemaVersion": 2, "layers": [], "pad": "' + b"x" * (4 << 20) + b'"}'
        registry.add_manifest(REPO, ["huge"], mt.OCI_MANIFEST, raw)
        await client.pull(store, f"{registry.host}/{REPO}:huge")

    with pytest.raises(ManifestTooLarge, match="manifest too large"):
        with_registry(body)


def test_a_manifest_that_does_not_match_the_stated_digest_is_refused(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> None:
        image(registry, "amd64", b"x")
        registry.manifest_headers["Docker-Content-Digest"] = "sha256:" + "0" * 64
        await client.pull(store, f"{registry.host}/{REPO}:amd64")

    with pytest.raises(DigestMismatch, match="the registry says sha256:000"):
        with_registry(body)


def test_schema_1_is_refused_clearly(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> None:
        registry.add_manifest(REPO, ["old"], mt.DOCKER_MANIFEST_V1_SIGNED, b'{"schemaVersion": 1}')
        await client.pull(store, f"{registry.host}/{REPO}:old")

    with pytest.raises(RegistryNotSupported, match="schema 1 manifests are not supported"):
        with_registry(body)


def test_an_unknown_tag_is_not_found_with_the_registry_s_words(store: ContentStore) -> None:
    async def body(registry: FakeRegistry, client: RegistryClient) -> None:
        await client.pull(store, f"{registry.host}/{REPO}:nope")

    with pytest.raises(NotFound, match=rf"{REPO}:nope: manifest unknown"):
        with_registry(body)


# --- push --------------------------------------------------------------------------------


def local_image(store: ContentStore, layer_bytes: bytes) -> Descriptor:
    layer = gzip.compress(layer_bytes, mtime=0)
    layer_digest, _ = store.write_blob(layer)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_digest, _ = store.write_blob(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [
                {"mediaType": mt.OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}
            ],
        }
    ).encode()
    digest, size = store.write_blob(manifest)
    return Descriptor(mt.OCI_MANIFEST, Digest(digest), size)


@pytest.mark.parametrize("chunk_size", [64 << 20, 1 << 20])
def test_push_uploads_then_skips(store: ContentStore, chunk_size: int) -> None:
    root = local_image(store, big())
    events: list[Progress] = []

    async def body(registry: FakeRegistry, client: RegistryClient) -> FakeRegistry:
        target = f"{registry.host}/{REPO}:1"
        result = await client.push(store, target, root, progress=events.append)
        assert result.digest == root.digest
        assert registry.manifests[(REPO, "1")][1] == store.read_blob(str(root.digest))
        uploads = registry.count("POST", "/uploads")
        await client.push(store, target, root, progress=events.append)
        assert registry.count("POST", "/uploads") == uploads  # everything was there
        return registry

    registry = with_registry(body, chunk_size=chunk_size)
    patches = registry.count("PATCH", "/uploads/")
    assert patches == (0 if chunk_size > (3 << 20) else 4)  # a ~3 MiB layer in 1 MiB chunks
    actions = [e.action for e in events]
    assert {"pushing", "pushed", "exists"} <= set(actions)


def test_push_mounts_a_blob_known_to_be_in_another_repository(store: ContentStore) -> None:
    root = local_image(store, b"mountable")
    events: list[Progress] = []

    async def body(registry: FakeRegistry, client: RegistryClient) -> tuple[FakeRegistry, str]:
        await client.push(store, f"{registry.host}/base/app:1", root)
        await client.push(store, f"{registry.host}/{REPO}:1", root, progress=events.append)
        return registry, registry.host

    registry, host = with_registry(body)
    mounts = [p for m, p, _ in registry.log if m == "POST" and "mount=" in p]
    assert len(mounts) == 2
    assert all("from=base/app" in p for p in mounts)
    assert [e.source for e in events if e.action == "mounted"] == ["base/app"]
    label = f"containerd.io/distribution.source.{host}"
    manifest = json.loads(store.read_blob(str(root.digest)))
    assert store.info(manifest["layers"][0]["digest"]).labels[label] == f"base/app,{REPO}"


def test_push_needs_a_tag(store: ContentStore) -> None:
    from moorage.errors import InvalidArgument

    root = local_image(store, b"x")

    async def body(registry: FakeRegistry, client: RegistryClient) -> None:
        await client.push(store, f"{registry.host}/{REPO}@{root.digest}", root)

    with pytest.raises(InvalidArgument, match="a push needs a tag"):
        with_registry(body)
