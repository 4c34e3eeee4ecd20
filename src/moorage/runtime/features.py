"""``features``: what this runtime implements, in the runtime-spec features format."""

from __future__ import annotations

from typing import Any

from moorage import __version__
from moorage.oci.version import OCI_VERSION
from moorage.runtime.mounts import _FLAGS, _PROPAGATION
from moorage.sys import libc

HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def features() -> dict[str, Any]:
    from moorage.sys import caps, seccomp

    seccomp_info: dict[str, Any] = {"enabled": False}
    if seccomp.is_available():
        seccomp_info = {
            "enabled": True,
            "actions": sorted(seccomp.supported_actions()),
            "operators": sorted(seccomp.supported_operators()),
            "archs": sorted(seccomp.supported_architectures()),
            "knownFlags": [
                "SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            ],
            "supportedFlags": [
                "SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            ],
        }
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": sorted([*_FLAGS, *_PROPAGATION, "tmpcopyup"]),
        "linux": {
            "namespaces": sorted(libc.NAMESPACE_FLAGS),
            "capabilities": caps.known_capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp_info,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.moorage.runtime.version": __version__},
    }
