"""Images through `moor` and the daemon: bootstrap, import, list, inspect, tag, rmi,
prune, history, save and load in both formats, disk usage."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import Daemon, running_daemon

pytestmark = pytest.mark.root


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path / "moor") as d:
        yield d


@pytest.fixture
def other_daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path / "other") as d:
        yield d


def _rootfs_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _inspect(d: Daemon, name: str) -> dict[str, object]:
    data = json.loads(d.moor("image", "inspect", name).stdout)
    assert isinstance(data, list)
    return data[0]  # type: ignore[no-any-return]


def test_bootstrap_busybox_gives_an_ordinary_image(daemon: Daemon) -> None:
    daemon.moor("bootstrap", "busybox")
    listed = daemon.moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    assert listed.split() == ["busybox:latest"]
    info = _inspect(daemon, "busybox")
    assert info["Config"]["Cmd"] == ["sh"]  # type: ignore[index]
    assert len(info["RootFS"]["Layers"]) == 1  # type: ignore[index]
    assert info["RepoTags"] == ["busybox:latest"]
    # the same image under its full name, by repo digest and by id prefix
    assert _inspect(daemon, "docker.io/library/busybox:latest")["Id"] == info["Id"]
    repo_digest = info["RepoDigests"][0]  # type: ignore[index]
    assert repo_digest.startswith("busybox@sha256:")
    assert _inspect(daemon, repo_digest)["Id"] == info["Id"]
    assert _inspect(daemon, str(info["Id"])[7:19])["Id"] == info["Id"]


def test_import_with_changes_history_and_tags(daemon: Daemon, tmp_path: Path) -> None:
    tar = _rootfs_tar(tmp_path / "rootfs.tar", {"hello.txt": b"hello\n", "etc/x": b"x"})
    out = daemon.moor(
        "import",
        "-c",
        "ENV A=b",
        "-c",
        'CMD ["/hello"]',
        "-m",
        "first",
        str(tar),
        "example.com:5000/team/app:1.0",
    ).stdout.decode()
    image_id = out.strip().splitlines()[-1]
    assert image_id.startswith("sha256:")
    info = _inspect(daemon, "example.com:5000/team/app:1.0")
    assert info["Id"] == image_id
    assert info["Config"]["Env"] == ["A=b"]  # type: ignore[index]
    assert info["Config"]["Cmd"] == ["/hello"]  # type: ignore[index]
    history = (
        daemon.moor(
            "history", "--format", "{{.CreatedBy}}|{{.Comment}}", "example.com:5000/team/app:1.0"
        )
        .stdout.decode()
        .split("\n")
    )
    assert history[0] == "moor import|first"
    daemon.moor("tag", "example.com:5000/team/app:1.0", "app:latest")
    tags = sorted(daemon.moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())
    assert tags == [b"app:latest", b"example.com:5000/team/app:1.0"]
    removed = daemon.moor("rmi", "app").stdout.decode()
    assert removed.strip() == "Untagged: app:latest"
    removed = daemon.moor("rmi", "example.com:5000/team/app:1.0").stdout.decode()
    assert f"Deleted: {image_id}" in removed
    assert daemon.moor("images", "-q").stdout == b""


def test_errors_name_the_input(daemon: Daemon, tmp_path: Path) -> None:
    missing = daemon.moor("image", "inspect", "nosuch:tag", check=False)
    assert missing.returncode != 0
    assert b"No such image: nosuch:tag" in missing.stderr
    bad = daemon.moor("tag", "nosuch", "x", check=False)
    assert bad.returncode != 0
    not_tar = tmp_path / "not.tar"
    not_tar.write_bytes(b"this is not a tar archive" * 100)
    result = daemon.moor("import", str(not_tar), "broken", check=False)
    assert result.returncode != 0
    assert b"tar" in result.stderr
    assert daemon.moor("images", "-q").stdout == b""


def test_docker_archive_round_trip(daemon: Daemon, other_daemon: Daemon, tmp_path: Path) -> None:
    daemon.moor("bootstrap", "busybox")
    archive = tmp_path / "busybox.tar"
    daemon.moor("save", "-o", str(archive), "busybox")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "index.json", "oci-layout"} <= set(names)
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    out = other_daemon.moor("load", "-i", str(archive)).stdout.decode()
    assert "Loaded image: busybox:latest" in out
    before, after = _inspect(daemon, "busybox"), _inspect(other_daemon, "busybox")
    assert after["Id"] == before["Id"]
    assert after["RootFS"] == before["RootFS"]


def test_oci_layout_round_trip_keeps_the_manifest_digest(
    daemon: Daemon, other_daemon: Daemon, tmp_path: Path
) -> None:
    daemon.moor("bootstrap", "busybox")
    archive = tmp_path / "busybox-oci.tar"
    daemon.moor("save", "--format", "oci", "-o", str(archive), "busybox")
    other_daemon.moor("load", "-i", str(archive))
    before, after = _inspect(daemon, "busybox"), _inspect(other_daemon, "busybox")
    assert after["Descriptor"] == before["Descriptor"]
    assert after["Id"] == before["Id"]


def test_prune_and_disk_usage(daemon: Daemon, tmp_path: Path) -> None:
    tar = _rootfs_tar(tmp_path / "r.tar", {"a": b"a" * 10000})
    daemon.moor("import", str(tar))  # no name: a dangling image
    daemon.moor("import", str(tar), "kept:1")
    # Two imports are two images (their configs differ by creation time).
    assert len(daemon.moor("images", "-q").stdout.split()) == 2
    df = daemon.moor("system", "df").stdout.decode()
    assert df.splitlines()[0].split()[:2] == ["TYPE", "TOTAL"]
    pruned = daemon.moor("image", "prune", "-f").stdout.decode()
    assert "Total reclaimed space" in pruned
    assert daemon.moor("images", "--format", "{{.Repository}}").stdout.split() == [b"kept"]
    assert daemon.moor("images", "-a", "-f", "dangling=true", "-q").stdout == b""
    daemon.moor("image", "prune", "-a", "-f")
    assert daemon.moor("images", "-q").stdout == b""


def test_a_layer_may_hardlink_to_a_file_of_a_lower_layer(daemon: Daemon, tmp_path: Path) -> None:
    def layer(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for info in entries:
                payload = data.get(info.name)
                tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
        return buf.getvalue()

    orig = tarfile.TarInfo("data/orig")
    orig.size = 5
    link = tarfile.TarInfo("data/link")
    link.type, link.linkname = tarfile.LNKTYPE, "data/orig"
    lower = layer([orig], {"data/orig": b"hello"})
    upper = layer([link], {})
    import hashlib

    diff_ids = [f"sha256:{hashlib.sha256(t).hexdigest()}" for t in (lower, upper)]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        for name, payload in (("l0.tar", lower), ("l1.tar", upper), ("config.json", config)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        manifest = json.dumps(
            [{"Config": "config.json", "RepoTags": ["links:1"], "Layers": ["l0.tar", "l1.tar"]}]
        ).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    daemon.moor("load", "-i", str(archive))
    found = [p for p in (daemon.root / "snapshots").glob("*/fs/data/link")]
    assert found, "the upper layer's link was not extracted"
    assert found[0].read_bytes() == b"hello"


@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed")
def test_bootstrap_debian_with_extra_packages(daemon: Daemon) -> None:
    daemon.moor("bootstrap", "debian:bookworm", "--include", "ca-certificates")
    info = _inspect(daemon, "debian:bookworm")
    assert info["Config"]["Cmd"] == ["bash"]  # type: ignore[index]
    roots = [p.parents[2] for p in (daemon.root / "snapshots").glob("*/fs/usr/bin/bash")]
    assert roots, "bash is not in the image"
    assert (roots[0] / "etc" / "ssl" / "certs").is_dir()  # --include was honoured
