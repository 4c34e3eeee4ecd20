"""From a Docker container-create request and an image config to an OCI runtime spec.

This module owns two steps, both pure (no files, no syscalls):

- :func:`parse_create` validates the JSON body of ``POST /containers/create`` (the
  subset Moorage honours) into a :class:`ContainerRequest`. Errors are
  :class:`InvalidArgument` naming the field: ``HostConfig.Memory: must be a
  non-negative integer``. Fields it does not know, or knows but does not honour, are
  accepted and, when set to anything but their zero value, reported as warnings
  (``HostConfig.BlkioWeight: not supported, ignored``). Fields other engine code reads
  from the body (``Healthcheck``, ``HostConfig.RestartPolicy``...) are not warned about.
- :func:`generate_spec` turns that request plus the image's
  :class:`~moorage.oci.image.ContainerConfig` into a ``config.json`` dict for
  ``moor-runtime``, starting from :func:`moorage.oci.default_spec.default_spec` and
  following Docker's rules::

      args    = (request Entrypoint or image Entrypoint)
                + (request Cmd or, unless the request set an Entrypoint, image Cmd)
      env     = PATH default, HOSTNAME, TERM (tty), then image Env, then request Env,
                later values replacing earlier ones by key ("KEY" alone unsets KEY)
      cwd     = request WorkingDir or image WorkingDir or "/"
      user    = passwd_lookup(request User or image User or "0")

Named and anonymous volumes are not resolved here: they come back as
:class:`VolumeMount` records for the caller, which passes their host paths to
:func:`attach_volumes`.

``Privileged`` gives every capability Moorage knows, no seccomp filter, no masked or
read-only paths, read-write /sys and cgroupfs and a device cgroup that allows every
device; the host's device nodes are not copied into the container's /dev.
"""

from __future__ import annotations

import copy
import json
import platform
import posixpath
import re
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from moorage.errors import InvalidArgument
from moorage.oci.default_spec import DEFAULT_ENV, DOCKER_DEFAULT_CAPABILITIES, default_spec
from moorage.oci.image import ContainerConfig
from moorage.sys.caps import CAPABILITIES

__all__ = [
    "HANDLED_ELSEWHERE",
    "ContainerRequest",
    "GeneratedSpec",
    "MountRequest",
    "Ulimit",
    "VolumeMount",
    "attach_volumes",
    "generate_spec",
    "linux_resources",
    "parse_create",
    "split_user",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

_MIN_MEMORY = 6 * 1024 * 1024  # Docker's floor: below it the container cannot start
_CPU_PERIOD = 100_000  # microseconds, Docker's default CFS period
_MIN_NANO_CPUS = 10_000_000  # 0.01 CPU, a quota of 1000us: the kernel's minimum
_MIN_CPU_QUOTA = 1000  # microseconds: the kernel's minimum
_MIN_CPU_PERIOD, _MAX_CPU_PERIOD = 1000, 1_000_000  # microseconds: the kernel's range
_DEFAULT_SHM_SIZE = 64 * 1024 * 1024
_RLIM_INFINITY = 2**64 - 1

_PATH_DEFAULT = next(e for e in DEFAULT_ENV if e.startswith("PATH="))

_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})")
_USER = re.compile(r"[^:\s]+(:[^:\s]+)?")

_BIND_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
_ULIMIT_NAMES = frozenset(
    {
        "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
        "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
    }
)  # fmt: skip
# Sysctls that belong to a namespace the container owns (ipc or net); others are global.
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    }
)  # fmt: skip

# Body fields that other engine code reads; parse_create accepts them without a warning.
HANDLED_ELSEWHERE: frozenset[str] = frozenset(
    {
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "StdinOnce",
        "Healthcheck",
        "StopTimeout",
        "Volumes",
        "NetworkingConfig",
        "HostConfig.RestartPolicy",
        "HostConfig.AutoRemove",
        "HostConfig.LogConfig",
        "HostConfig.Dns",
        "HostConfig.DnsOptions",
        "HostConfig.DnsSearch",
        "HostConfig.ExtraHosts",
        "HostConfig.PublishAllPorts",
    }
)


# --------------------------------------------------------------------------- records


class Ulimit(NamedTuple):
    name: str  # "nofile"
    soft: int  # -1: unlimited
    hard: int


class MountRequest(NamedTuple):
    """One entry of ``HostConfig.Mounts``."""

    type: str  # "bind", "volume" or "tmpfs"
    target: str
    source: str = ""  # host path (bind), volume name ("" = anonymous), unused for tmpfs
    readonly: bool = False
    propagation: str | None = None  # bind only
    no_copy: bool = False  # volume only: do not fill a new volume from the image
    tmpfs_size: int = 0  # bytes, 0 = the kernel's default
    tmpfs_mode: int | None = None


class VolumeMount(NamedTuple):
    """A volume the caller must resolve to a host directory (see :func:`attach_volumes`)."""

    name: str  # "" for an anonymous volume
    target: str
    readonly: bool = False
    no_copy: bool = False


class ContainerRequest(NamedTuple):
    """The validated subset of a Docker container-create body that shapes the spec."""

    image: str
    hostname: str | None = None
    user: str | None = None
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str | None = None
    tty: bool = False
    open_stdin: bool = False
    labels: Mapping[str, str] = _EMPTY
    stop_signal: str | None = None
    exposed_ports: Mapping[str, Any] = _EMPTY  # raw Docker JSON, passed through
    binds: tuple[str, ...] = ()
    mounts: tuple[MountRequest, ...] = ()
    tmpfs: Mapping[str, str] = _EMPTY
    readonly_rootfs: bool = False
    cap_add: tuple[str, ...] = ()  # canonical: "CAP_NET_ADMIN" or "ALL"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    security_opt: tuple[str, ...] = ()
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0  # microseconds; 0: the kernel's default
    cpu_quota: int = 0  # microseconds; 0: not set, -1: unlimited
    cpuset_cpus: str | None = None  # "0-3,6"
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    oom_score_adj: int = 0
    init: bool = False
    sysctls: Mapping[str, str] = _EMPTY
    shm_size: int = 0
    # "bridge" (the default bridge or a user-defined network: see network_name),
    # "host", "none" or "container:<name or id>"
    network_mode: str = "bridge"
    network_name: str = "bridge"  # the network a "bridge" container starts on
    console_size: tuple[int, int] | None = None  # (rows, columns) of a -t terminal
    port_bindings: Mapping[str, Any] = _EMPTY  # raw Docker JSON, passed through
    warnings: tuple[str, ...] = ()


class GeneratedSpec(NamedTuple):
    spec: dict[str, Any]  # config.json, without the volumes (see attach_volumes)
    volume_mounts: list[VolumeMount]
    warnings: list[str]
    network_mode: str  # as ContainerRequest's
    stop_signal: str = "SIGTERM"  # request's, else image's, canonical name
    exposed_ports: Mapping[str, Any] = _EMPTY
    port_bindings: Mapping[str, Any] = _EMPTY


# --------------------------------------------------------------------------- parsing


def _type_error(path: str, what: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: must be {what}")


class _Fields:
    """Typed reads from one JSON object; remembers which keys were read."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _type_error(path or "body", "an object")
        self.data: dict[str, Any] = data
        self.path = path
        self.read: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        self.read.add(key)
        return self.data.get(key)

    def string(self, key: str) -> str | None:
        value = self.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _type_error(self.at(key), "a string")
        return value

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise _type_error(self.at(key), "a boolean")
        return value

    def integer(self, key: str, *, minimum: int | None = 0) -> int:
        value = self.get(key)
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(self.at(key), _int_kind(minimum))
        if minimum is not None and value < minimum:
            raise _type_error(self.at(key), _int_kind(minimum))
        return value

    def strings(self, key: str, *, scalar_ok: bool = False) -> tuple[str, ...] | None:
        value = self.get(key)
        if value is None:
            return None
        if scalar_ok and isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(self.at(key), "a list of strings")
        return tuple(value)

    def string_map(self, key: str) -> Mapping[str, str]:
        value = self.get(key)
        if value is None:
            return _EMPTY
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _type_error(self.at(key), "an object of strings")
        return MappingProxyType(dict(value))

    def raw_map(self, key: str) -> Mapping[str, Any]:
        value = self.get(key)
        if value is None:
            return _EMPTY
        if not isinstance(value, dict):
            raise _type_error(self.at(key), "an object")
        return MappingProxyType(copy.deepcopy(value))

    def objects(self, key: str) -> list[_Fields]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise _type_error(self.at(key), "a list of objects")
        return [_Fields(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]

    def unread(self) -> Iterable[tuple[str, Any]]:
        for key, value in self.data.items():
            if key not in self.read:
                yield self.at(key), value


def console_size(value: Any, where: str) -> tuple[int, int] | None:
    """Docker's ``ConsoleSize``: ``[rows, columns]``; None when absent or ``[0, 0]``."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise _type_error(where, "an array of two non-negative integers")
    rows, columns = value
    return (rows, columns) if rows and columns else None


def _int_kind(minimum: int | None) -> str:
    if minimum == 0:
        return "a non-negative integer"
    if minimum is None:
        return "an integer"
    return f"an integer of at least {minimum}"


def parse_create(body: dict[str, Any]) -> ContainerRequest:
    """Validate a ``POST /containers/create`` body into a :class:`ContainerRequest`.

    Example: ``parse_create({"Image": "busybox", "Cmd": ["true"],
    "HostConfig": {"Memory": 67108864}})``.
    """
    top = _Fields(body, "")
    host = _Fields(top.get("HostConfig"), "HostConfig")
    image = top.string("Image")
    if image is None:
        raise InvalidArgument("Image: must not be empty")
    hostname = top.string("Hostname")
    if hostname is not None and not _HOSTNAME.fullmatch(hostname):
        raise InvalidArgument(f'Hostname: invalid hostname "{hostname}"')
    user = top.string("User")
    if user is not None:
        split_user(user, "User")
    env = top.strings("Env") or ()
    for i, item in enumerate(env):
        if item.partition("=")[0] == "":
            raise InvalidArgument(f'Env[{i}]: invalid environment variable "{item}"')
    working_dir = top.string("WorkingDir")
    if working_dir is not None and not working_dir.startswith("/"):
        raise InvalidArgument(f'WorkingDir: must be an absolute path, not "{working_dir}"')
    stop_signal = top.string("StopSignal")
    if stop_signal is not None:
        _signal_name(stop_signal, "StopSignal")
    request = ContainerRequest(
        image=image,
        hostname=hostname,
        user=user,
        env=env,
        cmd=top.strings("Cmd", scalar_ok=True),
        entrypoint=top.strings("Entrypoint", scalar_ok=True),
        working_dir=working_dir,
        tty=top.boolean("Tty"),
        open_stdin=top.boolean("OpenStdin"),
        labels=top.string_map("Labels"),
        stop_signal=stop_signal,
        exposed_ports=top.raw_map("ExposedPorts"),
        binds=host.strings("Binds") or (),
        mounts=tuple(_parse_mount(m) for m in host.objects("Mounts")),
        tmpfs=host.string_map("Tmpfs"),
        readonly_rootfs=host.boolean("ReadonlyRootfs"),
        cap_add=_capabilities(host, "CapAdd"),
        cap_drop=_capabilities(host, "CapDrop"),
        privileged=host.boolean("Privileged"),
        security_opt=host.strings("SecurityOpt") or (),
        memory=host.integer("Memory"),
        memory_swap=host.integer("MemorySwap", minimum=-1),
        memory_reservation=host.integer("MemoryReservation"),
        nano_cpus=host.integer("NanoCpus"),
        cpu_shares=host.integer("CpuShares"),
        cpu_period=host.integer("CpuPeriod"),
        cpu_quota=host.integer("CpuQuota", minimum=-1),
        cpuset_cpus=_cpu_list(host, "CpusetCpus"),
        cpuset_mems=_cpu_list(host, "CpusetMems"),
        pids_limit=_pids_limit(host),
        ulimits=tuple(_parse_ulimit(u) for u in host.objects("Ulimits")),
        oom_score_adj=host.integer("OomScoreAdj", minimum=None),
        init=bool(host.get("Init")),  # Docker sends null for "daemon default"
        sysctls=host.string_map("Sysctls"),
        shm_size=host.integer("ShmSize"),
        network_mode=_network_mode(host.string("NetworkMode")),
        network_name=_network_name(host.string("NetworkMode")),
        port_bindings=host.raw_map("PortBindings"),
        console_size=console_size(host.get("ConsoleSize"), host.at("ConsoleSize")),
    )
    _check_resources(request)
    warnings = [
        f"{path}: not supported, ignored"
        for fields in (top, host)
        for path, value in fields.unread()
        if path not in HANDLED_ELSEWHERE and path != "HostConfig" and _is_set(value)
    ]
    return request._replace(warnings=tuple(warnings))


def _is_set(value: object) -> bool:
    # -1 is how clients say "the default" for MemorySwappiness and a few others.
    return value not in (None, "", 0, -1, False, [], {})


def _capabilities(host: _Fields, key: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, name in enumerate(host.strings(key) or ()):
        canonical = name.upper()
        if canonical != "ALL" and not canonical.startswith("CAP_"):
            canonical = "CAP_" + canonical
        if canonical != "ALL" and canonical not in CAPABILITIES:
            raise InvalidArgument(f'HostConfig.{key}[{i}]: unknown capability "{name}"')
        out.append(canonical)
    return tuple(out)


def _cpu_list(host: _Fields, key: str) -> str | None:
    value = host.string(key)
    if value is not None and not _CPU_LIST.fullmatch(value):
        raise InvalidArgument(f'{host.at(key)}: invalid list "{value}" (want such as "0-3,6")')
    return value


def _pids_limit(host: _Fields) -> int | None:
    value = host.get("PidsLimit")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _type_error(host.at("PidsLimit"), "an integer")
    return value if value > 0 else None  # 0 and -1 both mean unlimited


def _network_mode(mode: str | None) -> str:
    """``bridge`` for the default bridge and user-defined networks alike (a new network
    namespace that the engine wires), ``host``, ``none`` or ``container:<ref>``."""
    if mode is None or mode in ("", "default", "bridge"):
        return "bridge"
    if mode in ("host", "none"):
        return mode
    if mode.startswith("container:"):
        if not mode.removeprefix("container:"):
            raise InvalidArgument(f'HostConfig.NetworkMode: invalid network mode "{mode}"')
        return mode
    return "bridge"


def _network_name(mode: str | None) -> str:
    return "bridge" if mode is None or mode in ("", "default") else mode


def _parse_mount(o: _Fields) -> MountRequest:
    kind = o.string("Type") or ""
    target = o.string("Target")
    source = o.string("Source") or ""
    if target is None:
        raise InvalidArgument(f"{o.at('Target')}: must not be empty")
    _check_target(target, o.at("Target"))
    bind = _Fields(o.get("BindOptions"), o.at("BindOptions"))
    volume = _Fields(o.get("VolumeOptions"), o.at("VolumeOptions"))
    tmpfs = _Fields(o.get("TmpfsOptions"), o.at("TmpfsOptions"))
    propagation = bind.string("Propagation")
    if kind == "bind":
        if not source.startswith("/"):
            raise InvalidArgument(f'{o.at("Source")}: must be an absolute path, not "{source}"')
        if propagation is not None and propagation not in _BIND_PROPAGATIONS:
            raise InvalidArgument(f'{bind.at("Propagation")}: invalid propagation "{propagation}"')
    elif kind == "volume":
        if source and not _VOLUME_NAME.fullmatch(source):
            raise InvalidArgument(f'{o.at("Source")}: invalid volume name "{source}"')
    elif kind == "tmpfs":
        if source:
            raise InvalidArgument(f"{o.at('Source')}: must be empty for a tmpfs mount")
    else:
        raise InvalidArgument(f'{o.at("Type")}: must be bind, volume or tmpfs, not "{kind}"')
    mode = tmpfs.get("Mode")
    if mode is not None and (not isinstance(mode, int) or isinstance(mode, bool) or mode < 0):
        raise _type_error(tmpfs.at("Mode"), "a non-negative integer")
    return MountRequest(
        type=kind,
        target=posixpath.normpath(target),
        source=source,
        readonly=o.boolean("ReadOnly"),
        propagation=propagation,
        no_copy=volume.boolean("NoCopy"),
        tmpfs_size=tmpfs.integer("SizeBytes"),
        tmpfs_mode=mode,
    )


def _parse_ulimit(o: _Fields) -> Ulimit:
    name = o.string("Name") or ""
    if name not in _ULIMIT_NAMES:
        raise InvalidArgument(f'{o.at("Name")}: unknown ulimit "{name}"')
    soft = o.integer("Soft", minimum=-1)
    hard = o.integer("Hard", minimum=-1)
    if _rlimit_value(soft) > _rlimit_value(hard):
        raise InvalidArgument(f"{o.at('Soft')}: must not exceed the hard limit {hard}")
    return Ulimit(name=name, soft=soft, hard=hard)


def _check_resources(r: ContainerRequest) -> None:
    if 0 < r.memory < _MIN_MEMORY:
        raise InvalidArgument("HostConfig.Memory: must be at least 6291456 (6m)")
    if r.memory_swap > 0:
        if r.memory == 0:
            raise InvalidArgument("HostConfig.MemorySwap: needs HostConfig.Memory to be set")
        if r.memory_swap < r.memory:
            raise InvalidArgument("HostConfig.MemorySwap: must be at least HostConfig.Memory")
    if r.memory_reservation:
        if r.memory_reservation < _MIN_MEMORY:
            raise InvalidArgument("HostConfig.MemoryReservation: must be at least 6291456 (6m)")
        if r.memory and r.memory < r.memory_reservation:
            raise InvalidArgument(
                "HostConfig.Memory: must not be below HostConfig.MemoryReservation"
            )
    if 0 < r.nano_cpus < _MIN_NANO_CPUS:
        raise InvalidArgument("HostConfig.NanoCpus: must be at least 10000000 (0.01 cpus)")
    if r.nano_cpus and r.cpu_period:
        raise InvalidArgument("HostConfig.NanoCpus: cannot be set with HostConfig.CpuPeriod")
    if r.nano_cpus and r.cpu_quota > 0:
        raise InvalidArgument("HostConfig.NanoCpus: cannot be set with HostConfig.CpuQuota")
    if r.cpu_period and not _MIN_CPU_PERIOD <= r.cpu_period <= _MAX_CPU_PERIOD:
        raise InvalidArgument("HostConfig.CpuPeriod: must be between 1000 and 1000000 (1ms to 1s)")
    if 0 < r.cpu_quota < _MIN_CPU_QUOTA:
        raise InvalidArgument("HostConfig.CpuQuota: must be at least 1000 (1ms)")
    if r.cpu_shares and not 2 <= r.cpu_shares <= 262144:
        raise InvalidArgument("HostConfig.CpuShares: must be between 2 and 262144")
    if not -1000 <= r.oom_score_adj <= 1000:
        raise InvalidArgument("HostConfig.OomScoreAdj: must be between -1000 and 1000")
    for name in r.sysctls:
        _check_sysctl(name, r.network_mode)


def _check_sysctl(name: str, network_mode: str) -> None:
    where = f'HostConfig.Sysctls: "{name}"'
    if name.startswith("net."):
        if network_mode == "host":
            raise InvalidArgument(f"{where} cannot be set with host networking")
    elif name not in _IPC_SYSCTLS and not name.startswith("fs.mqueue."):
        raise InvalidArgument(f"{where} is not namespaced and cannot be set in a container")


def _check_target(target: str, path: str) -> None:
    if not target.startswith("/"):
        raise InvalidArgument(f'{path}: must be an absolute path, not "{target}"')
    if posixpath.normpath(target) == "/":
        raise InvalidArgument(f"{path}: cannot mount over /")


def _signal_name(value: str, path: str) -> str:
    text = value.upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text)).name
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text].name
    except (KeyError, ValueError) as exc:
        raise InvalidArgument(f'{path}: invalid signal "{value}"') from exc


def split_user(user: str, path: str = "User") -> tuple[str, str | None]:
    """Split ``name|uid[:group|gid]`` into its two parts; a helper for ``passwd_lookup``."""
    if not _USER.fullmatch(user):
        raise InvalidArgument(f'{path}: invalid user "{user}"')
    name, _, group = user.partition(":")
    return name, group or None


# --------------------------------------------------------------------------- generation


def generate_spec(
    request: ContainerRequest,
    image: ContainerConfig | None,
    *,
    rootfs: str,
    container_id: str,
    hostname: str,
    resolv_conf: str,
    hosts: str,
    hostname_file: str,
    cgroups_path: str,
    passwd_lookup: Callable[[str], tuple[int, int, list[int]]],
    init_path: str | None = None,
    all_capabilities: Sequence[str] | None = None,
    netns_path: str | None = None,
) -> GeneratedSpec:
    """The config.json of a container, plus what the caller must still resolve.

    ``hostname`` is used when the request names none; ``hostname_file`` must hold the
    same name. ``passwd_lookup`` receives the effective user as written (``"0"`` when
    neither request nor image set one; ``"name"``, ``"uid:gid"``, ``"name:group"``...,
    see :func:`split_user`) and returns ``(uid, gid, supplementary gids)`` as read from
    the rootfs's /etc/passwd and /etc/group; numeric ids need no entry there.
    ``init_path`` is the init binary that ``HostConfig.Init`` runs as pid 1 (the
    caller bind-mounts it at that path); ``all_capabilities`` is what ``ALL`` and
    ``Privileged`` grant (default: every capability Moorage knows).
    """
    img = image or ContainerConfig()
    warnings = list(request.warnings)
    spec = default_spec(terminal=request.tty)
    process = spec["process"]
    if request.tty and request.console_size is not None:
        # The terminal has the caller's size from the first instruction on.
        process["consoleSize"] = dict(zip(("height", "width"), request.console_size, strict=True))
    linux = spec["linux"]
    effective_hostname = request.hostname or hostname

    spec["root"] = {"path": rootfs, "readonly": request.readonly_rootfs}
    spec["hostname"] = effective_hostname
    spec["annotations"] = {"org.moorage.container.id": container_id}
    linux["cgroupsPath"] = cgroups_path

    args = _args(request, img)
    if request.init:
        if init_path is None:
            raise InvalidArgument("HostConfig.Init: no init binary is configured")
        args = [init_path, "--", *args]
    process["args"] = args
    process["env"] = _env(request, img, effective_hostname)
    process["cwd"] = _cwd(request, img)
    user = request.user or img.user or "0"
    split_user(user, "User" if request.user else "image User")
    uid, gid, groups = passwd_lookup(user)
    process["user"] = {"uid": uid, "gid": gid}
    if groups:
        process["user"]["additionalGids"] = list(groups)
    process["noNewPrivileges"] = False  # Docker's default; SecurityOpt turns it on

    known_caps = list(all_capabilities) if all_capabilities is not None else list(CAPABILITIES)
    caps = known_caps if request.privileged else _tweak_caps(request, known_caps)
    process["capabilities"] = {
        "bounding": list(caps),
        "effective": list(caps),
        "permitted": list(caps),
        "inheritable": [],
        "ambient": [],
    }
    _security_opts(request, spec, caps, warnings)
    process["rlimits"] = _rlimits(process["rlimits"], request.ulimits)
    if request.oom_score_adj:
        process["oomScoreAdj"] = request.oom_score_adj

    if request.network_mode == "host":
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    elif netns_path is not None:  # container:<ref>: that container's namespace
        for ns in linux["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = netns_path
    resources = linux["resources"]
    resources.update(linux_resources(request))
    if request.sysctls:
        linux["sysctl"] = dict(request.sysctls)

    binds_and_tmpfs, volumes = user_mounts(request)
    spec["mounts"] = _mounts(
        spec["mounts"], binds_and_tmpfs, request, resolv_conf, hosts, hostname_file
    )
    if request.privileged:
        _make_privileged(spec)

    stop_signal = _signal_name(
        request.stop_signal or img.stop_signal or "SIGTERM",
        "StopSignal" if request.stop_signal else "image StopSignal",
    )
    return GeneratedSpec(
        spec=spec,
        volume_mounts=volumes,
        warnings=warnings,
        network_mode=request.network_mode,
        stop_signal=stop_signal,
        exposed_ports=request.exposed_ports,
        port_bindings=request.port_bindings,
    )


def _args(request: ContainerRequest, img: ContainerConfig) -> list[str]:
    if request.entrypoint is not None:
        # `--entrypoint ""` arrives as [""]: no entrypoint, and the image's Cmd goes too.
        entrypoint: Sequence[str] = [] if request.entrypoint == ("",) else request.entrypoint
        cmd: Sequence[str] = request.cmd or ()
    else:
        entrypoint = img.entrypoint or ()
        cmd = request.cmd or img.cmd or ()
    args = [*entrypoint, *cmd]
    if not args:
        raise InvalidArgument("no command specified")
    return args


def _env(request: ContainerRequest, img: ContainerConfig, hostname: str) -> list[str]:
    env: dict[str, str] = {"PATH": _PATH_DEFAULT, "HOSTNAME": f"HOSTNAME={hostname}"}
    if request.tty:
        env["TERM"] = "TERM=xterm"
    for item in (*img.env, *request.env):
        key, sep, _ = item.partition("=")
        if sep:
            env[key] = item
        else:
            env.pop(key, None)
    return list(env.values())


def _cwd(request: ContainerRequest, img: ContainerConfig) -> str:
    cwd = request.working_dir or img.working_dir or "/"
    return posixpath.normpath(posixpath.join("/", cwd))


def _tweak_caps(request: ContainerRequest, known: Sequence[str]) -> list[str]:
    """Docker's rule: start from ALL, nothing or the defaults; drops, then adds win."""
    if "ALL" in request.cap_add:
        caps = list(known)
    elif "ALL" in request.cap_drop:
        caps = []
    else:
        caps = list(DOCKER_DEFAULT_CAPABILITIES)
    caps = [c for c in caps if c not in request.cap_drop]
    caps.extend(c for c in request.cap_add if c != "ALL" and c not in caps)
    return caps


def _security_opts(
    request: ContainerRequest, spec: dict[str, Any], caps: Sequence[str], warnings: list[str]
) -> None:
    for i, opt in enumerate(request.security_opt):
        path = f"HostConfig.SecurityOpt[{i}]"
        key, sep, value = _split_opt(opt)
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidArgument(f'{path}: invalid no-new-privileges value "{value}"')
            spec["process"]["noNewPrivileges"] = value != "false"
        elif key == "seccomp" and sep:
            if request.privileged:
                continue  # privileged containers run unconfined, as with Docker
            if value == "unconfined":
                spec["linux"].pop("seccomp", None)
            else:
                spec["linux"]["seccomp"] = _seccomp_from_docker(value, caps, path)
        elif key in ("apparmor", "label", "systempaths") and sep:
            warnings.append(f"{path}: {key} is not supported, ignored")
        else:
            raise InvalidArgument(f'{path}: invalid security option "{opt}"')


def _split_opt(opt: str) -> tuple[str, str, str]:
    # Docker accepts "key=value" and the older "key:value".
    eq, colon = opt.find("="), opt.find(":")
    cut = min(i for i in (eq, colon, len(opt)) if i >= 0)
    return opt[:cut], opt[cut : cut + 1], opt[cut + 1 :]


_ARCH = {
    "x86_64": "SCMP_ARCH_X86_64",
    "aarch64": "SCMP_ARCH_AARCH64",
    "arm64": "SCMP_ARCH_AARCH64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
}


def _seccomp_from_docker(text: str, caps: Sequence[str], path: str) -> dict[str, Any]:
    """Docker's seccomp profile format (what the CLI sends inline) to OCI's."""
    where = f"{path}: seccomp profile"
    try:
        profile = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}: invalid JSON: {exc}") from exc
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise InvalidArgument(f"{where}: defaultAction: must be a string")
    native = _ARCH.get(platform.machine(), "")
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    for key in ("defaultErrnoRet", "listenerPath", "flags"):
        if key in profile:
            out[key] = profile[key]
    if profile.get("archMap"):
        arches: list[str] = []
        for entry in _dicts(profile["archMap"], f"{where}: archMap"):
            if entry.get("architecture") == native:
                arches.extend([native, *(entry.get("subArchitectures") or [])])
        out["architectures"] = arches
    elif profile.get("architectures"):
        out["architectures"] = profile["architectures"]
    rules: list[dict[str, Any]] = []
    for i, call in enumerate(_dicts(profile.get("syscalls") or [], f"{where}: syscalls")):
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if not isinstance(names, list) or not names:
            raise InvalidArgument(f"{where}: syscalls[{i}].names: must not be empty")
        if not _rule_applies(call, caps, native):
            continue
        rule: dict[str, Any] = {"names": names, "action": call.get("action")}
        if "errnoRet" in call:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [
                {k: a.get(k, 0) for k in ("index", "value", "valueTwo")} | {"op": a.get("op")}
                for a in _dicts(call["args"], f"{where}: syscalls[{i}].args")
            ]
        rules.append(rule)
    out["syscalls"] = rules
    return out


def _dicts(value: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument(f"{where}: must be a list of objects")
    return value


def _rule_applies(call: dict[str, Any], caps: Sequence[str], native: str) -> bool:
    # minKernel is not checked: every rule with one is kept.
    includes = call.get("includes") or {}
    excludes = call.get("excludes") or {}
    if includes.get("arches") and native not in includes["arches"]:
        return False
    if any(c not in caps for c in includes.get("caps") or ()):
        return False
    if native in (excludes.get("arches") or ()):
        return False
    return not any(c in caps for c in excludes.get("caps") or ())


def _rlimit_value(limit: int) -> int:
    return _RLIM_INFINITY if limit < 0 else limit


def _rlimits(defaults: list[dict[str, Any]], ulimits: Sequence[Ulimit]) -> list[dict[str, Any]]:
    by_type = {r["type"]: r for r in defaults}
    for u in ulimits:
        kind = "RLIMIT_" + u.name.upper()
        by_type[kind] = {
            "type": kind,
            "soft": _rlimit_value(u.soft),
            "hard": _rlimit_value(u.hard),
        }
    return list(by_type.values())


def linux_resources(r: ContainerRequest) -> dict[str, Any]:
    """The OCI ``linux.resources`` (memory, cpu, pids) that ``r`` asks for."""
    out: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if r.memory:
        memory["limit"] = r.memory
        # OCI's swap is memory plus swap; Docker's default allows as much swap as memory.
        memory["swap"] = r.memory_swap if r.memory_swap else 2 * r.memory
    elif r.memory_swap == -1:
        memory["swap"] = -1
    if r.memory_reservation:
        memory["reservation"] = r.memory_reservation
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if r.nano_cpus:
        cpu["quota"] = r.nano_cpus * _CPU_PERIOD // 1_000_000_000
        cpu["period"] = _CPU_PERIOD
    else:  # Docker: NanoCpus and CpuPeriod/CpuQuota exclude each other
        if r.cpu_quota:
            cpu["quota"] = r.cpu_quota
        if r.cpu_period:
            cpu["period"] = r.cpu_period
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit is not None:
        out["pids"] = {"limit": r.pids_limit}
    return out


def user_mounts(r: ContainerRequest) -> tuple[list[dict[str, Any]], list[VolumeMount]]:
    mounts: list[dict[str, Any]] = []
    volumes: list[VolumeMount] = []
    seen: set[str] = set()

    def claim(target: str, path: str) -> str:
        target = posixpath.normpath(target)
        if target in seen:
            raise InvalidArgument(f"{path}: duplicate mount point: {target}")
        seen.add(target)
        return target

    for i, spec in enumerate(r.binds):
        path = f"HostConfig.Binds[{i}]"
        bind = _parse_bind(spec, path)
        target = claim(bind.target, path)
        if bind.type == "bind":
            mounts.append(_bind(bind.source, target, bind.readonly, bind.propagation))
        else:
            volumes.append(VolumeMount(bind.source, target, bind.readonly, bind.no_copy))
    for i, m in enumerate(r.mounts):
        path = f"HostConfig.Mounts[{i}].Target"
        target = claim(m.target, path)
        if m.type == "bind":
            mounts.append(_bind(m.source, target, m.readonly, m.propagation))
        elif m.type == "volume":
            volumes.append(VolumeMount(m.source, target, m.readonly, m.no_copy))
        else:
            options = ["nosuid", "nodev", "noexec"]
            if m.tmpfs_size:
                options.append(f"size={m.tmpfs_size}")
            if m.tmpfs_mode is not None:
                options.append(f"mode={m.tmpfs_mode:o}")
            if m.readonly:
                options.append("ro")
            mounts.append(_tmpfs(target, options))
    for target, opts in r.tmpfs.items():
        path = f"HostConfig.Tmpfs[{target}]"
        _check_target(target, path)
        options = [o for o in opts.split(",") if o]
        mounts.append(_tmpfs(claim(target, path), ["nosuid", "nodev", "noexec", *options]))
    return mounts, volumes


def _parse_bind(spec: str, path: str) -> MountRequest:
    """``/host:/ctr[:opts]``, ``name:/ctr[:opts]`` or ``/ctr`` (an anonymous volume)."""
    parts = spec.split(":")
    if len(parts) == 1:
        source, target, mode = "", parts[0], ""
    elif len(parts) == 2:
        source, target, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f'{path}: invalid volume specification "{spec}"')
    _check_target(target, path)
    is_bind = source.startswith("/")
    if source and not is_bind and not _VOLUME_NAME.fullmatch(source):
        raise InvalidArgument(f'{path}: invalid volume name "{source}"')
    readonly, propagation, no_copy = False, None, False
    for opt in (o for o in mode.split(",") if o):
        if opt in ("ro", "rw"):
            readonly = opt == "ro"
        elif opt in ("z", "Z"):
            pass  # SELinux relabelling: nothing to do without SELinux
        elif opt in _BIND_PROPAGATIONS and is_bind:
            propagation = opt
        elif opt == "nocopy" and not is_bind:
            no_copy = True
        else:
            raise InvalidArgument(f'{path}: invalid mode "{opt}" in "{spec}"')
    return MountRequest(
        type="bind" if is_bind else "volume",
        target=target,
        source=source,
        readonly=readonly,
        propagation=propagation,
        no_copy=no_copy,
    )


def _bind(source: str, target: str, readonly: bool, propagation: str | None) -> dict[str, Any]:
    options = ["rbind", propagation or "rprivate"]
    if readonly:
        options.append("ro")
    return {"destination": target, "type": "bind", "source": source, "options": options}


def _tmpfs(target: str, options: list[str]) -> dict[str, Any]:
    return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options}


def _depth(mount: Mapping[str, Any]) -> int:
    return len([p for p in str(mount["destination"]).split("/") if p])


def _mounts(
    defaults: list[dict[str, Any]],
    user: list[dict[str, Any]],
    r: ContainerRequest,
    resolv_conf: str,
    hosts: str,
    hostname_file: str,
) -> list[dict[str, Any]]:
    taken = {m["destination"] for m in user}
    mounts = [m for m in defaults if m["destination"] not in taken]
    for m in mounts:
        if m["destination"] == "/dev/shm":
            size = r.shm_size or _DEFAULT_SHM_SIZE
            m["options"] = [o for o in m["options"] if not o.startswith("size=")]
            m["options"].append(f"size={size}")
    for target, source in (
        ("/etc/resolv.conf", resolv_conf),
        ("/etc/hosts", hosts),
        ("/etc/hostname", hostname_file),
    ):
        if target not in taken:
            mount = _bind(source, target, r.readonly_rootfs, None)
            mount["options"][2:2] = ["nosuid", "nodev", "noexec"]
            mounts.append(mount)
    # Parents before children: a stable sort by depth keeps everything else in order.
    return sorted([*mounts, *user], key=_depth)


def _make_privileged(spec: dict[str, Any]) -> None:
    linux = spec["linux"]
    linux.pop("seccomp", None)
    linux["maskedPaths"] = []
    linux["readonlyPaths"] = []
    linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    for mount in spec["mounts"]:
        if mount["destination"] in ("/sys", "/sys/fs/cgroup"):
            mount["options"] = [o for o in mount["options"] if o != "ro"]


def attach_volumes(
    spec: dict[str, Any], resolved: Iterable[tuple[VolumeMount, str]]
) -> dict[str, Any]:
    """A copy of ``spec`` with each volume bind-mounted from its host directory."""
    out = copy.deepcopy(spec)
    extra = [_bind(source, v.target, v.readonly, None) for v, source in resolved]
    out["mounts"] = sorted([*out["mounts"], *extra], key=_depth)
    return out
