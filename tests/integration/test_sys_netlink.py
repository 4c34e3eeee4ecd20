"""moorage.sys.netlink on the real kernel: bridges, container veth pairs, routes, sysctls.

Nothing here touches the machine's own network: each test makes throwaway named
namespaces (``ip netns add mtst...``), one standing in for the host and others for
containers, and runs the module's functions in a thread that entered the stand-in host
namespace (the module's "host" is the calling thread's namespace). Deleting the
namespaces on teardown takes every link made in them along, even when a test fails.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moorage.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from moorage.sys import netlink
from netns import in_netns

pytestmark = pytest.mark.root

T = TypeVar("T")
GATEWAY = ipaddress.IPv4Interface("10.211.0.1/24")
BRIDGE = "mtstbr0"


def ip(*args: str, netns: str | None = None) -> Any:
    """Run ``ip -j``, in ``netns`` when given; return its parsed output."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    out = subprocess.run([*prefix, "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout) if out.stdout.strip() else []


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Make named namespaces ``mtst<random>-<role>``; all are deleted on teardown."""
    made: list[str] = []
    tag = secrets.token_hex(3)

    def make(role: str) -> str:
        name = f"mtst{tag}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def host(make_netns: Callable[[str], str]) -> str:
    """A stand-in host namespace with the bridge up."""
    name = make_netns("host")
    in_netns(name, netlink.ensure_bridge, BRIDGE, GATEWAY)
    return name


def connect(host: str, container: str, **overrides: Any) -> str:
    """Connect ``container`` to the bridge in ``host``; return the host end's name."""
    spec: dict[str, Any] = {
        "netns": f"/run/netns/{container}",
        "bridge": BRIDGE,
        "host_ifname": in_netns(host, netlink.random_ifname, "mtstv"),
        "ifname": "eth0",
        "address": ipaddress.IPv4Interface("10.211.0.2/24"),
        "gateway": GATEWAY.ip,
        "mac": "02:42:0a:d3:00:02",
    }
    spec.update(overrides)
    in_netns(host, netlink.connect_container, **spec)
    return str(spec["host_ifname"])


def add_veth(netns: str, name: str) -> None:
    """A veth pair ``name`` and ``name``p in ``netns`` (this kernel may lack dummy)."""
    subprocess.run(
        ["ip", "-n", netns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
        check=True,
    )


def socket_in(name: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """An IPv4 socket that lives in namespace ``name``."""
    return in_netns(name, socket.socket, socket.AF_INET, kind)


def tcp_roundtrip(client_ns: str, server_ns: str, server_ip: str) -> str:
    """Connect from ``client_ns`` to a listener in ``server_ns``; return the peer address
    the server saw."""
    with socket_in(server_ns) as server, socket_in(client_ns) as client:
        server.bind((server_ip, 0))
        server.listen(1)
        client.settimeout(5)
        client.connect(server.getsockname())
        conn, peer = server.accept()
        with conn:
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        return str(peer[0])


# -- bridges ---------------------------------------------------------------------------


def test_ensure_bridge_makes_an_up_bridge_with_the_gateway(host: str) -> None:
    (link,) = ip("-d", "addr", "show", BRIDGE, netns=host)

    assert link["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in link["flags"]
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [
        ("10.211.0.1", 24)
    ]
    assert int(link["address"][:2], 16) & 0b11 == 0b10  # a fixed, locally administered MAC


def bridge_summary(netns: str) -> tuple[int, str, int, list[tuple[str, int]]]:
    (link,) = ip("addr", "show", BRIDGE, netns=netns)
    inet = [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"]
    return link["ifindex"], link["address"], link["mtu"], inet


def test_ensure_bridge_twice_changes_nothing(host: str) -> None:
    before = bridge_summary(host)

    in_netns(host, netlink.ensure_bridge, BRIDGE, GATEWAY)

    assert bridge_summary(host) == before


def test_ensure_bridge_adds_a_missing_gateway_to_an_existing_bridge(
    make_netns: Callable[[str], str],
) -> None:
    name = make_netns("host")
    in_netns(name, netlink.ensure_bridge, BRIDGE, None)

    in_netns(name, netlink.ensure_bridge, BRIDGE, GATEWAY)

    (link,) = ip("addr", "show", BRIDGE, netns=name)
    assert ("10.211.0.1", 24) in [(a["local"], a["prefixlen"]) for a in link["addr_info"]]


def test_ensure_bridge_refuses_a_link_that_is_not_a_bridge(host: str) -> None:
    add_veth(host, "mtstd0")

    with pytest.raises(Conflict, match="mtstd0"):
        in_netns(host, netlink.ensure_bridge, "mtstd0", None)


def test_ensure_bridge_refuses_a_bad_name() -> None:
    with pytest.raises(InvalidArgument, match="bridge name"):
        netlink.ensure_bridge("a name with spaces", None)


# -- containers ------------------------------------------------------------------------


def test_connect_container_makes_a_configured_interface(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")

    host_end = connect(host, container, mtu=1400)

    (eth0,) = ip("addr", "show", "eth0", netns=container)
    assert eth0["address"] == "02:42:0a:d3:00:02"
    assert eth0["mtu"] == 1400
    assert "UP" in eth0["flags"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [
        ("10.211.0.2", 24)
    ]
    (port,) = ip("link", "show", host_end, netns=host)
    assert port["master"] == BRIDGE
    assert "UP" in port["flags"]


def test_connect_container_adds_a_default_route_via_the_gateway(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")

    connect(host, container)

    defaults = [r for r in ip("route", "show", "default", netns=container)]
    assert [(r["gateway"], r["dev"]) for r in defaults] == [("10.211.0.1", "eth0")]


def test_connected_container_reaches_the_gateway(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")
    connect(host, container)

    peer = tcp_roundtrip(container, host, "10.211.0.1")

    assert peer == "10.211.0.2"


def test_two_containers_on_a_bridge_reach_each_other(
    host: str, make_netns: Callable[[str], str]
) -> None:
    first, second = make_netns("ctr1"), make_netns("ctr2")
    connect(host, first)
    connect(
        host,
        second,
        address=ipaddress.IPv4Interface("10.211.0.3/24"),
        mac="02:42:0a:d3:00:03",
    )

    assert tcp_roundtrip(second, first, "10.211.0.2") == "10.211.0.3"


def test_a_second_network_keeps_the_first_default_route(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")
    connect(host, container)
    in_netns(host, netlink.ensure_bridge, "mtstbr1", ipaddress.IPv4Interface("10.212.0.1/24"))

    connect(
        host,
        container,
        bridge="mtstbr1",
        ifname="eth1",
        address=ipaddress.IPv4Interface("10.212.0.2/24"),
        gateway=ipaddress.IPv4Address("10.212.0.1"),
        mac="02:42:0a:d4:00:02",
    )

    defaults = ip("route", "show", "default", netns=container)
    assert [(r["gateway"], r["dev"]) for r in defaults] == [("10.211.0.1", "eth0")]
    assert tcp_roundtrip(container, host, "10.212.0.1") == "10.212.0.2"


def test_connect_without_gateway_adds_no_default_route(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")

    connect(host, container, gateway=None)

    assert ip("route", "show", "default", netns=container) == []


def test_connect_with_hairpin_sets_the_bridge_port_mode(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")

    host_end = connect(host, container, hairpin=True)

    (port,) = ip("-d", "link", "show", host_end, netns=host)
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True


def test_disconnect_container_removes_both_ends(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")
    host_end = connect(host, container)

    assert in_netns(host, netlink.disconnect_container, host_end) is True

    assert not in_netns(host, netlink.link_exists, host_end)
    assert [link["ifname"] for link in ip("link", "show", netns=container)] == ["lo"]


def test_disconnect_container_twice_returns_false(
    host: str, make_netns: Callable[[str], str]
) -> None:
    host_end = connect(host, make_netns("ctr"))
    in_netns(host, netlink.disconnect_container, host_end)

    assert in_netns(host, netlink.disconnect_container, host_end) is False


def test_connect_to_a_missing_bridge_leaves_nothing(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")

    with pytest.raises(NotFound, match="mtstnobr"):
        connect(host, container, bridge="mtstnobr", host_ifname="mtstvx")

    assert not in_netns(host, netlink.link_exists, "mtstvx")
    assert [link["ifname"] for link in ip("link", "show", netns=container)] == ["lo"]


def test_connect_with_a_taken_container_name_leaves_nothing(
    host: str, make_netns: Callable[[str], str]
) -> None:
    container = make_netns("ctr")
    add_veth(container, "eth0")

    with pytest.raises(AlreadyExists, match=f"eth0 in network namespace /run/netns/{container}"):
        connect(host, container, host_ifname="mtstvx")

    assert not in_netns(host, netlink.link_exists, "mtstvx")


def test_a_failure_after_the_pair_exists_deletes_it(
    host: str, make_netns: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = make_netns("ctr")

    def broken(*args: object) -> None:
        raise NotFound("no such container interface: eth0")

    monkeypatch.setattr(netlink, "_configure_peer", broken)

    with pytest.raises(NotFound):
        connect(host, container, host_ifname="mtstvx")

    assert not in_netns(host, netlink.link_exists, "mtstvx")
    assert [link["ifname"] for link in ip("link", "show", netns=container)] == ["lo"]


def test_connect_to_a_missing_netns_is_not_found(host: str) -> None:
    with pytest.raises(NotFound, match="/run/netns/mtstnone"):
        in_netns(
            host,
            netlink.connect_container,
            netns="/run/netns/mtstnone",
            bridge=BRIDGE,
            host_ifname="mtstvx",
            ifname="eth0",
            address=ipaddress.IPv4Interface("10.211.0.2/24"),
            gateway=None,
            mac="02:42:0a:d3:00:02",
        )


def test_connect_to_a_file_that_is_not_a_netns_is_invalid(host: str, tmp_path: Path) -> None:
    path = str(tmp_path / "not-a-netns")
    (tmp_path / "not-a-netns").touch()

    with pytest.raises(InvalidArgument, match="not a network namespace"):
        connect(host, "unused", netns=path, host_ifname="mtstvx")

    assert not in_netns(host, netlink.link_exists, "mtstvx")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mac": "03:00:00:00:00:01"}, "mac address"),
        ({"mac": "not-a-mac"}, "mac address"),
        ({"ifname": "a/b"}, "container interface name"),
        ({"host_ifname": "x" * 16}, "host interface name"),
        ({"gateway": ipaddress.IPv4Address("10.9.9.9")}, "gateway 10.9.9.9"),
        ({"mtu": 10}, "mtu"),
    ],
)
def test_connect_refuses_bad_input(override: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {
        "netns": "/run/netns/unused",
        "bridge": BRIDGE,
        "host_ifname": "mtstvx",
        "ifname": "eth0",
        "address": ipaddress.IPv4Interface("10.211.0.2/24"),
        "gateway": GATEWAY.ip,
        "mac": "02:42:0a:d3:00:02",
    }
    spec.update(override)

    with pytest.raises(InvalidArgument, match=message):
        netlink.connect_container(**spec)


def test_concurrent_connects_from_many_threads(host: str, make_netns: Callable[[str], str]) -> None:
    containers = [make_netns(f"c{i}") for i in range(8)]

    def connect_one(i: int) -> str:
        return connect(
            host,
            containers[i],
            address=ipaddress.IPv4Interface(f"10.211.0.{10 + i}/24"),
            mac=f"02:42:0a:d3:00:{10 + i:02x}",
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        ends = list(pool.map(connect_one, range(8)))

    assert len(set(ends)) == 8
    assert {link["master"] for name in ends for link in ip("link", "show", name, netns=host)} == {
        BRIDGE
    }
    for i, container in enumerate(containers):
        assert tcp_roundtrip(container, host, "10.211.0.1") == f"10.211.0.{10 + i}"


# -- links, routes, sysctls ------------------------------------------------------------


def test_link_names_lists_by_prefix(host: str) -> None:
    add_veth(host, "mtstd0")

    assert in_netns(host, netlink.link_names, "mtst") == ["mtstbr0", "mtstd0", "mtstd0p"]
    assert "lo" in in_netns(host, netlink.link_names)


def test_bridge_ports_lists_the_host_ends(host: str, make_netns: Callable[[str], str]) -> None:
    first = connect(host, make_netns("ctr1"))
    second = connect(
        host,
        make_netns("ctr2"),
        address=ipaddress.IPv4Interface("10.211.0.3/24"),
        mac="02:42:0a:d3:00:03",
    )
    add_veth(host, "mtstd0")

    assert in_netns(host, netlink.bridge_ports, BRIDGE) == sorted([first, second])
    assert in_netns(host, netlink.bridge_ports, "mtstnobr") == []


def test_delete_link_deletes_and_then_reports_absence(host: str) -> None:
    add_veth(host, "mtstd0")

    assert in_netns(host, netlink.delete_link, "mtstd0") is True
    assert in_netns(host, netlink.delete_link, "mtstd0") is False
    assert not in_netns(host, netlink.link_exists, "mtstd0p")


def test_random_ifname_is_short_prefixed_and_free(host: str) -> None:
    names = {in_netns(host, netlink.random_ifname, "mtstv") for _ in range(5)}

    assert len(names) == 5
    assert all(n.startswith("mtstv") and len(n) == 15 for n in names)
    assert not any(in_netns(host, netlink.link_exists, n) for n in names)


def test_random_ifname_refuses_a_prefix_without_room() -> None:
    with pytest.raises(InvalidArgument, match="prefix too long"):
        netlink.random_ifname("mtstverylongp")


def test_host_routes_lists_destinations_but_not_the_default(host: str) -> None:
    subprocess.run(["ip", "-n", host, "route", "add", "default", "dev", BRIDGE], check=True)
    in_netns(host, netlink.ensure_bridge, "mtstbr1", ipaddress.IPv4Interface("10.213.0.1/16"))

    assert in_netns(host, netlink.host_routes) == [
        ipaddress.IPv4Network("10.211.0.0/24"),
        ipaddress.IPv4Network("10.213.0.0/16"),
    ]
    assert in_netns(host, netlink.host_routes, exclude_links=[BRIDGE]) == [
        ipaddress.IPv4Network("10.213.0.0/16")
    ]


def test_set_sysctl_writes_the_namespace_value(host: str) -> None:
    host_forwarding = netlink.get_sysctl("net.ipv4.ip_forward")
    key = f"net.ipv4.conf.{BRIDGE}.route_localnet"

    in_netns(host, netlink.set_sysctl, key, "1")
    in_netns(host, netlink.set_sysctl, "net.ipv4.ip_forward", "1")

    assert in_netns(host, netlink.get_sysctl, key) == "1"
    assert in_netns(host, netlink.get_sysctl, "net.ipv4.ip_forward") == "1"
    assert netlink.get_sysctl("net.ipv4.ip_forward") == host_forwarding


def test_set_sysctl_of_a_missing_key_is_not_found(host: str) -> None:
    with pytest.raises(NotFound, match="net.ipv4.conf.mtstnone.route_localnet"):
        in_netns(host, netlink.set_sysctl, "net.ipv4.conf.mtstnone.route_localnet", "1")


def test_set_sysctl_of_a_bad_value_names_the_key(host: str) -> None:
    with pytest.raises(InvalidArgument, match="net.ipv4.ip_forward"):
        in_netns(host, netlink.set_sysctl, "net.ipv4.ip_forward", "nope")


def test_set_sysctl_refuses_a_path_that_escapes() -> None:
    with pytest.raises(InvalidArgument, match="sysctl key"):
        netlink.set_sysctl("net/../../etc/passwd", "1")
