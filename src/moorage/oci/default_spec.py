"""The default config.json that ``moor-runtime spec`` writes and the engine starts from.

This module owns those defaults as data: the shape of runc's ``spec`` output with
Docker's security defaults (its capability set, masked and read-only /proc paths, and
the seccomp profile of :mod:`moorage.oci.seccomp_profile`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from moorage.oci.seccomp_profile import default_seccomp_profile
from moorage.oci.version import OCI_VERSION

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "DOCKER_DEFAULT_CAPABILITIES",
    "default_spec",
]

DOCKER_DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_ENV: tuple[str, ...] = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm",
)

# Host information a container has no business reading.
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

# Kernel settings that are global, not per namespace: readable, never writable.
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": list(_NOSUID_NOEXEC_NODEV),
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": [*_NOSUID_NOEXEC_NODEV, "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"],
        },
    ]


def default_spec(
    *, rootless: bool = False, args: Sequence[str] = ("sh",), terminal: bool = True
) -> dict[str, Any]:
    """A fresh config.json object: bundle-relative ``rootfs``, Docker's defaults.

    ``rootless`` makes it runnable by an unprivileged user, as ``runc spec --rootless``
    does: a user namespace mapping root to the caller, no network namespace (an
    unprivileged user cannot configure one), /sys bind-mounted (sysfs cannot be mounted
    without owning the network namespace), no uid=/gid= mount options (those ids are not
    mapped) and no cgroup resources (the caller may not own a cgroup).
    """
    capabilities = list(DOCKER_DEFAULT_CAPABILITIES)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "root": {"path": "rootfs", "readonly": True},
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {
                "bounding": list(capabilities),
                "effective": list(capabilities),
                "permitted": list(capabilities),
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "hostname": "moorage",
        "mounts": _mounts(),
        "linux": {
            # Deny every device; the runtime then allows the standard set it creates.
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
            "seccomp": default_seccomp_profile(),
        },
    }
    if rootless:
        _make_rootless(spec)
    return spec


def _make_rootless(spec: dict[str, Any]) -> None:
    linux = spec["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    del linux["resources"]
    mounts: list[dict[str, Any]] = []
    for mount in spec["mounts"]:
        if mount["destination"] == "/sys":
            mount = {
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", *_NOSUID_NOEXEC_NODEV, "ro"],
            }
        elif "options" in mount:
            mount["options"] = [
                opt for opt in mount["options"] if not opt.startswith(("uid=", "gid="))
            ]
        mounts.append(mount)
    spec["mounts"] = mounts
