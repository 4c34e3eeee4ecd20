"""``kill``: send a signal to a container's init, or with ``all`` to every process in it."""

from __future__ import annotations

import os
import signal

from moorage.errors import Conflict, InvalidArgument
from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import STOPPED, ContainerDir, require, status_of


def parse_signal(value: str | int) -> int:
    """``KILL``, ``SIGKILL``, ``9`` and ``sigkill`` all name SIGKILL."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        number = int(text)
        if 0 <= number < signal.NSIG:  # 0 probes whether the container is alive
            return number
        raise InvalidArgument(f"invalid signal: {value}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None


def kill(
    root: str, container_id: str, sig: str | int = "SIGTERM", all_processes: bool = False
) -> None:
    number = parse_signal(sig)
    cdir = ContainerDir(root, container_id)
    with cdir.locked():
        record = cdir.read()
        status = status_of(cdir, record)
        if status == STOPPED:
            raise Conflict(f"container not running: {container_id}")
        require("kill", container_id, status)
        if all_processes:
            new_manager(record.cgroups_path or None, container_id).kill_all(number)
            return
        pidfd = os.pidfd_open(record.pid)
        try:
            signal.pidfd_send_signal(pidfd, number)
        finally:
            os.close(pidfd)
