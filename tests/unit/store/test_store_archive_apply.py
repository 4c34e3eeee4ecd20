"""apply_layer on well-formed layers: entry types, metadata, whiteouts, errors.

The hostile archives are in test_store_archive_hostile.py; whiteouts read by a real
overlayfs mount, device nodes and owners are in the root integration tests.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.errors import InvalidArgument, NotFound
from moorage.store.archive import apply_layer, is_private

Member = tuple[tarfile.TarInfo, bytes | None]
MTIME = 1_600_000_000


def _info(name: str, kind: bytes, mode: int, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = os.getuid()
    info.gid = os.getgid()
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **fields: object) -> Member:
    info = _info(name, tarfile.REGTYPE, mode, **fields)
    info.size = len(data)
    return info, data


def dir_(name: str, mode: int = 0o755, **fields: object) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, **fields), None


def sym(name: str, target: str) -> Member:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target), None


def hardlink(name: str, target: str) -> Member:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target), None


def fifo(name: str) -> Member:
    return _info(name, tarfile.FIFOTYPE, 0o640), None


def whiteout(name: str) -> Member:
    return reg(name, mode=0)


def tar_of(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def apply(target: Path, *members: Member, **kwargs: object) -> None:
    kwargs.setdefault("same_owner", False)
    apply_layer(io.BytesIO(tar_of(*members)), str(target), **kwargs)  # type: ignore[arg-type]


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "target"
    t.mkdir()
    return t


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user can reach: no private directory above it."""
    top = Path(tempfile.mkdtemp(prefix="moor-public-", dir="/tmp"))
    top.chmod(0o755)
    try:
        (top / "target").mkdir()
        yield top / "target"
    finally:
        shutil.rmtree(top)


# --- entry types and metadata -------------------------------------------------------


def test_extracts_every_entry_type(target: Path) -> None:
    stats = apply_layer(
        io.BytesIO(
            tar_of(
                dir_("etc"),
                reg("etc/hosts", b"127.0.0.1 localhost\n", 0o640),
                sym("etc/localtime", "/usr/share/zoneinfo/UTC"),
                hardlink("etc/hosts.bak", "etc/hosts"),
                fifo("run.fifo"),
            )
        ),
        str(target),
        same_owner=False,
    )

    assert (target / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE((target / "etc/hosts").stat().st_mode) == 0o640
    assert os.readlink(target / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert (target / "etc/hosts.bak").stat().st_ino == (target / "etc/hosts").stat().st_ino
    assert stat.S_ISFIFO((target / "run.fifo").lstat().st_mode)
    assert stats.files == 5
    assert stats.bytes == len(b"127.0.0.1 localhost\n")


def test_sets_mtimes_without_following_symlinks(target: Path) -> None:
    apply(target, dir_("d"), reg("d/f", b"x"), sym("d/l", "f"))

    assert (target / "d/f").stat().st_mtime == MTIME
    assert (target / "d/l").lstat().st_mtime == MTIME
    assert (target / "d").stat().st_mtime == MTIME  # set after its children went in


def test_directory_modes_apply_after_their_children(target: Path) -> None:
    apply(target, dir_("ro", 0o555), reg("ro/f", b"x"), dir_("ro/sub", 0o500), reg("ro/sub/g"))

    assert stat.S_IMODE((target / "ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((target / "ro/sub").stat().st_mode) == 0o500
    assert (target / "ro/sub/g").exists()
    (target / "ro").chmod(0o755)
    (target / "ro/sub").chmod(0o755)


def test_missing_parents_are_made(target: Path) -> None:
    apply(target, reg("a/b/c/f", b"deep"))

    assert (target / "a/b/c/f").read_bytes() == b"deep"
    assert stat.S_IMODE((target / "a/b").stat().st_mode) == 0o755


def test_root_entry_sets_the_target_metadata(target: Path) -> None:
    apply(target, dir_("./", 0o711), reg("./f"))

    assert stat.S_IMODE(target.stat().st_mode) == 0o711
    assert target.stat().st_mtime == MTIME


def test_gnu_and_pax_long_names_are_extracted(target: Path) -> None:
    long_dir = "/".join(["d" * 60] * 4)
    apply_layer(
        io.BytesIO(tar_of(reg(f"{long_dir}/gnu", b"g"), fmt=tarfile.GNU_FORMAT)),
        str(target),
        same_owner=False,
    )
    apply(target, reg(f"{long_dir}/pax", b"p"), sym(f"{long_dir}/link", "x" * 300))

    assert (target / long_dir / "gnu").read_bytes() == b"g"
    assert (target / long_dir / "pax").read_bytes() == b"p"
    assert os.readlink(target / long_dir / "link") == "x" * 300


def test_user_xattrs_are_applied_and_trusted_ones_refused(target: Path) -> None:
    info, data = reg("f", b"x")
    info.pax_headers = {
        "SCHILY.xattr.user.note": "hello",
        "SCHILY.xattr.user.bin": b"\xff\x00\x01".decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.user.overlay.opaque": "y",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
        "SCHILY.xattr.security.selinux": "system_u:object_r:shadow_t:s0",
    }

    apply(target, (info, data))

    path = target / "f"
    try:
        names = set(os.listxattr(path))
    except OSError as exc:  # pragma: no cover - file systems without xattrs
        pytest.skip(f"no xattr support here: {exc}")
    assert os.getxattr(path, "user.note") == b"hello"
    assert os.getxattr(path, "user.bin") == b"\xff\x00\x01"
    assert "user.overlay.opaque" not in names
    assert "trusted.overlay.redirect" not in names
    if "security.selinux" in names:  # a host label, never the archive's
        assert os.getxattr(path, "security.selinux") != b"system_u:object_r:shadow_t:s0"


def test_same_owner_false_extracts_as_the_caller(target: Path) -> None:
    info, data = reg("f", b"x", uid=4242, gid=4343)

    apply(target, (info, data), same_owner=False)

    st = (target / "f").stat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


# --- replacing entries --------------------------------------------------------------


def test_later_entry_wins(target: Path) -> None:
    apply(target, reg("f", b"first"), reg("f", b"second"))

    assert (target / "f").read_bytes() == b"second"


def test_a_file_replaces_a_directory_and_the_reverse(target: Path) -> None:
    apply(target, dir_("a"), reg("a/inner", b"x"), reg("a", b"file now"), reg("b", b"file"))
    apply(target, dir_("b"), reg("b/inner", b"y"))

    assert (target / "a").read_bytes() == b"file now"
    assert (target / "b/inner").read_bytes() == b"y"


def test_a_directory_over_a_directory_merges(target: Path) -> None:
    (target / "d").mkdir()
    (target / "d/old").write_text("lower")

    apply(target, dir_("d", 0o700), reg("d/new", b"upper"))

    assert listing(target) == {"d", "d/old", "d/new"}
    assert stat.S_IMODE((target / "d").stat().st_mode) == 0o700


# --- whiteouts, delete mode --------------------------------------------------------


def _lower(target: Path) -> None:
    for rel in ("etc/keep", "etc/gone", "var/lib/a", "var/lib/b", "var/log/x", "opt/tree/deep/f"):
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def test_whiteout_deletes_a_lower_file_or_tree(target: Path) -> None:
    _lower(target)

    stats = apply_layer(
        io.BytesIO(tar_of(whiteout("etc/.wh.gone"), whiteout(".wh.opt"))),
        str(target),
        same_owner=False,
    )

    assert not (target / "etc/gone").exists()
    assert not (target / "opt").exists()
    assert (target / "etc/keep").exists()
    assert not any(".wh." in p for p in listing(target))
    assert stats.files == 0


def test_whiteout_of_something_absent_is_harmless(target: Path) -> None:
    apply(target, whiteout("nope/.wh.nothing"), whiteout(".wh.missing"))

    assert listing(target) == set()


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_marker_hides_lower_children_but_keeps_this_layers(
    target: Path, marker_first: bool
) -> None:
    _lower(target)
    marker = whiteout("var/.wh..wh..opq")
    entries = [dir_("var"), reg("var/new", b"n"), dir_("var/lib"), reg("var/lib/c", b"c")]
    ordered = [marker, *entries] if marker_first else [*entries, marker]

    apply(target, *ordered)

    assert {p for p in listing(target) if p.startswith("var")} == {
        "var",
        "var/new",
        "var/lib",
        "var/lib/c",
    }


def test_opaque_marker_keeps_entries_under_implicit_parents(target: Path) -> None:
    _lower(target)

    apply(target, reg("var/log/y", b"y"), whiteout("var/.wh..wh..opq"))

    assert {p for p in listing(target) if p.startswith("var")} == {"var", "var/log", "var/log/y"}


def test_whiteout_does_not_hide_an_entry_of_its_own_layer(target: Path) -> None:
    _lower(target)

    apply(target, reg("etc/gone", b"mine"), whiteout("etc/.wh.gone"))

    assert (target / "etc/gone").read_bytes() == b"mine"


def test_whiteout_of_a_directory_this_layer_filled_keeps_only_this_layer(target: Path) -> None:
    _lower(target)

    apply(target, reg("var/lib/c", b"c"), whiteout("var/.wh.lib"))

    assert {p for p in listing(target) if p.startswith("var/lib")} == {"var/lib", "var/lib/c"}


def test_aufs_metadata_entries_are_not_extracted(target: Path) -> None:
    apply(target, reg(".wh..wh.plnk/123.456", b"x"), dir_(".wh..wh.aufs"))

    assert listing(target) == set()


@pytest.mark.parametrize("name", [".wh..", ".wh.", "a/.wh.."])
def test_whiteouts_of_dot_names_are_refused(target: Path, name: str) -> None:
    (target / "a").mkdir()

    with pytest.raises(InvalidArgument, match="invalid whiteout"):
        apply(target, whiteout(name))

    assert (target / "a").is_dir()


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"this is not a tar archive at all" * 40, os.urandom(2048)],
    ids=["empty", "text", "random"],
)
def test_not_a_tar(target: Path, data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="^not a tar archive"):
        apply_layer(io.BytesIO(data), str(target))


def test_an_empty_archive_is_an_empty_layer(target: Path) -> None:
    stats = apply_layer(io.BytesIO(tar_of()), str(target))

    assert (stats.files, stats.bytes) == (0, 0)


def test_data_cut_short_names_the_entry(target: Path) -> None:
    data = tar_of(reg("small", b"s"), reg("big", os.urandom(100_000)))
    cut = data[: 512 * 4 + 30_000]

    with pytest.raises(InvalidArgument, match="^layer is truncated: big$"):
        apply_layer(io.BytesIO(cut), str(target), same_owner=False)


def test_size_that_lies_is_a_truncation(target: Path) -> None:
    info, _ = reg("liar", b"")
    info.size = 10_000
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    with pytest.raises(InvalidArgument, match="^layer is truncated: liar$"):
        apply_layer(io.BytesIO(header + b"only this much"), str(target), same_owner=False)


def test_header_cut_short_is_a_truncation(target: Path) -> None:
    data = tar_of(reg("a", b"x"), reg("b", b"y"))
    cut = data[: 512 * 2 + 100]  # inside the second header

    with pytest.raises(InvalidArgument, match="^layer is truncated: after a$"):
        apply_layer(io.BytesIO(cut), str(target), same_owner=False)


def test_corrupt_header_mid_archive_is_reported(target: Path) -> None:
    data = bytearray(tar_of(reg("a", b"x"), reg("b", b"y")))
    data[1024 + 148] ^= 0x11  # the second header's checksum

    with pytest.raises(InvalidArgument, match="^layer is corrupt: .* after a$"):
        apply_layer(io.BytesIO(bytes(data)), str(target), same_owner=False)


def test_missing_target(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such directory"):
        apply_layer(io.BytesIO(tar_of()), str(tmp_path / "nope"))


def test_a_compressed_blob_is_not_a_tar(target: Path) -> None:
    import gzip

    with pytest.raises(InvalidArgument, match="not a tar archive"):
        apply_layer(io.BytesIO(gzip.compress(tar_of(reg("f")))), str(target))


# --- set-id bits and the private store ------------------------------------------------


def test_setuid_is_kept_in_a_private_target_whose_top_others_cannot_traverse(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    target = store / "snapshots" / "1" / "fs"
    target.mkdir(parents=True)
    target.chmod(0o755)

    apply(
        target, dir_("./", 0o755), reg("bin/su", b"\x7fELF", 0o4755), reg("bin/wall", mode=0o2755)
    )

    assert stat.S_IMODE((target / "bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((target / "bin/wall").stat().st_mode) == 0o2755
    assert is_private(str(target))
    assert stat.S_IMODE(store.stat().st_mode) & 0o011 == 0  # others cannot traverse the top


def test_setid_bits_are_stripped_where_others_can_reach(
    public_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not is_private(str(public_dir))

    with caplog.at_level(logging.WARNING):
        apply(
            public_dir, reg("su", b"x", 0o4755), reg("wall", b"x", 0o2711), dir_("shared", 0o2775)
        )

    assert stat.S_IMODE((public_dir / "su").stat().st_mode) == 0o755
    assert stat.S_IMODE((public_dir / "wall").stat().st_mode) == 0o711
    assert stat.S_IMODE((public_dir / "shared").stat().st_mode) == 0o2775  # dirs keep setgid
    assert "other users can reach" in caplog.text


def test_a_whiteout_name_used_as_a_directory_is_refused(target: Path) -> None:
    with pytest.raises(InvalidArgument, match="whiteout name used as a directory"):
        apply(target, reg("a/.wh.b/c", b"x"))
