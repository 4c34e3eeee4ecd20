"""``create``: set a container up and leave its init blocked until ``start``.

Everything ``create`` makes (the state directory, the exec fifo, the cgroup, the
processes) is undone if any step fails, so a bad config or a failing hook leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from typing import Any, NamedTuple

from moorage.errors import FailedPrecondition, InvalidArgument, NotFound, NotSupported
from moorage.oci.runtime_spec import IDMapping, Spec, load_spec, spec_to_dict
from moorage.runtime.cgroups.manager import CgroupManager, new_manager
from moorage.runtime.cgroups.resources import CgroupResources
from moorage.runtime.container import (
    CREATING,
    ContainerDir,
    ContainerRecord,
    oci_state,
)
from moorage.runtime.spawn import Stage, Stdio, connect_console, spawn_stage
from moorage.runtime.sync import Channel
from moorage.sys import procfs


class CreateOptions(NamedTuple):
    bundle: str
    pid_file: str | None = None
    console_socket: str | None = None
    preserve_fds: int = 0
    stdin: Stdio = None
    stdout: Stdio = None
    stderr: Stdio = None
    # A connected console socket, used by `run` for a terminal it handles itself.
    console_sock: socket.socket | None = None


def rfc3339_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def _check_spec(spec: Spec, bundle: str, opts: CreateOptions) -> str:
    if spec.process is None:
        raise InvalidArgument("config.json: process: missing")
    if spec.root is None:
        raise InvalidArgument("config.json: root: missing")
    rootfs = spec.root.path
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    rootfs = os.path.realpath(rootfs)
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs does not exist: {rootfs}")
    types = {ns.type for ns in spec.linux.namespaces}
    if "mount" not in types:
        raise NotSupported("config.json: linux.namespaces: a mount namespace is required")
    if (spec.hostname or spec.domainname) and "uts" not in types:
        raise InvalidArgument(
            "config.json: hostname: setting a hostname needs a private uts namespace"
        )
    if spec.process.terminal and opts.console_socket is None and opts.console_sock is None:
        raise InvalidArgument("process.terminal is set: --console-socket is required")
    if spec.linux.uid_mappings and "user" not in types:
        raise InvalidArgument("config.json: linux.uidMappings: needs a user namespace")
    new_userns = "user" in types and not any(
        ns.path for ns in spec.linux.namespaces if ns.type == "user"
    )
    if new_userns and (not spec.linux.uid_mappings or not spec.linux.gid_mappings):
        raise InvalidArgument(
            "config.json: linux.uidMappings: a new user namespace needs uid and gid mappings"
        )
    for key in spec.linux.sysctl:
        _check_sysctl(key, spec)
    return rootfs


# Sysctls that belong to a namespace, and which one. Every other sysctl is global:
# writing it from a container would change the host (kernel.core_pattern runs a
# program as root on the host), so it is refused, as runc refuses it.
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)


def _namespace_of_sysctl(key: str) -> str | None:
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _check_sysctl(key: str, spec: Spec) -> None:
    namespace = _namespace_of_sysctl(key)
    where = f"config.json: linux.sysctl: {key}"
    if namespace is None:
        raise InvalidArgument(f"{where}: not in a separate kernel namespace: refused")
    entries = [ns for ns in spec.linux.namespaces if ns.type == namespace]
    if not entries:
        raise InvalidArgument(f"{where}: needs a private {namespace} namespace")
    if entries[0].path and _is_host_namespace(namespace, entries[0].path):
        raise InvalidArgument(f"{where}: the {namespace} namespace joined is the host's")
    if ".." in key.split(".") or "/" in key:
        raise InvalidArgument(f"{where}: invalid sysctl name")


def _is_host_namespace(namespace: str, path: str) -> bool:
    proc_name = {"ipc": "ipc", "network": "net", "uts": "uts"}[namespace]
    try:
        return os.stat(path).st_ino == os.stat(f"/proc/1/ns/{proc_name}").st_ino
    except OSError:
        return False


# Device rules every container gets after its config's own, as runc adds them:
# mknod of any node (using one still needs a rule), and read/write/mknod of the
# default /dev nodes, ptmx, the ptys and /dev/net/tun. (type, major, minor, access)
_ALLOWED_DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),
    ("c", 1, 8, "rwm"),
    ("c", 1, 7, "rwm"),
    ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"),
    ("c", 1, 9, "rwm"),
    ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"),
    ("c", 10, 200, "rwm"),
)


def _with_default_devices(spec: Spec) -> dict[str, Any]:
    resources = dict(spec.linux.resources or {})
    rules = list(resources.get("devices") or [])
    for kind, major, minor, access in _ALLOWED_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    resources["devices"] = rules
    return resources


def _write_id_map(pid: int, name: str, mappings: tuple[IDMapping, ...]) -> None:
    text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)
    try:
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)
    except OSError as exc:
        raise InvalidArgument(
            f"config.json: linux.{'uid' if name == 'uid_map' else 'gid'}Mappings: "
            f"invalid id mapping: {exc.strerror}"
        ) from exc


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def kill_and_reap(pid: int, start: int = 0) -> None:
    """SIGKILL ``pid`` (if it is still the same process) and wait until it is gone."""
    info = procfs.stat(pid)
    if info is None or (start and info.start_time != start):
        return
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        wait_pidfd(pidfd, pid)
    finally:
        os.close(pidfd)


def wait_pidfd(pidfd: int, pid: int, timeout: float | None = 10.0) -> bool:
    """Wait for the process behind ``pidfd`` to exit; reap it if it is our child."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    done = bool(poller.poll(None if timeout is None else int(timeout * 1000)))
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return done


def create(root: str, container_id: str, opts: CreateOptions) -> ContainerRecord:
    bundle = os.path.realpath(opts.bundle)
    if not os.path.isdir(bundle):
        raise NotFound(f"bundle does not exist: {opts.bundle}")
    spec = load_spec(bundle)
    rootfs = _check_spec(spec, bundle, opts)
    cdir = ContainerDir(root, container_id)
    cdir.make()
    with contextlib.ExitStack() as undo:
        undo.callback(cdir.remove)
        os.mkfifo(cdir.fifo, 0o622)
        # Not subject to the umask: an init that runs as another user must write it.
        os.chmod(cdir.fifo, 0o622)
        config = spec_to_dict(spec)
        record = ContainerRecord(
            id=container_id,
            bundle=bundle,
            rootfs=rootfs,
            created=rfc3339_now(),
            config=config,
            cgroups_path=spec.linux.cgroups_path or "",
            annotations=dict(spec.annotations),
        )
        cdir.write(record)
        resources = CgroupResources.from_oci(_with_default_devices(spec))
        cgroup = new_manager(spec.linux.cgroups_path, container_id)
        cgroup.create()
        undo.callback(cgroup.destroy)
        record = _launch(cdir, record, spec, cgroup, opts, undo)
        # Limits apply once the init is set up, as runc does: the device rules must
        # not stop the runtime from creating the nodes the config lists.
        cgroup.apply(resources)
        if opts.pid_file:
            _write_pid_file(opts.pid_file, record.pid)
        undo.pop_all()
    return record


def _launch(
    cdir: ContainerDir,
    record: ContainerRecord,
    spec: Spec,
    cgroup: CgroupManager,
    opts: CreateOptions,
    undo: contextlib.ExitStack,
) -> ContainerRecord:
    # Our ends of the fifo, console socket and channel close however setup ends;
    # `undo` only reverses what must not outlive a failed create (processes).
    with contextlib.ExitStack() as ours:
        return _setup(cdir, record, spec, cgroup, opts, undo, ours)


def _setup(
    cdir: ContainerDir,
    record: ContainerRecord,
    spec: Spec,
    cgroup: CgroupManager,
    opts: CreateOptions,
    undo: contextlib.ExitStack,
    ours: contextlib.ExitStack,
) -> ContainerRecord:
    fifo_fd = os.open(cdir.fifo, os.O_PATH | os.O_CLOEXEC)
    ours.callback(os.close, fifo_fd)
    console = opts.console_sock
    if console is None and opts.console_socket is not None:
        console = connect_console(opts.console_socket)
        ours.callback(console.close)
    extra = [fifo_fd] + ([console.fileno()] if console is not None else [])
    proc, chan = spawn_stage(
        label=record.id,
        preserve_fds=opts.preserve_fds,
        extra_fds=extra,
        stdin=opts.stdin,
        stdout=opts.stdout,
        stderr=opts.stderr,
    )
    ours.callback(chan.close)
    undo.callback(_reap_stage, proc)
    undo.callback(lambda: kill_and_reap(record.pid, record.pid_start) if record.pid else None)
    chan.send(
        "bootstrap",
        role="init",
        config=record.config,
        rootfs=record.rootfs,
        bundle=record.bundle,
        fifo_fd=fifo_fd,
        console_fd=console.fileno() if console is not None else None,
        preserve_fds=opts.preserve_fds,
        cgroup_paths=cgroup.paths(),
        seccomp=_seccomp_program(record.config, cdir.root),
    )
    cgroup.join(proc.pid)
    chan.send("joined")
    deferred: list[dict[str, Any]] = []
    ready = False
    while not ready:
        msg = chan.recv()
        if msg is None:
            raise FailedPrecondition("container init exited during setup")
        kind = msg["type"]
        if kind == "error":
            raise FailedPrecondition(msg["message"])
        if kind == "userns":
            _write_id_map(proc.pid, "uid_map", spec.linux.uid_mappings)
            _write_id_map(proc.pid, "gid_map", spec.linux.gid_mappings)
            chan.send("userns-done")
        elif kind == "pid":
            info = procfs.stat(msg["pid"])
            if info is None:
                raise FailedPrecondition("container init exited during setup")
            record.pid, record.pid_start = msg["pid"], info.start_time
            for early in deferred:
                ready = _from_init(early, chan, record, spec) or ready
        elif record.pid == 0:
            # The init can speak before its parent stage has reported its pid.
            deferred.append(msg)
        else:
            ready = _from_init(msg, chan, record, spec)
    if proc.pid != record.pid:
        proc.wait()
    cdir.write(record)
    return record


def _from_init(msg: dict[str, Any], chan: Channel, record: ContainerRecord, spec: Spec) -> bool:
    """Answer a message from the init; True once it reports ready."""
    if msg["type"] == "hooks":
        from moorage.runtime import hooks as hook_runner

        state = oci_state(record, CREATING).to_dict()
        hook_runner.run_hooks(spec.hooks.prestart, "prestart", state)
        hook_runner.run_hooks(spec.hooks.create_runtime, "createRuntime", state)
        chan.send("hooks-done", state=state)
        return False
    return bool(msg["type"] == "ready")


def _reap_stage(proc: Stage) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def _seccomp_program(config: dict[str, Any], root: str) -> dict[str, Any] | None:
    profile = config.get("linux", {}).get("seccomp")
    if not profile:
        return None
    from moorage.runtime.seccomp_cache import program_for

    return program_for(profile, root)
