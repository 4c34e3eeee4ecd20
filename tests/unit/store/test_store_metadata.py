"""The metadata database: records, transactions, schema, and sharing between processes."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moorage.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from moorage.store import metadata
from moorage.store.leases import Leases
from moorage.store.metadata import (
    SCHEMA_VERSION,
    GCRoot,
    ImageRecord,
    LeaseResource,
    MetadataDB,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
T0 = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[MetadataDB]:
    d = MetadataDB(tmp_path / "metadata.db")
    yield d
    d.close()


def image(name: str = "busybox:latest", digest: str = D1, when: datetime = T0) -> ImageRecord:
    return ImageRecord(name, "application/vnd.oci.image.manifest.v1+json", digest, 42, when, when)


def test_image_crud(db: MetadataDB) -> None:
    stored = db.put_image(image(when=T0)._replace(labels={"k": "v"}))
    assert stored == image(when=T0)._replace(labels={"k": "v"})
    assert db.get_image("busybox:latest") == stored
    db.put_image(image("alpine:3", D2))
    assert [i.name for i in db.list_images()] == ["alpine:3", "busybox:latest"]
    assert [i.name for i in db.images_by_digest(D1)] == ["busybox:latest"]

    db.delete_image("busybox:latest")
    with pytest.raises(NotFound, match="no such image: busybox:latest"):
        db.get_image("busybox:latest")
    with pytest.raises(NotFound, match="no such image: busybox:latest"):
        db.delete_image("busybox:latest")


def test_upsert_keeps_created_at(db: MetadataDB) -> None:
    db.put_image(image(digest=D1, when=T0))
    updated = db.put_image(image(digest=D2, when=T1))
    assert (updated.digest, updated.created_at, updated.updated_at) == (D2, T0, T1)


def test_invalid_image_is_refused(db: MetadataDB) -> None:
    with pytest.raises(InvalidArgument, match="image x: invalid digest"):
        db.put_image(image("x", digest="sha256:short"))
    with pytest.raises(InvalidArgument, match="timestamp must be timezone-aware"):
        db.put_image(image(when=datetime(2024, 1, 1)))


def test_wal_mode_and_pragmas(db: MetadataDB, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "metadata.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    with db._lease() as own:
        assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert own.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert db.schema_version() == SCHEMA_VERSION
    assert db.integrity_check() == []


def test_reopening_keeps_data_and_version(tmp_path: Path) -> None:
    with MetadataDB(tmp_path / "m.db") as first:
        first.put_image(image())
    with MetadataDB(tmp_path / "m.db") as second:
        assert second.get_image("busybox:latest").digest == D1
        assert second.schema_version() == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with MetadataDB(tmp_path / "m.db"):
        pass
    conn = sqlite3.connect(tmp_path / "m.db")
    with conn:
        conn.execute("UPDATE schema_version SET version = 999")
    conn.close()
    with pytest.raises(FailedPrecondition, match="schema version 999 is newer"):
        MetadataDB(tmp_path / "m.db")


def test_transaction_rolls_back_on_error(db: MetadataDB) -> None:
    def put_two_then_fail() -> None:
        with db.transaction():
            db.put_image(image("a"))
            db.put_image(image("b"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        put_two_then_fail()
    assert db.list_images() == []


def test_transaction_commits_everything_together(db: MetadataDB) -> None:
    with db.transaction():
        db.put_image(image("a"))
        lease = db.create_lease()
        db.add_lease_resource(lease.id, "content", D1)
    assert [i.name for i in db.list_images()] == ["a"]
    assert db.lease_resources(lease.id) == [LeaseResource(lease.id, "content", D1)]


def test_content_labels(db: MetadataDB) -> None:
    db.set_content_labels(D1, {"a": "1", "moorage.gc.ref.content.config": D2})
    db.update_content_labels(D1, {"b": "2"})
    assert db.content_labels(D1) == {"a": "1", "b": "2", "moorage.gc.ref.content.config": D2}
    assert db.content_label_refs("moorage.gc.ref.content.") == [(D1, D2)]
    assert db.all_content_labels() == {D1: db.content_labels(D1)}
    db.delete_content_labels([D1])
    assert db.content_labels(D1) == {}


def test_leases(db: MetadataDB) -> None:
    forever = db.create_lease("forever", labels={"why": "test"})
    short = db.create_lease("short", ttl=timedelta(seconds=30))
    assert forever.expires_at is None
    assert short.expires_at is not None
    assert db.get_lease("forever") == forever
    with pytest.raises(AlreadyExists, match="lease already exists: forever"):
        db.create_lease("forever")

    db.add_lease_resource("forever", "content", D1)
    db.add_lease_resource("forever", "content", D1)  # idempotent
    db.add_lease_resource("short", "snapshot", "sha256:chain")
    with pytest.raises(NotFound, match="no such lease: nope"):
        db.add_lease_resource("nope", "content", D1)
    with pytest.raises(InvalidArgument, match="unknown resource kind"):
        db.add_lease_resource("forever", "volume", "x")

    assert {r.key for r in db.live_lease_resources()} == {D1, "sha256:chain"}
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert [r.key for r in db.live_lease_resources(later)] == [D1]
    assert db.delete_expired_leases(later) == ["short"]
    assert [lease.id for lease in db.list_leases()] == ["forever"]

    db.delete_lease("forever")
    assert db.lease_resources("forever") == []  # cascaded
    with pytest.raises(NotFound, match="no such lease: forever"):
        db.delete_lease("forever")


def test_gc_roots(db: MetadataDB) -> None:
    db.add_root("snapshot", "k1", "container:abc")
    db.add_root("snapshot", "k1", "container:abc")
    db.add_root("content", D1, "build-cache")
    assert db.list_roots() == [
        GCRoot("content", D1, "build-cache"),
        GCRoot("snapshot", "k1", "container:abc"),
    ]
    assert db.list_roots(kind="snapshot") == [GCRoot("snapshot", "k1", "container:abc")]
    assert db.remove_root("snapshot", "k1", "container:abc")
    assert not db.remove_root("snapshot", "k1", "container:abc")
    assert db.list_roots(owner="container:abc") == []


def test_lease_context_deletes_the_lease(db: MetadataDB) -> None:
    leases = Leases(db)
    with leases.lease() as lease:
        leases.add_resource(lease, "content", D1)
        assert [r.key for r in db.live_lease_resources()] == [D1]
    assert db.list_leases() == []

    with pytest.raises(RuntimeError), leases.lease() as lease:
        raise RuntimeError("pull failed")
    assert db.list_leases() == []


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_short_lived_threads_do_not_pile_up_connections(db: MetadataDB) -> None:
    # A daemon starts a thread per container event; each used to keep a connection
    # (and its descriptors) until some later thread noticed it had ended.
    db.put_image(image("warm"))
    gc.collect()  # what earlier tests left unreachable does not close in the middle
    before = _open_descriptors()
    for n in range(40):
        t = threading.Thread(target=db.put_image, args=(image(f"short{n}"),))
        t.start()
        t.join()
    assert _open_descriptors() == before
    assert len(db.list_images()) == 41


def test_a_nested_call_joins_the_transaction_of_its_thread(db: MetadataDB) -> None:
    with db.transaction():
        db.put_image(image("inside"))
        with db._lease() as outer, db._lease() as inner:
            assert outer is inner
        seen_elsewhere: list[int] = []
        other = threading.Thread(target=lambda: seen_elsewhere.append(len(db.list_images())))
        other.start()
        other.join()
        assert seen_elsewhere == [0]  # not committed yet: another connection
    assert [i.name for i in db.list_images()] == ["inside"]


def test_threads_each_get_a_connection(db: MetadataDB) -> None:
    errors: list[BaseException] = []

    def put(n: int) -> None:
        try:
            for i in range(20):
                db.put_image(image(f"t{n}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.list_images()) == 80


WRITER = """
import sys
from datetime import UTC, datetime
from moorage.store.metadata import ImageRecord, MetadataDB

path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = MetadataDB(path)
digest = "sha256:" + "a" * 64
for i in range(n):
    now = datetime.now(UTC)
    with db.transaction():
        db.put_image(ImageRecord(f"{who}-{i}", "m", digest, i, now, now))
        count = len(db.list_images())
        lease = db.create_lease()
        db.add_lease_resource(lease.id, "content", digest)
        db.delete_lease(lease.id)
db.close()
"""


def test_concurrent_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    MetadataDB(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), who, "150"], stderr=subprocess.PIPE
        )
        for who in ("a", "b", "c")
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else b"") for p in procs]
    for p in procs:
        if p.stderr:
            p.stderr.close()
    assert results == [(0, b"")] * 3

    with MetadataDB(path) as db:
        names = {i.name for i in db.list_images()}
        assert len(names) == 450
        assert db.list_leases() == []
        assert db.integrity_check() == []


def test_a_thread_waits_for_a_connection_when_all_are_leased(
    db: MetadataDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata, "MAX_CONNECTIONS", 2)
    db.close()  # start from none open
    holding, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with db.read_transaction():
            holding.wait()
            release.wait()

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    holding.wait()  # both connections leased
    listed: list[int] = []
    third = threading.Thread(target=lambda: listed.append(len(db.list_images())))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # waiting for a connection, not opening a third
    release.set()
    for t in [*holders, third]:
        t.join()
    assert listed == [0]


def test_all_connections_leased_too_long_is_unavailable(
    db: MetadataDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(metadata, "BUSY_TIMEOUT_MS", 50)
    db.close()
    errors: list[BaseException] = []
    with db.read_transaction():
        other = threading.Thread(target=lambda: _capture(errors, db.list_images))
        other.start()
        other.join()
    assert len(errors) == 1
    assert isinstance(errors[0], Unavailable)
    assert "connections in use" in str(errors[0])


def _capture(errors: list[BaseException], call: Any) -> None:
    try:
        call()
    except BaseException as exc:  # reported to the test
        errors.append(exc)
