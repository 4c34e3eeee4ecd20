"""kill -9 of the daemon at random points during `load` and `import`.

After every kill: the store opens, every blob visible under its digest has that
digest, no image points at a missing blob, and garbage collection removes what the
killed operation left (partial ingests, blobs no image holds).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon import Daemon
from moorage.engine.images import ImageService, referenced_digests_of
from moorage.oci.image import parse_any
from moorage.store.content import ContentStore
from moorage.store.metadata import MetadataDB

pytestmark = pytest.mark.root

ROUNDS = 6  # per operation


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "moor")
    d.base.mkdir()
    try:
        yield d
    finally:
        d.cleanup()


def _random_rootfs(path: Path, size: int) -> Path:
    """Incompressible data, so that the work takes long enough to be interrupted."""
    rng = random.Random(1234)
    with tarfile.open(path, "w") as tar:
        for i in range(6):
            data = rng.randbytes(size // 6)
            info = tarfile.TarInfo(f"data/blob{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _verify_store(root: Path) -> None:
    blobs = root / "content" / "blobs" / "sha256"
    if blobs.is_dir():
        for blob in blobs.iterdir():
            h = hashlib.sha256()
            with open(blob, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            assert h.hexdigest() == blob.name, f"blob {blob.name} does not match its digest"
    db = MetadataDB(str(root / "metadata.db"))
    content = ContentStore(str(root), db=db)
    try:
        assert db.integrity_check() in (["ok"], [])
        for image in db.list_images():
            assert content.exists(image.digest), f"{image.name} points at a missing manifest"
            doc = parse_any(content.read_blob(image.digest), image.media_type)
            for child in referenced_digests_of(image.media_type, content.read_blob(image.digest)):
                assert content.exists(child), f"{image.name}: missing {child}"
            assert doc is not None
    finally:
        db.close()


def _collect(root: Path) -> None:
    """The daemon's collector, with partial ingests of any age counted as garbage."""
    service = ImageService(str(root))
    try:
        service.collect_garbage(ingest_max_age=timedelta(0))
        assert service.content.ingests() == []
    finally:
        service.close()


def _interrupted(d: Daemon, args: list[str], delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moorage.cli.main", "-H", d.host, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)  # the kill point is the experiment's variable
        d.kill()
    finally:
        proc.wait(timeout=60)


@pytest.mark.parametrize("operation", ["load", "import"])
def test_kill_9_during_an_operation_leaves_a_consistent_store(
    daemon: Daemon, tmp_path: Path, operation: str
) -> None:
    rootfs = _random_rootfs(tmp_path / "rootfs.tar", 24 * 1024 * 1024)
    archive = tmp_path / "image.tar"
    daemon.start()
    started = time.monotonic()
    daemon.moor("import", str(rootfs), "payload:1")
    full_time = time.monotonic() - started
    daemon.moor("save", "-o", str(archive), "payload:1")
    daemon.moor("rmi", "payload:1")
    rng = random.Random(os.getpid())
    for _ in range(ROUNDS):
        delay = rng.uniform(0.0, full_time * 1.2)
        if operation == "load":
            _interrupted(daemon, ["load", "-i", str(archive)], delay)
        else:
            _interrupted(daemon, ["import", str(rootfs), "payload:2"], delay)
        _verify_store(daemon.root)
        daemon.start()  # the store opens
        daemon.moor("image", "prune", "-a", "-f")
        daemon.stop()
        _collect(daemon.root)
        _verify_store(daemon.root)
        blobs = daemon.root / "content" / "blobs" / "sha256"
        assert not blobs.is_dir() or not any(blobs.iterdir()), "garbage left after collection"
        daemon.start()
    daemon.moor("load", "-i", str(archive))
    assert daemon.moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == [
        b"payload:1"
    ]
