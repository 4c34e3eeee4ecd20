"""``delete``: remove a stopped (or, with force, any) container and everything it holds."""

from __future__ import annotations

import contextlib
import signal

from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import (
    CREATED,
    STOPPED,
    ContainerDir,
    oci_state,
    require,
    status_of,
)
from moorage.runtime.create import kill_and_reap


def delete(root: str, container_id: str, force: bool = False) -> None:
    cdir = ContainerDir(root, container_id)
    with cdir.locked():
        record = cdir.read()
        cgroup = new_manager(record.cgroups_path or None, container_id)
        status = status_of(cdir, record, frozen=_frozen(cgroup))
        if not force:
            require("delete", container_id, status)
        if status != STOPPED:
            if status != CREATED:
                with contextlib.suppress(Exception):
                    cgroup.kill_all(signal.SIGKILL)
            kill_and_reap(record.pid, record.pid_start)
        if cgroup.exists():
            cgroup.kill_all(signal.SIGKILL)
            cgroup.destroy()
        state = oci_state(record, STOPPED).to_dict() if record.config.get("hooks") else {}
        cdir.remove()
    poststop = record.config.get("hooks", {}).get("poststop")
    if poststop:
        from moorage.runtime.hooks import run_hook_dicts_warn

        run_hook_dicts_warn(poststop, "poststop", state)


def _frozen(cgroup: object) -> bool:
    try:
        return bool(cgroup.is_frozen())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a missing cgroup is simply not frozen
        return False
