"""skopeo reads what `moor save` writes, and `moor load` reads what skopeo writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import Daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("skopeo") / "moor"
    base.mkdir()
    d = Daemon(base)
    try:
        d.start()
        d.moor("bootstrap", "busybox")
        yield d
    finally:
        d.cleanup()


def skopeo(*args: str) -> Any:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else result.stdout


def moor_config(d: Daemon, name: str) -> tuple[str, list[str]]:
    info = json.loads(d.moor("image", "inspect", name).stdout)[0]
    return info["Id"], info["RootFS"]["Layers"]


def test_skopeo_reads_a_docker_archive(daemon: Daemon, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    daemon.moor("save", "-o", str(archive), "busybox")
    image_id, layers = moor_config(daemon, "busybox")
    config = skopeo("inspect", "--config", f"docker-archive:{archive}")
    assert config["rootfs"]["diff_ids"] == layers
    raw_config = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", f"docker-archive:{archive}"],
        capture_output=True,
        check=True,
    ).stdout
    import hashlib

    assert "sha256:" + hashlib.sha256(raw_config).hexdigest() == image_id


def test_skopeo_reads_an_oci_layout(daemon: Daemon, tmp_path: Path) -> None:
    archive = tmp_path / "busybox-oci.tar"
    daemon.moor("save", "--format", "oci", "-o", str(archive), "busybox")
    image_id, layers = moor_config(daemon, "busybox")
    inspected = skopeo("inspect", f"oci-archive:{archive}")
    assert inspected["Layers"]  # compressed layer digests, as stored
    config = skopeo("inspect", "--config", f"oci-archive:{archive}")
    assert config["rootfs"]["diff_ids"] == layers


@pytest.mark.parametrize("target", ["oci-archive", "docker-archive"])
def test_moor_loads_what_skopeo_copies(daemon: Daemon, tmp_path: Path, target: str) -> None:
    source = tmp_path / "source.tar"
    daemon.moor("save", "-o", str(source), "busybox")
    copied = tmp_path / f"copied-{target}.tar"
    skopeo("copy", f"docker-archive:{source}", f"{target}:{copied}:copied/busybox:skopeo")
    before = moor_config(daemon, "busybox")
    daemon.moor("load", "-i", str(copied))
    after = moor_config(daemon, "copied/busybox:skopeo")
    assert after == before  # same config digest, same diff_ids
    daemon.moor("rmi", "copied/busybox:skopeo")


def test_moor_loads_zstd_layers(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "source.tar"
    daemon.moor("save", "-o", str(source), "busybox")
    copied = tmp_path / "zstd.tar"
    skopeo(
        "copy",
        "--dest-compress-format",
        "zstd",
        f"docker-archive:{source}",
        f"oci-archive:{copied}:zstd/busybox:1",
    )
    manifest = skopeo("inspect", "--raw", f"oci-archive:{copied}")
    if isinstance(manifest, str):
        manifest = json.loads(manifest)
    assert manifest["layers"][0]["mediaType"].endswith("+zstd")
    daemon.moor("load", "-i", str(copied))
    assert moor_config(daemon, "zstd/busybox:1")[1] == moor_config(daemon, "busybox")[1]
    daemon.moor("rmi", "zstd/busybox:1")


def test_skopeo_oci_directories_both_ways(daemon: Daemon, tmp_path: Path) -> None:
    """The `oci:` transport is a directory: unpack our tar to it, and tar its copy to load."""
    import tarfile

    archive = tmp_path / "busybox-oci.tar"
    daemon.moor("save", "--format", "oci", "-o", str(archive), "busybox")
    layout = tmp_path / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    _, layers = moor_config(daemon, "busybox")
    config = skopeo("inspect", "--config", f"oci:{layout}:latest")
    assert config["rootfs"]["diff_ids"] == layers
    copied = tmp_path / "copied"
    skopeo("copy", f"oci:{layout}:latest", f"oci:{copied}:dir/busybox:2")
    repacked = tmp_path / "repacked.tar"
    with tarfile.open(repacked, "w") as tar:
        for entry in sorted(copied.iterdir()):
            tar.add(entry, arcname=entry.name)
    daemon.moor("load", "-i", str(repacked))
    assert moor_config(daemon, "dir/busybox:2")[1] == layers
    daemon.moor("rmi", "dir/busybox:2")
