"""``update``: change the cgroup limits of a created, running or paused container.

The argument is an OCI ``linux.resources`` object holding only what changes, as
``runc update --resources`` takes it::

    update(root, "web", {"memory": {"limit": 67108864, "swap": 134217728},
                         "cpu": {"quota": 50000, "period": 100000},
                         "pids": {"limit": 64}})

A field left out (or null) keeps its value. The change is merged into the
container's saved config, the merged whole is validated as ``create`` validates it
(so memory and swap must still agree), then the changed settings are written to the
cgroup and the merged config saved, so that the next ``update`` starts from it.
Memory limit and swap travel together, as do CPU quota and period: the managers
need both to order their writes and to convert swap for cgroup v2. Device rules are
not updated, as runc does not update them either.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from moorage.errors import Conflict, InvalidArgument
from moorage.runtime.cgroups._log import LazyLogger
from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.cgroups.resources import CgroupResources
from moorage.runtime.container import STOPPED, ContainerDir, require
from moorage.runtime.state import current_status

__all__ = ["UPDATABLE", "merge_resources", "resources_to_apply", "update"]

log = LazyLogger(__name__)

# The linux.resources sections an update may change.
UPDATABLE = ("memory", "cpu", "pids", "blockIO", "hugepageLimits", "unified")

# Settings written together: each needs the other to be applied correctly.
_PARTNERS: dict[str, tuple[frozenset[str], ...]] = {
    "memory": (frozenset({"limit", "swap"}),),
    "cpu": (frozenset({"quota", "period"}),),
}


def update(root: str, container_id: str, resources: Mapping[str, Any]) -> None:
    """Apply ``resources`` (a partial ``linux.resources``) to the container's cgroup."""
    if not isinstance(resources, Mapping):
        raise InvalidArgument("update: resources must be a JSON object")
    cdir = ContainerDir(root, container_id)
    with cdir.locked():
        record = cdir.read()
        status = current_status(cdir, record)
        if status == STOPPED:
            raise Conflict(f"container not running: {container_id}")
        require("update", container_id, status)
        linux = record.config.setdefault("linux", {})
        merged = merge_resources(linux.get("resources") or {}, resources)
        CgroupResources.from_oci(merged)  # the whole must stay valid, not just the change
        changes = CgroupResources.from_oci(resources_to_apply(merged, resources))
        new_manager(record.cgroups_path or None, container_id).apply(changes)
        linux["resources"] = merged
        cdir.write(record)


def merge_resources(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with every non-null setting of ``changes`` over it.

    ``{"memory": {"limit": 1, "swap": 2}}`` merged with ``{"memory": {"limit": 3}}``
    is ``{"memory": {"limit": 3, "swap": 2}}``; hugepage limits merge by page size.
    A memory limit of -1 without a swap brings swap to -1 too (as runc does): the
    total cannot stay bounded when the memory is not.
    """
    merged = copy.deepcopy(dict(current))
    for section, value in changes.items():
        if value is None:
            continue
        if section not in UPDATABLE:
            log.warning("update: linux.resources.%s cannot be updated, ignored", section)
            continue
        where = f"linux.resources.{section}"
        if section == "hugepageLimits":
            merged[section] = _merge_hugepages(merged.get(section), value, where)
            continue
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{where}: expected an object")
        old = merged.get(section)
        base = dict(old) if isinstance(old, Mapping) else {}
        base.update({k: copy.deepcopy(v) for k, v in value.items() if v is not None})
        merged[section] = base
    memory = changes.get("memory")
    if isinstance(memory, Mapping) and memory.get("limit") == -1 and memory.get("swap") is None:
        merged["memory"]["swap"] = -1
    return merged


def resources_to_apply(merged: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The settings to write: those ``changes`` sets, with their partners from ``merged``."""
    out: dict[str, Any] = {}
    for section, value in changes.items():
        if value is None or section not in UPDATABLE or section not in merged:
            continue
        if not isinstance(value, Mapping):  # hugepageLimits: the page sizes named
            sizes = {item.get("pageSize") for item in value if isinstance(item, Mapping)}
            out[section] = [h for h in merged[section] if h.get("pageSize") in sizes]
            continue
        keys = {k for k, v in value.items() if v is not None}
        for group in _PARTNERS.get(section, ()):
            if keys & group:
                keys |= group
        picked = {k: v for k, v in merged[section].items() if k in keys}
        if picked:
            out[section] = picked
    return out


def _merge_hugepages(current: object, changes: object, where: str) -> list[Any]:
    if not isinstance(changes, list):
        raise InvalidArgument(f"{where}: expected an array")
    by_size: dict[object, Any] = {}
    for item in [*(current if isinstance(current, list) else []), *changes]:
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"{where}: expected an array of objects")
        by_size[item.get("pageSize")] = dict(item)
    return list(by_size.values())
