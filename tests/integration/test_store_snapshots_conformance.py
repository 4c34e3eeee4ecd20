"""One conformance suite for every snapshotter, on the real kernel (root only).

Each test runs against ``overlay`` and ``native``. Snapshot roots and the directories
``mounted`` makes live under the test's tmp dir; the fixture unmounts whatever is still
mounted there and deletes the root even when the test fails, then fails the test if it
found a leftover mount.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from moorage.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from moorage.store.snapshots import (
    Mount,
    Snapshotter,
    mount_all,
    mounted,
    new_snapshotter,
    overlay_supported,
    unmount,
)
from moorage.store.snapshots import mount as mount_module
from moorage.store.snapshots.metadata import MetaStore
from moorage.store.snapshots.mount import fits_mount_data
from moorage.sys import procfs

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting snapshots needs root"),
]

MiB = 1024 * 1024


def _mounts_under(top: Path) -> list[str]:
    prefix = str(top).rstrip("/") + "/"
    return [m.mount_point for m in procfs.mountinfo() if m.mount_point.startswith(prefix)]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A throwaway dir; on teardown nothing may be mounted under it, and it is deleted."""
    yield tmp_path
    leftovers = _mounts_under(tmp_path)
    for point in sorted(leftovers, key=len, reverse=True):
        unmount(point)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert leftovers == [], f"mounts left behind: {leftovers}"


@pytest.fixture(params=["overlay", "native"])
def impl(request: pytest.FixtureRequest, scratch: Path) -> str:
    name: str = request.param
    if name == "overlay" and not overlay_supported(scratch):
        pytest.skip(f"overlayfs does not work in {scratch}")
    return name


@pytest.fixture
def root(scratch: Path) -> Path:
    return scratch / "state"


@pytest.fixture
def sn(impl: str, root: Path) -> Iterator[Snapshotter]:
    snapshotter = new_snapshotter(root, impl)
    try:
        yield snapshotter
    finally:
        snapshotter.close()


@pytest.fixture
def mnt(scratch: Path) -> str:
    """Where ``mounted`` makes its directories, so the teardown check sees them."""
    path = scratch / "mnt"
    path.mkdir()
    return str(path)


def _layer(sn: Snapshotter, name: str, parent: str | None, files: dict[str, str]) -> None:
    """Commit snapshot ``name`` over ``parent`` holding ``files``, written directly."""
    key = f"extract-{name}"
    sn.prepare(key, parent)
    upper = Path(sn.writable_dir(key))
    for path, content in files.items():
        (upper / path).parent.mkdir(parents=True, exist_ok=True)
        (upper / path).write_text(content)
    sn.commit(name, key)


def _tree(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, path)] = Path(full).read_text()
    return out


# --------------------------------------------------------------------------- lifecycle


def test_written_file_shows_in_a_view_of_the_commit(sn: Snapshotter, mnt: str) -> None:
    mounts = sn.prepare("a")
    with mounted(mounts, dir=mnt) as path:
        Path(path, "hello").write_text("world")
    sn.commit("A", "a")
    with mounted(sn.view("v", "A"), dir=mnt) as path:
        assert _tree(path) == {"hello": "world"}


def test_commit_makes_the_active_key_disappear(sn: Snapshotter) -> None:
    sn.prepare("a")
    sn.commit("A", "a")
    assert sn.stat("A").kind == "committed"
    with pytest.raises(NotFound, match="a"):
        sn.stat("a")


def test_active_snapshot_starts_with_its_parents_content(sn: Snapshotter, mnt: str) -> None:
    _layer(sn, "L1", None, {"one": "1"})
    _layer(sn, "L2", "L1", {"two": "2", "one": "1b"})
    with mounted(sn.prepare("c", "L2"), dir=mnt) as path:
        assert _tree(path) == {"one": "1b", "two": "2"}


def test_writes_in_an_active_snapshot_stay_in_it(sn: Snapshotter, mnt: str) -> None:
    _layer(sn, "L1", None, {"base": "b"})
    with mounted(sn.prepare("c1", "L1"), dir=mnt) as path:
        Path(path, "mine").write_text("c1")
        Path(path, "base").write_text("changed")
    with mounted(sn.prepare("c2", "L1"), dir=mnt) as path:
        assert _tree(path) == {"base": "b"}
    with mounted(sn.view("v", "L1"), dir=mnt) as path:
        assert _tree(path) == {"base": "b"}


def test_deleting_through_a_mount_hides_the_file_in_the_next_view(
    sn: Snapshotter, mnt: str
) -> None:
    _layer(sn, "L1", None, {"gone": "x", "kept": "y"})
    with mounted(sn.prepare("l2", "L1"), dir=mnt) as path:
        os.remove(os.path.join(path, "gone"))
    sn.commit("L2", "l2")
    with mounted(sn.view("v2", "L2"), dir=mnt) as path:
        assert _tree(path) == {"kept": "y"}
    with mounted(sn.view("v1", "L1"), dir=mnt) as path:
        assert _tree(path) == {"gone": "x", "kept": "y"}


def test_whiteouts_in_the_writable_dir_hide_files(sn: Snapshotter, mnt: str) -> None:
    _layer(sn, "L1", None, {"gone": "x", "kept": "y"})
    sn.prepare("l2", "L1")
    upper = sn.writable_dir("l2")
    if sn.whiteout_mode == "overlay":
        os.mknod(os.path.join(upper, "gone"), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    else:
        os.remove(os.path.join(upper, "gone"))
    sn.commit("L2", "l2")
    with mounted(sn.view("v", "L2"), dir=mnt) as path:
        assert _tree(path) == {"kept": "y"}


def test_views_are_read_only(sn: Snapshotter, mnt: str) -> None:
    _layer(sn, "L1", None, {"f": "1"})
    _layer(sn, "L2", "L1", {"g": "2"})
    for key, parent in (("v1", "L1"), ("v2", "L2"), ("v0", None)):
        with mounted(sn.view(key, parent), dir=mnt) as path:
            with pytest.raises(OSError, match="Read-only") as info:
                Path(path, "new").write_text("x")
            assert info.value.errno == errno.EROFS


def test_mounts_returns_the_same_mounts_as_prepare(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {"f": "1"})
    prepared = sn.prepare("b", "L1")
    viewed = sn.view("v", "L1")
    assert sn.mounts("b") == prepared
    assert sn.mounts("v") == viewed


def test_parent_mounts_show_what_the_snapshot_started_from(sn: Snapshotter, mnt: str) -> None:
    _layer(sn, "L1", None, {"f": "1"})
    _layer(sn, "L2", "L1", {"g": "2"})
    sn.prepare("c", "L2")
    Path(sn.writable_dir("c"), "h").write_text("3")
    with mounted(sn.parent_mounts("c"), dir=mnt) as path:
        assert _tree(path) == {"f": "1", "g": "2"}
    assert sn.parent_mounts("L1") == []


def test_remove_deletes_the_files(sn: Snapshotter, root: Path) -> None:
    sn.prepare("a")
    path = sn.writable_dir("a")
    sn.remove("a")
    assert not os.path.exists(path)
    assert [i.key for i in sn.walk()] == []


def test_concurrent_prepares_get_their_own_snapshots(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {"f": "1"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: sn.prepare(f"c{i}", "L1"), range(16)))
    dirs = {sn.writable_dir(f"c{i}") for i in range(16)}
    assert len(dirs) == 16
    assert sorted(i.key for i in sn.walk() if i.kind == "active") == sorted(
        f"c{i}" for i in range(16)
    )


def test_concurrent_prepares_of_one_key_make_one_snapshot(sn: Snapshotter) -> None:
    def attempt(_: int) -> bool:
        try:
            sn.prepare("same")
        except AlreadyExists:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count(True) == 1


# --------------------------------------------------------------------------- errors


def test_prepare_with_a_missing_parent_is_not_found(sn: Snapshotter) -> None:
    with pytest.raises(NotFound, match="nope"):
        sn.prepare("a", "nope")
    assert [i.key for i in sn.walk()] == []


def test_prepare_on_an_active_parent_is_a_conflict(sn: Snapshotter) -> None:
    sn.prepare("a")
    with pytest.raises(Conflict, match="a"):
        sn.prepare("b", "a")


def test_duplicate_key_already_exists(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {})
    sn.prepare("a")
    with pytest.raises(AlreadyExists, match="a"):
        sn.prepare("a")
    with pytest.raises(AlreadyExists, match="L1"):
        sn.view("L1", "L1")
    with pytest.raises(AlreadyExists, match="L1"):
        sn.commit("L1", "a")


def test_commit_of_a_committed_key_is_a_conflict(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {})
    with pytest.raises(Conflict, match="L1"):
        sn.commit("L2", "L1")


def test_commit_of_a_view_is_a_conflict(sn: Snapshotter) -> None:
    sn.view("v")
    with pytest.raises(Conflict, match="v"):
        sn.commit("V", "v")


def test_commit_of_a_missing_key_is_not_found(sn: Snapshotter) -> None:
    with pytest.raises(NotFound, match="ghost"):
        sn.commit("G", "ghost")


def test_remove_with_children_fails_until_they_are_gone(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {})
    sn.prepare("child", "L1")
    with pytest.raises(FailedPrecondition, match="L1"):
        sn.remove("L1")
    sn.remove("child")
    sn.remove("L1")
    assert [i.key for i in sn.walk()] == []


def test_remove_of_a_missing_key_is_not_found(sn: Snapshotter) -> None:
    with pytest.raises(NotFound, match="ghost"):
        sn.remove("ghost")


def test_committed_snapshots_have_no_mounts_or_writable_dir(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {})
    sn.view("v", "L1")
    with pytest.raises(Conflict, match="L1"):
        sn.mounts("L1")
    with pytest.raises(Conflict, match="L1"):
        sn.writable_dir("L1")
    with pytest.raises(Conflict, match="v"):
        sn.writable_dir("v")


@pytest.mark.parametrize("key", ["", "a\0b"])
def test_invalid_keys_are_refused(sn: Snapshotter, key: str) -> None:
    with pytest.raises(InvalidArgument):
        sn.prepare(key)


def test_invalid_labels_are_refused(sn: Snapshotter) -> None:
    with pytest.raises(InvalidArgument):
        sn.prepare("a", labels={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        sn.prepare("a", labels={"k": "v" * 5000})
    assert [i.key for i in sn.walk()] == []


# --------------------------------------------------------------------------- metadata


def test_stat_reports_kind_parent_and_labels(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {})
    sn.prepare("a", "L1", labels={"role": "rootfs"})
    info = sn.stat("a")
    assert (info.key, info.kind, info.parent, dict(info.labels)) == (
        "a",
        "active",
        "L1",
        {"role": "rootfs"},
    )
    assert info.created_at.tzinfo is not None


def test_walk_lists_every_snapshot_parents_first(sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {})
    _layer(sn, "L2", "L1", {})
    sn.prepare("a", "L2")
    sn.view("v", "L1")
    seen = [(i.key, i.kind, i.parent) for i in sn.walk()]
    assert seen == [
        ("L1", "committed", None),
        ("L2", "committed", "L1"),
        ("a", "active", "L2"),
        ("v", "view", "L1"),
    ]


def test_update_labels_replaces_them(sn: Snapshotter) -> None:
    sn.prepare("a", labels={"x": "1", "y": "2"})
    info = sn.update_labels("a", {"z": "3"})
    assert dict(info.labels) == {"z": "3"}
    assert dict(sn.stat("a").labels) == {"z": "3"}
    assert sn.stat("a").updated_at >= sn.stat("a").created_at


def test_commit_keeps_labels_unless_given(sn: Snapshotter) -> None:
    sn.prepare("a", labels={"x": "1"})
    sn.prepare("b", labels={"x": "1"})
    assert dict(sn.commit("A", "a").labels) == {"x": "1"}
    assert dict(sn.commit("B", "b", labels={"gc.root": "y"}).labels) == {"gc.root": "y"}


def test_update_labels_of_a_missing_key_is_not_found(sn: Snapshotter) -> None:
    with pytest.raises(NotFound, match="ghost"):
        sn.update_labels("ghost", {})


# --------------------------------------------------------------------------- usage


def test_usage_counts_what_was_written(sn: Snapshotter) -> None:
    sn.prepare("a")
    empty = sn.usage("a")
    Path(sn.writable_dir("a"), "blob").write_bytes(os.urandom(MiB))
    os.mkdir(os.path.join(sn.writable_dir("a"), "d"))
    full = sn.usage("a")
    assert full.size - empty.size >= MiB
    assert full.inodes - empty.inodes == 2
    sn.commit("A", "a")
    assert sn.usage("A") == full


def test_usage_counts_hard_links_once(sn: Snapshotter) -> None:
    sn.prepare("a")
    upper = sn.writable_dir("a")
    Path(upper, "f").write_bytes(os.urandom(MiB))
    os.link(os.path.join(upper, "f"), os.path.join(upper, "g"))
    assert sn.usage("a").size < 2 * MiB


def test_overlay_usage_is_the_layer_only(impl: str, sn: Snapshotter) -> None:
    _layer(sn, "L1", None, {"big": "x" * MiB})
    sn.prepare("a", "L1")
    if impl == "overlay":
        assert sn.usage("a").size < MiB
    else:
        assert sn.usage("a").size >= MiB


# --------------------------------------------------------------------------- deep chains


def _chain(sn: Snapshotter, depth: int) -> str:
    parent: str | None = None
    for i in range(depth):
        _layer(sn, f"L{i}", parent, {f"f{i}": str(i)})
        parent = f"L{i}"
    assert parent is not None
    return parent


def test_two_hundred_layers_mount(sn: Snapshotter, mnt: str) -> None:
    top = _chain(sn, 200)
    mounts = sn.prepare("c", top)
    if sn.whiteout_mode == "overlay":  # make sure this goes beyond one page of options
        assert not fits_mount_data(",".join(mounts[0].options))
    with mounted(mounts, dir=mnt) as path:
        names = set(os.listdir(path))
        Path(path, "new").write_text("x")
    assert names == {f"f{i}" for i in range(200)}
    with mounted(sn.view("v", top), dir=mnt) as path:
        assert len(os.listdir(path)) == 200


def test_two_hundred_layers_mount_without_lowerdir_append(
    impl: str, sn: Snapshotter, mnt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernels before 6.8: paths relative to a directory in a thread of its own."""
    if impl != "overlay":
        pytest.skip("only overlay has a lowerdir list")
    monkeypatch.setattr(mount_module, "_lowerdir_append_supported", lambda: False)
    cwd = os.getcwd()
    top = _chain(sn, 200)
    with mounted(sn.prepare("c", top), dir=mnt) as path:
        assert len(os.listdir(path)) == 200
    assert os.getcwd() == cwd


def test_short_chains_mount_with_plain_mount(sn: Snapshotter, mnt: str) -> None:
    top = _chain(sn, 3)
    mounts = sn.prepare("c", top)
    assert fits_mount_data(",".join(mounts[0].options))
    with mounted(mounts, dir=mnt) as path:
        assert sorted(os.listdir(path)) == ["f0", "f1", "f2"]


# --------------------------------------------------------------------------- crash safety


def test_a_directory_without_metadata_is_removed_on_open(
    impl: str, sn: Snapshotter, root: Path
) -> None:
    _layer(sn, "L1", None, {"f": "1"})
    sn.close()
    orphan = root / "snapshots" / "9999"
    (orphan / "fs").mkdir(parents=True)
    (orphan / "fs" / "half-copied").write_text("x")
    with new_snapshotter(root, impl) as reopened:
        assert not orphan.exists()
        assert [i.key for i in reopened.walk()] == ["L1"]
        assert reopened.stat("L1").kind == "committed"


def test_metadata_without_a_finished_directory_is_invisible_and_removed(
    impl: str, sn: Snapshotter, root: Path
) -> None:
    _layer(sn, "L1", None, {})
    sn.close()
    # A prepare that crashed after claiming the key, halfway through making its dir.
    meta = MetaStore(str(root / "snapshots" / "metadata.db"), impl)
    row, _ = meta.reserve("half", "active", "L1", {}, 0)
    meta.close()
    half = root / "snapshots" / str(row.id)
    (half / "fs").mkdir(parents=True)
    with new_snapshotter(root, impl) as reopened:
        assert [i.key for i in reopened.walk()] == ["L1"]
        assert not half.exists()
        with pytest.raises(NotFound):
            reopened.stat("half")
        reopened.prepare("half", "L1")
        assert reopened.stat("half").kind == "active"


def test_a_prepare_in_progress_is_not_listed(impl: str, sn: Snapshotter, root: Path) -> None:
    meta = MetaStore(str(root / "snapshots" / "metadata.db"), impl)
    try:
        meta.reserve("busy", "active", None, {}, 0)
        assert [i.key for i in sn.walk()] == []
        with pytest.raises(NotFound):
            sn.stat("busy")
        with pytest.raises(AlreadyExists):
            sn.prepare("busy")
    finally:
        meta.close()


def test_a_failed_prepare_leaves_nothing(
    impl: str, sn: Snapshotter, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, path: str, kind: str, lowers: list[str]) -> None:
        os.mkdir(os.path.join(path, "fs"))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(sn), "_populate", broken)
    with pytest.raises(OSError, match="No space"):
        sn.prepare("a")
    monkeypatch.undo()
    assert [i.key for i in sn.walk()] == []
    assert [n for n in os.listdir(root / "snapshots") if n.isdigit()] == []
    sn.prepare("a")


def test_cleanup_waits_for_other_processes_to_close(impl: str, sn: Snapshotter, root: Path) -> None:
    orphan = root / "snapshots" / "9999"
    orphan.mkdir()
    with new_snapshotter(root, impl) as second:
        assert orphan.exists()  # the first snapshotter may be using it
        assert second.cleanup() == []
    sn.close()
    with new_snapshotter(root, impl) as third:
        assert not orphan.exists()
        assert third.cleanup() == []


def test_a_root_belongs_to_one_snapshotter(impl: str, sn: Snapshotter, root: Path) -> None:
    sn.close()
    other = "native" if impl == "overlay" else "overlay"
    with pytest.raises(FailedPrecondition, match=impl):
        new_snapshotter(root, other)
    with new_snapshotter(root, "auto") as again:
        assert again.name == impl


# --------------------------------------------------------------------------- mount_all


def test_unmount_of_something_not_mounted_is_a_no_op(scratch: Path) -> None:
    unmount(str(scratch))
    unmount(str(scratch / "missing"))


def test_mounted_cleans_up_when_the_body_raises(scratch: Path, mnt: str) -> None:
    src = scratch / "src"
    src.mkdir()
    with (
        pytest.raises(RuntimeError, match="boom"),
        mounted([Mount("bind", str(src), ("rbind", "ro"))], dir=mnt),
    ):
        raise RuntimeError("boom")
    assert os.listdir(mnt) == []


def test_mount_all_undoes_earlier_mounts_when_one_fails(scratch: Path) -> None:
    src, target = scratch / "src", scratch / "target"
    src.mkdir()
    target.mkdir()
    with pytest.raises(NotFound, match="missing"):
        mount_all(
            [
                Mount("bind", str(src), ("rbind",)),
                Mount("bind", str(scratch / "missing"), ("rbind",)),
            ],
            str(target),
        )
    assert _mounts_under(scratch) == []


def test_mounts_stack_and_unmount_peels_them_all(scratch: Path) -> None:
    a, b, target = scratch / "a", scratch / "b", scratch / "target"
    for d in (a, b, target):
        d.mkdir()
    (b / "from-b").write_text("")
    mount_all(
        [Mount("bind", str(a), ("bind",)), Mount("bind", str(b), ("bind", "ro"))], str(target)
    )
    try:
        assert os.listdir(target) == ["from-b"]
        assert len(_mounts_under(scratch)) == 2
    finally:
        unmount(str(target))
    assert _mounts_under(scratch) == []
