"""Published ports: Docker's PortBindings JSON, host ports held by real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from moorage.engine.network.ports import (
    Binding,
    PortReservations,
    Reserved,
    ephemeral_port_range,
    network_settings_ports,
    parse_bindings,
    parse_port_key,
)
from moorage.errors import Conflict, InvalidArgument, NotSupported

LOOPBACK = IPv4Address("127.0.0.1")


# --------------------------------------------------------------------------- parsing


def test_a_fixed_host_port() -> None:
    bindings = parse_bindings({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, None, False)
    assert bindings == [Binding("tcp", None, (8080, 8080), 80)]


def test_host_ip_and_any_port() -> None:
    bindings = parse_bindings({"53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}, {}, False)
    assert bindings == [Binding("udp", LOOPBACK, (0, 0), 53)]


@pytest.mark.parametrize("host_port", ["", "0", None])
def test_empty_or_zero_host_port_means_any(host_port: str | None) -> None:
    entry: dict[str, Any] = {"HostIp": ""} if host_port is None else {"HostPort": host_port}
    assert parse_bindings({"80/tcp": [entry]}, None, False)[0].host_port_range == (0, 0)


def test_a_host_port_range() -> None:
    bindings = parse_bindings({"80/tcp": [{"HostPort": "8000-8010"}]}, None, False)
    assert bindings[0].host_port_range == (8000, 8010)


def test_zero_host_ip_is_every_address() -> None:
    bindings = parse_bindings({"80": [{"HostIp": "0.0.0.0", "HostPort": "1"}]}, None, False)
    assert bindings == [Binding("tcp", None, (1, 1), 80)]


def test_several_bindings_of_one_port_and_a_sorted_result() -> None:
    bindings = parse_bindings(
        {
            "443/tcp": [{"HostPort": "8443"}],
            "80/udp": [{"HostPort": "9000"}],
            "80/tcp": [{"HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "8081"}],
        },
        None,
        False,
    )
    assert [(b.key, b.host_port_range[0]) for b in bindings] == [
        ("80/tcp", 8080),
        ("80/tcp", 8081),
        ("80/udp", 9000),
        ("443/tcp", 8443),
    ]


def test_a_port_with_no_bindings_is_not_published() -> None:
    assert parse_bindings({"80/tcp": [], "81/tcp": None}, {"82/tcp": {}}, False) == []


def test_publish_all_adds_every_exposed_port_without_a_binding() -> None:
    bindings = parse_bindings(
        {"80/tcp": [{"HostPort": "8080"}], "81/tcp": []},
        {"80/tcp": {}, "443/tcp": {}, "53/udp": {}},
        True,
    )
    assert bindings == [
        Binding("udp", None, (0, 0), 53),
        Binding("tcp", None, (8080, 8080), 80),
        Binding("tcp", None, (0, 0), 81),
        Binding("tcp", None, (0, 0), 443),
    ]


def test_publish_all_expands_an_exposed_range() -> None:
    bindings = parse_bindings(None, {"7000-7002/udp": {}}, True)
    assert [b.key for b in bindings] == ["7000/udp", "7001/udp", "7002/udp"]


def test_port_keys() -> None:
    assert parse_port_key("80/tcp") == (80, "tcp")
    assert parse_port_key("80") == (80, "tcp")
    assert parse_port_key("5000/UDP") == (5000, "udp")
    assert parse_port_key("9/sctp") == (9, "sctp")


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        ({"abc/tcp": []}, 'invalid port "abc/tcp"'),
        ({"0/tcp": []}, 'invalid port "0/tcp"'),
        ({"70000/tcp": []}, 'invalid port "70000/tcp"'),
        ({"-1/tcp": []}, 'invalid port "-1/tcp"'),
        ({"80/xyz": []}, 'invalid protocol "xyz" in port "80/xyz"'),
        ({"80/tcp": [{"HostPort": "abc"}]}, 'invalid host port "abc" for 80/tcp'),
        ({"80/tcp": [{"HostPort": "70000"}]}, 'invalid host port "70000" for 80/tcp'),
        ({"80/tcp": [{"HostPort": "9000-8000"}]}, 'invalid host port "9000-8000" for 80/tcp'),
        ({"80/tcp": [{"HostPort": "0-10"}]}, 'invalid host port "0-10" for 80/tcp'),
        ({"80/tcp": [{"HostPort": "1-"}]}, 'invalid host port "1-" for 80/tcp'),
        ({"80/tcp": [{"HostPort": "٣"}]}, 'invalid host port "٣" for 80/tcp'),
        ({"80/tcp": [{"HostIp": "1.2.3"}]}, 'invalid host ip "1.2.3" for 80/tcp'),
        ({"80/tcp": [{"HostIp": "localhost"}]}, 'invalid host ip "localhost" for 80/tcp'),
        ({"80/tcp": {"HostPort": "1"}}, "invalid port bindings for 80/tcp"),
        ({"80/tcp": ["8080"]}, "invalid port binding for 80/tcp"),
        (["80/tcp"], "invalid port bindings"),
    ],
)
def test_bad_input_is_named(bindings: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_bindings(bindings, None, False)


def test_bad_exposed_port_is_named() -> None:
    with pytest.raises(InvalidArgument, match='invalid port "x/tcp"'):
        parse_bindings(None, {"x/tcp": {}}, True)


def test_ipv6_host_ip_is_not_supported() -> None:
    with pytest.raises(NotSupported, match='ipv6 host ip "::1" for 80/tcp'):
        parse_bindings({"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}, None, False)


# --------------------------------------------------------------------------- reservations


def bindable(proto: str, port: int) -> bool:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(count: int) -> int:
    """The first of ``count`` consecutive ports free for TCP and UDP on 127.0.0.1."""
    lo, _ = ephemeral_port_range()
    for base in range(20000, lo - count, 101):
        if all(bindable(p, base + i) for i in range(count) for p in ("tcp", "udp")):
            return base
    pytest.skip("no block of free ports below the ephemeral range")


@pytest.fixture
def reservations() -> Iterator[PortReservations]:
    held = PortReservations()
    yield held
    held.close()


@pytest.fixture
def holder() -> Iterator[list[socket.socket]]:
    """Sockets a test holds as "another program on the host"; closed at teardown."""
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def hold(holder: list[socket.socket], port: int, *, listen: bool = True) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.append(sock)
    sock.bind(("127.0.0.1", port))
    if listen:
        sock.listen()


def tcp(port: int, container_port: int = 80) -> Binding:
    return Binding("tcp", LOOPBACK, (port, port), container_port)


def test_a_reserved_port_is_held(reservations: PortReservations) -> None:
    port = free_block(1)
    got = reservations.reserve("c1", tcp(port))
    assert got == Reserved("tcp", LOOPBACK, port, 80)
    assert not bindable("tcp", port)
    assert reservations.reserved("c1") == [got]


def test_a_port_another_program_holds_is_dockers_conflict(
    reservations: PortReservations, holder: list[socket.socket]
) -> None:
    port = free_block(1)
    hold(holder, port)
    with pytest.raises(Conflict) as err:
        reservations.reserve("c1", tcp(port))
    assert str(err.value) == f"Bind for 127.0.0.1:{port} failed: port is already allocated"
    assert reservations.reserved("c1") == []


def test_a_port_another_container_holds_is_a_conflict(reservations: PortReservations) -> None:
    port = free_block(1)
    reservations.reserve("c1", tcp(port))
    with pytest.raises(Conflict, match="port is already allocated"):
        reservations.reserve("c2", tcp(port, 81))


def test_tcp_and_udp_of_one_port_are_separate(reservations: PortReservations) -> None:
    port = free_block(1)
    reservations.reserve("c1", tcp(port))
    got = reservations.reserve("c1", Binding("udp", LOOPBACK, (port, port), 53))
    assert got == Reserved("udp", LOOPBACK, port, 53)
    assert not bindable("udp", port)


def test_a_range_takes_its_first_free_port(
    reservations: PortReservations, holder: list[socket.socket]
) -> None:
    base = free_block(3)
    hold(holder, base, listen=False)
    got = reservations.reserve("c1", Binding("tcp", LOOPBACK, (base, base + 2), 80))
    assert got.host_port == base + 1
    assert reservations.reserve("c2", Binding("tcp", LOOPBACK, (base, base + 2), 80)).host_port == (
        base + 2
    )


def test_a_full_range_is_a_conflict(
    reservations: PortReservations, holder: list[socket.socket]
) -> None:
    base = free_block(2)
    hold(holder, base)
    hold(holder, base + 1)
    with pytest.raises(Conflict, match=f"127.0.0.1:{base}-{base + 1} failed"):
        reservations.reserve("c1", Binding("tcp", LOOPBACK, (base, base + 1), 80))


def test_any_port_comes_from_the_ephemeral_range_in_turn() -> None:
    base = free_block(3)
    held = PortReservations(ephemeral=(base, base + 2))
    try:
        first = held.reserve("c1", Binding("tcp", LOOPBACK, (0, 0), 80)).host_port
        held.release("c1")
        second = held.reserve("c2", Binding("tcp", LOOPBACK, (0, 0), 80)).host_port
        assert (first, second) == (base, base + 1)  # the port just released waits its turn
        third = held.reserve("c3", Binding("tcp", LOOPBACK, (0, 0), 80)).host_port
        fourth = held.reserve("c4", Binding("tcp", LOOPBACK, (0, 0), 80)).host_port
        assert (third, fourth) == (base + 2, base)  # wraps around
        with pytest.raises(Conflict, match="all ports are allocated"):
            held.reserve("c5", Binding("tcp", LOOPBACK, (0, 0), 80))
    finally:
        held.close()


def test_the_kernel_ephemeral_range_is_read_from_proc() -> None:
    lo, hi = ephemeral_port_range()
    assert 0 < lo <= hi <= 65535


def test_release_frees_the_ports_and_is_idempotent(reservations: PortReservations) -> None:
    port = free_block(1)
    reservations.reserve("c1", tcp(port))
    reservations.release("c1")
    reservations.release("c1")
    assert bindable("tcp", port)
    assert reservations.reserved("c1") == []


def test_reserve_all_is_all_or_nothing(
    reservations: PortReservations, holder: list[socket.socket]
) -> None:
    base = free_block(3)
    reservations.reserve("c1", tcp(base + 2, 99))  # an earlier reservation of the owner stays
    hold(holder, base + 1)
    with pytest.raises(Conflict, match=f"127.0.0.1:{base + 1} failed"):
        reservations.reserve_all("c1", [tcp(base), tcp(base + 1, 81)])
    assert bindable("tcp", base)
    assert [r.host_port for r in reservations.reserved("c1")] == [base + 2]


def test_reserve_all(reservations: PortReservations) -> None:
    base = free_block(2)
    got = reservations.reserve_all("c1", [tcp(base), Binding("udp", LOOPBACK, (base + 1,) * 2, 53)])
    assert got == [Reserved("tcp", LOOPBACK, base, 80), Reserved("udp", LOOPBACK, base + 1, 53)]
    assert reservations.reserved("c1") == got


def test_a_host_ip_not_on_this_host_is_invalid(reservations: PortReservations) -> None:
    port = free_block(1)
    with pytest.raises(InvalidArgument, match="192.0.2.1 is not an address of this host"):
        reservations.reserve("c1", Binding("tcp", IPv4Address("192.0.2.1"), (port, port), 80))


def test_children_do_not_inherit_the_sockets(reservations: PortReservations) -> None:
    port = free_block(1)
    reservations.reserve("c1", tcp(port))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=False,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"  # it runs: its exec is done
        reservations.release("c1")
        # No copy of the socket lives on in the child, which keeps running: the port
        # is free (awaited: another program on the machine may pass through it).
        deadline = time.monotonic() + 5
        while not bindable("tcp", port):
            assert time.monotonic() < deadline, f"port {port} still taken"
            time.sleep(0.05)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()


def test_a_record_roundtrip_takes_the_same_port_again(reservations: PortReservations) -> None:
    port = free_block(1)
    saved = [r.to_dict() for r in reservations.reserve_all("c1", [tcp(port)])]
    reservations.release("c1")  # the daemon went away
    again = reservations.reserve_all("c1", [Reserved.from_dict(d).as_binding() for d in saved])
    assert again == [Reserved("tcp", LOOPBACK, port, 80)]


def test_any_address_maps_back_to_no_host_ip() -> None:
    reserved = Reserved("udp", IPv4Address("0.0.0.0"), 5353, 53)
    assert reserved.as_binding() == Binding("udp", None, (5353, 5353), 53)


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"Proto": "tcp", "HostIp": "x", "HostPort": 1, "ContainerPort": 1},
        {"Proto": "icmp", "HostIp": "0.0.0.0", "HostPort": 1, "ContainerPort": 1},
        {"Proto": "tcp", "HostIp": "0.0.0.0", "HostPort": 0, "ContainerPort": 1},
    ],
)
def test_a_corrupt_reservation_record_is_invalid(record: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="invalid port reservation record"):
        Reserved.from_dict(record)


# --------------------------------------------------------------------------- inspect


def test_network_settings_ports_shape() -> None:
    reserved = [
        Reserved("tcp", IPv4Address("0.0.0.0"), 8080, 80),
        Reserved("tcp", LOOPBACK, 8081, 80),
        Reserved("udp", IPv4Address("0.0.0.0"), 5353, 53),
    ]
    ports = network_settings_ports({"80/tcp": {}, "81/tcp": {}, "443/tcp": {}}, reserved)
    assert ports == {
        "443/tcp": None,
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "8080"},
            {"HostIp": "127.0.0.1", "HostPort": "8081"},
        ],
        "81/tcp": None,
    }
    assert list(ports) == ["443/tcp", "53/udp", "80/tcp", "81/tcp"]  # Docker's JSON order


def test_network_settings_ports_empty() -> None:
    assert network_settings_ports(None, []) == {}
