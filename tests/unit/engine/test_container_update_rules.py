"""A container update's rules (engine.container_update): the body checked as dockerd
checks it, merged into the HostConfig by dockerd's rules, and turned into the cgroup
settings to write now."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.api.docker.compat import update_request
from moorage.engine.container_update import (
    UpdateRequest,
    live_resources,
    merged_host_config,
    parse_update,
)
from moorage.engine.specgen import parse_create
from moorage.errors import Conflict, InvalidArgument

MB = 1024 * 1024
CID = "c" * 64

# What the docker CLI 28 sends for `docker update --memory 64m --cpus 0.5 --pids-limit -1
# --restart on-failure:3`: every Resources field, most of them zero.
DOCKER_CLI_BODY: dict[str, Any] = {
    "CpuShares": 0, "Memory": 67108864, "NanoCpus": 500000000, "CgroupParent": "",
    "BlkioWeight": 0, "BlkioWeightDevice": None, "BlkioDeviceReadBps": None,
    "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None,
    "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
    "CpusetCpus": "", "CpusetMems": "", "Devices": None, "DeviceCgroupRules": None,
    "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": None, "PidsLimit": -1, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
}  # fmt: skip


def _parse(body: Any) -> UpdateRequest:
    return parse_update(body, cpus={0, 1}, mems={0}, ncpu=2)


def _refused(body: Any) -> str:
    with pytest.raises(InvalidArgument) as caught:
        _parse(body)
    return str(caught.value)


# --- parse_update ----------------------------------------------------------------------


def test_zero_fields_change_nothing_and_set_ones_are_kept() -> None:
    update = _parse(update_request(DOCKER_CLI_BODY))

    assert update.resources == {"Memory": 64 * MB, "NanoCpus": 500_000_000, "PidsLimit": 0}
    assert update.restart_policy == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert update.warnings == ()


def test_an_empty_body_changes_nothing() -> None:
    assert _parse({}) == UpdateRequest(resources={})


def test_an_empty_restart_policy_name_keeps_the_policy() -> None:
    assert _parse({"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}).restart_policy is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"Memory": "64m"},
            "invalid JSON: json: cannot unmarshal string into Go struct field "
            "UpdateConfig.Memory of type int64",
        ),
        (
            {"NanoCpus": 1.5},
            "invalid JSON: json: cannot unmarshal number 1.5 into Go struct field "
            "UpdateConfig.NanoCpus of type int64",
        ),
        (
            {"PidsLimit": True},
            "invalid JSON: json: cannot unmarshal bool into Go struct field "
            "UpdateConfig.PidsLimit of type int64",
        ),
        (
            {"BlkioWeight": -1},
            "invalid JSON: json: cannot unmarshal number -1 into Go struct field "
            "UpdateConfig.BlkioWeight of type uint16",
        ),
        (
            {"CpusetCpus": 1},
            "invalid JSON: json: cannot unmarshal number into Go struct field "
            "UpdateConfig.CpusetCpus of type string",
        ),
        (
            {"Ulimits": {}},
            "invalid JSON: json: cannot unmarshal object into Go struct field "
            "UpdateConfig.Ulimits of type []*container.Ulimit",
        ),
        (
            {"RestartPolicy": "always"},
            "invalid JSON: json: cannot unmarshal string into Go struct field "
            "UpdateConfig.RestartPolicy of type container.RestartPolicy",
        ),
        (
            {"RestartPolicy": {"Name": 1}},
            "invalid JSON: json: cannot unmarshal number into Go struct field "
            "RestartPolicy.RestartPolicy.Name of type container.RestartPolicyMode",
        ),
        (
            ["Memory"],
            "invalid JSON: json: cannot unmarshal array into Go value of type "
            "container.UpdateConfig",
        ),
    ],
)
def test_wrong_types_are_refused_as_dockerd_words_it(body: Any, message: str) -> None:
    assert _refused(body) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
        ({"Memory": -1}, "Minimum memory limit allowed is 6MB"),
        ({"Memory": -(2**30)}, "Minimum memory limit allowed is 6MB"),
        (
            {"Memory": 64 * MB, "MemorySwap": 32 * MB},
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        ({"MemoryReservation": MB}, "Minimum memory reservation allowed is 6MB"),
        (
            {"Memory": 64 * MB, "MemoryReservation": 128 * MB},
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
        (
            {"MemorySwappiness": 101},
            "Invalid value: 101, valid memory swappiness range is 0-100",
        ),
        (
            {"NanoCpus": 10**9, "CpuPeriod": 100000},
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ),
        (
            {"NanoCpus": 10**9, "CpuQuota": 50000},
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ),
        (
            {"NanoCpus": 3 * 10**9},
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
        ),
        (
            {"NanoCpus": -1},
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
        ),
        (
            {"CpuPeriod": 500},
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ),
        ({"CpuQuota": 999}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
        ({"CpusetCpus": "0-"}, "Invalid value 0- for cpuset cpus: invalid format: 0-"),
        (
            {"CpusetCpus": "1-3"},
            "Requested CPUs are not available - requested 1-3, available: 0-1",
        ),
        (
            {"CpusetMems": "1"},
            "Requested memory nodes are not available - requested 1, available: 0",
        ),
        ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
        (
            {"IOMaximumIOps": 10},
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
        ),
        (
            {"RestartPolicy": {"Name": "sometimes"}},
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'",
        ),
        (
            {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        (
            {"RestartPolicy": {"Name": "no", "MaximumRetryCount": -1}},
            "invalid restart policy: maximum retry count can only be used with 'on-failure' "
            "and cannot be negative",
        ),
        (
            {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
            "invalid restart policy: maximum retry count cannot be negative",
        ),
    ],
)
def test_bad_values_are_refused_with_dockerds_messages(body: Any, message: str) -> None:
    assert _refused(body) == message


def test_settings_not_applied_come_back_as_warnings() -> None:
    update = _parse({"BlkioWeight": 300, "CpuRealtimeRuntime": 950, "CpuPercent": 50})

    assert update.resources == {}
    assert update.warnings == (
        "BlkioWeight: not supported, ignored",
        "CpuRealtimeRuntime: not supported, ignored",
        "linux does not support CPU percent. Percent discarded.",
    )


# --- merged_host_config ----------------------------------------------------------------


def _merge(host: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    return merged_host_config(host, _parse(body), CID)


def _conflict(host: dict[str, Any], body: dict[str, Any]) -> str:
    with pytest.raises(Conflict) as caught:
        _merge(host, body)
    return str(caught.value)


def test_set_fields_replace_and_others_stay() -> None:
    host = {"Memory": 32 * MB, "CpuShares": 512, "PidsLimit": 10, "Privileged": False}

    merged = _merge(host, {"NanoCpus": 10**9, "PidsLimit": 0, "CpuShares": 0})

    assert merged == {
        "Memory": 32 * MB,
        "CpuShares": 512,
        "PidsLimit": 0,
        "NanoCpus": 10**9,
        "Privileged": False,
    }
    assert host["PidsLimit"] == 10  # the record is not changed in place


@pytest.mark.parametrize(
    ("host", "body", "message"),
    [
        (
            {"CpuPeriod": 100000},
            {"NanoCpus": 10**9},
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set",
        ),
        (
            {"CpuQuota": 50000},
            {"NanoCpus": 10**9},
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set",
        ),
        (
            {"NanoCpus": 10**9},
            {"CpuPeriod": 100000},
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set",
        ),
        (
            {"NanoCpus": 10**9},
            {"CpuQuota": 50000},
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
        ),
        (
            {"Memory": 32 * MB, "MemorySwap": 48 * MB},
            {"Memory": 64 * MB},
            "Memory limit should be smaller than already set memoryswap limit, update the "
            "memoryswap at the same time",
        ),
        (  # no MemorySwap recorded: the create's default, twice the memory
            {"Memory": 32 * MB},
            {"Memory": 65 * MB},
            "Memory limit should be smaller than already set memoryswap limit, update the "
            "memoryswap at the same time",
        ),
        (
            {"AutoRemove": True},
            {"RestartPolicy": {"Name": "always"}},
            "Restart policy cannot be updated because AutoRemove is enabled for the container",
        ),
    ],
)
def test_conflicts_with_what_the_container_has(
    host: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    assert _conflict(host, body) == f"Cannot update container {CID}: {message}"


@pytest.mark.parametrize(
    ("host", "body", "swap"),
    [
        ({"Memory": 32 * MB}, {"Memory": 64 * MB}, 64 * MB),  # the default, kept
        ({"Memory": 32 * MB, "MemorySwap": 96 * MB}, {"Memory": 64 * MB}, 96 * MB),
        ({}, {"Memory": 64 * MB}, 128 * MB),  # none before: the create's default
        ({"Memory": 32 * MB, "MemorySwap": -1}, {"Memory": 2**30}, -1),
        ({"Memory": 32 * MB}, {"Memory": 2**30, "MemorySwap": 2**31}, 2**31),
        ({"Memory": 32 * MB}, {"MemorySwap": -1}, -1),
    ],
)
def test_memory_swap_after_an_update(host: dict[str, Any], body: dict[str, Any], swap: int) -> None:
    assert _merge(host, body)["MemorySwap"] == swap


def test_a_restart_policy_is_recorded() -> None:
    merged = _merge({"RestartPolicy": {"Name": "no"}}, {"RestartPolicy": {"Name": "always"}})

    assert merged["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}


def test_an_auto_remove_container_may_be_given_no_restart_policy() -> None:
    merged = _merge({"AutoRemove": True}, {"RestartPolicy": {"Name": "no"}})

    assert merged["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


# --- live_resources --------------------------------------------------------------------


def _live(host: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    update = _parse(body)
    merged = merged_host_config(host, update, CID)
    return live_resources(parse_create({"Image": "busybox", "HostConfig": merged}), update)


@pytest.mark.parametrize(
    ("host", "body", "resources"),
    [
        (
            {"PidsLimit": 10},
            {"Memory": 64 * MB, "NanoCpus": 5 * 10**8},
            {
                "memory": {"limit": 64 * MB, "swap": 128 * MB},
                "cpu": {"quota": 50000, "period": 100000},
            },
        ),
        ({"Memory": 64 * MB}, {"PidsLimit": 50}, {"pids": {"limit": 50}}),
        ({"PidsLimit": 50}, {"PidsLimit": 0}, {"pids": {"limit": 0}}),  # 0: unlimited
        ({"CpuQuota": 50000}, {"CpuQuota": -1}, {"cpu": {"quota": -1}}),
        (  # a CPU field brings the whole CPU section as the next start sets it
            {"NanoCpus": 10**9},
            {"CpuShares": 512},
            {"cpu": {"quota": 100000, "period": 100000, "shares": 512}},
        ),
        ({}, {"RestartPolicy": {"Name": "always"}}, {}),
    ],
)
def test_live_resources_are_what_the_next_start_sets(
    host: dict[str, Any], body: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert _live(host, body) == resources
