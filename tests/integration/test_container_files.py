"""A container's files from the daemon's side, on real overlay snapshots: docker diff,
cp (both ways), export, commit, top and stats; and the attacks a hostile container
root can try on them (symlinks to the host's /etc, `..`, hostile upload tars).

The engine functions are driven directly (an ImageService on a private root, a
container snapshot mounted by the test, a runtime container on it for the running
case); the last tests go through a daemon's HTTP API end to end.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import moor_runtime
from daemon import Daemon, running_daemon
from moorage.api.client import Client
from moorage.engine import container_fs as cfs
from moorage.engine import container_stats as cs
from moorage.engine.images import ImageService
from moorage.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from moorage.oci.default_spec import default_spec
from moorage.store.snapshots.mount import mount_all, mounted, unmount

pytestmark = pytest.mark.root

HOST_MARKER = "moorage-test-cp-escape"
CGROUP_PARENT = "moorage-test-container-files"


# --- fixtures -----------------------------------------------------------------------------


def _temp_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if "moorage-container-" in line.split()[4]]


@pytest.fixture(autouse=True)
def _no_mount_left_behind() -> Iterator[None]:
    """Every view this module opens is unmounted again, whatever the test did."""
    before = set(_temp_mounts())
    yield
    left = [m for m in _temp_mounts() if m not in before]
    for target in left:
        subprocess.run(["umount", "-l", target], check=False)
    assert not left, f"mounts left behind: {left}"
    for name in (HOST_MARKER, HOST_MARKER + "2"):
        assert not os.path.exists(f"/etc/{name}"), "a file escaped into the host's /etc"


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, busybox_template: Path
) -> Iterator[tuple[ImageService, str]]:
    base = tmp_path_factory.mktemp("container-files")
    tar_path = base / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(busybox_template, arcname=".")
    images = ImageService(str(base / "store"))
    try:
        with open(tar_path, "rb") as f:
            image_id = images.import_rootfs(f, repo="busybox", changes=['CMD ["sh"]'])
        yield images, image_id
    finally:
        images.close()


@dataclass
class Ctr:
    images: ImageService
    key: str
    rootfs: Path  # the snapshot's read-write mount, as the engine mounts a running container
    image_id: str

    def stop(self) -> None:
        unmount(str(self.rootfs))

    def view(self, **kw: Any) -> cfs.RootView:
        return cfs.open_snapshot(self.images.snapshots, self.key, **kw)


@pytest.fixture
def ctr(store: tuple[ImageService, str], tmp_path: Path) -> Iterator[Ctr]:
    images, image_id = store
    key = f"container-{uuid.uuid4().hex}"
    top = images.unpack(images.resolve(image_id))
    images.snapshots.prepare(key, top)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    mount_all(images.snapshots.mounts(key), str(rootfs))
    try:
        yield Ctr(images, key, rootfs, image_id)
    finally:
        unmount(str(rootfs))
        images.snapshots.remove(key)


def _tar(*members: tuple[str, str, str | bytes]) -> io.BytesIO:
    """An upload: (kind, name, data or link target) with kind file, dir, sym or link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            else:
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            tar.addfile(info)
    buf.seek(0)
    return buf


def _members(chunks: Iterator[bytes]) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    raw = b"".join(chunks)
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for info in tar:
            f = tar.extractfile(info) if info.isreg() else None
            out[info.name] = (info, f.read() if f is not None else None)
    return out


def _raw_names(chunks: Iterator[bytes]) -> list[str]:
    """Entry names exactly as written (tarfile's reader strips a directory's "/")."""
    raw = b"".join(chunks)
    names = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for info in tar:
            names.append(info.name + ("/" if info.isdir() and info.name != "/" else ""))
    return names


# --- docker diff ----------------------------------------------------------------------------


def test_changes_of_a_running_then_stopped_container(ctr: Ctr) -> None:
    root = ctr.rootfs
    (root / "tmp/new").write_text("new")
    with open(root / "etc/passwd", "a") as f:
        f.write("extra:x:5:5::/:/bin/sh\n")
    (root / "bin/ls").unlink()
    (root / "var/cache/deep").mkdir(parents=True)
    shutil.rmtree(root / "home")  # then made again: an opaque directory
    (root / "home").mkdir()
    (root / "home/new").write_text("n")
    expected = [
        {"Path": "/bin", "Kind": 0},
        {"Path": "/bin/ls", "Kind": 2},
        {"Path": "/etc/passwd", "Kind": 0},
        {"Path": "/home", "Kind": 0},
        {"Path": "/home/new", "Kind": 1},
        {"Path": "/home/user", "Kind": 2},
        {"Path": "/tmp", "Kind": 0},
        {"Path": "/tmp/new", "Kind": 1},
        {"Path": "/var", "Kind": 0},
        {"Path": "/var/cache", "Kind": 1},
        {"Path": "/var/cache/deep", "Kind": 1},
    ]
    assert cfs.snapshot_changes(ctr.images.snapshots, ctr.key) == expected
    ctr.stop()
    assert cfs.snapshot_changes(ctr.images.snapshots, ctr.key) == expected


def test_changes_hide_the_runtimes_mount_placeholders(ctr: Ctr) -> None:
    for name in ("hosts", "resolv.conf"):
        (ctr.rootfs / "etc" / name).write_text("")
    assert cfs.snapshot_changes(ctr.images.snapshots, ctr.key) == []


# --- docker cp out ---------------------------------------------------------------------------


def test_stat_and_archive_of_a_stopped_container(ctr: Ctr) -> None:
    (ctr.rootfs / "etc/motd").write_text("hello\n")
    ctr.stop()
    with ctr.view() as view:
        st = cfs.stat_path(view, "/etc/motd")
        assert (st["name"], st["size"], st["mode"], st["linkTarget"]) == ("motd", 6, 0o644, "")
        link = cfs.stat_path(view, "/bin/sh")
        assert link["mode"] & cfs.GO_MODE_SYMLINK
        assert link["linkTarget"] == "/bin/busybox"
        assert cfs.stat_path(view, "/")["name"] == "/"
        assert cfs.stat_path(view, "/etc/")["mode"] == cfs.GO_MODE_DIR | 0o755

        path_stat, chunks = cfs.archive_path(view, "/etc/motd")
        assert path_stat["name"] == "motd"
        members = _members(chunks)
        assert list(members) == ["motd"]
        assert members["motd"][1] == b"hello\n"

        _, chunks = cfs.archive_path(view, "/etc")
        names = _raw_names(chunks)
        assert names[0] == "etc/"
        assert {"etc/passwd", "etc/motd", "etc/group"} <= set(names)

        _, chunks = cfs.archive_path(view, "/etc/.")
        names = _raw_names(chunks)
        assert names[0] == "./"
        assert "./passwd" in names

        _, chunks = cfs.archive_path(view, "/bin/sh")  # a symlink is archived as one
        members = _members(chunks)
        assert members["sh"][0].issym()
        assert members["sh"][0].linkname == "busybox"

        with pytest.raises(NotFound, match="Could not find the file /nope"):
            cfs.stat_path(view, "/nope")
        with pytest.raises(NotFound):
            cfs.archive_path(view, "/etc/passwd/")


def test_hard_links_are_archived_once(ctr: Ctr) -> None:
    (ctr.rootfs / "tmp/a").write_text("data")
    os.link(ctr.rootfs / "tmp/a", ctr.rootfs / "tmp/b")
    ctr.stop()
    with ctr.view() as view:
        members = _members(cfs.archive_path(view, "/tmp")[1])
    assert members["tmp/a"][1] == b"data"
    assert members["tmp/b"][0].islnk()
    assert members["tmp/b"][0].linkname == "tmp/a"


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "mounted"])
def test_a_symlink_to_the_hosts_etc_reads_the_containers_etc(ctr: Ctr, running: bool) -> None:
    assert os.path.exists("/etc/shadow")  # the host has one; the busybox root does not
    assert not (ctr.rootfs / "etc/shadow").exists()
    (ctr.rootfs / "evil").symlink_to("/etc")
    (ctr.rootfs / "tmp/evil2").symlink_to("../../../../../../etc")
    (ctr.rootfs / "tmp/shadowlink").symlink_to("/etc/shadow")
    passwd = (ctr.rootfs / "etc/passwd").read_bytes()
    if not running:
        ctr.stop()
        view = ctr.view()
    else:  # the container's mount seen through a descriptor, as /proc/<pid>/root gives it
        fd = os.open(ctr.rootfs, os.O_PATH | os.O_DIRECTORY)
        view = cfs.RootView(fd)
    with view:
        for path in (
            "/evil/shadow",
            "/tmp/evil2/shadow",
            "../../../../etc/shadow",
            "/tmp/../../etc/shadow",
            "/tmp/shadowlink/",
        ):
            with pytest.raises(NotFound):
                cfs.archive_path(view, path)
            with pytest.raises(NotFound):
                cfs.stat_path(view, path)
        assert cfs.stat_path(view, "/evil")["linkTarget"] == "/etc"
        assert cfs.stat_path(view, "/tmp/evil2")["linkTarget"] == "/etc"
        assert cfs.stat_path(view, "/tmp/shadowlink")["linkTarget"] == "/etc/shadow"
        members = _members(cfs.archive_path(view, "/evil/")[1])
        assert members["evil/passwd"][1] == passwd  # the container's, under the name asked
        assert "evil/shadow" not in members
        assert _members(cfs.archive_path(view, "/tmp/evil2/passwd")[1])["passwd"][1] == passwd


# --- docker cp in ----------------------------------------------------------------------------


def test_uploads_land_in_the_container(ctr: Ctr) -> None:
    (ctr.rootfs / "evil").symlink_to("/etc")
    ctr.stop()
    with ctr.view(writable=True) as view:
        cfs.extract_archive(view, "/tmp", _tar(("dir", "d", ""), ("file", "d/f", "hi")))
        cfs.extract_archive(view, "/evil", _tar(("file", HOST_MARKER, "x")))  # into its /etc
        assert _members(cfs.archive_path(view, "/tmp/d/f")[1])["f"][1] == b"hi"
        assert cfs.stat_path(view, f"/etc/{HOST_MARKER}")["size"] == 1
    with ctr.view() as view:  # it stays in the snapshot
        assert cfs.stat_path(view, "/tmp/d/f")["size"] == 2


@pytest.mark.parametrize(
    ("members", "error"),
    [
        ((("file", f"../{HOST_MARKER}", "x"),), "escapes the target"),
        ((("file", f"../../../../../../etc/{HOST_MARKER}", "x"),), "escapes the target"),
        ((("file", ".wh.passwd", ""),), "reserved"),
        ((("link", "shadow", "/etc/shadow"),), "hardlink target not found"),
    ],
    ids=["dotdot", "deep-dotdot", "whiteout", "hardlink-out"],
)
def test_hostile_upload_tars_are_refused(
    ctr: Ctr, members: tuple[tuple[str, str, str], ...], error: str
) -> None:
    ctr.stop()
    with ctr.view(writable=True) as view, pytest.raises(InvalidArgument, match=error):
        cfs.extract_archive(view, "/tmp", _tar(*members))


def test_symlinks_planted_by_an_upload_stay_inside_the_target(ctr: Ctr) -> None:
    ctr.stop()
    upload = _tar(
        ("sym", "up", "/"),
        ("file", f"up/etc/{HOST_MARKER}", "x"),
        ("sym", "dots", "../../../../../.."),
        ("file", f"dots/etc/{HOST_MARKER}2", "x"),
    )
    with ctr.view(writable=True) as view:
        cfs.extract_archive(view, "/tmp", upload)
        # resolved with the target directory as the root: /tmp/etc, in the container
        assert cfs.stat_path(view, f"/tmp/etc/{HOST_MARKER}")["size"] == 1
        assert cfs.stat_path(view, f"/tmp/etc/{HOST_MARKER}2")["size"] == 1


def test_upload_targets_and_options(ctr: Ctr) -> None:
    ctr.stop()
    with ctr.view(writable=True) as view:
        with pytest.raises(NotFound):
            cfs.extract_archive(view, "/nope", _tar(("file", "f", "x")))
        with pytest.raises(InvalidArgument, match="not a directory"):
            cfs.extract_archive(view, "/etc/passwd", _tar(("file", "f", "x")))
        with pytest.raises(InvalidArgument, match="not a tar archive|corrupt|truncated"):
            cfs.extract_archive(view, "/tmp", io.BytesIO(b"not a tar" * 100))
        # a file may replace a directory, unless noOverwriteDirNonDir
        with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
            cfs.extract_archive(
                view, "/", _tar(("file", "home", "x")), no_overwrite_dir_non_dir=True
            )
        with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
            cfs.extract_archive(
                view, "/etc", _tar(("dir", "passwd", "")), no_overwrite_dir_non_dir=True
            )
        cfs.extract_archive(
            view, "/tmp", _tar(("file", "owned", "x")), copy_uid_gid=True, user="user"
        )
        assert os.stat(f"/proc/self/fd/{view.fd}/tmp/owned").st_uid == 1000
        cfs.extract_archive(view, "/tmp", _tar(("file", "kept", "x")))
        assert os.stat(f"/proc/self/fd/{view.fd}/tmp/kept").st_uid == 0
    with ctr.view() as view, pytest.raises(PermissionDenied, match="rootfs is marked read-only"):
        cfs.extract_archive(view, "/tmp", _tar(("file", "f", "x")))


def test_volumes_of_a_stopped_container_are_bound(ctr: Ctr, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "inside").write_text("in the volume")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    (ctr.rootfs / "data").mkdir()
    (ctr.rootfs / "ro").mkdir()
    (ctr.rootfs / "evil").symlink_to("/etc")  # a destination that is a symlink out
    ctr.stop()
    host_etc = os.stat("/etc")
    binds = [
        cfs.Bind(str(volume), "/data"),
        cfs.Bind(str(readonly), "/ro", read_only=True),
        cfs.Bind(str(volume), "/evil"),  # resolved inside the root: its /etc
        cfs.Bind(str(volume), "/missing"),  # skipped
    ]
    with ctr.view(writable=True, binds=binds) as view:
        assert os.stat("/etc") == host_etc  # nothing was mounted on the host's /etc
        assert _members(cfs.archive_path(view, "/data/inside")[1])["inside"][1] == (
            b"in the volume"
        )
        cfs.extract_archive(view, "/data", _tar(("file", "uploaded", "u")))
        with pytest.raises(PermissionDenied, match="volume is marked read-only"):
            cfs.extract_archive(view, "/ro", _tar(("file", "f", "x")))
        names = _raw_names(cfs.archive_path(view, "/")[1])
        assert "//data/inside" in names  # a walk descends into the container's volumes
    assert (volume / "uploaded").read_text() == "u"


# --- docker export -------------------------------------------------------------------------


def test_export_is_the_root_file_system(ctr: Ctr, tmp_path: Path) -> None:
    (ctr.rootfs / "tmp/new").write_text("new")
    (ctr.rootfs / "bin/ls").unlink()
    ctr.stop()
    with ctr.view() as view:
        members = _members(cfs.export_tree(view))
    assert members["tmp/new"][1] == b"new"
    assert members["bin/busybox"][0].isreg()
    assert members["bin/sh"][0].issym()
    assert "bin/ls" not in members
    assert not any(name.startswith(("./", "/")) for name in members)


def test_a_deep_tree_costs_no_descriptor_per_level(ctr: Ctr) -> None:
    """A hostile container may nest directories hundreds deep: the walks neither
    recurse nor hold a descriptor per level (the daemon's descriptors are shared)."""
    depth = 600  # the store's rmtree of the snapshot recurses: not much deeper
    fd = os.open(ctr.rootfs / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    ctr.stop()
    changes = cfs.snapshot_changes(ctr.images.snapshots, ctr.key)
    assert len(changes) == depth + 1  # C /tmp, then every level added
    baseline = len(os.listdir("/proc/self/fd"))
    most = 0
    with ctr.view() as view:
        entries = 0
        for chunk in cfs.export_tree(view):
            entries += chunk.count(b"ustar")
            most = max(most, len(os.listdir("/proc/self/fd")))
    assert entries > depth
    assert most < baseline + 10


# --- commit ---------------------------------------------------------------------------------


def test_commit_makes_an_image_with_the_changes(ctr: Ctr) -> None:
    (ctr.rootfs / "tmp/committed").write_text("kept")
    (ctr.rootfs / "bin/ls").unlink()
    images = ctr.images
    config = cfs.commit_config(
        {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Labels": {"a": "1"}},
        None,
        ['CMD ["cat", "/tmp/committed"]', "LABEL b=2"],
    )
    new_id = cfs.commit_container(
        images,
        key=ctr.key,
        image_id=ctr.image_id,
        config=config,
        created_by="sh",
        comment="a comment",
        author="someone",
        repo="committed",
        tag="v1",
    )
    inspect = images.inspect("committed:v1")
    parent = images.inspect(ctr.image_id)
    assert inspect["Id"] == new_id
    assert inspect["RootFS"]["Layers"][:-1] == parent["RootFS"]["Layers"]
    assert len(inspect["RootFS"]["Layers"]) == len(parent["RootFS"]["Layers"]) + 1
    assert inspect["Config"]["Cmd"] == ["cat", "/tmp/committed"]
    assert inspect["Config"]["Labels"] == {"a": "1", "b": "2"}
    assert inspect["Author"] == "someone"
    assert inspect["Comment"] == "a comment"
    history = images.history("committed:v1")
    assert history[0]["CreatedBy"] == "sh"
    assert history[0]["Size"] > 0
    # the image's root file system has the changes (through a view of its layers)
    top = images.unpack(images.resolve(new_id))
    view_key = f"view-{uuid.uuid4().hex}"
    try:
        with mounted(images.snapshots.view(view_key, top)) as path:
            assert Path(path, "tmp/committed").read_text() == "kept"
            assert not Path(path, "bin/ls").exists()
            assert Path(path, "bin/busybox").is_file()
    finally:
        images.snapshots.remove(view_key)
    # and a container on it sees them as lower layers: no changes of its own
    key = f"container-{uuid.uuid4().hex}"
    images.snapshots.prepare(key, top)
    try:
        assert cfs.snapshot_changes(images.snapshots, key) == []
    finally:
        images.snapshots.remove(key)


def test_commit_of_no_changes_adds_no_layer(ctr: Ctr) -> None:
    ctr.stop()
    new_id = cfs.commit_container(
        ctr.images, key=ctr.key, image_id=ctr.image_id, config=cfs.commit_config({"Cmd": ["sh"]})
    )
    new = ctr.images.inspect(new_id)
    assert new["RootFS"] == ctr.images.inspect(ctr.image_id)["RootFS"]
    assert ctr.images.history(new_id)[0]["Size"] == 0
    assert ctr.images.resolve(new_id).config.history[-1].empty_layer


# --- a running container (the runtime on the snapshot) ----------------------------------------


def _runtime(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(
            [moor_runtime(), "--root", str(root), *args],
            stdout=out,
            stderr=err,
            timeout=60,
            check=False,
        )
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(
            proc.args, proc.returncode, out.read().decode(), err.read().decode()
        )
    if check and result.returncode != 0:
        raise AssertionError(f"moor-runtime {' '.join(args)}: {result.stderr}")
    return result


@pytest.fixture
def running(ctr: Ctr, runtime_root: Path, tmp_path: Path) -> Iterator[tuple[Ctr, str, int, Path]]:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "inside").write_text("in the volume")
    (ctr.rootfs / "data").mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = default_spec(args=["sleep", "1000"], terminal=False)
    spec["root"] = {"path": str(ctr.rootfs), "readonly": False}
    # A parent of its own: other test sessions prune empty /moorage-test cgroups as
    # they end, which can race with this container's creation.
    spec["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
    spec["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(volume), "options": ["rbind"]}
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = f"cfs-{uuid.uuid4().hex[:8]}"
    _runtime(runtime_root, "create", "--bundle", str(bundle), cid)
    try:
        _runtime(runtime_root, "start", cid)
        pid = int(json.loads(_runtime(runtime_root, "state", cid).stdout)["pid"])
        yield ctr, cid, pid, volume
    finally:
        _runtime(runtime_root, "delete", "--force", cid, check=False)
        for hierarchy in [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]:
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP_PARENT).rmdir()


def test_a_running_container_is_seen_through_its_init(
    running: tuple[Ctr, str, int, Path],
) -> None:
    ctr, _, pid, volume = running
    (ctr.rootfs / "evil").symlink_to("/proc/1/root/etc")  # a magic link on the way
    with cfs.open_running(pid, crossable=["/data"]) as view:
        assert _members(cfs.archive_path(view, "/data/inside")[1])["inside"][1] == (
            b"in the volume"
        )
        with pytest.raises(NotFound):
            cfs.archive_path(view, "/evil/shadow")
        with pytest.raises(NotFound):
            cfs.archive_path(view, "/proc/1/root/etc/shadow")
        cfs.extract_archive(view, "/data", _tar(("file", "uploaded", "u")))
        names = _raw_names(cfs.archive_path(view, "/")[1])
        assert "//data/inside" in names
        assert "//proc/" in names
        assert not any(n.startswith("//proc/1") for n in names)  # /proc: not descended
        assert _raw_names(cfs.archive_path(view, "/proc/")[1]) == ["proc/"]
        assert _raw_names(cfs.archive_path(view, "/data/.")[1])[:2] == ["./", "./inside"]
        exported = _members(cfs.export_tree(view))
        assert "bin/busybox" in exported
        assert "data/inside" not in exported  # volumes are not part of an export
    assert (volume / "uploaded").read_text() == "u"


def test_top_and_stats_of_a_running_container(
    running: tuple[Ctr, str, int, Path], runtime_root: Path
) -> None:
    _, cid, pid, _ = running
    top = cs.container_top(str(runtime_root), cid)
    pid_column = top["Titles"].index("PID")
    assert [row[pid_column] for row in top["Processes"]] == [str(pid)]
    assert top["Processes"][0][-1] == "sleep 1000"
    sample = cs.sample_container(str(runtime_root), cid, pid)
    assert sample is not None
    out = cs.stats_json(sample, None, name="c", container_id=cid)
    assert out["pids_stats"]["current"] == 1
    assert out["memory_stats"]["usage"] > 0
    assert 0 < out["memory_stats"]["limit"] <= cs.mem_total()
    assert out["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert out["cpu_stats"]["online_cpus"] == os.cpu_count()
    assert "networks" not in out  # the default spec's netns has only lo
    _runtime(runtime_root, "delete", "--force", cid)
    with pytest.raises(Conflict, match="not running"):
        cs.container_top(str(runtime_root), cid)
    assert cs.sample_container(str(runtime_root), cid, pid) is None
    with pytest.raises(Conflict):
        cfs.open_running(pid)


# --- through the daemon ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("cfs-daemon") / "moor", busybox=True) as d:
        yield d


@pytest.fixture
def api(daemon: Daemon) -> Iterator[Client]:
    yield Client(str(daemon.socket), timeout=120)
    daemon.remove_containers()


def _await(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _exists(api: Client, cid: str, path: str) -> bool:
    with contextlib.suppress(NotFound):
        api.request("HEAD", f"/containers/{cid}/archive", params={"path": path}).read()
        return True
    return False


def test_the_routes_end_to_end(api: Client) -> None:
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "echo made > /tmp/made; exec sleep 1000"]}
    cid = api.request("POST", "/containers/create", json_body=body).json()["Id"]
    api.request("POST", f"/containers/{cid}/start").read()
    _await(lambda: _exists(api, cid, "/tmp/made"))

    top = api.get_json(f"/containers/{cid}/top")
    assert any(row[-1] == "sleep 1000" for row in top["Processes"])
    custom = api.get_json(f"/containers/{cid}/top", ps_args="-o pid,comm")
    assert custom["Titles"] == ["PID", "COMMAND"]

    stats = api.get_json(f"/containers/{cid}/stats", stream="false")
    assert stats["id"] == cid
    assert stats["name"].startswith("/")
    assert stats["pids_stats"]["current"] >= 1
    assert stats["memory_stats"]["usage"] > 0
    assert stats["preread"] != "0001-01-01T00:00:00Z"  # two samples: precpu is filled
    one = api.get_json(f"/containers/{cid}/stats", stream="false", **{"one-shot": "true"})
    assert one["preread"] == "0001-01-01T00:00:00Z"
    streamed = api.request("GET", f"/containers/{cid}/stats", params={"stream": "true"})
    lines = streamed.iter_json_lines()
    first, second = next(lines), next(lines)
    streamed.close()
    assert second["preread"] == first["read"]

    st = api.request("HEAD", f"/containers/{cid}/archive", params={"path": "/tmp/made"})
    st.read()
    header = json.loads(base64.b64decode(st.headers[cfs.PATH_STAT_HEADER]))
    assert (header["name"], header["size"], header["mode"]) == ("made", 5, 0o644)
    tar = api.request("GET", f"/containers/{cid}/archive", params={"path": "/tmp/made"}).read()
    assert _members(iter([tar]))["made"][1] == b"made\n"
    api.request(
        "PUT", f"/containers/{cid}/archive", params={"path": "/tmp"}, body=_tar(("file", "up", "u"))
    ).read()
    assert _exists(api, cid, "/tmp/up")
    with pytest.raises(NotFound):
        api.request("GET", f"/containers/{cid}/archive", params={"path": "/nope"}).read()

    changes = api.get_json(f"/containers/{cid}/changes")
    assert {"Path": "/tmp/made", "Kind": 1} in changes
    assert {"Path": "/tmp/up", "Kind": 1} in changes

    exported = api.request("GET", f"/containers/{cid}/export").read()
    assert _members(iter([exported]))["tmp/made"][1] == b"made\n"

    committed = api.request(
        "POST",
        "/commit",
        params={
            "container": cid,
            "repo": "committed",
            "tag": "v1",
            "comment": "from the test",
            "changes": 'CMD ["cat", "/tmp/made", "/tmp/up"]',
        },
    )
    assert committed.status == 201
    image_id = committed.json()["Id"]
    assert api.get_json(f"/containers/{cid}/json")["State"]["Status"] == "running"  # unpaused
    assert api.get_json("/images/committed:v1/json")["Id"] == image_id

    # a container of the committed image has the files
    run = {"Image": "committed:v1"}
    new = api.request("POST", "/containers/create", json_body=run).json()["Id"]
    api.request("POST", f"/containers/{new}/start").read()
    code = api.request("POST", f"/containers/{new}/wait").json()["StatusCode"]
    assert code == 0
    logs = api.request("GET", f"/containers/{new}/logs", params={"stdout": 1, "stderr": 1}).read()
    assert b"made\n" in logs
    assert b"u" in logs

    # stopped: no top, zeroed stats, the files still there
    api.request("POST", f"/containers/{cid}/stop", params={"t": 0}).read()
    with pytest.raises(Conflict, match="is not running"):
        api.get_json(f"/containers/{cid}/top")
    zero = api.get_json(f"/containers/{cid}/stats", stream="false")
    assert zero == cs.zero_stats(zero["name"], cid)
    assert api.request("GET", f"/containers/{cid}/stats").read() == b""
    assert _exists(api, cid, "/tmp/made")
    tar = api.request("GET", f"/containers/{cid}/archive", params={"path": "/tmp/up"}).read()
    assert _members(iter([tar]))["up"][1] == b"u"
    assert {"Path": "/tmp/made", "Kind": 1} in api.get_json(f"/containers/{cid}/changes")
