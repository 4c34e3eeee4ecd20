"""The content store: immutable blobs named by their sha256 digest, under ``<root>/content/``.

This module owns these files and nothing else (labels on blobs live in the metadata
database, :mod:`moorage.store.metadata`)::

    content/blobs/sha256/<hex>          a blob, mode 0444; its bytes always hash to <hex>
    content/ingest/<sha256(ref)>/       one partial write, resumable by its ref
        lock                            flock()ed by the live writer (or a remover)
        startedat total expected        the ingest's settings; absent when unset
        ref                             the ref itself, written last: a directory without
                                        it is a creation cut short, never resumed
        data                            the bytes written so far
    content/ingest/.trash-*             an ingest being deleted (renamed first, then removed)
    content/gc.lock                     held exclusively by a running garbage collection
    content/commit.lock                 the commit fence, see below

The interfaces are split by role, as the callers are: :class:`Provider` reads,
:class:`Ingester` writes, :class:`Manager` lists and deletes, and :class:`Collectable` is
what :mod:`moorage.store.gc` needs on top. :class:`ContentStore` implements all four.

Crash safety. A blob is written to ``ingest/<ref>/data`` (opened O_CLOEXEC) and hashed on
the way; the commit fsyncs it, checks its size and digest, makes it read-only, renames it
to ``blobs/sha256/<hex>`` and fsyncs that directory. So a name under ``blobs/`` only ever
appears for complete, verified content, and a kill -9 at any point leaves at worst an
ingest directory, which the writer can resume (its data is re-hashed) and the garbage
collector removes when it is old.

The commit fence, and why a blob committed during a collection survives it. The
collector takes ``commit.lock`` exclusively twice: briefly at the start of the mark, to
record every blob as a :class:`BlobStamp` (digest plus inode and ctime), and for the
sweep. A commit, a delete and a label change take it shared, only around their rename
or unlink and the label write. A commit always renames its file into place, also over
a blob that exists already, so every commit yields a new inode. The sweep deletes a
blob only if it was stamped at the start and its inode and ctime are still the stamped
ones (:meth:`ContentStore.delete_unchanged`). Hence a blob committed after the mark
started was either absent from the stamps or carries a new inode: it is never swept.
Commits wait for the sweep, which is short (unlinks), never for the whole mark.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Container, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO, NamedTuple, Protocol

from moorage.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from moorage.store.metadata import MetadataDB

__all__ = [
    "CHUNK_SIZE",
    "MAX_READ_BLOB",
    "BlobStamp",
    "Collectable",
    "ContentInfo",
    "ContentStore",
    "ContentWriter",
    "IngestStatus",
    "Ingester",
    "Manager",
    "Provider",
]

# Streams move through the store in pieces of this size; nothing holds a whole blob.
CHUNK_SIZE = 1 << 20
# read_blob()'s default limit: manifests, indexes and configs fit; layers are streamed.
MAX_READ_BLOB = 4 << 20

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_HEX = re.compile(r"[0-9a-f]{64}")
_TRASH_PREFIX = ".trash-"


# --------------------------------------------------------------------------- records


class ContentInfo(NamedTuple):
    digest: str
    size: int
    created_at: datetime  # when this copy of the blob was written (its mtime)
    labels: Mapping[str, str]


class IngestStatus(NamedTuple):
    ref: str
    offset: int  # bytes written so far
    total: int | None
    expected: str | None
    started_at: datetime
    updated_at: datetime  # the last write


class BlobStamp(NamedTuple):
    """A blob as the collector saw it: the file is that same copy while inode and ctime match."""

    digest: str
    size: int
    inode: int
    ctime_ns: int


# --------------------------------------------------------------------------- interfaces


class Provider(Protocol):
    """Reads blobs by digest. Digests are ``"sha256:<64 lower-case hex>"`` strings.

    Example::

        hello = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        store.exists(hello)                 # True once b"hello" was committed
        store.read_blob(hello)              # b"hello"  (InvalidArgument above max_size)
        with store.reader(hello) as f:      # a file object for blobs too big to hold
            f.read(2)                       # b"he"
        store.info(hello).size              # 5
        store.reader("sha256:" + "0" * 64)  # NotFound: content not found: sha256:000...
    """

    def reader(self, digest: str) -> BinaryIO: ...

    def read_blob(self, digest: str, max_size: int = MAX_READ_BLOB) -> bytes: ...

    def info(self, digest: str) -> ContentInfo: ...

    def exists(self, digest: str) -> bool: ...


class Ingester(Protocol):
    """Writes blobs through named, resumable ingests.

    A ref names one ingest; one live writer may hold it at a time (another gets
    Unavailable ``ref locked: <ref>``). A writer that is closed without committing leaves
    its data for the next writer of the same ref to continue. Example::

        w = store.writer("pull-layer-3", expected=layer_digest, total=layer_size)
        w.write(first_half)
        w.close()                           # interrupted: the partial data stays
        w = store.writer("pull-layer-3", expected=layer_digest, total=layer_size)
        w.offset                            # len(first_half): resume the download there
        w.write(second_half)
        w.commit()                          # -> layer_digest, now readable by Provider

        store.write_blob(b"hello")          # -> ("sha256:2cf2...9824", 5)
        store.write_blob(open("layer.tar", "rb"), expected=layer_digest)  # streamed
    """

    def writer(
        self, ref: str, *, expected: str | None = None, total: int | None = None
    ) -> ContentWriter: ...

    def write_blob(
        self, source: bytes | IO[bytes], *, expected: str | None = None, ref: str | None = None
    ) -> tuple[str, int]: ...

    def ingests(self) -> list[IngestStatus]: ...

    def abort_ingest(self, ref: str) -> None: ...


class Manager(Protocol):
    """Lists, deletes and labels blobs. Example::

    [i.digest for i in store.walk()]    # every blob, in no particular order
    store.set_labels(manifest, {"moorage.gc.ref.content.config": config_digest})
    store.info(manifest).labels         # {"moorage.gc.ref.content.config": ...}
    store.delete(manifest)              # the blob and its labels are gone
    """

    def walk(self) -> Iterator[ContentInfo]: ...

    def delete(self, digest: str) -> None: ...

    def set_labels(
        self, digest: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> None: ...


class Collectable(Provider, Protocol):
    """What the garbage collector needs from a content store (see the module docstring).

    Example, the shape of one collection::

        with store.gc_lock():                        # one collection at a time
            with store.commit_fence():
                stamps = store.stamps()              # the mark starts here
            ... mark, reading blobs through the Provider methods ...
            with store.commit_fence():
                store.delete_unchanged([stamps[d] for d in unreachable])
            store.prune_ingests(older_than=cutoff, keep=refs_under_lease)
    """

    def gc_lock(self) -> contextlib.AbstractContextManager[None]: ...

    def commit_fence(self) -> contextlib.AbstractContextManager[None]: ...

    def stamps(self) -> dict[str, BlobStamp]: ...

    def delete_unchanged(
        self, stamps: Iterable[BlobStamp], *, dry_run: bool = False
    ) -> list[BlobStamp]: ...

    def prune_ingests(
        self, older_than: datetime, keep: Container[str], *, dry_run: bool = False
    ) -> list[IngestStatus]: ...


# --------------------------------------------------------------------------- helpers


def _hex_of(digest: str) -> str:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidArgument(f"invalid digest: {digest!r} (want sha256:<64 hex digits>)")
    return match.group(1)


def _check_ref(ref: str) -> None:
    if not isinstance(ref, str) or not ref or "\0" in ref:
        raise InvalidArgument(f"invalid ingest ref: {ref!r}")


def _check_labels(labels: Mapping[str, str], digest: str) -> None:
    for key, value in labels.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgument(f"labels of {digest}: must map non-empty strings to strings")


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """mkdir -p, fsyncing each parent that gained an entry so the tree survives power loss."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755)
        _fsync_dir(path.parent)


def _read_small(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _write_small(path: Path, text: str | None) -> None:
    """Replace a small metadata file atomically (absent when ``text`` is None)."""
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _parse_total(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text)


def _parse_expected(text: str | None) -> str | None:
    return text if text is not None and _DIGEST.fullmatch(text) else None


def _flock(path: Path, mode: int, *, create: bool = True) -> int:
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    fd = _flock(path, mode)
    try:
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- writer


class ContentWriter:
    """One open ingest: bytes go in, a verified blob comes out of :meth:`commit`.

    Made by :meth:`ContentStore.writer`. The writer holds the ref's lock until
    :meth:`commit`, :meth:`close` or :meth:`abort`; as a context manager it closes on
    exit (keeping the partial data unless it committed).
    """

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        directory: Path,
        lock_fd: int,
        data_fd: int,
        hasher: hashlib._Hash,
        offset: int,
        expected: str | None,
        total: int | None,
    ) -> None:
        self._store = store
        self.ref = ref
        self._dir = directory
        self._lock_fd = lock_fd
        self._fd = data_fd
        self._hash = hasher
        self._offset = offset
        self.expected = expected
        self.total = total
        self._state = "open"  # "open", "closed" (data kept) or "done" (data gone)

    @property
    def offset(self) -> int:
        """How many bytes the ingest holds: where the next write goes."""
        return self._offset

    def digest_so_far(self) -> str:
        return "sha256:" + self._hash.copy().hexdigest()

    def _check_open(self) -> None:
        if self._state != "open":
            raise FailedPrecondition(f"writer for {self.ref} is {self._state}")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns its length."""
        self._check_open()
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            n = os.write(self._fd, view[written:])
            # Hash exactly what reached the file, so that a failed write leaves the
            # hash and the data agreeing (resume re-hashes the file anyway).
            self._hash.update(view[written : written + n])
            written += n
            self._offset += n
        return written

    def truncate(self, size: int = 0) -> None:
        """Cut the data back to ``size`` bytes (0: start over)."""
        self._check_open()
        if size < 0 or size > self._offset:
            raise InvalidArgument(f"cannot truncate {self.ref} to {size} bytes of {self._offset}")
        os.ftruncate(self._fd, size)
        self._hash = _hash_file(self._fd, size)
        self._offset = size
        os.lseek(self._fd, size, os.SEEK_SET)

    def commit(
        self,
        size: int | None = None,
        expected: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Verify the data and make it the blob it hashes to; returns its digest.

        ``size`` defaults to the writer's ``total`` and ``expected`` to its expected
        digest; a mismatch with either raises InvalidArgument (``digest mismatch for
        <ref>: expected sha256:A, got sha256:B``) and deletes the partial data: a failed
        commit keeps nothing. If the blob exists already the commit succeeds all the same.
        ``labels`` are added to the blob's labels (in the metadata DB) before it appears.
        Do not call this inside a metadata write transaction: the commit waits for a
        collector's sweep, and the sweep writes to the database.
        """
        self._check_open()
        if expected is not None:
            _hex_of(expected)
        if labels:
            _check_labels(labels, self.ref)
        want_size = size if size is not None else self.total
        os.fsync(self._fd)
        actual = self.digest_so_far()
        try:
            if want_size is not None and want_size != self._offset:
                raise InvalidArgument(
                    f"size mismatch for {self.ref}: expected {want_size} bytes, got {self._offset}"
                )
            for want in (expected, self.expected):
                if want is not None and want != actual:
                    raise InvalidArgument(
                        f"digest mismatch for {self.ref}: expected {want}, got {actual}"
                    )
        except InvalidArgument:
            self._discard()
            raise
        store = self._store
        try:
            os.fchmod(self._fd, 0o444)
            os.close(self._fd)
            self._fd = -1
            with store._fence_shared():
                if labels:
                    store.db.update_content_labels(actual, labels)
                # Over an existing copy too: a fresh inode tells a running collector
                # that this blob was committed after its mark started (module docstring).
                os.rename(self._dir / "data", store._blob_path(actual))
                _fsync_dir(store._blobs)
        except BaseException:
            self.close()  # the verified data stays; a new writer may commit it
            raise
        self._finish()
        return actual

    def close(self) -> None:
        """Release the ref, keeping the partial data for a later writer to resume."""
        if self._state != "open":
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        os.close(self._lock_fd)
        self._state = "closed"

    def abort(self) -> None:
        """Delete the partial data and release the ref."""
        if self._state == "done":
            return
        if self._state == "closed":
            raise FailedPrecondition(f"writer for {self.ref} is closed: use abort_ingest")
        self._discard()

    def _discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._finish()

    def _finish(self) -> None:
        try:
            self._store._remove_ingest_dir(self._dir)
        finally:
            os.close(self._lock_fd)
            self._state = "done"

    def __enter__(self) -> ContentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten writer must not keep its ref locked for the life of the process.
        if getattr(self, "_state", None) == "open":
            self.close()


def _hash_file(fd: int, size: int) -> hashlib._Hash:
    """sha256 of the first ``size`` bytes of ``fd``, read in chunks."""
    hasher = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK_SIZE, size - offset), offset)
        if not chunk:
            break
        hasher.update(chunk)
        offset += len(chunk)
    return hasher


# --------------------------------------------------------------------------- store


class ContentStore:
    """The content store under ``<root>/content``; labels go to ``db``.

    ``db`` defaults to the metadata database at ``<root>/metadata.db``, which the store
    then owns and closes in :meth:`close`. Every method is safe to call from several
    threads and processes at once.
    """

    def __init__(self, root: str | os.PathLike[str], db: MetadataDB | None = None) -> None:
        self.root = Path(root)
        self.path = self.root / "content"
        self._blobs = self.path / "blobs" / "sha256"
        self._ingest = self.path / "ingest"
        _make_dirs(self._blobs)
        _make_dirs(self._ingest)
        self._owns_db = db is None
        self.db = db if db is not None else MetadataDB(self.root / "metadata.db")

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _blob_path(self, digest: str) -> Path:
        return self._blobs / _hex_of(digest)

    def _ingest_dir(self, ref: str) -> Path:
        return self._ingest / hashlib.sha256(ref.encode()).hexdigest()

    # ----------------------------------------------------------------- Provider

    def reader(self, digest: str) -> BinaryIO:
        path = self._blob_path(digest)
        try:
            return open(path, "rb")  # noqa: SIM115  # the caller closes it
        except FileNotFoundError as exc:
            raise NotFound(f"content not found: {digest}") from exc

    def read_blob(self, digest: str, max_size: int = MAX_READ_BLOB) -> bytes:
        with self.reader(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_size:
                raise InvalidArgument(
                    f"blob too large to read whole: {digest} is {size} bytes, "
                    f"the limit is {max_size}"
                )
            return f.read()

    def info(self, digest: str) -> ContentInfo:
        try:
            st = os.stat(self._blob_path(digest))
        except FileNotFoundError as exc:
            raise NotFound(f"content not found: {digest}") from exc
        return ContentInfo(
            digest, st.st_size, _time(st.st_mtime_ns), self.db.content_labels(digest)
        )

    def exists(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    # ----------------------------------------------------------------- Ingester

    def writer(
        self, ref: str, *, expected: str | None = None, total: int | None = None
    ) -> ContentWriter:
        """Open the ingest ``ref``, resuming its data if it exists.

        ``expected`` and ``total``, when given, replace what the ingest recorded; a new
        expected digest restarts the data (what is there belongs to another blob).
        """
        _check_ref(ref)
        if expected is not None:
            _hex_of(expected)
        if total is not None and (not isinstance(total, int) or total < 0):
            raise InvalidArgument(f"invalid total size for {ref}: {total!r}")
        directory = self._ingest_dir(ref)
        lock_fd = self._lock_ingest(ref, directory, create=True)
        try:
            return self._open_writer(ref, directory, lock_fd, expected, total)
        except BaseException:
            os.close(lock_fd)
            raise

    def _lock_ingest(self, ref: str, directory: Path, *, create: bool) -> int:
        """flock ``directory/lock`` without waiting; the directory exists when this returns."""
        while True:
            if create:
                _make_dirs(directory)
            try:
                fd = _flock(directory / "lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
            except FileNotFoundError as exc:
                if create:
                    continue  # removed between mkdir and open: make it again
                raise NotFound(f"no such ingest: {ref}") from exc
            except BlockingIOError as exc:
                raise Unavailable(f"ref locked: {ref}") from exc
            # A remover may have renamed the directory away between our open and our
            # flock (and released it): a lock on that old inode guards nothing.
            try:
                same = os.stat(directory / "lock").st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
            if not create:
                raise NotFound(f"no such ingest: {ref}")

    def _open_writer(
        self,
        ref: str,
        directory: Path,
        lock_fd: int,
        expected: str | None,
        total: int | None,
    ) -> ContentWriter:
        data = directory / "data"
        if _read_small(directory / "ref") == ref:
            stored_expected = _parse_expected(_read_small(directory / "expected"))
            stored_total = _parse_total(_read_small(directory / "total"))
            restart = expected is not None and stored_expected not in (None, expected)
            if expected is not None and expected != stored_expected:
                _write_small(directory / "expected", expected)
            if total is not None and total != stored_total:
                _write_small(directory / "total", str(total))
            expected = expected if expected is not None else stored_expected
            total = total if total is not None else stored_total
            with contextlib.suppress(FileNotFoundError):
                # A commit killed after its chmod leaves the data read-only.
                os.chmod(data, 0o644)
            fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if restart:
                    os.ftruncate(fd, 0)
                size = os.fstat(fd).st_size
                hasher = _hash_file(fd, size)
                os.lseek(fd, size, os.SEEK_SET)
            except BaseException:
                os.close(fd)
                raise
            return ContentWriter(self, ref, directory, lock_fd, fd, hasher, size, expected, total)
        # New, or a creation cut short (no ref file): start from nothing. The ref file
        # goes last, so that it vouches for the rest.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / "ref")
        fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_small(directory / "startedat", datetime.now(UTC).isoformat())
            _write_small(directory / "total", str(total) if total is not None else None)
            _write_small(directory / "expected", expected)
            _write_small(directory / "ref", ref)
        except BaseException:
            os.close(fd)
            raise
        return ContentWriter(
            self, ref, directory, lock_fd, fd, hashlib.sha256(), 0, expected, total
        )

    def write_blob(
        self, source: bytes | IO[bytes], *, expected: str | None = None, ref: str | None = None
    ) -> tuple[str, int]:
        """Write all of ``source`` as one blob; returns ``(digest, size)``.

        A file-like source is read in CHUNK_SIZE pieces, never whole. On any error the
        ingest is deleted. The blob is written even if it exists already.
        """
        w = self.writer(ref if ref is not None else "write-blob-" + secrets.token_hex(12))
        try:
            if w.offset:
                w.truncate(0)
            if isinstance(source, bytes | bytearray | memoryview):
                view = memoryview(source).cast("B")
                for start in range(0, len(view), CHUNK_SIZE):
                    w.write(view[start : start + CHUNK_SIZE])
            else:
                while chunk := source.read(CHUNK_SIZE):
                    w.write(chunk)
            size = w.offset
            return w.commit(expected=expected), size
        except BaseException:
            w.abort()
            raise

    def ingests(self) -> list[IngestStatus]:
        """Every ingest with a ref, live or not, sorted by ref."""
        found = [s for _, s in self._scan_ingests() if s is not None]
        return sorted(found, key=lambda s: s.ref)

    def _scan_ingests(self) -> Iterator[tuple[os.DirEntry[str], IngestStatus | None]]:
        """Each ingest directory with its status (None: a creation cut short)."""
        for entry in os.scandir(self._ingest):
            if _HEX.fullmatch(entry.name):
                yield entry, self._ingest_status(Path(entry.path))

    def _ingest_status(self, directory: Path) -> IngestStatus | None:
        ref = _read_small(directory / "ref")
        if ref is None:
            return None
        try:
            st = os.stat(directory / "data")
            offset, updated = st.st_size, st.st_mtime_ns
        except FileNotFoundError:
            offset, updated = 0, _dir_mtime(directory)
        started_text = _read_small(directory / "startedat")
        try:
            started = datetime.fromisoformat(started_text) if started_text else _time(updated)
        except ValueError:
            started = _time(updated)
        return IngestStatus(
            ref=ref,
            offset=offset,
            total=_parse_total(_read_small(directory / "total")),
            expected=_parse_expected(_read_small(directory / "expected")),
            started_at=started,
            updated_at=_time(updated),
        )

    def abort_ingest(self, ref: str) -> None:
        """Delete the ingest ``ref``; Unavailable while a writer holds it."""
        _check_ref(ref)
        directory = self._ingest_dir(ref)
        if not directory.is_dir():
            raise NotFound(f"no such ingest: {ref}")
        fd = self._lock_ingest(ref, directory, create=False)
        try:
            self._remove_ingest_dir(directory)
        finally:
            os.close(fd)

    def _remove_ingest_dir(self, directory: Path) -> None:
        """Remove an ingest whose lock the caller holds.

        Renamed away first, so that a kill mid-removal never leaves something that looks
        like a resumable ingest, and so that a writer that waited on the old lock notices.
        """
        trash = directory.with_name(f"{_TRASH_PREFIX}{directory.name}-{secrets.token_hex(4)}")
        try:
            os.rename(directory, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # ----------------------------------------------------------------- Manager

    def walk(self) -> Iterator[ContentInfo]:
        labels = self.db.all_content_labels()
        for entry in os.scandir(self._blobs):
            if not _HEX.fullmatch(entry.name):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while we looked
            digest = "sha256:" + entry.name
            yield ContentInfo(digest, st.st_size, _time(st.st_mtime_ns), labels.get(digest, {}))

    def delete(self, digest: str) -> None:
        """Delete the blob and its labels; NotFound if it is not there."""
        path = self._blob_path(digest)
        with self._fence_shared():
            try:
                os.unlink(path)
            except FileNotFoundError as exc:
                raise NotFound(f"content not found: {digest}") from exc
            self.db.delete_content_labels([digest])
        _fsync_dir(self._blobs)

    def set_labels(self, digest: str, labels: Mapping[str, str], *, replace: bool = False) -> None:
        """Set the given labels of the blob, keeping its others (``replace``: drop them)."""
        _check_labels(labels, digest)
        with self._fence_shared():
            if not self.exists(digest):
                raise NotFound(f"content not found: {digest}")
            if replace:
                self.db.set_content_labels(digest, labels)
            else:
                self.db.update_content_labels(digest, labels)

    # ----------------------------------------------------------------- Collectable

    def gc_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held exclusively for a whole collection, so that two never overlap."""
        return _locked(self.path / "gc.lock", fcntl.LOCK_EX)

    def commit_fence(self) -> contextlib.AbstractContextManager[None]:
        """While held, no commit, delete or label change is under way or starts."""
        return _locked(self.path / "commit.lock", fcntl.LOCK_EX)

    def _fence_shared(self) -> contextlib.AbstractContextManager[None]:
        return _locked(self.path / "commit.lock", fcntl.LOCK_SH)

    def stamps(self) -> dict[str, BlobStamp]:
        """Every blob with the identity of its current copy; call under the fence."""
        result: dict[str, BlobStamp] = {}
        for entry in os.scandir(self._blobs):
            if not _HEX.fullmatch(entry.name):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            digest = "sha256:" + entry.name
            result[digest] = BlobStamp(digest, st.st_size, st.st_ino, st.st_ctime_ns)
        return result

    def delete_unchanged(
        self, stamps: Iterable[BlobStamp], *, dry_run: bool = False
    ) -> list[BlobStamp]:
        """Delete each blob whose copy is still the stamped one; call under the fence.

        Returns those deleted (with ``dry_run``, those that would be). Their labels go too.
        """
        removed: list[BlobStamp] = []
        for stamp in stamps:
            path = self._blob_path(stamp.digest)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if (st.st_ino, st.st_ctime_ns) != (stamp.inode, stamp.ctime_ns):
                continue  # committed again since it was stamped
            if not dry_run:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
            removed.append(stamp)
        if removed and not dry_run:
            self.db.delete_content_labels(s.digest for s in removed)
            _fsync_dir(self._blobs)
        return removed

    def prune_ingests(
        self, older_than: datetime, keep: Container[str], *, dry_run: bool = False
    ) -> list[IngestStatus]:
        """Delete ingests last written before ``older_than`` whose ref is not in ``keep``
        and that no writer holds; returns them. Also clears out removals cut short.

        A creation cut short (no ref yet) is reported with the directory name as its ref.
        """
        removed: list[IngestStatus] = []
        cutoff = older_than.timestamp()
        for entry in os.scandir(self._ingest):
            if entry.name.startswith(_TRASH_PREFIX):
                if not dry_run:
                    shutil.rmtree(entry.path, ignore_errors=True)
                continue
            if not _HEX.fullmatch(entry.name):
                continue
            directory = Path(entry.path)
            status = self._ingest_status(directory)
            if status is not None and status.ref in keep:
                continue
            # Before the lock: taking it may create the lock file (a creation cut short
            # before its lock existed), which would date the directory now.
            mtime = _dir_mtime(directory)
            try:
                fd = _flock(directory / "lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, FileNotFoundError):
                continue  # a live writer, or gone already
            try:
                if os.stat(directory / "lock").st_ino != os.fstat(fd).st_ino:
                    continue
                # Read again under the lock: a writer may have just written and closed.
                status = self._ingest_status(directory)
                if status is None:
                    status = IngestStatus(entry.name, 0, None, None, _time(mtime), _time(mtime))
                if status.updated_at.timestamp() >= cutoff:
                    continue
                if not dry_run:
                    self._remove_ingest_dir(directory)
                removed.append(status)
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        return removed


def _dir_mtime(directory: Path) -> int:
    try:
        return os.stat(directory).st_mtime_ns
    except FileNotFoundError:
        return 0
