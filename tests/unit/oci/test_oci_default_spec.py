"""The default config.json (moorage.oci.default_spec)."""

from __future__ import annotations

import os

from moorage.oci import DOCKER_DEFAULT_CAPABILITIES, OCI_VERSION, parse_spec
from moorage.oci.default_spec import default_spec


def test_default_spec_is_valid() -> None:
    spec = parse_spec(default_spec())

    assert spec.oci_version == OCI_VERSION
    assert spec.hostname == "moorage"


def test_default_process() -> None:
    process = default_spec(args=["/bin/ls", "-l"], terminal=False)["process"]

    assert process["args"] == ["/bin/ls", "-l"]
    assert process["terminal"] is False
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["cwd"] == "/"
    assert process["noNewPrivileges"] is True
    assert "TERM=xterm" in process["env"]


def test_docker_capabilities() -> None:
    caps = default_spec()["process"]["capabilities"]

    assert len(DOCKER_DEFAULT_CAPABILITIES) == 14
    for name in ("bounding", "effective", "permitted"):
        assert caps[name] == list(DOCKER_DEFAULT_CAPABILITIES)
    assert caps["inheritable"] == []
    assert caps["ambient"] == []
    assert "CAP_SYS_ADMIN" not in DOCKER_DEFAULT_CAPABILITIES


def test_masks_host_information() -> None:
    linux = default_spec()["linux"]

    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


def test_namespaces() -> None:
    types = [ns["type"] for ns in default_spec()["linux"]["namespaces"]]

    assert types == ["pid", "network", "ipc", "uts", "mount", "cgroup"]


def test_each_call_returns_fresh_data() -> None:
    first = default_spec()
    first["mounts"][1]["options"].append("exec")
    first["linux"]["seccomp"]["syscalls"].clear()

    second = default_spec()

    assert "exec" not in second["mounts"][1]["options"]
    assert second["linux"]["seccomp"]["syscalls"]


def test_rootless_maps_the_caller_into_a_user_namespace() -> None:
    linux = default_spec(rootless=True)["linux"]

    types = [ns["type"] for ns in linux["namespaces"]]
    assert "user" in types
    assert "network" not in types
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux


def test_rootless_mounts() -> None:
    mounts = {m["destination"]: m for m in default_spec(rootless=True)["mounts"]}

    assert mounts["/sys"] == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    assert not any(opt.startswith("gid=") for opt in mounts["/dev/pts"]["options"])


def test_rootless_spec_is_valid() -> None:
    spec = parse_spec(default_spec(rootless=True))

    assert spec.linux.uid_mappings[0].host_id == os.geteuid()
