"""Fixtures shared by every test folder."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if busybox_binary() is None:
        pytest.skip("busybox-static is not installed")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def runtime_root() -> Iterator[Path]:
    """A private --root for moor-runtime; every container left in it is force-deleted."""
    root = Path(f"/run/moor-runtime-test/{uuid.uuid4().hex[:10]}")
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
