"""The registry server's API over a real store, in process: what is Moorage's own beyond
the conformance suite (tests/interop/test_registry_conformance.py) - resumable uploads,
the exact error replies, read-only mode, manifests' media types."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_servers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    InProcessRegistry,
    Reply,
    sha256,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessRegistry]:
    registry = InProcessRegistry(tmp_path / "root")
    try:
        yield registry
    finally:
        registry.close()


def start_upload(server: InProcessRegistry, name: str = "app") -> str:
    reply = server.call("POST", f"/v2/{name}/blobs/uploads/")
    assert reply.status == 202
    location = reply.header("Location")
    assert location is not None
    return location


def push(server: InProcessRegistry, name: str, data: bytes) -> str:
    reply = server.call("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data)
    assert reply.status == 201, reply.body
    return sha256(data)


def image(server: InProcessRegistry, name: str = "app", **extra: object) -> bytes:
    config, layer = b'{"os":"linux"}', b"layer " + uuid.uuid4().bytes
    push(server, name, config)
    push(server, name, layer)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
            **extra,
        }
    ).encode()


def codes(reply: Reply) -> list[str]:
    return reply.error_codes()


# --------------------------------------------------------------------------- uploads


def test_a_single_post_stores_the_blob(server: InProcessRegistry) -> None:
    data = b"one request"
    reply = server.call("POST", f"/v2/app/blobs/uploads/?digest={sha256(data)}", data)
    assert reply.status == 201
    assert reply.header("Location") == f"/v2/app/blobs/{sha256(data)}"
    assert server.call("GET", f"/v2/app/blobs/{sha256(data)}").body == data


def test_a_single_post_with_the_wrong_digest_leaves_nothing(server: InProcessRegistry) -> None:
    reply = server.call("POST", f"/v2/app/blobs/uploads/?digest={sha256(b'x')}", b"y")
    assert reply.status == 400
    assert codes(reply) == ["DIGEST_INVALID"]
    assert not server.storage.content.exists(sha256(b"y"))
    assert server.storage.content.ingests() == []


def test_an_upload_resumes_after_a_restart(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    first = InProcessRegistry(tmp_path / "root")
    try:
        location = start_upload(first)
        reply = first.call("PATCH", location, data[:10_000], {"Content-Range": "0-9999"})
        assert reply.header("Range") == "0-9999"
    finally:
        first.close()
    second = InProcessRegistry(tmp_path / "root")
    try:
        status = second.call("GET", location)
        assert status.status == 204
        assert status.header("Range") == "0-9999"
        rest = second.call(
            "PATCH", location, data[10_000:], {"Content-Range": f"10000-{len(data) - 1}"}
        )
        assert rest.status == 202
        done = second.call("PUT", f"{location}?digest={sha256(data)}")
        assert done.status == 201
        assert second.call("GET", f"/v2/app/blobs/{sha256(data)}").body == data
    finally:
        second.close()


def test_an_out_of_order_chunk_reports_where_to_resume(server: InProcessRegistry) -> None:
    location = start_upload(server)
    server.call("PATCH", location, b"a" * 10, {"Content-Range": "0-9"})
    reply = server.call("PATCH", location, b"b" * 10, {"Content-Range": "5-14"})
    assert reply.status == 416
    assert reply.header("Range") == "0-9"
    assert codes(reply) == ["BLOB_UPLOAD_INVALID"]


def test_a_content_length_that_disagrees_with_the_range_is_416(server: InProcessRegistry) -> None:
    location = start_upload(server)
    reply = server.call("PATCH", location, b"a" * 10, {"Content-Range": "0-19"})
    assert reply.status == 416
    assert server.call("GET", location).header("Range") == "0-0"


def test_a_malformed_content_range_is_400(server: InProcessRegistry) -> None:
    location = start_upload(server)
    reply = server.call("PATCH", location, b"abc", {"Content-Range": "zero-two"})
    assert reply.status == 400
    assert codes(reply) == ["BLOB_UPLOAD_INVALID"]


def test_a_stream_patch_appends_everything(server: InProcessRegistry) -> None:
    location = start_upload(server)
    server.call("PATCH", location, b"x" * 3_000_000)
    reply = server.call("PATCH", location, b"y" * 5)
    assert reply.header("Range") == f"0-{3_000_004}"


def test_an_upload_belongs_to_its_repository(server: InProcessRegistry) -> None:
    location = start_upload(server, "app")
    other = location.replace("/v2/app/", "/v2/other/")
    reply = server.call("GET", other)
    assert reply.status == 404
    assert codes(reply) == ["BLOB_UPLOAD_UNKNOWN"]


@pytest.mark.parametrize("upload_id", ["nope", "..", str(uuid.uuid4()), "%2e%2e"])
def test_unknown_upload_ids_are_404(server: InProcessRegistry, upload_id: str) -> None:
    start_upload(server)
    reply = server.call("PATCH", f"/v2/app/blobs/uploads/{upload_id}", b"x")
    assert reply.status == 404
    assert codes(reply) == ["BLOB_UPLOAD_UNKNOWN"]


def test_a_digest_mismatch_ends_the_upload_and_shows_no_blob(server: InProcessRegistry) -> None:
    location = start_upload(server)
    server.call("PATCH", location, b"the bytes")
    reply = server.call("PUT", f"{location}?digest={sha256(b'other bytes')}")
    assert reply.status == 400
    assert codes(reply) == ["DIGEST_INVALID"]
    assert server.call("GET", location).status == 404
    assert server.call("HEAD", f"/v2/app/blobs/{sha256(b'the bytes')}").status == 404
    assert not server.storage.content.exists(sha256(b"the bytes"))
    assert server.storage.content.ingests() == []


def test_a_put_without_a_digest_keeps_the_upload(server: InProcessRegistry) -> None:
    location = start_upload(server)
    server.call("PATCH", location, b"kept")
    reply = server.call("PUT", location)
    assert reply.status == 400
    assert codes(reply) == ["DIGEST_INVALID"]
    assert server.call("GET", location).header("Range") == "0-3"


def test_sha512_uploads_are_refused_as_unsupported(server: InProcessRegistry) -> None:
    location = start_upload(server)
    reply = server.call("PUT", f"{location}?digest=sha512:{'0' * 128}", b"x")
    assert reply.status == 400
    assert "unsupported digest algorithm" in reply.json()["errors"][0]["message"]


def test_a_mount_without_pull_rights_on_the_source_is_not_taken_for_one(
    server: InProcessRegistry,
) -> None:
    """A mount from a repository that lacks the blob starts an upload, whatever else has it."""
    digest = push(server, "elsewhere", b"shared bytes")
    push(server, "source", b"something")
    reply = server.call("POST", f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert reply.status == 202
    assert server.call("HEAD", f"/v2/target/blobs/{digest}").status == 404


# --------------------------------------------------------------------------- manifests


def test_a_manifest_without_media_type_takes_the_content_type(server: InProcessRegistry) -> None:
    raw = image(server)
    document = json.loads(raw)
    del document["mediaType"]
    raw = json.dumps(document).encode()
    assert (
        server.call("PUT", "/v2/app/manifests/v1", raw, {"Content-Type": DOCKER_MANIFEST}).status
        == 201
    )
    assert server.call("GET", "/v2/app/manifests/v1").header("Content-Type") == DOCKER_MANIFEST


def test_a_manifest_without_any_type_is_taken_for_what_it_looks_like(
    server: InProcessRegistry,
) -> None:
    document = json.loads(image(server))
    del document["mediaType"]
    raw = json.dumps(document).encode()
    assert server.call("PUT", "/v2/app/manifests/v1", raw).status == 201
    assert server.call("HEAD", "/v2/app/manifests/v1").header("Content-Type") == OCI_MANIFEST


def test_a_media_type_that_contradicts_the_content_type_is_invalid(
    server: InProcessRegistry,
) -> None:
    raw = image(server)
    reply = server.call("PUT", "/v2/app/manifests/v1", raw, {"Content-Type": DOCKER_MANIFEST})
    assert reply.status == 400
    assert codes(reply) == ["MANIFEST_INVALID"]


@pytest.mark.parametrize(
    "document",
    [
        {"schemaVersion": 1, "name": "app", "tag": "v1", "fsLayers": []},
        {"schemaVersion": 2, "mediaType": "application/vnd.example+json", "layers": []},
        [1, 2, 3],
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "sha256:1"}},
    ],
)
def test_invalid_manifests_are_refused(server: InProcessRegistry, document: object) -> None:
    push(server, "app", b"x")
    reply = server.call("PUT", "/v2/app/manifests/v1", json.dumps(document).encode())
    assert reply.status == 400
    assert codes(reply) == ["MANIFEST_INVALID"]


def test_a_foreign_layer_need_not_be_pushed(server: InProcessRegistry) -> None:
    config = b'{"os":"windows"}'
    push(server, "app", config)
    foreign = {
        "mediaType": FOREIGN_LAYER,
        "digest": sha256(b"elsewhere"),
        "size": 9,
        "urls": ["https://example.com/layer"],
    }
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [foreign],
        }
    ).encode()
    reply = server.call("PUT", "/v2/app/manifests/win", raw, {"Content-Type": DOCKER_MANIFEST})
    assert reply.status == 201


def test_a_manifest_over_4_mib_is_413_before_it_is_read(server: InProcessRegistry) -> None:
    push(server, "app", b"x")
    raw = b" " * (4 * 1024 * 1024 + 1)
    reply = server.call("PUT", "/v2/app/manifests/big", raw, {"Content-Type": OCI_MANIFEST})
    assert reply.status == 413
    assert codes(reply) == ["MANIFEST_INVALID"]


def test_deleting_a_manifest_takes_its_tags_and_a_push_brings_it_back(
    server: InProcessRegistry,
) -> None:
    raw = image(server)
    for tag in ("a", "b"):
        server.call("PUT", f"/v2/app/manifests/{tag}", raw, {"Content-Type": OCI_MANIFEST})
    assert server.call("DELETE", f"/v2/app/manifests/{sha256(raw)}").status == 202
    assert server.call("GET", "/v2/app/tags/list").json()["tags"] == []
    server.call("PUT", "/v2/app/manifests/a", raw, {"Content-Type": OCI_MANIFEST})
    assert server.call("GET", "/v2/app/manifests/a").body == raw


def test_an_index_may_refer_to_manifests_by_digest_only(server: InProcessRegistry) -> None:
    child = image(server)
    server.call("PUT", f"/v2/app/manifests/{sha256(child)}", child, {"Content-Type": OCI_MANIFEST})
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}],
        }
    ).encode()
    assert (
        server.call("PUT", "/v2/app/manifests/multi", index, {"Content-Type": OCI_INDEX}).status
        == 201
    )
    assert server.call("GET", "/v2/other/manifests/multi").status == 404


# --------------------------------------------------------------------------- discovery


def test_following_link_headers_lists_every_tag_once(server: InProcessRegistry) -> None:
    raw = image(server)
    tags = sorted(f"v{i}" for i in range(7))
    for tag in tags:
        server.call("PUT", f"/v2/app/manifests/{tag}", raw, {"Content-Type": OCI_MANIFEST})
    seen: list[str] = []
    path: str | None = "/v2/app/tags/list?n=2"
    while path is not None:
        reply = server.call("GET", path)
        seen += reply.json()["tags"]
        link = reply.header("Link")
        path = link.split(">")[0].lstrip("<") if link else None
    assert seen == tags


@pytest.mark.parametrize("query", ["n=-1", "n=abc", "n=1e3"])
def test_a_malformed_n_is_400(server: InProcessRegistry, query: str) -> None:
    image(server)
    assert server.call("GET", f"/v2/app/tags/list?{query}").status == 400


# --------------------------------------------------------------------------- errors, modes


def test_every_reply_carries_the_api_version(server: InProcessRegistry) -> None:
    digest = push(server, "app", b"versioned")
    for method, path in [
        ("GET", "/v2/"),
        ("GET", f"/v2/app/blobs/{digest}"),
        ("GET", "/v2/app/manifests/absent"),
        ("GET", "/not/the/api"),
    ]:
        assert server.call(method, path).header("Docker-Distribution-API-Version") == "registry/2.0"


def test_an_unknown_endpoint_is_a_json_404(server: InProcessRegistry) -> None:
    reply = server.call("GET", "/v2/app/whatever/x")
    assert reply.status == 404
    assert reply.header("Content-Type") == "application/json"
    assert codes(reply) == ["UNSUPPORTED"]


def test_a_method_an_endpoint_lacks_is_405_with_allow(server: InProcessRegistry) -> None:
    reply = server.call("POST", "/v2/app/manifests/v1", b"")
    assert reply.status == 405
    assert reply.header("Allow") == "GET, HEAD, PUT, DELETE"


def test_manifest_unknown_and_name_unknown_are_told_apart(server: InProcessRegistry) -> None:
    image(server)
    assert codes(server.call("GET", "/v2/app/manifests/absent")) == ["MANIFEST_UNKNOWN"]
    assert codes(server.call("GET", "/v2/nobody/manifests/absent")) == ["NAME_UNKNOWN"]


def test_read_only_refuses_writes_as_distribution_does(tmp_path: Path) -> None:
    writable = InProcessRegistry(tmp_path / "root")
    try:
        raw = image(writable)
        writable.call("PUT", "/v2/app/manifests/v1", raw, {"Content-Type": OCI_MANIFEST})
    finally:
        writable.close()
    read_only = InProcessRegistry(tmp_path / "root", read_only=True)
    try:
        assert read_only.call("GET", "/v2/app/manifests/v1").body == raw
        for method, path in [
            ("POST", "/v2/app/blobs/uploads/"),
            ("PUT", "/v2/app/manifests/v2"),
            ("DELETE", f"/v2/app/manifests/{sha256(raw)}"),
        ]:
            reply = read_only.call(method, path, b"")
            assert reply.status == 405
            assert reply.header("Allow") == "GET, HEAD"
            assert codes(reply) == ["UNSUPPORTED"]
        assert read_only.call("GET", "/v2/app/manifests/v1").status == 200
    finally:
        read_only.close()


def test_requests_queued_on_a_finished_upload_find_it_gone(server: InProcessRegistry) -> None:
    """Two PUTs race for one session: one commits, the other must not start it afresh."""
    import threading

    location = start_upload(server)
    data = b"x" * 5_000_000
    server.call("PATCH", location, data)
    replies: list[int] = []

    def put() -> None:
        replies.append(server.call("PUT", f"{location}?digest={sha256(data)}").status)

    racers = [threading.Thread(target=put) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    assert sorted(replies) == [201, 404]
    assert server.storage.content.ingests() == []
