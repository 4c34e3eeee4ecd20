"""The content store on a throwaway root: writing, committing, resuming, reading."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from moorage.store.content import ContentStore


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ContentStore]:
    s = ContentStore(tmp_path)
    yield s
    s.close()


def blob_files(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.path / "blobs" / "sha256"))


def ingest_dirs(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.path / "ingest"))


def test_write_commit_read(store: ContentStore) -> None:
    with store.writer("one") as w:
        w.write(b"hello ")
        w.write(b"world")
        assert w.offset == 11
        assert w.digest_so_far() == sha(b"hello world")
        digest = w.commit()

    assert digest == sha(b"hello world")
    assert store.read_blob(digest) == b"hello world"
    with store.reader(digest) as f:
        assert f.read(5) == b"hello"
    info = store.info(digest)
    assert (info.digest, info.size, dict(info.labels)) == (digest, 11, {})
    assert store.exists(digest)
    assert [i.digest for i in store.walk()] == [digest]
    assert ingest_dirs(store) == []


def test_write_blob_returns_digest_and_size(store: ContentStore) -> None:
    assert store.write_blob(b"abc") == (sha(b"abc"), 3)
    assert store.write_blob(io.BytesIO(b"xyz"), expected=sha(b"xyz")) == (sha(b"xyz"), 3)


def test_missing_blob_is_not_found(store: ContentStore) -> None:
    missing = sha(b"nope")
    with pytest.raises(NotFound, match=f"content not found: {missing}"):
        store.reader(missing)
    with pytest.raises(NotFound, match="content not found"):
        store.info(missing)
    assert not store.exists(missing)


def test_bad_digest_is_invalid_argument(store: ContentStore) -> None:
    with pytest.raises(InvalidArgument, match="invalid digest: 'md5:00'"):
        store.exists("md5:00")


def test_read_blob_refuses_more_than_max_size(store: ContentStore) -> None:
    digest, _ = store.write_blob(b"x" * 100)
    with pytest.raises(InvalidArgument, match="blob too large to read whole"):
        store.read_blob(digest, max_size=99)
    assert store.read_blob(digest, max_size=100) == b"x" * 100


def test_digest_mismatch_leaves_nothing(store: ContentStore) -> None:
    wrong = sha(b"something else")
    w = store.writer("bad", expected=wrong)
    w.write(b"actual data")
    with pytest.raises(InvalidArgument) as err:
        w.commit()

    assert str(err.value) == (
        f"digest mismatch for bad: expected {wrong}, got {sha(b'actual data')}"
    )
    assert blob_files(store) == []
    assert ingest_dirs(store) == []
    assert store.ingests() == []


def test_digest_mismatch_given_at_commit(store: ContentStore) -> None:
    w = store.writer("bad")
    w.write(b"data")
    with pytest.raises(InvalidArgument, match="digest mismatch for bad"):
        w.commit(expected=sha(b"other"))
    assert blob_files(store) == []
    assert ingest_dirs(store) == []


def test_size_mismatch_leaves_nothing(store: ContentStore) -> None:
    w = store.writer("short", total=10)
    w.write(b"12345")
    with pytest.raises(InvalidArgument, match="size mismatch for short: expected 10 bytes, got 5"):
        w.commit()
    assert blob_files(store) == []
    assert ingest_dirs(store) == []


def test_size_given_at_commit_is_checked(store: ContentStore) -> None:
    w = store.writer("sized")
    w.write(b"12345")
    with pytest.raises(InvalidArgument, match="size mismatch"):
        w.commit(size=4)


def test_resume_after_close(store: ContentStore) -> None:
    data = os.urandom(300_000)
    expected = sha(data)
    w = store.writer("layer", expected=expected, total=len(data))
    w.write(data[:123_456])
    w.close()

    [status] = store.ingests()
    assert (status.ref, status.offset, status.total, status.expected) == (
        "layer",
        123_456,
        len(data),
        expected,
    )

    w = store.writer("layer")
    assert w.offset == 123_456
    assert (w.expected, w.total) == (expected, len(data))  # remembered from the first
    assert w.digest_so_far() == sha(data[:123_456])
    w.write(data[123_456:])
    assert w.commit() == expected
    assert store.read_blob(expected) == data
    assert store.ingests() == []


def test_new_expected_digest_restarts_the_ingest(store: ContentStore) -> None:
    w = store.writer("ref", expected=sha(b"a"))
    w.write(b"partial of something")
    w.close()

    w = store.writer("ref", expected=sha(b"b"))
    assert w.offset == 0
    w.write(b"b")
    assert w.commit() == sha(b"b")


def test_truncate_restarts(store: ContentStore) -> None:
    w = store.writer("t")
    w.write(b"garbage")
    w.truncate(0)
    assert w.offset == 0
    w.write(b"good")
    assert w.commit() == sha(b"good")
    assert store.read_blob(sha(b"good")) == b"good"


def test_truncate_to_a_prefix_rehashes(store: ContentStore) -> None:
    w = store.writer("t")
    w.write(b"goodbad")
    w.truncate(4)
    assert w.digest_so_far() == sha(b"good")
    assert w.commit() == sha(b"good")


def test_two_writers_on_one_ref(store: ContentStore) -> None:
    first = store.writer("shared")
    first.write(b"abc")
    with pytest.raises(Unavailable, match="ref locked: shared"):
        store.writer("shared")
    with pytest.raises(Unavailable, match="ref locked: shared"):
        store.abort_ingest("shared")
    first.close()

    second = store.writer("shared")
    assert second.offset == 3
    second.abort()
    assert store.ingests() == []


def test_commit_of_an_existing_blob_succeeds(store: ContentStore) -> None:
    digest, _ = store.write_blob(b"same")
    w = store.writer("again")
    w.write(b"same")

    assert w.commit() == digest
    assert store.read_blob(digest) == b"same"
    assert blob_files(store) == [digest.removeprefix("sha256:")]
    assert ingest_dirs(store) == []


def test_blob_files_are_read_only(store: ContentStore) -> None:
    digest, _ = store.write_blob(b"immutable")
    mode = os.stat(store.path / "blobs" / "sha256" / digest.removeprefix("sha256:")).st_mode
    assert stat.S_IMODE(mode) == 0o444


def test_abort_deletes_the_partial(store: ContentStore) -> None:
    w = store.writer("gone")
    w.write(b"x")
    w.abort()
    assert store.ingests() == []
    assert ingest_dirs(store) == []
    with pytest.raises(FailedPrecondition, match="writer for gone is done"):
        w.write(b"y")


def test_abort_ingest(store: ContentStore) -> None:
    w = store.writer("left")
    w.write(b"x")
    w.close()
    store.abort_ingest("left")
    assert store.ingests() == []
    with pytest.raises(NotFound, match="no such ingest: left"):
        store.abort_ingest("left")


def test_write_blob_failure_leaves_nothing(store: ContentStore) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("network went away")
            return b"x" * 1000

    with pytest.raises(OSError, match="network went away"):
        store.write_blob(Broken(), ref="broken")  # type: ignore[arg-type]
    assert store.ingests() == []
    assert blob_files(store) == []


def test_labels_live_in_the_metadata_db(store: ContentStore) -> None:
    w = store.writer("labelled")
    w.write(b"data")
    digest = w.commit(labels={"a": "1"})
    store.set_labels(digest, {"b": "2"})
    assert store.info(digest).labels == {"a": "1", "b": "2"}
    store.set_labels(digest, {"c": "3"}, replace=True)
    assert store.db.content_labels(digest) == {"c": "3"}
    assert [dict(i.labels) for i in store.walk()] == [{"c": "3"}]

    store.delete(digest)
    assert not store.exists(digest)
    assert store.db.content_labels(digest) == {}
    with pytest.raises(NotFound):
        store.delete(digest)
    with pytest.raises(NotFound):
        store.set_labels(digest, {"x": "y"})


class PseudoRandomStream(io.RawIOBase):
    """``size`` bytes made on demand, so the source itself holds no more than a chunk."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.hash = hashlib.sha256()
        self.counter = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = min(self.left, size if size >= 0 else self.left, 1 << 20)
        block = hashlib.sha256(self.counter.to_bytes(8, "big")).digest() * (n // 32 + 1)
        chunk = block[:n]
        self.counter += 1
        self.left -= n
        self.hash.update(chunk)
        return chunk


def test_streaming_a_large_source_uses_bounded_memory(store: ContentStore) -> None:
    source = PseudoRandomStream(50 * 1024 * 1024)
    tracemalloc.start()
    try:
        digest, size = store.write_blob(source)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size == 50 * 1024 * 1024
    assert digest == "sha256:" + source.hash.hexdigest()
    assert peak < 8 * 1024 * 1024
    with store.reader(digest) as f:
        h = hashlib.sha256()
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == digest


def test_resume_of_a_commit_killed_after_chmod(store: ContentStore) -> None:
    w = store.writer("ro")
    w.write(b"data")
    w.close()
    # What a kill between the commit's chmod and its rename leaves behind.
    [entry] = ingest_dirs(store)
    os.chmod(store.path / "ingest" / entry / "data", 0o444)

    w = store.writer("ro")
    w.write(b"more")
    assert w.commit() == sha(b"datamore")


def test_an_ingest_cut_short_before_its_ref_is_started_afresh(store: ContentStore) -> None:
    w = store.writer("cut")
    w.write(b"stale")
    w.close()
    [entry] = ingest_dirs(store)
    os.unlink(store.path / "ingest" / entry / "ref")  # as if killed during creation

    assert store.ingests() == []
    w = store.writer("cut")
    assert w.offset == 0
    w.abort()
