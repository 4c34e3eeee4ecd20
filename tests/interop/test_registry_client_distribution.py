"""`moor pull` and `moor push` through a private daemon against the CNCF distribution
registry (Debian's docker-registry): anonymous, with htpasswd basic auth and with token
auth through a token server the test runs; manifest lists; resumed and refused
downloads; pushes that skip what the registry has and mount across repositories."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import distribution_registry as dr
from daemon import Daemon, running_daemon
from distribution_registry import DistributionRegistry, Proxy, TokenServer, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not dr.available(), reason="docker-registry (distribution) is not installed"
    ),
]

BIG = 8 * 1024 * 1024  # a layer big enough to be cut, held or tampered with half-way


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("registry-client") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    r = DistributionRegistry(tmp_path_factory.mktemp("distribution"))
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture
def proxy(registry: DistributionRegistry) -> Iterator[Proxy]:
    p = Proxy(registry.host)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(autouse=True)
def credentials_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's credentials in a directory of the test's own; no docker login leaks in."""
    monkeypatch.setenv("MOOR_CONFIG", str(tmp_path / "moor-config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return tmp_path / "moor-config"


@pytest.fixture(scope="module")
def big_image(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-layer image of random (incompressible) bytes."""
    data = os.urandom(BIG)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path_factory.mktemp("big") / "rootfs.tar"
    path.write_bytes(buf.getvalue())
    daemon.moor("import", str(path), "big/random:1")
    return "big/random:1"


def inspect(d: Daemon, name: str) -> dict[str, Any]:
    return json.loads(d.moor("image", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def blobs(d: Daemon) -> set[str]:
    return set(os.listdir(d.root / "content" / "blobs" / "sha256"))


def layer_of(d: Daemon, name: str) -> str:
    """The (compressed) digest of an image's only layer, from its manifest in the store."""
    info = inspect(d, name)
    manifest = json.loads(
        (d.root / "content/blobs/sha256" / info["Descriptor"]["digest"][7:]).read_bytes()
    )
    if "manifests" in manifest:
        raise AssertionError("want a manifest, not an index")
    return str(manifest["layers"][0]["digest"])


# --- anonymous ---------------------------------------------------------------------------


def test_push_rmi_pull_run_round_trip(daemon: Daemon, registry: DistributionRegistry) -> None:
    name = f"{registry.host}/round/busybox:1"
    daemon.moor("tag", "busybox", name)
    original = inspect(daemon, "busybox")["Id"]
    pushed = daemon.moor("push", name).stdout.decode()
    assert "Pushed" in pushed
    daemon.moor("rmi", name)
    daemon.moor("rmi", "busybox")  # no image holds the layer now: it is collected
    assert not blobs(daemon) & {original[7:]}

    out = daemon.moor("pull", name).stdout.decode()
    assert "Pull complete" in out
    assert f"Status: Downloaded newer image for {name}" in out
    assert out.rstrip().endswith(name)
    info = inspect(daemon, name)
    assert info["Id"] == original
    digest = out.split("Digest: ")[1].split()[0]
    assert info["RepoDigests"] == [f"{registry.host}/round/busybox@{digest}"]
    listed = daemon.moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    assert f"{registry.host}/round/busybox:1" in listed.split()
    run = daemon.moor("run", "--rm", name, "echo", "pulled and running")
    assert run.stdout.decode().strip() == "pulled and running"

    again = daemon.moor("pull", name).stdout.decode()
    assert f"Status: Image is up to date for {name}" in again
    daemon.moor("tag", name, "busybox")  # the other tests' base image


def test_pull_by_digest_records_a_repo_digest_and_no_tag(
    daemon: Daemon, registry: DistributionRegistry
) -> None:
    name = f"{registry.host}/bydigest/busybox:1"
    daemon.moor("tag", "busybox", name)
    out = daemon.moor("push", name).stdout.decode()
    digest = out.split("digest: ")[1].split()[0]
    by_digest = f"{registry.host}/bydigest/busybox@{digest}"

    pulled = daemon.moor("pull", "-q", by_digest).stdout.decode().strip()
    assert pulled == by_digest
    info = inspect(daemon, by_digest)
    assert by_digest in info["RepoDigests"]
    assert by_digest not in info["RepoTags"]
    daemon.moor("rmi", by_digest)
    daemon.moor("rmi", name)


def test_a_missing_image_fails_with_the_registry_s_reason(
    daemon: Daemon, registry: DistributionRegistry
) -> None:
    result = daemon.moor("pull", f"{registry.host}/no/such:image", check=False)
    assert result.returncode != 0
    assert f"{registry.host}/no/such:image: manifest unknown" in result.stderr.decode()


def _upload(registry: DistributionRegistry, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    import http.client

    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        conn.request("POST", f"/v2/{repo}/blobs/uploads/")
        response = conn.getresponse()
        response.read()
        assert response.status == 202, response.status
        location = response.getheader("Location") or ""
        sep = "&" if "?" in location else "?"
        conn.request("PUT", f"{location}{sep}digest={digest}", body=data)
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status
    finally:
        conn.close()
    return digest


def _put_manifest(registry: DistributionRegistry, repo: str, ref: str, doc: dict[str, Any]) -> str:
    import http.client

    raw = json.dumps(doc).encode()
    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        conn.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            body=raw,
            headers={"Content-Type": doc["mediaType"]},
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status
    finally:
        conn.close()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_a_manifest_list_pulls_the_platform_asked_for(
    daemon: Daemon, registry: DistributionRegistry
) -> None:
    """An index of amd64 and arm64 manifests (sharing busybox's layer, each with its own
    config): the host's platform by default, the other with --platform."""
    repo = "multi/busybox"
    base = f"{registry.host}/{repo}"
    daemon.moor("tag", "busybox", f"{base}:seed")
    daemon.moor("push", f"{base}:seed")
    seed = json.loads(
        (daemon.root / "content/blobs/sha256" / inspect(daemon, "busybox")["Id"][7:]).read_bytes()
    )
    layer = layer_of(daemon, "busybox")
    layer_size = (daemon.root / "content/blobs/sha256" / layer[7:]).stat().st_size
    entries = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        config = {**seed, "architecture": arch}
        if variant:
            config["variant"] = variant
        raw_config = json.dumps(config).encode()
        config_digest = _upload(registry, repo, raw_config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest,
                "size": len(raw_config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer,
                    "size": layer_size,
                }
            ],
        }
        digest = _put_manifest(registry, repo, f"{arch}-only", manifest)
        platform = {
            "architecture": arch,
            "os": "linux",
            **({"variant": variant} if variant else {}),
        }
        entries.append(
            {
                "mediaType": manifest["mediaType"],
                "digest": digest,
                "size": len(json.dumps(manifest).encode()),
                "platform": platform,
            }
        )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": entries,
    }
    index_digest = _put_manifest(registry, repo, "multi", index)
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
    if host_arch is None:
        pytest.skip(f"the index has no manifest for {os.uname().machine}")

    out = daemon.moor("pull", f"{base}:multi").stdout.decode()
    assert f"Digest: {index_digest}" in out
    info = inspect(daemon, f"{base}:multi")
    assert info["Architecture"] == host_arch
    assert info["RepoDigests"] == [f"{base}@{index_digest}"]

    other = "arm64" if host_arch == "amd64" else "amd64"
    daemon.moor("pull", "--platform", f"linux/{other}", f"{base}:multi")
    info = inspect(daemon, f"{base}:multi")
    assert info["Architecture"] == other
    wanted = next(e["digest"] for e in entries if e["platform"]["architecture"] == other)
    assert info["RepoDigests"] == [f"{base}@{wanted}"]

    result = daemon.moor("pull", "--platform", "linux/s390x", f"{base}:multi", check=False)
    assert result.returncode != 0
    assert "no manifest for platform linux/s390x" in result.stderr.decode()
    for name in (f"{base}:multi", f"{base}:seed"):
        daemon.moor("rmi", name)


# --- resumed and refused downloads ------------------------------------------------------


def _push_big(daemon: Daemon, registry: DistributionRegistry, big_image: str, repo: str) -> str:
    name = f"{registry.host}/{repo}:1"
    daemon.moor("tag", big_image, name)
    daemon.moor("push", name)
    daemon.moor("rmi", name)
    return name


def _forget_big(daemon: Daemon, big_image: str) -> tuple[str, str]:
    """Remove the big image locally (so its layer is collected); returns (id, layer)."""
    image_id = inspect(daemon, big_image)["Id"]
    layer = layer_of(daemon, big_image)
    daemon.moor("rmi", big_image)
    assert layer[7:] not in blobs(daemon)
    return image_id, layer


def test_a_cut_download_resumes_where_it_stopped(
    daemon: Daemon, registry: DistributionRegistry, proxy: Proxy, big_image: str
) -> None:
    _push_big(daemon, registry, big_image, "cut/random")
    image_id, layer = _forget_big(daemon, big_image)
    proxy.cut_at = BIG // 2

    name = f"{proxy.host}/cut/random:1"
    daemon.moor("pull", name)

    ranges = [h.get("Range", "") for m, path, h in proxy.requests if m == "GET" and layer in path]
    assert ranges[0] == ""
    assert ranges[1].startswith("bytes="), ranges
    assert int(ranges[1][6:-1]) > 0, ranges
    assert inspect(daemon, name)["Id"] == image_id
    daemon.moor("tag", name, big_image)
    daemon.moor("rmi", name)


def test_a_pull_killed_half_way_resumes_after_a_restart(
    daemon: Daemon, registry: DistributionRegistry, proxy: Proxy, big_image: str
) -> None:
    _push_big(daemon, registry, big_image, "killed/random")
    image_id, layer = _forget_big(daemon, big_image)
    proxy.hold_at = BIG // 2
    name = f"{proxy.host}/killed/random:1"
    ingest = daemon.root / "content" / "ingest"
    cli = subprocess.Popen(
        [sys.executable, "-m", "moorage.cli.main", "-H", daemon.host, "pull", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proxy.holding.wait(dr.WAIT)

        def partial() -> int:
            return sum(
                (p / "data").stat().st_size for p in ingest.iterdir() if (p / "data").exists()
            )

        wait_until(lambda: partial() > 0, what="the partial layer on disk")
        daemon.kill()  # SIGKILL, mid-download
        cli.wait(timeout=dr.WAIT)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    written = partial()
    daemon.start()
    proxy.hold_at = None
    daemon.moor("pull", name)

    resumed = [
        h.get("Range", "")
        for m, path, h in proxy.requests
        if m == "GET" and layer in path and h.get("Range")
    ]
    assert resumed, "the second pull asked for the whole layer again"
    assert int(resumed[-1].removeprefix("bytes=").rstrip("-")) == written
    assert inspect(daemon, name)["Id"] == image_id  # verified: diff_id and digest
    daemon.moor("tag", name, big_image)
    daemon.moor("rmi", name)


def test_content_that_does_not_match_its_digest_is_refused_and_not_stored(
    daemon: Daemon, registry: DistributionRegistry, proxy: Proxy, big_image: str
) -> None:
    _push_big(daemon, registry, big_image, "tampered/random")
    _, layer = _forget_big(daemon, big_image)
    before = blobs(daemon)
    proxy.tamper = True
    name = f"{proxy.host}/tampered/random:1"

    result = daemon.moor("pull", name, check=False)

    assert result.returncode != 0
    message = result.stderr.decode()
    assert f"{proxy.host}/tampered/random@{layer}" in message
    assert "does not match" in message or "digest is" in message
    new = blobs(daemon) - before
    assert layer[7:] not in new
    stored = {
        hashlib.sha256((daemon.root / "content/blobs/sha256" / h).read_bytes()).hexdigest()
        for h in new
    }
    assert stored == new  # whatever was stored is under its own digest (manifest, config)
    assert not list((daemon.root / "content" / "ingest").glob("*/data"))
    proxy.tamper = False
    daemon.moor("pull", name)  # the real bytes still come through
    daemon.moor("tag", name, big_image)
    daemon.moor("rmi", name)


# --- push: skipping and mounting ---------------------------------------------------------


def test_a_second_push_skips_every_blob(daemon: Daemon, proxy: Proxy) -> None:
    name = f"{proxy.host}/skip/busybox:1"
    daemon.moor("tag", "busybox", name)
    daemon.moor("push", name)
    first_uploads = proxy.count("POST", "/blobs/uploads/")
    assert first_uploads == 2  # the layer and the config

    out = daemon.moor("push", name).stdout.decode()

    assert "Layer already exists" in out
    assert proxy.count("POST", "/blobs/uploads/") == first_uploads
    assert proxy.count("HEAD", "/blobs/sha256:") >= 4
    daemon.moor("rmi", name)


def test_a_push_to_another_repository_mounts_instead_of_uploading(
    daemon: Daemon, proxy: Proxy
) -> None:
    first = f"{proxy.host}/mount-from/busybox:1"
    second = f"{proxy.host}/mount-to/busybox:1"
    daemon.moor("tag", "busybox", first)
    daemon.moor("push", first)
    blob_puts = proxy.count("PUT", "/blobs/uploads/")

    daemon.moor("tag", "busybox", second)
    out = daemon.moor("push", second).stdout.decode()

    assert "Mounted from mount-from/busybox" in out
    mounts = [p for m, p, _ in proxy.requests if m == "POST" and "mount=" in p]
    assert mounts
    assert all("from=mount-from%2Fbusybox" in p or "from=mount-from/busybox" in p for p in mounts)
    assert proxy.count("PUT", "/blobs/uploads/") == blob_puts  # no bytes sent again
    for name in (first, second):
        daemon.moor("rmi", name)


# --- basic auth (htpasswd) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    base = tmp_path_factory.mktemp("distribution-basic")
    r = DistributionRegistry(base, auth=dr.htpasswd_auth(base / "auth", {"bob": "builder"}))
    try:
        r.start()
        yield r
    finally:
        r.stop()


def test_basic_auth_login_push_pull_logout(
    daemon: Daemon, basic_registry: DistributionRegistry, credentials_dirs: Path
) -> None:
    host = basic_registry.host
    name = f"{host}/basic/busybox:1"
    daemon.moor("tag", "busybox", name)
    refused = daemon.moor("push", name, check=False)
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.decode().lower()

    wrong = daemon.moor(
        "login", "-u", "bob", "--password-stdin", host, input=b"nope\n", check=False
    )
    assert wrong.returncode != 0
    assert not (credentials_dirs / "config.json").exists()
    ok = daemon.moor("login", "-u", "bob", "--password-stdin", host, input=b"builder\n")
    assert "Login Succeeded" in ok.stdout.decode()
    config = credentials_dirs / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert host in json.loads(config.read_text())["auths"]

    daemon.moor("push", name)
    daemon.moor("rmi", name)
    daemon.moor("pull", name)
    assert inspect(daemon, name)["Id"] == inspect(daemon, "busybox")["Id"]
    daemon.moor("rmi", name)
    run = daemon.moor("run", "--rm", name, "echo", "pulled by run")  # with the credentials too
    assert run.stdout.decode().strip() == "pulled by run"
    assert "Unable to find image" in run.stderr.decode()

    out = daemon.moor("logout", host).stdout.decode()
    assert f"Removing login credentials for {host}" in out
    assert host not in json.loads(config.read_text())["auths"]
    daemon.moor("rmi", name)
    assert daemon.moor("pull", name, check=False).returncode != 0


# --- token auth ---------------------------------------------------------------------------


def _token_registry(
    base: Path, expire_first: bool = False
) -> tuple[TokenServer, DistributionRegistry]:
    tokens = TokenServer(base / "token", {"alice": "wonderland"}, expire_first=expire_first)
    tokens.start()
    registry = DistributionRegistry(base / "registry", auth=tokens.registry_auth())
    try:
        registry.start()
    except BaseException:
        tokens.stop()
        raise
    return tokens, registry


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[TokenServer, DistributionRegistry]]:
    tokens, registry = _token_registry(tmp_path)
    try:
        yield tokens, registry
    finally:
        registry.stop()
        tokens.stop()


def test_token_auth_login_push_pull(
    daemon: Daemon, token_registry: tuple[TokenServer, DistributionRegistry]
) -> None:
    tokens, registry = token_registry
    host = registry.host
    name = f"{host}/token/busybox:1"
    daemon.moor("tag", "busybox", name)
    anonymous = daemon.moor("push", name, check=False)
    assert anonymous.returncode != 0
    refused = anonymous.stderr.decode()
    assert "token" in refused
    assert "authentication required" in refused

    daemon.moor("login", "-u", "alice", "-p", "wonderland", host)
    tokens.fetches.clear()
    daemon.moor("push", name)
    push_fetches = [scopes for account, scopes in tokens.fetches]
    assert push_fetches == [("repository:token/busybox:pull,push",)]  # one token, cached

    daemon.moor("rmi", name)
    tokens.fetches.clear()
    daemon.moor("pull", name)
    assert [s for _, s in tokens.fetches] == [("repository:token/busybox:pull",)]
    assert all(account == "alice" for account, _ in tokens.fetches)
    assert inspect(daemon, name)["Id"] == inspect(daemon, "busybox")["Id"]
    daemon.moor("rmi", name)


def test_a_refused_token_is_fetched_again(daemon: Daemon, tmp_path: Path) -> None:
    tokens, registry = _token_registry(tmp_path, expire_first=True)
    try:
        name = f"{registry.host}/refresh/busybox:1"
        daemon.moor("login", "-u", "alice", "-p", "wonderland", registry.host)
        daemon.moor("tag", "busybox", name)
        tokens.fetches.clear()
        tokens.expire_first = True
        daemon.moor("push", name)
        assert len(tokens.fetches) >= 2  # the expired one, and its replacement
        daemon.moor("rmi", name)
    finally:
        registry.stop()
        tokens.stop()


# --- insecure registries -----------------------------------------------------------------


def _global_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (so not insecure by default)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return None


def test_a_plain_http_registry_needs_the_insecure_registry_flag(
    daemon: Daemon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    address = _global_address()
    if address is None:
        pytest.skip("this machine has no global IPv4 address")
    registry = DistributionRegistry(tmp_path_factory.mktemp("distribution-remote"), address=address)
    other: Daemon | None = None
    try:
        registry.start()
        name = f"{registry.host}/remote/busybox:1"
        daemon.moor("tag", "busybox", name)
        refused = daemon.moor("push", name, check=False)
        assert refused.returncode != 0
        assert "tls handshake failed" in refused.stderr.decode()
        daemon.moor("rmi", name)

        base = tmp_path_factory.mktemp("insecure") / "moor"
        base.mkdir()
        other = Daemon(base)
        other.extra_args = ("--insecure-registry", registry.host)
        other.start()
        other.moor("bootstrap", "busybox")
        other.moor("tag", "busybox", name)
        other.moor("push", name)
        other.moor("rmi", name)
        other.moor("pull", name)
    finally:
        if other is not None:
            other.cleanup()
        registry.stop()


# --- the client's API straight against distribution ------------------------------------


def test_chunked_uploads_and_ranged_downloads_with_distribution(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    """Distribution takes PATCH chunks with Content-Range and serves Range requests."""
    import asyncio
    import gzip

    from moorage.oci import mediatypes as mt
    from moorage.oci.descriptor import Descriptor
    from moorage.oci.digest import Digest
    from moorage.registry.client.client import RegistryClient
    from moorage.store.content import ContentStore

    source = ContentStore(tmp_path / "source")
    target = ContentStore(tmp_path / "target")
    try:
        layer = gzip.compress(os.urandom(3 << 20), compresslevel=1)
        layer_digest, _ = source.write_blob(layer)
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        config_digest, _ = source.write_blob(config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {
                    "mediaType": mt.OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": mt.OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}
                ],
            }
        ).encode()
        digest, size = source.write_blob(manifest)
        root = Descriptor(mt.OCI_MANIFEST, Digest(digest), size)
        name = f"{registry.host}/chunked/app:1"

        async def transfer() -> None:
            async with RegistryClient(chunk_size=1 << 20) as client:
                await client.push(source, name, root)
            partial = target.writer(f"pull-{layer_digest}", expected=layer_digest, total=len(layer))
            partial.write(layer[: len(layer) // 2])
            partial.close()
            async with RegistryClient() as client:
                result = await client.pull(target, name)
            assert result.manifest.digest == digest

        asyncio.run(transfer())
        with target.reader(layer_digest) as f:
            assert f.read() == layer
    finally:
        source.close()
        target.close()
