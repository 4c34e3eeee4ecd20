"""Repository names, tags, digests and the URL layout, as the registry server checks them."""

from __future__ import annotations

import pytest

from moorage.errors import InvalidArgument, NotFound
from moorage.registry.server.errors import DigestInvalid, EndpointUnknown, NameInvalid, TagInvalid
from moorage.registry.server.names import (
    check_digest,
    check_name,
    check_tag,
    check_upload_id,
    new_upload_id,
    stored_digest,
)
from moorage.registry.server.paths import Endpoint, Kind, next_link, parse_path

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "name",
    ["a", "library/busybox", "a-b/c__d/e.f", "a--b", "0/1/2", "x" * 255, "a.b_c/d-e"],
)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "a/",
        "/a",
        "a//b",
        "..",
        "a/../b",
        "a/./b",
        "a_",
        "_a",
        "a___b",
        "a%2Fb",
        "a b",
        "a\nb",
        "a:b",
        "x" * 256,
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        check_name(name)


def test_a_name_error_is_an_invalid_argument_naming_the_input() -> None:
    with pytest.raises(InvalidArgument, match='invalid repository name: "UP"'):
        check_name("UP")


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A-b.c_d", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b", "a b", "ä"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(TagInvalid):
        check_tag(tag)


def test_digests_of_registered_algorithms_are_valid() -> None:
    assert check_digest(SHA) == SHA
    assert check_digest("sha512:" + "0" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    "digest",
    ["sha256:" + "AB" * 32, "sha256:" + "a" * 63, "md5:" + "a" * 32, "sha256", SHA + "/x", ""],
)
def test_invalid_digests(digest: str) -> None:
    with pytest.raises(DigestInvalid):
        check_digest(digest)


def test_only_sha256_can_be_stored() -> None:
    assert stored_digest(SHA) == SHA
    with pytest.raises(DigestInvalid, match="unsupported digest algorithm: sha512"):
        stored_digest("sha512:" + "0" * 128)


def test_upload_ids_are_uuid4_and_nothing_else_is_taken_for_one() -> None:
    upload_id = new_upload_id()
    assert check_upload_id(upload_id) == upload_id
    assert check_upload_id("../../etc") is None
    assert check_upload_id(upload_id.upper()) is None


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v2/", Endpoint(Kind.BASE)),
        ("/v2", Endpoint(Kind.BASE)),
        ("/v2/_catalog?n=1", Endpoint(Kind.CATALOG)),
        ("/v2/a/b/manifests/latest", Endpoint(Kind.MANIFEST, "a/b", "latest")),
        (f"/v2/a/manifests/{SHA}", Endpoint(Kind.MANIFEST, "a", SHA)),
        ("/v2/a/manifests/sha256%3Aab", Endpoint(Kind.MANIFEST, "a", "sha256:ab")),
        (f"/v2/a/blobs/{SHA}", Endpoint(Kind.BLOB, "a", SHA)),
        ("/v2/a/blobs/uploads/", Endpoint(Kind.UPLOADS, "a")),
        ("/v2/a/blobs/uploads", Endpoint(Kind.UPLOADS, "a")),
        ("/v2/a/blobs/uploads/?digest=x", Endpoint(Kind.UPLOADS, "a")),
        ("/v2/a/blobs/uploads/123", Endpoint(Kind.UPLOAD, "a", "123")),
        ("/v2/a/tags/list?n=2", Endpoint(Kind.TAGS, "a")),
        (f"/v2/a/referrers/{SHA}", Endpoint(Kind.REFERRERS, "a", SHA)),
        # Components that look like endpoint words still belong to the name.
        ("/v2/x/manifests/manifests/v1", Endpoint(Kind.MANIFEST, "x/manifests", "v1")),
        (f"/v2/blobs/blobs/{SHA}", Endpoint(Kind.BLOB, "blobs", SHA)),
        ("/v2/a/tags/tags/list", Endpoint(Kind.TAGS, "a/tags")),
    ],
)
def test_paths_map_to_endpoints(path: str, endpoint: Endpoint) -> None:
    assert parse_path(path) == endpoint


@pytest.mark.parametrize(
    "path",
    [
        "/v2/a%2Fb/manifests/latest",
        "/v2/../etc/manifests/latest",
        "/v2/a/../../b/manifests/x",
        "/v2//manifests/x",
        "/v2/A/manifests/x",
        "/v2/a%2e%2e/blobs/uploads/",
    ],
)
def test_crafted_names_are_refused(path: str) -> None:
    with pytest.raises(NameInvalid):
        parse_path(path)


@pytest.mark.parametrize("path", ["/", "/v1/", "/v2/a", "/v2/a/other/x", "/v2/manifests/x"])
def test_paths_outside_the_api_are_unknown(path: str) -> None:
    with pytest.raises(EndpointUnknown) as raised:
        parse_path(path)
    assert isinstance(raised.value, NotFound)


def test_a_decoded_slash_in_a_reference_stays_in_the_reference() -> None:
    endpoint = parse_path("/v2/a/manifests/x%2F..%2Fy")
    assert endpoint.reference == "x/../y"
    with pytest.raises(TagInvalid):
        check_tag(endpoint.reference)


def test_next_link_quotes_the_last_item() -> None:
    assert next_link("/v2/a/tags/list", 2, "v1") == '</v2/a/tags/list?n=2&last=v1>; rel="next"'
    assert "last=a/b%26c" in next_link("/v2/_catalog", 1, "a/b&c")
