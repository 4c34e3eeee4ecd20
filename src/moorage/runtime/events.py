"""``events``: OOM kills as they happen, and resource statistics, as JSON lines."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson

from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import ContainerDir, init_alive


def _emit(kind: str, container_id: str, data: Any = None) -> None:
    event: dict[str, Any] = {"type": kind, "id": container_id}
    if data is not None:
        event["data"] = data
    sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


def events(root: str, container_id: str, *, stats: bool, interval: float) -> int:
    record = ContainerDir(root, container_id).read()  # NotFound for an unknown id
    cgroup = new_manager(record.cgroups_path or None, container_id)
    if stats:
        _emit("stats", container_id, cgroup.stats()._asdict())
        return 0
    # Nothing of the user's has run in a created container: count from zero, so that
    # a kill right after `start` is reported even if we read the counter late.
    cdir = ContainerDir(root, container_id)
    seen = 0 if os.path.exists(cdir.fifo) else cgroup.oom_kill_count()
    # Polling the counter is simple and survives the cgroup version; the interval
    # bounds how late an OOM kill is reported.
    while init_alive(record):
        time.sleep(min(interval, 1.0))
        count = cgroup.oom_kill_count() if cgroup.exists() else seen
        if count > seen:
            _emit("oom", container_id)
            seen = count
    return 0
