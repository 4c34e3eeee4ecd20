"""``state``: the OCI state of one container."""

from __future__ import annotations

from moorage.oci.state import State
from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import ContainerDir, ContainerRecord, oci_state, status_of


def current_status(cdir: ContainerDir, record: ContainerRecord) -> str:
    frozen = False
    if record.pid:
        try:
            frozen = new_manager(record.cgroups_path or None, record.id).is_frozen()
        except Exception:  # noqa: BLE001 - no cgroup means not frozen
            frozen = False
    return status_of(cdir, record, frozen=frozen)


def state(root: str, container_id: str) -> State:
    cdir = ContainerDir(root, container_id)
    record = cdir.read()
    return oci_state(record, current_status(cdir, record))


def state_json(root: str, container_id: str) -> dict[str, object]:
    """What ``moor-runtime state`` prints: the OCI state plus runc's extra fields.

    containerd's runc client reads ``rootfs``, ``created`` and ``owner`` too.
    """
    cdir = ContainerDir(root, container_id)
    record = cdir.read()
    data: dict[str, object] = oci_state(record, current_status(cdir, record)).to_dict()
    # runc's `state` leaves owner empty (only `list` fills it in); match it.
    data.update(rootfs=record.rootfs, created=record.created, owner="")
    return data
