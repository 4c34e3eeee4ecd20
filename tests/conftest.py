"""Fixtures shared by every test folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bundles import busybox_binary, make_busybox_rootfs  # noqa: E402

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs root and real kernel features (run as root)")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip)


TEST_CGROUP_PARENTS = ("moorage-test", "moorage-bench")
TEST_RUNTIME_PARENT = Path("/run/moor-runtime-test")


def _remove_empty_tree(top: Path) -> None:
    """rmdir ``top`` and its subdirectories, deepest first; cgroup dirs only go when empty."""
    if not top.is_dir():
        return
    for child in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


@pytest.fixture(scope="session", autouse=True)
def _leave_the_host_clean() -> Iterator[None]:
    """After the run, remove the parent cgroups and state dirs the tests' containers used."""
    yield
    if not IS_ROOT:
        return
    cgroup_root = Path("/sys/fs/cgroup")
    for hierarchy in [cgroup_root, *(p for p in cgroup_root.iterdir() if p.is_dir())]:
        for name in TEST_CGROUP_PARENTS:
            _remove_empty_tree(hierarchy / name)
    _remove_empty_tree(TEST_RUNTIME_PARENT)
    _remove_test_networks()


def _remove_test_networks() -> None:
    """Default bridges this session's test daemons used (tests/netclean.py) and their
    nftables tables, should a daemon's own cleanup have been cut short."""
    from netclean import HANDED_OUT

    for bridge in sorted(HANDED_OUT):
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", f"moorage_{bridge}"], capture_output=True)


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if busybox_binary() is None:
        pytest.skip("busybox-static is not installed")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def runtime_root() -> Iterator[Path]:
    """A private --root for moor-runtime; every container left in it is force-deleted."""
    root = TEST_RUNTIME_PARENT / uuid.uuid4().hex[:10]
    root.mkdir(parents=True)
    try:
        yield root
    finally:
        for name in os.listdir(root):
            subprocess.run(
                [moor_runtime(), "--root", str(root), "delete", "--force", name],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


def moor_runtime() -> str:
    return str(Path(sys.executable).parent / "moor-runtime")
