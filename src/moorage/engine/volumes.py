"""Named volumes with Docker's ``local`` driver: their directories and their records.

Layout, as Docker's::

    <root>/volumes/                     0700
      metadata.db                       SQLite (WAL): one row per volume
      <name>/_data                      the volume's content (what a container mounts)
      .trash-<random>/                  a volume being removed (swept on open)
      <name>/.copyup-<random>/          a copy-up in progress (swept before the next one)

The service returns what the Docker Engine API returns (``Volume``, ``VolumeListResponse``,
``VolumePruneResponse``) as dicts, and keeps the rows as :class:`VolumeRecord`. Which
containers use a volume is the container side's knowledge, not this module's: the caller
passes ``in_use(name)``, which returns the ids of the containers that use the volume
(empty when none), so that ``remove`` can name them as Docker does.

Docker's semantics kept here:

- ``create`` of an existing name returns the existing volume unchanged, whatever labels
  or options were asked for (Docker's volume store does the same).
- ``remove`` of a volume in use is a Conflict even with ``force``; ``force`` only makes
  a missing volume not an error.
- ``prune`` removes unused anonymous volumes only, unless ``all`` (Docker 23+). Anonymous
  volumes carry the label ``com.docker.volume.anonymous`` as in Docker.
- ``driver_opts`` of the local driver: ``type=tmpfs`` (``device=tmpfs``, ``o=size=...``)
  or ``type=none`` with ``o=bind`` and an absolute ``device``. They are validated and
  stored; the engine mounts them on ``_data`` when a container uses the volume, from the
  data :meth:`VolumeService.volume_mount` returns, and unmounts when the last user goes.

Copy-up (:meth:`VolumeService.populate_from_image`): the first time a volume is mounted at
a path where the image has a directory, that directory's content is copied into the
volume, once, and only while the volume is empty. The path is resolved inside the image
root with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``, so neither ``..`` nor a
symlink in the image can lead outside it; ``cp -a`` then copies from the resolved
``/proc/self/fd/N/.`` without following any symlink below it (ownership, modes, times,
xattrs, symlinks, hardlinks and the directory's own owner and mode travel). For a plain
volume the copy goes to a staging directory that replaces the empty ``_data`` by a
rename, so a crash never leaves a half-copied volume that looks populated.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    Unavailable,
)
from moorage.store.sqlite import migrate
from moorage.sys import libc

__all__ = [
    "ANONYMOUS_LABEL",
    "SCHEMA_VERSION",
    "InUse",
    "VolumeMount",
    "VolumeRecord",
    "VolumeService",
    "validate_name",
]

log = logging.getLogger(__name__)

# The ids of the containers that use a volume; empty when none does.
InUse = Callable[[str], Sequence[str]]

ANONYMOUS_LABEL: Final = "com.docker.volume.anonymous"
LOCAL_DRIVER: Final = "local"

_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# Files that live next to the volume directories; a volume may not take their names.
_RESERVED: Final = frozenset(
    {"metadata.db", "metadata.db-wal", "metadata.db-shm", "metadata.db-journal"}
)
_OPTION_KEYS: Final = frozenset({"type", "device", "o"})
_TRASH_PREFIX: Final = ".trash-"
_COPYUP_PREFIX: Final = ".copyup-"
_BUSY_TIMEOUT_MS: Final = 10_000
_IN_ROOT: Final = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 0 -> 1
    (
        """CREATE TABLE volumes (
            name TEXT PRIMARY KEY,
            driver TEXT NOT NULL,
            created_at TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            options TEXT NOT NULL DEFAULT '{}',
            anonymous INTEGER NOT NULL DEFAULT 0,
            populated INTEGER NOT NULL DEFAULT 0
        )""",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def validate_name(name: str) -> str:
    """``name`` if Docker's local driver would accept it, else InvalidArgument."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _RESERVED:
        raise InvalidArgument(f'invalid volume name: "{name}"')
    return name


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class VolumeMount:
    """What the engine mounts on ``target`` (the volume's ``_data``) before a container
    uses a volume created with driver options; a plain volume needs no mount."""

    type: str  # "tmpfs" or "bind"
    source: str
    target: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeRecord:
    """One row of the volumes table."""

    name: str
    driver: str
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    anonymous: bool = False
    populated: bool = False

    def to_api(self, mountpoint: str) -> dict[str, Any]:
        """Docker Engine API's ``Volume`` object."""
        return {
            "CreatedAt": self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Driver": self.driver,
            "Labels": dict(self.labels),
            "Mountpoint": mountpoint,
            "Name": self.name,
            "Options": dict(self.options) or None,
            "Scope": "local",
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> VolumeRecord:
        return cls(
            name=row["name"],
            driver=row["driver"],
            created_at=datetime.fromisoformat(row["created_at"]),
            labels=_str_map(row["labels"]),
            options=_str_map(row["options"]),
            anonymous=bool(row["anonymous"]),
            populated=bool(row["populated"]),
        )


def _str_map(text: str) -> dict[str, str]:
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _json_map(value: Mapping[str, str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, val in (value or {}).items():
        if not isinstance(key, str) or not key or not isinstance(val, str):
            raise InvalidArgument(f"{what} must map non-empty strings to strings")
        out[key] = val
    return out


def _check_options(opts: Mapping[str, str]) -> None:
    """Docker's local driver options, limited to tmpfs and bind volumes."""
    if not opts:
        return
    for key in sorted(opts):
        if key not in _OPTION_KEYS:
            raise InvalidArgument(f'invalid option: "{key}"')
    kind = opts.get("type", "")
    if not kind:
        raise InvalidArgument('missing required option: "type"')
    if kind not in ("tmpfs", "none"):
        raise NotSupported(f'volume type not supported: "{kind}" (want tmpfs or none)')
    device = opts.get("device", "")
    if not device:
        raise InvalidArgument('missing required option: "device"')
    if kind == "none":
        flags = [o.strip() for o in opts.get("o", "").split(",")]
        if "bind" not in flags and "rbind" not in flags:
            raise NotSupported('volume type "none" needs o=bind')
        if not os.path.isabs(device):
            raise InvalidArgument(f"bind volume device must be an absolute path: {device}")


def _mounted(path: str) -> bool:
    """Whether something is mounted exactly on ``path`` (this mount namespace)."""
    from moorage.sys import procfs

    real = os.path.realpath(path)
    return any(m.mount_point == real for m in procfs.mountinfo())


# --------------------------------------------------------------------------- filters


def _normalise_filters(filters: Mapping[str, Any] | None, known: set[str]) -> dict[str, list[str]]:
    """Docker's filter forms: ``{"k": ["v", ...]}`` or the older ``{"k": {"v": true}}``."""
    out: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in known:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(values, str):
            out[key] = [values]
        elif isinstance(values, Mapping):
            out[key] = [str(v) for v, on in values.items() if on]
        else:
            out[key] = [str(v) for v in values]
    return out


def _bool_filter(key: str, values: list[str]) -> bool:
    wanted = {v.lower() for v in values}
    if not wanted <= {"true", "false", "1", "0"}:
        raise InvalidArgument(f"invalid filter '{key}={values[0]}'")
    if len({v in ("true", "1") for v in wanted}) > 1:
        raise InvalidArgument(f"conflicting filter values for '{key}'")
    return next(iter(wanted)) in ("true", "1")


def _labels_match(labels: Mapping[str, str], specs: Iterable[str]) -> bool:
    """Every ``key`` or ``key=value`` in ``specs`` holds (Docker ANDs label filters)."""
    for spec in specs:
        key, sep, value = spec.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _name_match(name: str, patterns: list[str]) -> bool:
    # Docker matches the name filter as a regular expression, found anywhere.
    for pattern in patterns:
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            if pattern in name:
                return True
    return False


# --------------------------------------------------------------------------- sizes


def _tree_size(top: str) -> int:
    """Bytes of regular files and symlinks under ``top``, each inode once, no symlink followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [top]
    while stack:
        path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if not os.path.ismount(entry.path):
                    stack.append(entry.path)
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


# --------------------------------------------------------------------------- service


class VolumeService:
    """The volumes under ``<root>/volumes``. Thread-safe; one per process and root.

    Example::

        vols = VolumeService("/var/lib/moorage")
        vols.create("db", labels={"app": "web"})["Mountpoint"]
        # '/var/lib/moorage/volumes/db/_data'
        vols.list({"label": ["app=web"]})["Volumes"][0]["Name"]          # 'db'
        vols.remove("db", in_use=containers.using_volume)   # Conflict if a container uses it
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.join(os.fspath(root), "volumes")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.db_path = os.path.join(self.root, "metadata.db")
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        try:
            mode = self._connection().execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        if str(mode).lower() != "wal":
            raise FailedPrecondition(f"volume database {self.db_path}: cannot use WAL ({mode})")
        self._migrate()
        self._sweep_trash()

    # ----------------------------------------------------------------- database

    def _connection(self) -> sqlite3.Connection:
        # A connection inherited through fork() belongs to the parent: open a new one.
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.db_path,
                    timeout=_BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,  # serialised by self._lock
                )
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> VolumeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translate(self, exc: sqlite3.Error) -> MoorageError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return Unavailable(f"volume database is busy: {self.db_path}")
        return FailedPrecondition(f"volume database {self.db_path}: {text}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), under the thread lock."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise self._translate(exc) from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._translate(exc) from exc

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> builtins.list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._connection().execute(sql, args))
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _migrate(self) -> None:
        with self._write() as conn:
            migrate(conn, _MIGRATIONS, f"volume database {self.db_path}")

    def _get(self, name: str) -> VolumeRecord:
        rows = self._query("SELECT * FROM volumes WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no such volume: {name}")
        return VolumeRecord.from_row(rows[0])

    def _records(self) -> builtins.list[VolumeRecord]:
        return [
            VolumeRecord.from_row(r) for r in self._query("SELECT * FROM volumes ORDER BY name")
        ]

    # ----------------------------------------------------------------- paths

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def mount_source(self, name: str) -> str:
        """The host path a container mounts for volume ``name`` (its ``_data``)."""
        self._get(name)
        data = os.path.join(self._dir(name), "_data")
        # Recreated if a crash came between a removal's rename and its row's deletion,
        # or in the middle of a copy-up's swap.
        os.makedirs(data, mode=0o755, exist_ok=True)
        return data

    def volume_mount(self, name: str) -> VolumeMount | None:
        """The mount to apply on ``_data`` before use, for a volume with driver options."""
        rec = self._get(name)
        if not rec.options:
            return None
        target = self.mount_source(name)
        flags = tuple(o for o in rec.options.get("o", "").split(",") if o)
        if rec.options["type"] == "tmpfs":
            return VolumeMount("tmpfs", rec.options["device"], target, flags)
        return VolumeMount("bind", rec.options["device"], target, flags)

    def activate(self, name: str) -> None:
        """Mount a volume with driver options on its ``_data`` (once: the containers that
        use it share that mount), before a container starts with it; nothing for a plain
        volume. Docker's local driver does the same on first use."""
        vm = self.volume_mount(name)
        if vm is None or _mounted(vm.target):
            return
        try:
            if vm.type == "tmpfs":
                data = ",".join(o for o in vm.options if o not in ("rw", "ro")) or None
                flags = libc.MS_RDONLY if "ro" in vm.options else 0
                libc.mount(vm.source or "tmpfs", vm.target, "tmpfs", flags, data)
            else:
                flags = libc.MS_BIND | (libc.MS_REC if "rbind" in vm.options else 0)
                libc.mount(vm.source, vm.target, None, flags, None)
        except OSError as exc:
            raise FailedPrecondition(
                f"volume {name}: cannot mount {vm.type} {vm.source}: {exc.strerror or exc}"
            ) from exc

    def deactivate(self, name: str) -> None:
        """Undo :meth:`activate` once no running container uses the volume."""
        try:
            vm = self.volume_mount(name)
        except NotFound:
            return
        if vm is not None and _mounted(vm.target):
            with contextlib.suppress(OSError):
                libc.umount2(vm.target, libc.MNT_DETACH)

    def _sweep_trash(self) -> None:
        for entry in os.listdir(self.root):
            if entry.startswith(_TRASH_PREFIX):
                try:
                    self._rmtree(os.path.join(self.root, entry))
                except Conflict as exc:
                    log.warning("volumes: %s", exc)

    def _rmtree(self, path: str) -> None:
        # Never descend into a mount (a bind volume still mounted would lose host files).
        for dirpath, dirnames, _ in os.walk(path):
            for d in dirnames:
                if os.path.ismount(os.path.join(dirpath, d)):
                    raise Conflict(
                        f"refusing to delete {path}: {os.path.join(dirpath, d)} is mounted"
                    )
        shutil.rmtree(path, ignore_errors=True)

    # ----------------------------------------------------------------- API verbs

    def create(
        self,
        name: str | None = None,
        driver: str = LOCAL_DRIVER,
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a volume (anonymous, with a random 64-hex name, when ``name`` is None).

        An existing name is returned as it is, as Docker does, even if ``labels`` or
        ``driver_opts`` differ.
        """
        if (driver or LOCAL_DRIVER) != LOCAL_DRIVER:
            raise NotSupported(f"volume driver not supported: {driver}")
        anonymous = not name
        name = secrets.token_hex(32) if anonymous else validate_name(name or "")
        label_map = _json_map(labels, f"volume {name}: labels")
        opts = _json_map(driver_opts, f"volume {name}: driver options")
        _check_options(opts)
        if anonymous:
            label_map.setdefault(ANONYMOUS_LABEL, "")
        data = os.path.join(self._dir(name), "_data")
        with self._write() as conn:
            row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return VolumeRecord.from_row(row).to_api(data)
            # A directory left by a create that crashed before its row is reused.
            os.makedirs(data, mode=0o755, exist_ok=True)
            rec = VolumeRecord(name, LOCAL_DRIVER, datetime.now(UTC), label_map, opts, anonymous)
            conn.execute(
                "INSERT INTO volumes (name, driver, created_at, labels, options, anonymous)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    rec.name,
                    rec.driver,
                    rec.created_at.isoformat(timespec="microseconds"),
                    json.dumps(dict(rec.labels), sort_keys=True),
                    json.dumps(dict(rec.options), sort_keys=True),
                    int(rec.anonymous),
                ),
            )
        log.debug("created volume %s", name)
        return rec.to_api(data)

    def get(self, name: str) -> VolumeRecord:
        """The record of volume ``name``; NotFound if there is none."""
        return self._get(name)

    def inspect(self, name: str) -> dict[str, Any]:
        return self._get(name).to_api(os.path.join(self._dir(name), "_data"))

    def list(
        self, filters: Mapping[str, Any] | None = None, in_use: InUse | None = None
    ) -> dict[str, Any]:
        """``GET /volumes``: filters ``name``, ``label``, ``driver``, ``dangling``.

        ``dangling`` needs ``in_use``.
        """
        flt = _normalise_filters(filters, {"name", "label", "driver", "dangling"})
        dangling: bool | None = None
        if flt.get("dangling"):
            if in_use is None:
                raise InvalidArgument("the dangling filter needs to know which volumes are in use")
            dangling = _bool_filter("dangling", flt["dangling"])
        volumes = []
        for rec in self._records():
            if flt.get("name") and not _name_match(rec.name, flt["name"]):
                continue
            if flt.get("driver") and rec.driver not in flt["driver"]:
                continue
            if not _labels_match(rec.labels, flt.get("label", [])):
                continue
            if dangling is not None and in_use is not None and bool(in_use(rec.name)) == dangling:
                continue
            volumes.append(rec.to_api(os.path.join(self._dir(rec.name), "_data")))
        return {"Volumes": volumes, "Warnings": []}

    def remove(self, name: str, *, in_use: InUse, force: bool = False) -> None:
        """Delete a volume and its data. In use: Conflict, even with ``force`` (as Docker);
        ``force`` only makes a missing volume not an error."""
        try:
            self._get(name)
        except NotFound:
            if force:
                return
            raise
        users = list(in_use(name))
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{' '.join(users)}]")
        self._delete(name)

    def _delete(self, name: str) -> None:
        vdir = self._dir(name)
        data = os.path.join(vdir, "_data")
        if os.path.ismount(data):
            raise Conflict(f"remove {name}: volume is mounted at {data}")
        # Rename first: the name is free of data at once, and a crash leaves only trash
        # (swept on the next open) or a row whose _data mount_source recreates.
        trash = os.path.join(self.root, _TRASH_PREFIX + secrets.token_hex(8))
        with contextlib.suppress(FileNotFoundError):
            os.rename(vdir, trash)
        with self._write() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        self._rmtree(trash)
        log.debug("removed volume %s", name)

    def prune(
        self, in_use: InUse, all: bool = False, filters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Remove unused volumes: anonymous ones only unless ``all`` (Docker 23+).

        ``filters``: ``label`` (``k`` or ``k=v``), ``label!`` and ``all`` as Docker's API.
        """
        flt = _normalise_filters(filters, {"label", "label!", "all"})
        if flt.get("all"):
            all = all or _bool_filter("all", flt["all"])
        deleted: list[str] = []
        reclaimed = 0
        for rec in self._records():
            if not all and not rec.anonymous and ANONYMOUS_LABEL not in rec.labels:
                continue
            if not _labels_match(rec.labels, flt.get("label", [])):
                continue
            if any(_labels_match(rec.labels, [spec]) for spec in flt.get("label!", [])):
                continue
            if in_use(rec.name):
                continue
            data = os.path.join(self._dir(rec.name), "_data")
            size = _tree_size(data) if not os.path.ismount(data) else 0
            try:
                self._delete(rec.name)
            except Conflict as exc:
                log.warning("prune: %s", exc)
                continue
            deleted.append(rec.name)
            reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def usage(self, name: str, in_use: InUse | None = None) -> tuple[int, int]:
        """``(size, refcount)`` for ``system df``; refcount is -1 without ``in_use``,
        as Docker's ``UsageData`` says "not computed"."""
        self._get(name)
        size = _tree_size(os.path.join(self._dir(name), "_data"))
        return size, (len(in_use(name)) if in_use is not None else -1)

    # ----------------------------------------------------------------- copy-up

    def populate_from_image(self, name: str, image_dir: str, path_in_image: str) -> bool:
        """Copy the image's content at ``path_in_image`` into volume ``name``; True if copied.

        Happens at most once per volume, only while its ``_data`` is empty, and only if
        the path is a directory in the image (resolved inside ``image_dir``: symlinks and
        ``..`` cannot leave it). A volume with driver options must be mounted by the caller
        first; the copy then goes straight into the mount.
        """
        rec = self._get(name)
        if rec.populated:
            return False
        vdir = self._dir(name)
        data = self.mount_source(name)
        lock_fd = os.open(vdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # another container may be starting with it
            if self._get(name).populated or os.listdir(data):
                return False
            src_fd = self._open_in_image(image_dir, path_in_image)
            if src_fd is None:
                return False
            try:
                if rec.options:
                    _copy_tree(src_fd, data)
                else:
                    self._staged_copy(src_fd, vdir, data)
            finally:
                os.close(src_fd)
            with self._write() as conn:
                conn.execute("UPDATE volumes SET populated = 1 WHERE name = ?", (name,))
        finally:
            os.close(lock_fd)
        log.debug("populated volume %s from %s", name, path_in_image)
        return True

    @staticmethod
    def _open_in_image(image_dir: str, path_in_image: str) -> int | None:
        """An O_PATH descriptor of the directory at ``path_in_image``, or None."""
        root_fd = os.open(image_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return libc.openat2(
                root_fd, path_in_image.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY, _IN_ROOT
            )
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise FailedPrecondition(
                f"cannot open {path_in_image} in image: {os.strerror(exc.errno or 0)}"
            ) from exc
        finally:
            os.close(root_fd)

    @staticmethod
    def _staged_copy(src_fd: int, vdir: str, data: str) -> None:
        for entry in os.listdir(vdir):
            if entry.startswith(_COPYUP_PREFIX):  # left by a crash
                shutil.rmtree(os.path.join(vdir, entry), ignore_errors=True)
        staging = os.path.join(vdir, _COPYUP_PREFIX + secrets.token_hex(8))
        try:
            _copy_tree(src_fd, staging)
            os.rmdir(data)  # empty, checked under the lock
            os.rename(staging, data)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _copy_tree(src_fd: int, dest: str) -> None:
    """``cp -a`` of the directory ``src_fd`` refers to, onto (or as) ``dest``."""
    # "/." makes cp go through the magic link to the directory and copy its content
    # (and its own owner and mode) without following any symlink below it.
    src = f"/proc/self/fd/{src_fd}/."
    proc = subprocess.run(
        ["cp", "-a", "--", src, dest],
        pass_fds=(src_fd,),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FailedPrecondition(f"copying image content into {dest}: {proc.stderr.strip()}")
