"""Pure OCI data: the runtime spec (config.json), runtime state and their defaults.

Records and their JSON forms only; no syscalls and no container logic. Everything here
imports nothing from Moorage but :mod:`moorage.errors`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use: the runtime pays for every import before each container.
# ``default_spec`` is not re-exported: the function shares its module's name, and
# a lazily loaded package attribute cannot be both.
_EXPORTS = {
    "Capabilities": "moorage.oci.runtime_spec",
    "ConsoleSize": "moorage.oci.runtime_spec",
    "DOCKER_DEFAULT_CAPABILITIES": "moorage.oci.default_spec",
    "Device": "moorage.oci.runtime_spec",
    "Hook": "moorage.oci.runtime_spec",
    "Hooks": "moorage.oci.runtime_spec",
    "IDMapping": "moorage.oci.runtime_spec",
    "Linux": "moorage.oci.runtime_spec",
    "Mount": "moorage.oci.runtime_spec",
    "Namespace": "moorage.oci.runtime_spec",
    "OCI_VERSION": "moorage.oci.version",
    "Process": "moorage.oci.runtime_spec",
    "Rlimit": "moorage.oci.runtime_spec",
    "Root": "moorage.oci.runtime_spec",
    "Seccomp": "moorage.oci.runtime_spec",
    "SeccompArg": "moorage.oci.runtime_spec",
    "Spec": "moorage.oci.runtime_spec",
    "State": "moorage.oci.state",
    "Status": "moorage.oci.state",
    "SyscallRule": "moorage.oci.runtime_spec",
    "User": "moorage.oci.runtime_spec",
    "default_seccomp_profile": "moorage.oci.seccomp_profile",
    "load_process": "moorage.oci.runtime_spec",
    "load_spec": "moorage.oci.runtime_spec",
    "parse_process": "moorage.oci.runtime_spec",
    "parse_spec": "moorage.oci.runtime_spec",
    "process_to_dict": "moorage.oci.runtime_spec",
    "spec_to_dict": "moorage.oci.runtime_spec",
}

__all__ = [
    "DOCKER_DEFAULT_CAPABILITIES",
    "OCI_VERSION",
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
    "State",
    "Status",
    "SyscallRule",
    "User",
    "default_seccomp_profile",
    "load_process",
    "load_spec",
    "parse_process",
    "parse_spec",
    "process_to_dict",
    "spec_to_dict",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'moorage.oci' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
