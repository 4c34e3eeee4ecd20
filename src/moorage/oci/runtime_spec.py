"""The OCI runtime configuration (a bundle's ``config.json``) as frozen records.

The records are NamedTuples rather than dataclasses: this module is imported on
every container start, and defining the records as slotted dataclasses cost six
times as much there (measured: 7.6 ms against 1.2 ms for 22 classes). Map fields
default to a shared read-only empty mapping.

This module owns turning config.json into a validated :class:`Spec` and back. It knows
nothing about running a container; the runtime reads the records it returns.

Conventions of the records:

- field names are the snake_case of the JSON keys (``oomScoreAdj`` -> ``oom_score_adj``);
- absent optional values are ``None``, absent lists are empty tuples, absent maps empty
  dicts; ``Spec.hooks`` and ``Spec.linux`` are always present (empty when absent);
- ``linux.resources`` and ``linux.personality`` stay raw JSON dicts (validated here),
  because the cgroup code converts resources itself.

Validation covers the spec's MUSTs and what runc refuses before it touches the kernel.
Keys this module does not know are ignored, so newer configs still load, as with runc.
Every problem is an :class:`InvalidArgument` naming the source and the JSON path::

    config.json: linux.namespaces[2].type: unknown namespace type "foo"
    config.json: process.args: must not be empty

``spec_to_dict`` is the inverse of ``parse_spec``: ``parse_spec(spec_to_dict(s)) == s``.
"""

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from moorage.errors import InvalidArgument, NotFound, PermissionDenied
from moorage.oci._jsonpath import At as _At
from moorage.oci._jsonpath import quote as _quote
from moorage.oci._jsonpath import type_name as _type_name

__all__ = [
    "Capabilities",
    "ConsoleSize",
    "Device",
    "Hook",
    "Hooks",
    "IDMapping",
    "Linux",
    "Mount",
    "Namespace",
    "Process",
    "Rlimit",
    "Root",
    "Seccomp",
    "SeccompArg",
    "Spec",
    "SyscallRule",
    "User",
    "load_process",
    "load_spec",
    "parse_process",
    "parse_spec",
    "process_to_dict",
    "spec_to_dict",
]


# --------------------------------------------------------------------------- records


_EMPTY: Mapping[str, str] = MappingProxyType({})


class Root(NamedTuple):
    path: str
    readonly: bool = False


class Mount(NamedTuple):
    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()


class ConsoleSize(NamedTuple):
    height: int
    width: int


class User(NamedTuple):
    uid: int
    gid: int
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()
    username: str | None = None


class Capabilities(NamedTuple):
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


class Rlimit(NamedTuple):
    type: str
    hard: int
    soft: int


class Process(NamedTuple):
    terminal: bool
    console_size: ConsoleSize | None
    user: User
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str | None = None
    selinux_label: str | None = None
    command_line: str | None = None


class Hook(NamedTuple):
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


class Hooks(NamedTuple):
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


class Namespace(NamedTuple):
    type: str
    path: str | None = None


class IDMapping(NamedTuple):
    container_id: int
    host_id: int
    size: int


class Device(NamedTuple):
    type: str
    path: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


class SeccompArg(NamedTuple):
    index: int  # type: ignore[assignment]  # the OCI name; shadows tuple.index on purpose
    value: int
    value_two: int
    op: str


class SyscallRule(NamedTuple):
    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()


class Seccomp(NamedTuple):
    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    syscalls: tuple[SyscallRule, ...] = ()


class Linux(NamedTuple):
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    cgroups_path: str | None = None
    # Raw, validated JSON: the cgroup managers convert it to their own settings.
    resources: dict[str, Any] | None = None
    rootfs_propagation: str | None = None
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    sysctl: Mapping[str, str] = _EMPTY
    seccomp: Seccomp | None = None
    mount_label: str | None = None
    personality: dict[str, Any] | None = None


class Spec(NamedTuple):
    oci_version: str
    root: Root | None = None
    process: Process | None = None
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks = Hooks()
    annotations: Mapping[str, str] = _EMPTY
    linux: Linux = Linux()


# --------------------------------------------------------------------------- vocabulary

NAMESPACE_TYPES = frozenset({"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"})
ROOTFS_PROPAGATIONS = frozenset(
    {"shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable"}
)
DEVICE_TYPES = frozenset({"c", "b", "u", "p"})
RLIMIT_TYPES = frozenset(
    {
        "RLIMIT_AS",
        "RLIMIT_CORE",
        "RLIMIT_CPU",
        "RLIMIT_DATA",
        "RLIMIT_FSIZE",
        "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_RSS",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
        "RLIMIT_SIGPENDING",
        "RLIMIT_STACK",
    }
)
SECCOMP_ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
SECCOMP_OPERATORS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)
PERSONALITY_DOMAINS = frozenset({"LINUX", "LINUX32"})

# Unknown but well-formed names pass: whether the kernel or libseccomp knows them is the
# runtime's question, and newer kernels keep adding them.
_CAPABILITY_NAME = re.compile(r"CAP_[A-Z_]+")
_SECCOMP_ARCH_NAME = re.compile(r"SCMP_ARCH_[A-Z0-9_]+")
_SECCOMP_FLAG_NAME = re.compile(r"SECCOMP_FILTER_FLAG_[A-Z0-9_]+")

_HOOK_KEYS = (
    ("prestart", "prestart"),
    ("createRuntime", "create_runtime"),
    ("createContainer", "create_container"),
    ("startContainer", "start_container"),
    ("poststart", "poststart"),
    ("poststop", "poststop"),
)
_CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class _Bounds(NamedTuple):
    low: int
    high: int
    describe: str


_U16 = _Bounds(0, 2**16 - 1, "an unsigned 16-bit integer")
_U32 = _Bounds(0, 2**32 - 1, "an unsigned 32-bit integer")
_U64 = _Bounds(0, 2**64 - 1, "an unsigned 64-bit integer")
_I64 = _Bounds(-(2**63), 2**63 - 1, "a signed 64-bit integer")
_POSITIVE_U32 = _Bounds(1, 2**32 - 1, "an unsigned 32-bit integer greater than 0")
_POSITIVE_I64 = _Bounds(1, 2**63 - 1, "greater than 0")
_UMASK = _Bounds(0, 0o777, "between 0 and 0o777")
_OOM_SCORE_ADJ = _Bounds(-1000, 1000, "between -1000 and 1000")
_SECCOMP_ARG_INDEX = _Bounds(0, 5, "between 0 and 5")  # a syscall has at most six arguments


# --------------------------------------------------------------------------- JSON reading


def _as_str(value: object, at: _At) -> str:
    if not isinstance(value, str):
        raise at.fail(f"must be a string, not {_type_name(value)}")
    return value


def _as_bool(value: object, at: _At) -> bool:
    if not isinstance(value, bool):
        raise at.fail(f"must be a boolean, not {_type_name(value)}")
    return value


def _as_int(value: object, at: _At, bounds: _Bounds) -> int:
    # bool is an int subclass in Python; JSON true is never a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.fail(f"must be an integer, not {_type_name(value)}")
    if not bounds.low <= value <= bounds.high:
        raise at.fail(f"must be {bounds.describe}, not {value}")
    return value


def _as_list(value: object, at: _At) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise at.fail(f"must be an array, not {_type_name(value)}")
    return list(value)


class _Obj:
    """A JSON object being read, with its place in the document.

    A key whose value is JSON null counts as absent, as it does for Go's decoder in runc.
    """

    __slots__ = ("at", "data")

    def __init__(self, value: object, at: _At) -> None:
        if not isinstance(value, dict):
            raise at.fail(f"must be an object, not {_type_name(value)}")
        self.at = at
        self.data: dict[str, Any] = value

    def member(self, key: str) -> _At:
        return self.at.member(key)

    def required(self, key: str) -> Any:
        value = self.data.get(key)
        if value is None:
            raise self.member(key).fail("missing")
        return value

    def string(self, key: str) -> str:
        return _as_str(self.required(key), self.member(key))

    def opt_string(self, key: str) -> str | None:
        value = self.data.get(key)
        return None if value is None else _as_str(value, self.member(key))

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        return False if value is None else _as_bool(value, self.member(key))

    def integer(self, key: str, bounds: _Bounds) -> int:
        return _as_int(self.required(key), self.member(key), bounds)

    def opt_integer(self, key: str, bounds: _Bounds) -> int | None:
        value = self.data.get(key)
        return None if value is None else _as_int(value, self.member(key), bounds)

    def items(self, key: str) -> list[tuple[Any, _At]]:
        """The elements of an optional array, each with its place."""
        value = self.data.get(key)
        if value is None:
            return []
        at = self.member(key)
        return [(item, at.item(i)) for i, item in enumerate(_as_list(value, at))]

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(_as_str(item, at) for item, at in self.items(key))

    def integers(self, key: str, bounds: _Bounds) -> tuple[int, ...]:
        return tuple(_as_int(item, at, bounds) for item, at in self.items(key))

    def string_map(self, key: str) -> dict[str, str]:
        child = self.child(key)
        if child is None:
            return {}
        return {k: _as_str(v, child.member(k)) for k, v in child.data.items()}

    def child(self, key: str) -> "_Obj | None":
        value = self.data.get(key)
        return None if value is None else _Obj(value, self.member(key))

    def required_child(self, key: str) -> "_Obj":
        return _Obj(self.required(key), self.member(key))

    def children(self, key: str) -> "list[_Obj]":
        return [_Obj(item, at) for item, at in self.items(key)]


def _check_absolute(path: str, at: _At) -> str:
    if not path.startswith("/"):
        raise at.fail(f"must be an absolute path, not {_quote(path)}")
    return path


def _check_one_of(value: str, allowed: frozenset[str], what: str, at: _At) -> str:
    if value not in allowed:
        raise at.fail(f"unknown {what} {_quote(value)}")
    return value


def _check_name(value: str, pattern: re.Pattern[str], what: str, at: _At) -> str:
    if not pattern.fullmatch(value):
        raise at.fail(f"malformed {what} {_quote(value)}")
    return value


# --------------------------------------------------------------------------- parsing


def parse_spec(data: object, source: str = "config.json") -> Spec:
    """Validate decoded config.json ``data`` and return it as a :class:`Spec`.

    ``source`` starts every error message; pass the file name the data came from.
    """
    doc = _Obj(data, _At(source, ""))
    oci_version = doc.string("ociVersion")
    if not oci_version:
        raise doc.member("ociVersion").fail("must not be empty")
    root = doc.child("root")
    process = doc.child("process")
    hooks = doc.child("hooks")
    linux = doc.child("linux")
    return Spec(
        oci_version=oci_version,
        root=None if root is None else _parse_root(root),
        process=None if process is None else _parse_process(process),
        hostname=doc.opt_string("hostname"),
        domainname=doc.opt_string("domainname"),
        mounts=tuple(_parse_mount(m) for m in doc.children("mounts")),
        hooks=Hooks() if hooks is None else _parse_hooks(hooks),
        annotations=doc.string_map("annotations"),
        linux=Linux() if linux is None else _parse_linux(linux),
    )


def parse_process(data: object, source: str = "process.json") -> Process:
    """Validate a decoded process object, as ``exec --process`` reads it."""
    return _parse_process(_Obj(data, _At(source, "")))


def _parse_root(o: _Obj) -> Root:
    path = o.string("path")
    if not path:
        raise o.member("path").fail("must not be empty")
    return Root(path=path, readonly=o.boolean("readonly"))


def _parse_mount(o: _Obj) -> Mount:
    # Relative destinations are accepted and kept as written: the spec allows them for
    # compatibility and resolves them against "/" at mount time.
    destination = o.string("destination")
    if not destination:
        raise o.member("destination").fail("must not be empty")
    return Mount(
        destination=destination,
        type=o.opt_string("type"),
        source=o.opt_string("source"),
        options=o.strings("options"),
    )


def _parse_process(o: _Obj) -> Process:
    o.required("args")
    args = o.strings("args")
    if not args:
        raise o.member("args").fail("must not be empty")
    console = o.child("consoleSize")
    capabilities = o.child("capabilities")
    return Process(
        terminal=o.boolean("terminal"),
        console_size=None if console is None else _parse_console_size(console),
        user=_parse_user(o.required_child("user")),
        args=args,
        env=o.strings("env"),
        cwd=_check_absolute(o.string("cwd"), o.member("cwd")),
        capabilities=None if capabilities is None else _parse_capabilities(capabilities),
        rlimits=_parse_rlimits(o),
        no_new_privileges=o.boolean("noNewPrivileges"),
        oom_score_adj=o.opt_integer("oomScoreAdj", _OOM_SCORE_ADJ),
        apparmor_profile=o.opt_string("apparmorProfile"),
        selinux_label=o.opt_string("selinuxLabel"),
        command_line=o.opt_string("commandLine"),
    )


def _parse_console_size(o: _Obj) -> ConsoleSize:
    return ConsoleSize(height=o.integer("height", _U32), width=o.integer("width", _U32))


def _parse_user(o: _Obj) -> User:
    return User(
        uid=o.integer("uid", _U32),
        gid=o.integer("gid", _U32),
        umask=o.opt_integer("umask", _UMASK),
        additional_gids=o.integers("additionalGids", _U32),
        username=o.opt_string("username"),
    )


def _parse_capabilities(o: _Obj) -> Capabilities:
    sets: dict[str, tuple[str, ...]] = {}
    for key in _CAPABILITY_SETS:
        sets[key] = tuple(
            _check_name(_as_str(item, at), _CAPABILITY_NAME, "capability name", at)
            for item, at in o.items(key)
        )
    return Capabilities(**sets)


def _parse_rlimits(process: _Obj) -> tuple[Rlimit, ...]:
    rlimits: list[Rlimit] = []
    seen: set[str] = set()
    for o in process.children("rlimits"):
        type_at = o.member("type")
        kind = _check_one_of(o.string("type"), RLIMIT_TYPES, "rlimit type", type_at)
        if kind in seen:
            raise type_at.fail(f"duplicate rlimit type {_quote(kind)}")
        seen.add(kind)
        hard, soft = o.integer("hard", _U64), o.integer("soft", _U64)
        if soft > hard:
            raise o.member("soft").fail(f"must not exceed hard limit {hard}, not {soft}")
        rlimits.append(Rlimit(type=kind, hard=hard, soft=soft))
    return tuple(rlimits)


def _parse_hooks(o: _Obj) -> Hooks:
    lists = {attr: tuple(_parse_hook(h) for h in o.children(key)) for key, attr in _HOOK_KEYS}
    return Hooks(**lists)


def _parse_hook(o: _Obj) -> Hook:
    return Hook(
        path=_check_absolute(o.string("path"), o.member("path")),
        args=o.strings("args"),
        env=o.strings("env"),
        timeout=o.opt_integer("timeout", _POSITIVE_I64),
    )


def _parse_linux(o: _Obj) -> Linux:
    namespaces = _parse_namespaces(o)
    uid_mappings = _parse_id_mappings(o, "uidMappings", namespaces)
    gid_mappings = _parse_id_mappings(o, "gidMappings", namespaces)
    propagation = o.opt_string("rootfsPropagation")
    if propagation is not None:
        _check_one_of(
            propagation, ROOTFS_PROPAGATIONS, "rootfs propagation", o.member("rootfsPropagation")
        )
    resources = o.child("resources")
    if resources is not None:
        _check_resources(resources)
    personality = o.child("personality")
    if personality is not None:
        _check_personality(personality)
    seccomp = o.child("seccomp")
    return Linux(
        namespaces=namespaces,
        uid_mappings=uid_mappings,
        gid_mappings=gid_mappings,
        devices=tuple(_parse_device(d) for d in o.children("devices")),
        cgroups_path=o.opt_string("cgroupsPath"),
        # Copied so that later changes to the caller's dict cannot reach a frozen Spec.
        resources=None if resources is None else copy.deepcopy(resources.data),
        rootfs_propagation=propagation,
        masked_paths=o.strings("maskedPaths"),
        readonly_paths=o.strings("readonlyPaths"),
        sysctl=o.string_map("sysctl"),
        seccomp=None if seccomp is None else _parse_seccomp(seccomp),
        mount_label=o.opt_string("mountLabel"),
        personality=None if personality is None else copy.deepcopy(personality.data),
    )


def _parse_namespaces(linux: _Obj) -> tuple[Namespace, ...]:
    namespaces: list[Namespace] = []
    seen: set[str] = set()
    for o in linux.children("namespaces"):
        type_at = o.member("type")
        kind = _check_one_of(o.string("type"), NAMESPACE_TYPES, "namespace type", type_at)
        if kind in seen:
            raise type_at.fail(f"duplicate namespace type {_quote(kind)}")
        seen.add(kind)
        path = o.opt_string("path")
        if path is not None:
            _check_absolute(path, o.member("path"))
        namespaces.append(Namespace(type=kind, path=path))
    return tuple(namespaces)


def _parse_id_mappings(
    linux: _Obj, key: str, namespaces: Iterable[Namespace]
) -> tuple[IDMapping, ...]:
    mappings = tuple(
        IDMapping(
            container_id=o.integer("containerID", _U32),
            host_id=o.integer("hostID", _U32),
            size=o.integer("size", _POSITIVE_U32),
        )
        for o in linux.children(key)
    )
    if mappings and not any(ns.type == "user" for ns in namespaces):
        raise linux.member(key).fail("requires a user namespace in linux.namespaces")
    return mappings


def _parse_device(o: _Obj) -> Device:
    kind = _check_one_of(o.string("type"), DEVICE_TYPES, "device type", o.member("type"))
    if kind != "p":  # a FIFO has no device numbers; every other type needs both
        o.required("major")
        o.required("minor")
    return Device(
        type=kind,
        path=_check_absolute(o.string("path"), o.member("path")),
        major=o.opt_integer("major", _I64) or 0,
        minor=o.opt_integer("minor", _I64) or 0,
        file_mode=o.opt_integer("fileMode", _U32),
        uid=o.opt_integer("uid", _U32),
        gid=o.opt_integer("gid", _U32),
    )


def _parse_seccomp(o: _Obj) -> Seccomp:
    action_at = o.member("defaultAction")
    default_action = _check_one_of(
        o.string("defaultAction"), SECCOMP_ACTIONS, "seccomp action", action_at
    )
    seccomp = Seccomp(
        default_action=default_action,
        default_errno_ret=o.opt_integer("defaultErrnoRet", _U32),
        architectures=tuple(
            _check_name(_as_str(item, at), _SECCOMP_ARCH_NAME, "seccomp architecture", at)
            for item, at in o.items("architectures")
        ),
        flags=tuple(
            _check_name(_as_str(item, at), _SECCOMP_FLAG_NAME, "seccomp flag", at)
            for item, at in o.items("flags")
        ),
        listener_path=o.opt_string("listenerPath"),
        syscalls=tuple(_parse_syscall_rule(r) for r in o.children("syscalls")),
    )
    # A notify action hands the syscall to an agent, which listens on listenerPath.
    notifies = default_action == "SCMP_ACT_NOTIFY" or any(
        rule.action == "SCMP_ACT_NOTIFY" for rule in seccomp.syscalls
    )
    if notifies and not seccomp.listener_path:
        raise o.member("listenerPath").fail("required when SCMP_ACT_NOTIFY is used")
    return seccomp


def _parse_syscall_rule(o: _Obj) -> SyscallRule:
    o.required("names")
    names = o.strings("names")
    if not names:
        raise o.member("names").fail("must not be empty")
    action_at = o.member("action")
    return SyscallRule(
        names=names,
        action=_check_one_of(o.string("action"), SECCOMP_ACTIONS, "seccomp action", action_at),
        errno_ret=o.opt_integer("errnoRet", _U32),
        args=tuple(_parse_seccomp_arg(a) for a in o.children("args")),
    )


def _parse_seccomp_arg(o: _Obj) -> SeccompArg:
    return SeccompArg(
        index=o.integer("index", _SECCOMP_ARG_INDEX),
        value=o.integer("value", _U64),
        value_two=o.opt_integer("valueTwo", _U64) or 0,
        op=_check_one_of(o.string("op"), SECCOMP_OPERATORS, "seccomp operator", o.member("op")),
    )


def _check_personality(o: _Obj) -> None:
    _check_one_of(o.string("domain"), PERSONALITY_DOMAINS, "personality domain", o.member("domain"))
    o.strings("flags")


# linux.resources is kept raw, but its shape is checked here so that the cgroup code can
# trust the types. Scalar fields per section: "s" string, "b" boolean, bounds integers.
_Kind = _Bounds | str
_RESOURCE_SCALARS: dict[str, dict[str, _Kind]] = {
    "memory": {
        "limit": _I64,
        "reservation": _I64,
        "swap": _I64,
        "kernel": _I64,
        "kernelTCP": _I64,
        "swappiness": _U64,
        "disableOOMKiller": "b",
        "useHierarchy": "b",
        "checkBeforeUpdate": "b",
    },
    "cpu": {
        "shares": _U64,
        "quota": _I64,
        "burst": _U64,
        "period": _U64,
        "realtimeRuntime": _I64,
        "realtimePeriod": _U64,
        "cpus": "s",
        "mems": "s",
        "idle": _I64,
    },
    "pids": {"limit": _I64},
    "blockIO": {"weight": _U16, "leafWeight": _U16},
    "network": {"classID": _U32},
}
_RESOURCE_DEVICE_TYPES = frozenset({"a", "c", "b"})
_BLOCK_IO_THROTTLES = (
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
)


def _check_scalars(o: _Obj, fields: dict[str, _Kind]) -> None:
    for key, kind in fields.items():
        value = o.data.get(key)
        if value is None:
            continue
        at = o.member(key)
        if kind == "s":
            _as_str(value, at)
        elif kind == "b":
            _as_bool(value, at)
        elif isinstance(kind, _Bounds):
            _as_int(value, at, kind)


def _check_resources(o: _Obj) -> None:
    for section, fields in _RESOURCE_SCALARS.items():
        child = o.child(section)
        if child is not None:
            _check_scalars(child, fields)
    for device in o.children("devices"):
        device.required("allow")
        _check_scalars(device, {"allow": "b", "major": _I64, "minor": _I64})
        kind = device.opt_string("type")
        if kind is not None:
            _check_one_of(kind, _RESOURCE_DEVICE_TYPES, "device type", device.member("type"))
        access = device.opt_string("access")
        if access is not None and not set(access) <= set("rwm"):
            raise device.member("access").fail(f"must use only r, w and m, not {_quote(access)}")
    for limit in o.children("hugepageLimits"):
        limit.string("pageSize")
        limit.integer("limit", _U64)
    block_io = o.child("blockIO")
    if block_io is not None:
        for device in block_io.children("weightDevice"):
            device.integer("major", _I64)
            device.integer("minor", _I64)
            _check_scalars(device, {"weight": _U16, "leafWeight": _U16})
        for key in _BLOCK_IO_THROTTLES:
            for device in block_io.children(key):
                device.integer("major", _I64)
                device.integer("minor", _I64)
                device.integer("rate", _U64)
    network = o.child("network")
    if network is not None:
        for priority in network.children("priorities"):
            priority.string("name")
            priority.integer("priority", _U32)
    rdma = o.child("rdma")
    if rdma is not None:
        for name in rdma.data:
            _check_scalars(
                _Obj(rdma.data[name], rdma.member(name)), {"hcaHandles": _U32, "hcaObjects": _U32}
            )
    o.string_map("unified")


# --------------------------------------------------------------------------- files


def load_spec(bundle: str | os.PathLike[str]) -> Spec:
    """Read and validate ``<bundle>/config.json``.

    Errors name the file: a missing file is :class:`NotFound`, malformed JSON an
    :class:`InvalidArgument` with line and column.
    """
    path = os.path.join(os.fspath(bundle), "config.json")
    try:
        raw = _read(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound(f"no config.json in bundle: {os.fspath(bundle)}") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_spec(_decode_json(raw, path), path)


def load_process(path: str | os.PathLike[str]) -> Process:
    """Read and validate a process JSON file, as given to ``exec --process``."""
    try:
        raw = _read(os.fspath(path))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound(f"no such process file: {os.fspath(path)}") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"cannot read {os.fspath(path)}: permission denied") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    return parse_process(_decode_json(raw, os.fspath(path)), os.fspath(path))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _decode_json(raw: bytes, source: str) -> object:
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{source}: invalid json: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        reason = exc.msg[:1].lower() + exc.msg[1:]
        raise InvalidArgument(f"{source}:{exc.lineno}:{exc.colno}: invalid json: {reason}") from exc


# --------------------------------------------------------------------------- writing


def _put(out: dict[str, Any], key: str, value: object) -> None:
    """Set ``key`` unless ``value`` is an absent optional (None, False or empty)."""
    if value is None or value is False:
        return
    if isinstance(value, tuple | list | dict) and not value:
        return
    out[key] = list(value) if isinstance(value, tuple) else value


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The OCI JSON form of ``spec`` (camelCase keys, absent optionals left out)."""
    out: dict[str, Any] = {"ociVersion": spec.oci_version}
    if spec.root is not None:
        root: dict[str, Any] = {"path": spec.root.path}
        _put(root, "readonly", spec.root.readonly)
        out["root"] = root
    if spec.process is not None:
        out["process"] = process_to_dict(spec.process)
    _put(out, "hostname", spec.hostname)
    _put(out, "domainname", spec.domainname)
    _put(out, "mounts", [_mount_to_dict(m) for m in spec.mounts])
    hooks: dict[str, Any] = {}
    for key, attr in _HOOK_KEYS:
        _put(hooks, key, [_hook_to_dict(h) for h in getattr(spec.hooks, attr)])
    _put(out, "hooks", hooks)
    _put(out, "annotations", dict(spec.annotations))
    _put(out, "linux", _linux_to_dict(spec.linux))
    return out


def process_to_dict(process: Process) -> dict[str, Any]:
    """The OCI JSON form of ``process``, as written to process.json for exec."""
    out: dict[str, Any] = {}
    _put(out, "terminal", process.terminal)
    if process.console_size is not None:
        size = process.console_size
        out["consoleSize"] = {"height": size.height, "width": size.width}
    user: dict[str, Any] = {"uid": process.user.uid, "gid": process.user.gid}
    _put(user, "umask", process.user.umask)
    _put(user, "additionalGids", process.user.additional_gids)
    _put(user, "username", process.user.username)
    out["user"] = user
    out["args"] = list(process.args)
    _put(out, "env", process.env)
    out["cwd"] = process.cwd
    if process.capabilities is not None:
        caps: dict[str, Any] = {}
        for key in _CAPABILITY_SETS:
            _put(caps, key, getattr(process.capabilities, key))
        out["capabilities"] = caps
    _put(
        out,
        "rlimits",
        [{"type": r.type, "hard": r.hard, "soft": r.soft} for r in process.rlimits],
    )
    _put(out, "noNewPrivileges", process.no_new_privileges)
    _put(out, "oomScoreAdj", process.oom_score_adj)
    _put(out, "apparmorProfile", process.apparmor_profile)
    _put(out, "selinuxLabel", process.selinux_label)
    _put(out, "commandLine", process.command_line)
    return out


def _mount_to_dict(mount: Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": mount.destination}
    _put(out, "type", mount.type)
    _put(out, "source", mount.source)
    _put(out, "options", mount.options)
    return out


def _hook_to_dict(hook: Hook) -> dict[str, Any]:
    out: dict[str, Any] = {"path": hook.path}
    _put(out, "args", hook.args)
    _put(out, "env", hook.env)
    _put(out, "timeout", hook.timeout)
    return out


def _linux_to_dict(linux: Linux) -> dict[str, Any]:
    out: dict[str, Any] = {}
    namespaces = []
    for ns in linux.namespaces:
        entry: dict[str, Any] = {"type": ns.type}
        _put(entry, "path", ns.path)
        namespaces.append(entry)
    _put(out, "namespaces", namespaces)
    _put(out, "uidMappings", [_id_mapping_to_dict(m) for m in linux.uid_mappings])
    _put(out, "gidMappings", [_id_mapping_to_dict(m) for m in linux.gid_mappings])
    _put(out, "devices", [_device_to_dict(d) for d in linux.devices])
    _put(out, "cgroupsPath", linux.cgroups_path)
    if linux.resources is not None:
        out["resources"] = copy.deepcopy(linux.resources)
    _put(out, "rootfsPropagation", linux.rootfs_propagation)
    _put(out, "maskedPaths", linux.masked_paths)
    _put(out, "readonlyPaths", linux.readonly_paths)
    _put(out, "sysctl", dict(linux.sysctl))
    if linux.seccomp is not None:
        out["seccomp"] = _seccomp_to_dict(linux.seccomp)
    _put(out, "mountLabel", linux.mount_label)
    if linux.personality is not None:
        out["personality"] = copy.deepcopy(linux.personality)
    return out


def _id_mapping_to_dict(mapping: IDMapping) -> dict[str, Any]:
    return {"containerID": mapping.container_id, "hostID": mapping.host_id, "size": mapping.size}


def _device_to_dict(device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": device.type,
        "path": device.path,
        "major": device.major,
        "minor": device.minor,
    }
    _put(out, "fileMode", device.file_mode)
    _put(out, "uid", device.uid)
    _put(out, "gid", device.gid)
    return out


def _seccomp_to_dict(seccomp: Seccomp) -> dict[str, Any]:
    out: dict[str, Any] = {"defaultAction": seccomp.default_action}
    _put(out, "defaultErrnoRet", seccomp.default_errno_ret)
    _put(out, "architectures", seccomp.architectures)
    _put(out, "flags", seccomp.flags)
    _put(out, "listenerPath", seccomp.listener_path)
    rules = []
    for rule in seccomp.syscalls:
        entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        _put(entry, "errnoRet", rule.errno_ret)
        _put(
            entry,
            "args",
            [
                {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op}
                for a in rule.args
            ],
        )
        rules.append(entry)
    _put(out, "syscalls", rules)
    return out
