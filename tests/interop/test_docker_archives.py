"""dockerd accepts what `moor save` writes, and `moor load` accepts what `docker save` writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import dockerd
from daemon import Daemon
from dockerd import DockerDaemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not dockerd.available(), reason="dockerd (docker.io) is not installed"),
]


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    d = DockerDaemon(tmp_path_factory.mktemp("dockerd"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def moor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("moor-docker") / "moor"
    base.mkdir()
    d = Daemon(base)
    try:
        d.start()
        d.moor("bootstrap", "busybox")
        yield d
    finally:
        d.cleanup()


def _moor_image(d: Daemon, name: str) -> tuple[str, list[str]]:
    info = json.loads(d.moor("image", "inspect", name).stdout)[0]
    return info["Id"], info["RootFS"]["Layers"]


def test_docker_loads_moor_save_output(moor: Daemon, docker: DockerDaemon, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    moor.moor("save", "-o", str(archive), "busybox")
    out = docker.docker("load", "-i", str(archive)).stdout.decode()
    assert "busybox:latest" in out
    info = json.loads(docker.docker("image", "inspect", "busybox:latest").stdout)[0]
    image_id, layers = _moor_image(moor, "busybox")
    assert info["Id"] == image_id
    assert info["RootFS"]["Layers"] == layers
    assert info["Config"]["Cmd"] == ["sh"]


def test_moor_loads_docker_save_output(moor: Daemon, docker: DockerDaemon, tmp_path: Path) -> None:
    source = tmp_path / "source.tar"
    moor.moor("save", "-o", str(source), "busybox")
    docker.docker("load", "-i", str(source))
    docker.docker("tag", "busybox:latest", "from-docker/busybox:1")
    saved = tmp_path / "docker-saved.tar"
    docker.docker("save", "-o", str(saved), "from-docker/busybox:1")
    moor.moor("load", "-i", str(saved))
    assert _moor_image(moor, "from-docker/busybox:1") == _moor_image(moor, "busybox")
    moor.moor("rmi", "from-docker/busybox:1")
