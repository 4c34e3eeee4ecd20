"""`moor build` pulls a base it lacks from its registry, and `--pull` looks for a newer
one (issue 6 with the registry client of issue 7): against the CNCF distribution
registry on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import Daemon, running_daemon
from distribution_registry import DistributionRegistry, available

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not available(), reason="docker-registry is not installed"),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    r = DistributionRegistry(tmp_path_factory.mktemp("distribution"))
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("build-pull") / "moor", busybox=True) as d:
        yield d


def _context(tmp_path: Path, base: str, marker: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN cat /version > /seen && echo {marker}\n")
    return ctx


def test_a_missing_base_is_pulled_and_pull_finds_a_newer_one(
    daemon: Daemon, registry: DistributionRegistry, tmp_path: Path
) -> None:
    base = f"{registry.host}/bases/tiny:1"
    one = tmp_path / "one"
    one.mkdir()
    (one / "Dockerfile").write_text("FROM busybox\nRUN echo one > /version\n")
    daemon.moor("build", "-t", base, str(one))
    daemon.moor("push", base)
    daemon.moor("rmi", base)

    built = daemon.moor("build", "-t", "pulled:1", str(_context(tmp_path, base, "first")))

    assert b"first" in built.stdout
    assert daemon.moor("run", "--rm", "pulled:1", "cat", "/seen").stdout == b"one\n"
    assert daemon.moor("image", "inspect", base, check=False).returncode == 0

    two = tmp_path / "two"
    two.mkdir()
    (two / "Dockerfile").write_text("FROM busybox\nRUN echo two > /version\n")
    daemon.moor("build", "-t", base, str(two))
    daemon.moor("push", base)
    daemon.moor("tag", "pulled:1", base)  # the local base is the old one again

    again = tmp_path / "again"
    again.mkdir()
    rebuilt = daemon.moor("build", "--pull", "-t", "pulled:2", str(_context(again, base, "second")))

    assert b"second" in rebuilt.stdout
    assert daemon.moor("run", "--rm", "pulled:2", "cat", "/seen").stdout == b"two\n"
    daemon.moor("rmi", "pulled:1", "pulled:2", base)


def test_a_base_that_no_registry_has_fails_clearly(daemon: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "127.0.0.1:1/nothing/here:1", "never")

    failed = daemon.moor("build", str(ctx), check=False)

    assert failed.returncode == 1
    assert b"Dockerfile:1" in failed.stderr
    assert b"pulling 127.0.0.1:1/nothing/here:1" in failed.stderr
