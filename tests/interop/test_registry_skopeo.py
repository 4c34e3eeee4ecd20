"""skopeo (and dockerd, where it runs) push images into ``moor registry serve`` and pull
them out again, byte for byte: the same manifest digest, the same blobs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import dockerd
from bundles import busybox_binary, make_busybox_rootfs
from dockerd import DockerDaemon
from registry_servers import (
    OCI_INDEX,
    OCI_MANIFEST,
    Auth,
    Layout,
    Registry,
    distribution_available,
    self_signed_tls,
    sha256,
    skopeo,
    start_distribution,
    start_moorage,
    tar_of,
    tar_of_directory,
    write_htpasswd,
    write_oci_layout,
)

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    if busybox_binary() is None:
        pytest.skip("busybox-static is not installed")
    base = tmp_path_factory.mktemp("busybox-image")
    rootfs = make_busybox_rootfs(base / "rootfs")
    extra = tar_of({"etc/motd": b"pushed through moor registry serve\n"})
    return write_oci_layout(base / "layout", [tar_of_directory(rootfs), extra], tag="1")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Registry]:
    registry = start_moorage(tmp_path / "moor")
    try:
        yield registry
    finally:
        registry.stop()


def ok(*args: str) -> str:
    result = skopeo(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def raw_manifest(reference: str, *flags: str) -> bytes:
    return ok("inspect", "--raw", *flags, reference).encode()


def blobs_of(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def test_skopeo_copies_an_image_in_and_out(
    server: Registry, busybox: Layout, tmp_path: Path
) -> None:
    target = f"docker://{server.host}/library/busybox:1"
    ok("copy", "--dest-tls-verify=false", busybox.ref, target)
    assert sha256(raw_manifest(target, "--tls-verify=false")) == busybox.manifest_digest
    out = tmp_path / "out"
    ok("copy", "--src-tls-verify=false", target, f"oci:{out}:1")
    assert sha256(raw_manifest(f"oci:{out}:1")) == busybox.manifest_digest
    assert blobs_of(out) == blobs_of(busybox.path)


def test_skopeo_pull_by_digest(server: Registry, busybox: Layout, tmp_path: Path) -> None:
    ok("copy", "--dest-tls-verify=false", busybox.ref, f"docker://{server.host}/app:1")
    by_digest = f"docker://{server.host}/app@{busybox.manifest_digest}"
    ok("copy", "--src-tls-verify=false", by_digest, f"oci:{tmp_path / 'out'}:x")
    assert sha256(raw_manifest(f"oci:{tmp_path / 'out'}:x")) == busybox.manifest_digest


def test_skopeo_lists_tags(server: Registry, busybox: Layout) -> None:
    for tag in ("b", "a", "c"):
        ok("copy", "--dest-tls-verify=false", busybox.ref, f"docker://{server.host}/app:{tag}")
    listed = json.loads(ok("list-tags", "--tls-verify=false", f"docker://{server.host}/app"))
    assert listed["Tags"] == ["a", "b", "c"]


def test_a_second_push_sends_no_blob_again(server: Registry, busybox: Layout) -> None:
    """skopeo asks first (HEAD); a blob sent again would be committed as a new inode."""
    ok("copy", "--dest-tls-verify=false", busybox.ref, f"docker://{server.host}/app:1")
    blobs = server.base / "root" / "content" / "blobs" / "sha256"
    before = {p.name: p.stat().st_ino for p in blobs.iterdir()}
    ok("copy", "--dest-tls-verify=false", busybox.ref, f"docker://{server.host}/app:2")
    after = {p.name: p.stat().st_ino for p in blobs.iterdir()}
    layers = {d.split(":")[1] for d in busybox.layer_digests}
    assert {k: after[k] for k in layers} == {k: before[k] for k in layers}


def test_skopeo_mounts_layers_across_repositories(server: Registry, busybox: Layout) -> None:
    ok("copy", "--dest-tls-verify=false", busybox.ref, f"docker://{server.host}/one/app:1")
    ok(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{server.host}/one/app:1",
        f"docker://{server.host}/two/app:1",
    )
    raw = raw_manifest(f"docker://{server.host}/two/app:1", "--tls-verify=false")
    assert sha256(raw) == busybox.manifest_digest


def test_skopeo_copies_a_multi_platform_index(server: Registry, tmp_path: Path) -> None:
    amd = write_oci_layout(tmp_path / "amd", [tar_of({"arch": b"amd64"})], tag="1")
    arm = write_oci_layout(tmp_path / "arm", [tar_of({"arch": b"arm64"})], tag="1")
    layout = tmp_path / "multi"
    shutil.copytree(amd.path, layout)
    for blob in (arm.path / "blobs" / "sha256").iterdir():
        shutil.copy(blob, layout / "blobs" / "sha256" / blob.name)
    manifests = []
    for image, arch in ((amd, "amd64"), (arm, "arm64")):
        raw = (image.path / "blobs" / "sha256" / image.manifest_digest.split(":")[1]).read_bytes()
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.manifest_digest,
                "size": len(raw),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    ).encode()
    (layout / "blobs" / "sha256" / sha256(index).split(":")[1]).write_bytes(index)
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": OCI_INDEX,
                        "digest": sha256(index),
                        "size": len(index),
                        "annotations": {"org.opencontainers.image.ref.name": "multi"},
                    }
                ],
            }
        )
    )
    target = f"docker://{server.host}/multi:1"
    ok("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", target)
    assert raw_manifest(target, "--tls-verify=false") == index
    out = tmp_path / "out"
    ok("copy", "--all", "--src-tls-verify=false", target, f"oci:{out}:multi")
    assert blobs_of(out) == blobs_of(layout)


def test_skopeo_with_htpasswd(tmp_path: Path, busybox: Layout) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    registry = start_moorage(tmp_path / "moor", auth=Auth(htpasswd=htpasswd))
    try:
        target = f"docker://{registry.host}/private/busybox:1"
        refused = skopeo("copy", "--dest-tls-verify=false", busybox.ref, target)
        assert refused.returncode != 0
        assert "unauthorized" in refused.stderr.lower() or "401" in refused.stderr
        wrong = skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", "alice:nope", busybox.ref, target
        )
        assert wrong.returncode != 0
        ok("copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret", busybox.ref, target)
        raw = raw_manifest(target, "--tls-verify=false", "--creds", "alice:s3cret")
        assert sha256(raw) == busybox.manifest_digest
    finally:
        registry.stop()


def test_skopeo_over_tls(tmp_path: Path, busybox: Layout) -> None:
    registry = start_moorage(tmp_path / "moor", tls=self_signed_tls(tmp_path / "tls"))
    try:
        assert registry.url.startswith("https://")
        target = f"docker://{registry.host}/secure/busybox:1"
        ok("copy", "--dest-tls-verify=false", busybox.ref, target)
        assert sha256(raw_manifest(target, "--tls-verify=false")) == busybox.manifest_digest
    finally:
        registry.stop()


@pytest.mark.skipif(not distribution_available(), reason="docker-registry is not installed")
def test_skopeo_copies_between_moorage_and_distribution(
    server: Registry, busybox: Layout, tmp_path: Path
) -> None:
    distribution = start_distribution(tmp_path / "distribution")
    try:
        there = f"docker://{distribution.host}/from/moorage:1"
        here = f"docker://{server.host}/from/distribution:1"
        ok("copy", "--dest-tls-verify=false", busybox.ref, f"docker://{server.host}/start:1")
        flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        ok("copy", *flags, f"docker://{server.host}/start:1", there)
        ok("copy", *flags, there, here)
        assert sha256(raw_manifest(here, "--tls-verify=false")) == busybox.manifest_digest
    finally:
        distribution.stop()


@pytest.mark.root
@pytest.mark.skipif(not dockerd.available(), reason="dockerd (docker.io) is not installed")
def test_docker_pushes_to_and_pulls_from_moorage(
    server: Registry, busybox: Layout, tmp_path: Path
) -> None:
    """dockerd treats 127.0.0.0/8 as an insecure registry, so plain HTTP works."""
    daemon = DockerDaemon(tmp_path / "dockerd")
    try:
        daemon.start()
        archive = tmp_path / "busybox.tar"
        ok("copy", busybox.ref, f"docker-archive:{archive}:busybox:1")
        daemon.docker("load", "-i", str(archive))
        name = f"{server.host}/docker/busybox:1"
        daemon.docker("tag", "busybox:1", name)
        daemon.docker("push", name)
        image_id = daemon.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
        daemon.docker("rmi", name, "busybox:1")
        daemon.docker("pull", name)
        assert daemon.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == image_id
    finally:
        daemon.stop()
