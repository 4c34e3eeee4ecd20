"""Layer archives against the real kernel: overlayfs mounts, device nodes, owners, caps.

Whiteouts written in "overlay" mode are checked by mounting an overlay and looking at
the merged view; diffs of a real overlay upper directory are applied back and compared
with what the container saw. Also here because they need root: device nodes, owners
kept with ``same_owner``, file capabilities, trusted.* xattrs, and a host user's view
of a private store. Every mount is undone in the fixture's teardown.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.errors import NotSupported
from moorage.store.archive import apply_layer, is_private, tar_directory, write_diff
from moorage.sys import libc

pytestmark = pytest.mark.root

Member = tuple[tarfile.TarInfo, bytes | None]
T0 = 1_600_000_000
NOBODY = 65534
# a version 2 file capability: cap_net_raw permitted and effective
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def _info(name: str, kind: bytes, mode: int, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = T0
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **fields: object) -> Member:
    info = _info(name, tarfile.REGTYPE, mode, **fields)
    info.size = len(data)
    return info, data


def dir_(name: str, mode: int = 0o755, **fields: object) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, **fields), None


def sym(name: str, target: str, **fields: object) -> Member:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **fields), None


def dev(name: str, kind: bytes, major: int, minor: int, mode: int = 0o660) -> Member:
    return _info(name, kind, mode, devmajor=major, devminor=minor, uid=0, gid=6), None


def tar_of(*members: Member) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        return list(tar)


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                extra: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            else:
                extra = st.st_rdev
            xattrs: list[tuple[str, bytes]] = []
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                xattrs = sorted(
                    (k, os.getxattr(path, k)) for k in os.listxattr(path) if k.startswith("user.")
                )
            rel = str(path.relative_to(root))
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns // 10**9, extra, xattrs)
    return found


Mounter = Callable[[Path, Path, Path, Path], None]


@pytest.fixture
def overlay() -> Iterator[Mounter]:
    """Mount overlays (lower, upper, work, merged); all are unmounted on teardown."""
    mounted: list[Path] = []

    def mount(lower: Path, upper: Path, work: Path, merged: Path) -> None:
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        base = f"lowerdir={lower},upperdir={upper},workdir={work}"
        # Whole-file copy-up and no directory redirects: what the snapshotter mounts
        # and what write_diff can export.
        for extra in (",redirect_dir=off,metacopy=off,index=off", ""):
            try:
                libc.mount("overlay", str(merged), "overlay", 0, base + extra)
                break
            except OSError:
                if not extra:
                    raise
        mounted.append(merged)

    yield mount
    for path in reversed(mounted):
        with contextlib.suppress(OSError):
            libc.umount2(str(path), libc.MNT_DETACH)


def _unmount(merged: Path) -> None:
    libc.umount2(str(merged))


def _lower(root: Path) -> None:
    files = {
        "etc/keep": "k",
        "etc/gone": "g",
        "var/lib/a": "a",
        "var/lib/b": "b",
        "var/log/x": "x",
        "opt/tree/deep/f": "f",
        "srv/data": "d",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.symlink("keep", root / "etc/link")


# --- overlay mode apply, read through a real mount ----------------------------------------


@pytest.mark.parametrize("marker_first", [True, False])
def test_overlay_whiteouts_hide_lower_entries_in_the_merged_view(
    tmp_path: Path, overlay: Mounter, marker_first: bool
) -> None:
    lower = tmp_path / "lower"
    _lower(lower)
    marker = reg("var/.wh..wh..opq")
    body = [
        reg("etc/.wh.gone"),
        reg(".wh.opt"),
        dir_("var"),
        dir_("var/lib"),
        reg("var/lib/c", b"c"),
        reg("var/new", b"n"),
    ]
    layer = tar_of(*([marker, *body] if marker_first else [*body, marker]))
    upper = tmp_path / "upper"
    upper.mkdir()

    stats = apply_layer(io.BytesIO(layer), str(upper), whiteouts="overlay")
    overlay(lower, upper, tmp_path / "work", tmp_path / "merged")
    merged = tmp_path / "merged"

    assert stats.files == 4
    wh = (upper / "etc/gone").lstat()
    assert stat.S_ISCHR(wh.st_mode)
    assert wh.st_rdev == 0
    assert os.getxattr(upper / "var", "trusted.overlay.opaque") == b"y"
    assert not (merged / "etc/gone").exists()
    assert not (merged / "opt").exists()
    assert (merged / "etc/keep").read_text() == "k"
    assert sorted(str(p.relative_to(merged / "var")) for p in (merged / "var").rglob("*")) == [
        "lib",
        "lib/c",
        "new",
    ]
    assert (merged / "srv/data").read_text() == "d"


def test_overlay_and_delete_modes_give_the_same_tree(tmp_path: Path, overlay: Mounter) -> None:
    lower = tmp_path / "lower"
    _lower(lower)
    layer = tar_of(
        reg("etc/.wh.gone"),
        reg("var/lib/c", b"c"),
        reg("var/.wh.lib"),  # hides lower var/lib, keeps this layer's var/lib/c
        reg("var/log/.wh..wh..opq"),
        reg("var/log/y", b"y"),
        reg("srv/.wh.data"),
        dir_("srv/data", 0o750),  # over this layer's own whiteout: must be opaque
    )
    upper = tmp_path / "upper"
    upper.mkdir()
    copy = tmp_path / "copy"
    shutil.copytree(lower, copy, symlinks=True)

    apply_layer(io.BytesIO(layer), str(upper), whiteouts="overlay")
    apply_layer(io.BytesIO(layer), str(copy), whiteouts="delete")
    overlay(lower, upper, tmp_path / "work", tmp_path / "merged")

    assert _shape(tmp_path / "merged") == _shape(copy)


def _shape(root: Path) -> dict[str, str]:
    """Names and contents, which overlay and delete modes must agree on."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_text()
    return out


# --- diffs of a real upper directory --------------------------------------------------------


def _change_through_the_mount(merged: Path) -> None:
    (merged / "etc/gone").unlink()
    (merged / "etc/keep").write_text("changed")
    shutil.rmtree(merged / "opt")
    shutil.rmtree(merged / "var/lib")
    (merged / "var/lib").mkdir()  # overlayfs makes this directory opaque
    (merged / "var/lib/fresh").write_text("fresh")
    (merged / "srv/data").chmod(0o600)
    os.symlink("/etc/keep", merged / "srv/abs-link")
    os.link(merged / "srv/data", merged / "srv/data-link")
    os.setxattr(merged / "etc/keep", "user.note", b"hello")
    os.chown(merged / "var/log/x", 1234, 5678)


def test_diff_of_an_overlay_upper_round_trips(tmp_path: Path, overlay: Mounter) -> None:
    lower = tmp_path / "lower"
    _lower(lower)
    upper, merged = tmp_path / "upper", tmp_path / "merged"
    overlay(lower, upper, tmp_path / "work", merged)
    _change_through_the_mount(merged)
    expected = snapshot(merged)
    _unmount(merged)

    out = io.BytesIO()
    stats = write_diff(out, str(upper))
    data = out.getvalue()

    names = [m.name for m in _members(data)]
    assert "etc/.wh.gone" in names
    assert ".wh.opt" in names
    assert names[names.index("var/lib") + 1] == "var/lib/.wh..wh..opq"
    assert stats.whiteouts == 3
    # applied onto a copy of the lower (the copying snapshotter)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(lower), str(copy)], check=True)
    apply_layer(io.BytesIO(data), str(copy), whiteouts="delete")
    assert snapshot(copy) == expected
    # and as a fresh overlay upper directory
    upper2, merged2 = tmp_path / "upper2", tmp_path / "merged2"
    upper2.mkdir()
    apply_layer(io.BytesIO(data), str(upper2), whiteouts="overlay")
    overlay(lower, upper2, tmp_path / "work2", merged2)
    assert snapshot(merged2) == expected


def test_diff_of_an_upper_is_reproducible(tmp_path: Path, overlay: Mounter) -> None:
    lower = tmp_path / "lower"
    _lower(lower)
    upper, merged = tmp_path / "upper", tmp_path / "merged"
    overlay(lower, upper, tmp_path / "work", merged)
    _change_through_the_mount(merged)
    _unmount(merged)

    first, second = io.BytesIO(), io.BytesIO()
    write_diff(first, str(upper), source_date_epoch=T0)
    write_diff(second, str(upper), source_date_epoch=T0)

    assert first.getvalue() == second.getvalue()
    assert all(m.mtime <= T0 for m in _members(first.getvalue()))


@pytest.mark.parametrize("xattr", ["trusted.overlay.redirect", "trusted.overlay.metacopy"])
def test_diff_refuses_redirect_and_metacopy_uppers(tmp_path: Path, xattr: str) -> None:
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/f").write_text("x")
    os.setxattr(upper / ("d" if xattr.endswith("redirect") else "d/f"), xattr, b"/elsewhere")

    with pytest.raises(NotSupported, match="redirect_dir/metacopy"):
        write_diff(io.BytesIO(), str(upper))


# --- devices, owners, capabilities, trusted xattrs --------------------------------------------


@pytest.fixture
def public_target() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="moor-public-", dir="/tmp"))
    top.chmod(0o755)
    (top / "t").mkdir()
    try:
        yield top / "t"
    finally:
        shutil.rmtree(top)


def test_device_nodes_are_made_in_a_private_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()

    apply_layer(
        io.BytesIO(
            tar_of(
                dev("dev/null", tarfile.CHRTYPE, 1, 3, 0o666),
                dev("dev/loop0", tarfile.BLKTYPE, 7, 0),
                dev("dev/evil", tarfile.CHRTYPE, 1, 1, 0o4666),
            )
        ),
        str(target),
    )

    null = (target / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666  # not narrowed by the umask
    assert (null.st_uid, null.st_gid) == (0, 6)
    loop = (target / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode)
    assert loop.st_rdev == os.makedev(7, 0)
    assert stat.S_IMODE((target / "dev/evil").lstat().st_mode) == 0o666  # no set-id nodes


def test_device_nodes_are_skipped_in_a_public_target(public_target: Path) -> None:
    stats = apply_layer(
        io.BytesIO(tar_of(dev("mem", tarfile.CHRTYPE, 1, 1), reg("f"))), str(public_target)
    )

    assert os.listdir(public_target) == ["f"]
    assert stats.files == 1


def test_owners_are_kept_without_following_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()

    apply_layer(
        io.BytesIO(
            tar_of(
                dir_("home/u", 0o700, uid=1000, gid=1000),
                reg("home/u/f", b"x", 0o4750, uid=1000, gid=50),
                sym("home/u/link", "f", uid=2000, gid=2000),
            )
        ),
        str(target),
    )

    def owner(p: Path) -> tuple[int, int]:
        st = p.lstat()
        return st.st_uid, st.st_gid

    assert owner(target / "home/u") == (1000, 1000)
    assert owner(target / "home/u/f") == (1000, 50)
    assert owner(target / "home/u/link") == (2000, 2000)
    assert stat.S_IMODE((target / "home/u/f").stat().st_mode) == 0o4750  # after chown


def test_file_capabilities_are_kept_privately_and_dropped_publicly(
    tmp_path: Path, public_target: Path
) -> None:
    info, data = reg("ping", b"\x7fELF", 0o755)
    info.pax_headers = {
        "SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.trusted.evil": "x",
    }
    private = tmp_path / "target"
    private.mkdir()

    for target in (private, public_target):
        apply_layer(io.BytesIO(tar_of((info, data))), str(target))

    assert os.getxattr(private / "ping", "security.capability") == CAP_NET_RAW
    assert "security.capability" not in os.listxattr(public_target / "ping")
    assert "trusted.evil" not in os.listxattr(private / "ping")


def test_file_capabilities_survive_a_diff_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ping").write_bytes(b"\x7fELF")
    os.setxattr(src / "ping", "security.capability", CAP_NET_RAW)
    out = io.BytesIO()
    tar_directory(out, str(src))
    target = tmp_path / "target"
    target.mkdir()

    apply_layer(io.BytesIO(out.getvalue()), str(target))

    assert os.getxattr(target / "ping", "security.capability") == CAP_NET_RAW


def test_host_users_cannot_reach_a_setuid_file_in_the_store(public_target: Path) -> None:
    # Everything above the store is open to all; the store's own 0700 is the barrier.
    store = public_target / "store"
    store.mkdir(mode=0o700)
    target = store / "snapshots/1/fs"
    target.mkdir(parents=True)
    apply_layer(io.BytesIO(tar_of(dir_("./"), reg("bin/su", b"\x7fELF", 0o4755))), str(target))

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                os.stat(target / "bin/su")
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert stat.S_IMODE((target / "bin/su").stat().st_mode) == 0o4755
    assert is_private(str(target))
