"""The cgroup managers and cgroupfs against a fake cgroup tree in tmp_path (no root needed).

FakeKernel builds <tmp>/proc/self/{mountinfo,cgroup} and <tmp>/sys/fs/cgroup/... with the
files a kernel would show, and through RecordingCgroupFS hooks it behaves like one where
the managers depend on it: new directories get their files, cgroup.subtree_control
hands controllers to children, memory+swap must stay >= memory, cgroup.procs appends.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from moorage.runtime.cgroups.manager import (
    CgroupManager,
    CgroupStats,
    HierarchyDir,
    new_manager,
    normalize_cgroups_path,
)
from moorage.runtime.cgroups.resources import CgroupResources
from moorage.runtime.cgroups.v2 import blkio_weight_to_io_weight, shares_to_weight, swap_to_v2
from moorage.sys.cgroupfs import (
    CgroupFS,
    RecordingCgroupFS,
    cgroup_mode,
    find_mounts,
    parse_mountinfo,
    parse_proc_cgroup,
)

MAX = "9223372036854771712"

V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_period_us": "100000",
        "cpu.idle": "0",
    },
    "cpuacct": {"cpuacct.usage": "123456789"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.limit_in_bytes": MAX,
        "memory.memsw.limit_in_bytes": MAX,
        "memory.soft_limit_in_bytes": MAX,
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.usage_in_bytes": "4096",
        "memory.max_usage_in_bytes": "8192",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.bfq.weight": "100"},
    "pids": {"pids.max": "max", "pids.current": "1"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": MAX},
    "name=systemd": {},
}

V2_FILES: dict[str, dict[str, str]] = {
    "memory": {
        "memory.max": "max",
        "memory.low": "0",
        "memory.swap.max": "max",
        "memory.current": "4096",
        "memory.peak": "8192",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 1\noom_kill 3\noom_group_kill 0\n",
    },
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.weight": "default 100"},
    "pids": {"pids.max": "max", "pids.current": "1"},
    "hugetlb": {"hugetlb.2MB.max": "max"},
}

# hierarchy (as mounted, comma-joined controllers) -> directory name under /sys/fs/cgroup
HYBRID_V1 = {
    "cpu,cpuacct": "cpu,cpuacct",
    "cpuset": "cpuset",
    "memory": "memory",
    "devices": "devices",
    "freezer": "freezer",
    "blkio": "blkio",
    "pids": "pids",
    "name=systemd": "systemd",
}


class FakeKernel:
    """A cgroup tree under ``root`` that reacts to writes the way the kernel does."""

    def __init__(
        self,
        root: Path,
        *,
        v1: dict[str, str] | None = None,
        v2_at: str | None = None,
        v2_controllers: str = "",
        own: dict[str, str] | None = None,
        memsw: bool = True,
        mount_roots: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.v1 = v1 or {}
        self.memsw = memsw
        self.v1_mounts: dict[str, tuple[str, ...]] = {}  # host mountpoint -> controllers
        self.v2_mount: str | None = None
        own = own or {}
        mount_roots = mount_roots or {}
        info: list[str] = ["20 1 0:1 / / rw - ext4 /dev/root rw"]
        cgroup: list[str] = []
        mid = 30
        for hier_id, (group, name) in enumerate(self.v1.items(), start=1):
            mid += 1
            kernel_path = f"/sys/fs/cgroup/{name}"
            mroot = mount_roots.get(group, "/")
            info.append(
                f"{mid} 21 0:{mid} {mroot} {kernel_path} rw,relatime - cgroup cgroup rw,{group}"
            )
            cgroup.append(f"{hier_id}:{group}:{own.get(group, '/')}")
            host = self.host(kernel_path)
            self.v1_mounts[host] = tuple(group.split(","))
            self._populate_v1(host, top=True)
        if v2_at is not None:
            info.append(f"99 21 0:99 / {v2_at} rw,relatime - cgroup2 cgroup2 rw")
            cgroup.append(f"0::{own.get('', '/')}")
            self.v2_mount = self.host(v2_at)
            os.makedirs(self.v2_mount, exist_ok=True)
            self._write(f"{self.v2_mount}/cgroup.controllers", v2_controllers)
            self._write(f"{self.v2_mount}/cgroup.subtree_control", "")
            self._write(f"{self.v2_mount}/cgroup.procs", "1")
            self._write(f"{self.v2_mount}/cpu.stat", "usage_usec 0\n")
        self._write(self.host("/proc/self/mountinfo"), "\n".join(info) + "\n")
        self._write(self.host("/proc/self/cgroup"), "\n".join(cgroup) + "\n")
        self.fs = RecordingCgroupFS(root)
        self.fs.on_mkdir.append(self._on_mkdir)
        self.fs.on_write.append(self._on_write)

    def host(self, kernel_path: str) -> str:
        return str(self.root) + kernel_path

    @staticmethod
    def _write(path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    @staticmethod
    def read(path: str) -> str:
        with open(path) as f:
            return f.read().strip()

    def _hierarchy(self, path: str) -> str | None:
        for mount in [*self.v1_mounts, self.v2_mount]:
            if mount is not None and (path == mount or path.startswith(mount + "/")):
                return mount
        return None

    def _populate_v1(self, path: str, *, top: bool = False) -> None:
        mount = self._hierarchy(path) if not top else path
        assert mount is not None
        files = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0"}
        for controller in self.v1_mounts[mount]:
            files.update(V1_FILES[controller])
        if not self.memsw:
            files.pop("memory.memsw.limit_in_bytes", None)
        if top and "cpuset.cpus" in files:
            files.update({"cpuset.cpus": "0-3", "cpuset.mems": "0"})
        for name, text in files.items():
            self._write(f"{path}/{name}", text)

    def _populate_v2(self, path: str, controllers: list[str]) -> None:
        for name, text in {
            "cgroup.controllers": " ".join(controllers),
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
            "cgroup.events": "populated 0\nfrozen 0\n",
            "cgroup.freeze": "0",
            "cgroup.kill": "",
            "cgroup.max.descendants": "max",
            "cpu.stat": "usage_usec 7\nuser_usec 5\nsystem_usec 2\n",
        }.items():
            self._write(f"{path}/{name}", text)
        self._give_controllers(path, controllers)

    def _give_controllers(self, path: str, controllers: list[str]) -> None:
        self._write(f"{path}/cgroup.controllers", " ".join(controllers))
        for controller in controllers:
            for name, text in V2_FILES.get(controller, {}).items():
                if not os.path.exists(f"{path}/{name}"):
                    self._write(f"{path}/{name}", text)

    def _on_mkdir(self, path: str) -> None:
        mount = self._hierarchy(path)
        if mount == self.v2_mount:
            parent = os.path.dirname(path)
            self._populate_v2(path, self.read(f"{parent}/cgroup.subtree_control").split())
        else:
            self._populate_v1(path)

    def _on_write(self, path: str, value: str) -> str | None:
        directory, name = os.path.split(path)
        if name == "cgroup.procs":
            current = self.read(path)
            return f"{current}\n{value}" if current else value
        if name == "cgroup.subtree_control":
            available = self.read(f"{directory}/cgroup.controllers").split()
            enabled = self.read(path).split()
            for word in value.split():
                if word[1:] not in available:
                    raise InvalidArgument(f'{path}: no such file or directory writing "{value}"')
                if word[0] == "+" and word[1:] not in enabled:
                    enabled.append(word[1:])
                elif word[0] == "-" and word[1:] in enabled:
                    enabled.remove(word[1:])
            for entry in os.scandir(directory):
                if entry.is_dir():
                    self._give_controllers(entry.path, enabled)
            return " ".join(enabled)
        if name == "cgroup.freeze":
            self._write(f"{directory}/cgroup.events", f"populated 1\nfrozen {value}\n")
        if name == "cgroup.kill":
            self._write(f"{directory}/cgroup.procs", "")
        if name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            return self._memory_limit(directory, name, value)
        return None

    def _memory_limit(self, directory: str, name: str, value: str) -> str:
        shown = MAX if value == "-1" else value
        memsw_path = f"{directory}/memory.memsw.limit_in_bytes"
        limit = int(self.read(f"{directory}/memory.limit_in_bytes"))
        memsw = int(self.read(memsw_path)) if os.path.exists(memsw_path) else None
        new = int(shown)
        if name == "memory.limit_in_bytes" and memsw is not None and new > memsw:
            raise InvalidArgument(f'{directory}/{name}: invalid argument writing "{value}"')
        if name == "memory.memsw.limit_in_bytes" and new < limit:
            raise InvalidArgument(f'{directory}/{name}: invalid argument writing "{value}"')
        return shown


def hybrid(tmp_path: Path, **kwargs: object) -> FakeKernel:
    return FakeKernel(
        tmp_path,
        v1=HYBRID_V1,
        v2_at="/sys/fs/cgroup/unified",
        v2_controllers="hugetlb",
        **kwargs,  # type: ignore[arg-type]
    )


def unified(tmp_path: Path, controllers: str = "cpu cpuset io memory pids hugetlb") -> FakeKernel:
    return FakeKernel(tmp_path, v2_at="/sys/fs/cgroup", v2_controllers=controllers)


@pytest.fixture
def hybrid_kernel(tmp_path: Path) -> FakeKernel:
    return hybrid(tmp_path)


@pytest.fixture
def v2_kernel(tmp_path: Path) -> FakeKernel:
    return unified(tmp_path)


def cg(kernel: FakeKernel, path: str) -> str:
    return kernel.host("/sys/fs/cgroup" + path)


# --- cgroupfs: mounts, modes, /proc/<pid>/cgroup -------------------------------------------------

HOST_MOUNTINFO = """\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
35 31 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
36 1 0:33 / /mnt/with\\040space rw - cgroup cgroup rw,pids
"""


def test_mountinfo_gives_v1_controllers_comounts_and_the_v2_mount() -> None:
    mounts = parse_mountinfo(HOST_MOUNTINFO)

    assert mounts.v1["cpu"].mountpoint == "/sys/fs/cgroup/cpu,cpuacct"
    assert mounts.v1["cpuacct"] is mounts.v1["cpu"]
    assert mounts.v1["cpu"].controllers == ("cpu", "cpuacct")
    assert mounts.v1["name=systemd"].controllers == ("name=systemd",)
    assert mounts.v1["pids"].mountpoint == "/mnt/with space"
    assert mounts.v2 is not None
    assert mounts.v2.mountpoint == "/sys/fs/cgroup/unified"
    assert mounts.mode == "hybrid"


def test_mountinfo_prefixes_mountpoints_with_the_root() -> None:
    mounts = parse_mountinfo(HOST_MOUNTINFO, "/fake")

    assert mounts.v1["memory"].mountpoint == "/fake/sys/fs/cgroup/memory"


@pytest.mark.parametrize(
    ("lines", "mode"),
    [
        (["1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw"], "v2"),
        (["1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"], "v1"),
        (
            [
                "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw",
                "2 0 0:2 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd",
            ],
            "v2",
        ),
    ],
)
def test_cgroup_mode_from_the_mounts(tmp_path: Path, lines: list[str], mode: str) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("\n".join(lines) + "\n")

    assert cgroup_mode(tmp_path) == mode


def test_no_cgroup_mount_is_a_failed_precondition(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("1 0 0:1 / / rw - ext4 /dev/sda rw\n")

    with pytest.raises(FailedPrecondition, match="^no cgroup hierarchy is mounted$"):
        cgroup_mode(tmp_path)


def test_find_mounts_reads_the_fake_root(hybrid_kernel: FakeKernel) -> None:
    mounts = find_mounts(hybrid_kernel.root)

    assert mounts.v1["memory"].mountpoint == cg(hybrid_kernel, "/memory")
    assert mounts.mode == "hybrid"


def test_proc_cgroup_lines_parse_v1_and_v2() -> None:
    entries = parse_proc_cgroup("4:memory:/process_api/x\n1:cpu,cpuacct:/\n0::/user.slice\n")

    assert [(e.hierarchy_id, e.controllers, e.path) for e in entries] == [
        (4, ("memory",), "/process_api/x"),
        (1, ("cpu", "cpuacct"), "/"),
        (0, (), "/user.slice"),
    ]


def test_proc_cgroup_of_a_missing_process_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="^no such process: 4242$"):
        CgroupFS(tmp_path).proc_cgroups(4242)


def test_write_to_a_missing_file_is_not_found_and_creates_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "memory.max")

    with pytest.raises(NotFound, match="^no such cgroup file: .*/memory.max$"):
        CgroupFS(tmp_path).write(path, "1")
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (errno.EINVAL, InvalidArgument, "invalid argument"),
        (errno.EBUSY, InvalidArgument, "device or resource busy"),
        (errno.EACCES, PermissionDenied, "permission denied"),
        (errno.ENOSPC, FailedPrecondition, "no space left on device"),
    ],
)
def test_refused_writes_name_the_file_and_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, kind: type, reason: str
) -> None:
    path = tmp_path / "memory.limit_in_bytes"
    path.write_text("0")

    def refuse(fd: int, data: bytes) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", refuse)

    with pytest.raises(kind) as excinfo:
        CgroupFS(tmp_path).write(str(path), "5")
    assert str(excinfo.value) == f'{path}: {reason} writing "5"'


# --- path rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/moorage/c1"),
        ("", "/moorage/c1"),
        ("/a/b", "/a/b"),
        ("/a//./b/", "/a/b"),
        ("a/b", "a/b"),
    ],
)
def test_cgroups_path_normalization(given: str | None, expected: str) -> None:
    assert normalize_cgroups_path(given, "c1") == expected


def test_systemd_paths_are_not_supported() -> None:
    with pytest.raises(
        NotSupported, match="^systemd cgroup driver is not supported: system.slice:moor:c1$"
    ):
        normalize_cgroups_path("system.slice:moor:c1", "c1")


@pytest.mark.parametrize("given", ["/a/../b", "../b", "a/.."])
def test_dot_dot_is_refused(given: str) -> None:
    with pytest.raises(InvalidArgument, match='must not contain ".."'):
        normalize_cgroups_path(given, "c1")


@pytest.mark.parametrize("given", ["/", ".", "//"])
def test_a_path_naming_no_cgroup_of_its_own_is_refused(given: str) -> None:
    with pytest.raises(InvalidArgument, match="names no cgroup of its own"):
        normalize_cgroups_path(given, "c1")


def test_an_id_that_is_no_directory_name_is_refused() -> None:
    with pytest.raises(InvalidArgument, match='^container id cannot name a cgroup: "a/b"$'):
        normalize_cgroups_path(None, "a/b")


def test_absolute_path_is_below_each_hierarchy_root(hybrid_kernel: FakeKernel) -> None:
    m = new_manager("/box/c1", "c1", root=hybrid_kernel.fs)

    paths = m.paths()

    assert paths["memory"] == cg(hybrid_kernel, "/memory/box/c1")
    assert paths["cpu"] == paths["cpuacct"] == cg(hybrid_kernel, "/cpu,cpuacct/box/c1")
    assert paths["name=systemd"] == cg(hybrid_kernel, "/systemd/box/c1")
    assert paths[""] == cg(hybrid_kernel, "/unified/box/c1")


def test_relative_path_is_below_the_callers_own_cgroups(tmp_path: Path) -> None:
    kernel = hybrid(tmp_path, own={"memory": "/process_api/abc", "": "/session"})
    m = new_manager("box/c1", "c1", root=kernel.fs)

    paths = m.paths()

    assert paths["memory"] == cg(kernel, "/memory/process_api/abc/box/c1")
    assert paths["pids"] == cg(kernel, "/pids/box/c1")
    assert paths[""] == cg(kernel, "/unified/session/box/c1")


def test_relative_path_skips_the_part_a_subtree_mount_already_shows(tmp_path: Path) -> None:
    kernel = FakeKernel(
        tmp_path,
        v1={"memory": "memory"},
        own={"memory": "/docker/abc/app"},
        mount_roots={"memory": "/docker/abc"},
    )

    m = new_manager("c1", "c1", root=kernel.fs)

    assert m.paths()["memory"] == cg(kernel, "/memory/app/c1")


def test_root_may_be_a_plain_prefix(hybrid_kernel: FakeKernel) -> None:
    m = new_manager(None, "c1", root=str(hybrid_kernel.root))

    assert m.paths()["memory"] == cg(hybrid_kernel, "/memory/moorage/c1")


def test_forcing_v2_without_a_v2_mount_fails(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path, v1={"memory": "memory"})

    with pytest.raises(FailedPrecondition, match="^cgroup v2 is not mounted$"):
        new_manager(None, "c1", mode="v2", root=kernel.fs)


def test_pure_v1_has_no_unified_directory(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path, v1={"memory": "memory"})

    assert "" not in new_manager(None, "c1", root=kernel.fs).paths()


# --- v1 --------------------------------------------------------------------------------------


@pytest.fixture
def v1(hybrid_kernel: FakeKernel) -> Iterator[tuple[FakeKernel, CgroupManager]]:
    m = new_manager("/moorage/c1", "c1", root=hybrid_kernel.fs, timeout=0.2)
    m.create()
    return hybrid_kernel, m


def test_v1_create_makes_one_directory_per_hierarchy(hybrid_kernel: FakeKernel) -> None:
    m = new_manager("/moorage/c1", "c1", root=hybrid_kernel.fs)

    m.create()

    created = {c[1] for c in hybrid_kernel.fs.calls if c[0] == "mkdir"}
    assert cg(hybrid_kernel, "/cpu,cpuacct/moorage/c1") in created
    assert cg(hybrid_kernel, "/systemd/moorage/c1") in created
    assert cg(hybrid_kernel, "/unified/moorage/c1") in created
    assert len([p for p in created if p.endswith("/moorage/c1")]) == len(HYBRID_V1) + 1
    assert m.exists()


def test_v1_create_copies_cpuset_down_from_the_parent(hybrid_kernel: FakeKernel) -> None:
    m = new_manager("/moorage/c1", "c1", root=hybrid_kernel.fs)

    m.create()

    for d in ("/cpuset/moorage", "/cpuset/moorage/c1"):
        assert hybrid_kernel.read(cg(hybrid_kernel, d) + "/cpuset.cpus") == "0-3"
        assert hybrid_kernel.read(cg(hybrid_kernel, d) + "/cpuset.mems") == "0"


def test_v1_create_keeps_a_parent_cpuset_that_is_set(hybrid_kernel: FakeKernel) -> None:
    parent = cg(hybrid_kernel, "/cpuset/moorage")
    hybrid_kernel.fs.mkdir(parent)
    hybrid_kernel.fs.write(parent + "/cpuset.cpus", "1")
    hybrid_kernel.fs.write(parent + "/cpuset.mems", "0")

    new_manager("/moorage/c1", "c1", root=hybrid_kernel.fs).create()

    assert hybrid_kernel.read(parent + "/c1/cpuset.cpus") == "1"


def test_v1_create_does_not_enable_v2_controllers_in_hybrid(hybrid_kernel: FakeKernel) -> None:
    new_manager("/moorage/c1", "c1", root=hybrid_kernel.fs).create()

    assert not [p for p, _ in hybrid_kernel.fs.writes() if p.endswith("subtree_control")]


def test_v1_join_writes_the_pid_once_per_hierarchy(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1

    m.join(4321)

    procs = [p for p, v in kernel.fs.writes() if p.endswith("/cgroup.procs") and v == "4321"]
    assert len(procs) == len(HYBRID_V1) + 1
    assert m.pids() == [4321]


def test_v1_raising_memory_writes_memsw_first(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    m.apply(CgroupResources.from_oci({"memory": {"limit": 100 << 20, "swap": 200 << 20}}))
    d = cg(kernel, "/memory/moorage/c1")
    before = len(kernel.fs.writes())

    m.apply(CgroupResources.from_oci({"memory": {"limit": 300 << 20, "swap": 400 << 20}}))

    assert kernel.fs.writes()[before:] == [
        (f"{d}/memory.memsw.limit_in_bytes", str(400 << 20)),
        (f"{d}/memory.limit_in_bytes", str(300 << 20)),
    ]


def test_v1_lowering_memory_writes_the_limit_first(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    m.apply(CgroupResources.from_oci({"memory": {"limit": 300 << 20, "swap": 400 << 20}}))
    d = cg(kernel, "/memory/moorage/c1")
    before = len(kernel.fs.writes())

    m.apply(CgroupResources.from_oci({"memory": {"limit": 50 << 20, "swap": 60 << 20}}))

    assert kernel.fs.writes()[before:] == [
        (f"{d}/memory.limit_in_bytes", str(50 << 20)),
        (f"{d}/memory.memsw.limit_in_bytes", str(60 << 20)),
    ]


def test_v1_limits_from_unlimited_set_both(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    d = cg(kernel, "/memory/moorage/c1")

    m.apply(CgroupResources.from_oci({"memory": {"limit": 64 << 20, "swap": 128 << 20}}))
    m.apply(CgroupResources.from_oci({"memory": {"limit": -1, "swap": -1}}))

    assert kernel.read(f"{d}/memory.limit_in_bytes") == MAX
    assert kernel.read(f"{d}/memory.memsw.limit_in_bytes") == MAX


def test_v1_memory_settings_go_to_their_files(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    d = cg(kernel, "/memory/moorage/c1")

    m.apply(
        CgroupResources.from_oci(
            {"memory": {"reservation": 1 << 20, "swappiness": 0, "disableOOMKiller": True}}
        )
    )

    assert kernel.read(f"{d}/memory.soft_limit_in_bytes") == str(1 << 20)
    assert kernel.read(f"{d}/memory.swappiness") == "0"
    assert kernel.fs.written(f"{d}/memory.oom_control") == ["1"]


def test_v1_swap_is_ignored_without_swap_accounting(tmp_path: Path) -> None:
    kernel = hybrid(tmp_path, memsw=False)
    m = new_manager("/moorage/c1", "c1", root=kernel.fs)
    m.create()
    d = cg(kernel, "/memory/moorage/c1")

    m.apply(CgroupResources.from_oci({"memory": {"limit": 64 << 20, "swap": 128 << 20}}))

    assert kernel.fs.writes()[-1] == (f"{d}/memory.limit_in_bytes", str(64 << 20))
    assert not os.path.exists(f"{d}/memory.memsw.limit_in_bytes")


def test_v1_cpu_writes_period_before_quota(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    d = cg(kernel, "/cpu,cpuacct/moorage/c1")

    m.apply(CgroupResources.from_oci({"cpu": {"shares": 512, "quota": 25000, "period": 50000}}))

    writes = [(os.path.basename(p), v) for p, v in kernel.fs.writes() if p.startswith(d)]
    assert writes == [
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "50000"),
        ("cpu.cfs_quota_us", "25000"),
    ]


def test_v1_cpuset_and_idle(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1

    m.apply(CgroupResources.from_oci({"cpu": {"cpus": "1-2", "mems": "0", "idle": 1}}))

    assert kernel.read(cg(kernel, "/cpuset/moorage/c1/cpuset.cpus")) == "1-2"
    assert kernel.read(cg(kernel, "/cpu,cpuacct/moorage/c1/cpu.idle")) == "1"


@pytest.mark.parametrize(("limit", "shown"), [(-1, "max"), (0, "max"), (32, "32")])
def test_v1_pids_max(v1: tuple[FakeKernel, CgroupManager], limit: int, shown: str) -> None:
    kernel, m = v1

    m.apply(CgroupResources.from_oci({"pids": {"limit": limit}}))

    assert kernel.read(cg(kernel, "/pids/moorage/c1/pids.max")) == shown


def test_v1_devices_deny_all_then_rules_in_order(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    d = cg(kernel, "/devices/moorage/c1")

    m.apply(
        CgroupResources.from_oci(
            {
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 136, "access": "rw"},
                    {"allow": False, "type": "c", "major": 136, "minor": 0, "access": "w"},
                ]
            }
        )
    )

    writes = [(os.path.basename(p), v) for p, v in kernel.fs.writes() if p.startswith(d)]
    assert writes == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rw"),
        ("devices.deny", "c 136:0 w"),
    ]


def test_v1_blkio_weight_falls_back_to_bfq(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1

    m.apply(CgroupResources.from_oci({"blockIO": {"weight": 300}}))

    assert kernel.read(cg(kernel, "/blkio/moorage/c1/blkio.bfq.weight")) == "300"


def test_v1_hugetlb_goes_to_the_unified_hierarchy_in_hybrid(
    v1: tuple[FakeKernel, CgroupManager],
) -> None:
    kernel, m = v1

    m.apply(CgroupResources.from_oci({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]}))

    assert kernel.read(cg(kernel, "/unified/cgroup.subtree_control")) == "hugetlb"
    assert kernel.read(cg(kernel, "/unified/moorage/cgroup.subtree_control")) == "hugetlb"
    assert kernel.read(cg(kernel, "/unified/moorage/c1/hugetlb.2MB.max")) == str(2 << 20)


def test_v1_unified_settings_go_to_the_unified_directory(
    v1: tuple[FakeKernel, CgroupManager],
) -> None:
    kernel, m = v1

    m.apply(CgroupResources(unified={"cgroup.max.descendants": "5"}))

    assert kernel.fs.writes()[-1] == (
        cg(kernel, "/unified/moorage/c1/cgroup.max.descendants"),
        "5",
    )


def test_v1_unified_without_v2_is_not_supported(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path, v1={"memory": "memory"})
    m = new_manager(None, "c1", root=kernel.fs)
    m.create()

    with pytest.raises(NotSupported, match="^linux.resources.unified needs cgroup v2"):
        m.apply(CgroupResources(unified={"memory.high": "1"}))


def test_v1_missing_controller_is_a_failed_precondition(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path, v1={"memory": "memory"})
    m = new_manager(None, "c1", root=kernel.fs)
    m.create()

    with pytest.raises(FailedPrecondition, match='^cgroup v1 controller "pids" is not mounted$'):
        m.apply(CgroupResources.from_oci({"pids": {"limit": 5}}))


def test_v1_kernel_refusal_names_the_file(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    d = cg(kernel, "/memory/moorage/c1")
    kernel.fs.write(f"{d}/memory.limit_in_bytes", str(5 << 20))  # set by someone else
    kernel.fs.write(f"{d}/memory.memsw.limit_in_bytes", str(10 << 20))

    with pytest.raises(InvalidArgument) as excinfo:
        m.apply(CgroupResources.from_oci({"memory": {"limit": 20 << 20}}))

    assert str(excinfo.value) == (
        f'{d}/memory.limit_in_bytes: invalid argument writing "{20 << 20}"'
    )


def test_v1_freeze_and_thaw(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1

    m.freeze()
    frozen = m.is_frozen()
    m.thaw()

    assert frozen
    assert not m.is_frozen()
    assert kernel.fs.written(cg(kernel, "/freezer/moorage/c1/freezer.state")) == [
        "FROZEN",
        "THAWED",
    ]


def test_v1_freeze_that_never_completes_thaws_and_fails(
    v1: tuple[FakeKernel, CgroupManager],
) -> None:
    kernel, m = v1
    state = cg(kernel, "/freezer/moorage/c1/freezer.state")
    kernel.fs.on_write.append(lambda p, v: "FREEZING" if p == state and v == "FROZEN" else None)

    with pytest.raises(FailedPrecondition, match="timed out waiting for .* to become FROZEN"):
        m.freeze()

    assert kernel.fs.written(state)[-1] == "THAWED"


def test_v1_kill_all_freezes_signals_each_and_thaws(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    m.join(11)
    m.join(12)
    state = cg(kernel, "/freezer/moorage/c1/freezer.state")
    kernel.fs.calls.clear()

    m.kill_all(signal.SIGTERM)

    assert [c for c in kernel.fs.calls if c[1] == state or c[0] == "signal"] == [
        ("write", state, "FROZEN"),
        ("signal", "11", "SIGTERM"),
        ("signal", "12", "SIGTERM"),
        ("write", state, "THAWED"),
    ]


def test_v1_kill_all_leaves_a_paused_cgroup_frozen(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    m.join(11)
    m.freeze()

    m.kill_all(signal.SIGTERM)

    assert m.is_frozen()
    assert ("signal", "11", "SIGTERM") in kernel.fs.calls


def test_v1_destroy_removes_every_directory(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    os.mkdir(cg(kernel, "/memory/moorage/c1/nested"))  # made by the container

    m.destroy()

    assert not m.exists()
    assert all(not os.path.exists(p) for p in m.paths().values())
    assert os.path.isdir(cg(kernel, "/memory/moorage"))


def test_destroy_of_a_missing_cgroup_is_a_no_op(hybrid_kernel: FakeKernel) -> None:
    m = new_manager(None, "never-created", root=hybrid_kernel.fs)

    m.destroy()

    assert not m.exists()


def test_destroy_with_live_processes_is_a_conflict(v1: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v1
    m.join(77)

    with pytest.raises(Conflict, match="^cannot remove cgroup .*: processes still in it: 77$"):
        m.destroy()


class ExitingProcessesFS(RecordingCgroupFS):
    """Processes leave cgroup.procs after it has been read a few times, as exits finish."""

    reads_left = 3

    def read_pids(self, path: str) -> list[int]:
        pids = super().read_pids(path)
        if pids:
            self.reads_left -= 1
            if self.reads_left == 0:
                with open(path, "w"):
                    pass
        return pids


def test_destroy_waits_for_exiting_processes(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path, v1={"pids": "pids"})
    fs = ExitingProcessesFS(tmp_path)
    fs.on_mkdir, fs.on_write = kernel.fs.on_mkdir, kernel.fs.on_write
    m = new_manager(None, "c1", root=fs, timeout=5)
    m.create()
    m.join(99)

    m.destroy()

    assert not m.exists()
    assert fs.reads_left == 0


def test_pids_of_a_missing_cgroup_is_not_found(hybrid_kernel: FakeKernel) -> None:
    with pytest.raises(NotFound, match="^no such cgroup: "):
        new_manager(None, "c1", root=hybrid_kernel.fs).pids()


def test_v1_oom_kill_count_and_stats(v1: tuple[FakeKernel, CgroupManager]) -> None:
    _, m = v1
    m.apply(CgroupResources.from_oci({"memory": {"limit": 1 << 30}, "pids": {"limit": 9}}))

    assert m.oom_kill_count() == 2
    assert m.stats() == CgroupStats(
        memory_usage=4096,
        memory_max_usage=8192,
        memory_limit=1 << 30,
        cpu_usage_ns=123456789,
        pids_current=1,
        pids_limit=9,
    )


def test_v1_stats_report_no_limit_as_none(v1: tuple[FakeKernel, CgroupManager]) -> None:
    _, m = v1

    stats = m.stats()

    assert stats.memory_limit is None
    assert stats.pids_limit is None


# --- v2 --------------------------------------------------------------------------------------


def test_v2_conversions() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1) == 1  # clamped into the kernel's range
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(500) == 4950
    assert blkio_weight_to_io_weight(1000) == 10000


def test_v2_swap_is_the_total_minus_the_limit() -> None:
    memory = CgroupResources.from_oci({"memory": {"limit": 100, "swap": 250}}).memory
    unlimited = CgroupResources.from_oci({"memory": {"limit": 100, "swap": -1}}).memory
    assert memory is not None
    assert unlimited is not None

    assert swap_to_v2(memory) == "150"
    assert swap_to_v2(unlimited) == "max"


def test_v2_swap_without_a_limit_is_refused() -> None:
    memory = CgroupResources.from_oci({"memory": {"swap": 250}}).memory
    assert memory is not None

    with pytest.raises(InvalidArgument, match="swap needs linux.resources.memory.limit"):
        swap_to_v2(memory)


def test_v2_create_enables_available_controllers_in_each_ancestor(tmp_path: Path) -> None:
    kernel = unified(tmp_path, controllers="cpu memory pids rdma")
    m = new_manager("/moorage/c1", "c1", root=kernel.fs)

    m.create()

    assert kernel.fs.written(cg(kernel, "/cgroup.subtree_control")) == ["+cpu +memory +pids"]
    assert kernel.fs.written(cg(kernel, "/moorage/cgroup.subtree_control")) == [
        "+cpu +memory +pids"
    ]
    assert kernel.read(cg(kernel, "/moorage/c1/cgroup.controllers")) == "cpu memory pids"
    assert m.paths() == {"": cg(kernel, "/moorage/c1")}


def test_v2_create_leaves_enabled_controllers_alone(v2_kernel: FakeKernel) -> None:
    new_manager("/moorage/a", "a", root=v2_kernel.fs).create()
    v2_kernel.fs.calls.clear()

    new_manager("/moorage/b", "b", root=v2_kernel.fs).create()

    assert not [p for p, _ in v2_kernel.fs.writes() if p.endswith("subtree_control")]


def test_v2_create_in_a_cgroup_with_processes_explains_why_it_fails(tmp_path: Path) -> None:
    kernel = unified(tmp_path, controllers="memory")
    busy = cg(kernel, "/busy")
    kernel.fs.mkdir(busy)
    kernel.fs.write(f"{busy}/cgroup.procs", "4242")

    def refuse(path: str, value: str) -> str | None:
        if path == f"{busy}/cgroup.subtree_control":
            raise InvalidArgument(f'{path}: device or resource busy writing "{value}"')
        return None

    kernel.fs.on_write.insert(0, refuse)

    with pytest.raises(FailedPrecondition, match=f"cannot enable memory in {busy}: it has"):
        new_manager("/busy/c1", "c1", root=kernel.fs).create()


@pytest.fixture
def v2(v2_kernel: FakeKernel) -> Iterator[tuple[FakeKernel, CgroupManager]]:
    m = new_manager("/moorage/c1", "c1", root=v2_kernel.fs, timeout=0.2)
    m.create()
    return v2_kernel, m


def test_v2_memory_files(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    d = cg(kernel, "/moorage/c1")

    m.apply(
        CgroupResources.from_oci(
            {"memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 300 << 20}}
        )
    )

    assert kernel.read(f"{d}/memory.max") == str(100 << 20)
    assert kernel.read(f"{d}/memory.low") == str(50 << 20)
    assert kernel.read(f"{d}/memory.swap.max") == str(200 << 20)


def test_v2_unlimited_memory_is_max(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2

    m.apply(CgroupResources.from_oci({"memory": {"limit": -1, "swap": -1}}))

    assert kernel.read(cg(kernel, "/moorage/c1/memory.max")) == "max"
    assert kernel.read(cg(kernel, "/moorage/c1/memory.swap.max")) == "max"


def test_v2_cpu_files(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    d = cg(kernel, "/moorage/c1")

    m.apply(
        CgroupResources.from_oci(
            {"cpu": {"shares": 1024, "quota": 50000, "period": 200000, "cpus": "0", "idle": 1}}
        )
    )

    assert kernel.read(f"{d}/cpu.weight") == "39"
    assert kernel.read(f"{d}/cpu.max") == "50000 200000"
    assert kernel.read(f"{d}/cpu.idle") == "1"
    assert kernel.read(f"{d}/cpuset.cpus") == "0"


def test_v2_quota_alone_keeps_the_period(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    d = cg(kernel, "/moorage/c1")
    m.apply(CgroupResources.from_oci({"cpu": {"quota": 10000, "period": 50000}}))

    m.apply(CgroupResources.from_oci({"cpu": {"quota": -1}}))

    assert kernel.read(f"{d}/cpu.max") == "max 50000"


def test_v2_pids_io_hugetlb(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    d = cg(kernel, "/moorage/c1")

    m.apply(
        CgroupResources.from_oci(
            {
                "pids": {"limit": -1},
                "blockIO": {"weight": 1000},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            }
        )
    )

    assert kernel.read(f"{d}/pids.max") == "max"
    assert kernel.read(f"{d}/io.weight") == "10000"
    assert kernel.read(f"{d}/hugetlb.2MB.max") == "0"


def test_v2_unknown_page_size_is_refused(v2: tuple[FakeKernel, CgroupManager]) -> None:
    _, m = v2

    with pytest.raises(InvalidArgument, match='unsupported page size "1GB"'):
        m.apply(CgroupResources.from_oci({"hugepageLimits": [{"pageSize": "1GB", "limit": 0}]}))


def test_v2_unified_is_written_verbatim_and_last(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    d = cg(kernel, "/moorage/c1")

    m.apply(
        CgroupResources.from_oci(
            {"memory": {"limit": 1 << 20}, "unified": {"memory.max": "2097152"}}
        )
    )

    assert kernel.fs.written(f"{d}/memory.max") == [str(1 << 20), "2097152"]


def test_v2_unified_unknown_file_is_refused(v2: tuple[FakeKernel, CgroupManager]) -> None:
    _, m = v2

    with pytest.raises(InvalidArgument, match='^linux.resources.unified: no cgroup file "x.y" in'):
        m.apply(CgroupResources(unified={"x.y": "1"}))


def test_v2_missing_controller_is_a_failed_precondition(tmp_path: Path) -> None:
    kernel = unified(tmp_path, controllers="hugetlb")
    m = new_manager("/moorage/c1", "c1", root=kernel.fs)
    m.create()

    with pytest.raises(
        FailedPrecondition, match='^cgroup v2 controller "memory" is not available$'
    ):
        m.apply(CgroupResources.from_oci({"memory": {"limit": 1 << 20}}))


def test_v2_unified_key_needs_its_controller(tmp_path: Path) -> None:
    kernel = unified(tmp_path, controllers="cpu")
    m = new_manager("/moorage/c1", "c1", root=kernel.fs)
    m.create()

    with pytest.raises(FailedPrecondition, match='controller "memory" is not available'):
        m.apply(CgroupResources(unified={"memory.high": "1"}))


def test_v2_devices_are_logged_not_enforced(
    v2: tuple[FakeKernel, CgroupManager], caplog: pytest.LogCaptureFixture
) -> None:
    _, m = v2

    m.apply(CgroupResources.from_oci({"devices": [{"allow": False}]}))

    assert "not enforced on cgroup v2" in caplog.text


def test_v2_freeze_waits_for_cgroup_events(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2

    m.freeze()
    frozen = m.is_frozen()
    m.thaw()

    assert frozen
    assert not m.is_frozen()
    assert kernel.fs.written(cg(kernel, "/moorage/c1/cgroup.freeze")) == ["1", "0"]


def test_v2_freeze_timeout_thaws_and_fails(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    events = cg(kernel, "/moorage/c1/cgroup.events")

    # A kernel that never reports the freeze as complete.
    def never_frozen(path: str, value: str) -> None:
        if path.endswith("/cgroup.freeze"):
            kernel._write(events, "populated 1\nfrozen 0\n")

    kernel.fs.on_write.append(never_frozen)

    with pytest.raises(FailedPrecondition, match="timed out waiting for .* to be frozen"):
        m.freeze()

    assert kernel.fs.written(cg(kernel, "/moorage/c1/cgroup.freeze")) == ["1", "0"]


def test_v2_sigkill_uses_cgroup_kill(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    m.join(5)

    m.kill_all(signal.SIGKILL)

    assert kernel.fs.written(cg(kernel, "/moorage/c1/cgroup.kill")) == ["1"]
    assert not [c for c in kernel.fs.calls if c[0] == "signal"]
    assert m.pids() == []


def test_v2_other_signals_freeze_and_signal(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2
    m.join(5)

    m.kill_all(signal.SIGHUP)

    assert ("signal", "5", "SIGHUP") in kernel.fs.calls
    assert kernel.fs.written(cg(kernel, "/moorage/c1/cgroup.freeze")) == ["1", "0"]


def test_v2_destroy(v2: tuple[FakeKernel, CgroupManager]) -> None:
    kernel, m = v2

    m.destroy()

    assert not m.exists()
    assert os.path.isdir(cg(kernel, "/moorage"))


def test_v2_oom_kill_count_and_stats(v2: tuple[FakeKernel, CgroupManager]) -> None:
    _, m = v2

    assert m.oom_kill_count() == 3
    assert m.stats() == CgroupStats(
        memory_usage=4096,
        memory_max_usage=8192,
        memory_limit=None,
        cpu_usage_ns=7000,
        pids_current=1,
        pids_limit=None,
    )


def test_v2_oom_kill_count_needs_the_memory_controller(tmp_path: Path) -> None:
    kernel = unified(tmp_path, controllers="pids")
    m = new_manager("/moorage/c1", "c1", root=kernel.fs)
    m.create()

    with pytest.raises(FailedPrecondition, match='controller "memory" is not available in'):
        m.oom_kill_count()


def test_hierarchy_dir_lineage() -> None:
    d = HierarchyDir("/sys/fs/cgroup/memory", "/a/b")

    assert d.path == "/sys/fs/cgroup/memory/a/b"
    assert d.lineage() == [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/memory/a",
        "/sys/fs/cgroup/memory/a/b",
    ]
