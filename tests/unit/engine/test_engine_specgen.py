"""Container create requests to OCI runtime specs (moorage.engine.specgen)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.engine.specgen import (
    ContainerRequest,
    GeneratedSpec,
    VolumeMount,
    attach_volumes,
    generate_spec,
    parse_create,
)
from moorage.errors import InvalidArgument, NotFound
from moorage.oci.default_spec import DOCKER_DEFAULT_CAPABILITIES
from moorage.oci.image import ContainerConfig
from moorage.oci.runtime_spec import parse_spec
from moorage.sys.caps import CAPABILITIES

PASSWD = {"0": (0, 0, [0, 10]), "nobody": (65534, 65534, []), "app:staff": (1000, 50, [50, 7])}


def _lookup(user: str) -> tuple[int, int, list[int]]:
    if user in PASSWD:
        return PASSWD[user]
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        raise NotFound(f"no such user: {user}")
    return int(uid), int(gid or 0), []


def _generate(
    body: dict[str, Any], image: ContainerConfig | None = None, **kwargs: Any
) -> GeneratedSpec:
    request = parse_create({"Image": "busybox", "Cmd": ["true"], **body})
    result = generate_spec(
        request,
        image,
        rootfs="/var/lib/moorage/c1/rootfs",
        container_id="c1",
        hostname="c1abc",
        resolv_conf="/run/moorage/c1/resolv.conf",
        hosts="/run/moorage/c1/hosts",
        hostname_file="/run/moorage/c1/hostname",
        cgroups_path="/moorage/c1",
        passwd_lookup=_lookup,
        **kwargs,
    )
    parse_spec(result.spec)  # every generated spec must be valid
    return result


def _host(**host: Any) -> dict[str, Any]:
    return {"HostConfig": host}


def _mount(spec: dict[str, Any], destination: str) -> dict[str, Any]:
    (found,) = [m for m in spec["mounts"] if m["destination"] == destination]
    return found


# --------------------------------------------------------------------------- parsing

BAD_BODIES = [
    ({"Image": ""}, "Image: must not be empty"),
    ({"HostConfig": {"Memory": -1}}, "HostConfig.Memory: must be a non-negative integer"),
    ({"HostConfig": {"Memory": "1g"}}, "HostConfig.Memory: must be a non-negative integer"),
    ({"HostConfig": {"Memory": 1024}}, "HostConfig.Memory: must be at least"),
    ({"HostConfig": {"MemorySwap": 2**30}}, "HostConfig.MemorySwap: needs HostConfig.Memory"),
    (
        {"HostConfig": {"Memory": 2**30, "MemorySwap": 2**20 * 10}},
        "HostConfig.MemorySwap: must be at least HostConfig.Memory",
    ),
    ({"HostConfig": {"MemorySwap": -2}}, "HostConfig.MemorySwap: must be an integer of at least"),
    ({"HostConfig": {"NanoCpus": 1000}}, "HostConfig.NanoCpus: must be at least"),
    (
        {"HostConfig": {"NanoCpus": 10**9, "CpuPeriod": 100000}},
        "HostConfig.NanoCpus: cannot be set with HostConfig.CpuPeriod",
    ),
    (
        {"HostConfig": {"NanoCpus": 10**9, "CpuQuota": 50000}},
        "HostConfig.NanoCpus: cannot be set with HostConfig.CpuQuota",
    ),
    ({"HostConfig": {"CpuPeriod": 999}}, "HostConfig.CpuPeriod: must be between 1000 and"),
    ({"HostConfig": {"CpuQuota": 999}}, "HostConfig.CpuQuota: must be at least 1000"),
    ({"HostConfig": {"CpuQuota": -2}}, "HostConfig.CpuQuota: must be an integer of at least -1"),
    ({"HostConfig": {"CpusetCpus": "0-"}}, 'HostConfig.CpusetCpus: invalid list "0-"'),
    ({"HostConfig": {"CpusetMems": 0}}, "HostConfig.CpusetMems: must be a string"),
    (
        {"HostConfig": {"MemoryReservation": 2**20}},
        "HostConfig.MemoryReservation: must be at least 6291456",
    ),
    (
        {"HostConfig": {"Memory": 2**27, "MemoryReservation": 2**28}},
        "HostConfig.Memory: must not be below HostConfig.MemoryReservation",
    ),
    ({"HostConfig": {"CpuShares": 1}}, "HostConfig.CpuShares: must be between"),
    ({"HostConfig": {"OomScoreAdj": 1001}}, "HostConfig.OomScoreAdj: must be between"),
    ({"HostConfig": {"Privileged": "yes"}}, "HostConfig.Privileged: must be a boolean"),
    ({"HostConfig": {"CapAdd": ["NOPE"]}}, 'HostConfig.CapAdd[0]: unknown capability "NOPE"'),
    ({"HostConfig": {"CapDrop": "ALL"}}, "HostConfig.CapDrop: must be a list of strings"),
    ({"HostConfig": {"Ulimits": [{"Name": "fds"}]}}, "HostConfig.Ulimits[0].Name: unknown ulimit"),
    (
        {"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}},
        "HostConfig.Ulimits[0].Soft: must not exceed the hard limit 5",
    ),
    ({"HostConfig": {"Sysctls": {"vm.swappiness": "1"}}}, 'HostConfig.Sysctls: "vm.swappiness"'),
    (
        {"HostConfig": {"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}}},
        "cannot be set with host networking",
    ),
    ({"HostConfig": {"Mounts": [{"Type": "nfs", "Target": "/x"}]}}, "HostConfig.Mounts[0].Type"),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Target": "/x"}]}}, "HostConfig.Mounts[0].Source"),
    (
        {"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/h", "Target": "x"}]}},
        "HostConfig.Mounts[0].Target: must be an absolute path",
    ),
    (
        {"HostConfig": {"Mounts": [{"Type": "volume", "Source": "a/b", "Target": "/x"}]}},
        'HostConfig.Mounts[0].Source: invalid volume name "a/b"',
    ),
    (
        {"HostConfig": {"Mounts": [{"Type": "tmpfs", "Source": "x", "Target": "/x"}]}},
        "HostConfig.Mounts[0].Source: must be empty for a tmpfs mount",
    ),
    ({"Env": ["=x"]}, 'Env[0]: invalid environment variable "=x"'),
    ({"Env": "A=1"}, "Env: must be a list of strings"),
    ({"WorkingDir": "app"}, "WorkingDir: must be an absolute path"),
    ({"User": "a:b:c"}, 'User: invalid user "a:b:c"'),
    ({"StopSignal": "SIGNOPE"}, 'StopSignal: invalid signal "SIGNOPE"'),
    ({"Hostname": "bad host"}, 'Hostname: invalid hostname "bad host"'),
    ({"HostConfig": []}, "HostConfig: must be an object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_parse_create_names_bad_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_create({"Image": "busybox", **body})


@pytest.mark.parametrize(
    ("mode", "network_mode", "network_name"),
    [
        (None, "bridge", "bridge"),
        ("default", "bridge", "bridge"),
        ("host", "host", "host"),
        ("none", "none", "none"),
        ("backend", "bridge", "backend"),
        ("container:web", "container:web", "container:web"),
    ],
)
def test_parse_create_network_modes(mode: str | None, network_mode: str, network_name: str) -> None:
    request = parse_create({"Image": "busybox", "HostConfig": {"NetworkMode": mode}})
    assert (request.network_mode, request.network_name) == (network_mode, network_name)


def test_parse_create_container_mode_needs_a_container() -> None:
    with pytest.raises(InvalidArgument, match='invalid network mode "container:"'):
        parse_create({"Image": "busybox", "HostConfig": {"NetworkMode": "container:"}})


def test_parse_create_warns_about_ignored_fields_that_are_set() -> None:
    request = parse_create(
        {
            "Image": "busybox",
            "Domainname": "example.org",
            "MacAddress": "",
            "Healthcheck": {"Test": ["CMD", "true"]},
            "HostConfig": {
                "CpuRealtimeRuntime": 950,
                "BlkioWeight": 0,
                "RestartPolicy": {"Name": "always"},
            },
        }
    )

    assert request.warnings == (
        "Domainname: not supported, ignored",
        "HostConfig.CpuRealtimeRuntime: not supported, ignored",
    )


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ({"Cmd": "echo hi"}, "cmd", ("echo hi",)),
        ({"Entrypoint": ["/bin/sh", "-c"]}, "entrypoint", ("/bin/sh", "-c")),
        (
            {"HostConfig": {"CapAdd": ["net_admin", "CAP_SYS_TIME", "all"]}},
            "cap_add",
            ("CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"),
        ),
        ({"HostConfig": {"PidsLimit": -1}}, "pids_limit", None),
        ({"HostConfig": {"PidsLimit": 0}}, "pids_limit", None),
        ({"HostConfig": {"PidsLimit": 50}}, "pids_limit", 50),
        ({"HostConfig": {"NetworkMode": "default"}}, "network_mode", "bridge"),
        ({"HostConfig": {"NetworkMode": ""}}, "network_mode", "bridge"),
        ({"HostConfig": {"NetworkMode": "none"}}, "network_mode", "none"),
        ({"HostConfig": {"Init": None}}, "init", False),
    ],
)
def test_parse_create_values(body: dict[str, Any], field: str, expected: object) -> None:
    request = parse_create({"Image": "busybox", **body})

    assert getattr(request, field) == expected


# --------------------------------------------------------------------------- process

IMAGE = ContainerConfig(
    env=("PATH=/image/bin", "LANG=C.UTF-8", "KEEP=1"),
    entrypoint=("/docker-entrypoint.sh",),
    cmd=("nginx", "-g", "daemon off;"),
    working_dir="/srv",
    user="nobody",
    stop_signal="SIGQUIT",
)


@pytest.mark.parametrize(
    ("body", "image", "args"),
    [
        ({}, None, ["true"]),
        ({"Cmd": None}, IMAGE, ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
        ({"Cmd": ["sh"]}, IMAGE, ["/docker-entrypoint.sh", "sh"]),
        ({"Cmd": None, "Entrypoint": ["/bin/env"]}, IMAGE, ["/bin/env"]),
        ({"Cmd": ["ls"], "Entrypoint": ["/bin/env"]}, IMAGE, ["/bin/env", "ls"]),
        ({"Cmd": ["ls"], "Entrypoint": [""]}, IMAGE, ["ls"]),
        ({"Cmd": None}, ContainerConfig(cmd=("sh",)), ["sh"]),
    ],
)
def test_args_follow_entrypoint_and_cmd_rules(
    body: dict[str, Any], image: ContainerConfig | None, args: list[str]
) -> None:
    assert _generate(body, image).spec["process"]["args"] == args


@pytest.mark.parametrize(
    ("body", "image"),
    [
        ({"Cmd": None}, None),
        ({"Cmd": [], "Entrypoint": [""]}, IMAGE),
        ({"Cmd": None, "Entrypoint": []}, ContainerConfig(cmd=("sh",))),
    ],
)
def test_no_command_is_refused(body: dict[str, Any], image: ContainerConfig | None) -> None:
    with pytest.raises(InvalidArgument, match="^no command specified$"):
        _generate(body, image)


def test_init_prefixes_args() -> None:
    spec = _generate(_host(Init=True), init_path="/sbin/moor-init").spec

    assert spec["process"]["args"] == ["/sbin/moor-init", "--", "true"]


def test_init_without_init_binary_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="HostConfig.Init"):
        _generate(_host(Init=True))


@pytest.mark.parametrize(
    ("body", "image", "env"),
    [
        (
            {},
            None,
            ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=c1abc"],
        ),
        (
            {"Env": ["LANG=C", "NEW=2", "KEEP"], "Tty": True},
            IMAGE,
            ["PATH=/image/bin", "HOSTNAME=c1abc", "TERM=xterm", "LANG=C", "NEW=2"],
        ),
        ({"Hostname": "web"}, None, None),
    ],
)
def test_env_merges_image_then_request(
    body: dict[str, Any], image: ContainerConfig | None, env: list[str] | None
) -> None:
    got = _generate(body, image).spec["process"]["env"]

    if env is None:
        assert "HOSTNAME=web" in got
    else:
        assert got == env


@pytest.mark.parametrize(
    ("body", "image", "cwd"),
    [
        ({}, None, "/"),
        ({}, IMAGE, "/srv"),
        ({"WorkingDir": "/app/"}, IMAGE, "/app"),
        ({}, ContainerConfig(working_dir="rel"), "/rel"),
    ],
)
def test_working_dir(body: dict[str, Any], image: ContainerConfig | None, cwd: str) -> None:
    assert _generate(body, image).spec["process"]["cwd"] == cwd


@pytest.mark.parametrize(
    ("body", "image", "user"),
    [
        ({}, None, {"uid": 0, "gid": 0, "additionalGids": [0, 10]}),
        ({}, IMAGE, {"uid": 65534, "gid": 65534}),
        ({"User": "1000"}, IMAGE, {"uid": 1000, "gid": 0}),
        ({"User": "1000:1000"}, None, {"uid": 1000, "gid": 1000}),
        ({"User": "app:staff"}, None, {"uid": 1000, "gid": 50, "additionalGids": [50, 7]}),
    ],
)
def test_user_is_resolved_through_lookup(
    body: dict[str, Any], image: ContainerConfig | None, user: dict[str, Any]
) -> None:
    assert _generate(body, image).spec["process"]["user"] == user


def test_user_lookup_errors_pass_through() -> None:
    with pytest.raises(NotFound, match="no such user: ghost"):
        _generate({"User": "ghost"})


@pytest.mark.parametrize(
    ("body", "hostname", "terminal"),
    [({}, "c1abc", False), ({"Hostname": "web", "Tty": True, "OpenStdin": True}, "web", True)],
)
def test_hostname_and_terminal(body: dict[str, Any], hostname: str, terminal: bool) -> None:
    spec = _generate(body).spec

    assert spec["hostname"] == hostname
    assert spec["process"]["terminal"] is terminal


@pytest.mark.parametrize(
    ("body", "image", "stop_signal"),
    [
        ({}, None, "SIGTERM"),
        ({}, IMAGE, "SIGQUIT"),
        ({"StopSignal": "kill"}, IMAGE, "SIGKILL"),
        ({"StopSignal": "2"}, None, "SIGINT"),
    ],
)
def test_stop_signal(body: dict[str, Any], image: ContainerConfig | None, stop_signal: str) -> None:
    assert _generate(body, image).stop_signal == stop_signal


def test_root_cgroup_and_id() -> None:
    spec = _generate({}).spec

    assert spec["root"] == {"path": "/var/lib/moorage/c1/rootfs", "readonly": False}
    assert spec["linux"]["cgroupsPath"] == "/moorage/c1"
    assert spec["annotations"]["org.moorage.container.id"] == "c1"


def test_readonly_rootfs() -> None:
    spec = _generate(_host(ReadonlyRootfs=True)).spec

    assert spec["root"]["readonly"] is True
    assert "ro" in _mount(spec, "/etc/hosts")["options"]


# --------------------------------------------------------------------------- mounts


def test_default_and_etc_mounts() -> None:
    spec = _generate({}).spec

    assert _mount(spec, "/etc/resolv.conf")["source"] == "/run/moorage/c1/resolv.conf"
    assert _mount(spec, "/etc/hosts")["source"] == "/run/moorage/c1/hosts"
    assert _mount(spec, "/etc/hostname")["source"] == "/run/moorage/c1/hostname"
    assert "ro" not in _mount(spec, "/etc/hosts")["options"]
    assert f"size={64 * 1024 * 1024}" in _mount(spec, "/dev/shm")["options"]


@pytest.mark.parametrize(
    ("bind", "mount"),
    [
        ("/data:/srv/data", {"source": "/data", "options": ["rbind", "rprivate"]}),
        ("/data:/srv/data:ro", {"source": "/data", "options": ["rbind", "rprivate", "ro"]}),
        ("/data:/srv/data:rw,z", {"source": "/data", "options": ["rbind", "rprivate"]}),
        ("/data:/srv/data:ro,rshared", {"source": "/data", "options": ["rbind", "rshared", "ro"]}),
    ],
)
def test_bind_mounts(bind: str, mount: dict[str, Any]) -> None:
    result = _generate(_host(Binds=[bind]))

    assert _mount(result.spec, "/srv/data") == {"destination": "/srv/data", "type": "bind", **mount}
    assert result.volume_mounts == []


@pytest.mark.parametrize(
    ("bind", "volume"),
    [
        ("cache:/cache", VolumeMount("cache", "/cache")),
        ("cache:/cache:ro", VolumeMount("cache", "/cache", readonly=True)),
        ("cache:/cache:nocopy", VolumeMount("cache", "/cache", no_copy=True)),
        ("/cache", VolumeMount("", "/cache")),
    ],
)
def test_named_volumes_are_returned_for_the_caller(bind: str, volume: VolumeMount) -> None:
    result = _generate(_host(Binds=[bind]))

    assert result.volume_mounts == [volume]
    assert all(m["destination"] != "/cache" for m in result.spec["mounts"])


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("/a:/b:/c:/d", 'HostConfig.Binds[0]: invalid volume specification "/a:/b:/c:/d"'),
        ("/a:b", "HostConfig.Binds[0]: must be an absolute path"),
        ("/a:/", "HostConfig.Binds[0]: cannot mount over /"),
        ("/a:/b:xx", 'HostConfig.Binds[0]: invalid mode "xx"'),
        ("vol:/b:rshared", 'HostConfig.Binds[0]: invalid mode "rshared"'),
        ("v$l:/b", 'HostConfig.Binds[0]: invalid volume name "v$l"'),
    ],
)
def test_bad_binds_name_the_field(bind: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("$", r"\$")):
        _generate(_host(Binds=[bind]))


def test_duplicate_mount_point_is_refused() -> None:
    body = _host(Binds=["/a:/data"], Mounts=[{"Type": "tmpfs", "Target": "/data/"}])

    with pytest.raises(
        InvalidArgument, match=r"HostConfig.Mounts\[0\].Target: duplicate mount point: /data"
    ):
        _generate(body)


@pytest.mark.parametrize(
    ("mount", "expected"),
    [
        (
            {"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True},
            {
                "destination": "/c",
                "type": "bind",
                "source": "/h",
                "options": ["rbind", "rprivate", "ro"],
            },
        ),
        (
            {
                "Type": "tmpfs",
                "Target": "/c",
                "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1777},
            },
            {
                "destination": "/c",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "size=1048576", "mode=1777"],
            },
        ),
    ],
)
def test_mounts_field(mount: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _mount(_generate(_host(Mounts=[mount])).spec, "/c") == expected


def test_mounts_volume_goes_to_caller() -> None:
    mount = {"Type": "volume", "Source": "db", "Target": "/db", "VolumeOptions": {"NoCopy": True}}

    result = _generate(_host(Mounts=[mount, {"Type": "volume", "Target": "/anon"}]))

    assert result.volume_mounts == [
        VolumeMount("db", "/db", no_copy=True),
        VolumeMount("", "/anon"),
    ]


def test_tmpfs_field() -> None:
    spec = _generate(_host(Tmpfs={"/run": "rw,size=64m"})).spec

    assert _mount(spec, "/run")["options"] == ["nosuid", "nodev", "noexec", "rw", "size=64m"]


def test_user_mount_replaces_default_mount() -> None:
    spec = _generate(_host(Binds=["/my/hosts:/etc/hosts:ro"], Tmpfs={"/dev/shm": "size=1m"})).spec

    assert _mount(spec, "/etc/hosts")["source"] == "/my/hosts"
    assert _mount(spec, "/dev/shm")["options"][-1] == "size=1m"


def test_mounts_are_ordered_parent_first() -> None:
    spec = _generate(_host(Binds=["/x:/srv/a/b", "/y:/srv"])).spec
    order = [m["destination"] for m in spec["mounts"]]

    assert order.index("/srv") < order.index("/srv/a/b")
    assert order.index("/dev") < order.index("/dev/shm")


def test_shm_size() -> None:
    spec = _generate(_host(ShmSize=1 << 20)).spec

    assert "size=1048576" in _mount(spec, "/dev/shm")["options"]


def test_attach_volumes_adds_binds_in_order() -> None:
    result = _generate(_host(Binds=["data:/srv/data:ro", "/h:/srv"]))

    spec = attach_volumes(result.spec, [(result.volume_mounts[0], "/var/lib/moorage/volumes/data")])

    parse_spec(spec)
    order = [m["destination"] for m in spec["mounts"]]
    assert order.index("/srv") < order.index("/srv/data")
    assert _mount(spec, "/srv/data")["options"] == ["rbind", "rprivate", "ro"]
    assert all(m["destination"] != "/srv/data" for m in result.spec["mounts"])


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    ("host", "added", "removed"),
    [
        ({}, set(), set()),
        ({"CapAdd": ["NET_ADMIN"]}, {"CAP_NET_ADMIN"}, set()),
        ({"CapDrop": ["chown", "CAP_KILL"]}, set(), {"CAP_CHOWN", "CAP_KILL"}),
        ({"CapDrop": ["NET_RAW"], "CapAdd": ["NET_RAW"]}, set(), set()),
    ],
)
def test_capabilities_add_and_drop(
    host: dict[str, Any], added: set[str], removed: set[str]
) -> None:
    caps = _generate(_host(**host)).spec["process"]["capabilities"]

    expected = (set(DOCKER_DEFAULT_CAPABILITIES) | added) - removed
    assert set(caps["bounding"]) == set(caps["effective"]) == set(caps["permitted"]) == expected
    assert caps["ambient"] == caps["inheritable"] == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ({"CapDrop": ["ALL"]}, set()),
        ({"CapDrop": ["ALL"], "CapAdd": ["CHOWN"]}, {"CAP_CHOWN"}),
        ({"CapAdd": ["ALL"], "CapDrop": ["SYS_ADMIN"]}, set(CAPABILITIES) - {"CAP_SYS_ADMIN"}),
    ],
)
def test_capabilities_all(host: dict[str, Any], expected: set[str]) -> None:
    assert set(_generate(_host(**host)).spec["process"]["capabilities"]["bounding"]) == expected


def test_all_capabilities_can_be_limited_to_the_kernel() -> None:
    spec = _generate(_host(CapAdd=["ALL"]), all_capabilities=["CAP_CHOWN", "CAP_KILL"]).spec

    assert spec["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]


def test_defaults_are_confined() -> None:
    spec = _generate({}).spec

    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert spec["process"]["noNewPrivileges"] is False
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_privileged_lifts_confinement() -> None:
    spec = _generate(
        _host(Privileged=True, CapDrop=["ALL"], SecurityOpt=["seccomp=unconfined"])
    ).spec

    assert set(spec["process"]["capabilities"]["bounding"]) == set(CAPABILITIES)
    assert "seccomp" not in spec["linux"]
    assert spec["linux"]["maskedPaths"] == spec["linux"]["readonlyPaths"] == []
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in _mount(spec, "/sys")["options"]


@pytest.mark.parametrize(
    ("opt", "nnp"),
    [
        ("no-new-privileges", True),
        ("no-new-privileges:true", True),
        ("no-new-privileges=false", False),
    ],
)
def test_no_new_privileges(opt: str, nnp: bool) -> None:
    assert _generate(_host(SecurityOpt=[opt])).spec["process"]["noNewPrivileges"] is nnp


def test_seccomp_unconfined() -> None:
    assert "seccomp" not in _generate(_host(SecurityOpt=["seccomp=unconfined"])).spec["linux"]


DOCKER_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {
            "architecture": "SCMP_ARCH_X86_64",
            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN"]}},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
        },
    ],
}


def test_seccomp_inline_docker_profile() -> None:
    opt = "seccomp=" + json.dumps(DOCKER_PROFILE)

    seccomp = _generate(_host(SecurityOpt=[opt])).spec["linux"]["seccomp"]

    names = [rule["names"] for rule in seccomp["syscalls"]]
    assert names == [["read", "write"], ["personality"]]
    assert seccomp["syscalls"][1]["args"] == [
        {"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}
    ]
    assert seccomp["defaultErrnoRet"] == 1
    assert len(seccomp["architectures"]) in (0, 2, 3)


def test_seccomp_profile_rules_follow_capabilities() -> None:
    opt = "seccomp=" + json.dumps(DOCKER_PROFILE)

    seccomp = _generate(_host(SecurityOpt=[opt], CapAdd=["SYS_ADMIN"], CapDrop=["CHOWN"])).spec[
        "linux"
    ]["seccomp"]

    assert ["mount"] in [r["names"] for r in seccomp["syscalls"]]
    assert ["chown"] in [r["names"] for r in seccomp["syscalls"]]


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        ("seccomp={not json", r"HostConfig.SecurityOpt\[0\]: seccomp profile: invalid JSON"),
        ("seccomp={}", r"HostConfig.SecurityOpt\[0\]: seccomp profile: defaultAction"),
        ("no-new-privileges=maybe", r"HostConfig.SecurityOpt\[0\]: invalid no-new-privileges"),
        ("bogus", r'HostConfig.SecurityOpt\[0\]: invalid security option "bogus"'),
    ],
)
def test_bad_security_opt_names_the_field(opt: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _generate(_host(SecurityOpt=[opt]))


def test_unsupported_security_opt_is_a_warning() -> None:
    result = _generate(_host(SecurityOpt=["apparmor=unconfined"]))

    assert result.warnings == ["HostConfig.SecurityOpt[0]: apparmor is not supported, ignored"]


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    ("host", "resources"),
    [
        ({}, {}),
        ({"Memory": 2**27}, {"memory": {"limit": 2**27, "swap": 2**28}}),
        ({"Memory": 2**27, "MemorySwap": 2**27}, {"memory": {"limit": 2**27, "swap": 2**27}}),
        ({"Memory": 2**27, "MemorySwap": -1}, {"memory": {"limit": 2**27, "swap": -1}}),
        ({"NanoCpus": 1_500_000_000}, {"cpu": {"quota": 150000, "period": 100000}}),
        ({"CpuShares": 512}, {"cpu": {"shares": 512}}),
        ({"PidsLimit": 100}, {"pids": {"limit": 100}}),
        ({"CpuPeriod": 50000, "CpuQuota": 25000}, {"cpu": {"quota": 25000, "period": 50000}}),
        ({"CpuQuota": -1}, {"cpu": {"quota": -1}}),
        # NanoCpus wins over a CpuQuota of -1 ("unset"), as dockerd has it
        ({"NanoCpus": 500_000_000, "CpuQuota": -1}, {"cpu": {"quota": 50000, "period": 100000}}),
        ({"CpusetCpus": "0-1", "CpusetMems": "0"}, {"cpu": {"cpus": "0-1", "mems": "0"}}),
        (
            {"Memory": 2**27, "MemoryReservation": 2**26},
            {"memory": {"limit": 2**27, "swap": 2**28, "reservation": 2**26}},
        ),
    ],
)
def test_resources(host: dict[str, Any], resources: dict[str, Any]) -> None:
    got = _generate(_host(**host)).spec["linux"]["resources"]

    assert got == {"devices": [{"allow": False, "access": "rwm"}], **resources}


def test_ulimits_replace_defaults() -> None:
    ulimits = [
        {"Name": "nofile", "Soft": 4096, "Hard": 8192},
        {"Name": "core", "Soft": -1, "Hard": -1},
    ]

    rlimits = _generate(_host(Ulimits=ulimits)).spec["process"]["rlimits"]

    assert rlimits == [
        {"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1},
    ]


def test_oom_score_adj_and_sysctls() -> None:
    spec = _generate(
        _host(OomScoreAdj=-500, Sysctls={"net.core.somaxconn": "1024", "kernel.shmmax": "1"})
    ).spec

    assert spec["process"]["oomScoreAdj"] == -500
    assert spec["linux"]["sysctl"] == {"net.core.somaxconn": "1024", "kernel.shmmax": "1"}


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize(
    ("mode", "recorded", "has_netns"),
    [
        (None, "bridge", True),
        ("bridge", "bridge", True),
        ("none", "none", True),
        ("host", "host", False),
    ],
)
def test_network_mode(mode: str | None, recorded: str, has_netns: bool) -> None:
    result = _generate(_host(NetworkMode=mode))

    namespaces = {ns["type"] for ns in result.spec["linux"]["namespaces"]}
    assert result.network_mode == recorded
    assert ("network" in namespaces) is has_netns


def test_ports_pass_through() -> None:
    ports = {"3000/tcp": [{"HostIp": "", "HostPort": "3000"}]}

    result = _generate({"ExposedPorts": {"3000/tcp": {}}, "HostConfig": {"PortBindings": ports}})

    assert result.exposed_ports == {"3000/tcp": {}}
    assert result.port_bindings == ports


def test_request_is_a_record() -> None:
    request = parse_create({"Image": "busybox", "Labels": {"a": "b"}})

    assert isinstance(request, ContainerRequest)
    assert request.labels == {"a": "b"}


def test_console_size_of_a_tty_is_in_the_spec_from_the_start() -> None:
    request = parse_create(
        {"Image": "busybox", "Tty": True, "HostConfig": {"ConsoleSize": [33, 97]}}
    )
    assert request.console_size == (33, 97)


@pytest.mark.parametrize("size", [[0, 0], None])
def test_console_size_zero_or_absent_is_none(size: list[int] | None) -> None:
    body = {"Image": "busybox", "Tty": True, "HostConfig": {"ConsoleSize": size}}
    assert parse_create(body).console_size is None


@pytest.mark.parametrize("size", [[1], [1, 2, 3], ["1", 2], [-1, 2], {"h": 1}])
def test_console_size_must_be_two_non_negative_integers(size: object) -> None:
    with pytest.raises(InvalidArgument, match="HostConfig.ConsoleSize"):
        parse_create({"Image": "busybox", "HostConfig": {"ConsoleSize": size}})
