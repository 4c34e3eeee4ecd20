"""Snapshot logic that needs no mounts: option strings, the lowerdir limit, metadata
(ids, pending rows, chains), labels, disk usage and the tree copy."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from moorage.store.snapshots.local import check_key, check_labels, disk_usage
from moorage.store.snapshots.metadata import MetaStore, recorded_driver
from moorage.store.snapshots.mount import (
    fits_mount_data,
    overlay_options,
    relative_overlay_data,
    split_options,
)
from moorage.store.snapshots.native import copy_tree
from moorage.sys import libc

# --------------------------------------------------------------------------- options


def test_overlay_options_list_lowers_nearest_first() -> None:
    assert overlay_options(["/s/2/fs", "/s/1/fs"], "/s/3/fs", "/s/3/work") == (
        "lowerdir=/s/2/fs:/s/1/fs",
        "upperdir=/s/3/fs",
        "workdir=/s/3/work",
    )


def test_overlay_options_without_upper_are_lowers_only() -> None:
    assert overlay_options(["/a", "/b"], extra=["index=off"]) == ("lowerdir=/a:/b", "index=off")


@pytest.mark.parametrize(
    ("lowers", "upper", "work"),
    [([], None, None), (["/a"], "/u", None), (["/a:b"], None, None), (["/a"], "/u,x", "/w")],
)
def test_overlay_options_refuse_what_overlay_cannot_parse(
    lowers: list[str], upper: str | None, work: str | None
) -> None:
    with pytest.raises(InvalidArgument):
        overlay_options(lowers, upper, work)


def test_split_options_separates_flags_from_data() -> None:
    flags, data = split_options(["rbind", "ro", "nosuid", "lowerdir=/a", "index=off"])
    assert flags == libc.MS_BIND | libc.MS_REC | libc.MS_RDONLY | libc.MS_NOSUID
    assert data == ["lowerdir=/a", "index=off"]


def test_split_options_later_options_win() -> None:
    assert split_options(["ro", "rw"])[0] == 0


def test_split_options_refuse_empty_option() -> None:
    with pytest.raises(InvalidArgument):
        split_options(["ro", ""])


def test_mount_data_must_fit_a_page_with_its_nul() -> None:
    assert fits_mount_data("x" * 4095, page_size=4096)
    assert not fits_mount_data("x" * 4096, page_size=4096)


def test_two_hundred_absolute_layers_do_not_fit_but_relative_ones_do() -> None:
    base = "/var/lib/moorage/snapshots"
    lowers = [f"{base}/{i}/fs" for i in range(200, 0, -1)]
    data = list(overlay_options(lowers, f"{base}/201/fs", f"{base}/201/work"))
    assert not fits_mount_data(",".join(data), page_size=4096)
    cwd, short = relative_overlay_data(data)
    assert cwd == base
    assert short.startswith("lowerdir=200/fs:199/fs:")
    assert short.endswith(",upperdir=201/fs,workdir=201/work")
    assert fits_mount_data(short, page_size=4096)


def test_relative_overlay_data_keeps_other_options() -> None:
    cwd, short = relative_overlay_data(["lowerdir=/s/2/fs:/s/1/fs", "index=off"])
    assert (cwd, short) == ("/s", "lowerdir=2/fs:1/fs,index=off")


def test_relative_overlay_data_needs_absolute_paths() -> None:
    with pytest.raises(InvalidArgument):
        relative_overlay_data(["lowerdir=a:b"])


# --------------------------------------------------------------------------- metadata


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    store = MetaStore(str(tmp_path / "metadata.db"), "overlay")
    yield store
    store.close()


def _commit(meta: MetaStore, name: str, parent: str | None = None) -> int:
    row, _ = meta.reserve(f"tmp-{name}", "active", parent, {}, 1)
    meta.mark_ready(row.id)
    return meta.commit(f"tmp-{name}", name, None, (0, 0), 2).id


def test_ids_are_sequential_and_never_reused(meta: MetaStore) -> None:
    a, _ = meta.reserve("a", "active", None, {}, 1)
    b, _ = meta.reserve("b", "active", None, {}, 1)
    meta.mark_ready(b.id)
    meta.remove("b")
    meta.drop(a.id)
    c, _ = meta.reserve("c", "active", None, {}, 1)
    assert (a.id, b.id, c.id) == (1, 2, 3)


def test_ids_are_not_reused_after_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "metadata.db")
    first = MetaStore(path, "overlay")
    row, _ = first.reserve("a", "active", None, {}, 1)
    first.drop(row.id)
    first.close()
    second = MetaStore(path, "overlay")
    try:
        assert second.reserve("b", "active", None, {}, 1)[0].id == row.id + 1
    finally:
        second.close()


def test_pending_rows_are_invisible_but_hold_their_key(meta: MetaStore) -> None:
    meta.reserve("a", "active", None, {}, 1)
    assert meta.rows() == []
    with pytest.raises(NotFound, match="a"):
        meta.get("a")
    with pytest.raises(AlreadyExists, match="a"):
        meta.reserve("a", "view", None, {}, 1)


def test_drop_pending_spares_the_ones_in_flight(meta: MetaStore) -> None:
    a, _ = meta.reserve("a", "active", None, {}, 1)
    b, _ = meta.reserve("b", "active", None, {}, 1)
    c, _ = meta.reserve("c", "active", None, {}, 1)
    meta.mark_ready(c.id)
    assert meta.drop_pending({b.id}) == [a.id]
    assert meta.all_ids() == {b.id, c.id}


def test_reserve_returns_the_chain_nearest_first(meta: MetaStore) -> None:
    one = _commit(meta, "one")
    two = _commit(meta, "two", "one")
    three = _commit(meta, "three", "two")
    _, chain = meta.reserve("top", "active", "three", {}, 1)
    assert chain == [three, two, one]


def test_commit_keeps_the_id_and_renames(meta: MetaStore) -> None:
    row, _ = meta.reserve("a", "active", None, {"x": "1"}, 1)
    meta.mark_ready(row.id)
    committed = meta.commit("a", "A", None, (4096, 1), 2)
    assert (committed.id, committed.key, committed.kind) == (row.id, "A", "committed")
    assert (committed.labels, committed.size, committed.inodes) == ({"x": "1"}, 4096, 1)


def test_commit_checks_kind_and_name(meta: MetaStore) -> None:
    _commit(meta, "A")
    row, _ = meta.reserve("a", "active", None, {}, 1)
    meta.mark_ready(row.id)
    with pytest.raises(Conflict, match="A"):
        meta.commit("A", "B", None, (0, 0), 2)
    with pytest.raises(AlreadyExists, match="A"):
        meta.commit("a", "A", None, (0, 0), 2)


def test_parent_must_exist_and_be_committed(meta: MetaStore) -> None:
    with pytest.raises(NotFound, match="nope"):
        meta.reserve("a", "active", "nope", {}, 1)
    row, _ = meta.reserve("b", "active", None, {}, 1)
    meta.mark_ready(row.id)
    with pytest.raises(Conflict, match="b"):
        meta.reserve("c", "active", "b", {}, 1)


def test_remove_refuses_a_parent_even_of_a_pending_child(meta: MetaStore) -> None:
    _commit(meta, "A")
    meta.reserve("child", "active", "A", {}, 1)
    with pytest.raises(FailedPrecondition, match="child"):
        meta.remove("A")


def test_a_database_records_its_driver(tmp_path: Path) -> None:
    path = str(tmp_path / "metadata.db")
    assert recorded_driver(path) is None
    MetaStore(path, "native").close()
    assert recorded_driver(path) == "native"
    with pytest.raises(FailedPrecondition, match="native"):
        MetaStore(path, "overlay")


# --------------------------------------------------------------------------- keys, labels


@pytest.mark.parametrize("key", ["", "a\0", None, 3, "k" * 5000])
def test_bad_keys(key: object) -> None:
    with pytest.raises(InvalidArgument):
        check_key(key)


def test_labels_must_be_short_strings() -> None:
    assert check_labels(None) == {}
    assert check_labels({"a": "b"}) == {"a": "b"}
    for bad in ({"": "x"}, {"a": 1}, {"a": "x" * 4096}):
        with pytest.raises(InvalidArgument):
            check_labels(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- files


def test_disk_usage_counts_each_inode_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "d" / "f", tmp_path / "g")
    (tmp_path / "s").symlink_to("d/f")
    usage = disk_usage(str(tmp_path))
    assert usage.inodes == 4  # tmp_path, d, f (= g), s
    assert 100_000 <= usage.size < 200_000


def test_copy_tree_keeps_links_modes_times_and_special_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("data")
    os.chmod(src / "d" / "f", 0o4751)
    os.link(src / "d" / "f", src / "hard")
    (src / "link").symlink_to("d/f")
    os.mkfifo(src / "fifo")
    os.utime(src / "d" / "f", (1_000_000, 1_000_000))
    os.chmod(src, 0o751)
    dst = tmp_path / "dst"
    copy_tree(str(src), str(dst))
    f = os.lstat(dst / "d" / "f")
    assert stat.S_IMODE(f.st_mode) == 0o4751
    assert f.st_mtime == 1_000_000
    assert os.lstat(dst / "hard").st_ino == f.st_ino
    assert os.readlink(dst / "link") == "d/f"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(dst).st_mode) == 0o751


def test_copy_tree_reports_the_failure(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="missing"):
        copy_tree(str(tmp_path / "missing"), str(tmp_path / "dst"))
