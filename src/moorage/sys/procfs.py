"""Reading /proc: process stat and status, mount tables, open descriptors; who is at the
other end of a unix socket and whether it shares our mount namespace."""

import os
import socket
import struct
from typing import NamedTuple

__all__ = [
    "MountInfo",
    "PeerCredentials",
    "ProcStat",
    "mountinfo",
    "open_fds",
    "peer_credentials",
    "shares_mount_namespace",
    "stat",
    "status",
]


class ProcStat(NamedTuple):
    pid: int
    comm: str
    state: str
    ppid: int
    start_time: int  # clock ticks since boot; with pid, identifies a process


def stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat, or None when the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself contain spaces and parentheses.
    lpar, rpar = raw.index("("), raw.rindex(")")
    rest = raw[rpar + 2 :].split()
    return ProcStat(
        pid=int(raw[:lpar]),
        comm=raw[lpar + 1 : rpar],
        state=rest[0],
        ppid=int(rest[1]),
        start_time=int(rest[19]),
    )


def status(pid: int | str = "self") -> dict[str, str]:
    """/proc/<pid>/status as a dict of field -> raw value."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


class MountInfo(NamedTuple):
    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo(pid: int | str = "self") -> list[MountInfo]:
    mounts: list[MountInfo] = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            mounts.append(
                MountInfo(
                    mount_id=int(parts[0]),
                    parent_id=int(parts[1]),
                    root=_unescape(parts[3]),
                    mount_point=_unescape(parts[4]),
                    options=parts[5],
                    optional=tuple(parts[6:sep]),
                    fstype=parts[sep + 1],
                    source=_unescape(parts[sep + 2]),
                    super_options=parts[sep + 3] if len(parts) > sep + 3 else "",
                )
            )
    return mounts


def open_fds(pid: int | str = "self") -> list[int]:
    return sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))


class PeerCredentials(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected unix socket: who is at the other end."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCredentials(pid, uid, gid)


def shares_mount_namespace(pid: int) -> bool:
    """Whether process ``pid`` sees the same mounts as this one (False when it is gone)."""
    try:
        theirs = os.stat(f"/proc/{pid}/ns/mnt")
        ours = os.stat("/proc/self/ns/mnt")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
