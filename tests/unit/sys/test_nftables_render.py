"""moorage.sys.nftables.render: the desired state as an nft script, and its validation.

Pure text, no root: the kernel's side is in tests/integration/test_sys_nftables.py.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from moorage.errors import InvalidArgument
from moorage.sys.nftables import BridgeNetwork, PortForward, render

NET = BridgeNetwork("moor0", IPv4Network("172.18.0.0/16"))
WEB = PortForward("tcp", None, 8080, IPv4Address("172.18.0.2"), 80, "moor0")


def rules_of(script: str, chain: str) -> list[str]:
    """The lines of ``chain`` in ``script``, stripped."""
    lines = script.splitlines()
    start = lines.index(f"\tchain {chain} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_the_script_first_deletes_the_table_in_the_same_transaction() -> None:
    script = render("moorage", [NET], [WEB])

    assert script.startswith("table ip moorage {}\ndelete table ip moorage\ntable ip moorage {\n")
    assert script.endswith("}\n")


def test_nothing_to_do_leaves_no_table() -> None:
    assert render("moorage", [], []) == "table ip moorage {}\ndelete table ip moorage\n"


def test_the_table_name_is_the_callers() -> None:
    script = render("moortest-1a2b", [NET], [])

    assert "table ip moortest-1a2b {\n" in script
    assert "moorage" not in script


def test_a_published_port_is_dnated_for_every_local_address() -> None:
    script = render("moorage", [NET], [WEB])

    assert rules_of(script, "publish") == ["tcp dport 8080 dnat to 172.18.0.2:80"]
    assert rules_of(script, "prerouting") == [
        "type nat hook prerouting priority -100; policy accept;",
        "fib daddr type local jump publish",
    ]
    assert rules_of(script, "output") == [
        "type nat hook output priority -100; policy accept;",
        "fib daddr type local jump publish",
    ]


def test_a_port_on_one_host_address_matches_that_address() -> None:
    forward = PortForward(
        "udp", IPv4Address("127.0.0.1"), 5353, IPv4Address("172.18.0.3"), 53, "moor0"
    )

    script = render("moorage", [NET], [forward])

    assert rules_of(script, "publish") == [
        "ip daddr 127.0.0.1 udp dport 5353 dnat to 172.18.0.3:53"
    ]


def test_host_address_0_0_0_0_means_every_address() -> None:
    forward = PortForward(
        "tcp", IPv4Address("0.0.0.0"), 8080, IPv4Address("172.18.0.2"), 80, "moor0"
    )

    assert rules_of(render("moorage", [NET], [forward]), "publish") == [
        "tcp dport 8080 dnat to 172.18.0.2:80"
    ]


def test_a_network_is_masqueraded_out_and_in_hairpin() -> None:
    script = render("moorage", [NET], [])

    assert rules_of(script, "postrouting") == [
        "type nat hook postrouting priority 100; policy accept;",
        'ip saddr 172.18.0.0/16 oifname != "moor0" masquerade',
        'ip saddr 172.18.0.0/16 oifname "moor0" ct status dnat masquerade',
    ]


def test_route_localnet_masquerades_loopback_sources_into_the_bridge() -> None:
    network = BridgeNetwork("moor0", IPv4Network("172.18.0.0/16"), route_localnet=True)

    assert 'ip saddr 127.0.0.0/8 oifname "moor0" masquerade' in rules_of(
        render("moorage", [network], []), "postrouting"
    )


def test_forwarding_into_a_bridge_needs_dnat_or_an_established_connection() -> None:
    other = BridgeNetwork("moor1", IPv4Network("172.19.0.0/16"))

    assert rules_of(render("moorage", [NET, other], []), "forward") == [
        "type filter hook forward priority 0; policy accept;",
        "ct state established,related accept",
        "ct status dnat accept",
        'oifname "moor0" iifname != "moor0" drop',
        'oifname "moor1" iifname != "moor1" drop',
    ]


def test_an_internal_network_exchanges_nothing_with_other_interfaces() -> None:
    internal = BridgeNetwork("moori", IPv4Network("172.20.0.0/16"), internal=True)

    script = render("moorage", [NET, internal], [])

    forward = rules_of(script, "forward")
    assert forward[1:3] == [
        'iifname "moori" oifname != "moori" drop',
        'oifname "moori" iifname != "moori" drop',
    ]
    assert forward.index('oifname "moori" iifname != "moori" drop') < forward.index(
        "ct state established,related accept"
    )
    assert not any("172.20.0.0/16" in rule for rule in rules_of(script, "postrouting"))


def test_new_connections_to_loopback_arriving_on_a_bridge_are_dropped() -> None:
    other = BridgeNetwork("moor1", IPv4Network("172.19.0.0/16"))

    assert rules_of(render("moorage", [NET, other], []), "input") == [
        "type filter hook input priority 0; policy accept;",
        'iifname "moor0" ip daddr 127.0.0.0/8 ct state != { established, related } drop',
        'iifname "moor1" ip daddr 127.0.0.0/8 ct state != { established, related } drop',
    ]


def test_rules_follow_the_order_of_the_input() -> None:
    db = PortForward("tcp", None, 5432, IPv4Address("172.18.0.3"), 5432, "moor0")

    assert rules_of(render("moorage", [NET], [db, WEB]), "publish") == [
        "tcp dport 5432 dnat to 172.18.0.3:5432",
        "tcp dport 8080 dnat to 172.18.0.2:80",
    ]


def test_render_is_deterministic() -> None:
    assert render("moorage", [NET], [WEB]) == render("moorage", [NET], [WEB])


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["", "1abc", "a b", 'x"y', "a;b", "x" * 65, None])
def test_a_bad_table_name_is_invalid(table: Any) -> None:
    with pytest.raises(InvalidArgument, match="table name"):
        render(table, [NET], [])


@pytest.mark.parametrize("bridge", ["", "a b", 'br"0', "x" * 16, "a/b", ".."])
def test_a_bad_bridge_name_is_invalid(bridge: str) -> None:
    with pytest.raises(InvalidArgument, match="bridge name"):
        BridgeNetwork(bridge, IPv4Network("172.18.0.0/16"))


def test_a_subnet_that_is_not_ipv4_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="subnet of bridge moor0"):
        BridgeNetwork("moor0", "172.18.0.0/16")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"proto": "sctp"}, "protocol"),
        ({"host_port": 0}, "host port: 0"),
        ({"host_port": 65536}, "host port: 65536"),
        ({"host_port": True}, "host port"),
        ({"container_port": -1}, "container port: -1"),
        ({"host_ip": "127.0.0.1"}, "host address"),
        ({"container_ip": "172.18.0.2"}, "container address"),
        ({"bridge": "bad name"}, "bridge name"),
    ],
)
def test_a_bad_forward_is_invalid(change: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "proto": "tcp",
        "host_ip": None,
        "host_port": 8080,
        "container_ip": IPv4Address("172.18.0.2"),
        "container_port": 80,
        "bridge": "moor0",
    }
    fields.update(change)

    with pytest.raises(InvalidArgument, match=message):
        PortForward(**fields)


def test_a_forward_to_an_unknown_bridge_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="unknown bridge: moor9"):
        render(
            "moorage", [NET], [PortForward("tcp", None, 80, IPv4Address("172.18.0.2"), 80, "moor9")]
        )


def test_a_forward_outside_the_bridge_subnet_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="10.0.0.2, outside 172.18.0.0/16"):
        render(
            "moorage", [NET], [PortForward("tcp", None, 80, IPv4Address("10.0.0.2"), 80, "moor0")]
        )


def test_a_forward_on_an_internal_network_is_left_out() -> None:
    internal = BridgeNetwork("moori", IPv4Network("172.20.0.0/16"), internal=True)
    forward = PortForward("tcp", None, 80, IPv4Address("172.20.0.2"), 80, "moori")

    assert rules_of(render("moorage", [NET, internal], [forward, WEB]), "publish") == [
        "tcp dport 8080 dnat to 172.18.0.2:80"
    ]


@pytest.mark.parametrize(
    "second_host_ip",
    [None, IPv4Address("127.0.0.1")],
)
def test_a_port_published_twice_is_invalid(second_host_ip: IPv4Address | None) -> None:
    again = PortForward("tcp", second_host_ip, 8080, IPv4Address("172.18.0.3"), 80, "moor0")

    with pytest.raises(InvalidArgument, match="published twice"):
        render("moorage", [NET], [WEB, again])


def test_one_port_on_two_host_addresses_or_protocols_is_fine() -> None:
    forwards = [
        PortForward("tcp", IPv4Address("127.0.0.1"), 8080, IPv4Address("172.18.0.2"), 80, "moor0"),
        PortForward("tcp", IPv4Address("10.1.1.1"), 8080, IPv4Address("172.18.0.3"), 80, "moor0"),
        PortForward("udp", None, 8080, IPv4Address("172.18.0.3"), 80, "moor0"),
    ]

    assert len(rules_of(render("moorage", [NET], forwards), "publish")) == 3


def test_a_bridge_listed_twice_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="bridge listed twice: moor0"):
        render("moorage", [NET, BridgeNetwork("moor0", IPv4Network("172.19.0.0/16"))], [])


def test_overlapping_subnets_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="subnets overlap"):
        render("moorage", [NET, BridgeNetwork("moor1", IPv4Network("172.18.5.0/24"))], [])
