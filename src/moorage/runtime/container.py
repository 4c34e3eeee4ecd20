"""A container's record on disk and the state machine that guards each verb.

Layout under the runtime root (``--root``, default ``/run/moor-runtime``)::

    <root>/<id>/state.json   the record: bundle, pid, start time, config, cgroup
    <root>/<id>/exec.fifo    exists from create until start (init blocks on it)
    <root>/<id>/lock         flock()ed by every verb that changes the container

The status is derived, never trusted from the file alone (as runc does): a record
whose fifo still exists and whose init is alive is ``created``; an alive init is
``running`` (``paused`` when its cgroup is frozen); otherwise it is ``stopped``.
The init is identified by pid *and* start time so that a recycled pid never passes
for the container.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from moorage.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from moorage.sys import procfs

if TYPE_CHECKING:
    from moorage.oci.state import State

DEFAULT_ROOT = "/run/moor-runtime"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.-]{0,1023}$")

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


def validate_id(container_id: str) -> None:
    if not _ID_RE.match(container_id) or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id: {container_id!r}")


class ContainerRecord:
    """What ``create`` writes and every later verb reads (mutable: create fills in the pid).

    A plain class, not a dataclass: it is defined on every container start, where
    the dataclass machinery is measurable.
    """

    __slots__ = (
        "annotations",
        "bundle",
        "cgroups_path",
        "config",
        "created",
        "id",
        "owner",
        "pid",
        "pid_start",
        "rootfs",
    )

    def __init__(
        self,
        id: str,
        bundle: str,
        rootfs: str,
        created: str,
        config: dict[str, Any],
        pid: int = 0,
        pid_start: int = 0,
        cgroups_path: str = "",
        annotations: dict[str, str] | None = None,
        owner: str = "root",
    ) -> None:
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.config = config
        self.pid = pid
        self.pid_start = pid_start
        self.cgroups_path = cgroups_path
        self.annotations = annotations if annotations is not None else {}
        self.owner = owner

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "bundle": self.bundle,
                "rootfs": self.rootfs,
                "created": self.created,
                "pid": self.pid,
                "pid_start": self.pid_start,
                "cgroups_path": self.cgroups_path,
                "annotations": self.annotations,
                "owner": self.owner,
                "config": self.config,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ContainerRecord:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            bundle=data["bundle"],
            rootfs=data["rootfs"],
            created=data["created"],
            config=data["config"],
            pid=data.get("pid", 0),
            pid_start=data.get("pid_start", 0),
            cgroups_path=data.get("cgroups_path", ""),
            annotations=data.get("annotations", {}),
            owner=data.get("owner", "root"),
        )


class ContainerDir:
    """One container's directory under the runtime root."""

    def __init__(self, root: str | os.PathLike[str], container_id: str) -> None:
        validate_id(container_id)
        self.id = container_id
        self.root = os.fspath(root)
        self.path = os.path.join(self.root, container_id)
        self.state_file = os.path.join(self.path, "state.json")
        self.fifo = os.path.join(self.path, "exec.fifo")

    def exists(self) -> bool:
        return os.path.exists(self.state_file)

    def make(self) -> None:
        """Create the directory; fails if the id is taken."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError as exc:
            raise AlreadyExists(f"container with id exists: {self.id}") from exc

    def remove(self) -> None:
        for name in ("state.json", "exec.fifo", "lock", "state.tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.path, name))
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.path)

    def write(self, record: ContainerRecord) -> None:
        """Crash-safe write: temporary name, fsync, rename."""
        tmp = os.path.join(self.path, "state.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, record.to_json())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.state_file)

    def read(self) -> ContainerRecord:
        try:
            with open(self.state_file, "rb") as f:
                raw = f.read()
        except FileNotFoundError as exc:
            raise NotFound(f"container does not exist: {self.id}") from exc
        try:
            return ContainerRecord.from_json(raw)
        except (ValueError, KeyError) as exc:
            raise InvalidArgument(f"corrupt state for container {self.id}: {exc}") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise verbs that change this container (start vs delete, two starts...)."""
        try:
            fd = os.open(
                os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except FileNotFoundError as exc:  # the state dir is gone: deleted meanwhile
            raise NotFound(f"container does not exist: {self.id}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def init_alive(record: ContainerRecord) -> bool:
    """True while the container's init (same pid, same start time) has not exited."""
    if record.pid <= 0:
        return False
    info = procfs.stat(record.pid)
    return info is not None and info.start_time == record.pid_start and info.state != "Z"


def status_of(cdir: ContainerDir, record: ContainerRecord, frozen: bool = False) -> str:
    if record.pid <= 0:
        return CREATING if os.path.exists(cdir.fifo) else STOPPED
    if not init_alive(record):
        return STOPPED
    if os.path.exists(cdir.fifo):
        return CREATED
    return PAUSED if frozen else RUNNING


def oci_state(record: ContainerRecord, status: str) -> State:
    from moorage.oci.state import State
    from moorage.oci.version import OCI_VERSION

    return State(
        oci_version=OCI_VERSION,
        id=record.id,
        status=status,  # type: ignore[arg-type]
        pid=record.pid if status != STOPPED else 0,
        bundle=record.bundle,
        annotations=dict(record.annotations),
    )


# The state machine: which statuses each verb accepts.
_ALLOWED: dict[str, frozenset[str]] = {
    "start": frozenset({CREATED}),
    "kill": frozenset({CREATED, RUNNING, PAUSED}),
    "exec": frozenset({CREATED, RUNNING}),
    "pause": frozenset({RUNNING}),
    "resume": frozenset({PAUSED}),
    "update": frozenset({CREATED, RUNNING, PAUSED}),
    "delete": frozenset({STOPPED, CREATED}),
}


def require(verb: str, container_id: str, status: str) -> None:
    """Raise Conflict unless ``verb`` is legal in ``status``."""
    if status not in _ALLOWED[verb]:
        if verb == "start" and status in (RUNNING, PAUSED):
            raise Conflict(f"cannot start an already running container: {container_id}")
        if verb == "delete":
            raise Conflict(f"cannot delete container {container_id} that is not stopped: {status}")
        raise Conflict(f"cannot {verb} container {container_id}: container is {status}")
