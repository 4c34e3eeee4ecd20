"""moorage.sys.nftables on the real kernel, proved with real traffic.

The machine's own network is never touched: a lab of throwaway named namespaces
(``ip netns add mtst...``) plays every part. ``host`` is the stand-in Docker host: it
has the bridges, the table and an uplink to ``outside``, a stand-in for another machine
on the host's network. Containers sit on three networks::

    outside 10.220.0.2 --- 10.220.0.1 host
                                       |- mtstbra 10.221.0.1/24: server .2, neighbour .3
                                       |- mtstbrb 10.222.0.1/24: other .2
                                       `- mtstbri 10.223.0.1/24 (internal): hermit .2

The lab is built once per module with moorage.sys.netlink; each test applies the
table it needs (an apply replaces the whole table). Connections that must be dropped
are given half a second: a working path answers in well under a millisecond here.
Deleting the namespaces on teardown takes the links and the table along.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from moorage.errors import FailedPrecondition
from moorage.sys import netlink, nftables
from moorage.sys.nftables import BridgeNetwork, PortForward
from netns import in_netns

pytestmark = pytest.mark.root

T = TypeVar("T")
DROPPED_AFTER = 0.5
SERVER = ipaddress.IPv4Address("10.221.0.2")
NET_A = BridgeNetwork("mtstbra", ipaddress.IPv4Network("10.221.0.0/24"), route_localnet=True)
NET_B = BridgeNetwork("mtstbrb", ipaddress.IPv4Network("10.222.0.0/24"))
NET_I = BridgeNetwork("mtstbri", ipaddress.IPv4Network("10.223.0.0/24"), internal=True)
NETWORKS = [NET_A, NET_B, NET_I]
FORWARDS = [
    PortForward("tcp", None, 8080, SERVER, 8000, "mtstbra"),
    PortForward("tcp", ipaddress.IPv4Address("10.220.0.1"), 8081, SERVER, 8000, "mtstbra"),
    PortForward("udp", None, 5353, SERVER, 5300, "mtstbra"),
]


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@dataclass(frozen=True)
class Lab:
    host: str
    outside: str
    server: str
    neighbour: str
    other: str
    hermit: str
    table: str

    def apply(self, networks: list[BridgeNetwork], forwards: list[PortForward]) -> None:
        in_netns(self.host, nftables.apply, self.table, networks, forwards)

    def ruleset(self) -> str:
        return run("ip", "netns", "exec", self.host, "nft", "list", "ruleset")


def _make_lab(tag: str, made: list[str]) -> Lab:
    def netns(role: str) -> str:
        name = f"mtst{tag}-{role}"
        run("ip", "netns", "add", name)
        made.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    host, outside = netns("host"), netns("out")
    run("ip", "-n", host, "link", "add", "mtstup0", "type", "veth", "peer", "name", "eth0")
    run("ip", "-n", host, "link", "set", "eth0", "netns", outside)
    run("ip", "-n", host, "addr", "add", "10.220.0.1/24", "dev", "mtstup0")
    run("ip", "-n", host, "link", "set", "mtstup0", "up")
    run("ip", "-n", outside, "addr", "add", "10.220.0.2/24", "dev", "eth0")
    run("ip", "-n", outside, "link", "set", "eth0", "up")
    run("ip", "-n", outside, "route", "add", "default", "via", "10.220.0.1")
    in_netns(host, netlink.set_sysctl, "net.ipv4.ip_forward", "1")
    for network in NETWORKS:
        gateway = ipaddress.IPv4Interface(f"{network.subnet[1]}/{network.subnet.prefixlen}")
        in_netns(host, netlink.ensure_bridge, network.bridge, gateway)
    in_netns(host, netlink.set_sysctl, "net.ipv4.conf.mtstbra.route_localnet", "1")

    def container(role: str, network: BridgeNetwork, last_octet: int) -> str:
        name = netns(role)
        in_netns(
            host,
            netlink.connect_container,
            netns=f"/run/netns/{name}",
            bridge=network.bridge,
            host_ifname=f"mtstv{role}",
            ifname="eth0",
            address=ipaddress.IPv4Interface(f"{network.subnet[last_octet]}/24"),
            gateway=network.subnet[1],
            mac=netlink.random_mac(),
            # With br_netfilter (built in here), DNAT back to the sender is bridged,
            # not routed: out of the port it came in by, which takes hairpin mode.
            hairpin=True,
        )
        return name

    return Lab(
        host=host,
        outside=outside,
        server=container("srv", NET_A, 2),
        neighbour=container("nbr", NET_A, 3),
        other=container("oth", NET_B, 2),
        hermit=container("her", NET_I, 2),
        table=f"mtst{tag}",
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    made: list[str] = []
    try:
        yield _make_lab(secrets.token_hex(3), made)
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def published(lab: Lab) -> Lab:
    """The lab with the standard table applied."""
    lab.apply(NETWORKS, FORWARDS)
    return lab


# -- traffic helpers -------------------------------------------------------------------


def socket_in(name: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """An IPv4 socket that lives in namespace ``name``."""
    return in_netns(name, socket.socket, socket.AF_INET, kind)


def tcp_peer(client_ns: str, address: str, port: int, server_ns: str, server_port: int) -> str:
    """Connect from ``client_ns`` to ``address:port``, accepted by a listener on
    ``server_port`` in ``server_ns``; return the client address the server saw."""
    with socket_in(server_ns) as server, socket_in(client_ns) as client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", server_port))
        server.listen(1)
        client.settimeout(5)
        client.connect((address, port))
        server.settimeout(5)
        conn, peer = server.accept()
        with conn:
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        return str(peer[0])


def tcp_dropped(client_ns: str, address: str, port: int, server_ns: str, server_port: int) -> bool:
    """True when a connection from ``client_ns`` to ``address:port`` gets no answer at
    all, though a listener on ``server_port`` in ``server_ns`` is waiting for it."""
    with socket_in(server_ns) as server, socket_in(client_ns) as client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", server_port))
        server.listen(1)
        client.settimeout(DROPPED_AFTER)
        try:
            client.connect((address, port))
        except TimeoutError:
            return True
        return False


# -- published ports -------------------------------------------------------------------


def test_another_host_reaches_a_published_port(published: Lab) -> None:
    peer = tcp_peer(published.outside, "10.220.0.1", 8080, published.server, 8000)

    assert peer == "10.220.0.2"  # the client's own address: no source NAT inbound


def test_a_published_udp_port_carries_datagrams(published: Lab) -> None:
    with socket_in(published.server, socket.SOCK_DGRAM) as server:
        server.bind(("0.0.0.0", 5300))
        server.settimeout(5)
        with socket_in(published.outside, socket.SOCK_DGRAM) as client:
            client.sendto(b"query", ("10.220.0.1", 5353))
            data, peer = server.recvfrom(64)

    assert (data, peer[0]) == (b"query", "10.220.0.2")


def test_the_host_reaches_a_published_port_on_localhost(published: Lab) -> None:
    peer = tcp_peer(published.host, "127.0.0.1", 8080, published.server, 8000)

    assert peer == "10.221.0.1"  # masqueraded to the bridge's address


def test_the_host_reaches_a_published_port_on_its_own_address(published: Lab) -> None:
    assert tcp_peer(published.host, "10.220.0.1", 8080, published.server, 8000) == "10.220.0.1"


def test_a_container_reaches_its_own_published_port(published: Lab) -> None:
    peer = tcp_peer(published.server, "10.220.0.1", 8080, published.server, 8000)

    assert peer == "10.221.0.1"


def test_a_neighbour_reaches_a_published_port_through_the_gateway(published: Lab) -> None:
    peer = tcp_peer(published.neighbour, "10.221.0.1", 8080, published.server, 8000)

    assert peer == "10.221.0.1"  # hairpin: the server answers through the host


def test_a_container_of_another_network_reaches_a_published_port(published: Lab) -> None:
    peer = tcp_peer(published.other, "10.220.0.1", 8080, published.server, 8000)

    assert peer == "10.221.0.1"  # masqueraded as it left its own network


def test_a_port_published_on_one_address_answers_only_there(published: Lab) -> None:
    assert tcp_peer(published.outside, "10.220.0.1", 8081, published.server, 8000) == "10.220.0.2"
    with pytest.raises(ConnectionRefusedError):  # the host's own stack: nothing listens
        tcp_peer(published.neighbour, "10.221.0.1", 8081, published.server, 8000)


# -- isolation and NAT -----------------------------------------------------------------


def test_another_host_cannot_reach_a_container_by_its_address(published: Lab) -> None:
    assert tcp_dropped(published.outside, str(SERVER), 8000, published.server, 8000)


def test_another_network_cannot_reach_a_container_by_its_address(published: Lab) -> None:
    assert tcp_dropped(published.other, str(SERVER), 8000, published.server, 8000)


def test_containers_of_one_network_reach_each_other(published: Lab) -> None:
    assert tcp_peer(published.neighbour, str(SERVER), 8000, published.server, 8000) == "10.221.0.3"


def test_the_host_reaches_a_container_by_its_address(published: Lab) -> None:
    assert tcp_peer(published.host, str(SERVER), 8000, published.server, 8000) == "10.221.0.1"


def test_outbound_traffic_is_masqueraded(published: Lab) -> None:
    assert (
        tcp_peer(published.neighbour, "10.220.0.2", 9000, published.outside, 9000) == "10.220.0.1"
    )


def test_an_internal_network_has_no_way_out(published: Lab) -> None:
    assert tcp_dropped(published.hermit, "10.220.0.2", 9000, published.outside, 9000)
    assert tcp_dropped(published.hermit, str(SERVER), 8000, published.server, 8000)


def test_an_internal_network_has_no_way_in(published: Lab) -> None:
    assert tcp_dropped(published.outside, "10.223.0.2", 8000, published.hermit, 8000)
    assert tcp_dropped(published.neighbour, "10.223.0.2", 8000, published.hermit, 8000)


def test_an_internal_network_still_reaches_its_gateway(published: Lab) -> None:
    assert tcp_peer(published.hermit, "10.223.0.1", 9000, published.host, 9000) == "10.223.0.2"


def test_a_port_on_an_internal_network_is_not_published(lab: Lab) -> None:
    hidden = PortForward("tcp", None, 8090, ipaddress.IPv4Address("10.223.0.2"), 8000, "mtstbri")

    lab.apply(NETWORKS, [*FORWARDS, hidden])

    with pytest.raises(ConnectionRefusedError):  # the host's own stack answers
        tcp_peer(lab.outside, "10.220.0.1", 8090, lab.hermit, 8000)


def test_a_container_cannot_reach_the_hosts_localhost_services(published: Lab) -> None:
    # A container owns its namespace, so it can route 127.0.0.0/8 to its gateway and
    # send to 127.0.0.2 (127.0.0.1 keeps a local route of its own); with route_localnet
    # on the bridge, the host would take those packets in.
    attacker = published.neighbour
    sysctl = "net.ipv4.conf.eth0.route_localnet"
    local_route = ["127.0.0.0/8", "dev", "lo", "table", "local"]
    run("ip", "-n", attacker, "route", "del", "local", *local_route)
    run("ip", "-n", attacker, "route", "add", "127.0.0.0/8", "via", "10.221.0.1")
    run("ip", "netns", "exec", attacker, "sysctl", "-qw", f"{sysctl}=1")
    try:
        assert tcp_dropped(attacker, "127.0.0.2", 9000, published.host, 9000)
    finally:
        run("ip", "netns", "exec", attacker, "sysctl", "-qw", f"{sysctl}=0")
        run("ip", "-n", attacker, "route", "del", "127.0.0.0/8", "via", "10.221.0.1")
        run("ip", "-n", attacker, "route", "add", "local", *local_route)


# -- the table as a whole --------------------------------------------------------------


def test_apply_replaces_the_whole_table(published: Lab) -> None:
    only_udp = [f for f in FORWARDS if f.proto == "udp"]

    published.apply(NETWORKS, only_udp)

    ruleset = published.ruleset()
    assert "dport 8080" not in ruleset
    assert "udp dport 5353" in ruleset
    with pytest.raises(ConnectionRefusedError):  # the host's own stack answers now
        tcp_peer(published.outside, "10.220.0.1", 8080, published.server, 8000)


def test_apply_with_nothing_leaves_no_table(published: Lab) -> None:
    published.apply([], [])

    assert published.table not in in_netns(published.host, nftables.table_names)


def test_apply_twice_gives_the_same_table(published: Lab) -> None:
    before = published.ruleset()

    published.apply(NETWORKS, FORWARDS)

    assert published.ruleset() == before


@pytest.mark.parametrize(
    "bad_tail",
    [
        "add rule ip {table} forward dnat to 10.0.0.1\n",  # refused by the kernel
        "add rule ip {table} forward this is not nft\n",  # refused by nft's parser
    ],
)
def test_a_failed_apply_leaves_the_previous_table(
    published: Lab, monkeypatch: pytest.MonkeyPatch, bad_tail: str
) -> None:
    before = published.ruleset()
    real_render = nftables.render

    def render_with_a_bad_rule(table: str, *args: Any) -> str:
        return real_render(table, *args) + bad_tail.format(table=table)

    monkeypatch.setattr(nftables, "render", render_with_a_bad_rule)

    with pytest.raises(
        FailedPrecondition, match=f"cannot apply nftables table {published.table}: .*Error"
    ):
        published.apply([NET_A], [])

    assert published.ruleset() == before
    assert tcp_peer(published.outside, "10.220.0.1", 8080, published.server, 8000) == "10.220.0.2"


def test_other_tables_are_left_alone(published: Lab) -> None:
    script = "table ip mtstforeign {\n\tchain c {\n\t\tcounter\n\t}\n}\n"
    subprocess.run(
        ["ip", "netns", "exec", published.host, "nft", "-f", "-"],
        input=script,
        text=True,
        check=True,
    )

    try:
        published.apply(NETWORKS, [])
        in_netns(published.host, nftables.remove, published.table)

        assert in_netns(published.host, nftables.table_names) == ["mtstforeign"]
        assert "counter" in published.ruleset()
    finally:
        run("ip", "netns", "exec", published.host, "nft", "delete", "table", "ip", "mtstforeign")


def test_remove_reports_whether_the_table_was_there(published: Lab) -> None:
    assert published.table in in_netns(published.host, nftables.table_names)

    assert in_netns(published.host, nftables.remove, published.table) is True
    assert in_netns(published.host, nftables.remove, published.table) is False
    assert published.table not in in_netns(published.host, nftables.table_names)
