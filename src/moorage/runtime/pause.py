"""``pause`` and ``resume``: freeze and thaw every process of a container."""

from __future__ import annotations

from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import ContainerDir, require
from moorage.runtime.state import current_status


def pause(root: str, container_id: str) -> None:
    cdir = ContainerDir(root, container_id)
    with cdir.locked():
        record = cdir.read()
        require("pause", container_id, current_status(cdir, record))
        new_manager(record.cgroups_path or None, container_id).freeze()


def resume(root: str, container_id: str) -> None:
    cdir = ContainerDir(root, container_id)
    with cdir.locked():
        record = cdir.read()
        require("resume", container_id, current_status(cdir, record))
        new_manager(record.cgroups_path or None, container_id).thaw()
