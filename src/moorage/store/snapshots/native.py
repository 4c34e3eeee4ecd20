"""The copy snapshotter ("native"): every snapshot is a full tree, for when overlayfs
is not available (an overlay root filesystem, a kernel without it).

``prepare`` copies the parent's tree into the new snapshot; ``commit`` only changes the
metadata (the tree is already complete); active snapshots mount as a read-write bind
mount of their tree and views as a read-only bind mount of the committed parent's tree
(committed trees never change, so a view needs no copy of its own). Deleting a file is
deleting it, so the unpacker applies whiteouts by deletion (``whiteout_mode ==
"delete"``) and a diff compares the tree with its parent's.

The copy is ``cp -a --reflink=auto`` rather than Python: it keeps ownership, modes,
timestamps, xattrs and ACLs, hard links, sparse files, device nodes, fifos and sockets,
and shares blocks (reflink, copy_file_range) where the filesystem can. Python's
``shutil.copytree`` loses hard links and special files.
"""

from __future__ import annotations

import os
import subprocess

from moorage.errors import FailedPrecondition
from moorage.store.snapshots.base import Kind, WhiteoutMode
from moorage.store.snapshots.local import LocalSnapshotter
from moorage.store.snapshots.mount import Mount

__all__ = ["CopySnapshotter", "copy_tree"]


def copy_tree(src: str, dst: str) -> None:
    """Copy directory ``src`` to the new path ``dst``, attributes of ``src`` included."""
    # -T: dst is the copy itself, not a directory to copy into.
    result = subprocess.run(
        ["cp", "-a", "--reflink=auto", "-T", "--", src, dst],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FailedPrecondition(f"copy {src} to {dst}: {result.stderr.strip()}")


class CopySnapshotter(LocalSnapshotter):
    """Snapshots as full copies; see the module docstring."""

    name = "native"

    @property
    def whiteout_mode(self) -> WhiteoutMode:
        return "delete"

    def _populate(self, path: str, kind: Kind, lowers: list[str]) -> None:
        fs = os.path.join(path, "fs")
        if kind == "active" and lowers:
            copy_tree(lowers[0], fs)  # the nearest ancestor already holds the whole tree
        else:
            os.mkdir(fs)
            os.chmod(fs, 0o755)  # a root dir's mode, whatever the umask

    def _active_mounts(self, path: str, lowers: list[str]) -> list[Mount]:
        return [Mount("bind", os.path.join(path, "fs"), ("rbind", "rw"))]

    def _readonly_mounts(self, lowers: list[str]) -> list[Mount]:
        return [Mount("bind", lowers[0], ("rbind", "ro"))]
