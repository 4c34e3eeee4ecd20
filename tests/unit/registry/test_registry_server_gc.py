"""``moor registry gc`` over a real store: what it keeps, what it sweeps, and that a push
holding the write fence is never undone by a sweep."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from moorage.registry.server.gc import GCReport, collect
from moorage.registry.server.metadata import ManifestRecord
from moorage.registry.server.storage import Storage
from moorage.registry.server.uploads import upload_ref
from registry_servers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256

NOW = timedelta(0)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "root")
    try:
        yield store
    finally:
        store.close()


def blob(storage: Storage, repo: str, data: bytes) -> str:
    digest, _ = storage.content.write_blob(data)
    storage.db.link_blob(repo, digest)
    return digest


def manifest(
    storage: Storage, repo: str, tag: str, *layers: bytes, subject: bytes | None = None
) -> bytes:
    config = json.dumps({"os": "linux", "tag": tag}).encode()
    blob(storage, repo, config)
    for layer in layers:
        blob(storage, repo, layer)
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)} for x in layers],
    }
    if subject is not None:
        document["subject"] = {
            "mediaType": OCI_MANIFEST,
            "digest": sha256(subject),
            "size": len(subject),
        }
    raw = json.dumps(document).encode()
    storage.put_manifest(repo, tag, raw, OCI_MANIFEST)
    return raw


def run(storage: Storage, *, grace: timedelta = NOW, dry_run: bool = False) -> GCReport:
    return collect(storage.root, grace=grace, dry_run=dry_run)


def test_blobs_a_manifest_names_stay_and_the_rest_go(storage: Storage) -> None:
    raw = manifest(storage, "app", "v1", b"layer one", b"layer two")
    orphan = blob(storage, "app", b"pushed, never referenced")
    report = run(storage)
    assert report.removed_blobs == (orphan,)
    assert report.bytes_freed == len(b"pushed, never referenced")
    assert not storage.content.exists(orphan)
    assert not storage.db.has_blob("app", orphan)
    for digest in (sha256(raw), sha256(b"layer one"), sha256(b"layer two")):
        assert storage.content.exists(digest)
    assert storage.db.has_blob("app", sha256(b"layer one"))


def test_a_deleted_manifest_frees_what_only_it_used(storage: Storage) -> None:
    gone = manifest(storage, "app", "old", b"only old", b"shared")
    kept = manifest(storage, "other", "new", b"shared")
    storage.db.delete_manifest("app", sha256(gone))
    removed = set(run(storage).removed_blobs)
    assert {sha256(gone), sha256(b"only old")} <= removed
    assert storage.content.exists(sha256(b"shared"))
    assert storage.content.exists(sha256(kept))


def test_an_index_keeps_its_manifests_and_theirs(storage: Storage) -> None:
    child = manifest(storage, "app", "child", b"child layer")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}],
        }
    ).encode()
    storage.put_manifest("app", "multi", index, OCI_INDEX)
    # The child is no longer a manifest of the repository, only named by the index.
    storage.db.delete_manifest("app", sha256(child))
    assert run(storage).removed_blobs == ()
    assert storage.content.exists(sha256(b"child layer"))


def test_a_referrer_keeps_its_subject(storage: Storage) -> None:
    subject = manifest(storage, "app", "image", b"image layer")
    manifest(storage, "app", "sbom", b"sbom", subject=subject)
    storage.db.delete_manifest("app", sha256(subject))
    assert run(storage).removed_blobs == ()


def test_recent_unreferenced_blobs_survive_the_grace_period(storage: Storage) -> None:
    layer = blob(storage, "app", b"uploaded before its manifest")
    assert run(storage, grace=timedelta(hours=1)).removed_blobs == ()
    assert storage.content.exists(layer)


def test_a_dry_run_deletes_nothing(storage: Storage) -> None:
    orphan = blob(storage, "app", b"orphan")
    report = run(storage, dry_run=True)
    assert report.removed_blobs == (orphan,)
    assert storage.content.exists(orphan)
    assert storage.db.has_blob("app", orphan)


def test_an_upload_in_progress_survives_and_a_stale_one_goes(storage: Storage) -> None:
    storage.db.add_upload("11111111-1111-4111-8111-111111111111", "app")
    storage.db.add_upload("22222222-2222-4222-8222-222222222222", "app")
    live = storage.content.writer(upload_ref("11111111-1111-4111-8111-111111111111"))
    live.write(b"half of a layer")
    stale = storage.content.writer(upload_ref("22222222-2222-4222-8222-222222222222"))
    stale.write(b"abandoned two days ago")
    stale.close()
    two_days_ago = time.time() - 2 * 86400
    for status_dir in (storage.content.path / "ingest").iterdir():
        data = status_dir / "data"
        if data.read_bytes() == b"abandoned two days ago":
            os.utime(data, (two_days_ago, two_days_ago))
    report = run(storage)
    assert report.removed_uploads == ("22222222-2222-4222-8222-222222222222",)
    assert [u.id for u in storage.db.uploads()] == ["11111111-1111-4111-8111-111111111111"]
    live.write(b" and the rest")
    assert live.commit() == sha256(b"half of a layer and the rest")


def test_a_live_writer_keeps_even_an_old_upload(storage: Storage) -> None:
    storage.db.add_upload("33333333-3333-4333-8333-333333333333", "app")
    writer = storage.content.writer(upload_ref("33333333-3333-4333-8333-333333333333"))
    writer.write(b"slow client")
    old = time.time() - 3 * 86400
    for status_dir in (storage.content.path / "ingest").iterdir():
        os.utime(status_dir / "data", (old, old))
    assert run(storage).removed_uploads == ()
    writer.close()


def _waiting_for_lock(path: Path) -> bool:
    """Whether some process waits for a lock on ``path`` (a "->" line in /proc/locks)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        return any("->" in line and f":{inode} " in line for line in locks)


def test_the_sweep_waits_for_a_push_and_honours_what_it_recorded(storage: Storage) -> None:
    """A push checks a blob exists, then records the manifest naming it; a sweep in
    between would leave the manifest pointing at nothing. The push holds the write
    fence across both, so the sweep waits and then sees the manifest."""
    config = blob(storage, "app", b'{"os":"linux"}')
    layer = blob(storage, "app", b"old layer, unreferenced until now")
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 14},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 33}],
        }
    ).encode()
    result: list[GCReport] = []
    with storage.write_fence():
        collector = threading.Thread(target=lambda: result.append(run(storage)))
        collector.start()
        while not _waiting_for_lock(storage.root / "registry.lock"):
            assert collector.is_alive()
            time.sleep(0.005)
        # The collector is at its sweep, blocked; the push records its manifest now.
        storage.content.write_blob(raw)
        storage.db.put_manifest("app", ManifestRecord(sha256(raw), OCI_MANIFEST, len(raw)), "v1")
    collector.join(30)
    assert len(result) == 1
    assert result[0].removed_blobs == ()
    assert storage.content.exists(layer)
