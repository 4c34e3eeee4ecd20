"""The cgroup managers on this machine's real cgroup hierarchies (root only).

Each test works in its own ``/moorage-test-<random>`` cgroup; fixtures thaw, kill and
remove everything they made, even when the test fails, and put back any controller the
v2 manager enabled in the v2 root.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from moorage.errors import FailedPrecondition, MoorageError
from moorage.runtime.cgroups import CgroupManager, CgroupResources, new_manager
from moorage.sys.cgroupfs import CgroupFS, CgroupMounts, find_mounts

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root"),
]


def _mounts() -> CgroupMounts:
    try:
        mounts = find_mounts()
        _ = mounts.mode
    except FailedPrecondition as exc:
        pytest.skip(f"no cgroup filesystem: {exc}")
    return mounts


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    return raw[raw.rindex(")") + 2 :].split()[0]


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@dataclass
class Cgroup:
    """A test's cgroup and the processes it started."""

    manager: CgroupManager
    path: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *argv: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv or ("sleep", "1000"), stdin=stdin)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        m = self.manager
        # A frozen v1 task cannot die, so thaw before killing anything.
        try:
            if m.exists() and m.is_frozen():
                m.thaw()
        except MoorageError:
            pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        try:
            if m.exists():
                m.kill_all(signal.SIGKILL)
        except MoorageError:
            pass
        for proc in self.procs:
            proc.wait(timeout=30)
        try:
            m.destroy()
        except MoorageError:
            # Last resort so no directory outlives the test run.
            for directory in sorted(set(m.paths().values()), key=len, reverse=True):
                for dirpath, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
            raise


def _unique_path() -> str:
    return f"/moorage-test-{secrets.token_hex(4)}"


@pytest.fixture
def v1() -> Iterator[Cgroup]:
    mounts = _mounts()
    if mounts.mode == "v2":
        pytest.skip("this machine has no cgroup v1 hierarchies (cgroup v2 only)")
    path = _unique_path()
    cgroup = Cgroup(new_manager(path, "test", timeout=10), path)
    try:
        cgroup.manager.create()
        yield cgroup
    finally:
        cgroup.cleanup()


@pytest.fixture
def v2() -> Iterator[Cgroup]:
    mounts = _mounts()
    if mounts.v2 is None:
        pytest.skip("cgroup v2 is not mounted on this machine")
    top = f"{mounts.v2.mountpoint}/cgroup.subtree_control"
    before = set(_read(top).split())
    path = _unique_path()
    cgroup = Cgroup(new_manager(path, "test", mode="v2", timeout=10), path)
    try:
        cgroup.manager.create()
        yield cgroup
    finally:
        try:
            cgroup.cleanup()
        finally:
            # The manager enables controllers in the v2 root as runc does; a test must
            # leave the machine as it found it.
            added = set(_read(top).split()) - before
            if added:
                CgroupFS().write(top, " ".join(f"-{c}" for c in sorted(added)))


def _v2_available(cgroup: Cgroup, controller: str) -> None:
    mount = find_mounts().v2
    assert mount is not None
    if controller not in _read(f"{mount.mountpoint}/cgroup.controllers").split():
        pytest.skip(f'cgroup v2 controller "{controller}" is not available on this machine')


# --- v1 (also hybrid) -----------------------------------------------------------------------


def test_v1_create_makes_every_hierarchy_directory(v1: Cgroup) -> None:
    paths = v1.manager.paths()

    assert "memory" in paths
    assert all(os.path.isdir(p) for p in paths.values())
    assert all(p.endswith(v1.path) for p in paths.values())


def test_v1_join_moves_a_process_into_every_hierarchy(v1: Cgroup) -> None:
    proc = v1.spawn()

    v1.manager.join(proc.pid)

    with open(f"/proc/{proc.pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert all(line.endswith(":" + v1.path) for line in lines if line.split(":")[1])
    assert v1.manager.pids() == [proc.pid]


def test_v1_apply_writes_limits_the_kernel_keeps(v1: Cgroup) -> None:
    paths = v1.manager.paths()
    memsw = os.path.exists(f"{paths['memory']}/memory.memsw.limit_in_bytes")
    memory = {"limit": 64 << 20, **({"swap": 128 << 20} if memsw else {})}
    resources = CgroupResources.from_oci(
        {"memory": memory, "cpu": {"quota": 50000, "period": 100000}, "pids": {"limit": 20}}
    )
    v1.manager.join(v1.spawn().pid)

    v1.manager.apply(resources)

    assert _read(f"{paths['memory']}/memory.limit_in_bytes") == str(64 << 20)
    if memsw:
        assert _read(f"{paths['memory']}/memory.memsw.limit_in_bytes") == str(128 << 20)
    assert _read(f"{paths['cpu']}/cpu.cfs_quota_us") == "50000"
    assert _read(f"{paths['cpu']}/cpu.cfs_period_us") == "100000"
    assert _read(f"{paths['pids']}/pids.max") == "20"
    stats = v1.manager.stats()
    assert stats.memory_limit == 64 << 20
    assert stats.pids_current == 1
    assert stats.pids_limit == 20


def test_v1_memory_can_be_lowered_and_raised_with_swap(v1: Cgroup) -> None:
    memory_dir = v1.manager.paths()["memory"]
    if not os.path.exists(f"{memory_dir}/memory.memsw.limit_in_bytes"):
        pytest.skip("swap accounting is off: no memory.memsw.limit_in_bytes")

    for limit, swap in ((256 << 20, 512 << 20), (32 << 20, 48 << 20), (128 << 20, 256 << 20)):
        v1.manager.apply(CgroupResources.from_oci({"memory": {"limit": limit, "swap": swap}}))

        assert _read(f"{memory_dir}/memory.limit_in_bytes") == str(limit)
        assert _read(f"{memory_dir}/memory.memsw.limit_in_bytes") == str(swap)


def test_v1_freeze_stops_the_process_and_thaw_resumes_it(v1: Cgroup) -> None:
    if "freezer" not in v1.manager.paths():
        pytest.skip("the v1 freezer controller is not mounted")
    proc = v1.spawn()
    v1.manager.join(proc.pid)

    v1.manager.freeze()

    assert v1.manager.is_frozen()
    assert _proc_state(proc.pid) == "D"  # frozen tasks sleep uninterruptibly

    v1.manager.thaw()

    assert not v1.manager.is_frozen()
    assert _eventually(lambda: _proc_state(proc.pid) == "S")


def test_v1_kill_all_kills_every_process(v1: Cgroup) -> None:
    procs = [v1.spawn(), v1.spawn()]
    for proc in procs:
        v1.manager.join(proc.pid)

    v1.manager.kill_all(signal.SIGKILL)

    assert [proc.wait(timeout=10) for proc in procs] == [-signal.SIGKILL, -signal.SIGKILL]
    assert v1.manager.pids() == []


def test_v1_kill_all_sends_the_given_signal(v1: Cgroup) -> None:
    proc = v1.spawn()
    v1.manager.join(proc.pid)

    v1.manager.kill_all(signal.SIGTERM)

    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_v1_destroy_right_after_kill_leaves_no_directory(v1: Cgroup) -> None:
    proc = v1.spawn()
    v1.manager.join(proc.pid)
    v1.manager.kill_all(signal.SIGKILL)

    v1.manager.destroy()  # the process may still be exiting: destroy waits for it

    assert not v1.manager.exists()
    assert all(not os.path.exists(p) for p in v1.manager.paths().values())


def test_v1_oom_kill_is_counted(v1: Cgroup) -> None:
    memory_dir = v1.manager.paths()["memory"]
    memory = {"limit": 16 << 20}
    if os.path.exists(f"{memory_dir}/memory.memsw.limit_in_bytes"):
        memory["swap"] = 16 << 20  # no escape into swap
    v1.manager.apply(CgroupResources.from_oci({"memory": memory}))
    # The child waits for a line on stdin so that it allocates only once it is inside.
    hog = v1.spawn(
        sys.executable,
        "-c",
        "import sys; sys.stdin.readline(); data = b'x' * (64 << 20); print(len(data))",
        stdin=subprocess.PIPE,
    )
    v1.manager.join(hog.pid)
    assert hog.stdin is not None

    hog.stdin.write(b"go\n")
    hog.stdin.close()

    assert hog.wait(timeout=60) == -signal.SIGKILL
    assert v1.manager.oom_kill_count() >= 1


# --- v2 ---------------------------------------------------------------------------------------


def test_v2_create_join_destroy(v2: Cgroup) -> None:
    directory = v2.manager.paths()[""]
    proc = v2.spawn()

    v2.manager.join(proc.pid)

    assert os.path.isdir(directory)
    with open(f"/proc/{proc.pid}/cgroup") as f:
        assert f"0::{v2.path}" in f.read().splitlines()
    assert v2.manager.pids() == [proc.pid]

    v2.manager.kill_all(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    v2.manager.destroy()

    assert not os.path.exists(directory)


def test_v2_freeze_and_thaw(v2: Cgroup) -> None:
    proc = v2.spawn()
    v2.manager.join(proc.pid)

    v2.manager.freeze()
    frozen = v2.manager.is_frozen()
    v2.manager.thaw()

    assert frozen
    assert not v2.manager.is_frozen()
    assert proc.poll() is None


def test_v2_kill_all_with_another_signal(v2: Cgroup) -> None:
    proc = v2.spawn()
    v2.manager.join(proc.pid)

    v2.manager.kill_all(signal.SIGTERM)

    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert not v2.manager.is_frozen()


def test_v2_memory_limit(v2: Cgroup) -> None:
    _v2_available(v2, "memory")

    v2.manager.apply(CgroupResources.from_oci({"memory": {"limit": 64 << 20}}))

    assert _read(f"{v2.manager.paths()['']}/memory.max") == str(64 << 20)


def test_v2_pids_limit(v2: Cgroup) -> None:
    _v2_available(v2, "pids")

    v2.manager.apply(CgroupResources.from_oci({"pids": {"limit": 20}}))

    assert _read(f"{v2.manager.paths()['']}/pids.max") == "20"


def test_v2_cpu_quota(v2: Cgroup) -> None:
    _v2_available(v2, "cpu")

    v2.manager.apply(CgroupResources.from_oci({"cpu": {"quota": 50000, "period": 100000}}))

    assert _read(f"{v2.manager.paths()['']}/cpu.max") == "50000 100000"


def test_v2_hugetlb_limit(v2: Cgroup) -> None:
    _v2_available(v2, "hugetlb")
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("this machine has no 2MB huge pages")

    v2.manager.apply(
        CgroupResources.from_oci({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    )

    assert _read(f"{v2.manager.paths()['']}/hugetlb.2MB.max") == str(4 << 20)


def test_v2_missing_controller_is_reported(v2: Cgroup) -> None:
    mount = find_mounts().v2
    assert mount is not None
    if "memory" in _read(f"{mount.mountpoint}/cgroup.controllers").split():
        pytest.skip('cgroup v2 controller "memory" is available here')

    with pytest.raises(FailedPrecondition, match='^cgroup v2 controller "memory" is not'):
        v2.manager.apply(CgroupResources.from_oci({"memory": {"limit": 64 << 20}}))


def test_priming_the_attach_path_leaves_the_process_where_it_was() -> None:
    from moorage.sys.cgroupfs import prime_attach, read_proc_cgroup

    before = read_proc_cgroup()
    assert prime_attach()
    assert read_proc_cgroup() == before


def test_priming_in_the_background_returns_at_once_and_primes_once_at_a_time() -> None:
    import threading

    from moorage.runtime.cgroups import primer

    primer.prime_cgroup_attach()
    primer.prime_cgroup_attach()  # while the first runs: shares it
    running = [t for t in threading.enumerate() if t.name == "cgroup-primer"]
    assert len(running) <= 1
    for thread in running:
        thread.join(timeout=10)
    assert not primer._running.locked()
