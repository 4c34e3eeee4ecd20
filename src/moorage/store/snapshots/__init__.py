"""Snapshotters: layered filesystems for image layers and container root filesystems.

A snapshotter hands out mounts as data (:class:`Mount`); :func:`mount_all`,
:func:`unmount` and :func:`mounted` are the only code that performs them. Two
implementations share one interface (:class:`Snapshotter`, whose docstring is the
spec): ``overlay`` (overlayfs layers) and ``native`` (full copies, for machines where
overlayfs does not work). :func:`new_snapshotter` picks one.
"""

from __future__ import annotations

import os
from typing import Literal

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.store.snapshots.base import Kind, SnapshotInfo, Snapshotter, Usage, WhiteoutMode
from moorage.store.snapshots.metadata import recorded_driver
from moorage.store.snapshots.mount import Mount, mount_all, mounted, unmount
from moorage.store.snapshots.native import CopySnapshotter
from moorage.store.snapshots.overlay import OverlaySnapshotter, supported

__all__ = [
    "CopySnapshotter",
    "Kind",
    "Mount",
    "OverlaySnapshotter",
    "SnapshotInfo",
    "Snapshotter",
    "Usage",
    "WhiteoutMode",
    "mount_all",
    "mounted",
    "new_snapshotter",
    "overlay_supported",
    "unmount",
]

overlay_supported = supported


def new_snapshotter(
    root: str | os.PathLike[str], name: Literal["overlay", "native", "auto"] | str = "auto"
) -> Snapshotter:
    """Open the snapshotter ``name`` on state dir ``root`` (snapshots in
    ``<root>/snapshots``).

    ``auto`` is the snapshotter that made the snapshots already in ``root``, else overlay
    when :func:`overlay_supported` says it works in ``root``, else native. A root belongs
    to one snapshotter (they lay out files differently): opening it with the other one
    is a ``FailedPrecondition``.
    """
    if name == "auto":
        recorded = recorded_driver(os.path.join(os.fspath(root), "snapshots", "metadata.db"))
        if recorded is not None:
            name = recorded
        else:
            return OverlaySnapshotter(root) if supported(root) else CopySnapshotter(root)
    if name == "overlay":
        if not supported(root):
            raise FailedPrecondition(f"overlay snapshots do not work in {os.fspath(root)}")
        return OverlaySnapshotter(root)
    if name == "native":
        return CopySnapshotter(root)
    raise InvalidArgument(f"unknown snapshotter: {name!r}")
