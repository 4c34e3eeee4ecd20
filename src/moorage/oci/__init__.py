"""Pure OCI data: the runtime spec (config.json), runtime state and their defaults.

Records and their JSON forms only; no syscalls and no container logic. Everything here
imports nothing from Moorage but :mod:`moorage.errors`.
"""

from moorage.oci.default_spec import DOCKER_DEFAULT_CAPABILITIES, default_spec
from moorage.oci.runtime_spec import (
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
from moorage.oci.seccomp_profile import default_seccomp_profile
from moorage.oci.state import State, Status
from moorage.oci.version import OCI_VERSION

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
    "default_spec",
    "load_process",
    "load_spec",
    "parse_process",
    "parse_spec",
    "process_to_dict",
    "spec_to_dict",
]
