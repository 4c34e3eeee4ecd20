"""Garbage collection over a real content store and metadata DB, with a fake manifest format
and a fake snapshot store.

The test "manifest" is JSON: ``{"children": [digest, ...], "typed": [[digest, media type],
...], "snapshot": key}``; ``references`` below returns its children, and
``snapshot_roots`` its snapshot key.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moorage.errors import FailedPrecondition, InvalidArgument, NotFound
from moorage.store import gc
from moorage.store.content import ContentStore
from moorage.store.leases import Leases
from moorage.store.metadata import ImageRecord, MetadataDB

MANIFEST = "test.manifest"


def references(media_type: str, raw: bytes) -> list[str | tuple[str, str]]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return []  # a "layer"
    if not isinstance(doc, dict):
        return []
    found: list[str | tuple[str, str]] = list(doc.get("children", []))
    found += [(d, t) for d, t in doc.get("typed", [])]
    return found


def snapshot_roots(image: ImageRecord, read_blob: Any) -> list[str]:
    doc = json.loads(read_blob(image.digest))
    return [doc["snapshot"]] if "snapshot" in doc else []


class FakeSnapshots:
    """Snapshots as a key -> parent map; a parent with children cannot be removed."""

    def __init__(self, parents: dict[str, str | None]) -> None:
        self.parents = dict(parents)
        self.removed: list[str] = []
        self.on_walk: list[Any] = []

    def walk(self) -> Iterable[tuple[str, str | None]]:
        for hook in self.on_walk:
            hook()
        return list(self.parents.items())

    def remove(self, key: str) -> None:
        if key not in self.parents:
            raise NotFound(f"no such snapshot: {key}")
        if key in self.parents.values():
            raise FailedPrecondition(f"snapshot {key} has children")
        del self.parents[key]
        self.removed.append(key)


class World:
    def __init__(self, root: Path) -> None:
        self.db = MetadataDB(root / "metadata.db")
        self.content = ContentStore(root, self.db)

    def blob(self, data: bytes | dict[str, Any]) -> str:
        raw = json.dumps(data).encode() if isinstance(data, dict) else data
        return self.content.write_blob(raw)[0]

    def image(self, name: str, digest: str, media_type: str = MANIFEST) -> None:
        now = datetime.now(UTC)
        self.db.put_image(ImageRecord(name, media_type, digest, 1, now, now))

    def collect(self, **kwargs: Any) -> gc.GCResult:
        kwargs.setdefault("references", references)
        return gc.collect(self.db, self.content, **kwargs)

    def blobs(self) -> set[str]:
        return {i.digest for i in self.content.walk()}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.db.close()


def test_reachable_blobs_survive_and_the_rest_goes(world: World) -> None:
    config = world.blob(b"config")
    layers = [world.blob(b"layer one"), world.blob(b"layer two")]
    manifest = world.blob({"children": [config, *layers]})
    index = world.blob({"typed": [[manifest, MANIFEST]]})
    orphan = world.blob(b"orphan")
    orphan_layer = world.blob(b"orphan layer")
    orphan_manifest = world.blob({"children": [orphan_layer]})
    world.image("app:latest", index)

    result = world.collect()

    assert world.blobs() == {config, *layers, manifest, index}
    assert result.removed_blobs == tuple(sorted([orphan, orphan_layer, orphan_manifest]))
    assert result.bytes_freed == len(b"orphan") + len(b"orphan layer") + len(
        json.dumps({"children": [orphan_layer]})
    )


def test_references_get_the_media_type_when_known(world: World) -> None:
    manifest = world.blob({"children": [world.blob(b"layer")]})
    index = world.blob({"typed": [[manifest, MANIFEST]]})
    world.image("app:latest", index, media_type="test.index")
    seen: list[tuple[str, bytes]] = []

    def recording(media_type: str, raw: bytes) -> list[str | tuple[str, str]]:
        seen.append((media_type, raw))
        return references(media_type, raw)

    world.collect(references=recording)

    assert [t for t, _ in seen] == ["test.index", MANIFEST, ""]


def test_leases_protect_and_expired_leases_do_not(world: World) -> None:
    kept = world.blob(b"under a live lease")
    lost = world.blob(b"under an expired lease")
    leases = Leases(world.db)
    live = leases.create(ttl=timedelta(hours=1))
    leases.add_resource(live, "content", kept)
    expired = leases.create(ttl=timedelta(microseconds=1))
    leases.add_resource(expired, "content", lost)

    result = world.collect()

    assert world.blobs() == {kept}
    assert result.removed_blobs == (lost,)
    assert [lease.id for lease in leases.list_leases()] == [live.id]  # the expired one went


def test_gc_roots_protect(world: World) -> None:
    cache = world.blob({"children": [world.blob(b"cached layer")]})
    world.blob(b"garbage")
    world.db.add_root("content", cache, "build-cache")

    world.collect()

    assert len(world.blobs()) == 2
    assert cache in world.blobs()


def test_label_refs_keep_blobs(world: World) -> None:
    child = world.blob(b"referenced by label")
    grandchild = world.blob(b"referenced by the child's label")
    parent = world.blob(b"a root with labels")
    world.content.set_labels(parent, {gc.GC_REF_LABEL_PREFIX + "anything": child})
    world.content.set_labels(child, {gc.GC_REF_LABEL_PREFIX + "x": grandchild})
    unlabelled = world.blob(b"nobody's")
    world.db.add_root("content", parent, "test")

    result = world.collect()

    assert world.blobs() == {parent, child, grandchild}
    assert result.removed_blobs == (unlabelled,)


def test_snapshot_chains_kept_and_removed(world: World) -> None:
    manifest = world.blob({"snapshot": "s3"})
    world.image("app:latest", manifest)
    snaps = FakeSnapshots(
        {
            "s1": None,
            "s2": "s1",
            "s3": "s2",  # the image's top chain id
            "o1": None,
            "o2": "o1",
            "o3": "o2",  # an image that is gone
            "c1": "s3",  # a container's, registered as a root
            "l1": "o1",  # under a lease: keeps o1 too
        }
    )
    world.db.add_root("snapshot", "c1", "container:web")
    leases = Leases(world.db)
    lease = leases.create()
    leases.add_resource(lease, "snapshot", "l1")

    result = world.collect(snapshots=snaps, snapshot_roots_of=snapshot_roots)

    assert result.removed_snapshots == ("o3", "o2")  # children first
    assert snaps.removed == ["o3", "o2"]
    assert set(snaps.parents) == {"s1", "s2", "s3", "o1", "c1", "l1"}


def test_a_snapshot_made_during_the_mark_keeps_its_parent(world: World) -> None:
    snaps = FakeSnapshots({"base": None, "old": None})
    calls = 0

    def new_child_on_second_walk() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            snaps.parents["fresh"] = "base"

    snaps.on_walk.append(new_child_on_second_walk)

    result = world.collect(snapshots=snaps, snapshot_roots_of=snapshot_roots)

    assert result.removed_snapshots == ("old",)
    assert set(snaps.parents) == {"base", "fresh"}


def test_snapshots_need_snapshot_roots_of(world: World) -> None:
    with pytest.raises(InvalidArgument, match="snapshot_roots_of"):
        world.collect(snapshots=FakeSnapshots({}))


def test_a_blob_committed_during_gc_survives(world: World) -> None:
    manifest = world.blob({"children": []})
    world.image("app:latest", manifest)
    recommitted = world.blob(b"an orphan written again during the mark")
    leased = world.blob(b"an orphan a lease takes during the mark")
    untouched = world.blob(b"an orphan nobody touches")
    in_mark, go = threading.Event(), threading.Event()

    def blocking(media_type: str, raw: bytes) -> list[str | tuple[str, str]]:
        in_mark.set()
        assert go.wait(timeout=30)
        return references(media_type, raw)

    result: list[gc.GCResult] = []
    collector = threading.Thread(target=lambda: result.append(world.collect(references=blocking)))
    collector.start()
    try:
        assert in_mark.wait(timeout=30)
        fresh = world.blob(b"a new blob committed during the mark")
        assert world.blob(b"an orphan written again during the mark") == recommitted
        leases = Leases(world.db)
        leases.add_resource(leases.create(), "content", leased)
    finally:
        go.set()
        collector.join(timeout=60)

    assert world.blobs() == {manifest, recommitted, leased, fresh}
    assert result[0].removed_blobs == (untouched,)


def test_two_collections_never_overlap(world: World) -> None:
    world.blob(b"garbage")
    done = threading.Event()
    with world.content.gc_lock():

        def collect() -> None:
            world.collect()
            done.set()

        collector = threading.Thread(target=collect)
        collector.start()
        assert not done.wait(timeout=0.3)  # waits for the lock we hold
    collector.join(timeout=30)
    assert done.is_set()
    assert world.blobs() == set()


def test_old_ingests_go_unless_leased_or_held(world: World) -> None:
    left = world.content.writer("left behind")
    left.write(b"partial")
    left.close()
    leased = world.content.writer("leased")
    leased.write(b"partial")
    leased.close()
    leases = Leases(world.db)
    leases.add_resource(leases.create(), "ingest", "leased")
    held = world.content.writer("held")
    held.write(b"partial")

    try:
        result = world.collect(ingest_max_age=timedelta(0))
    finally:
        held.abort()

    assert result.removed_ingests == ("left behind",)
    assert result.bytes_freed == len(b"partial")
    assert [i.ref for i in world.content.ingests()] == ["leased"]


def test_recent_ingests_are_kept(world: World) -> None:
    w = world.content.writer("recent")
    w.write(b"partial")
    w.close()

    assert world.collect().removed_ingests == ()
    assert [i.ref for i in world.content.ingests()] == ["recent"]


def test_dry_run_changes_nothing(world: World) -> None:
    kept = world.blob({"snapshot": "s1"})
    world.image("app:latest", kept)
    orphan = world.blob(b"orphan")
    w = world.content.writer("old ingest")
    w.write(b"x")
    w.close()
    leases = Leases(world.db)
    leases.add_resource(leases.create(ttl=timedelta(microseconds=1)), "content", orphan)
    snaps = FakeSnapshots({"s1": None, "gone": None})
    blobs_before = world.blobs()
    leases_before = leases.list_leases()

    result = world.collect(
        snapshots=snaps,
        snapshot_roots_of=snapshot_roots,
        dry_run=True,
        ingest_max_age=timedelta(0),
    )

    assert result.removed_blobs == (orphan,)
    assert result.removed_snapshots == ("gone",)
    assert result.removed_ingests == ("old ingest",)
    assert world.blobs() == blobs_before
    assert set(snaps.parents) == {"s1", "gone"}
    assert snaps.removed == []
    assert [i.ref for i in world.content.ingests()] == ["old ingest"]
    assert leases.list_leases() == leases_before


def test_an_ingest_directory_cut_short_before_its_lock_is_collected(world: World) -> None:
    # Killed right after the mkdir: no lock, no ref. Taking the lock creates its file,
    # which dates the directory now: the collector must judge its age from before.
    directory = world.content.path / "ingest" / ("ab" * 32)
    directory.mkdir()
    old = time.time() - 3600
    os.utime(directory, (old, old))

    world.collect(ingest_max_age=timedelta(minutes=1))

    assert not directory.exists()
