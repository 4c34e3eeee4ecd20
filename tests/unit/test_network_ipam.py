"""IPAM: subnets for new networks, user subnets and gateways, container addresses."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from moorage.engine.network.ipam import (
    DEFAULT_POOLS,
    Addresses,
    AddressPool,
    check_network,
    choose_subnet,
    mac_for,
    parse_subnet,
)
from moorage.errors import Conflict, FailedPrecondition, InvalidArgument, NotSupported


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


# --------------------------------------------------------------------------- pools


def test_default_pools_are_dockers() -> None:
    subnets = [s for pool in DEFAULT_POOLS for s in pool.subnets()]
    assert subnets[0] == net("172.17.0.0/16")
    assert subnets[14] == net("172.31.0.0/16")
    assert subnets[15] == net("192.168.0.0/20")
    assert subnets[-1] == net("192.168.240.0/20")
    assert len(subnets) == 15 + 16


def test_first_pool_when_nothing_is_used() -> None:
    assert choose_subnet(in_use=[], host_routes=[]) == net("172.17.0.0/16")


def test_skips_subnets_of_our_networks() -> None:
    in_use = [net("172.17.0.0/16"), net("172.18.5.0/24")]
    assert choose_subnet(in_use, host_routes=[]) == net("172.19.0.0/16")


def test_skips_host_routes_but_not_the_default_route() -> None:
    routes = [net("0.0.0.0/0"), net("172.17.0.0/16"), net("172.18.3.0/24")]
    assert choose_subnet(in_use=[], host_routes=routes) == net("172.19.0.0/16")


def test_a_route_covering_a_pool_skips_all_of_it() -> None:
    routes = [net("172.16.0.0/12")]  # 172.16.0.0 - 172.31.255.255
    assert choose_subnet(in_use=[], host_routes=routes) == net("192.168.0.0/20")


def test_192_168_is_cut_into_slash_20s() -> None:
    in_use = [net(f"172.{n}.0.0/16") for n in range(17, 32)]
    routes = [net("192.168.1.0/24")]
    assert choose_subnet(in_use, routes) == net("192.168.16.0/20")


def test_exhausted_pools_are_a_clear_error() -> None:
    pools = [AddressPool(net("10.10.0.0/23"), 24)]
    in_use = [net("10.10.0.0/24"), net("10.10.1.0/24")]
    with pytest.raises(FailedPrecondition, match="could not find an available, non-overlapping"):
        choose_subnet(in_use, [], pools)


def test_custom_pools() -> None:
    pools = [AddressPool(net("10.10.0.0/16"), 24)]
    assert choose_subnet([net("10.10.0.0/24")], [], pools) == net("10.10.1.0/24")


# --------------------------------------------------------------------------- user subnets


def test_parse_subnet() -> None:
    assert parse_subnet("10.1.0.0/16") == net("10.1.0.0/16")
    assert parse_subnet(" 192.168.7.0/24 ") == net("192.168.7.0/24")


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.256/24", "foo", "10.0.0.0/x", ""])
def test_parse_subnet_rejects_garbage_naming_it(text: str) -> None:
    with pytest.raises(InvalidArgument, match=f'invalid subnet "{text}"'):
        parse_subnet(text)


def test_parse_subnet_wants_a_prefix_length() -> None:
    with pytest.raises(InvalidArgument, match='invalid subnet "10.0.0.0"'):
        parse_subnet("10.0.0.0")


def test_parse_subnet_rejects_host_bits_like_docker() -> None:
    with pytest.raises(InvalidArgument, match='"10.1.2.3/24": it should be 10.1.2.0/24'):
        parse_subnet("10.1.2.3/24")


def test_parse_subnet_ipv6_is_not_supported() -> None:
    with pytest.raises(NotSupported, match="fd00::/64"):
        parse_subnet("fd00::/64")


def test_gateway_defaults_to_the_first_host() -> None:
    assert check_network(net("10.5.0.0/16"), None, in_use=[]) == ip("10.5.0.1")


def test_explicit_gateway_is_kept() -> None:
    assert check_network(net("10.5.0.0/16"), ip("10.5.255.254"), []) == ip("10.5.255.254")


def test_gateway_outside_the_subnet_is_docker_error() -> None:
    with pytest.raises(InvalidArgument, match="no matching subnet for gateway 10.6.0.1"):
        check_network(net("10.5.0.0/16"), ip("10.6.0.1"), [])


@pytest.mark.parametrize("gateway", ["10.5.0.0", "10.5.0.255"])
def test_gateway_must_be_a_host_address(gateway: str) -> None:
    with pytest.raises(InvalidArgument, match=f"invalid gateway {gateway}"):
        check_network(net("10.5.0.0/24"), ip(gateway), [])


def test_overlap_with_an_existing_network_is_dockers_conflict() -> None:
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space") as err:
        check_network(net("10.5.1.0/24"), None, in_use=[net("10.0.0.0/8")])
    assert "10.5.1.0/24 overlaps 10.0.0.0/8" in str(err.value)


def test_a_subnet_too_small_for_a_container_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="10.0.0.0/31 is too small"):
        check_network(net("10.0.0.0/31"), None, [])


# --------------------------------------------------------------------------- addresses


@pytest.fixture
def addresses() -> Addresses:
    return Addresses(net("172.18.0.0/16"), ip("172.18.0.1"))


def test_allocates_in_order_after_the_gateway(addresses: Addresses) -> None:
    assert addresses.allocate("a") == ip("172.18.0.2")
    assert addresses.allocate("b") == ip("172.18.0.3")
    assert addresses.owner_of(ip("172.18.0.3")) == "b"
    assert addresses.address_of("a") == ip("172.18.0.2")


def test_skips_a_gateway_in_the_middle() -> None:
    table = Addresses(net("10.0.0.0/29"), ip("10.0.0.2"))
    assert [table.allocate(n) for n in "abcde"] == [
        ip("10.0.0.1"),
        ip("10.0.0.3"),
        ip("10.0.0.4"),
        ip("10.0.0.5"),
        ip("10.0.0.6"),
    ]


def test_an_owner_asking_again_keeps_its_address(addresses: Addresses) -> None:
    first = addresses.allocate("a")
    assert addresses.allocate("a") == first
    assert addresses.allocate("a", first) == first
    assert len(addresses) == 1


def test_an_owner_cannot_take_a_second_address(addresses: Addresses) -> None:
    addresses.allocate("a")
    with pytest.raises(Conflict, match="a already has address 172.18.0.2"):
        addresses.allocate("a", ip("172.18.0.9"))


def test_a_released_address_is_not_reused_while_others_are_free(addresses: Addresses) -> None:
    a = addresses.allocate("a")
    addresses.release("a")
    assert addresses.allocate("b") != a


def test_allocation_wraps_around_to_released_addresses() -> None:
    table = Addresses(net("10.0.0.0/29"), ip("10.0.0.1"))  # hosts .2 - .6 for containers
    for owner in "abcde":
        table.allocate(owner)
    table.release("b")  # 10.0.0.3
    assert table.allocate("f") == ip("10.0.0.3")


def test_exhaustion_names_the_pool() -> None:
    table = Addresses(net("10.0.0.0/30"), ip("10.0.0.1"))
    table.allocate("a")
    with pytest.raises(
        FailedPrecondition, match="no available addresses on this pool: 10.0.0.0/30"
    ):
        table.allocate("b")


def test_release_is_idempotent(addresses: Addresses) -> None:
    addresses.allocate("a")
    addresses.release("a")
    addresses.release("a")
    addresses.release("never-had-one")
    assert addresses.address_of("a") is None
    assert addresses.owner_of(ip("172.18.0.2")) is None


def test_preferred_address(addresses: Addresses) -> None:
    assert addresses.allocate("a", ip("172.18.9.9")) == ip("172.18.9.9")
    assert addresses.owner_of(ip("172.18.9.9")) == "a"


def test_preferred_outside_the_subnet_names_it(addresses: Addresses) -> None:
    with pytest.raises(InvalidArgument, match="contains the ip address 10.0.0.5"):
        addresses.allocate("a", ip("10.0.0.5"))


@pytest.mark.parametrize("taken", ["172.18.0.1", "172.18.0.2"])
def test_preferred_taken_or_gateway_is_a_conflict(addresses: Addresses, taken: str) -> None:
    addresses.allocate("a")  # 172.18.0.2
    with pytest.raises(Conflict, match=f"address already in use: {taken}"):
        addresses.allocate("b", ip(taken))


@pytest.mark.parametrize("special", ["172.18.0.0", "172.18.255.255"])
def test_preferred_network_or_broadcast_is_invalid(addresses: Addresses, special: str) -> None:
    with pytest.raises(InvalidArgument, match=special):
        addresses.allocate("a", ip(special))


def test_roundtrip_through_json_keeps_every_allocation(addresses: Addresses) -> None:
    addresses.allocate("a")
    addresses.allocate("b", ip("172.18.3.4"))
    restored = Addresses.from_dict(json.loads(json.dumps(addresses.to_dict())))
    assert restored.to_dict() == addresses.to_dict()
    assert restored.subnet == addresses.subnet
    assert restored.gateway == addresses.gateway
    assert restored.address_of("b") == ip("172.18.3.4")


def test_no_duplicate_address_after_a_restore() -> None:
    table = Addresses(net("10.0.0.0/29"), ip("10.0.0.1"))
    for owner in "abc":
        table.allocate(owner)  # .2 .3 .4
    table.release("a")
    restored = Addresses.from_dict(json.loads(json.dumps(table.to_dict())))
    given = {restored.allocate("d"), restored.allocate("e")}
    assert given == {ip("10.0.0.5"), ip("10.0.0.6")}  # continues after the last, no repeats
    assert restored.allocate("f") == ip("10.0.0.2")  # then wraps to the free one
    with pytest.raises(FailedPrecondition):
        restored.allocate("g")


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"},
        {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1", "Allocated": {"a": "10.9.0.2"}},
        {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1", "Allocated": {"a": "10.0.0.1"}},
        {
            "Subnet": "10.0.0.0/24",
            "Gateway": "10.0.0.1",
            "Allocated": {"a": "10.0.0.2", "b": "10.0.0.2"},
        },
        {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1", "Allocated": [], "Last": None},
        {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1", "Allocated": {}, "Last": "10.1.0.0"},
        {"Subnet": "bad", "Gateway": "10.0.0.1", "Allocated": {}},
    ],
)
def test_a_corrupt_record_is_invalid(record: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument, match="invalid address table"):
        Addresses.from_dict(record)


def test_mac_from_ip_like_docker() -> None:
    assert mac_for(ip("172.17.0.2")) == "02:42:ac:11:00:02"
    assert mac_for(ip("10.255.0.1")) == "02:42:0a:ff:00:01"
