"""The runtime's in-process API, as the engine will use it: a warm zygote serves the stages."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundles import make_bundle
from moorage.runtime import api, spawn

pytestmark = pytest.mark.root


@pytest.fixture
def zygote() -> Iterator[spawn.Zygote]:
    api.become_subreaper()
    z = api.start_zygote()
    try:
        yield z
    finally:
        api.stop_zygote()
        api.become_subreaper(False)
        _reap_adopted()


def _reap_adopted() -> None:
    """Reap whatever this (pytest) process adopted while it was a subreaper."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def test_the_zygote_serves_every_stage(
    zygote: spawn.Zygote, runtime_root: Path, tmp_path: Path, busybox_template: Path
) -> None:
    bundle = make_bundle(tmp_path / "b", ["sh", "-c", "exit 7"], template=busybox_template)
    opts = api.CreateOptions(bundle=str(bundle), stdout=subprocess.DEVNULL)
    codes = [api.run(str(runtime_root), f"z{i}", opts) for i in range(3)]
    assert codes == [7, 7, 7]
    assert zygote.spawned == 3


def test_exec_through_the_zygote_passes_stdio(
    zygote: spawn.Zygote, runtime_root: Path, tmp_path: Path, busybox_template: Path
) -> None:
    bundle = make_bundle(tmp_path / "b", ["sleep", "1000"], template=busybox_template)
    root = str(runtime_root)
    api.create(root, "c1", api.CreateOptions(bundle=str(bundle), stdout=subprocess.DEVNULL))
    api.start(root, "c1")
    out = tmp_path / "out"
    with open(out, "wb") as f:
        pid = api.exec_process(
            root,
            "c1",
            api.ExecOptions(
                process={
                    "args": ["sh", "-c", "echo hello; hostname"],
                    "cwd": "/",
                    "user": {"uid": 0, "gid": 0},
                },
                stdout=f,
            ),
        )
        assert api.wait_child(pid) == 0
    assert out.read_text().splitlines()[0] == "hello"
    assert zygote.spawned == 2
    api.delete(root, "c1", force=True)


def test_a_dead_zygote_falls_back_to_fresh_stages(
    zygote: spawn.Zygote, runtime_root: Path, tmp_path: Path, busybox_template: Path
) -> None:
    bundle = make_bundle(tmp_path / "b", ["true"], template=busybox_template)
    zygote._proc.kill()
    zygote._proc.wait()
    opts = api.CreateOptions(bundle=str(bundle), stdout=subprocess.DEVNULL)
    assert api.run(str(runtime_root), "after", opts) == 0


def _open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue  # the listing's own descriptor
    return found


def test_many_containers_leak_no_descriptor(
    zygote: spawn.Zygote, runtime_root: Path, tmp_path: Path, busybox_template: Path
) -> None:
    bundle = make_bundle(tmp_path / "b", ["true"], template=busybox_template)
    opts = api.CreateOptions(bundle=str(bundle), stdout=subprocess.DEVNULL)
    api.run(str(runtime_root), "warm", opts)  # first use caches the seccomp program
    before = _open_fds()
    for i in range(10):
        assert api.run(str(runtime_root), f"c{i}", opts) == 0
    assert {fd: t for fd, t in _open_fds().items() if fd not in before} == {}
