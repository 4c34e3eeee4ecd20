"""The containers service: create, start, stop, remove, and the truth about each.

Layout (see docs/engine.md)::

    <root>/containers/<id>/container.json   the record (engine.container_record)
                          /bundle/config.json the OCI spec, generated at each start
                          /rootfs             the snapshot, mounted while it runs
                          /hostname, hosts, resolv.conf
                          /<id>-json.log      written by the monitor
                          /state.json         written by the monitor
    <exec-root>/containers/<id>.sock          the monitor's control socket
    <exec-root>/runtime/                      the OCI runtime's state

Every running container has a monitor process (``engine.monitor``) that is its
parent. The service watches each monitor through a pidfd, whether it started it
or adopted it after a daemon restart, and learns the exit from ``state.json``.

Threads: the API layer calls in from worker threads; one lock guards the tables,
one lock per container serialises its lifecycle operations, and one watcher thread
waits on every monitor's pidfd. Restart policies run on timers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import select
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from moorage.engine import container_config as cfg
from moorage.engine import monitor_client
from moorage.engine.container_record import (
    CREATED,
    DEAD,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    Container,
    MountPoint,
    State,
    check_name,
    now_rfc3339,
)
from moorage.engine.etcfiles import hosts_file, lookup_user, resolv_conf
from moorage.engine.events import EventBus
from moorage.engine.monitor import read_state
from moorage.engine.monitor_zygote import MonitorZygote
from moorage.engine.network.service import ContainerNetworking, NetworkService, Prepared
from moorage.engine.restart import Backoff, should_restart
from moorage.engine.specgen import (
    ContainerRequest,
    VolumeMount,
    attach_volumes,
    generate_spec,
    parse_create,
    user_mounts,
)
from moorage.engine.watcher import MonitorWatcher
from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    Unavailable,
)
from moorage.oci.image import ContainerConfig
from moorage.runtime import api as runtime_api

log = logging.getLogger(__name__)

STOP_GRACE = 10  # seconds, Docker's default --stop-timeout
KILL_WAIT = 30.0  # seconds to wait for a SIGKILLed container's monitor to report
INIT_TARGET = "/sbin/docker-init"
ROOT_OWNER = "container:"  # gc_roots owner prefix: a container's snapshot is a GC root

# A callback the API layer registers before a start: it gets the monitor's socket path
# once the container is created (init blocked) and attaches before the start.
PendingAttach = Callable[[str], None]


class ContainerService:
    def __init__(
        self,
        root: str,
        exec_root: str,
        images: Any,
        volumes: Any,
        events: EventBus | None = None,
        *,
        cgroup_parent: str = "/moorage",
        networks: NetworkService | None = None,
    ) -> None:
        self.root = os.path.join(root, "containers")
        # None: containers get a network namespace with loopback only (tests of the
        # lifecycle alone); else the engine's networks (engine.network.service).
        self.networks = networks
        self.exec_root = exec_root
        self.runtime_root = os.path.join(exec_root, "runtime")
        self.socket_dir = os.path.join(exec_root, "containers")
        self.images = images
        self.volumes = volumes
        self.events = events or EventBus()
        parts = [part for part in cgroup_parent.split("/") if part]
        if not parts or any(part in (".", "..") for part in parts):
            raise InvalidArgument(f"invalid cgroup parent: {cgroup_parent!r}")
        self.cgroup_parent = "/" + "/".join(parts)
        for path in (self.root, self.runtime_root, self.socket_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._op_locks: dict[str, threading.Lock] = {}
        self._pending_attach: dict[str, list[PendingAttach]] = {}
        self._backoff: dict[str, Backoff] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False
        self._watcher = MonitorWatcher(self._monitor_exited)
        self._loading = True  # until _load has read every record
        # Monitors are forked from it (started on the first start); close() reaps it.
        self._monitor_zygote = MonitorZygote(self.exec_root)
        from moorage.engine.health import HealthService

        self.health = HealthService(self)
        self._load()

    # --- tables -------------------------------------------------------------------

    def _dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def _socket(self, cid: str) -> str:
        return os.path.join(self.socket_dir, f"{cid[:32]}.sock")

    def get(self, ref: str) -> Container:
        """A container by full id, name (with or without ``/``) or unique id prefix."""
        with self._lock:
            if ref in self._containers:
                return self._containers[ref]
            cid = self._names.get(ref.removeprefix("/"))
            if cid is not None:
                return self._containers[cid]
            matches = [c for i, c in self._containers.items() if ref and i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple containers found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        with self._lock:
            return list(self._containers.values())

    @contextlib.contextmanager
    def _operation(self, cid: str) -> Iterator[None]:
        with self._lock:
            lock = self._op_locks.setdefault(cid, threading.Lock())
        with lock:
            yield

    def _save(self, c: Container) -> None:
        with self._changed:  # one writer at a time: health, restarts and the API all save
            if os.path.isdir(self._dir(c.id)):
                c.save(self._dir(c.id))
            self._changed.notify_all()

    def _publish(self, c: Container, action: str, **extra: str) -> None:
        attributes = {"name": c.name, "image": c.image, **(c.config.get("Labels") or {}), **extra}
        self.events.publish("container", action, c.id, attributes)

    def health_changed(self, c: Container, status_changed: bool) -> None:
        self._save(c)
        if status_changed and c.state.health is not None:
            self._publish(c, "health_status: " + c.state.health["Status"])

    def using_volume(self, name: str) -> list[str]:
        return [c.id for c in self.all() if any(m.name == name for m in c.mounts)]

    def using_image(self, image_id: str) -> list[str]:
        return [c.id for c in self.all() if c.image_id == image_id]

    # --- create -------------------------------------------------------------------

    def create(self, body: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """``POST /containers/create``: returns ``{"Id", "Warnings"}``."""
        if not isinstance(body, dict):
            raise InvalidArgument("container config: must be a JSON object")
        request = parse_create(body)
        host_config = body.get("HostConfig") or {}
        restart = cfg.restart_policy(host_config)
        if restart["Name"] != "no" and host_config.get("AutoRemove"):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        cfg.check_log_config(host_config.get("LogConfig"))
        health = cfg.healthcheck(body.get("Healthcheck"))
        self._check_networks(request, body)
        image = self.images.resolve(request.image)
        image_config = image.config.config or ContainerConfig()
        cid = secrets.token_hex(32)
        with self._lock:
            if not name:
                name = cfg.random_name()
                while name in self._names:
                    name = cfg.random_name() + str(secrets.randbelow(10))
            name = check_name(name)
            other = self._names.get(name)
            if other is not None:
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other}". You have to remove (or rename) that container to be able '
                    "to reuse that name."
                )
            self._names[name] = cid  # reserved while we work
        directory = self._dir(cid)
        key = f"container-{cid}"
        owner = ROOT_OWNER + cid
        try:
            top = self.images.unpack(image)
            self.images.db.add_root("snapshot", key, owner)
            os.makedirs(directory, mode=0o710)
            self.images.snapshots.prepare(key, top or None)
            extra = [v for v in body.get("Volumes") or {} if isinstance(v, str)]
            mounts = self._create_volumes(cid, request, image_config, extra)
            config = cfg.merged_config(body, request, image_config, cid, health)
            self._write_etc_files(directory, config["Hostname"], host_config, Prepared("none"))
            entrypoint = list(config.get("Entrypoint") or [])
            args = entrypoint + list(config.get("Cmd") or [])
            if not args:
                raise InvalidArgument("no command specified")
            c = Container(
                id=cid,
                name=name,
                created=now_rfc3339(),
                image=request.image,
                image_id=image.id,
                path=args[0],
                args=args[1:],
                config=config,
                host_config=cfg.normalised_host_config(host_config, restart),
                request={**body, "ImageConfig": cfg.image_config_json(image_config)},
                snapshot_key=key,
                top_layer=top,
                mounts=mounts,
            )
            self._save(c)
        except BaseException:
            with self._lock:
                self._names.pop(name, None)
            self._discard(cid, key, owner)
            raise
        with self._lock:
            self._containers[cid] = c
        self._publish(c, "create")
        return {"Id": cid, "Warnings": list(request.warnings)}

    def _discard(self, cid: str, key: str, owner: str) -> None:
        with contextlib.suppress(MoorageError):
            self.images.snapshots.remove(key)
        self.images.db.remove_root("snapshot", key, owner)
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    def _create_volumes(
        self,
        cid: str,
        request: ContainerRequest,
        image_config: ContainerConfig,
        anonymous: list[str],
    ) -> list[MountPoint]:
        binds_and_tmpfs, volume_mounts = user_mounts(request)  # specgen parses -v, --mount
        out: list[MountPoint] = []
        taken = {m["destination"] for m in binds_and_tmpfs}
        for vm in volume_mounts:
            taken.add(vm.target)
            out.append(self._volume_point(vm.name, vm.target, vm.readonly, vm.no_copy))
        # The image's VOLUMEs and the request's (``-v /path``) become anonymous volumes.
        for target in [*image_config.volumes, *anonymous]:
            if not target.startswith("/"):
                raise InvalidArgument(f"Volumes: {target!r} is not an absolute path")
            if os.path.normpath(target) not in {os.path.normpath(t) for t in taken}:
                taken.add(target)
                out.append(self._volume_point("", os.path.normpath(target), False, False))
        for bind in binds_and_tmpfs:
            if bind.get("type") == "bind":
                out.append(
                    MountPoint(
                        type="bind",
                        destination=bind["destination"],
                        source=bind["source"],
                        rw="ro" not in bind.get("options", []),
                        propagation="rprivate",
                    )
                )
            elif bind.get("type") == "tmpfs":
                out.append(MountPoint(type="tmpfs", destination=bind["destination"]))
        return out

    def _volume_point(self, name: str, target: str, readonly: bool, no_copy: bool) -> MountPoint:
        from moorage.engine.volumes import ANONYMOUS_LABEL

        anonymous = not name
        if anonymous:
            record = self.volumes.create(secrets.token_hex(32), labels={ANONYMOUS_LABEL: ""})
        else:
            record = self.volumes.create(name)
        return MountPoint(
            type="volume",
            destination=target,
            source=record["Mountpoint"],
            name=record["Name"],
            rw=not readonly,
            mode="" if not readonly else "ro",
            no_copy=no_copy,
            anonymous=anonymous,
        )

    def _check_networks(self, request: ContainerRequest, body: dict[str, Any]) -> None:
        """The networks (or the container) a new container names exist."""
        if request.network_mode.startswith("container:"):
            self.get(request.network_mode.removeprefix("container:"))
        elif self.networks is not None and request.network_mode == "bridge":
            self.networks.check(_networking(body, "", ""))

    @staticmethod
    def _write_etc_files(
        directory: str, hostname: str, host_config: dict[str, Any], prepared: Prepared
    ) -> None:
        """hostname, hosts and resolv.conf: the container's address and DNS server
        (a user-defined network's) when it has them."""
        try:
            with open("/etc/resolv.conf") as f:
                host_resolv = f.read()
        except OSError:
            host_resolv = ""
        address = None if prepared.address is None else str(prepared.address)
        extra_hosts = list(host_config.get("ExtraHosts") or [])
        files = {
            "hostname": hostname + "\n",
            "hosts": hosts_file(hostname, address, extra_hosts),
            "resolv.conf": resolv_conf(
                host_resolv,
                list(host_config.get("Dns") or prepared.nameservers),
                list(host_config.get("DnsSearch") or []),
                list(host_config.get("DnsOptions") or []),
            ),
        }
        for name, text in files.items():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)

    # --- start --------------------------------------------------------------------

    def add_pending_attach(self, ref: str, callback: PendingAttach) -> Callable[[], None]:
        """Run ``callback(socket_path)`` at the next start, before the process runs."""
        c = self.get(ref)
        with self._lock:
            self._pending_attach.setdefault(c.id, []).append(callback)

        def cancel() -> None:
            with self._lock:
                pending = self._pending_attach.get(c.id, [])
                if callback in pending:
                    pending.remove(callback)

        return cancel

    def start(self, ref: str) -> bool:
        """Start a container; False if it was already running (the API's 304)."""
        c = self.get(ref)
        with self._operation(c.id):
            if c.running:
                return False
            if c.state.status == REMOVING:
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            self._cancel_restart(c.id)
            c.manually_stopped = False
            self._start_locked(c)
            return True

    def _start_locked(self, c: Container) -> None:
        # The runtime moves the container into its cgroup ~10 ms from now: let the
        # kernel's first-move grace period pass meanwhile (runtime.cgroups.primer).
        runtime_api.prime_cgroup_attach()
        directory = self._dir(c.id)
        rootfs = os.path.join(directory, "rootfs")
        bundle = os.path.join(directory, "bundle")
        os.makedirs(rootfs, exist_ok=True)
        os.makedirs(bundle, exist_ok=True)
        netns, prepared = self._prepare_network(c)
        try:
            self._write_etc_files(directory, c.config["Hostname"], c.host_config, prepared)
        except BaseException:
            self._release_network(c.id)
            raise
        _unmount_quietly(rootfs)
        from moorage.store.snapshots.mount import mount_all

        try:
            mount_all(self.images.snapshots.mounts(c.snapshot_key), rootfs)
        except BaseException:
            self._release_network(c.id)
            raise
        try:
            spec = self._spec(c, rootfs, netns)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(spec, f)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, "state.json"))
            sock = self._socket(c.id)
            task = {
                "id": c.id,
                "bundle": bundle,
                "runtime_root": self.runtime_root,
                "log_path": os.path.join(directory, f"{c.id}-json.log"),
                "log_opts": dict((c.host_config.get("LogConfig") or {}).get("Config") or {}),
                "socket": sock,
                "tty": bool(c.config.get("Tty")),
                "open_stdin": bool(c.config.get("OpenStdin")),
                "stdin_once": bool(c.config.get("StdinOnce")),
                "rootfs_mount": rootfs,
            }
            monitor_pid = monitor_client.launch(directory, task, zygote=self._monitor_zygote)
        except MoorageError as exc:
            _unmount_quietly(rootfs)
            self._release_network(c.id)
            self._record_start_failure(c, str(exc))
            raise InvalidArgument(_start_error(str(exc))) from exc
        except BaseException:
            _unmount_quietly(rootfs)
            self._release_network(c.id)
            raise
        self._watcher.add(c.id, monitor_pid)
        if prepared.mode == "bridge" and self.networks is not None:
            try:
                init_pid = int((read_state(directory) or {}).get("pid") or 0)
                if not init_pid:
                    raise FailedPrecondition("the monitor reported no container process")
                self.networks.wire(c.id, f"/proc/{init_pid}/ns/net")
            except MoorageError as exc:
                with contextlib.suppress(OSError):
                    os.kill(monitor_pid, signal.SIGKILL)
                self._release_network(c.id)
                self._record_start_failure(c, str(exc))
                raise InvalidArgument(_start_error(str(exc))) from exc
        with self._lock:
            pending = self._pending_attach.pop(c.id, [])
        for attach in pending:
            try:
                attach(sock)
            except Exception:
                log.exception("attaching to %s before its start failed", c.id)
        try:
            pid = monitor_client.MonitorClient(sock).start()
        except MoorageError as exc:
            with contextlib.suppress(OSError):
                os.kill(monitor_pid, signal.SIGKILL)
            self._record_start_failure(c, str(exc))
            raise InvalidArgument(_start_error(str(exc))) from exc
        state = read_state(directory) or {}
        c.state = State(
            status=RUNNING,
            pid=pid,
            started_at=str(state.get("started_at") or now_rfc3339()),
            monitor_pid=monitor_pid,
            health=c.state.health,
        )
        c.has_been_started = True
        self.health.started(c)
        self._save(c)
        self._publish(c, "start")

    def _record_start_failure(self, c: Container, message: str) -> None:
        with self._lock:
            pending = self._pending_attach.pop(c.id, [])
        for attach in pending:  # "" tells an attached client that nothing will come
            with contextlib.suppress(Exception):
                attach("")
        c.state = State(  # Docker shows it as Exited (127), started or not
            status=EXITED,
            exit_code=exit_code_of_start_error(message),
            error=_start_error(message),
            finished_at=now_rfc3339(),
        )
        self._save(c)
        self._publish(c, "die", exitCode=str(c.state.exit_code))
        if c.host_config.get("AutoRemove"):  # --rm: gone even when it could not start
            threading.Thread(target=self._auto_remove, args=(c.id,), daemon=True).start()

    def _prepare_network(self, c: Container) -> tuple[str | None, Prepared]:
        """The network namespace to join (``container:<ref>``), and the container's
        addresses and ports (``networks.prepare``) for any other mode."""
        mode = str(c.host_config.get("NetworkMode") or "bridge")
        if mode.startswith("container:"):
            ref = mode.removeprefix("container:")
            other = self.get(ref)
            if not other.running or not other.state.pid:
                raise Conflict(f"cannot join network of a non running container: {ref}")
            return f"/proc/{other.state.pid}/ns/net", Prepared("container")
        if self.networks is None or mode in ("host", "none"):
            return None, Prepared(mode if mode in ("host", "none") else "none")
        exposed = c.config.get("ExposedPorts") or {}
        spec = _networking(c.request, c.id, c.name, exposed, c.detached_networks)
        return None, self.networks.prepare(spec)

    def _release_volumes(self, c: Container) -> None:
        """Unmount the driver-option volumes (tmpfs, bind) no running container uses."""
        if self._loading:  # not every container is known yet: _load does it after
            return
        for point in c.mounts:
            if point.type != "volume":
                continue
            users = [
                other
                for other in self.all()
                if other.id != c.id
                and other.running
                and any(m.name == point.name for m in other.mounts)
            ]
            if not users:
                try:
                    self.volumes.deactivate(point.name)
                except MoorageError as exc:
                    log.warning("volume %s: %s", point.name, exc)

    def _release_network(self, cid: str) -> None:
        if self.networks is not None:
            try:
                self.networks.release(cid)
            except MoorageError as exc:  # logged: the container's own outcome matters more
                log.error("container %s: releasing its networks: %s", cid[:12], exc)

    def _spec(self, c: Container, rootfs: str, netns: str | None = None) -> dict[str, Any]:
        body = dict(c.request)
        image_config = cfg.image_config_from_json(body.pop("ImageConfig", None))
        request = parse_create(body)
        directory = self._dir(c.id)
        init_path = None
        if request.init:
            init_path = INIT_TARGET
        generated = generate_spec(
            request,
            image_config,
            rootfs=rootfs,
            container_id=c.id,
            hostname=c.config["Hostname"],
            resolv_conf=os.path.join(directory, "resolv.conf"),
            hosts=os.path.join(directory, "hosts"),
            hostname_file=os.path.join(directory, "hostname"),
            cgroups_path=f"{self.cgroup_parent}/{c.id}",
            passwd_lookup=lambda user: lookup_user(rootfs, user),
            init_path=init_path,
            netns_path=netns,
        )
        # Every volume was resolved at create (named, -v /path, the image's VOLUMEs).
        resolved = [
            (VolumeMount(p.name, p.destination, readonly=not p.rw), p)
            for p in c.mounts
            if p.type == "volume"
        ]
        for _, point in resolved:
            self.volumes.activate(point.name)  # driver options: its mount, first
            if not point.no_copy:
                self.volumes.populate_from_image(point.name, rootfs, point.destination)
        spec = attach_volumes(
            generated.spec,
            [(vm, self.volumes.mount_source(point.name)) for vm, point in resolved],
        )
        if init_path is not None:
            spec["mounts"].append(
                {
                    "destination": INIT_TARGET,
                    "type": "bind",
                    "source": cfg.init_binary(),
                    "options": ["rbind", "ro"],
                }
            )
        return spec

    # --- exits --------------------------------------------------------------------

    def _monitor_exited(self, cid: str, monitor_pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(monitor_pid, os.WNOHANG)
        with self._lock:
            c = self._containers.get(cid)
        if c is None or self._closed:
            return
        self._record_exit(c)
        self._after_exit(c)

    def _record_exit(self, c: Container) -> None:
        directory = self._dir(c.id)
        state = read_state(directory)
        if state is not None and state.get("status") == "exited":
            code = int(state.get("exit_code", 0))
            oom = bool(state.get("oom_killed", False))
            finished = str(state.get("finished_at") or now_rfc3339())
            error = str(state.get("error") or "")
        else:
            # The monitor died without a word: the container must not live on unwatched.
            self._clean_runtime(c.id)
            code, oom, finished = 255, False, now_rfc3339()
            error = "container monitor exited unexpectedly"
        _unmount_quietly(os.path.join(directory, "rootfs"))
        self._release_network(c.id)
        self._release_volumes(c)
        self.health.stopped(c)
        with self._lock:  # waiters see the new state only once it is on disk
            c.state = State(
                status=EXITED,
                exit_code=code,
                oom_killed=oom,
                finished_at=finished,
                started_at=c.state.started_at,
                error=error,
                health=c.state.health,
            )
            self._save(c)
        if oom:
            self._publish(c, "oom")
        self._publish(c, "die", exitCode=str(code))

    def _after_exit(self, c: Container) -> None:
        if c.host_config.get("AutoRemove"):
            threading.Thread(target=self._auto_remove, args=(c.id,), daemon=True).start()
            return
        backoff = self._backoff.setdefault(c.id, Backoff())
        # Decided under the lock that update() changes the policy under: either it sees
        # the restart scheduled here (and calls it off), or this sees the new policy.
        with self._lock:
            if not should_restart(
                c.restart_policy, c.state.exit_code, c.restart_count, c.manually_stopped
            ):
                return
            delay = backoff.next_delay(c.state.started_at, c.state.finished_at)
            c.state.status = RESTARTING
            self._save(c)
            timer = threading.Timer(delay, self._restart_from_policy, args=(c.id,))
            timer.daemon = True
            self._timers[c.id] = timer
            timer.start()

    def _restart_from_policy(self, cid: str) -> None:
        with self._lock:
            self._timers.pop(cid, None)
            c = self._containers.get(cid)
        if c is None or self._closed:
            return
        with self._operation(cid):
            if c.state.status != RESTARTING or c.manually_stopped:
                return
            c.restart_count += 1
            try:
                self._start_locked(c)
                self._publish(c, "restart")
            except MoorageError as exc:
                log.warning("restarting %s failed: %s", cid[:12], exc)
                self._after_exit(c)

    def _cancel_restart(self, cid: str) -> None:
        with self._lock:
            timer = self._timers.pop(cid, None)
        if timer is not None:
            timer.cancel()

    def _auto_remove(self, cid: str) -> None:
        try:
            self.remove(cid, force=True, volumes=True)
        except NotFound:
            pass
        except MoorageError as exc:
            log.warning("auto-removing %s failed: %s", cid[:12], exc)

    def _clean_runtime(self, cid: str) -> None:
        from moorage.runtime import api

        with contextlib.suppress(MoorageError):
            api.delete(self.runtime_root, cid, force=True)

    # --- stop, kill, wait -------------------------------------------------------------

    def wait_exit(self, c: Container, timeout: float | None) -> bool:
        """Block until ``c`` is not running (or restarting); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while c.state.status in (RUNNING, PAUSED):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def kill(self, ref: str, sig: str | int | None = None) -> None:
        from moorage.runtime import api

        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        number = _signal_number(sig or "SIGKILL")
        if number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            c.manually_stopped = c.manually_stopped or number == signal.SIGKILL
        try:
            api.kill(self.runtime_root, c.id, number, all_processes=False)
        except MoorageError as exc:
            if c.running:
                raise Conflict(f"Cannot kill container: {ref}: {exc}") from exc
        self._publish(c, "kill", signal=str(number))
        if number == signal.SIGKILL:
            # As dockerd's kill does: returns once the container has stopped, so that
            # what follows (inspect, start) sees it exited, with its exit code.
            self.wait_exit(c, KILL_WAIT)

    def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> bool:
        """Stop gracefully, then SIGKILL; False if it was not running (the API's 304)."""
        c = self.get(ref)
        self._cancel_restart(c.id)
        with self._operation(c.id):
            c.manually_stopped = True
            if c.state.status == RESTARTING:
                c.state.status = EXITED
                self._save(c)
                return True
            if not c.running:
                self._save(c)
                return False
            self._save(c)
            self._stop_locked(c, timeout, sig)
            self._publish(c, "stop")
            return True

    def _stop_locked(self, c: Container, timeout: int | None, sig: str | None) -> None:
        from moorage.runtime import api

        grace = timeout if timeout is not None else c.config.get("StopTimeout")
        grace = STOP_GRACE if grace is None else grace
        number = _signal_number(sig or c.config.get("StopSignal") or "SIGTERM")
        if grace != 0 or number != signal.SIGKILL:
            self._signal(c, number)
            if c.state.status == PAUSED:
                with contextlib.suppress(MoorageError):
                    api.resume(self.runtime_root, c.id)
            if grace < 0 or self.wait_exit(c, grace if grace >= 0 else None):
                return
        self._signal(c, signal.SIGKILL)
        if c.state.status == PAUSED:
            with contextlib.suppress(MoorageError):
                api.resume(self.runtime_root, c.id)
        if not self.wait_exit(c, KILL_WAIT):
            raise Unavailable(f"container {c.id} did not exit after SIGKILL")

    def _signal(self, c: Container, number: int) -> None:
        from moorage.runtime import api

        with contextlib.suppress(MoorageError):
            api.kill(self.runtime_root, c.id, number, all_processes=number == signal.SIGKILL)

    def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        self._cancel_restart(c.id)
        with self._operation(c.id):
            if c.running:
                c.manually_stopped = True
                self._stop_locked(c, timeout, sig)
            c.manually_stopped = False
            self._start_locked(c)
        self._publish(c, "restart")

    # --- remove -------------------------------------------------------------------

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        self._cancel_restart(c.id)
        with self._operation(c.id):
            if c.id not in self._containers:
                raise NotFound(f"No such container: {ref}")
            if c.running:
                if not force:
                    raise Conflict(
                        f"You cannot remove a running container {c.id}. Stop the container "
                        "before attempting removal or force remove"
                    )
                c.manually_stopped = True
                self._stop_locked(c, 0, "SIGKILL")
            c.state.status = REMOVING
            self._save(c)
            self._watcher.forget(c.id)
            directory = self._dir(c.id)
            _unmount_quietly(os.path.join(directory, "rootfs"))
            self._release_network(c.id)
            self._clean_runtime(c.id)
            with contextlib.suppress(MoorageError):
                self.images.snapshots.remove(c.snapshot_key)
            self.images.db.remove_root("snapshot", c.snapshot_key, ROOT_OWNER + c.id)
            # Out of sight first, under the lock that every record write takes, so a
            # late write (an exit being recorded) cannot bring the directory back.
            trash = os.path.join(self.root, f".removing-{c.id}")
            with self._lock, contextlib.suppress(FileNotFoundError):
                os.rename(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._socket(c.id))
            with self._lock:
                self._containers.pop(c.id, None)
                if self._names.get(c.name) == c.id:
                    del self._names[c.name]
                self._op_locks.pop(c.id, None)
                self._backoff.pop(c.id, None)
                self._changed.notify_all()
        if volumes:
            for point in c.mounts:
                if point.anonymous:
                    try:
                        self.volumes.remove(point.name, in_use=self.using_volume)
                    except MoorageError as exc:
                        log.info("keeping volume %s: %s", point.name, exc)
        self._publish(c, "destroy")

    def prune(
        self, label_filters: list[str] | None = None, until: float | None = None
    ) -> dict[str, Any]:
        from moorage.engine.container_filters import labels_match
        from moorage.engine.container_record import parse_rfc3339

        deleted: list[str] = []
        for c in self.all():
            if c.running or c.state.status in (RESTARTING, REMOVING):
                continue
            if label_filters and not labels_match(c.config.get("Labels") or {}, label_filters):
                continue
            if until is not None and parse_rfc3339(c.created) >= until:
                continue
            try:
                self.remove(c.id, volumes=False)
            except MoorageError as exc:
                log.info("prune: keeping %s: %s", c.id[:12], exc)
                continue
            deleted.append(c.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": 0}

    # --- update ---------------------------------------------------------------------

    def update(self, ref: str, body: Any) -> dict[str, Any]:
        """``POST /containers/{id}/update``: new limits and restart policy, recorded for
        the next start and, when the container runs (or is paused), applied to its
        cgroup at once. Rules in ``engine.container_update``. Returns ``{"Warnings"}``."""
        from moorage.engine import container_update as cu
        from moorage.sys.cpus import online_cpus, online_memory_nodes

        update = cu.parse_update(
            body, cpus=online_cpus(), mems=online_memory_nodes(), ncpu=os.cpu_count() or 1
        )
        c = self.get(ref)
        with self._operation(c.id):
            if c.state.status in (REMOVING, DEAD):
                raise Conflict(
                    f"Cannot update container {c.id}: container is marked for removal and "
                    'cannot be "update"'
                )
            host_config = cu.merged_host_config(c.host_config, update, c.id)
            request = dict(c.request)
            request["HostConfig"] = {
                **(request.get("HostConfig") or {}),
                **{
                    k: host_config[k]
                    for k in (*cu.APPLIED_FIELDS, "RestartPolicy")
                    if k in host_config
                },
            }
            # What the next start will set must still pass create's checks.
            body_now = {k: v for k, v in request.items() if k != "ImageConfig"}
            wanted = parse_create(body_now)
            if c.running:
                self._update_cgroup(c, cu.live_resources(wanted, update))
            with self._lock:  # see _after_exit
                c.host_config = host_config
                c.request = request
                if update.restart_policy is not None:
                    self._restart_policy_changed(c)
                self._save(c)
        self._publish(c, "update")
        return {"Warnings": list(update.warnings)}

    def _update_cgroup(self, c: Container, resources: dict[str, Any]) -> None:
        if not resources:
            return
        try:
            runtime_api.update(self.runtime_root, c.id, resources)
        except (NotFound, Conflict) as exc:
            # It stopped meanwhile: the record is enough, the next start applies it.
            log.debug("container %s: not updating its cgroup: %s", c.id[:12], exc)
        except MoorageError as exc:
            raise type(exc)(f"Cannot update container {c.id}: {exc}") from exc

    def _restart_policy_changed(self, c: Container) -> None:
        """A restart the old policy scheduled and the new one would not make is called
        off; anything else the new policy decides at the next exit."""
        if c.state.status == RESTARTING and not should_restart(
            c.restart_policy, c.state.exit_code, c.restart_count, c.manually_stopped
        ):
            self._cancel_restart(c.id)
            c.state.status = EXITED

    # --- rename, pause --------------------------------------------------------------

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        name = check_name(new_name)
        with self._lock:
            if name == c.name:
                raise InvalidArgument("Renaming a container with the same name as its current name")
            other = self._names.get(name)
            if other is not None:
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other}". You have to remove (or rename) that container to be able '
                    "to reuse that name."
                )
            old = c.name
            self._names[name] = c.id
            del self._names[old]
            c.name = name
            self._save(c)
        self._publish(c, "rename", oldName="/" + old)

    def pause(self, ref: str) -> None:
        from moorage.runtime import api

        c = self.get(ref)
        with self._operation(c.id):
            if c.state.status == PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if not c.running:
                raise Conflict(f"Container {c.id} is not running")
            api.pause(self.runtime_root, c.id)
            c.state.status = PAUSED
            self._save(c)
        self._publish(c, "pause")

    def unpause(self, ref: str) -> None:
        from moorage.runtime import api

        c = self.get(ref)
        with self._operation(c.id):
            if c.state.status != PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            api.resume(self.runtime_root, c.id)
            c.state.status = RUNNING
            self._save(c)
        self._publish(c, "unpause")

    # --- views --------------------------------------------------------------------

    def inspect(self, ref: str) -> dict[str, Any]:
        c = self.get(ref)
        directory = self._dir(c.id)
        graph = {"MergedDir": os.path.join(directory, "rootfs")}
        with contextlib.suppress(MoorageError):
            graph["UpperDir"] = self.images.snapshots.writable_dir(c.snapshot_key)
        out = c.inspect(directory, self.images.snapshotter_name, graph)
        if self.networks is not None:
            out["NetworkSettings"] = self.network_settings(c)
        return out

    def network_settings(self, c: Container) -> dict[str, Any]:
        """Docker's ``NetworkSettings`` of ``c`` (see ``engine.network.settings``)."""
        from moorage.engine.network.settings import container_network_settings

        assert self.networks is not None
        attached = self.networks.endpoints_of(c.id) if c.running else []
        configured = self.configured_networks(c)
        lookup = {}
        for name in configured:
            with contextlib.suppress(MoorageError):
                lookup[name] = self.networks.get(name)
        sandbox = f"/proc/{c.state.pid}/ns/net" if c.running and c.state.pid else ""
        exposed = list(c.config.get("ExposedPorts") or {})
        return container_network_settings(attached, configured, lookup, exposed, sandbox)

    def connect_network(self, network: str, ref: str, config: dict[str, Any]) -> None:
        """``POST /networks/{id}/connect``: at once when ``ref`` runs, else at its start."""
        assert self.networks is not None
        c = self.get(ref)
        with self._operation(c.id):
            mode = str(c.host_config.get("NetworkMode") or "bridge")
            if mode in ("host", "none") or mode.startswith("container:"):
                raise InvalidArgument(
                    f"container sharing network namespace with another container or host "
                    f"cannot be connected to any other network ({mode})"
                )
            record = self.networks.get(network)
            if record.name in self.configured_networks(c) and not c.running:
                raise Conflict(
                    f"endpoint with name {c.name} already exists in network {record.name}"
                )
            netns = f"/proc/{c.state.pid}/ns/net" if c.running and c.state.pid else None
            spec = _networking(c.request, c.id, c.name, detached=c.detached_networks)
            self.networks.connect(record.id, spec, config, netns)
            self._set_endpoint_config(c, record.name, config)
        self._publish_network(record.id, record.name, "connect", c.id)

    def disconnect_network(self, network: str, ref: str, force: bool = False) -> None:
        """``POST /networks/{id}/disconnect``."""
        assert self.networks is not None
        try:
            c = self.get(ref)
        except NotFound:
            if force:  # Docker: force cleans up after a container that is gone
                return
            raise
        with self._operation(c.id):
            record = self.networks.get(network)
            configured = self.configured_networks(c)
            if record.name not in configured:
                raise Conflict(f"container {c.id} is not connected to network {record.name}")
            if str(c.host_config.get("NetworkMode") or "bridge") in ("host", "none"):
                raise InvalidArgument(
                    f"container cannot be disconnected from {record.name} network"
                )
            self.networks.disconnect(record.id, c.id)
            self._set_endpoint_config(c, record.name, None)
        self._publish_network(record.id, record.name, "disconnect", c.id)

    def _set_endpoint_config(self, c: Container, name: str, config: dict[str, Any] | None) -> None:
        """Record (None: forget) the container's settings on network ``name``. Dropping
        the network its NetworkMode names keeps the mode, as Docker does, and marks
        that network detached: the container starts without it until connected again."""
        request = dict(c.request)
        networking = dict(request.get("NetworkingConfig") or {})
        endpoints = _endpoints_config(request)
        host = dict(c.host_config)
        if config is None:
            endpoints.pop(name, None)
            if _mode(host.get("NetworkMode")) == name and name not in c.detached_networks:
                c.detached_networks.append(name)
        else:
            endpoints[name] = config
            if name in c.detached_networks:
                c.detached_networks.remove(name)
        networking["EndpointsConfig"] = endpoints
        request["NetworkingConfig"] = networking
        request["HostConfig"] = {
            **(request.get("HostConfig") or {}),
            "NetworkMode": host.get("NetworkMode"),
        }
        c.request = request
        c.host_config = host
        self._save(c)

    def attached(self, c: Container) -> None:
        """A client attached to ``c`` (Docker's ``attach`` event)."""
        self._publish(c, "attach")

    def _publish_network(self, network_id: str, name: str, action: str, cid: str) -> None:
        self.events.publish("network", action, network_id, {"name": name, "container": cid})

    def configured_networks(self, c: Container) -> dict[str, dict[str, Any]]:
        """Network name -> EndpointsConfig entry, for every network ``c`` is on."""
        mode = _mode(c.host_config.get("NetworkMode"))
        if mode.startswith("container:"):
            return {}
        endpoints = _endpoints_config(c.request)
        out = {} if mode in c.detached_networks else {mode: endpoints.get(mode) or {}}
        if mode not in ("host", "none"):
            out.update({k: v for k, v in endpoints.items() if k != mode})
        return out

    def list(
        self,
        *,
        all_containers: bool = False,
        limit: int = -1,
        filters: dict[str, Any] | None = None,
        size: bool = False,
    ) -> list[dict[str, Any]]:
        from moorage.engine.container_filters import ContainerFilter

        match = ContainerFilter(filters or {}, self)
        chosen = [
            c
            for c in sorted(self.all(), key=lambda c: c.created, reverse=True)
            if (all_containers or c.running or limit > 0 or match.wants_stopped) and match(c)
        ]
        if limit > 0:
            chosen = chosen[:limit]
        out = []
        for c in chosen:
            summary = c.summary()
            if self.networks is not None:
                from moorage.engine.network.settings import summary_networks, summary_ports

                summary["NetworkSettings"] = summary_networks(self.network_settings(c))
                attached = self.networks.endpoints_of(c.id) if c.running else []
                summary["Ports"] = summary_ports(attached, c.config.get("ExposedPorts") or {})
            if size:
                summary["SizeRw"], summary["SizeRootFs"] = self.sizes(c)
            out.append(summary)
        return out

    def sizes(self, c: Container) -> tuple[int, int]:
        """(SizeRw, SizeRootFs): the container's own changes, and those plus the image."""
        rw = 0
        with contextlib.suppress(MoorageError):
            rw = self.images.snapshots.usage(c.snapshot_key).size
        base = 0
        with contextlib.suppress(MoorageError):
            base = self.images.summary(self.images.resolve(c.image_id))["Size"]
        return rw, rw + base

    def log_path(self, c: Container) -> str:
        return os.path.join(self._dir(c.id), f"{c.id}-json.log")

    def monitor_socket(self, c: Container) -> str:
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        return self._socket(c.id)

    def counts(self) -> dict[str, int]:
        cs = self.all()
        return {
            "Containers": len(cs),
            "ContainersRunning": sum(c.state.status == RUNNING for c in cs),
            "ContainersPaused": sum(c.state.status == PAUSED for c in cs),
            "ContainersStopped": sum(not c.running for c in cs),
        }

    # --- restore ------------------------------------------------------------------

    def _load(self) -> None:
        """Read every record; adopt live monitors; record what exited while we were away."""
        to_restart: list[Container] = []
        monitors = _monitors_under(self.root)
        for cid in sorted(os.listdir(self.root)):
            directory = self._dir(cid)
            if cid.startswith(".removing-"):  # a removal the last daemon did not finish
                shutil.rmtree(directory, ignore_errors=True)
                continue
            try:
                c = Container.load(directory)
            except FileNotFoundError:
                log.warning("removing %s: no container record (a create that crashed)", cid)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.error("container %s: unreadable record, skipped: %s", cid, exc)
                continue
            self._containers[c.id] = c
            self._names[c.name] = c.id
            if c.state.status == REMOVING:
                to_restart.append(c)  # finished below
                continue
            if c.state.status in (CREATED, EXITED) and monitors.get(c.id):
                # The last daemon died in the middle of starting it.
                if self._adopt(c):
                    c.state.status = RUNNING
                    c.has_been_started = True
                    self._save(c)
                    continue
                self._abandon_start(c, monitors[c.id])
            if c.state.status in (RUNNING, PAUSED, RESTARTING):
                if self._adopt(c):
                    continue
                if c.state.status != RESTARTING:
                    self._record_exit(c)
            if c.has_been_started and should_restart(
                c.restart_policy, c.state.exit_code, c.restart_count, c.manually_stopped
            ):
                to_restart.append(c)
        self._loading = False
        for c in list(self._containers.values()):
            if not c.running:
                self._release_volumes(c)
        if self.networks is not None:
            # Before any restart below prepares new endpoints.
            running = {c.id: None for c in self._containers.values() if c.running}
            self.networks.reconcile(running)
        for c in to_restart:
            if c.state.status == REMOVING:
                threading.Thread(target=self._auto_remove, args=(c.id,), daemon=True).start()
                continue
            c.state.status = RESTARTING
            timer = threading.Timer(0, self._restart_from_policy, args=(c.id,))
            timer.daemon = True
            self._timers[c.id] = timer
            timer.start()

    def _abandon_start(self, c: Container, monitor_pids: Iterable[int]) -> None:
        """Stop the monitors of a start nobody will finish, and undo what they made."""
        for pid in monitor_pids:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                select.select([pidfd], [], [], KILL_WAIT)
            finally:
                os.close(pidfd)
        self._clean_runtime(c.id)
        _unmount_quietly(os.path.join(self._dir(c.id), "rootfs"))
        self._release_network(c.id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._dir(c.id), "state.json"))
        log.info("abandoned the interrupted start of %s", c.id[:12])

    def _adopt(self, c: Container) -> bool:
        state = read_state(self._dir(c.id))
        if state is None or state.get("status") != "running":
            return False
        pid = int(state.get("monitor_pid") or 0)
        if not pid or not _is_monitor(pid, c.id):
            return False
        c.state.monitor_pid = pid
        if c.state.status in (CREATED, EXITED):  # started just before the daemon died
            c.state.pid = int(state.get("pid") or 0)
            c.state.started_at = str(state.get("started_at") or now_rfc3339())
        self._watcher.add(c.id, pid)
        self.health.started(c)
        log.info("adopted running container %s (monitor %d)", c.id[:12], pid)
        return True

    def close(self) -> None:
        self._closed = True
        self.health.close()
        with self._lock:
            timers = list(self._timers.values())
            self._timers.clear()
        for t in timers:
            t.cancel()
        self._watcher.close()
        self._monitor_zygote.close()


# --- helpers ---------------------------------------------------------------------------


def _is_monitor(pid: int, cid: str) -> bool:
    """True if ``pid`` is this container's monitor (not a recycled pid).

    A monitor has ``moorage.engine.monitor`` and the container's directory on its
    command line (one forked by the monitor zygote rewrites the zygote's to that);
    failing that, a forked one has the zygote's and works in that directory.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    if b"moorage.engine.monitor" not in argv:
        return False
    if any(cid.encode() in a for a in argv):
        return True
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/cwd")) == cid
    except OSError:
        return False


def _monitors_under(root: str) -> dict[str, list[int]]:
    """Container id -> pids of the monitors running for a container under ``root``
    (a monitor's command line ends with its container's directory)."""
    found: dict[str, list[int]] = {}
    prefix = os.path.join(root, "").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"moorage.engine.monitor" not in argv:
            continue
        for arg in argv:
            if arg.startswith(prefix):
                cid = arg[len(prefix) :].split(b"/")[0].decode(errors="replace")
                found.setdefault(cid, []).append(int(entry))
    return found


def _unmount_quietly(path: str) -> None:
    from moorage.sys import libc

    for _ in range(8):  # a stacked mount would need more than one
        try:
            libc.umount2(path, libc.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise


def _signal_number(sig: str | int) -> int:
    from moorage.runtime import api

    try:
        return int(api.parse_signal(str(sig)))
    except MoorageError as exc:
        raise InvalidArgument(f"invalid signal: {sig}") from exc


def exit_code_of_start_error(message: str) -> int:
    """Docker's exit status of a process that could not start: 126 not runnable, 127
    not found (else 128)."""
    lowered = message.lower()
    if "permission denied" in lowered:
        return 126
    if "not found" in lowered or "no such file" in lowered:
        return 127
    return 128


def _start_error(message: str) -> str:
    if message.startswith("failed to create task"):
        return message
    return f"failed to create task for container: {message}: unknown"


def _networking(
    request: dict[str, Any],
    cid: str,
    name: str,
    exposed: dict[str, Any] | None = None,
    detached: Iterable[str] = (),
) -> ContainerNetworking:
    """A container's network settings as ``networks.prepare`` takes them; ``exposed``
    is the merged config's ExposedPorts (the image's and the request's: ``-P``);
    ``detached``: networks it was disconnected from (``Container.detached_networks``)."""
    host = request.get("HostConfig") or {}
    return ContainerNetworking(
        id=cid,
        name=name,
        mode=_mode(host.get("NetworkMode")),
        endpoints_config=_endpoints_config(request),
        port_bindings=host.get("PortBindings") or {},
        exposed=exposed or {},
        publish_all=bool(host.get("PublishAllPorts")),
        detached=frozenset(detached),
    )


def _mode(network_mode: Any) -> str:
    """HostConfig.NetworkMode with Docker's ``default`` spelled ``bridge``."""
    mode = str(network_mode or "bridge")
    return "bridge" if mode == "default" else mode


def _endpoints_config(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """NetworkingConfig.EndpointsConfig by network name (``default`` is ``bridge``)."""
    endpoints = (request.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict):
        raise InvalidArgument("NetworkingConfig.EndpointsConfig: must be an object")
    out: dict[str, dict[str, Any]] = {}
    for name, config in endpoints.items():
        if config is not None and not isinstance(config, dict):
            raise InvalidArgument(f"NetworkingConfig.EndpointsConfig.{name}: must be an object")
        out["bridge" if name == "default" else str(name)] = dict(config or {})
    return out
