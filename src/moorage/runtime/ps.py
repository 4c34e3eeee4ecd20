"""``ps``: the processes of a container, from its cgroup."""

from __future__ import annotations

from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import ContainerDir


def container_pids(root: str, container_id: str) -> list[int]:
    record = ContainerDir(root, container_id).read()
    return sorted(new_manager(record.cgroups_path or None, container_id).pids())
