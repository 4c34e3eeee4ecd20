"""``update``'s pure part: a partial linux.resources merged into the saved one, the
settings it writes, and ``moor-runtime update``'s flags (runc's)."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.errors import InvalidArgument
from moorage.runtime.cli import _parser, _update_resources
from moorage.runtime.update import merge_resources, resources_to_apply

SAVED: dict[str, Any] = {
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
}


def test_a_change_merges_into_the_saved_settings() -> None:
    merged = merge_resources(
        SAVED, {"memory": {"limit": 1 << 27, "swap": None}, "pids": {"limit": 9}}
    )

    assert merged == {
        **SAVED,
        "memory": {**SAVED["memory"], "limit": 1 << 27},
        "pids": {"limit": 9},
    }
    assert SAVED["memory"]["limit"] == 1 << 26  # not changed in place


def test_an_unlimited_memory_brings_unlimited_swap() -> None:
    assert merge_resources(SAVED, {"memory": {"limit": -1}})["memory"]["swap"] == -1


def test_devices_are_not_updated() -> None:
    merged = merge_resources(SAVED, {"devices": [{"allow": True, "access": "rwm"}]})

    assert merged["devices"] == SAVED["devices"]


def test_hugepage_limits_merge_by_page_size() -> None:
    saved = {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}, {"pageSize": "1GB", "limit": 2}]}

    merged = merge_resources(saved, {"hugepageLimits": [{"pageSize": "2MB", "limit": 3}]})

    assert merged["hugepageLimits"] == [
        {"pageSize": "2MB", "limit": 3},
        {"pageSize": "1GB", "limit": 2},
    ]


def test_a_section_that_is_no_object_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"linux.resources.memory: expected an object"):
        merge_resources(SAVED, {"memory": 5})


@pytest.mark.parametrize(
    ("change", "written"),
    [
        # memory limit and swap go together, the reservation is left alone
        ({"memory": {"limit": 1 << 27}}, {"memory": {"limit": 1 << 27, "swap": 1 << 27}}),
        ({"memory": {"reservation": 1 << 24}}, {"memory": {"reservation": 1 << 24}}),
        # so do quota and period; shares are left alone
        ({"cpu": {"quota": 20000}}, {"cpu": {"quota": 20000, "period": 100000}}),
        ({"cpu": {"shares": 1024}}, {"cpu": {"shares": 1024}}),
        ({"pids": {"limit": 0}}, {"pids": {"limit": 0}}),
        ({"devices": []}, {}),
    ],
)
def test_what_is_written(change: dict[str, Any], written: dict[str, Any]) -> None:
    assert resources_to_apply(merge_resources(SAVED, change), change) == written


def _flags(*argv: str) -> dict[str, Any]:
    return _update_resources(_parser().parse_args(["update", *argv, "web"]))


def test_runc_flags_make_the_resources() -> None:
    resources = _flags(
        "--memory", "64m", "--memory-swap", "-1", "--cpu-quota", "50000",
        "--cpu-period", "100000", "--cpuset-cpus", "0-1", "--pids-limit", "20",
    )  # fmt: skip

    assert resources == {
        "memory": {"limit": 64 << 20, "swap": -1},
        "cpu": {"quota": 50000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 20},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--pids-limit", "20k"), "--pids-limit: invalid value '20k'"),
        (("--memory", "lots"), "--memory: invalid value 'lots'"),
        (("--resources", "-", "--memory", "1g"), "--resources cannot be combined with --memory"),
    ],
)
def test_bad_runc_flags(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _flags(*argv)
