"""The kernel's CPU and memory node lists (``0-3,6``), read and written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moorage.sys.cpus import format_list, online_cpus, online_memory_nodes, parse_list


@pytest.mark.parametrize(
    ("text", "numbers"), [("", set()), ("0", {0}), ("0-2,5", {0, 1, 2, 5}), ("3,1", {1, 3})]
)
def test_cpu_lists(text: str, numbers: set[int]) -> None:
    assert parse_list(text) == numbers
    assert parse_list(format_list(numbers)) == numbers


@pytest.mark.parametrize("text", ["a", "1-", "-1", "3-1", "1,,2"])
def test_bad_cpu_lists(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid format: {text}")):
        parse_list(text)


def test_online_lists_from_a_fake_root(tmp_path: Path) -> None:
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-3,6\n")

    assert online_cpus(str(tmp_path)) == {0, 1, 2, 3, 6}
    assert online_memory_nodes(str(tmp_path)) == {0}  # no NUMA: node 0
