"""``moor registry serve --proxy`` as a pull-through cache of the CNCF distribution
registry: skopeo copies an image out of the cache byte for byte, and again once the
upstream is gone; pushes are refused; what the upstream lacks is MANIFEST_UNKNOWN."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_servers import (
    Auth,
    Layout,
    Registry,
    distribution_available,
    free_port,
    sha256,
    skopeo,
    start_distribution,
    start_moorage,
    tar_of,
    write_htpasswd,
    write_oci_layout,
)

pytestmark = [
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
    pytest.mark.skipif(not distribution_available(), reason="docker-registry is not installed"),
]

REPO = "team/app"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    base = tmp_path_factory.mktemp("proxied-image")
    layers = [tar_of({"etc/motd": b"through the cache\n"}), tar_of({"data": b"x" * 300_000})]
    return write_oci_layout(base / "layout", layers, tag="1")


@pytest.fixture
def upstream(tmp_path: Path, image: Layout) -> Iterator[Registry]:
    registry = start_distribution(tmp_path / "upstream")
    try:
        ok("copy", "--dest-tls-verify=false", image.ref, f"docker://{registry.host}/{REPO}:1")
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def cache(tmp_path: Path, upstream: Registry) -> Iterator[Registry]:
    registry = start_moorage(tmp_path / "cache", extra=["--proxy", upstream.url])
    try:
        yield registry
    finally:
        registry.stop()


def ok(*args: str) -> str:
    result = skopeo(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def pull(registry: Registry, into: Path) -> bytes:
    """Copy ``REPO:1`` out of ``registry`` into an OCI layout; the manifest's bytes."""
    ok("copy", "--src-tls-verify=false", f"docker://{registry.host}/{REPO}:1", f"oci:{into}:1")
    return ok("inspect", "--raw", f"oci:{into}:1").encode()


def blobs_of(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def test_skopeo_copies_an_image_out_of_the_cache(
    cache: Registry, upstream: Registry, image: Layout, tmp_path: Path
) -> None:
    raw = pull(cache, tmp_path / "out")
    upstream_raw = ok(
        "inspect", "--raw", "--tls-verify=false", f"docker://{upstream.host}/{REPO}:1"
    )
    assert sha256(raw) == sha256(upstream_raw.encode()) == image.manifest_digest
    assert blobs_of(tmp_path / "out") == blobs_of(image.path)


def test_the_cache_serves_what_it_holds_once_the_upstream_is_gone(
    cache: Registry, upstream: Registry, image: Layout, tmp_path: Path
) -> None:
    pull(cache, tmp_path / "first")
    upstream.stop()
    raw = pull(cache, tmp_path / "second")
    assert sha256(raw) == image.manifest_digest
    assert blobs_of(tmp_path / "second") == blobs_of(image.path)


def test_a_push_to_the_cache_is_refused(cache: Registry, image: Layout) -> None:
    result = skopeo("copy", "--dest-tls-verify=false", image.ref, f"docker://{cache.host}/mine:1")
    assert result.returncode != 0
    reply = cache.call("POST", f"/v2/{REPO}/blobs/uploads/")
    assert (reply.status, reply.error_codes()) == (405, ["UNSUPPORTED"])


def test_a_repository_the_upstream_lacks_is_manifest_unknown(cache: Registry) -> None:
    reply = cache.call("GET", "/v2/no/such/repo/manifests/latest")
    assert (reply.status, reply.error_codes()) == (404, ["MANIFEST_UNKNOWN"])


def test_an_unreachable_upstream_with_nothing_cached_is_503(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cache = start_moorage(tmp_path / "cache", extra=["--proxy", url])
    try:
        reply = cache.call("GET", f"/v2/{REPO}/manifests/1")
    finally:
        cache.stop()
    assert (reply.status, reply.error_codes()) == (503, ["UNAVAILABLE"])
    assert url in reply.json()["errors"][0]["message"]


def test_the_cache_logs_in_to_the_upstream(tmp_path: Path, image: Layout) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"puller": "s3cret"})
    upstream = start_distribution(tmp_path / "upstream", auth=Auth(htpasswd=htpasswd))
    try:
        target = f"docker://{upstream.host}/{REPO}:1"
        ok("copy", "--dest-tls-verify=false", "--dest-creds", "puller:s3cret", image.ref, target)
        login = ["--proxy-username", "puller", "--proxy-password", "s3cret"]
        cache = start_moorage(tmp_path / "cache", extra=["--proxy", upstream.url, *login])
        try:
            raw = pull(cache, tmp_path / "out")
        finally:
            cache.stop()
    finally:
        upstream.stop()
    assert sha256(raw) == image.manifest_digest
