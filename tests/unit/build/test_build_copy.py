"""COPY/ADD source selection, cache digests and archive recognition (build.copy)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from moorage.build.copy import archive_reader, plan_copy
from moorage.build.dockerignore import PatternMatcher
from moorage.errors import InvalidArgument, NotFound


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "a.txt").write_text("a")
    (tmp_path / "dir" / "sub" / "b.txt").write_text("b")
    (tmp_path / "one.txt").write_text("1")
    (tmp_path / "two.log").write_text("2")
    (tmp_path / "link").symlink_to("/etc/passwd")
    return tmp_path


def _targets(plan: object) -> list[str]:
    return sorted(e.target for e in plan.entries)  # type: ignore[attr-defined]


def test_a_directory_copies_its_contents(ctx: Path) -> None:
    plan = plan_copy(str(ctx), ["dir"], "/app", workdir="/")
    assert plan.dest_dir == "/app"
    assert _targets(plan) == ["a.txt", "sub", "sub/b.txt"]


def test_a_file_lands_at_the_destination_or_inside_it(ctx: Path) -> None:
    assert plan_copy(str(ctx), ["one.txt"], "/x/renamed", workdir="/").dest_dir == "/x"
    assert _targets(plan_copy(str(ctx), ["one.txt"], "/x/renamed", workdir="/")) == ["renamed"]
    inside = plan_copy(str(ctx), ["one.txt"], "/x/", workdir="/")
    assert (inside.dest_dir, _targets(inside)) == ("/x", ["one.txt"])
    relative = plan_copy(str(ctx), ["one.txt"], "rel/", workdir="/work")
    assert relative.dest_dir == "/work/rel"


def test_wildcards_select_every_match_and_none_is_an_error(ctx: Path) -> None:
    assert _targets(plan_copy(str(ctx), ["*.txt", "*.log"], "/d/", workdir="/")) == [
        "one.txt",
        "two.log",
    ]
    with pytest.raises(NotFound, match="no source files"):
        plan_copy(str(ctx), ["*.nothing"], "/d/", workdir="/")


def test_sources_cannot_leave_the_context(ctx: Path) -> None:
    with pytest.raises(InvalidArgument, match="outside the build context"):
        plan_copy(str(ctx), ["../escape"], "/d/", workdir="/")
    # A symlink named as a source is followed inside the context only: /etc/passwd
    # is the context's /etc/passwd, which does not exist, never the host's.
    with pytest.raises(NotFound):
        plan_copy(str(ctx), ["link"], "/d/", workdir="/")
    (ctx / "inlink").symlink_to("one.txt")
    plan = plan_copy(str(ctx), ["inlink"], "/d/", workdir="/")
    assert [(Path(e.source).name, e.target) for e in plan.entries] == [("one.txt", "inlink")]


def test_dockerignore_and_exclude_leave_entries_out(ctx: Path) -> None:
    ignore = PatternMatcher(["dir/sub"])
    assert _targets(plan_copy(str(ctx), ["dir"], "/a", workdir="/", ignore=ignore)) == ["a.txt"]
    excluded = plan_copy(str(ctx), ["dir"], "/a", workdir="/", excludes=["**/b.txt"])
    assert _targets(excluded) == ["a.txt", "sub"]


def test_the_digest_follows_content_not_times(ctx: Path) -> None:
    first = plan_copy(str(ctx), ["dir"], "/app", workdir="/").digest()
    (ctx / "dir" / "a.txt").touch()
    assert plan_copy(str(ctx), ["dir"], "/app", workdir="/").digest() == first
    (ctx / "dir" / "a.txt").write_text("changed")
    assert plan_copy(str(ctx), ["dir"], "/app", workdir="/").digest() != first


def test_a_rewrite_that_keeps_size_and_mtime_still_changes_the_digest(
    ctx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moorage.build import copy as copying

    monkeypatch.setattr(copying, "_RACY_NS", 0)  # remember digests of files just written
    target = ctx / "dir" / "a.txt"
    before = target.stat()
    first = plan_copy(str(ctx), ["dir"], "/app", workdir="/").digest()
    target.write_text("z")  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime; ctime moves

    assert plan_copy(str(ctx), ["dir"], "/app", workdir="/").digest() != first


def test_a_file_just_written_is_hashed_again(ctx: Path) -> None:
    from moorage.build import copy as copying

    target = ctx / "one.txt"
    plan_copy(str(ctx), ["one.txt"], "/x", workdir="/").digest()
    st = target.stat()

    assert (st.st_dev, st.st_ino) not in copying._DIGESTS  # too recent to trust


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("x.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return out.getvalue()


@pytest.mark.parametrize(
    "pack",
    [lambda b: b, gzip.compress, bz2.compress, lzma.compress],
    ids=["tar", "gz", "bz2", "xz"],
)
def test_archives_are_recognised_by_content(tmp_path: Path, pack: object) -> None:
    path = tmp_path / "archive.bin"
    path.write_bytes(pack(_tar()))  # type: ignore[operator]
    opener = archive_reader(str(path))
    assert opener is not None
    with opener() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        assert [m.name for m in tar] == ["x.txt"]


@pytest.mark.parametrize("data", [b"just text\n" * 100, gzip.compress(b"not a tar" * 100), b""])
def test_other_files_are_not_archives(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "file.tar.gz"
    path.write_bytes(data)
    assert archive_reader(str(path)) is None
