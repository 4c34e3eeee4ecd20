"""Links, addresses and routes over rtnetlink: bridges and container veth pairs.

This module owns every netlink conversation Moorage has with the kernel. It speaks
through pyroute2, imported lazily on first use (``preload`` does it ahead of time) so
that importing this module costs nothing: the CLI never pays pyroute2's ~100 ms.

The host side is the network namespace of the calling thread. Every call opens its own
netlink socket and closes it before returning, so calls from several executor threads
at once share nothing. Call from a worker thread (``asyncio.to_thread``), never from a
thread running an event loop: pyroute2's synchronous API would try to reuse that loop.

Reaching into a container's namespace (``connect_container``): a forked child enters
the namespace with setns(2), opens a netlink socket there and hands it over
(SCM_RIGHTS); namespaces change only in child processes (DESIGN.md). A socket stays
bound to the namespace it was created in, so the caller configures the container
through it without ever changing namespace itself. pyroute2's own ``netns=`` support
starts a helper process with its own interpreter work per socket (0.9.7): slower.

The veth pair is created with its peer directly inside the container's namespace
(``IFLA_NET_NS_FD`` in the peer's attributes), already enslaved to the bridge, up, and
with its MAC and MTU: one request on the host side and no move. Interface indexes and
IFF_UP go through ioctls on the netlink sockets (an ioctl acts in its socket's
namespace): a microsecond each where pyroute2 takes a third of a millisecond to encode
and decode a request. Measured on a 2-CPU VM: connect_container 6 ms median, of which
about 3 ms is the fork that makes the socket and 1 ms the kernel making the veth pair
(entering the namespace from a thread instead took 2.9 ms in all); deleting a pair
takes the kernel 10-30 ms (RCU grace periods), as it does for ``ip link del``.

Bridges get a fixed random MAC when they are created, because a bridge without one
takes the lowest MAC of its ports and changes it as containers come and go, which
breaks the containers' ARP entries for the gateway.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import secrets
import socket
import struct
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from moorage.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from moorage.sys import libc

__all__ = [
    "IFNAMSIZ",
    "bridge_ports",
    "check_ifname",
    "connect_container",
    "delete_link",
    "disconnect_container",
    "ensure_bridge",
    "get_sysctl",
    "host_routes",
    "link_exists",
    "link_names",
    "preload",
    "random_ifname",
    "random_mac",
    "set_sysctl",
]

IFNAMSIZ = 16  # the kernel's limit, with the terminating NUL
RT_TABLE_MAIN = 254
_HAIRPIN = 1  # IFLA_BRPORT_MODE: BRIDGE_MODE_HAIRPIN
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCGIFINDEX = 0x8933
_IFF_UP = 0x1
# Stricter than the kernel (no '/', ':' or whitespace, not "." or ".."): names also
# go into nftables scripts and sysctl paths, so nothing that would need quoting.
_IFNAME = re.compile(r"[A-Za-z0-9_.+-]{1,15}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_SYSCTL_PART = re.compile(r"[A-Za-z0-9_.+-]+")
_RANDOM_SUFFIX_MIN = 4

_ERRNO_CLASSES: dict[int, type[MoorageError]] = {
    errno.EEXIST: AlreadyExists,
    errno.ENODEV: NotFound,
    errno.ENOENT: NotFound,
    errno.EPERM: PermissionDenied,
    errno.EACCES: PermissionDenied,
    errno.EINVAL: InvalidArgument,
    errno.ERANGE: InvalidArgument,
    errno.EOPNOTSUPP: NotSupported,
    errno.EBUSY: Conflict,
}


# -- validation ----------------------------------------------------------------------


def check_ifname(name: str, what: str = "interface name") -> str:
    """Return ``name`` if it is a usable interface name, else raise InvalidArgument."""
    if not isinstance(name, str) or not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise InvalidArgument(f"invalid {what}: {name!r}")
    return name


def _check_mac(mac: str) -> str:
    lowered = mac.lower() if isinstance(mac, str) else ""
    if not _MAC.fullmatch(lowered) or int(lowered[:2], 16) & 1:
        raise InvalidArgument(f"invalid mac address (want a unicast xx:xx:xx:xx:xx:xx): {mac!r}")
    return lowered


def _check_mtu(mtu: int) -> int:
    if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise InvalidArgument(f"invalid mtu: {mtu!r}")
    return mtu


def random_mac() -> str:
    """A random locally administered unicast MAC address."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


# -- errors --------------------------------------------------------------------------


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    if isinstance(exc, _pyroute2().NetlinkError):
        return int(exc.code)
    return None


def _translate(exc: BaseException, what: str) -> BaseException:
    code = _errno_of(exc)
    if code is None or isinstance(exc, MoorageError):
        return exc
    cls = _ERRNO_CLASSES.get(code, FailedPrecondition)
    return cls(f"{what}: {os.strerror(code).lower()}")


@contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """Turn netlink and OS errors into Moorage errors whose message starts with ``what``."""
    try:
        yield
    except Exception as exc:
        translated = _translate(exc, what)
        if translated is exc:
            raise
        raise translated from exc


def _is_errno(exc: BaseException, *codes: int) -> bool:
    return _errno_of(exc) in codes


# -- sockets -------------------------------------------------------------------------


def _pyroute2() -> Any:
    import pyroute2  # type: ignore[import-untyped]

    return pyroute2


def preload() -> None:
    """Import pyroute2 now (~100 ms), e.g. at daemon start, not at the first container's."""
    _pyroute2()


def _route_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in this thread's namespace. Besides netlink, it answers
    interface ioctls about that namespace (a socket's ioctls act in its namespace)."""
    return socket.socket(
        socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    )


@contextmanager
def _rtnl(sock: socket.socket | None = None) -> Iterator[Any]:
    """A pyroute2 connection over a copy of ``sock`` (the caller still owns and closes
    ``sock``), or over a new socket in this thread's namespace. No multicast groups:
    nobody reads events from it."""
    iproute = _pyroute2().IPRoute
    ipr = iproute(groups=0) if sock is None else iproute(groups=0, fileno=os.dup(sock.fileno()))
    try:
        yield ipr
    finally:
        ipr.close()


def _ifindex(sock: socket.socket, name: str) -> int | None:
    """The index of link ``name`` in ``sock``'s namespace, or None: one ioctl, a
    microsecond, where a netlink request costs pyroute2 a third of a millisecond."""
    request = struct.pack("16si20x", name.encode(), 0)  # struct ifreq, 40 bytes
    try:
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFINDEX, request)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    index: int = struct.unpack_from("i", reply, 16)[0]
    return index


def _require_ifindex(sock: socket.socket, name: str, what: str) -> int:
    index = _ifindex(sock, name)
    if index is None:
        raise NotFound(f"no such {what}: {name}")
    return index


def _set_up(sock: socket.socket, name: str) -> None:
    """Set IFF_UP on ``name`` in ``sock``'s namespace (two ioctls)."""
    request = struct.pack("16sH22x", name.encode(), 0)
    (flags,) = struct.unpack_from("H", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request), 16)
    if not flags & _IFF_UP:
        request = struct.pack("16sH22x", name.encode(), flags | _IFF_UP)
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, request)


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"no such network namespace: {path}") from exc
    except OSError as exc:
        raise _translate(exc, f"cannot open network namespace {path}") from exc


def _socket_in_netns(nsfd: int, path: str) -> socket.socket:
    """A NETLINK_ROUTE socket in the namespace ``nsfd``, made by a child process.

    Namespaces are changed only in a child, never in a thread of the daemon (DESIGN.md,
    process model): a fork enters the namespace, makes the socket and hands it over
    (SCM_RIGHTS). A socket stays in the namespace it was made in, so the caller then
    configures the container through it without changing namespace. The child runs
    only system calls between fork and exit (no lock another thread may hold).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                libc.setns(nsfd, libc.CLONE_NEWNET)
                made = _route_socket()
                socket.send_fds(theirs, [b"ok"], [made.fileno()])
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                with suppress(BaseException):
                    theirs.send(f"{getattr(exc, 'errno', 0) or 0} {exc}".encode()[:512])
            finally:
                os._exit(code)
        theirs.close()
        try:
            message, fds, _, _ = socket.recv_fds(ours, 1024, 1)
        finally:
            os.waitpid(pid, 0)
    finally:
        ours.close()
        with suppress(OSError):
            theirs.close()
    if message == b"ok" and len(fds) == 1:
        return socket.socket(fileno=fds[0])
    for fd in fds:
        os.close(fd)
    code_text, _, text = message.decode(errors="replace").partition(" ")
    err = int(code_text) if code_text.isdigit() else 0
    if err == errno.EINVAL:
        raise InvalidArgument(f"not a network namespace: {path}")
    raise _translate(OSError(err, text or "no answer"), f"cannot enter network namespace {path}")


# -- links ---------------------------------------------------------------------------


def _link(ipr: Any, name: str) -> Any | None:
    """The link message for ``name``, or None: one targeted RTM_GETLINK, never a dump."""
    try:
        return ipr.link("get", ifname=name)[0]
    except Exception as exc:
        if _is_errno(exc, errno.ENODEV):
            return None
        raise


def link_exists(name: str) -> bool:
    check_ifname(name)
    with _failing_as(f"cannot look up link {name}"), _route_socket() as sock:
        return _ifindex(sock, name) is not None


def link_names(prefix: str = "") -> list[str]:
    """Names of the links in this thread's namespace that start with ``prefix``."""
    with _failing_as("cannot list links"), _rtnl() as ipr:
        names = (str(msg.get("ifname")) for msg in ipr.link("dump"))
        return sorted(name for name in names if name.startswith(prefix))


def bridge_ports(bridge: str) -> list[str]:
    """Names of the links enslaved to ``bridge`` (none when there is no such bridge)."""
    check_ifname(bridge, "bridge name")
    with _failing_as(f"cannot list the ports of bridge {bridge}"), _route_socket() as sock:
        index = _ifindex(sock, bridge)
        if index is None:
            return []
        with _rtnl(sock) as ipr:
            ports = (msg for msg in ipr.link("dump") if msg.get("master") == index)
            return sorted(str(msg.get("ifname")) for msg in ports)


def delete_link(name: str) -> bool:
    """Delete the link ``name``; False when there was none. Deleting either end of a
    veth pair deletes both."""
    check_ifname(name)
    with _failing_as(f"cannot delete link {name}"), _rtnl() as ipr:
        try:
            ipr.link("del", ifname=name)
        except Exception as exc:
            if _is_errno(exc, errno.ENODEV):
                return False
            raise
    return True


def random_ifname(prefix: str) -> str:
    """``prefix`` plus random hex up to 15 characters, naming no link at the moment."""
    check_ifname(prefix, "interface name prefix")
    room = IFNAMSIZ - 1 - len(prefix)
    if room < _RANDOM_SUFFIX_MIN:
        raise InvalidArgument(f"interface name prefix too long: {prefix}")
    with _failing_as(f"cannot look up links named {prefix}*"), _route_socket() as sock:
        for _ in range(16):
            name = prefix + secrets.token_hex(8)[:room]
            if _ifindex(sock, name) is None:
                return name
    raise AlreadyExists(f"no free interface name with prefix: {prefix}")


# -- bridges -------------------------------------------------------------------------


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface | None, *, mtu: int = 1500) -> None:
    """Make the bridge ``name`` exist, carry ``gateway`` (when given) and be up.

    Idempotent, and safe against a concurrent call for the same bridge. An existing
    bridge keeps its MTU and any other addresses it has; a link of that name that is not
    a bridge is a Conflict.
    """
    check_ifname(name, "bridge name")
    _check_mtu(mtu)
    if gateway is not None and not isinstance(gateway, ipaddress.IPv4Interface):
        raise InvalidArgument(f"invalid gateway (want an IPv4 interface): {gateway!r}")
    with _failing_as(f"cannot set up bridge {name}"), _rtnl() as ipr:
        index = _bridge_index(ipr, name, mtu)
        if gateway is not None:
            _add_address(ipr, index, gateway)
        ipr.link("set", index=index, state="up")


def _bridge_index(ipr: Any, name: str, mtu: int) -> int:
    msg = _link(ipr, name)
    if msg is None:
        try:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=random_mac())
        except Exception as exc:
            if not _is_errno(exc, errno.EEXIST):  # lost a race with another caller: fine
                raise
        msg = _link(ipr, name)
        if msg is None:
            raise NotFound(f"bridge vanished while being set up: {name}")
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind != "bridge":
        raise Conflict(f"link exists and is not a bridge: {name} (kind {kind or 'none'})")
    return int(msg["index"])


def _add_address(ipr: Any, index: int, address: ipaddress.IPv4Interface) -> None:
    """Add ``address``; an address that is there already is fine."""
    extra: dict[str, str] = {}
    if address.network.prefixlen < 31:
        extra["broadcast"] = str(address.network.broadcast_address)
    try:
        ipr.addr(
            "add",
            index=index,
            address=str(address.ip),
            prefixlen=address.network.prefixlen,
            **extra,
        )
    except Exception as exc:
        if not _is_errno(exc, errno.EEXIST):
            raise


# -- containers ----------------------------------------------------------------------


def connect_container(
    *,
    netns: str,
    bridge: str,
    host_ifname: str,
    ifname: str,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
    mac: str,
    mtu: int = 1500,
    hairpin: bool = False,
) -> None:
    """Plug the network namespace at path ``netns`` into ``bridge`` with a veth pair.

    The host end ``host_ifname`` is enslaved to the bridge and up (in hairpin mode when
    ``hairpin``); the peer is created inside the namespace as ``ifname`` with ``mac``,
    ``mtu`` and ``address``, and is up. With a ``gateway``, a default route through it
    is added unless the namespace has a default route already (the first network a
    container joins keeps it). On any failure the pair is deleted again.

    Hairpin mode matters where br_netfilter is active (bridge-nf-call-iptables=1):
    there a connection from a container to its own published port is DNATed on the
    bridge and sent back out the port it came in by, which the bridge does only for a
    port in hairpin mode.

    Example::

        connect_container(netns="/proc/4242/ns/net", bridge="moor0",
                          host_ifname=random_ifname("moorv"), ifname="eth0",
                          address=IPv4Interface("172.18.0.2/16"),
                          gateway=IPv4Address("172.18.0.1"), mac="02:42:ac:12:00:02")
    """
    _check_connect_args(bridge, host_ifname, ifname, address, gateway, mtu)
    mac = _check_mac(mac)
    where = f"{ifname} in network namespace {netns}"
    nsfd = _open_netns(netns)
    try:
        with (
            _socket_in_netns(nsfd, netns) as ns_sock,
            _route_socket() as host_sock,
            _failing_as(f"cannot connect {where} to bridge {bridge}"),
            _rtnl(host_sock) as host,
        ):
            bridge_index = _require_ifindex(host_sock, bridge, "bridge")
            _create_pair(host, bridge_index, nsfd, host_ifname, ifname, mac, mtu)
            try:
                if hairpin:
                    _set_hairpin(host, _require_ifindex(host_sock, host_ifname, "link"))
                with _failing_as(f"cannot configure {where}"):
                    _configure_peer(ns_sock, ifname, address, gateway)
            except BaseException:
                with suppress(Exception):
                    host.link("del", ifname=host_ifname)  # the peer goes with it
                raise
    finally:
        os.close(nsfd)


def _check_connect_args(
    bridge: str,
    host_ifname: str,
    ifname: str,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
    mtu: int,
) -> None:
    check_ifname(bridge, "bridge name")
    check_ifname(host_ifname, "host interface name")
    check_ifname(ifname, "container interface name")
    _check_mtu(mtu)
    if not isinstance(address, ipaddress.IPv4Interface):
        raise InvalidArgument(f"invalid container address (want an IPv4 interface): {address!r}")
    if gateway is not None and (gateway not in address.network or gateway == address.ip):
        raise InvalidArgument(f"gateway {gateway} is not a neighbour of address {address}")


def _create_pair(
    host: Any, bridge_index: int, nsfd: int, host_ifname: str, ifname: str, mac: str, mtu: int
) -> None:
    """One RTM_NEWLINK: the host end enslaved and up, the peer born in the namespace."""
    host.link(
        "add",
        ifname=host_ifname,
        kind="veth",
        master=bridge_index,
        mtu=mtu,
        state="up",
        peer={"ifname": ifname, "net_ns_fd": nsfd, "address": mac, "mtu": mtu},
    )


def _configure_peer(
    ns_sock: socket.socket,
    ifname: str,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
) -> None:
    index = _require_ifindex(ns_sock, ifname, "container interface")
    _set_up(ns_sock, ifname)
    with _rtnl(ns_sock) as ns:
        _add_address(ns, index, address)
        if gateway is not None:
            _add_default_route(ns, index, gateway)


def _add_default_route(ipr: Any, index: int, gateway: ipaddress.IPv4Address) -> None:
    # The request is exclusive: the kernel refuses a second default route of the same
    # metric (all of Moorage's have metric 0), which is "keep the first network's".
    # That is one request where dumping the routes first would be two.
    try:
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
    except Exception as exc:
        if not _is_errno(exc, errno.EEXIST):
            raise


def _set_hairpin(host: Any, index: int) -> None:
    host.brport("set", index=index, mode=_HAIRPIN)


def disconnect_container(host_ifname: str) -> bool:
    """Delete a container's veth pair by its host end; False when it is gone already
    (it also goes by itself when the container's namespace is destroyed)."""
    return delete_link(host_ifname)


# -- routes --------------------------------------------------------------------------


def host_routes(*, exclude_links: Collection[str] = ()) -> list[ipaddress.IPv4Network]:
    """Destinations of the IPv4 routes in the main table of this thread's namespace.

    The default route is left out (it overlaps everything), and so are routes through
    the links named in ``exclude_links`` (e.g. Moorage's own bridges).
    """
    with _failing_as("cannot list routes"), _rtnl() as ipr:
        links = (_link(ipr, check_ifname(name)) for name in exclude_links)
        excluded_indexes = {int(msg["index"]) for msg in links if msg is not None}
        found: set[ipaddress.IPv4Network] = set()
        for route in ipr.route("dump", family=socket.AF_INET, table=RT_TABLE_MAIN):
            if route["dst_len"] == 0 or route.get("RTA_OIF") in excluded_indexes:
                continue
            found.add(ipaddress.IPv4Network(f"{route.get('RTA_DST')}/{route['dst_len']}"))
    return sorted(found)


# -- sysctls -------------------------------------------------------------------------


def _sysctl_path(key: str) -> str:
    parts = key.split("/") if "/" in key else key.split(".")
    if not all(_SYSCTL_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise InvalidArgument(f"invalid sysctl key: {key!r}")
    return "/proc/sys/" + "/".join(parts)


def set_sysctl(key: str, value: str) -> None:
    """Write a sysctl of this thread's network namespace: ``net.ipv4.ip_forward``.

    Keys are dotted as for sysctl(8); use ``/`` separators when a part (an interface
    name) contains a dot: ``net/ipv4/conf/br.1/route_localnet``.
    """
    path = _sysctl_path(key)
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError as exc:
        raise NotFound(f"no such sysctl: {key}") from exc
    except OSError as exc:
        raise _translate(exc, f"cannot set sysctl {key} to {value!r}") from exc


def get_sysctl(key: str) -> str:
    path = _sysctl_path(key)
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError as exc:
        raise NotFound(f"no such sysctl: {key}") from exc
    except OSError as exc:
        raise _translate(exc, f"cannot read sysctl {key}") from exc
