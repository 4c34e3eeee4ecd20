"""IPv4 address management for bridge networks: subnets for new networks, addresses in them.

This module owns three decisions and nothing else (no locking: the caller holds its own
lock; no files: the caller persists what :meth:`Addresses.to_dict` returns):

- Which subnet a new network gets when the user names none (:func:`choose_subnet`).
  Like Docker's default address pools: ``172.17.0.0/16`` to ``172.31.0.0/16``, then
  ``192.168.0.0/16`` cut into ``/20`` s. A candidate is skipped when it overlaps a
  subnet one of our networks uses or a route of the host (a LAN, a VPN), so that
  containers can still reach those; the default route is ignored, as it overlaps all.
- Whether a subnet and gateway the user names are acceptable (:func:`parse_subnet`,
  :func:`check_network`), with Docker's wording where users know it
  (``Pool overlaps with other one on this address space``).
- Which address a container gets on a network (:class:`Addresses`). Its state is plain
  data that round-trips through a JSON-able dict, because the engine keeps it in the
  network's record: after a daemon restart the running containers keep their addresses
  and no new one is handed out twice.

Example::

    subnet = choose_subnet(in_use=[IPv4Network("172.17.0.0/16")], host_routes=[])
    gateway = check_network(subnet, None, in_use=[])          # 172.18.0.1
    addresses = Addresses(subnet, gateway)
    addresses.allocate("c1")                                  # 172.18.0.2
    mac_for(IPv4Address("172.18.0.2"))                        # "02:42:ac:12:00:02"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Final

from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotSupported,
)

__all__ = [
    "DEFAULT_POOLS",
    "AddressPool",
    "Addresses",
    "check_network",
    "choose_subnet",
    "mac_for",
    "parse_subnet",
]

# The smallest subnet with room for a gateway and one container, besides the network
# and broadcast addresses.
_MAX_PREFIXLEN: Final = 30


@dataclass(frozen=True)
class AddressPool:
    """A range that new networks' subnets are cut from: ``base`` split into ``/size`` s.

    The shape of an entry of Docker's ``default-address-pools`` daemon option.
    """

    base: IPv4Network
    size: int

    def subnets(self) -> Iterator[IPv4Network]:
        return self.base.subnets(new_prefix=self.size)


DEFAULT_POOLS: Final[tuple[AddressPool, ...]] = (
    *(AddressPool(IPv4Network(f"172.{n}.0.0/16"), 16) for n in range(17, 32)),
    AddressPool(IPv4Network("192.168.0.0/16"), 20),
)


def choose_subnet(
    in_use: Iterable[IPv4Network],
    host_routes: Iterable[IPv4Network],
    pools: Iterable[AddressPool] = DEFAULT_POOLS,
) -> IPv4Network:
    """The first subnet of ``pools`` that overlaps no network of ours and no host route.

    Default routes (``0.0.0.0/0``) are ignored: they overlap everything.
    """
    taken = [*in_use, *(route for route in host_routes if route.prefixlen > 0)]
    for pool in pools:
        for candidate in pool.subnets():
            if not any(candidate.overlaps(other) for other in taken):
                return candidate
    raise FailedPrecondition(
        "could not find an available, non-overlapping IPv4 address pool among the "
        "defaults to assign to the network"
    )


def parse_subnet(text: str) -> IPv4Network:
    """``text`` as an IPv4 subnet in CIDR form; host bits must be clear, as in Docker."""
    spec = text.strip()
    if "/" not in spec:
        raise InvalidArgument(f'invalid subnet "{text}": want an address with a prefix length')
    if ":" in spec:
        raise NotSupported(f'ipv6 subnets are not supported: "{text}"')
    try:
        loose = IPv4Network(spec, strict=False)
    except ValueError as exc:
        raise InvalidArgument(f'invalid subnet "{text}"') from exc
    if loose.network_address != IPv4Network(f"{spec.split('/', 1)[0]}/32").network_address:
        raise InvalidArgument(f'invalid subnet "{text}": it should be {loose}')
    return loose


def check_network(
    subnet: IPv4Network, gateway: IPv4Address | None, in_use: Iterable[IPv4Network]
) -> IPv4Address:
    """Validate a user's subnet and gateway for a new network; return the gateway.

    The gateway defaults to the subnet's first host address. A subnet that overlaps one
    of ``in_use`` (the subnets of existing networks) is a Conflict.
    """
    if subnet.prefixlen > _MAX_PREFIXLEN:
        raise InvalidArgument(
            f"subnet {subnet} is too small: a network needs a /{_MAX_PREFIXLEN} or larger"
        )
    for other in in_use:
        if subnet.overlaps(other):
            raise Conflict(
                "invalid pool request: Pool overlaps with other one on this address space "
                f"({subnet} overlaps {other})"
            )
    if gateway is None:
        return subnet.network_address + 1
    if gateway not in subnet:
        raise InvalidArgument(f"no matching subnet for gateway {gateway}")
    if gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"invalid gateway {gateway}: not a host address of {subnet}")
    return gateway


def mac_for(ip: IPv4Address) -> str:
    """Docker's MAC address for a container address: ``02:42`` and the address's bytes.

    ``02`` is a locally administered unicast prefix; deriving the rest from the address
    makes the MAC unique on the bridge and stable across restarts.
    """
    return ":".join(f"{byte:02x}" for byte in (0x02, 0x42, *ip.packed))


class Addresses:
    """The container addresses of one network: which owner (endpoint) has which address.

    New addresses are handed out in order after the last one allocated, wrapping around
    at the end of the subnet (Docker's IPAM allocates the same way, "serially"), so an
    address that was just released is not reused while others are free: a peer that
    still has the old container's address cached does not reach a new one by mistake.
    The network, broadcast and gateway addresses are never handed out.

    Plain data: :meth:`to_dict` and :meth:`from_dict` round-trip through JSON, with the
    allocation cursor, so that a restored table continues where it was.
    """

    def __init__(self, subnet: IPv4Network, gateway: IPv4Address) -> None:
        if subnet.prefixlen > _MAX_PREFIXLEN or gateway not in subnet:
            raise InvalidArgument(f"invalid network: gateway {gateway}, subnet {subnet}")
        self._subnet = subnet
        self._gateway = gateway
        self._by_owner: dict[str, IPv4Address] = {}
        self._by_ip: dict[IPv4Address, str] = {}
        self._last: IPv4Address | None = None

    @property
    def subnet(self) -> IPv4Network:
        return self._subnet

    @property
    def gateway(self) -> IPv4Address:
        return self._gateway

    def allocate(self, owner: str, preferred: IPv4Address | None = None) -> IPv4Address:
        """An address for ``owner``: ``preferred`` if given, else the next free one.

        An owner has one address per network: asking again returns the one it has.
        """
        current = self._by_owner.get(owner)
        if current is not None:
            if preferred is None or preferred == current:
                return current
            raise Conflict(f"{owner} already has address {current} on {self._subnet}")
        ip = self._claim(preferred) if preferred is not None else self._next_free()
        self._by_owner[owner] = ip
        self._by_ip[ip] = owner
        return ip

    def release(self, owner: str) -> None:
        """Give back ``owner``'s address; nothing happens when it has none."""
        ip = self._by_owner.pop(owner, None)
        if ip is not None:
            del self._by_ip[ip]

    def owner_of(self, ip: IPv4Address) -> str | None:
        return self._by_ip.get(ip)

    def address_of(self, owner: str) -> IPv4Address | None:
        return self._by_owner.get(owner)

    def __len__(self) -> int:
        return len(self._by_owner)

    def _claim(self, ip: IPv4Address) -> IPv4Address:
        if ip not in self._subnet:
            raise InvalidArgument(f"no configured subnet contains the ip address {ip}")
        if ip in (self._subnet.network_address, self._subnet.broadcast_address):
            raise InvalidArgument(f"invalid address {ip}: not a host address of {self._subnet}")
        if ip == self._gateway or ip in self._by_ip:
            raise Conflict(f"address already in use: {ip}")
        return ip

    def _next_free(self) -> IPv4Address:
        first = self._subnet.network_address + 1
        hosts = self._subnet.num_addresses - 2
        start = 0 if self._last is None else (int(self._last) - int(first) + 1) % hosts
        for step in range(hosts):
            ip = first + (start + step) % hosts
            if ip != self._gateway and ip not in self._by_ip:
                self._last = ip
                return ip
        raise FailedPrecondition(f"no available addresses on this pool: {self._subnet}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "Subnet": str(self._subnet),
            "Gateway": str(self._gateway),
            "Allocated": {owner: str(ip) for owner, ip in self._by_owner.items()},
            "Last": None if self._last is None else str(self._last),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Addresses:
        """The table :meth:`to_dict` returned; a malformed record is InvalidArgument."""
        try:
            table = cls(IPv4Network(data["Subnet"]), IPv4Address(data["Gateway"]))
            allocated: Mapping[str, str] = data["Allocated"]
            for owner, text in allocated.items():
                table.allocate(str(owner), IPv4Address(text))
            last = None if data.get("Last") is None else IPv4Address(data["Last"])
        except (KeyError, TypeError, AttributeError, ValueError, MoorageError) as exc:
            raise InvalidArgument(f"invalid address table: {exc}") from exc
        if last is not None and last not in table._subnet:
            raise InvalidArgument(f"invalid address table: last address {last}")
        table._last = last
        return table
