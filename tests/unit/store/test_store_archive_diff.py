"""write_diff and tar_directory: the entries, their order, reproducibility, round trips.

Overlay upper directories are imitated here with what overlayfs would leave (0:0
character devices; the opaque xattr needs root and is in the integration tests, which
also read real upper directories).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from moorage.errors import InvalidArgument
from moorage.store.archive import apply_layer, tar_directory, write_diff

T0 = 1_600_000_000


def _write(path: Path, data: str | bytes, mtime: int = T0, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (mtime, mtime))


def _settle(root: Path, mtime: int = T0) -> None:
    """Give every directory a fixed mtime (children first), as a build would."""
    for dirpath, _, _ in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
        os.utime(dirpath, (mtime, mtime))


def _tree(root: Path) -> None:
    _write(root / "etc/hostname", "box\n")
    _write(root / "etc/motd", "welcome\n", mode=0o600)
    _write(root / "usr/bin/tool", b"\x7fELF" + bytes(range(256)) * 40, mode=0o755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-alias")
    os.symlink("tool", root / "usr/bin/t")
    os.utime(root / "usr/bin/t", (T0, T0), follow_symlinks=False)
    (root / "var/empty").mkdir(parents=True)
    os.mkfifo(root / "var/pipe")
    os.utime(root / "var/pipe", (T0, T0))
    _write(root / ("x" * 120 + "/long-name"), "deep")
    _settle(root)


def _tar(upper: Path, **kwargs: object) -> bytes:
    out = io.BytesIO()
    write_diff(out, str(upper), **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        return list(tar)


def _names(data: bytes) -> list[str]:
    return [m.name for m in _members(data)]


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """What a layer must reproduce: type, mode, owner, mtime (s), content, target, xattrs."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                extra: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            else:
                extra = st.st_rdev if stat.S_ISCHR(st.st_mode) else None
            xattrs = {}
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                xattrs = {
                    k: os.getxattr(path, k) for k in os.listxattr(path) if k.startswith("user.")
                }
            mtime = st.st_mtime_ns // 10**9
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, mtime, extra, sorted(xattrs.items()))
    return found


# --- tar_directory and the format ----------------------------------------------------


def test_tar_directory_entries_are_sorted_parents_first(tmp_path: Path) -> None:
    _tree(tmp_path / "root")
    out = io.BytesIO()

    stats = tar_directory(out, str(tmp_path / "root"))

    names = _names(out.getvalue())
    assert names == [
        "etc",
        "etc/hostname",
        "etc/motd",
        "usr",
        "usr/bin",
        "usr/bin/t",
        "usr/bin/tool",
        "usr/bin/tool-alias",
        "var",
        "var/empty",
        "var/pipe",
        "x" * 120,
        "x" * 120 + "/long-name",
    ]
    assert stats.files == len(names)
    assert stats.whiteouts == 0
    assert stats.bytes == len("box\n") + len("welcome\n") + 4 + 256 * 40 + len("deep")


def test_tar_directory_headers_are_numeric_pax_without_times_but_mtime(tmp_path: Path) -> None:
    _tree(tmp_path / "root")
    out = io.BytesIO()

    tar_directory(out, str(tmp_path / "root"))

    members = {m.name: m for m in _members(out.getvalue())}
    for m in members.values():
        assert (m.uname, m.gname) == ("", "")
        assert m.mtime == T0
        assert not {"atime", "ctime", "uname", "gname"} & set(m.pax_headers)
    alias = members["usr/bin/tool-alias"]
    assert alias.islnk()
    assert alias.linkname == "usr/bin/tool"
    assert members["usr/bin/t"].issym()
    assert members["var/pipe"].isfifo()
    assert members["etc/motd"].mode == 0o600
    assert out.getvalue()[257:263] == b"ustar\x00"  # POSIX (PAX) headers


def test_same_tree_twice_gives_identical_bytes(tmp_path: Path) -> None:
    _tree(tmp_path / "a")
    # the same content, created in the opposite order
    b = tmp_path / "b"
    _write(b / ("x" * 120 + "/long-name"), "deep")
    os.mkfifo(b / "var-tmp")
    (b / "var").mkdir()
    os.rename(b / "var-tmp", b / "var/pipe")
    os.utime(b / "var/pipe", (T0, T0))
    (b / "var/empty").mkdir()
    _write(b / "usr/bin/tool", b"\x7fELF" + bytes(range(256)) * 40, mode=0o755)
    os.symlink("tool", b / "usr/bin/t")
    os.utime(b / "usr/bin/t", (T0, T0), follow_symlinks=False)
    os.link(b / "usr/bin/tool", b / "usr/bin/tool-alias")
    _write(b / "etc/motd", "welcome\n", mode=0o600)
    _write(b / "etc/hostname", "box\n")
    _settle(b)

    first, second, third = io.BytesIO(), io.BytesIO(), io.BytesIO()
    tar_directory(first, str(tmp_path / "a"))
    tar_directory(second, str(tmp_path / "a"))
    tar_directory(third, str(b))

    assert first.getvalue() == second.getvalue() == third.getvalue()


def test_source_date_epoch_clamps_mtimes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _write(root / "old", "o", mtime=T0 - 100)
    _write(root / "new", "n", mtime=T0 + 100)
    _settle(root, T0 + 50)

    out = io.BytesIO()
    tar_directory(out, str(root), source_date_epoch=T0)

    assert {m.name: m.mtime for m in _members(out.getvalue())} == {"new": T0, "old": T0 - 100}


def test_source_date_epoch_makes_fresh_trees_reproducible(tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        root = tmp_path / name
        (root / "d").mkdir(parents=True)
        (root / "d/f").write_text("same")  # mtimes: now, different for each tree
        os.utime(root / "d/f", ns=(0, (T0 + 10) * 10**9 + (7 if name == "one" else 9)))
        out = io.BytesIO()
        tar_directory(out, str(root), source_date_epoch=T0)
        outputs.append(out.getvalue())

    assert outputs[0] == outputs[1]


def test_xattrs_travel_under_the_policy(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _write(root / "f", "x")
    try:
        os.setxattr(root / "f", "user.keep", b"\x00\xffbinary")
        os.setxattr(root / "f", "user.overlay.origin", b"no")
    except OSError as exc:  # pragma: no cover
        pytest.skip(f"no user xattrs here: {exc}")

    out = io.BytesIO()
    tar_directory(out, str(root))

    (member,) = _members(out.getvalue())
    xattrs = {k: v for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    assert xattrs == {
        "SCHILY.xattr.user.keep": b"\x00\xffbinary".decode("utf-8", "surrogateescape")
    }


def test_sockets_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        out = io.BytesIO()
        stats = tar_directory(out, str(root))
    finally:
        sock.close()

    assert stats.files == 0
    assert _names(out.getvalue()) == []


def test_a_whiteout_name_in_the_tree_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "root/.wh.file", "x")

    with pytest.raises(InvalidArgument, match="cannot be stored in a layer"):
        tar_directory(io.BytesIO(), str(tmp_path / "root"))


def test_a_symlinked_directory_is_stored_as_a_symlink_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    _write(secret / "shadow", "root:hash")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(secret, root / "etc")

    out = io.BytesIO()
    tar_directory(out, str(root))

    (member,) = _members(out.getvalue())
    assert member.issym()
    assert b"root:hash" not in out.getvalue()


def test_tar_directory_round_trips_through_apply(tmp_path: Path) -> None:
    _tree(tmp_path / "root")
    out = io.BytesIO()
    tar_directory(out, str(tmp_path / "root"))
    (tmp_path / "copy").mkdir()

    apply_layer(io.BytesIO(out.getvalue()), str(tmp_path / "copy"), same_owner=os.geteuid() == 0)

    assert snapshot(tmp_path / "copy") == snapshot(tmp_path / "root")


# --- overlay mode ------------------------------------------------------------------------


def test_overlay_whiteout_devices_become_wh_entries(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    _write(upper / "etc/new", "n")
    os.mknod(upper / "etc/removed", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mknod(upper / "gone-dir", stat.S_IFCHR | 0o000, os.makedev(0, 0))

    data = _tar(upper)

    members = _members(data)
    assert [m.name for m in members] == [".wh.gone-dir", "etc", "etc/.wh.removed", "etc/new"]
    whiteout = next(m for m in members if m.name == "etc/.wh.removed")
    assert whiteout.isreg()
    assert (whiteout.size, whiteout.mode, whiteout.uid, whiteout.mtime) == (0, 0, 0, 0)


# --- copy mode -----------------------------------------------------------------------------


def _copy(src: Path, dst: Path) -> None:
    """What the copying snapshotter does: everything, times in ns, links, fifos, xattrs."""
    subprocess.run(["cp", "-a", "--preserve=all", str(src), str(dst)], check=True)


def test_copy_mode_emits_changes_with_parents_and_whiteouts(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _tree(lower)
    _copy(lower, upper)
    (upper / "etc/motd").unlink()
    _write(upper / "etc/hostname", "new\n", mtime=T0 + 5)
    _write(upper / "usr/bin/new-tool", "n")
    shutil.rmtree(upper / "var")

    data = _tar(upper, lower=str(lower))

    assert _names(data) == [
        ".wh.var",
        "etc",
        "etc/.wh.motd",
        "etc/hostname",
        "usr",
        "usr/bin",
        "usr/bin/new-tool",
    ]


def test_copy_mode_of_an_unchanged_copy_is_empty(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _tree(lower)
    _copy(lower, upper)

    out = io.BytesIO()
    stats = write_diff(out, str(upper), lower=str(lower))

    assert _names(out.getvalue()) == []
    assert (stats.files, stats.whiteouts) == (0, 0)


def test_copy_mode_sees_content_changes_that_keep_size_and_mtime(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _write(lower / "f", "aaaa")
    _copy(lower, upper)
    _write(upper / "f", "bbbb")  # same size, same mtime (T0)

    assert _names(_tar(upper, lower=str(lower))) == ["f"]


@pytest.mark.parametrize("change", ["mode", "type", "symlink", "xattr"])
def test_copy_mode_sees_metadata_changes(tmp_path: Path, change: str) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _write(lower / "f", "x")
    os.symlink("a", lower / "l")
    _settle(lower)
    _copy(lower, upper)
    if change == "mode":
        (upper / "f").chmod(0o600)
    elif change == "type":
        (upper / "f").unlink()
        (upper / "f").mkdir()
    elif change == "symlink":
        (upper / "l").unlink()
        os.symlink("b", upper / "l")
    else:
        try:
            os.setxattr(upper / "f", "user.new", b"1")
        except OSError as exc:  # pragma: no cover
            pytest.skip(f"no user xattrs here: {exc}")
    _settle(upper)

    names = _names(_tar(upper, lower=str(lower)))

    assert names == (["l"] if change == "symlink" else ["f"])


def _modify(upper: Path) -> None:
    (upper / "etc/motd").unlink()
    _write(upper / "etc/hostname", "renamed\n", mtime=T0 + 5)
    _write(upper / "usr/bin/added", "a", mtime=T0 + 5)
    shutil.rmtree(upper / "var")
    _write(upper / "var", "now a file")  # a directory replaced by a file
    (upper / ("x" * 120) / "long-name").unlink()
    (upper / ("x" * 120) / "long-name").mkdir()  # a file replaced by a directory
    _write(upper / ("x" * 120) / "long-name/inner", "i")
    (upper / "usr/bin/t").unlink()
    os.symlink("added", upper / "usr/bin/t")
    (upper / "usr").chmod(0o700)
    _settle(upper, T0 + 9)


def test_copy_mode_round_trip_reproduces_the_upper_on_a_copy_of_the_lower(
    tmp_path: Path,
) -> None:
    lower, upper, target = tmp_path / "lower", tmp_path / "upper", tmp_path / "target"
    _tree(lower)
    _copy(lower, upper)
    _modify(upper)
    _copy(lower, target)

    data = _tar(upper, lower=str(lower))
    apply_layer(io.BytesIO(data), str(target), same_owner=os.geteuid() == 0)

    assert snapshot(target) == snapshot(upper)
