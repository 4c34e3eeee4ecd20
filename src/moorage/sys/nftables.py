"""Moorage's nftables table: published ports, outbound NAT, isolation between networks.

This is the one module that speaks nftables. The rules are data: the engine describes
the whole desired state (its bridge networks and its port forwards) and ``apply``
replaces Moorage's table with it in one transaction. Nothing outside that table is
read or touched; the table name is a parameter so test daemons keep to their own.

Why ``nft -f -`` with a text script, not ``nft -j`` JSON: the script is the documented
language of nft(8), reads like ``nft list table`` prints it (``render`` is the
debugging view and what the unit tests compare), and nft points at the line and
column of anything it refuses. Both go through the same libnftables and the same
kernel transaction, so JSON would only add bulk. The transaction is what makes
``apply`` atomic: the script first makes sure the table exists, deletes it and adds it
back whole; if the kernel refuses any part, none of it happens and the previous
table stays in force. (``destroy table`` would say it in one line but needs nft 1.0.8.)

What the table does, for each network (Docker's bridge driver without iptables):

- nat prerouting and output: traffic to a local address of the host (``fib daddr
  type local``; only ``host_ip`` when a forward names one) on a published port is
  DNATed to the container. Prerouting serves other hosts and containers; output serves
  the host itself, 127.0.0.1 included (the kernel routes 127.0.0.0/8 sources out of a
  bridge only with ``route_localnet`` on it, which the engine sets).
- nat postrouting: a non-internal network's subnet leaving through any interface but
  its bridge is masqueraded; so is a DNATed connection from the bridge's subnet going
  back into the bridge (hairpin: a container reaching its own or a neighbour's
  published port through a host address, which must see the host, not the neighbour,
  answer); and with ``route_localnet``, 127.0.0.0/8 sources going out the bridge.
- filter forward (policy accept, a base chain of this table only): an internal
  network exchanges nothing with any other interface; established and related traffic
  passes, and so does DNATed traffic (a published port is reachable from other hosts
  and from containers of other networks, as with Docker); anything else entering a
  bridge from another interface is dropped: containers are not reachable by their
  address from other hosts or from other networks.
- filter input: new connections that arrive on a bridge addressed to 127.0.0.0/8 are
  dropped. With ``route_localnet`` on, the kernel would otherwise deliver them, and a
  container could reach the host's services bound to localhost (CVE-2020-8558 is
  kube-proxy's version of the same hole).

Ports are not published on internal networks: forwards to one are left out (Docker
ignores ``-p`` there too), so that one such container cannot make every apply fail.
``apply`` with no networks and no forwards leaves no table at all, so a host without
Moorage networks has no Moorage hooks in its packet path.

Cost: an apply is one ``nft`` process, 8-16 ms (median 16) whatever the size up to a
hundred forwards, 27 ms with 500. Most of it is the kernel at nft's exit: closing its
netlink socket waits for the old table's destruction (an RCU grace period). Calling
libnftables in-process with a long-lived context measured 0.1 ms, but that context's
socket is not close-on-exec and stays in the namespace it was opened in, so it is not
done here. One rule per forward is plenty for hundreds of ports (a map would do for
thousands): nat chains only see the first packet of each connection.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.sys.netlink import check_ifname

__all__ = [
    "DEFAULT_TABLE",
    "BridgeNetwork",
    "PortForward",
    "apply",
    "remove",
    "render",
    "table_names",
]

DEFAULT_TABLE = "moorage"
FAMILY = "ip"
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_PROTOCOLS = ("tcp", "udp")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_NFT_TIMEOUT = 60.0


@dataclass(frozen=True)
class BridgeNetwork:
    """A Moorage network: a Linux bridge and the subnet its containers live in."""

    bridge: str
    subnet: ipaddress.IPv4Network
    internal: bool = False
    """No route out: nothing passes between the bridge and any other interface."""
    route_localnet: bool = False
    """The engine sets the bridge's route_localnet sysctl: masquerade 127.0.0.0/8
    sources going out the bridge, so that localhost reaches published ports."""

    def __post_init__(self) -> None:
        check_ifname(self.bridge, "bridge name")
        if not isinstance(self.subnet, ipaddress.IPv4Network):
            raise InvalidArgument(f"invalid subnet of bridge {self.bridge}: {self.subnet!r}")


@dataclass(frozen=True)
class PortForward:
    """A published port: ``host_ip:host_port/proto`` -> ``container_ip:container_port``.

    ``host_ip`` None (or 0.0.0.0) means every local address of the host.
    """

    proto: str
    host_ip: ipaddress.IPv4Address | None
    host_port: int
    container_ip: ipaddress.IPv4Address
    container_port: int
    bridge: str

    def __post_init__(self) -> None:
        if self.proto not in _PROTOCOLS:
            raise InvalidArgument(f"invalid protocol (want tcp or udp): {self.proto!r}")
        _check_port(self.host_port, "host port")
        _check_port(self.container_port, "container port")
        if self.host_ip is not None and not isinstance(self.host_ip, ipaddress.IPv4Address):
            raise InvalidArgument(f"invalid host address: {self.host_ip!r}")
        if not isinstance(self.container_ip, ipaddress.IPv4Address):
            raise InvalidArgument(f"invalid container address: {self.container_ip!r}")
        check_ifname(self.bridge, "bridge name")

    @property
    def every_address(self) -> bool:
        return self.host_ip is None or self.host_ip.is_unspecified

    def describe(self) -> str:
        host = "*" if self.every_address else str(self.host_ip)
        return f"{host}:{self.host_port}/{self.proto}"


def _check_port(port: int, what: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgument(f"invalid {what}: {port!r}")


def _check_table(table: str) -> str:
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise InvalidArgument(f"invalid nftables table name: {table!r}")
    return table


# -- validation of the whole state -----------------------------------------------------


def _check_networks(networks: Sequence[BridgeNetwork]) -> dict[str, BridgeNetwork]:
    by_bridge: dict[str, BridgeNetwork] = {}
    for network in networks:
        if network.bridge in by_bridge:
            raise InvalidArgument(f"bridge listed twice: {network.bridge}")
        for other in by_bridge.values():
            if network.subnet.overlaps(other.subnet):
                raise InvalidArgument(
                    f"subnets overlap: {network.subnet} ({network.bridge}) "
                    f"and {other.subnet} ({other.bridge})"
                )
        by_bridge[network.bridge] = network
    return by_bridge


def _check_forwards(forwards: Sequence[PortForward], by_bridge: dict[str, BridgeNetwork]) -> None:
    taken: dict[tuple[str, int], list[PortForward]] = {}
    for forward in forwards:
        network = by_bridge.get(forward.bridge)
        if network is None:
            raise InvalidArgument(
                f"port {forward.describe()} forwarded to unknown bridge: {forward.bridge}"
            )
        if forward.container_ip not in network.subnet:
            raise InvalidArgument(
                f"port {forward.describe()} forwarded to {forward.container_ip}, "
                f"outside {network.subnet} of bridge {forward.bridge}"
            )
        same_port = taken.setdefault((forward.proto, forward.host_port), [])
        for other in same_port:
            if forward.every_address or other.every_address or forward.host_ip == other.host_ip:
                raise InvalidArgument(
                    f"port published twice: {forward.describe()} and {other.describe()}"
                )
        same_port.append(forward)


# -- rendering -------------------------------------------------------------------------


def render(table: str, networks: Sequence[BridgeNetwork], forwards: Sequence[PortForward]) -> str:
    """The ``nft -f`` script that replaces ``table`` with these networks and forwards.

    Pure: validates its input (InvalidArgument) and returns text. Example::

        render("moorage", [BridgeNetwork("moor0", IPv4Network("172.18.0.0/16"))],
               [PortForward("tcp", None, 8080, IPv4Address("172.18.0.2"), 80, "moor0")])
    """
    _check_table(table)
    by_bridge = _check_networks(networks)
    _check_forwards(forwards, by_bridge)
    published = [f for f in forwards if not by_bridge[f.bridge].internal]
    head = f"table {FAMILY} {table} {{}}\ndelete table {FAMILY} {table}\n"
    if not networks:
        return head
    chains = [
        _chain("publish", None, [_dnat(f) for f in published]),
        _chain(
            "prerouting",
            "type nat hook prerouting priority -100",
            ["fib daddr type local jump publish"],
        ),
        _chain(
            "output", "type nat hook output priority -100", ["fib daddr type local jump publish"]
        ),
        _chain("postrouting", "type nat hook postrouting priority 100", _masquerades(networks)),
        _chain("forward", "type filter hook forward priority 0", _forward_rules(networks)),
        _chain("input", "type filter hook input priority 0", _input_rules(networks)),
    ]
    return head + f"table {FAMILY} {table} {{\n" + "".join(chains) + "}\n"


def _chain(name: str, base: str | None, rules: list[str]) -> str:
    lines = [f"\tchain {name} {{\n"]
    if base is not None:
        lines.append(f"\t\t{base}; policy accept;\n")
    lines.extend(f"\t\t{rule}\n" for rule in rules)
    lines.append("\t}\n")
    return "".join(lines)


def _quoted(name: str) -> str:
    return f'"{name}"'  # check_ifname allows nothing that needs escaping


def _dnat(forward: PortForward) -> str:
    match = "" if forward.every_address else f"ip daddr {forward.host_ip} "
    return (
        f"{match}{forward.proto} dport {forward.host_port} "
        f"dnat to {forward.container_ip}:{forward.container_port}"
    )


def _masquerades(networks: Sequence[BridgeNetwork]) -> list[str]:
    rules = []
    for network in networks:
        if network.internal:  # never leaves its bridge and publishes nothing
            continue
        bridge, subnet = _quoted(network.bridge), network.subnet
        rules.append(f"ip saddr {subnet} oifname != {bridge} masquerade")
        rules.append(f"ip saddr {subnet} oifname {bridge} ct status dnat masquerade")
        if network.route_localnet:
            rules.append(f"ip saddr {_LOOPBACK} oifname {bridge} masquerade")
    return rules


def _input_rules(networks: Sequence[BridgeNetwork]) -> list[str]:
    # Replies to the host's own localhost -> published port connections arrive on the
    # bridge addressed to 127.0.0.1 (the masquerade undone): those are established.
    return [
        f"iifname {_quoted(n.bridge)} ip daddr {_LOOPBACK} "
        "ct state != { established, related } drop"
        for n in networks
    ]


def _forward_rules(networks: Sequence[BridgeNetwork]) -> list[str]:
    rules = []
    for network in networks:
        if network.internal:
            bridge = _quoted(network.bridge)
            rules.append(f"iifname {bridge} oifname != {bridge} drop")
            rules.append(f"oifname {bridge} iifname != {bridge} drop")
    rules.append("ct state established,related accept")
    rules.append("ct status dnat accept")
    for network in networks:
        if not network.internal:
            bridge = _quoted(network.bridge)
            rules.append(f"oifname {bridge} iifname != {bridge} drop")
    return rules


# -- the nft command -------------------------------------------------------------------


def _nft_binary() -> str:
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if found is None:
        raise FailedPrecondition("nft not found: install nftables")
    return found


def _nft(args: list[str], what: str, script: str | None = None) -> str:
    try:
        done = subprocess.run(
            [_nft_binary(), *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=_NFT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FailedPrecondition(f"{what}: nft did not finish in {_NFT_TIMEOUT:.0f} s") from exc
    except OSError as exc:
        raise FailedPrecondition(
            f"{what}: cannot run nft: {os.strerror(exc.errno or 0).lower()}"
        ) from exc
    if done.returncode != 0:
        message = done.stderr.strip() or f"exit status {done.returncode}"
        raise FailedPrecondition(f"{what}: {message}")
    return done.stdout


def apply(table: str, networks: Sequence[BridgeNetwork], forwards: Sequence[PortForward]) -> None:
    """Replace ``table`` with exactly these networks and forwards, atomically: when nft
    or the kernel refuses, the previous table is left as it was."""
    script = render(table, networks, forwards)
    _nft(["-f", "-"], f"cannot apply nftables table {table}", script)


def remove(table: str) -> bool:
    """Delete ``table``; False when there was none."""
    _check_table(table)
    if table not in table_names():
        return False
    # Make-then-delete cannot fail if another process deleted it in between.
    script = f"table {FAMILY} {table} {{}}\ndelete table {FAMILY} {table}\n"
    _nft(["-f", "-"], f"cannot remove nftables table {table}", script)
    return True


def table_names() -> list[str]:
    """The names of the ``ip`` family's tables (every owner's, not only Moorage's)."""
    out = _nft(["-j", "list", "tables", FAMILY], "cannot list nftables tables")
    try:
        items = json.loads(out)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FailedPrecondition(
            f"cannot list nftables tables: unexpected output: {out[:200]!r}"
        ) from exc
    return sorted(
        str(item["table"]["name"])
        for item in items
        if "table" in item and item["table"].get("family") == FAMILY
    )
