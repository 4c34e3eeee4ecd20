"""The overlayfs snapshotter: committed snapshots are lower layers, never copied.

An active snapshot is ``<id>/fs`` as the upper dir (``<id>/work`` as overlay's work
dir) over its ancestors' ``fs`` dirs, nearest first; with no parent it is a plain bind
mount of its ``fs``. A view of one committed layer is a read-only bind mount of it; a
view of more is an overlay of lower dirs only, which overlayfs mounts read-only.

An active snapshot's ``fs`` is exactly the layer's changes in overlay's own format
(whiteouts as 0/0 character devices, opaque directories as xattrs), which is what
``writable_dir`` hands to the unpacker and to the diff code. For that to hold, the
upper dir must not depend on overlay features that leave data elsewhere: when the
kernel's module defaults turn on ``index``, ``metacopy`` or ``redirect_dir``, active
mounts turn them off explicitly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile

from moorage.errors import MoorageError
from moorage.store.snapshots.base import Kind, WhiteoutMode
from moorage.store.snapshots.local import LocalSnapshotter, delete_tree
from moorage.store.snapshots.mount import Mount, mount_all, overlay_options, unmount

__all__ = ["OverlaySnapshotter", "supported"]

log = logging.getLogger(__name__)

_PARAMS = "/sys/module/overlay/parameters"

# module parameter -> the mount option that overrides it when it defaults to on
_FEATURES = {"index": "index=off", "metacopy": "metacopy=off", "redirect_dir": "redirect_dir=off"}


def _feature_options() -> tuple[str, ...]:
    options: list[str] = []
    for param, option in _FEATURES.items():
        try:
            with open(os.path.join(_PARAMS, param)) as f:
                value = f.read().strip()
        except OSError:
            continue  # module not loaded yet, or a kernel without the feature
        if value in ("Y", "on", "follow"):
            options.append(option)
    return tuple(options)


class OverlaySnapshotter(LocalSnapshotter):
    """Snapshots as overlayfs layers; see the module docstring."""

    name = "overlay"

    @property
    def whiteout_mode(self) -> WhiteoutMode:
        return "overlay"

    def _populate(self, path: str, kind: Kind, lowers: list[str]) -> None:
        fs = os.path.join(path, "fs")
        os.mkdir(fs)
        os.chmod(fs, 0o755)  # a root dir's mode, whatever the umask
        if kind == "active" and lowers:
            os.mkdir(os.path.join(path, "work"), 0o700)

    def _active_mounts(self, path: str, lowers: list[str]) -> list[Mount]:
        fs = os.path.join(path, "fs")
        if not lowers:
            return [Mount("bind", fs, ("rbind", "rw"))]
        work = os.path.join(path, "work")
        return [Mount("overlay", "overlay", overlay_options(lowers, fs, work, _feature_options()))]

    def _readonly_mounts(self, lowers: list[str]) -> list[Mount]:
        if len(lowers) == 1:
            return [Mount("bind", lowers[0], ("rbind", "ro"))]
        return [Mount("overlay", "overlay", overlay_options(lowers))]


def supported(root: str | os.PathLike[str]) -> bool:
    """Whether overlay snapshots work in ``root``: the kernel has overlayfs, and a test
    overlay with two lower layers mounts there and records a deletion as a whiteout
    (it does not on some upper filesystems, overlayfs itself among them)."""
    root = os.fspath(root)
    try:
        os.makedirs(root, exist_ok=True)
        check = tempfile.mkdtemp(prefix="overlay-check-", dir=root)
    except OSError as exc:
        log.info("overlay unsupported in %s: %s", root, exc)
        return False
    try:
        lower1, lower2, upper, work, merged = (
            os.path.join(check, d) for d in ("l1", "l2", "u", "w", "m")
        )
        for d in (lower1, lower2, upper, work, merged):
            os.mkdir(d)
        with open(os.path.join(lower2, "f"), "w"):
            pass
        options = overlay_options([lower1, lower2], upper, work, _feature_options())
        mount_all([Mount("overlay", "overlay", options)], merged)
        try:
            os.remove(os.path.join(merged, "f"))
        finally:
            unmount(merged)
        st = os.lstat(os.path.join(upper, "f"))
        return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    except (OSError, MoorageError) as exc:
        log.info("overlay unsupported in %s: %s", root, exc)
        return False
    finally:
        with contextlib.suppress(OSError, MoorageError):
            delete_tree(check)
