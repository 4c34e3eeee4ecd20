"""config.json parsing, validation and writing (moorage.oci.runtime_spec)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from moorage.errors import InvalidArgument, NotFound
from moorage.oci import (
    Capabilities,
    ConsoleSize,
    Device,
    Hook,
    Hooks,
    IDMapping,
    Linux,
    Mount,
    Namespace,
    Process,
    Rlimit,
    Root,
    Seccomp,
    SeccompArg,
    Spec,
    SyscallRule,
    User,
    load_process,
    load_spec,
    parse_process,
    parse_spec,
    process_to_dict,
    spec_to_dict,
)
from moorage.oci.default_spec import default_spec

Mutation = Callable[[dict[str, Any]], object]


def _rootless() -> dict[str, Any]:
    return default_spec(rootless=True)


def _full_spec() -> Spec:
    """A spec that sets every field, so a round trip exercises every converter."""
    return Spec(
        oci_version="1.2.0",
        root=Root(path="rootfs", readonly=True),
        process=Process(
            terminal=True,
            console_size=ConsoleSize(height=24, width=80),
            user=User(uid=1000, gid=1000, umask=0o022, additional_gids=(5, 10), username="u"),
            args=("/bin/sh", "-c", "true"),
            env=("PATH=/bin",),
            cwd="/work",
            capabilities=Capabilities(
                bounding=("CAP_KILL",), effective=("CAP_KILL",), ambient=("CAP_KILL",)
            ),
            rlimits=(Rlimit(type="RLIMIT_NOFILE", hard=4096, soft=1024),),
            no_new_privileges=True,
            oom_score_adj=-500,
            apparmor_profile="moorage-default",
            selinux_label="system_u:system_r:container_t:s0",
            command_line=None,
        ),
        hostname="box",
        domainname="example.org",
        mounts=(
            Mount(destination="/proc", type="proc", source="proc"),
            Mount(destination="data", type="bind", source="/srv", options=("rbind", "ro")),
        ),
        hooks=Hooks(
            prestart=(Hook(path="/bin/hook", args=("hook", "pre"), env=("A=1",), timeout=5),),
            create_runtime=(Hook(path="/bin/a"),),
            create_container=(Hook(path="/bin/b"),),
            start_container=(Hook(path="/bin/c"),),
            poststart=(Hook(path="/bin/d"),),
            poststop=(Hook(path="/bin/e"),),
        ),
        annotations={"org.example.key": "value"},
        linux=Linux(
            namespaces=(Namespace(type="pid"), Namespace(type="user", path="/proc/1/ns/user")),
            uid_mappings=(IDMapping(container_id=0, host_id=100000, size=65536),),
            gid_mappings=(IDMapping(container_id=0, host_id=100000, size=65536),),
            devices=(
                Device(type="c", path="/dev/fuse", major=10, minor=229, file_mode=0o666),
                Device(type="p", path="/dev/fifo"),
            ),
            cgroups_path="/moorage/box",
            resources={"memory": {"limit": 1 << 30}, "pids": {"limit": 100}},
            rootfs_propagation="rslave",
            masked_paths=("/proc/kcore",),
            readonly_paths=("/proc/sys",),
            sysctl={"net.ipv4.ip_forward": "1"},
            seccomp=Seccomp(
                default_action="SCMP_ACT_ERRNO",
                default_errno_ret=1,
                architectures=("SCMP_ARCH_X86_64",),
                flags=("SECCOMP_FILTER_FLAG_LOG",),
                listener_path="/run/agent.sock",
                syscalls=(
                    SyscallRule(names=("read", "write"), action="SCMP_ACT_ALLOW"),
                    SyscallRule(
                        names=("personality",),
                        action="SCMP_ACT_NOTIFY",
                        errno_ret=None,
                        args=(SeccompArg(index=0, value=8, value_two=0, op="SCMP_CMP_EQ"),),
                    ),
                ),
            ),
            mount_label="system_u:object_r:container_file_t:s0",
            personality={"domain": "LINUX32", "flags": []},
        ),
    )


# --------------------------------------------------------------------------- parsing


def test_parses_default_config() -> None:
    spec = parse_spec(default_spec())

    assert spec.root == Root(path="rootfs", readonly=True)
    assert spec.process is not None
    assert spec.process.args == ("sh",)
    assert spec.process.user == User(uid=0, gid=0)
    assert spec.process.rlimits == (Rlimit(type="RLIMIT_NOFILE", hard=1024, soft=1024),)
    assert [ns.type for ns in spec.linux.namespaces] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert spec.mounts[0] == Mount(destination="/proc", type="proc", source="proc")
    assert spec.linux.seccomp is not None
    assert spec.linux.seccomp.default_action == "SCMP_ACT_ERRNO"
    assert spec.hooks == Hooks()


def test_minimal_config_gets_empty_defaults() -> None:
    spec = parse_spec({"ociVersion": "1.0.2"})

    assert spec == Spec(oci_version="1.0.2")


@pytest.mark.parametrize(
    "spec",
    [
        parse_spec(default_spec()),
        parse_spec(_rootless()),
        _full_spec(),
        Spec(oci_version="1.2.0", hostname=""),
    ],
    ids=["default", "rootless", "full", "minimal"],
)
def test_round_trip(spec: Spec) -> None:
    data = spec_to_dict(spec)

    assert parse_spec(orjson.loads(orjson.dumps(data))) == spec


def test_spec_to_dict_uses_oci_keys_and_omits_absent_fields() -> None:
    spec = Spec(
        oci_version="1.2.0",
        process=Process(
            terminal=False,
            console_size=None,
            user=User(uid=0, gid=0),
            args=("sh",),
            env=(),
            cwd="/",
            oom_score_adj=0,
        ),
        linux=Linux(uid_mappings=(), cgroups_path="/x"),
    )

    assert spec_to_dict(spec) == {
        "ociVersion": "1.2.0",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/", "oomScoreAdj": 0},
        "linux": {"cgroupsPath": "/x"},
    }


def test_unknown_keys_are_ignored() -> None:
    data = default_spec()
    data["vm"] = {"hypervisor": {"path": "/bin/qemu"}}
    data["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE"}
    data["linux"]["intelRdt"] = {"closID": "x"}

    assert parse_spec(data) == parse_spec(default_spec())


def test_null_counts_as_absent() -> None:
    data = {"ociVersion": "1.2.0", "hostname": None, "mounts": None, "linux": None}

    assert parse_spec(data) == Spec(oci_version="1.2.0")


def test_relative_mount_destination_is_kept() -> None:
    data = {"ociVersion": "1.2.0", "mounts": [{"destination": "data", "type": "tmpfs"}]}

    assert parse_spec(data).mounts == (Mount(destination="data", type="tmpfs"),)


def test_well_formed_unknown_capability_is_left_to_the_runtime() -> None:
    data = default_spec()
    data["process"]["capabilities"]["bounding"].append("CAP_FROM_THE_FUTURE")

    spec = parse_spec(data)

    assert spec.process is not None
    assert spec.process.capabilities is not None
    assert "CAP_FROM_THE_FUTURE" in spec.process.capabilities.bounding


def test_fifo_device_needs_no_numbers() -> None:
    data = {"ociVersion": "1.2.0", "linux": {"devices": [{"type": "p", "path": "/dev/f"}]}}

    assert parse_spec(data).linux.devices == (Device(type="p", path="/dev/f"),)


def test_resources_are_copied_from_the_input() -> None:
    data = default_spec()
    spec = parse_spec(data)

    data["linux"]["resources"]["devices"][0]["allow"] = True

    assert spec.linux.resources == {"devices": [{"allow": False, "access": "rwm"}]}


def test_records_are_frozen() -> None:
    spec = parse_spec(default_spec())

    with pytest.raises(AttributeError):
        spec.hostname = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- validation


def _set(path: str, value: object) -> Mutation:
    """A mutation setting a dotted path; list indexes are numbers: ``linux.devices.0``."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _seccomp(**rule: Any) -> Mutation:
    return _set(
        "linux.seccomp",
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", **rule}],
        },
    )


def _user_namespace_with(mappings: list[dict[str, Any]]) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["linux"]["namespaces"].append({"type": "user"})
        data["linux"]["uidMappings"] = mappings

    return mutate


INVALID: list[tuple[str, Mutation, str]] = [
    # required keys
    ("no-version", _delete("ociVersion"), "ociVersion: missing"),
    ("empty-version", _set("ociVersion", ""), "ociVersion: must not be empty"),
    ("no-args", _delete("process.args"), "process.args: missing"),
    ("empty-args", _set("process.args", []), "process.args: must not be empty"),
    ("no-cwd", _delete("process.cwd"), "process.cwd: missing"),
    ("no-user", _delete("process.user"), "process.user: missing"),
    ("no-uid", _delete("process.user.uid"), "process.user.uid: missing"),
    ("no-gid", _delete("process.user.gid"), "process.user.gid: missing"),
    ("empty-root", _set("root.path", ""), "root.path: must not be empty"),
    # types
    ("version-type", _set("ociVersion", 1), "ociVersion: must be a string, not integer"),
    ("root-type", _set("root", "rootfs"), "root: must be an object, not string"),
    ("linux-type", _set("linux", []), "linux: must be an object, not array"),
    ("mounts-type", _set("mounts", {}), "mounts: must be an array, not object"),
    ("arg-type", _set("process.args", ["sh", 1]), "process.args[1]: must be a string, not integer"),
    (
        "terminal-type",
        _set("process.terminal", "yes"),
        "process.terminal: must be a boolean, not string",
    ),
    (
        "uid-bool",
        _set("process.user.uid", True),
        "process.user.uid: must be an integer, not boolean",
    ),
    (
        "gid-float",
        _set("process.user.gid", 1.5),
        "process.user.gid: must be an integer, not number",
    ),
    (
        "uid-range",
        _set("process.user.uid", -1),
        "process.user.uid: must be an unsigned 32-bit integer, not -1",
    ),
    (
        "gids-bool",
        _set("process.user.additionalGids", [1, False]),
        "process.user.additionalGids[1]: must be an integer, not boolean",
    ),
    (
        "rlimit-bool",
        _set("process.rlimits.0.hard", True),
        "process.rlimits[0].hard: must be an integer, not boolean",
    ),
    (
        "console",
        _set("process.consoleSize", {"height": -1, "width": 80}),
        "process.consoleSize.height: must be an unsigned 32-bit integer, not -1",
    ),
    (
        "sysctl-value",
        _set("linux.sysctl", {"net.ipv4.ip_forward": 1}),
        'linux.sysctl["net.ipv4.ip_forward"]: must be a string, not integer',
    ),
    (
        "annotation-value",
        _set("annotations", {"a": None, "b": []}),
        "annotations.a: must be a string, not null",
    ),
    (
        "memory-limit",
        _set("linux.resources.memory", {"limit": "1g"}),
        "linux.resources.memory.limit: must be an integer, not string",
    ),
    (
        "device-access",
        _set("linux.resources.devices.0.access", "rwx"),
        'linux.resources.devices[0].access: must use only r, w and m, not "rwx"',
    ),
    # process
    (
        "relative-cwd",
        _set("process.cwd", "tmp"),
        'process.cwd: must be an absolute path, not "tmp"',
    ),
    (
        "umask",
        _set("process.user.umask", 0o1000),
        "process.user.umask: must be between 0 and 0o777, not 512",
    ),
    (
        "oom-high",
        _set("process.oomScoreAdj", 1001),
        "process.oomScoreAdj: must be between -1000 and 1000, not 1001",
    ),
    (
        "oom-low",
        _set("process.oomScoreAdj", -1001),
        "process.oomScoreAdj: must be between -1000 and 1000, not -1001",
    ),
    (
        "rlimit-type",
        _set("process.rlimits.0.type", "RLIMIT_FOO"),
        'process.rlimits[0].type: unknown rlimit type "RLIMIT_FOO"',
    ),
    (
        "rlimit-soft",
        _set("process.rlimits.0.soft", 2048),
        "process.rlimits[0].soft: must not exceed hard limit 1024, not 2048",
    ),
    (
        "rlimit-twice",
        _set("process.rlimits", [{"type": "RLIMIT_CORE", "hard": 0, "soft": 0}] * 2),
        'process.rlimits[1].type: duplicate rlimit type "RLIMIT_CORE"',
    ),
    (
        "capability",
        _set("process.capabilities.bounding.0", "chown"),
        'process.capabilities.bounding[0]: malformed capability name "chown"',
    ),
    (
        "capability-ambient",
        _set("process.capabilities.ambient", ["CAP_net_raw"]),
        'process.capabilities.ambient[0]: malformed capability name "CAP_net_raw"',
    ),
    # namespaces and id mappings
    (
        "namespace-type",
        _set("linux.namespaces.2.type", "foo"),
        'linux.namespaces[2].type: unknown namespace type "foo"',
    ),
    (
        "namespace-twice",
        lambda d: d["linux"]["namespaces"].append({"type": "pid"}),
        'linux.namespaces[6].type: duplicate namespace type "pid"',
    ),
    (
        "namespace-path",
        _set("linux.namespaces.0.path", "proc/1/ns/pid"),
        'linux.namespaces[0].path: must be an absolute path, not "proc/1/ns/pid"',
    ),
    (
        "mapping-no-userns",
        _set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
        "linux.uidMappings: requires a user namespace in linux.namespaces",
    ),
    (
        "mapping-size",
        _user_namespace_with([{"containerID": 0, "hostID": 1000, "size": 0}]),
        "linux.uidMappings[0].size: must be an unsigned 32-bit integer greater than 0, not 0",
    ),
    (
        "mapping-host",
        _user_namespace_with([{"containerID": 0, "size": 1}]),
        "linux.uidMappings[0].hostID: missing",
    ),
    # mounts
    (
        "mount-destination",
        _set("mounts.0.destination", ""),
        "mounts[0].destination: must not be empty",
    ),
    ("mount-no-destination", _set("mounts", [{"type": "proc"}]), "mounts[0].destination: missing"),
    (
        "mount-option",
        _set("mounts.1.options", ["nosuid", 7]),
        "mounts[1].options[1]: must be a string, not integer",
    ),
    # linux
    (
        "propagation",
        _set("linux.rootfsPropagation", "sideways"),
        'linux.rootfsPropagation: unknown rootfs propagation "sideways"',
    ),
    (
        "device-type",
        _set("linux.devices", [{"type": "x", "path": "/dev/x"}]),
        'linux.devices[0].type: unknown device type "x"',
    ),
    (
        "device-major",
        _set("linux.devices", [{"type": "c", "path": "/dev/x", "minor": 1}]),
        "linux.devices[0].major: missing",
    ),
    (
        "device-path",
        _set("linux.devices", [{"type": "c", "path": "x", "major": 1, "minor": 1}]),
        'linux.devices[0].path: must be an absolute path, not "x"',
    ),
    (
        "personality",
        _set("linux.personality", {"domain": "WINDOWS"}),
        'linux.personality.domain: unknown personality domain "WINDOWS"',
    ),
    # hooks
    (
        "hook-path",
        _set("hooks", {"prestart": [{"path": "hook"}]}),
        'hooks.prestart[0].path: must be an absolute path, not "hook"',
    ),
    (
        "hook-timeout",
        _set("hooks", {"poststop": [{"path": "/bin/true", "timeout": 0}]}),
        "hooks.poststop[0].timeout: must be greater than 0, not 0",
    ),
    (
        "hook-kind",
        _set("hooks", {"createRuntime": {"path": "/bin/true"}}),
        "hooks.createRuntime: must be an array, not object",
    ),
    # seccomp
    (
        "seccomp-default",
        _set("linux.seccomp.defaultAction", "SCMP_ACT_MAYBE"),
        'linux.seccomp.defaultAction: unknown seccomp action "SCMP_ACT_MAYBE"',
    ),
    (
        "seccomp-action",
        _seccomp(action="ALLOW"),
        'linux.seccomp.syscalls[0].action: unknown seccomp action "ALLOW"',
    ),
    ("seccomp-names", _seccomp(names=[]), "linux.seccomp.syscalls[0].names: must not be empty"),
    (
        "seccomp-op",
        _seccomp(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]),
        'linux.seccomp.syscalls[0].args[0].op: unknown seccomp operator "SCMP_CMP_LIKE"',
    ),
    (
        "seccomp-index",
        _seccomp(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
        "linux.seccomp.syscalls[0].args[0].index: must be between 0 and 5, not 6",
    ),
    (
        "seccomp-arch",
        _set("linux.seccomp.architectures", ["x86_64"]),
        'linux.seccomp.architectures[0]: malformed seccomp architecture "x86_64"',
    ),
    (
        "seccomp-notify",
        _seccomp(action="SCMP_ACT_NOTIFY"),
        "linux.seccomp.listenerPath: required when SCMP_ACT_NOTIFY is used",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(mutate, message, id=name) for name, mutate, message in INVALID],
)
def test_invalid_config_names_the_path(mutate: Mutation, message: str) -> None:
    data = default_spec()
    mutate(data)

    with pytest.raises(InvalidArgument) as caught:
        parse_spec(data)

    assert str(caught.value) == f"config.json: {message}"


def test_document_must_be_an_object() -> None:
    with pytest.raises(
        InvalidArgument, match=r"^bundle/config.json: must be an object, not array$"
    ):
        parse_spec([], source="bundle/config.json")


# --------------------------------------------------------------------------- process.json


def test_parse_process_paths_start_at_the_process() -> None:
    data = default_spec()["process"]
    data["cwd"] = "relative"

    with pytest.raises(InvalidArgument, match=r"^process.json: cwd: must be an absolute path"):
        parse_process(data)


def test_process_round_trip() -> None:
    process = _full_spec().process
    assert process is not None

    assert parse_process(process_to_dict(process)) == process


def test_load_process(tmp_path: Path) -> None:
    path = tmp_path / "process.json"
    path.write_bytes(orjson.dumps({"user": {"uid": 0, "gid": 0}, "args": ["ls"], "cwd": "/"}))

    process = load_process(path)

    assert process.args == ("ls",)


def test_load_process_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"^no such process file: .*/nope.json$"):
        load_process(tmp_path / "nope.json")


# --------------------------------------------------------------------------- bundles


def test_load_spec_reads_bundle(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(orjson.dumps(default_spec()))

    assert load_spec(tmp_path) == parse_spec(default_spec())


def test_load_spec_without_config(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        load_spec(str(tmp_path))

    assert str(caught.value) == f"no config.json in bundle: {tmp_path}"


def test_load_spec_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"^no config.json in bundle: "):
        load_spec(tmp_path / "absent")


def test_load_spec_bad_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.2.0",\n  "process": ]\n}\n')

    with pytest.raises(InvalidArgument) as caught:
        load_spec(tmp_path)

    assert str(caught.value).startswith(f"{tmp_path}/config.json:3:14: invalid json: ")


def test_load_spec_validation_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"ociVersion": "1.2.0", "process": {"args": []}}')

    with pytest.raises(InvalidArgument) as caught:
        load_spec(tmp_path)

    assert str(caught.value) == f"{tmp_path}/config.json: process.args: must not be empty"
