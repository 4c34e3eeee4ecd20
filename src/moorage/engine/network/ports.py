"""Published ports on the engine side: Docker's port JSON in, host ports held, inspect shapes out.

This module owns three things:

- Reading ``HostConfig.PortBindings`` (``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``),
  ``Config.ExposedPorts`` and ``HostConfig.PublishAllPorts`` (``-P``) into validated
  :class:`Binding` s (:func:`parse_bindings`). ``HostPort`` is ``""`` or ``"0"`` (any
  free port), a port, or a range ``"8000-8010"`` (the first free port in it).
- Holding the host ports of published ports (:class:`PortReservations`) so that neither
  a second container nor another program on the host can take one: one bound socket per
  published port (TCP: ``SOCK_STREAM`` without ``SO_REUSEADDR``, bound but never
  listening, so it accepts nothing; UDP: ``SOCK_DGRAM``), on the ``HostIp`` or on
  ``0.0.0.0``. The kernel is the arbiter, so a port some other process holds is a
  Conflict too, with Docker's message ``Bind for 0.0.0.0:8080 failed: port is already
  allocated``. The traffic itself is forwarded by the firewall rules (DNAT), not here.
- Docker's ``NetworkSettings.Ports`` shape for inspect (:func:`network_settings_ports`).

A reservation lives as long as the daemon process that holds its sockets (they are
close-on-exec, never inherited by a child). After a daemon restart the engine takes the
same ports again for the running containers from their records:
``reserve_all(owner, [r.as_binding() for r in saved])``, where ``saved`` came from
:meth:`Reserved.to_dict` / :meth:`Reserved.from_dict`.

Only IPv4 host addresses are supported; an IPv6 ``HostIp`` is NotSupported.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any, Final

from moorage.errors import Conflict, InvalidArgument, NotSupported, PermissionDenied

__all__ = [
    "PROTOCOLS",
    "Binding",
    "PortReservations",
    "Reserved",
    "ephemeral_port_range",
    "network_settings_ports",
    "parse_bindings",
    "parse_port_key",
]

log = logging.getLogger(__name__)

PROTOCOLS: Final = ("tcp", "udp", "sctp")
ANY_ADDRESS: Final = IPv4Address("0.0.0.0")
_ANY_PORT: Final = (0, 0)
_MAX_PORT: Final = 65535
_PORT_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")


@dataclass(frozen=True)
class Binding:
    """One port to publish.

    ``host_ip`` None means every address of the host (``0.0.0.0``). ``host_port_range``
    is ``(0, 0)`` for any free port, ``(p, p)`` for the port ``p``, ``(lo, hi)`` for the
    first free port from ``lo`` to ``hi``.
    """

    proto: str
    host_ip: IPv4Address | None
    host_port_range: tuple[int, int]
    container_port: int

    @property
    def key(self) -> str:
        """Docker's name of the container port: ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class Reserved:
    """A host port held for a published container port. ``0.0.0.0`` is every address."""

    proto: str
    host_ip: IPv4Address
    host_port: int
    container_port: int

    def as_binding(self) -> Binding:
        """The binding that asks for this very port again (after a daemon restart)."""
        host_ip = None if self.host_ip == ANY_ADDRESS else self.host_ip
        return Binding(self.proto, host_ip, (self.host_port, self.host_port), self.container_port)

    def to_dict(self) -> dict[str, Any]:
        return {
            "Proto": self.proto,
            "HostIp": str(self.host_ip),
            "HostPort": self.host_port,
            "ContainerPort": self.container_port,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reserved:
        try:
            reserved = cls(
                proto=str(data["Proto"]),
                host_ip=IPv4Address(data["HostIp"]),
                host_port=int(data["HostPort"]),
                container_port=int(data["ContainerPort"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"invalid port reservation record: {exc}") from exc
        if reserved.proto not in PROTOCOLS or not (
            _valid_port(reserved.host_port) and _valid_port(reserved.container_port)
        ):
            raise InvalidArgument(f"invalid port reservation record: {dict(data)}")
        return reserved


# --------------------------------------------------------------------------- parsing


def parse_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` (or ``"80"``, tcp) as ``(80, "tcp")``."""
    port_text, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f'invalid protocol "{proto}" in port "{key}"')
    port = _port_number(port_text)
    if port is None or port == 0:
        raise InvalidArgument(f'invalid port "{key}"')
    return port, proto


def parse_bindings(
    port_bindings: Mapping[str, Any] | None, exposed: Iterable[str] | None, publish_all: bool
) -> list[Binding]:
    """The ports to publish, from Docker's ``PortBindings``, ``ExposedPorts`` and ``-P``.

    A port with bindings publishes each of them. With ``publish_all``, every exposed
    port (and every ``PortBindings`` key with an empty list) without a binding is
    published on a free host port of every address. Sorted by container port and
    protocol, so the result does not depend on the order of the JSON.
    """
    if port_bindings is not None and not isinstance(port_bindings, Mapping):
        raise InvalidArgument(f"invalid port bindings: {port_bindings!r}")
    wanted: dict[tuple[int, str], list[Binding]] = {}
    for key, entries in (port_bindings or {}).items():
        port, proto = parse_port_key(str(key))
        wanted.setdefault((port, proto), []).extend(_parse_entries(port, proto, str(key), entries))
    if publish_all:
        for port, proto in _exposed_ports(exposed):
            wanted.setdefault((port, proto), [])
        for (port, proto), found in wanted.items():
            if not found:
                found.append(Binding(proto, None, _ANY_PORT, port))
    return [binding for key in sorted(wanted) for binding in wanted[key]]


def _exposed_ports(exposed: Iterable[str] | None) -> list[tuple[int, str]]:
    """``ExposedPorts`` keys; a range key (``"8000-8002/tcp"``) stands for each port in it."""
    ports: list[tuple[int, str]] = []
    for key in exposed or ():
        text, slash, proto = str(key).partition("/")
        lo, dash, hi = text.partition("-")
        if not dash:
            ports.append(parse_port_key(str(key)))
            continue
        first, _ = parse_port_key(f"{lo}{slash}{proto}")
        last, proto = parse_port_key(f"{hi}{slash}{proto}")
        if last < first:
            raise InvalidArgument(f'invalid port range "{key}"')
        ports.extend((port, proto) for port in range(first, last + 1))
    return ports


def _parse_entries(port: int, proto: str, key: str, entries: Any) -> list[Binding]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidArgument(f"invalid port bindings for {key}: want a list")
    bindings: list[Binding] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise InvalidArgument(f"invalid port binding for {key}: {entry!r}")
        host_ip = _parse_host_ip(entry.get("HostIp"), key)
        host_ports = _parse_host_port(entry.get("HostPort"), key)
        bindings.append(Binding(proto, host_ip, host_ports, port))
    return bindings


def _parse_host_ip(value: Any, key: str) -> IPv4Address | None:
    if value is None or value == "":
        return None
    try:
        address = ip_address(str(value).strip("[]"))
    except ValueError as exc:
        raise InvalidArgument(f'invalid host ip "{value}" for {key}') from exc
    if not isinstance(address, IPv4Address):
        raise NotSupported(f'ipv6 host ip "{value}" for {key} is not supported')
    return None if address == ANY_ADDRESS else address


def _parse_host_port(value: Any, key: str) -> tuple[int, int]:
    text = "" if value is None else str(value).strip()
    if text in ("", "0"):
        return _ANY_PORT
    lo_text, dash, hi_text = text.partition("-")
    lo = _port_number(lo_text)
    hi = _port_number(hi_text) if dash else lo
    if lo is None or hi is None or lo == 0 or hi < lo:
        raise InvalidArgument(f'invalid host port "{value}" for {key}')
    return lo, hi


def _port_number(text: str) -> int | None:
    """A port number 0..65535 from decimal text, or None."""
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number <= _MAX_PORT else None


def _valid_port(port: int) -> bool:
    return 0 < port <= _MAX_PORT


# --------------------------------------------------------------------------- reservations


def ephemeral_port_range(path: Path = _PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (``net.ipv4.ip_local_port_range``)."""
    try:
        lo_text, hi_text = path.read_text().split()
        lo, hi = int(lo_text), int(hi_text)
    except (OSError, ValueError):
        log.warning("cannot read %s, using the kernel's default 32768-60999", path)
        return 32768, 60999
    return lo, hi


@dataclass(frozen=True)
class _Held:
    reserved: Reserved
    sock: socket.socket


class _InUse(Exception):
    """The kernel refused the bind with EADDRINUSE (internal: ranges try the next port)."""


class PortReservations:
    """Host ports held by bound sockets, per owner (a container id).

    A fixed port is taken or refused. A range takes the first free port in it. Port 0
    takes a free port of the kernel's ephemeral range, in turn after the last one taken
    (like Docker's port allocator), so that a port just released is not handed to the
    next container while others are free.

    Not thread-safe: the caller serialises calls. Blocking only for ``bind`` (fast).
    """

    def __init__(self, ephemeral: tuple[int, int] | None = None) -> None:
        self._ephemeral = ephemeral
        self._next_ephemeral: int | None = None
        self._held: dict[str, list[_Held]] = {}

    def reserve(self, owner: str, binding: Binding) -> Reserved:
        """Take a host port for ``binding`` on behalf of ``owner``."""
        held = self._take(binding)
        self._held.setdefault(owner, []).append(held)
        return held.reserved

    def reserve_all(self, owner: str, bindings: Sequence[Binding]) -> list[Reserved]:
        """Take every binding, or none: what this call took is released on failure."""
        taken: list[_Held] = []
        try:
            for binding in bindings:
                taken.append(self._take(binding))
        except BaseException:
            for held in taken:
                held.sock.close()
            raise
        self._held.setdefault(owner, []).extend(taken)
        return [held.reserved for held in taken]

    def release(self, owner: str) -> None:
        """Give back every port ``owner`` holds; nothing happens when it holds none."""
        for held in self._held.pop(owner, []):
            held.sock.close()

    def reserved(self, owner: str) -> list[Reserved]:
        return [held.reserved for held in self._held.get(owner, [])]

    def close(self) -> None:
        """Release every owner's ports (daemon shutdown)."""
        for owner in list(self._held):
            self.release(owner)

    def _take(self, binding: Binding) -> _Held:
        host_ip = binding.host_ip or ANY_ADDRESS
        lo, hi = binding.host_port_range
        if (lo, hi) == _ANY_PORT:
            return self._take_ephemeral(binding, host_ip)
        for port in range(lo, hi + 1):
            try:
                return _Held(_reserved(binding, host_ip, port), _bind(binding.proto, host_ip, port))
            except _InUse:
                continue
        where = f"{lo}" if lo == hi else f"{lo}-{hi}"
        raise Conflict(f"Bind for {host_ip}:{where} failed: port is already allocated")

    def _take_ephemeral(self, binding: Binding, host_ip: IPv4Address) -> _Held:
        if self._ephemeral is None:
            self._ephemeral = ephemeral_port_range()
        lo, hi = self._ephemeral
        count = hi - lo + 1
        start = self._next_ephemeral if self._next_ephemeral is not None else lo
        for step in range(count):
            port = lo + (start - lo + step) % count
            try:
                sock = _bind(binding.proto, host_ip, port)
            except _InUse:
                continue
            self._next_ephemeral = lo + (port - lo + 1) % count
            return _Held(_reserved(binding, host_ip, port), sock)
        raise Conflict(f"Bind for {host_ip}:{lo}-{hi} failed: all ports are allocated")


def _reserved(binding: Binding, host_ip: IPv4Address, port: int) -> Reserved:
    return Reserved(binding.proto, host_ip, port, binding.container_port)


def _socket_for(proto: str) -> socket.socket:
    kinds = {
        "tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
        "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
        "sctp": (socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP),
    }
    kind, number = kinds[proto]
    try:
        return socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC, number)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT):
            raise NotSupported(f"{proto} is not supported by this host's kernel") from exc
        raise


def _bind(proto: str, host_ip: IPv4Address, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host_ip:port``; the port is ours while it lives.

    No SO_REUSEADDR: with it, two sockets that both set it may bind the same TCP port as
    long as neither listens, which would let two reservations share a port.
    """
    sock = _socket_for(proto)
    try:
        sock.bind((str(host_ip), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise _InUse from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"host ip {host_ip} is not an address of this host") from exc
        if exc.errno == errno.EACCES:
            raise PermissionDenied(f"Bind for {host_ip}:{port} failed: permission denied") from exc
        raise
    return sock


# --------------------------------------------------------------------------- inspect


def network_settings_ports(
    exposed: Iterable[str] | None, reserved: Iterable[Reserved]
) -> dict[str, list[dict[str, str]] | None]:
    """Docker's ``NetworkSettings.Ports``: every exposed or published port, its bindings.

    ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "81/tcp": None}``; keys in
    the order Docker's JSON has them (sorted as strings).
    """
    ports: dict[str, list[dict[str, str]] | None] = {}
    for port, proto in _exposed_ports(exposed):
        ports[f"{port}/{proto}"] = None
    for entry in reserved:
        found = ports.get(f"{entry.container_port}/{entry.proto}") or []
        found.append({"HostIp": str(entry.host_ip), "HostPort": str(entry.host_port)})
        ports[f"{entry.container_port}/{entry.proto}"] = found
    return {key: ports[key] for key in sorted(ports)}
