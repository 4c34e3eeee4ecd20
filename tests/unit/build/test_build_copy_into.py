"""Putting a COPY's files into a root filesystem without an archive in between
(build.copy.copy_into over store.archive_apply.copy_tree_entries): what lands where,
with which owner, mode, links and attributes, and nothing outside the root."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from moorage.build.copy import copy_into, plan_copy


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "a.txt").write_text("a")
    (src / "dir" / "sub" / "b.txt").write_text("bb")
    os.chmod(src / "dir" / "a.txt", 0o640)
    os.link(src / "dir" / "a.txt", src / "dir" / "hard.txt")
    (src / "dir" / "rel").symlink_to("a.txt")
    (src / "dir" / "abs").symlink_to("/etc/passwd")
    return src


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir()
    return root


def test_files_directories_and_symlinks_land_under_the_destination(
    source: Path, rootfs: Path
) -> None:
    copy_into(plan_copy(str(source), ["dir"], "/app", workdir="/"), str(rootfs))

    app = rootfs / "app"
    assert (app / "a.txt").read_text() == "a"
    assert (app / "sub" / "b.txt").read_text() == "bb"
    assert oct((app / "a.txt").stat().st_mode & 0o777) == oct(0o640)
    assert os.readlink(app / "rel") == "a.txt"
    assert os.readlink(app / "abs") == "/etc/passwd"  # copied as a link, never followed


def test_hard_links_stay_linked(source: Path, rootfs: Path) -> None:
    copy_into(plan_copy(str(source), ["dir"], "/app", workdir="/"), str(rootfs))

    assert (rootfs / "app" / "a.txt").stat().st_ino == (rootfs / "app" / "hard.txt").stat().st_ino


def test_owner_and_mode_apply_to_every_entry(source: Path, rootfs: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files to another owner needs root")
    copy_into(
        plan_copy(str(source), ["dir"], "/app", workdir="/", owner=(1000, 1001), mode=0o600),
        str(rootfs),
    )

    for path in (rootfs / "app" / "a.txt", rootfs / "app" / "sub"):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o600)


def test_sockets_are_left_out(source: Path, rootfs: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(source / "dir" / "s.sock"))
        copy_into(plan_copy(str(source), ["dir"], "/app", workdir="/"), str(rootfs))

    assert not (rootfs / "app" / "s.sock").exists()
    assert (rootfs / "app" / "a.txt").exists()


def test_a_symlink_in_the_root_cannot_lead_the_copy_out(
    source: Path, rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (rootfs / "app").symlink_to(outside)  # absolute: resolved inside the root instead

    copy_into(plan_copy(str(source), ["dir"], "/app", workdir="/"), str(rootfs))

    assert list(outside.iterdir()) == []
    assert (rootfs / str(outside).lstrip("/") / "a.txt").read_text() == "a"


def test_an_existing_file_is_replaced_and_a_directory_kept(source: Path, rootfs: Path) -> None:
    (rootfs / "app" / "sub").mkdir(parents=True)
    (rootfs / "app" / "sub" / "old.txt").write_text("old")
    (rootfs / "app" / "a.txt").write_text("previous content, longer")

    copy_into(plan_copy(str(source), ["dir"], "/app", workdir="/"), str(rootfs))

    assert (rootfs / "app" / "a.txt").read_text() == "a"
    assert (rootfs / "app" / "sub" / "old.txt").read_text() == "old"


def test_extended_attributes_go_only_when_asked(source: Path, rootfs: Path) -> None:
    try:
        os.setxattr(source / "dir" / "a.txt", "user.note", b"kept")
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    plan = plan_copy(str(source), ["dir"], "/app", workdir="/")

    copy_into(plan, str(rootfs))
    assert "user.note" not in os.listxattr(rootfs / "app" / "a.txt")

    copy_into(plan, str(rootfs / "again"), keep_xattrs=True) if (
        rootfs / "again"
    ).mkdir() is None else None
    assert os.getxattr(rootfs / "again" / "app" / "a.txt", "user.note") == b"kept"
