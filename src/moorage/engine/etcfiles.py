"""The files a container gets from the engine (hostname, hosts, resolv.conf) and the
user lookup in its root (``/etc/passwd`` and ``/etc/group`` of the image).

The image is hostile: its /etc files are opened with ``openat2(RESOLVE_IN_ROOT)``
so a symlinked /etc/passwd cannot make the engine read a host file, and they are
read with a size cap.
"""

from __future__ import annotations

import errno
import os

from moorage.engine.specgen import split_user
from moorage.errors import InvalidArgument
from moorage.sys import libc

_MAX_ETC_FILE = 4 * 1024 * 1024
_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS

HOSTS_TEMPLATE = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts_file(hostname: str, address: str | None = None, extra: list[str] | None = None) -> str:
    """Docker's /etc/hosts: the loopback names, ``--add-host`` lines, then the container."""
    lines = [HOSTS_TEMPLATE]
    for entry in extra or []:
        name, sep, ip = entry.partition(":")
        if not sep or not name or not ip:
            raise InvalidArgument(f'invalid extra host "{entry}": want HOST:IP')
        lines.append(f"{ip}\t{name}\n")
    if address:
        lines.append(f"{address}\t{hostname}\n")
    return "".join(lines)


def resolv_conf(host_text: str, dns: list[str], search: list[str], options: list[str]) -> str:
    """The host's resolv.conf without loopback servers (unreachable from a container's
    network namespace), or the ``--dns`` settings when given."""
    servers: list[str] = []
    domains: list[str] = []
    opts: list[str] = []
    for line in host_text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            if not fields[1].startswith("127.") and fields[1] != "::1":
                servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            domains = fields[1:]
        elif fields[0] == "options":
            opts += fields[1:]
    servers = dns or servers
    domains = search or domains
    opts = options or opts
    out = [f"nameserver {s}\n" for s in servers]
    if domains:
        out.append(f"search {' '.join(domains)}\n")
    if opts:
        out.append(f"options {' '.join(opts)}\n")
    return "".join(out)


def read_in_root(root: str, path: str) -> str | None:
    """The text of ``path`` inside ``root``, resolved there; None if absent."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.openat2(root_fd, path.lstrip("/"), os.O_RDONLY | os.O_NOFOLLOW, _IN_ROOT)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read(_MAX_ETC_FILE).decode("utf-8", "replace")


def _entries(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def lookup_user(root: str, user: str) -> tuple[int, int, list[int]]:
    """``(uid, gid, supplementary gids)`` of ``user`` ("name", "uid", "name:group",
    "uid:gid") in the image at ``root``, with Docker's rules: a numeric uid needs no
    passwd entry (gid then 0 unless given), a name must exist."""
    name, group = split_user(user)
    passwd = _entries(read_in_root(root, "/etc/passwd"))
    groups = _entries(read_in_root(root, "/etc/group"))
    uid: int | None = None
    gid = 0
    login = None
    for fields in passwd:
        if len(fields) >= 4 and (fields[0] == name or fields[2] == name):
            try:
                uid, gid = int(fields[2]), int(fields[3])
            except ValueError:
                continue
            login = fields[0]
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(name)
    if group is not None:
        gid = _group_id(groups, group)
    extra: list[int] = []
    if login is not None:
        for fields in groups:
            if len(fields) >= 4 and login in fields[3].split(","):
                try:
                    g = int(fields[2])
                except ValueError:
                    continue
                if g != gid and g not in extra:
                    extra.append(g)
    return uid, gid, extra


def _group_id(groups: list[list[str]], group: str) -> int:
    for fields in groups:
        if len(fields) >= 3 and (fields[0] == group or fields[2] == group):
            try:
                return int(fields[2])
            except ValueError:
                continue
    if group.isdigit():
        return int(group)
    raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
