"""Bad and hostile archives through `moor load` and `moor import`: a clear error,
nothing written outside the store, and the store's images unchanged."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import Daemon

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("bad") / "moor"
    base.mkdir()
    d = Daemon(base)
    try:
        d.start()
        d.moor("bootstrap", "busybox")
        yield d
    finally:
        d.cleanup()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _layer(entries: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries(tar)
    return buf.getvalue()


def _docker_archive(path: Path, layer: bytes, *, config_diff_id: str | None = None) -> Path:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [config_diff_id or f"sha256:{_sha(layer)}"]},
        "config": {"Cmd": ["sh"]},
    }
    raw_config = json.dumps(config).encode()
    manifest = [
        {
            "Config": f"{_sha(raw_config)}.json",
            "RepoTags": ["hostile:latest"],
            "Layers": ["layer/layer.tar"],
        }
    ]
    with tarfile.open(path, "w") as tar:
        _add(tar, f"{_sha(raw_config)}.json", raw_config)
        _add(tar, "layer/layer.tar", layer)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def _symlink_escape(tar: tarfile.TarFile) -> None:
    link = tarfile.TarInfo("evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/"
    tar.addfile(link)
    _add(tar, "evil/moorage-test-escape-marker", b"escaped")


def _dotdot(tar: tarfile.TarFile) -> None:
    _add(tar, "../../../../moorage-test-escape-marker", b"escaped")


def _hardlink_out(tar: tarfile.TarFile) -> None:
    link = tarfile.TarInfo("passwd-link")
    link.type, link.linkname = tarfile.LNKTYPE, "../../../../etc/hostname"
    tar.addfile(link)


HOSTILE = {"symlink-escape": _symlink_escape, "dotdot": _dotdot, "hardlink-out": _hardlink_out}


def _images(d: Daemon) -> list[str]:
    return sorted(d.moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split())


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_layer_is_refused(daemon: Daemon, tmp_path: Path, name: str) -> None:
    marker = Path("/moorage-test-escape-marker")
    before = _images(daemon)
    archive = _docker_archive(tmp_path / "a.tar", _layer(HOSTILE[name]))
    result = daemon.moor("load", "-i", str(archive), check=False)
    assert not marker.exists()
    if result.returncode == 0:
        # Refusing the entry is not the only safe outcome: a tar-like clamp into the
        # root is too. Either way nothing is outside, and the image is whole.
        assert "hostile:latest" in _images(daemon)
        daemon.moor("rmi", "hostile")
    else:
        assert b"load" in result.stderr or b"layer" in result.stderr
    assert _images(daemon) == before


def test_layer_not_matching_its_diff_id_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    layer = _layer(lambda tar: _add(tar, "a", b"a"))
    archive = _docker_archive(tmp_path / "a.tar", layer, config_diff_id="sha256:" + "0" * 64)
    result = daemon.moor("load", "-i", str(archive), check=False)
    assert result.returncode != 0
    assert b"diff_id" in result.stderr
    assert "hostile:latest" not in _images(daemon)


def test_oci_blob_whose_content_lies_about_its_digest(daemon: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "lie.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, f"blobs/sha256/{'1' * 64}", b"not what the name says")
        _add(tar, "index.json", b'{"schemaVersion":2,"manifests":[]}')
    result = daemon.moor("load", "-i", str(path), check=False)
    assert result.returncode != 0
    assert b"digest mismatch" in result.stderr or b"mismatch" in result.stderr


def test_manifest_referencing_missing_blobs(daemon: Daemon, tmp_path: Path) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "2" * 64,
            "size": 10,
        },
        "layers": [],
    }
    raw = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{_sha(raw)}",
                "size": len(raw),
                "annotations": {"io.containerd.image.name": "docker.io/library/missing:1"},
            }
        ],
    }
    path = tmp_path / "missing.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, f"blobs/sha256/{_sha(raw)}", raw)
        _add(tar, "index.json", json.dumps(index).encode())
    result = daemon.moor("load", "-i", str(path), check=False)
    assert result.returncode != 0
    assert b"missing" in result.stderr
    assert "missing:1" not in _images(daemon)


@pytest.mark.parametrize(
    ("label", "content"),
    [
        ("not a tar", b"hello, this is not a tar file\n" * 200),
        ("invalid manifest.json", None),
        ("truncated", b"truncated"),
    ],
)
def test_broken_archives(daemon: Daemon, tmp_path: Path, label: str, content: bytes | None) -> None:
    path = tmp_path / "broken.tar"
    if label == "invalid manifest.json":
        with tarfile.open(path, "w") as tar:
            _add(tar, "manifest.json", b"[{not json")
    elif label == "truncated":
        good = tmp_path / "good.tar"
        daemon.moor("save", "-o", str(good), "busybox")
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        path.write_bytes(content or b"")
    before = _images(daemon)
    result = daemon.moor("load", "-i", str(path), check=False)
    assert result.returncode != 0, label
    assert result.stderr.startswith(b"moor: "), result.stderr
    assert b"Traceback" not in result.stderr
    assert _images(daemon) == before
