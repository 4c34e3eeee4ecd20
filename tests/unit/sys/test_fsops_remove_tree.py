"""fsops.remove_tree: rm -rf by descriptors, at any depth, never following a symlink."""

from __future__ import annotations

import os
from pathlib import Path

from moorage.sys.fsops import remove_tree


def test_removes_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    top = tmp_path / "deep"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:  # 3000 levels: deeper than shutil.rmtree's recursion and PATH_MAX allow
        for _ in range(3000):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=child), "w") as f:
                f.write("x")
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    remove_tree(None, str(top))
    assert not top.exists()


def test_does_not_follow_symlinks_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "link").symlink_to(outside)
    (tree / "link-to-file").symlink_to(outside / "keep")
    remove_tree(None, str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_text() == "precious"


def test_a_wide_tree_with_files_fifos_and_empty_dirs(tmp_path: Path) -> None:
    tree = tmp_path / "wide"
    for i in range(200):
        (tree / f"d{i}" / "e").mkdir(parents=True)
        (tree / f"d{i}" / "file").write_text("x")
    os.mkfifo(tree / "fifo")
    remove_tree(None, str(tree))
    assert not tree.exists()


def test_relative_to_a_directory_and_missing_is_fine(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "plain").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        remove_tree(fd, "a")
        remove_tree(fd, "plain")
        remove_tree(fd, "missing")
    finally:
        os.close(fd)
    assert sorted(os.listdir(tmp_path)) == []
