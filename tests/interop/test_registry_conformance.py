"""A conformance suite written from the OCI distribution spec v1.1, run against both
``moor registry serve`` and the CNCF distribution registry (Debian's docker-registry).

Tests are named after the spec's sections: Pull, Push, Content Discovery, Content
Management, plus the API version check and error codes. Moorage must pass all of it.
Where distribution deviates (Debian ships 2.8, from before spec 1.1), the test records
the deviation with ``xfail`` naming it, only for that server and only when the
deviation is actually seen, so a newer distribution that conforms passes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from registry_servers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Registry,
    distribution_available,
    sha256,
    start_distribution,
    start_moorage,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


@pytest.fixture(scope="module", params=["moorage", "distribution"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp(f"conformance-{request.param}")
    if request.param == "distribution":
        if not distribution_available():
            pytest.skip("docker-registry (Debian package) is not installed")
        server = start_distribution(base)
    else:
        server = start_moorage(base)
    try:
        yield server
    finally:
        server.stop()


def deviation(registry: Registry, seen: bool, what: str) -> None:
    """Record a deviation of distribution's, if it is what this server just did."""
    if seen and registry.kind == "distribution":
        pytest.xfail(f"distribution deviates from the spec: {what}")


def repo() -> str:
    return f"conformance/{uuid.uuid4().hex[:12]}"


def push_blob(registry: Registry, name: str, data: bytes) -> str:
    digest = sha256(data)
    started = registry.call("POST", f"/v2/{name}/blobs/uploads/")
    assert started.status == 202, started.body
    location = started.header("Location")
    assert location
    separator = "&" if "?" in location else "?"
    path = _path(location) + f"{separator}digest={digest}"
    done = registry.call("PUT", path, data, {"Content-Type": "application/octet-stream"})
    assert done.status == 201, done.body
    return digest


def _path(location: str) -> str:
    """A Location may be absolute (distribution) or relative (Moorage)."""
    if location.startswith("http"):
        return "/" + location.split("://", 1)[1].split("/", 1)[1]
    return location


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def image_manifest(
    registry: Registry,
    name: str,
    *,
    docker: bool = False,
    layer: bytes | None = None,
    **extra: Any,
) -> bytes:
    """Push a config and a layer; return a manifest naming them (not yet pushed)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex})
    config_bytes = config.encode()
    layer = layer if layer is not None else uuid.uuid4().bytes * 64
    push_blob(registry, name, config_bytes)
    push_blob(registry, name, layer)
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config_bytes),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer)],
        **extra,
    }
    return json.dumps(document).encode()


def put_manifest(
    registry: Registry, name: str, reference: str, raw: bytes, media_type: str = OCI_MANIFEST
) -> Any:
    return registry.call(
        "PUT", f"/v2/{name}/manifests/{reference}", raw, {"Content-Type": media_type}
    )


def pushed_image(registry: Registry, name: str, tag: str = "v1") -> tuple[bytes, str]:
    raw = image_manifest(registry, name)
    reply = put_manifest(registry, name, tag, raw)
    assert reply.status == 201, reply.body
    return raw, sha256(raw)


# --------------------------------------------------------------------------- API version


def test_api_version_check(registry: Registry) -> None:
    reply = registry.call("GET", "/v2/")
    assert reply.status == 200
    assert reply.header("Docker-Distribution-API-Version") == "registry/2.0"


# --------------------------------------------------------------------------- Pull


def test_pull_manifest_by_tag(registry: Registry) -> None:
    name = repo()
    raw, digest = pushed_image(registry, name)
    reply = registry.call("GET", f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert reply.status == 200
    assert reply.body == raw
    assert reply.header("Docker-Content-Digest") == digest
    assert reply.header("Content-Type") == OCI_MANIFEST


def test_pull_manifest_by_digest(registry: Registry) -> None:
    name = repo()
    raw, digest = pushed_image(registry, name)
    reply = registry.call("GET", f"/v2/{name}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert reply.status == 200
    assert reply.body == raw
    assert reply.header("Docker-Content-Digest") == digest


def test_pull_manifest_head_has_digest_and_length(registry: Registry) -> None:
    name = repo()
    raw, digest = pushed_image(registry, name)
    reply = registry.call("HEAD", f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert reply.status == 200
    assert reply.header("Docker-Content-Digest") == digest
    assert reply.header("Content-Length") == str(len(raw))


def test_pull_manifest_unknown_is_404(registry: Registry) -> None:
    name = repo()
    pushed_image(registry, name)
    assert registry.call("GET", f"/v2/{name}/manifests/nope").status == 404
    assert registry.call("HEAD", f"/v2/{name}/manifests/{sha256(b'nope')}").status == 404


def test_pull_docker_schema2_manifest_keeps_its_media_type(registry: Registry) -> None:
    name = repo()
    raw = image_manifest(registry, name, docker=True)
    assert put_manifest(registry, name, "docker", raw, DOCKER_MANIFEST).status == 201
    reply = registry.call(
        "GET", f"/v2/{name}/manifests/docker", headers={"Accept": DOCKER_MANIFEST}
    )
    assert reply.status == 200
    assert reply.body == raw
    assert reply.header("Content-Type") == DOCKER_MANIFEST


@pytest.mark.parametrize(
    ("index_type", "manifest_type"), [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)]
)
def test_pull_index_and_manifest_list(
    registry: Registry, index_type: str, manifest_type: str
) -> None:
    name = repo()
    child = image_manifest(registry, name, docker=manifest_type == DOCKER_MANIFEST)
    assert put_manifest(registry, name, sha256(child), child, manifest_type).status == 201
    platform = {"architecture": "amd64", "os": "linux"}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [descriptor(manifest_type, child, platform=platform)],
        }
    ).encode()
    assert put_manifest(registry, name, "multi", index, index_type).status == 201
    reply = registry.call("GET", f"/v2/{name}/manifests/multi", headers={"Accept": index_type})
    assert reply.status == 200
    assert reply.body == index
    assert reply.header("Content-Type") == index_type


def test_pull_blob(registry: Registry) -> None:
    name = repo()
    data = b"blob " * 1000
    digest = push_blob(registry, name, data)
    reply = registry.call("GET", f"/v2/{name}/blobs/{digest}")
    assert reply.status == 200
    assert reply.body == data
    assert reply.header("Docker-Content-Digest") == digest


def test_pull_blob_head(registry: Registry) -> None:
    name = repo()
    data = b"head " * 100
    digest = push_blob(registry, name, data)
    reply = registry.call("HEAD", f"/v2/{name}/blobs/{digest}")
    assert reply.status == 200
    assert reply.header("Content-Length") == str(len(data))
    assert reply.header("Docker-Content-Digest") == digest


def test_pull_blob_unknown_is_404(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"something")
    reply = registry.call("GET", f"/v2/{name}/blobs/{sha256(b'absent')}")
    assert reply.status == 404
    assert "BLOB_UNKNOWN" in reply.error_codes()


def test_pull_blob_range(registry: Registry) -> None:
    name = repo()
    data = bytes(range(256)) * 16
    digest = push_blob(registry, name, data)
    reply = registry.call("GET", f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert reply.status == 206
    assert reply.body == data[100:200]
    assert reply.header("Content-Range") == f"bytes 100-199/{len(data)}"


def test_pull_blob_is_visible_only_in_its_repository(registry: Registry) -> None:
    name, other = repo(), repo()
    digest = push_blob(registry, name, b"private " + uuid.uuid4().bytes)
    push_blob(registry, other, b"other")
    assert registry.call("GET", f"/v2/{other}/blobs/{digest}").status == 404


# --------------------------------------------------------------------------- Push


def test_push_blob_post_then_put(registry: Registry) -> None:
    name = repo()
    data = uuid.uuid4().bytes * 100
    started = registry.call("POST", f"/v2/{name}/blobs/uploads/")
    assert started.status == 202
    location = started.header("Location")
    assert location
    done = registry.call(
        "PUT", f"{_path(location)}{'&' if '?' in location else '?'}digest={sha256(data)}", data
    )
    assert done.status == 201
    assert done.header("Location")
    assert registry.call("HEAD", f"/v2/{name}/blobs/{sha256(data)}").status == 200


def test_push_blob_single_post(registry: Registry) -> None:
    name = repo()
    data = uuid.uuid4().bytes * 10
    reply = registry.call(
        "POST",
        f"/v2/{name}/blobs/uploads/?digest={sha256(data)}",
        data,
        {"Content-Type": "application/octet-stream"},
    )
    # The spec lets a registry without single-POST uploads answer 202: then the client
    # goes on as with POST then PUT.
    assert reply.status in (201, 202)
    if reply.status == 202:
        location = _path(reply.header("Location") or "")
        separator = "&" if "?" in location else "?"
        done = registry.call("PUT", f"{location}{separator}digest={sha256(data)}", data)
        assert done.status == 201
    assert registry.call("HEAD", f"/v2/{name}/blobs/{sha256(data)}").status == 200


def _chunked_start(registry: Registry, name: str) -> str:
    started = registry.call("POST", f"/v2/{name}/blobs/uploads/", b"", {"Content-Length": "0"})
    assert started.status == 202
    location = started.header("Location")
    assert location
    return _path(location)


def test_push_blob_in_chunks(registry: Registry) -> None:
    name = repo()
    data = uuid.uuid4().bytes * 3000
    location = _chunked_start(registry, name)
    for start in range(0, len(data), 20_000):
        chunk = data[start : start + 20_000]
        reply = registry.call(
            "PATCH",
            location,
            chunk,
            {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(chunk) - 1}",
            },
        )
        assert reply.status == 202, reply.body
        assert reply.header("Range") == f"0-{start + len(chunk) - 1}"
        location = _path(reply.header("Location") or location)
    separator = "&" if "?" in location else "?"
    done = registry.call("PUT", f"{location}{separator}digest={sha256(data)}")
    assert done.status == 201
    assert registry.call("GET", f"/v2/{name}/blobs/{sha256(data)}").body == data


def test_push_chunk_out_of_order_is_416(registry: Registry) -> None:
    name = repo()
    location = _chunked_start(registry, name)
    first = registry.call("PATCH", location, b"a" * 100, {"Content-Range": "0-99"})
    assert first.status == 202
    location = _path(first.header("Location") or location)
    skipped = registry.call("PATCH", location, b"b" * 100, {"Content-Range": "200-299"})
    deviation(registry, skipped.status == 202, "an out-of-order chunk is taken (202), not 416")
    assert skipped.status == 416


def test_push_upload_status_gives_the_range(registry: Registry) -> None:
    name = repo()
    location = _chunked_start(registry, name)
    patched = registry.call("PATCH", location, b"x" * 1234, {"Content-Range": "0-1233"})
    location = _path(patched.header("Location") or location)
    status = registry.call("GET", location)
    assert status.status == 204
    assert status.header("Range") == "0-1233"
    assert status.header("Location")


def test_push_final_chunk_with_the_put(registry: Registry) -> None:
    name = repo()
    data = b"0123456789" * 1000
    location = _chunked_start(registry, name)
    first = registry.call("PATCH", location, data[:6000], {"Content-Range": "0-5999"})
    location = _path(first.header("Location") or location)
    separator = "&" if "?" in location else "?"
    done = registry.call(
        "PUT",
        f"{location}{separator}digest={sha256(data)}",
        data[6000:],
        {"Content-Range": f"6000-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert done.status == 201
    assert registry.call("GET", f"/v2/{name}/blobs/{sha256(data)}").body == data


def test_push_digest_mismatch_is_digest_invalid(registry: Registry) -> None:
    name = repo()
    location = _chunked_start(registry, name)
    wrong = sha256(b"something else")
    separator = "&" if "?" in location else "?"
    reply = registry.call("PUT", f"{location}{separator}digest={wrong}", b"the real bytes")
    assert reply.status == 400
    assert "DIGEST_INVALID" in reply.error_codes()
    assert registry.call("HEAD", f"/v2/{name}/blobs/{wrong}").status == 404
    assert registry.call("HEAD", f"/v2/{name}/blobs/{sha256(b'the real bytes')}").status == 404


def test_push_mount_from_another_repository(registry: Registry) -> None:
    source, target = repo(), repo()
    digest = push_blob(registry, source, b"mount me " + uuid.uuid4().bytes)
    reply = registry.call("POST", f"/v2/{target}/blobs/uploads/?mount={digest}&from={source}")
    assert reply.status == 201
    assert reply.header("Location")
    assert registry.call("HEAD", f"/v2/{target}/blobs/{digest}").status == 200


def test_push_mount_of_an_unknown_blob_starts_an_upload(registry: Registry) -> None:
    source, target = repo(), repo()
    push_blob(registry, source, b"present")
    reply = registry.call(
        "POST", f"/v2/{target}/blobs/uploads/?mount={sha256(b'absent')}&from={source}"
    )
    assert reply.status == 202
    assert reply.header("Location")


def test_push_manifest_by_tag_and_by_digest(registry: Registry) -> None:
    name = repo()
    raw = image_manifest(registry, name)
    by_digest = put_manifest(registry, name, sha256(raw), raw)
    assert by_digest.status == 201
    assert by_digest.header("Docker-Content-Digest") == sha256(raw)
    assert by_digest.header("Location")
    by_tag = put_manifest(registry, name, "tagged", raw)
    assert by_tag.status == 201
    assert by_tag.header("Docker-Content-Digest") == sha256(raw)


def test_push_manifest_digest_must_match_the_body(registry: Registry) -> None:
    name = repo()
    raw = image_manifest(registry, name)
    reply = put_manifest(registry, name, sha256(b"other"), raw)
    assert reply.status == 400
    assert "DIGEST_INVALID" in reply.error_codes()


def test_push_manifest_with_unknown_blob_is_manifest_blob_unknown(registry: Registry) -> None:
    name = repo()
    config = b'{"architecture":"amd64","os":"linux"}'
    push_blob(registry, name, config)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, b"never pushed")],
        }
    ).encode()
    reply = put_manifest(registry, name, "broken", raw)
    assert reply.status == 400
    assert "MANIFEST_BLOB_UNKNOWN" in reply.error_codes()


def test_push_manifest_not_json_is_manifest_invalid(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    reply = put_manifest(registry, name, "junk", b"{this is not json")
    assert reply.status == 400
    assert "MANIFEST_INVALID" in reply.error_codes()


def test_push_index_needs_its_manifests(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    absent = b'{"schemaVersion":2}'
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, absent)],
        }
    ).encode()
    reply = put_manifest(registry, name, "index", index, OCI_INDEX)
    assert reply.status == 400
    assert "MANIFEST_BLOB_UNKNOWN" in reply.error_codes()


def test_push_manifest_over_4_mib_is_413(registry: Registry) -> None:
    name = repo()
    raw = image_manifest(registry, name, annotations={"pad": "x" * (4 * 1024 * 1024 + 10)})
    reply = put_manifest(registry, name, "huge", raw)
    deviation(registry, reply.status == 400, "a manifest over 4 MiB is 400, not 413")
    assert reply.status == 413


def _artifact(registry: Registry, name: str, subject: bytes, artifact_type: str) -> bytes:
    empty = b"{}"
    push_blob(registry, name, empty)
    blob = f"{artifact_type} {uuid.uuid4()}".encode()
    push_blob(registry, name, blob)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(EMPTY_CONFIG, empty),
            "layers": [descriptor("application/octet-stream", blob)],
            "subject": descriptor(OCI_MANIFEST, subject),
            "annotations": {"org.example.kind": artifact_type},
        }
    ).encode()


def test_push_manifest_with_subject_answers_oci_subject(registry: Registry) -> None:
    name = repo()
    subject, subject_digest = pushed_image(registry, name)
    referrer = _artifact(registry, name, subject, "application/vnd.example.sbom")
    reply = put_manifest(registry, name, sha256(referrer), referrer)
    assert reply.status == 201
    deviation(
        registry, reply.header("OCI-Subject") is None, "no OCI-Subject header (no referrers API)"
    )
    assert reply.header("OCI-Subject") == subject_digest


def test_push_manifest_whose_subject_does_not_exist(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    missing_subject = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    )
    referrer = _artifact(registry, name, missing_subject, "application/vnd.example.sig")
    assert put_manifest(registry, name, sha256(referrer), referrer).status == 201


# --------------------------------------------------------------------------- Content Discovery


def test_content_discovery_tags_list_is_sorted(registry: Registry) -> None:
    name = repo()
    raw, _ = pushed_image(registry, name, "seed")
    tags = ["b", "a", "C", "10", "2", "z.z", "A_b"]
    for tag in tags:
        assert put_manifest(registry, name, tag, raw).status == 201
    reply = registry.call("GET", f"/v2/{name}/tags/list")
    assert reply.status == 200
    body = reply.json()
    assert body["name"] == name
    assert sorted(body["tags"]) == sorted([*tags, "seed"])
    deviation(registry, body["tags"] != sorted(body["tags"]), "tags are listed unsorted")
    assert body["tags"] == sorted([*tags, "seed"])


def test_content_discovery_tags_pagination(registry: Registry) -> None:
    name = repo()
    raw, _ = pushed_image(registry, name, "t00")
    for i in range(1, 7):
        put_manifest(registry, name, f"t{i:02d}", raw)
    first = registry.call("GET", f"/v2/{name}/tags/list?n=3")
    deviation(registry, len(first.json()["tags"]) > 3, "n is ignored: every tag comes back")
    assert first.json()["tags"] == ["t00", "t01", "t02"]
    link = first.header("Link")
    assert link is not None
    assert 'rel="next"' in link
    assert "last=t02" in link
    second = registry.call("GET", f"/v2/{name}/tags/list?n=3&last=t02")
    assert second.json()["tags"] == ["t03", "t04", "t05"]
    last = registry.call("GET", f"/v2/{name}/tags/list?n=3&last=t05")
    assert last.json()["tags"] == ["t06"]
    assert last.header("Link") is None


def test_content_discovery_tags_last_without_n(registry: Registry) -> None:
    name = repo()
    raw, _ = pushed_image(registry, name, "a")
    for tag in ("b", "c"):
        put_manifest(registry, name, tag, raw)
    tags = registry.call("GET", f"/v2/{name}/tags/list?last=a").json()["tags"]
    deviation(registry, "a" in tags, "last is ignored without n")
    assert tags == ["b", "c"]


def test_content_discovery_tags_n_zero_is_empty(registry: Registry) -> None:
    name = repo()
    pushed_image(registry, name)
    reply = registry.call("GET", f"/v2/{name}/tags/list?n=0")
    assert reply.status == 200
    deviation(registry, bool(reply.json()["tags"]), "n=0 returns tags instead of none")
    assert reply.json()["tags"] == []
    assert reply.header("Link") is None


def test_content_discovery_tags_of_unknown_repository_is_404(registry: Registry) -> None:
    reply = registry.call("GET", f"/v2/{repo()}/tags/list")
    assert reply.status == 404
    assert "NAME_UNKNOWN" in reply.error_codes()


def _referrers(registry: Registry, name: str, digest: str, query: str = "") -> Any:
    reply = registry.call("GET", f"/v2/{name}/referrers/{digest}{query}")
    deviation(registry, reply.status == 404, "no referrers API (404)")
    return reply


def test_content_discovery_referrers(registry: Registry) -> None:
    name = repo()
    subject, subject_digest = pushed_image(registry, name)
    sbom = _artifact(registry, name, subject, "application/vnd.example.sbom")
    sig = _artifact(registry, name, subject, "application/vnd.example.sig")
    for raw in (sbom, sig):
        assert put_manifest(registry, name, sha256(raw), raw).status == 201
    reply = _referrers(registry, name, subject_digest)
    assert reply.status == 200
    assert reply.header("Content-Type") == OCI_INDEX
    index = reply.json()
    assert index["mediaType"] == OCI_INDEX
    found = {m["digest"]: m for m in index["manifests"]}
    assert set(found) == {sha256(sbom), sha256(sig)}
    assert found[sha256(sbom)]["artifactType"] == "application/vnd.example.sbom"
    assert found[sha256(sbom)]["annotations"] == {
        "org.example.kind": "application/vnd.example.sbom"
    }
    assert found[sha256(sbom)]["size"] == len(sbom)


def test_content_discovery_referrers_artifact_type_filter(registry: Registry) -> None:
    name = repo()
    subject, subject_digest = pushed_image(registry, name)
    for kind in ("application/vnd.example.sbom", "application/vnd.example.sig"):
        raw = _artifact(registry, name, subject, kind)
        put_manifest(registry, name, sha256(raw), raw)
    reply = _referrers(registry, name, subject_digest, "?artifactType=application/vnd.example.sig")
    assert reply.status == 200
    assert reply.header("OCI-Filters-Applied") == "artifactType"
    kinds = [m["artifactType"] for m in reply.json()["manifests"]]
    assert kinds == ["application/vnd.example.sig"]


def test_content_discovery_referrers_image_manifest_uses_config_type(registry: Registry) -> None:
    name = repo()
    subject, subject_digest = pushed_image(registry, name)
    config = b'{"kind":"signature"}'
    push_blob(registry, name, config)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.example.config", config),
            "layers": [],
            "subject": descriptor(OCI_MANIFEST, subject),
        }
    ).encode()
    assert put_manifest(registry, name, sha256(raw), raw).status == 201
    reply = _referrers(registry, name, subject_digest)
    assert [m["artifactType"] for m in reply.json()["manifests"]] == [
        "application/vnd.example.config"
    ]


def test_content_discovery_referrers_of_nothing_is_an_empty_index(registry: Registry) -> None:
    name = repo()
    pushed_image(registry, name)
    reply = _referrers(registry, name, sha256(b"no such subject"))
    assert reply.status == 200
    assert reply.json()["manifests"] == []


def test_content_discovery_referrers_bad_digest_is_400(registry: Registry) -> None:
    name = repo()
    pushed_image(registry, name)
    reply = _referrers(registry, name, "sha256:nothex")
    assert reply.status == 400


def test_content_discovery_catalog(registry: Registry) -> None:
    names = sorted(repo() for _ in range(3))
    for name in names:
        push_blob(registry, name, b"catalog")
        pushed_image(registry, name)
    reply = registry.call("GET", "/v2/_catalog")
    assert reply.status == 200
    listed = reply.json()["repositories"]
    assert [n for n in listed if n in names] == names
    page = registry.call("GET", "/v2/_catalog?n=1")
    assert len(page.json()["repositories"]) == 1
    assert 'rel="next"' in (page.header("Link") or "")


# --------------------------------------------------------------------------- Content Management


def test_content_management_delete_tag(registry: Registry) -> None:
    name = repo()
    raw, digest = pushed_image(registry, name, "keep")
    put_manifest(registry, name, "drop", raw)
    reply = registry.call("DELETE", f"/v2/{name}/manifests/drop")
    # The spec lets a registry refuse tag deletion with 400 or 405.
    deviation(registry, reply.status in (400, 405), f"tags cannot be deleted ({reply.status})")
    assert reply.status == 202
    assert registry.call("GET", f"/v2/{name}/manifests/drop").status == 404
    assert registry.call("GET", f"/v2/{name}/manifests/keep").status == 200
    assert registry.call("GET", f"/v2/{name}/manifests/{digest}").status == 200


def test_content_management_delete_manifest(registry: Registry) -> None:
    name = repo()
    _, digest = pushed_image(registry, name, "gone")
    reply = registry.call("DELETE", f"/v2/{name}/manifests/{digest}")
    assert reply.status == 202
    assert registry.call("GET", f"/v2/{name}/manifests/{digest}").status == 404
    assert registry.call("GET", f"/v2/{name}/manifests/gone").status == 404


def test_content_management_delete_unknown_manifest_is_404(registry: Registry) -> None:
    name = repo()
    pushed_image(registry, name)
    reply = registry.call("DELETE", f"/v2/{name}/manifests/{sha256(b'never')}")
    assert reply.status == 404


def test_content_management_delete_blob(registry: Registry) -> None:
    name = repo()
    digest = push_blob(registry, name, b"delete me " + uuid.uuid4().bytes)
    assert registry.call("DELETE", f"/v2/{name}/blobs/{digest}").status == 202
    assert registry.call("HEAD", f"/v2/{name}/blobs/{digest}").status == 404


def test_content_management_delete_unknown_blob_is_404(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    assert registry.call("DELETE", f"/v2/{name}/blobs/{sha256(b'never')}").status == 404


def test_content_management_cancel_upload(registry: Registry) -> None:
    name = repo()
    location = _chunked_start(registry, name)
    patched = registry.call("PATCH", location, b"partial", {"Content-Range": "0-6"})
    location = _path(patched.header("Location") or location)
    assert registry.call("DELETE", location).status == 204
    reply = registry.call("GET", location)
    assert reply.status == 404
    assert "BLOB_UPLOAD_UNKNOWN" in reply.error_codes()


# --------------------------------------------------------------------------- Error codes


def test_error_codes_body_is_the_spec_json(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    reply = registry.call("GET", f"/v2/{name}/manifests/absent")
    assert reply.status == 404
    error = reply.json()["errors"][0]
    assert error["code"] == "MANIFEST_UNKNOWN"
    assert "message" in error


def test_error_codes_invalid_name_is_400_name_invalid(registry: Registry) -> None:
    reply = registry.call("GET", "/v2/Upper/Case/manifests/latest")
    deviation(registry, reply.status == 404, "an invalid name is a plain-text 404 (no route)")
    assert reply.status == 400
    assert reply.error_codes() == ["NAME_INVALID"]


def test_error_codes_invalid_digest_is_400(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    reply = registry.call("GET", f"/v2/{name}/blobs/sha256:123")
    deviation(registry, reply.status == 404, "an invalid digest is a plain-text 404 (no route)")
    assert reply.status == 400
    assert reply.error_codes() == ["DIGEST_INVALID"]


def test_error_codes_unknown_upload_is_blob_upload_unknown(registry: Registry) -> None:
    name = repo()
    push_blob(registry, name, b"x")
    reply = registry.call("GET", f"/v2/{name}/blobs/uploads/{uuid.uuid4()}")
    assert reply.status == 404
    codes = reply.error_codes()
    deviation(
        registry, codes == ["BLOB_UPLOAD_INVALID"], "an unknown upload is BLOB_UPLOAD_INVALID"
    )
    assert "BLOB_UPLOAD_UNKNOWN" in codes
