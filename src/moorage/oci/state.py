"""The OCI runtime state of a container, as ``moor-runtime state <id>`` prints it.

This module owns the state record and its JSON form; where the runtime keeps its own
bookkeeping and how it finds a container's status is the runtime's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from moorage.errors import InvalidArgument
from moorage.oci.version import OCI_VERSION

__all__ = ["OCI_VERSION", "State", "Status"]


class Status(StrEnum):
    """The lifecycle statuses of the runtime spec (``paused`` is runc's addition)."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"


# The spec requires a pid while the container process exists and has not been reaped.
_NEEDS_PID = frozenset({Status.CREATED, Status.RUNNING})


@dataclass(frozen=True, slots=True)
class State:
    """The state of one container. ``status`` also accepts its plain string value."""

    oci_version: str
    id: str
    status: Status
    pid: int | None
    bundle: str
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            try:
                status = Status(self.status)
            except ValueError:
                raise InvalidArgument(f"unknown container status: {self.status!r}") from None
            # The dataclass is frozen; this is its own constructor normalising a field.
            object.__setattr__(self, "status", status)

    def to_dict(self) -> dict[str, Any]:
        """The OCI state JSON. A stopped container without a pid has no ``pid`` key."""
        out: dict[str, Any] = {"ociVersion": self.oci_version, "id": self.id}
        out["status"] = self.status.value
        if self.pid is not None and not (self.pid == 0 and self.status is Status.STOPPED):
            out["pid"] = self.pid
        out["bundle"] = self.bundle
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_dict(cls, data: object, source: str = "state") -> State:
        """Validate decoded state JSON; errors start with ``source`` and name the key."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"{source}: must be an object")

        def string(key: str) -> str:
            value = data.get(key)
            if value is None:
                raise InvalidArgument(f"{source}: {key}: missing")
            if not isinstance(value, str):
                raise InvalidArgument(f"{source}: {key}: must be a string")
            return value

        raw_status = string("status")
        try:
            status = Status(raw_status)
        except ValueError:
            raise InvalidArgument(f'{source}: status: unknown status "{raw_status}"') from None
        pid = data.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid < 0):
            raise InvalidArgument(f"{source}: pid: must be a non-negative integer")
        if status in _NEEDS_PID and not pid:
            raise InvalidArgument(f"{source}: pid: required when status is {status.value}")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            raise InvalidArgument(f"{source}: annotations: must be an object of strings")
        return cls(
            oci_version=string("ociVersion"),
            id=string("id"),
            status=status,
            pid=pid,
            bundle=string("bundle"),
            annotations=dict(annotations),
        )
