"""The snapshotter interface and its records: what every snapshotter promises.

The docstring of :class:`Snapshotter` is the specification; the conformance suite
(``tests/integration/test_store_snapshots_conformance.py``) runs the same tests against
every implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import ClassVar, Literal, NamedTuple, Self

from moorage.store.snapshots.mount import Mount

__all__ = ["Kind", "SnapshotInfo", "Snapshotter", "Usage", "WhiteoutMode"]

Kind = Literal["active", "committed", "view"]
WhiteoutMode = Literal["overlay", "delete"]


class SnapshotInfo(NamedTuple):
    """What a snapshot is: its key, kind, parent's key and labels (read-only mapping)."""

    key: str
    kind: Kind
    parent: str | None
    created_at: datetime
    labels: Mapping[str, str]
    updated_at: datetime


class Usage(NamedTuple):
    """Disk a snapshot holds: ``size`` in bytes of allocated blocks, ``inodes`` counted
    once each (hard links are not counted twice)."""

    size: int
    inodes: int


class Snapshotter(abc.ABC):
    """Filesystem snapshots, stacked like image layers, handed out as mounts.

    A snapshot is one of three kinds:

    - **active**: writable; made by :meth:`prepare` on top of an optional committed
      parent. Its content is the parent's plus what was written into it.
    - **committed**: read-only, made from an active snapshot by :meth:`commit`, which
      moves it under a new name (the active key disappears). Only committed snapshots
      can be parents; a committed snapshot never changes.
    - **view**: read-only, made by :meth:`view` to look at a committed snapshot.

    Keys are unique across all kinds. A snapshotter never mounts anything: it returns
    :class:`~moorage.store.snapshots.mount.Mount` records, and
    :func:`~moorage.store.snapshots.mount.mount_all` (or ``mounted``) performs them.

    Unpacking an image (parent = the previous layer's chain id) and starting a
    container::

        sn = new_snapshotter("/var/lib/moorage", "auto")
        sn.prepare("extract-1", None)
        apply_layer(layer1, sn.writable_dir("extract-1"), whiteouts=sn.whiteout_mode)
        sn.commit("sha256:c1", "extract-1")                   # "extract-1" is gone now
        sn.prepare("extract-2", "sha256:c1")
        apply_layer(layer2, sn.writable_dir("extract-2"), whiteouts=sn.whiteout_mode)
        sn.commit("sha256:c2", "extract-2", labels={"gc.root": "1"})

        rootfs = sn.prepare("web", "sha256:c2")               # the container's root
        with mounted(rootfs) as path:
            ...                                               # writes land in "web"
        sn.remove("web")
        sn.remove("sha256:c1")   # FailedPrecondition: "sha256:c2" is its child

    Errors, all from :mod:`moorage.errors`, naming the key:

    - ``NotFound``: the key (or the parent) does not exist;
    - ``AlreadyExists``: :meth:`prepare`, :meth:`view` or :meth:`commit` to a taken key;
    - ``Conflict``: the snapshot is of the wrong kind (a parent that is not committed,
      committing a snapshot that is not active, the writable dir of a committed one);
    - ``FailedPrecondition``: removing a snapshot that has children;
    - ``InvalidArgument``: an empty key, labels that are not short strings.

    Crash safety: a snapshot appears in :meth:`stat` and :meth:`walk` only once it is
    complete. Whatever a crash leaves half-made (a directory without metadata, metadata
    without a finished directory) is invisible and removed by :meth:`cleanup`, which
    implementations run when they open.

    Implementations are safe to call from several threads. Their methods block (they
    copy, measure and sync files): async callers use ``asyncio.to_thread``.
    """

    name: ClassVar[str]
    """Registry name of the implementation: ``"overlay"``, ``"native"``."""

    @property
    @abc.abstractmethod
    def whiteout_mode(self) -> WhiteoutMode:
        """How a layer's deletions go into :meth:`writable_dir`.

        ``"overlay"``: as overlayfs whiteouts (a 0/0 character device for a deleted
        file, the ``trusted.overlay.opaque`` xattr for an opaque directory); the dir is
        an overlay upper dir. ``"delete"``: by deleting the file; the dir is a full tree.
        """

    @abc.abstractmethod
    def prepare(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create active snapshot ``key`` on top of committed ``parent`` (or empty) and
        return the mounts of its writable filesystem."""

    @abc.abstractmethod
    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create view ``key`` of committed ``parent`` (or of an empty directory) and
        return its read-only mounts."""

    @abc.abstractmethod
    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or a view (``Conflict`` for a committed one:
        make a view of it)."""

    @abc.abstractmethod
    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> SnapshotInfo:
        """Turn active snapshot ``key`` into committed snapshot ``name``; ``key`` is gone
        afterwards. ``labels`` replace the active snapshot's labels when given.

        Unmount the active snapshot first: what is still being written is undefined.
        """

    @abc.abstractmethod
    def remove(self, key: str) -> None:
        """Remove a snapshot of any kind and its files; it must have no children."""

    @abc.abstractmethod
    def stat(self, key: str) -> SnapshotInfo:
        """What snapshot ``key`` is."""

    @abc.abstractmethod
    def walk(self) -> Iterator[SnapshotInfo]:
        """Every complete snapshot, parents before their children."""

    @abc.abstractmethod
    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own files: measured now for an active snapshot,
        at commit time for a committed one. What "own" means depends on the
        implementation: overlay counts the layer's changes, a copy its whole tree."""

    @abc.abstractmethod
    def update_labels(self, key: str, labels: Mapping[str, str]) -> SnapshotInfo:
        """Replace the labels of snapshot ``key``."""

    @abc.abstractmethod
    def writable_dir(self, key: str) -> str:
        """Where to write active snapshot ``key``'s content directly, without mounting:
        an overlay upper dir or a full tree, see :attr:`whiteout_mode`."""

    @abc.abstractmethod
    def parent_mounts(self, key: str) -> list[Mount]:
        """Read-only mounts of what snapshot ``key`` started from (its parent chain);
        empty when it has no parent. A diff of a copy snapshot compares a mount of
        ``mounts(key)`` with a mount of these."""

    @abc.abstractmethod
    def cleanup(self) -> list[str]:
        """Remove what crashed operations left behind; return the removed paths."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the metadata database and locks; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
