"""The docker CLI drives `moor daemon`'s registry routes: `docker pull`, `docker push` and
`docker login` against the CNCF distribution registry, through the moor daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import distribution_registry as dr
from daemon import Daemon, running_daemon
from distribution_registry import DistributionRegistry


def _docker_clients() -> list[str]:
    """Every docker CLI on the machine (Debian's and a newer one, when both are there)."""
    found: dict[str, str] = {}
    for candidate in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker") or ""):
        if candidate and os.access(candidate, os.X_OK):
            found.setdefault(os.path.realpath(candidate), candidate)
    return sorted(found.values())


CLIENTS = _docker_clients()

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not dr.available(), reason="docker-registry (distribution) is not installed"
    ),
    pytest.mark.skipif(not CLIENTS, reason="no docker CLI is installed"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("registry-docker-cli") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    base = tmp_path_factory.mktemp("distribution-docker-cli")
    r = DistributionRegistry(base, auth=dr.htpasswd_auth(base / "auth", {"carol": "s3cret"}))
    try:
        r.start()
        yield r
    finally:
        r.stop()


def docker(
    client: str, d: Daemon, config: Path, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_HOST": d.host}
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run(
        [client, *args], env=env, input=input, capture_output=True, timeout=300, check=False
    )


@pytest.mark.parametrize("client", CLIENTS)
def test_docker_login_push_pull_through_moor(
    client: str, daemon: Daemon, registry: DistributionRegistry, tmp_path: Path
) -> None:
    config = tmp_path / "docker-config"
    tag = "new" if client.startswith("/usr/local") else "debian"
    name = f"{registry.host}/docker-cli/busybox:{tag}"
    daemon.moor("tag", "busybox", name)

    refused = docker(client, daemon, config, "push", name)
    assert refused.returncode != 0
    assert "unauthorized" in (refused.stdout + refused.stderr).decode().lower()

    wrong = docker(client, daemon, config, "login", "-u", "carol", "--password-stdin",
                   registry.host, input=b"wrong\n")  # fmt: skip
    assert wrong.returncode != 0
    login = docker(client, daemon, config, "login", "-u", "carol", "--password-stdin",
                   registry.host, input=b"s3cret\n")  # fmt: skip
    assert login.returncode == 0, login.stderr.decode()
    assert "Login Succeeded" in login.stdout.decode()

    pushed = docker(client, daemon, config, "push", name)
    assert pushed.returncode == 0, pushed.stderr.decode()
    out = pushed.stdout.decode()
    assert f"{tag}: digest: sha256:" in out
    digest = out.split("digest: ")[1].split()[0]

    daemon.moor("rmi", name)
    pulled = docker(client, daemon, config, "pull", name)
    assert pulled.returncode == 0, pulled.stderr.decode()
    assert f"Digest: {digest}" in pulled.stdout.decode()
    assert f"Status: Downloaded newer image for {name}" in pulled.stdout.decode()
    info = json.loads(daemon.moor("image", "inspect", name).stdout)[0]
    assert f"{registry.host}/docker-cli/busybox@{digest}" in info["RepoDigests"]

    again = docker(client, daemon, config, "pull", name)
    assert f"Image is up to date for {name}" in again.stdout.decode()
    missing = docker(client, daemon, config, "pull", f"{registry.host}/docker-cli/none:1")
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr.decode()
    daemon.moor("rmi", name)
