"""CgroupResources.from_oci: conversion of OCI linux.resources and its validation."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from moorage.errors import InvalidArgument
from moorage.runtime.cgroups.resources import (
    BlockIOResources,
    CgroupResources,
    CpuResources,
    DeviceRule,
    HugepageLimit,
    MemoryResources,
    PidsResources,
)


def test_none_is_the_empty_value() -> None:
    assert CgroupResources.from_oci(None) == CgroupResources()


def test_a_full_config_converts_field_by_field() -> None:
    data: dict[str, Any] = {
        "memory": {
            "limit": 268435456,
            "reservation": 134217728,
            "swap": 536870912,
            "swappiness": 10,
            "disableOOMKiller": True,
            "kernel": 1024,
        },
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 64},
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        ],
        "blockIO": {"weight": 500},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "unified": {"memory.high": "200000000"},
    }

    r = CgroupResources.from_oci(data)

    assert r.memory == MemoryResources(
        limit=268435456,
        reservation=134217728,
        swap=536870912,
        swappiness=10,
        disable_oom_killer=True,
    )
    assert r.cpu == CpuResources(shares=512, quota=50000, period=100000, cpus="0-1", mems="0")
    assert r.pids == PidsResources(limit=64)
    assert r.devices == (
        DeviceRule(allow=False),
        DeviceRule(allow=True, type="c", major=1, minor=3, access="rw"),
    )
    assert r.block_io == BlockIOResources(weight=500)
    assert r.hugepage_limits == (HugepageLimit(page_size="2MB", limit=4194304),)
    assert r.unified == {"memory.high": "200000000"}


def test_minus_one_means_unlimited_and_is_kept() -> None:
    r = CgroupResources.from_oci({"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1}})

    assert r.memory == MemoryResources(limit=-1, swap=-1)
    assert r.cpu == CpuResources(quota=-1)


def test_zero_limits_mean_not_set() -> None:
    r = CgroupResources.from_oci(
        {"memory": {"limit": 0, "reservation": 0, "swap": 0}, "cpu": {"shares": 0, "period": 0}}
    )

    assert r.memory == MemoryResources()
    assert r.cpu == CpuResources()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"memory": {"limit": "1g"}},
            'linux.resources.memory.limit: expected an integer, got "1g"',
        ),
        ({"memory": {"limit": True}}, "linux.resources.memory.limit: expected an integer"),
        ({"memory": {"limit": -2}}, "linux.resources.memory.limit: must be at least -1, got -2"),
        ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness: must be at most"),
        ({"memory": {"disableOOMKiller": 1}}, "linux.resources.memory.disableOOMKiller"),
        ({"memory": []}, "linux.resources.memory: expected an object, got an array"),
        ({"cpu": {"shares": -5}}, "linux.resources.cpu.shares: must be at least 0"),
        ({"cpu": {"quota": -7}}, "linux.resources.cpu.quota: must be at least -1"),
        ({"cpu": {"cpus": "zero"}}, 'linux.resources.cpu.cpus: not a cpu or node list: "zero"'),
        ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle: must be 0 or 1, got 2"),
        ({"pids": {"limit": -2}}, "linux.resources.pids.limit: must be at least -1"),
        ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight: must be between 10 and"),
        ({"devices": {}}, "linux.resources.devices: expected an array, got an object"),
    ],
)
def test_wrong_values_name_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        CgroupResources.from_oci(data)

    assert message in str(excinfo.value)
    assert str(excinfo.value).startswith("linux.resources.")


def test_resources_must_be_an_object() -> None:
    with pytest.raises(InvalidArgument, match=r"^linux.resources: expected an object, got 3$"):
        CgroupResources.from_oci(3)  # type: ignore[arg-type]


def test_swap_below_the_limit_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"memory.swap \(100\) must not be below"):
        CgroupResources.from_oci({"memory": {"limit": 200, "swap": 100}})


def test_a_finite_swap_with_unlimited_memory_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"memory.swap \(100\) must be -1 when"):
        CgroupResources.from_oci({"memory": {"limit": -1, "swap": 100}})


def test_unlimited_swap_with_a_limit_is_fine() -> None:
    r = CgroupResources.from_oci({"memory": {"limit": 200, "swap": -1}})

    assert r.memory == MemoryResources(limit=200, swap=-1)


def test_pids_limit_zero_is_kept_as_unlimited() -> None:
    assert CgroupResources.from_oci({"pids": {"limit": 0}}).pids == PidsResources(limit=0)


def test_device_rules_default_to_all_devices_and_rwm() -> None:
    r = CgroupResources.from_oci({"devices": [{"allow": True}]})

    assert r.devices == (DeviceRule(allow=True, type="a", major=None, minor=None, access="rwm"),)


def test_device_minus_one_is_the_wildcard() -> None:
    r = CgroupResources.from_oci({"devices": [{"allow": True, "type": "c", "major": -1}]})

    assert r.devices[0].major is None
    assert r.devices[0].v1_line() == "c *:* rwm"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "c"}, r"linux.resources.devices\[1\].allow: required"),
        ({"allow": True, "type": "x"}, r'linux.resources.devices\[1\].type: must be "a"'),
        ({"allow": True, "access": "rwx"}, r"linux.resources.devices\[1\].access: must be"),
        ({"allow": True, "access": "rr"}, r"linux.resources.devices\[1\].access: must be"),
        ({"allow": True, "major": "1"}, r"linux.resources.devices\[1\].major: expected an"),
    ],
)
def test_bad_device_rules_name_their_index(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        CgroupResources.from_oci({"devices": [{"allow": False}, rule]})


def test_device_rule_lines_for_devices_allow() -> None:
    assert DeviceRule(allow=True).v1_line() == "a"
    assert DeviceRule(allow=True, type="c", major=1, minor=3, access="rw").v1_line() == "c 1:3 rw"
    assert DeviceRule(allow=True, type="b", major=8).v1_line() == "b 8:* rwm"


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ({"pageSize": "2M", "limit": 1}, r'pageSize: expected a size such as "2MB", got "2M"'),
        ({"limit": 1}, r"hugepageLimits\[0\].pageSize: required"),
        ({"pageSize": "2MB"}, r"hugepageLimits\[0\].limit: required"),
        ({"pageSize": "2MB", "limit": -1}, r"hugepageLimits\[0\].limit: must be at least 0"),
    ],
)
def test_bad_hugepage_limits_are_refused(limit: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        CgroupResources.from_oci({"hugepageLimits": [limit]})


@pytest.mark.parametrize("key", ["../memory.max", "a/b", "", "..", "."])
def test_unified_keys_must_be_plain_file_names(key: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^linux.resources.unified: invalid cgroup file"):
        CgroupResources.from_oci({"unified": {key: "1"}})


def test_unified_values_must_be_strings() -> None:
    with pytest.raises(InvalidArgument, match=r'unified\["memory.high"\]: expected a string'):
        CgroupResources.from_oci({"unified": {"memory.high": 5}})


def test_unknown_keys_are_ignored() -> None:
    r = CgroupResources.from_oci({"memory": {"limit": 10, "future": 1}, "future": {}})

    assert r == CgroupResources(memory=MemoryResources(limit=10))


def test_known_but_unsupported_settings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        CgroupResources.from_oci({"blockIO": {"throttleReadBpsDevice": [{"major": 8}]}})

    assert "linux.resources.blockIO.throttleReadBpsDevice" in caplog.text
