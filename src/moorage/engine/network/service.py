"""The engine's networks: Docker's ``bridge``, ``host`` and ``none`` networks and the
user-defined bridge networks, their containers' endpoints, published ports and DNS.

What happens to a container, in order (the container service calls these):

1. ``prepare(spec)`` as its start begins: an address on each of its networks (from
   the network's persistent table), its published ports reserved (a bound socket
   holds each host port, so a port in use fails the start before anything runs), the
   endpoints recorded. What it returns says what the container's /etc/hosts and
   /etc/resolv.conf must say.
2. ``wire(container_id, netns)`` once the runtime created the container (its network
   namespace exists, nothing runs yet): a veth per endpoint, the DNS names, and the
   nftables rules of its published ports.
3. ``release(container_id)`` when it exits or is removed: endpoints, addresses, DNS
   names, port reservations and rules go; the veths went with the namespace.

State lives in ``records`` (one JSON file per network) and is reconciled at daemon
start (:meth:`NetworkService.reconcile`): endpoints of containers that no longer run
are released, bridges that vanished (a host reboot) are made again, the nftables
table is rewritten whole, and veths on our bridges that no endpoint owns are deleted.
The kernel side goes through ``moorage.sys.netlink`` and ``moorage.sys.nftables``
(the one module that speaks nftables); the nftables table belongs to this daemon
alone (``moorage``, or ``moorage_<bridge>`` for a daemon with another default
bridge, so that two daemons on one host never rewrite each other's rules).

The embedded DNS servers (one per user-defined network, on its gateway, port 53) run
on an event loop of their own in a thread, so that this service stays synchronous
like the rest of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from moorage.engine.network import ipam, records
from moorage.engine.network.dns import DnsServer, Records, host_nameservers
from moorage.engine.network.ports import PortReservations, Reserved, parse_bindings
from moorage.engine.network.records import BRIDGE, HOST, NULL, Endpoint, NetworkRecord
from moorage.errors import Conflict, InvalidArgument, MoorageError, NotFound, NotSupported

__all__ = ["ContainerNetworking", "NetworkService", "Prepared"]

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "moor0"
_BUILTIN_MODES = {"bridge": "bridge", "default": "bridge", "host": "host", "none": "none"}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class ContainerNetworking:
    """What the network service needs to know of a container to start it."""

    id: str
    name: str
    mode: str  # HostConfig.NetworkMode: bridge, default, host, none, or a network
    endpoints_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    port_bindings: Mapping[str, Any] = field(default_factory=dict)
    exposed: Mapping[str, Any] = field(default_factory=dict)
    publish_all: bool = False
    detached: frozenset[str] = frozenset()  # disconnected from: left out at its start


@dataclass(frozen=True)
class Prepared:
    """A container's networking for its start: its addresses and its DNS servers."""

    mode: str  # "bridge" (attached to networks), "host" or "none"
    address: IPv4Address | None = None  # on its first network: /etc/hosts
    nameservers: tuple[str, ...] = ()  # empty: the host's (filtered) resolv.conf


class NetworkService:
    def __init__(
        self,
        root: str,
        *,
        bridge: str = DEFAULT_BRIDGE,
        bip: str | None = None,
        dns: Iterable[str] = (),
    ) -> None:
        self.root = root
        # The daemon's --dns: the embedded servers forward to these, and containers on
        # the default bridge use them; else the host's resolv.conf servers.
        self.dns = tuple(_address(a, "dns server").exploded for a in dns)
        self.bridge_name = bridge
        self.table = "moorage" if bridge == DEFAULT_BRIDGE else f"moorage_{bridge}"
        self._bip = bip
        self._lock = threading.RLock()
        self._networks: dict[str, NetworkRecord] = {r.id: r for r in records.load_all(root)}
        self._ports = PortReservations()
        self._dns: dict[str, tuple[DnsServer, Records]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """The built-in networks, every bridge up, forwarding on: before any container
        starts. The container service then calls :meth:`reconcile` with what runs."""
        from moorage.sys import netlink

        netlink.preload()  # else the first container start pays pyroute2's import
        with self._lock:
            self._ensure_builtins()
            netlink.set_sysctl("net.ipv4.ip_forward", "1")
            for record in self._bridges():
                self._bring_up(record)

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
            servers = list(self._dns.values())
            self._dns.clear()
            self._ports.close()
        if loop is not None:
            for server, _ in servers:
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)

    def reconcile(self, running: Mapping[str, str | None]) -> None:
        """Release the endpoints of containers not in ``running``; rewrite the rules."""
        from moorage.sys import netlink

        with self._lock:
            for record in self._networks.values():
                gone = [cid for cid in record.endpoints if cid not in running]
                for cid in gone:
                    self._drop_endpoint(record, cid)
                if gone:
                    records.save(self.root, record)
                for endpoint in record.endpoints.values():
                    self._restore_endpoint(record, endpoint)
            owned = {e.host_ifname for r in self._networks.values() for e in r.endpoints.values()}
            for record in self._bridges():
                for name in netlink.bridge_ports(record.bridge):
                    if name not in owned:
                        netlink.delete_link(name)
            self._sync_firewall()

    # --- networks -----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        driver: str = BRIDGE,
        subnet: str | None = None,
        gateway: str | None = None,
        internal: bool = False,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
    ) -> NetworkRecord:
        """A new user-defined bridge network, its bridge up and its DNS server serving."""
        _check_name(name)
        if driver != BRIDGE:
            raise NotSupported(f'network driver "{driver}": only "bridge" is supported')
        with self._lock:
            if any(r.name == name for r in self._networks.values()):
                raise Conflict(f"network with name {name} already exists")
            addresses = self._new_addresses(subnet, gateway)
            network_id = secrets.token_hex(32)
            record = NetworkRecord(
                id=network_id,
                name=name,
                driver=BRIDGE,
                created=_now(),
                bridge=f"mbr-{network_id[:11]}",
                internal=internal,
                labels=dict(labels or {}),
                options=dict(options or {}),
                addresses=addresses,
            )
            self._bring_up(record)
            try:
                records.save(self.root, record)
                self._networks[record.id] = record
                self._sync_firewall()
            except BaseException:
                self._networks.pop(record.id, None)
                self._tear_down(record)
                raise
            return record

    def get(self, ref: str) -> NetworkRecord:
        """By full id, by name, or by a unique id prefix (Docker's lookup order)."""
        with self._lock:
            if ref in self._networks:
                return self._networks[ref]
            named = [r for r in self._networks.values() if r.name == ref]
            if named:
                return named[0]
            prefixed = [r for r in self._networks.values() if ref and r.id.startswith(ref)]
            if len(prefixed) == 1:
                return prefixed[0]
            if len(prefixed) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(prefixed)} matches)")
            raise NotFound(f"network {ref} not found")

    def all(self) -> list[NetworkRecord]:
        with self._lock:
            return sorted(self._networks.values(), key=lambda r: r.created)

    def remove(self, ref: str) -> None:
        with self._lock:
            record = self.get(ref)
            if record.builtin:
                raise InvalidArgument(
                    f"{record.name} is a pre-defined network and cannot be removed"
                )
            if record.endpoints:
                raise Conflict(
                    f"error while removing network: network {record.name} id {record.id} "
                    "has active endpoints"
                )
            self._stop_dns(record)
            del self._networks[record.id]
            records.delete(self.root, record.id)
            self._tear_down(record)
            self._sync_firewall()

    # --- containers ---------------------------------------------------------------

    def check(self, spec: ContainerNetworking) -> None:
        """At create: the networks a container names exist (Docker checks then too)."""
        mode = _BUILTIN_MODES.get(spec.mode or "bridge")
        if mode is None and not spec.mode.startswith("container:"):
            self.get(spec.mode)
        for name in spec.endpoints_config:
            if name not in _BUILTIN_MODES:
                self.get(name)

    def prepare(self, spec: ContainerNetworking) -> Prepared:
        """Addresses and port reservations for a container about to start (see module)."""
        mode = _BUILTIN_MODES.get(spec.mode or "bridge")
        if mode in ("host", "none"):
            return Prepared(mode=mode)
        from moorage.sys import netlink

        with self._lock:
            self.release(spec.id)  # a start that failed half-way may have left some
            networks = self._networks_of(spec)
            if not networks:  # disconnected from all of them: loopback only, as Docker
                return Prepared(mode="none")
            vanished = [r for r in networks if not netlink.link_exists(r.bridge)]
            for record in vanished:  # deleted behind our back: made again, not a failure
                log.warning(
                    "network %s: bridge %s was gone, made again", record.name, record.bridge
                )
                self._bring_up(record)
            if vanished:
                self._sync_firewall()
            bindings = parse_bindings(spec.port_bindings, spec.exposed, spec.publish_all)
            made: list[NetworkRecord] = []
            try:
                reserved = self._ports.reserve_all(spec.id, bindings) if bindings else []
                for index, record in enumerate(networks):
                    config = spec.endpoints_config.get(record.name) or {}
                    endpoint = self._new_endpoint(record, spec, index, config, reserved)
                    record.endpoints[spec.id] = endpoint
                    made.append(record)
                    records.save(self.root, record)
            except BaseException:
                for record in made:
                    self._drop_endpoint(record, spec.id)
                    records.save(self.root, record)
                self._ports.release(spec.id)
                raise
            first = networks[0]
            gateway = first.addresses.gateway if first.addresses is not None else None
            if first.dns and gateway is not None:
                nameservers: tuple[str, ...] = (str(gateway),)
            else:
                nameservers = self.dns
            return Prepared(
                mode="bridge", address=first.endpoints[spec.id].ip, nameservers=nameservers
            )

    def wire(self, container_id: str, netns: str) -> None:
        """Plug the prepared endpoints into the container's network namespace."""

        with self._lock:
            attached = [
                (r, r.endpoints[container_id])
                for r in self._networks.values()
                if container_id in r.endpoints
            ]
            for record, endpoint in sorted(attached, key=lambda a: a[1].ifname):
                self._wire_one(record, endpoint, netns)
            if any(e.ports for _, e in attached):
                self._sync_firewall()

    def _wire_one(self, record: NetworkRecord, endpoint: Endpoint, netns: str) -> None:
        from moorage.sys import netlink

        assert record.addresses is not None
        netlink.connect_container(
            netns=netns,
            bridge=record.bridge,
            host_ifname=endpoint.host_ifname,
            ifname=endpoint.ifname,
            address=IPv4Interface(f"{endpoint.ip}/{record.addresses.subnet.prefixlen}"),
            gateway=None if record.internal else record.addresses.gateway,
            mac=endpoint.mac,
            hairpin=bool(endpoint.ports),
        )
        self._add_dns(record, endpoint)

    def release(self, container_id: str) -> None:
        """Everything ``prepare`` and ``wire`` gave a container; nothing when it has none."""

        with self._lock:
            had_ports = False
            for record in self._networks.values():
                endpoint = record.endpoints.get(container_id)
                if endpoint is None:
                    continue
                had_ports = had_ports or bool(endpoint.ports)
                self._drop_endpoint(record, container_id)
                records.save(self.root, record)
                _delete_later(endpoint.host_ifname)
            self._ports.release(container_id)
            if had_ports:
                self._sync_firewall()

    def connect(
        self,
        ref: str,
        spec: ContainerNetworking,
        config: Mapping[str, Any],
        netns: str | None,
    ) -> NetworkRecord:
        """Attach a container to one more network: at once when it runs (``netns``),
        else only checked (its next start attaches it). Returns the network."""
        with self._lock:
            record = self.get(ref)
            if record.driver != BRIDGE:
                raise InvalidArgument(
                    f"container cannot be disconnected from host network or connected to "
                    f"{record.name} network"
                )
            if spec.id in record.endpoints:
                raise Conflict(
                    f"endpoint with name {spec.name} already exists in network {record.name}"
                )
            if netns is None:
                return record
            taken = {e.ifname for _, e in self.endpoints_of(spec.id)}
            index = next(i for i in range(len(taken) + 1) if f"eth{i}" not in taken)
            endpoint = self._new_endpoint(record, spec, index, config, [])
            record.endpoints[spec.id] = endpoint
            try:
                self._wire_one(record, endpoint, netns)
                records.save(self.root, record)
            except BaseException:
                self._drop_endpoint(record, spec.id)
                from moorage.sys import netlink

                netlink.disconnect_container(endpoint.host_ifname)
                raise
            return record

    def disconnect(self, ref: str, container_id: str) -> NetworkRecord:
        """Detach a running container from one network (its veth goes at once)."""
        from moorage.sys import netlink

        with self._lock:
            record = self.get(ref)
            endpoint = record.endpoints.get(container_id)
            if endpoint is None:
                return record
            self._drop_endpoint(record, container_id)
            records.save(self.root, record)
            netlink.disconnect_container(endpoint.host_ifname)
            if endpoint.ports:
                self._ports.release(container_id)
                self._sync_firewall()
            return record

    def prune(self, labels: Iterable[str] = (), until: float | None = None) -> list[str]:
        """Remove the user-defined networks no container is attached to; their names."""
        removed = []
        with self._lock:
            for record in list(self._networks.values()):
                if record.builtin or record.endpoints:
                    continue
                if not _labels_match(record.labels, labels):
                    continue
                if until is not None and _timestamp(record.created) >= until:
                    continue
                self.remove(record.id)
                removed.append(record.name)
        return removed

    def endpoints_of(self, container_id: str) -> list[tuple[NetworkRecord, Endpoint]]:
        with self._lock:
            return [
                (r, r.endpoints[container_id])
                for r in self._networks.values()
                if container_id in r.endpoints
            ]

    # --- internals ----------------------------------------------------------------

    def _ensure_builtins(self) -> None:
        builtin = {r.name: r for r in self._networks.values() if r.builtin}
        if "bridge" not in builtin:
            addresses = self._new_addresses_for_bip(self._bip)
            self._add_builtin("bridge", BRIDGE, bridge=self.bridge_name, addresses=addresses)
        for name, driver in (("host", HOST), ("none", NULL)):
            if name not in builtin:
                self._add_builtin(name, driver)

    def _add_builtin(self, name: str, driver: str, **kwargs: Any) -> None:
        record = NetworkRecord(
            id=secrets.token_hex(32),
            name=name,
            driver=driver,
            created=_now(),
            builtin=True,
            **kwargs,
        )
        records.save(self.root, record)
        self._networks[record.id] = record

    def _new_addresses_for_bip(self, bip: str | None) -> ipam.Addresses:
        if bip is None:
            return self._new_addresses(None, None)
        try:
            interface = IPv4Interface(bip)
        except ValueError:
            raise InvalidArgument(f'invalid --bip "{bip}": want an address and prefix') from None
        return self._new_addresses(str(interface.network), str(interface.ip))

    def _new_addresses(self, subnet: str | None, gateway: str | None) -> ipam.Addresses:
        from moorage.sys import netlink

        in_use = [r.addresses.subnet for r in self._bridges() if r.addresses is not None]
        if subnet is None:
            network = ipam.choose_subnet(in_use, netlink.host_routes())
        else:
            network = ipam.parse_subnet(subnet)
        chosen_gateway = ipam.check_network(
            network, None if gateway is None else _address(gateway, "gateway"), in_use
        )
        return ipam.Addresses(network, chosen_gateway)

    def _bridges(self) -> list[NetworkRecord]:
        return [r for r in self._networks.values() if r.driver == BRIDGE]

    def _bring_up(self, record: NetworkRecord) -> None:
        from moorage.sys import netlink

        assert record.addresses is not None
        gateway = IPv4Interface(f"{record.addresses.gateway}/{record.addresses.subnet.prefixlen}")
        netlink.ensure_bridge(record.bridge, gateway)
        # localhost -> published port: the DNATed packet leaves with a 127.x source.
        netlink.set_sysctl(f"net.ipv4.conf.{record.bridge}.route_localnet", "1")
        if record.dns:
            self._start_dns(record)

    def _tear_down(self, record: NetworkRecord) -> None:
        from moorage.sys import netlink

        self._stop_dns(record)
        netlink.delete_link(record.bridge)

    def _networks_of(self, spec: ContainerNetworking) -> list[NetworkRecord]:
        first = spec.mode if spec.mode not in ("", "default") else "bridge"
        names = [first] + [n for n in spec.endpoints_config if n != first]
        networks = []
        for name in names:
            if name in spec.detached:
                continue
            record = self.get(name)
            if record.driver != BRIDGE:
                raise InvalidArgument(
                    f"container cannot be connected to both {first} and {record.name} networks"
                )
            networks.append(record)
        return networks

    def _new_endpoint(
        self,
        record: NetworkRecord,
        spec: ContainerNetworking,
        index: int,
        config: Mapping[str, Any],
        reserved: list[Reserved],
    ) -> Endpoint:
        from moorage.sys import netlink

        assert record.addresses is not None
        ipam_config = config.get("IPAMConfig") or {}
        wanted = ipam_config.get("IPv4Address") or None
        ip = record.addresses.allocate(spec.id, None if wanted is None else _address(wanted, "ip"))
        aliases = tuple(str(a) for a in config.get("Aliases") or ()) if record.dns else ()
        return Endpoint(
            container_id=spec.id,
            container_name=spec.name.lstrip("/"),
            endpoint_id=secrets.token_hex(32),
            ifname=f"eth{index}",
            host_ifname=netlink.random_ifname("mv"),
            ip=ip,
            mac=ipam.mac_for(ip),
            aliases=aliases,
            ports=tuple(reserved) if index == 0 else (),
        )

    def _drop_endpoint(self, record: NetworkRecord, container_id: str) -> None:
        record.endpoints.pop(container_id, None)
        if record.addresses is not None:
            record.addresses.release(container_id)
        dns = self._dns.get(record.id)
        if dns is not None:
            dns[1].remove(container_id)

    def _restore_endpoint(self, record: NetworkRecord, endpoint: Endpoint) -> None:
        """After a daemon restart: a running container's names and ports again."""
        self._add_dns(record, endpoint)
        if endpoint.ports:
            try:
                self._ports.reserve_all(
                    endpoint.container_id, [p.as_binding() for p in endpoint.ports]
                )
            except MoorageError as exc:
                log.warning("container %s: ports: %s", endpoint.container_id[:12], exc)

    def _add_dns(self, record: NetworkRecord, endpoint: Endpoint) -> None:
        dns = self._dns.get(record.id)
        if dns is not None:
            dns[1].add(endpoint.dns_names(), endpoint.ip, endpoint.container_id)

    def _start_dns(self, record: NetworkRecord) -> None:
        if record.id in self._dns or record.addresses is None:
            return
        table = Records()
        server = DnsServer(
            table,
            upstreams=[] if record.internal else (list(self.dns) or host_nameservers()),
            forward=not record.internal,
        )
        loop = self._dns_loop()
        future = asyncio.run_coroutine_threadsafe(
            # Bound to the bridge: only its containers ask (no open resolver on the host).
            server.start(str(record.addresses.gateway), 53, device=record.bridge),
            loop,
        )
        future.result(10)
        self._dns[record.id] = (server, table)

    def _stop_dns(self, record: NetworkRecord) -> None:
        dns = self._dns.pop(record.id, None)
        if dns is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(dns[0].close(), self._loop).result(5)

    def _dns_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="network-dns", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop

    def _sync_firewall(self) -> None:
        from moorage.sys import nftables

        networks = [
            nftables.BridgeNetwork(
                bridge=r.bridge,
                subnet=r.addresses.subnet,
                internal=r.internal,
                route_localnet=True,
            )
            for r in self._bridges()
            if r.addresses is not None
        ]
        forwards = [
            nftables.PortForward(
                proto=p.proto,
                host_ip=None if p.host_ip == IPv4Address("0.0.0.0") else p.host_ip,
                host_port=p.host_port,
                container_ip=e.ip,
                container_port=p.container_port,
                bridge=r.bridge,
            )
            for r in self._bridges()
            for e in r.endpoints.values()
            for p in e.ports
        ]
        nftables.apply(self.table, networks, forwards)


def _delete_later(host_ifname: str) -> None:
    """Delete a veth in the background: it normally goes with its container's network
    namespace, which the kernel frees a little after the container ended; deleting it
    costs ~20 ms that an exit (and ``run --rm``) need not wait for. Its address may be
    handed out meanwhile: the old end is in a namespace where nothing runs."""
    from moorage.sys import netlink

    def delete() -> None:
        try:
            netlink.disconnect_container(host_ifname)
        except MoorageError as exc:
            log.warning("veth %s: %s", host_ifname, exc)

    threading.Thread(target=delete, name="veth-delete", daemon=True).start()


def _check_name(name: str) -> None:
    if not name or not set(name) <= _NAME_CHARS or not name[0].isalnum():
        raise InvalidArgument(
            f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
        )


def _labels_match(labels: Mapping[str, str], wanted: Iterable[str]) -> bool:
    """Docker's ``label`` filter: ``key`` present, or ``key=value``; all must hold."""
    for spec in wanted:
        key, sep, value = spec.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _timestamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _address(text: str, what: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f'invalid {what} address "{text}"') from None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
