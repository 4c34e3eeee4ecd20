"""Where the engine keeps its state and where it listens."""

from __future__ import annotations

import os
from typing import NamedTuple

DEFAULT_ROOT = "/var/lib/moorage"
DEFAULT_EXEC_ROOT = "/run/moorage"
DEFAULT_HOST = "unix:///run/moorage/moor.sock"
DEFAULT_CGROUP_PARENT = "/moorage"
DEFAULT_BRIDGE = "moor0"


class EngineConfig(NamedTuple):
    root: str = DEFAULT_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    host: str = DEFAULT_HOST
    cgroup_parent: str = DEFAULT_CGROUP_PARENT  # containers get <parent>/<id>
    bridge: str = DEFAULT_BRIDGE  # the default bridge network's interface
    bip: str | None = None  # its gateway address and prefix; None: a free subnet
    dns: tuple[str, ...] = ()  # DNS servers for containers; () = the host's
    # Registries spoken to without TLS verification, or plain HTTP: HOST[:PORT] or CIDR.
    insecure_registries: tuple[str, ...] = ()

    @property
    def socket_path(self) -> str:
        return socket_path_of(self.host)


def socket_path_of(host: str) -> str:
    """The filesystem path of a ``unix://`` host; other schemes are not served yet."""
    from moorage.errors import InvalidArgument, NotSupported

    if host.startswith("unix://"):
        path = host.removeprefix("unix://")
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid host: {host}: the socket path must be absolute")
        return os.path.normpath(path)
    if "://" in host:
        raise NotSupported(f"host {host}: only unix:// sockets are supported")
    raise InvalidArgument(f"invalid host: {host} (want unix:///path/to/socket)")
