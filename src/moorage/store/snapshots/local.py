"""The lifecycle the local snapshotters share: directories, metadata, locking, cleanup.

Layout under ``<root>/snapshots`` (mode 0700, so unprivileged users cannot reach the
set-uid files of unpacked layers)::

    metadata.db        keys, kinds, parents, labels (``metadata.MetaStore``)
    lock               flock: shared while a snapshotter has the root open
    <id>/fs            the snapshot's files (an overlay upper dir, or a full tree)
    <id>/work          overlay's work dir (active overlay snapshots only)

Subclasses say how a new snapshot's directory starts out (:meth:`_populate`) and how
snapshots mount (:meth:`_active_mounts`, :meth:`_readonly_mounts`).

Cleanup runs only while no other process has the root open: on open, a snapshotter
takes the lock exclusively (without waiting) to clean up, then holds it shared. So a
second process opening the same root never deletes a snapshot the first is preparing.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import cast

from moorage.errors import Conflict, FailedPrecondition, InvalidArgument
from moorage.store.snapshots.base import Kind, SnapshotInfo, Snapshotter, Usage
from moorage.store.snapshots.metadata import MetaStore, Row
from moorage.store.snapshots.mount import Mount
from moorage.sys import fsops, procfs

__all__ = ["LocalSnapshotter", "check_key", "check_labels", "delete_tree", "disk_usage"]

log = logging.getLogger(__name__)

# containerd's limit on one label: key and value together.
_MAX_LABEL = 4096
_MAX_KEY = 4096


def check_key(key: object, what: str = "snapshot key") -> str:
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY or "\0" in key:
        raise InvalidArgument(f"invalid {what}: {key!r}")
    return key


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise InvalidArgument(f"invalid label: {k!r}={v!r}")
        if len(k) + len(v) > _MAX_LABEL:
            raise InvalidArgument(f"label {k!r} is longer than {_MAX_LABEL} bytes")
        out[k] = v
    return out


def disk_usage(path: str) -> Usage:
    """Allocated bytes and inodes under ``path`` (itself included), each inode once."""
    seen: set[int] = set()
    size = 0
    st = os.lstat(path)
    seen.add(st.st_ino)
    size += st.st_blocks * 512
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    size += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return Usage(size=size, inodes=len(seen))


def _mounts_under(path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    return [
        m.mount_point
        for m in procfs.mountinfo()
        if m.mount_point == path or m.mount_point.startswith(prefix)
    ]


def delete_tree(path: str) -> None:
    """rm -rf ``path``, refusing when something is mounted in it: rmtree would
    otherwise delete the mounted filesystem's files too."""
    mounts = _mounts_under(path)
    if mounts:
        raise FailedPrecondition(f"{path}: still mounted at {', '.join(mounts[:4])}")
    fsops.remove_tree(None, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _info(row: Row) -> SnapshotInfo:
    return SnapshotInfo(
        key=row.key,
        kind=cast(Kind, row.kind),
        parent=row.parent_key,
        created_at=_time(row.created_at),
        labels=MappingProxyType(row.labels),
        updated_at=_time(row.updated_at),
    )


class LocalSnapshotter(Snapshotter):
    """Snapshots as directories under ``<root>/snapshots``; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = os.path.abspath(os.fspath(root))
        # Layer paths end up in overlay's option string, which cannot escape these.
        if any(c in root for c in ":,\\\n"):
            raise InvalidArgument(f"snapshot root must not contain ':', ',', '\\': {root}")
        self.root = root
        self.dir = os.path.join(root, "snapshots")
        os.makedirs(root, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.dir, 0o700)
        self._reserve_lock = threading.Lock()
        self._in_flight: set[int] = set()
        self._lockfd = os.open(
            os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            self._meta = MetaStore(os.path.join(self.dir, "metadata.db"), self.name)
        except BaseException:
            os.close(self._lockfd)
            raise
        self._closed = False
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_SH)
            self.cleanup()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ for subclasses

    @abc.abstractmethod
    def _populate(self, path: str, kind: Kind, lowers: list[str]) -> None:
        """Create ``path/fs`` (and whatever else) for a new snapshot whose ancestors'
        ``fs`` dirs are ``lowers``, nearest first. ``path`` exists and is empty."""

    @abc.abstractmethod
    def _active_mounts(self, path: str, lowers: list[str]) -> list[Mount]:
        """Mounts of the active snapshot in ``path`` over ``lowers`` (nearest first)."""

    @abc.abstractmethod
    def _readonly_mounts(self, lowers: list[str]) -> list[Mount]:
        """Read-only mounts showing committed ``lowers`` (nearest first, at least one)."""

    # ------------------------------------------------------------ helpers

    def _path(self, id_: int) -> str:
        return os.path.join(self.dir, str(id_))

    def _fs(self, id_: int) -> str:
        return os.path.join(self.dir, str(id_), "fs")

    def _mounts_of(self, row: Row, chain: list[int]) -> list[Mount]:
        lowers = [self._fs(i) for i in chain]
        if row.kind == "active":
            return self._active_mounts(self._path(row.id), lowers)
        if row.kind == "view":
            if lowers:
                return self._readonly_mounts(lowers)
            return [Mount("bind", self._fs(row.id), ("rbind", "ro"))]
        raise Conflict(f"snapshot {row.key} is committed: mount a view of it")

    def _create(
        self, key: str, kind: Kind, parent: str | None, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        check_key(key)
        if parent is not None:
            check_key(parent, "parent snapshot key")
        clean = check_labels(labels)
        with self._reserve_lock:
            row, chain = self._meta.reserve(key, kind, parent, clean, time.time_ns())
            self._in_flight.add(row.id)
        path = self._path(row.id)
        try:
            os.mkdir(path, 0o700)
            self._populate(path, kind, [self._fs(i) for i in chain])
            # The directory entries reach the disk before the row says they exist.
            _fsync_dir(path)
            _fsync_dir(self.dir)
            self._meta.mark_ready(row.id)
        except BaseException:
            with contextlib.suppress(Exception):
                delete_tree(path)
            with contextlib.suppress(Exception):
                self._meta.drop(row.id)
            raise
        finally:
            with self._reserve_lock:
                self._in_flight.discard(row.id)
        return self._mounts_of(row, chain)

    # ------------------------------------------------------------ the interface

    def prepare(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, "active", parent, labels)

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(key, "view", parent, labels)

    def mounts(self, key: str) -> list[Mount]:
        row, chain = self._meta.get_with_chain(key)
        return self._mounts_of(row, chain)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> SnapshotInfo:
        check_key(name, "snapshot name")
        clean = None if labels is None else check_labels(labels)
        row = self._meta.get(key)
        if row.kind != "active":
            raise Conflict(f"snapshot {key} is {row.kind}, not active")
        usage = disk_usage(self._fs(row.id))
        return _info(self._meta.commit(key, name, clean, usage, time.time_ns()))

    def remove(self, key: str) -> None:
        row = self._meta.get(key)
        path = self._path(row.id)
        mounts = _mounts_under(path)
        if mounts:
            raise FailedPrecondition(f"snapshot {key} is mounted at {', '.join(mounts[:4])}")
        self._meta.remove(key)
        try:
            delete_tree(path)
        except (OSError, FailedPrecondition) as exc:
            # The snapshot is gone already; cleanup() retries its files on the next open.
            log.warning("snapshot %s removed, but not its files: %s", key, exc)

    def stat(self, key: str) -> SnapshotInfo:
        return _info(self._meta.get(key))

    def walk(self) -> Iterator[SnapshotInfo]:
        return iter([_info(row) for row in self._meta.rows()])

    def usage(self, key: str) -> Usage:
        row = self._meta.get(key)
        if row.size is not None and row.inodes is not None:
            return Usage(row.size, row.inodes)
        return disk_usage(self._fs(row.id))

    def update_labels(self, key: str, labels: Mapping[str, str]) -> SnapshotInfo:
        clean = check_labels(labels)
        return _info(self._meta.update_labels(key, clean, time.time_ns()))

    def writable_dir(self, key: str) -> str:
        row = self._meta.get(key)
        if row.kind != "active":
            raise Conflict(f"snapshot {key} is {row.kind}, not active")
        return self._fs(row.id)

    def parent_mounts(self, key: str) -> list[Mount]:
        _, chain = self._meta.get_with_chain(key)
        return self._readonly_mounts([self._fs(i) for i in chain]) if chain else []

    def cleanup(self) -> list[str]:
        """Remove pending rows and directories without a row (not this instance's own
        prepares in flight); skipped while another process has the root open."""
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A failed upgrade has dropped the shared lock: take it back.
            fcntl.flock(self._lockfd, fcntl.LOCK_SH)
            log.debug("%s: open in another process, cleanup skipped", self.dir)
            return []
        removed: list[str] = []
        try:
            with self._reserve_lock:
                dropped = self._meta.drop_pending(set(self._in_flight))
                known = self._meta.all_ids()
                for name in sorted(os.listdir(self.dir)):
                    if not (name.isascii() and name.isdigit()) or int(name) in known:
                        continue
                    path = os.path.join(self.dir, name)
                    try:
                        delete_tree(path)
                    except (OSError, FailedPrecondition) as exc:
                        log.warning("cannot remove orphaned snapshot dir %s: %s", path, exc)
                        continue
                    removed.append(path)
            if dropped:
                log.info("%s: dropped unfinished snapshots %s", self.dir, dropped)
            if removed:
                log.info("%s: removed orphaned snapshot dirs %s", self.dir, removed)
        finally:
            fcntl.flock(self._lockfd, fcntl.LOCK_SH)
        return removed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._meta.close()
        os.close(self._lockfd)
