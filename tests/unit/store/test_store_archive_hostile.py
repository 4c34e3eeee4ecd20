"""Hostile layers: every crafted archive leaves everything outside the target as it was.

Each test builds its archive with tarfile, writing the bad entries by hand, extracts
it into ``box/target`` next to ``box/outside`` (holding ``secret``), and checks the box
afterwards. Every name and symlink is chosen so that an extractor that got it wrong
would write into ``box/outside`` (or next to it), where the check sees it, and never
over a real host file: absolute names and names through a symlink to ``/`` spell the
absolute path of ``box/outside``, never ``/etc/passwd``. Keep it so when adding cases:
these tests run as root. The property tests at the end throw random names, ``..``
chains and symlinks at the extractor, in a tree deep enough that no ``..`` chain of
theirs leaves the temporary directory.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.errors import InvalidArgument, MoorageError
from moorage.store.archive import apply_layer, split_entry_name

Member = tuple[tarfile.TarInfo, bytes | None]
SECRET = b"host secret\n"


def _info(name: str, kind: bytes, mode: int = 0o644, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = os.getuid(), os.getgid()
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"pwned", mode: int = 0o644) -> Member:
    info = _info(name, tarfile.REGTYPE, mode)
    info.size = len(data)
    return info, data


def dir_(name: str) -> Member:
    return _info(name, tarfile.DIRTYPE, 0o755), None


def sym(name: str, target: str) -> Member:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target), None


def hardlink(name: str, target: str) -> Member:
    return _info(name, tarfile.LNKTYPE, linkname=target), None


def chardev(name: str, major: int, minor: int) -> Member:
    return _info(name, tarfile.CHRTYPE, 0o666, devmajor=major, devminor=minor), None


def tar_of(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@dataclass
class Box:
    root: Path

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def apply(self, *members: Member, whiteouts: str = "delete") -> None:
        apply_layer(
            io.BytesIO(tar_of(*members)),
            str(self.target),
            whiteouts=whiteouts,  # type: ignore[arg-type]
            same_owner=False,
        )

    def assert_untouched(self) -> None:
        assert sorted(os.listdir(self.root)) == ["outside", "target"]
        assert os.listdir(self.outside) == ["secret"]
        secret = self.outside / "secret"
        assert secret.read_bytes() == SECRET
        st_ = secret.lstat()
        assert stat.S_ISREG(st_.st_mode)
        assert st_.st_nlink == 1
        assert stat.S_IMODE(st_.st_mode) == 0o600

    def inside(self, path: str) -> Path:
        """Where an absolute host path lands when taken relative to the target."""
        return self.target / path.lstrip("/")


def _make_box(root: Path) -> Box:
    box = Box(root)
    root.mkdir(parents=True)
    box.target.mkdir()
    box.outside.mkdir()
    (box.outside / "secret").write_bytes(SECRET)
    (box.outside / "secret").chmod(0o600)
    return box


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = _make_box(tmp_path / "box")
    yield b
    b.assert_untouched()


# --- names ---------------------------------------------------------------------------


def test_absolute_names_are_taken_relative_to_the_target(box: Box) -> None:
    box.apply(reg(f"{box.outside}/secret"), reg(f"//{box.outside}/new"))

    assert box.inside(f"{box.outside}/secret").read_bytes() == b"pwned"
    assert box.inside(f"{box.outside}/new").read_bytes() == b"pwned"


@pytest.mark.parametrize(
    "name",
    ["../outside/secret", "a/../../outside/secret", "./../outside/x", "a/b/../../../x", ".."],
)
def test_dotdot_that_climbs_out_refuses_the_layer(box: Box, name: str) -> None:
    with pytest.raises(InvalidArgument, match="escapes the target"):
        box.apply(reg(name))


def test_dotdot_that_stays_inside_is_cleaned(box: Box) -> None:
    box.apply(reg("a/../b/./c/../f", b"ok"))

    assert (box.target / "b/f").read_bytes() == b"ok"
    assert not (box.target / "a").exists()


@pytest.mark.parametrize("field", ["path", "linkpath"])
def test_nul_in_a_name_is_refused(box: Box, field: str) -> None:
    info, data = sym("l", "x") if field == "linkpath" else reg("x")
    info.pax_headers = {field: "ok\x00/../../outside/secret"}

    with pytest.raises(InvalidArgument, match="NUL"):
        box.apply((info, data))


def test_long_name_that_climbs_out_is_refused(box: Box) -> None:
    name = "a/" * 300 + "../" * 301 + "outside/secret"

    with pytest.raises(InvalidArgument, match="escapes the target"):
        apply_layer(io.BytesIO(tar_of(reg(name), fmt=tarfile.GNU_FORMAT)), str(box.target))


def test_a_component_too_long_for_the_file_system_names_the_entry(box: Box) -> None:
    with pytest.raises(InvalidArgument, match=r"^layer entry x+: file name too long$"):
        box.apply(reg("x" * 300))


# --- symlinks ------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["/", "../../../../../../../../..", "/./../.."])
def test_file_through_a_symlink_to_the_root_stays_inside(box: Box, link: str) -> None:
    box.apply(sym("a", link), reg(f"a{box.outside}/secret"))

    assert box.inside(f"{box.outside}/secret").read_bytes() == b"pwned"


@pytest.mark.parametrize("link_to", ["absolute", "relative"])
def test_file_through_a_symlink_to_outside_never_lands_there(box: Box, link_to: str) -> None:
    link = str(box.outside) if link_to == "absolute" else "../outside"

    with pytest.raises(InvalidArgument):
        box.apply(sym("a", link), reg("a/secret"))


def test_symlink_already_in_the_target_is_not_followed_out(box: Box) -> None:
    os.symlink(box.outside, box.target / "planted")
    os.symlink("/", box.target / "rootlink")

    with pytest.raises(InvalidArgument):
        box.apply(reg("planted/secret"))
    box.apply(reg(f"rootlink{box.outside}/secret"))

    assert box.inside(f"{box.outside}/secret").read_bytes() == b"pwned"
    assert os.readlink(box.target / "planted") == str(box.outside)


def test_symlink_chain_and_loop(box: Box) -> None:
    box.apply(sym("one", "two"), sym("two", "/"), reg(f"one{box.outside}/secret"))

    assert box.inside(f"{box.outside}/secret").read_bytes() == b"pwned"
    with pytest.raises(InvalidArgument):
        box.apply(sym("loop", "loop"), reg("loop/x"))


def test_magic_links_are_not_followed(box: Box) -> None:
    with pytest.raises(InvalidArgument):
        box.apply(sym("self", "/proc/self/root"), reg(f"self{box.outside}/secret"))


def test_file_replaces_a_symlink_instead_of_writing_through_it(box: Box) -> None:
    os.symlink(box.outside / "secret", box.target / "pre")

    box.apply(sym("f", str(box.outside / "secret")), reg("f", b"new"), reg("pre", b"new"))

    for name in ("f", "pre"):
        assert stat.S_ISREG((box.target / name).lstat().st_mode)
        assert (box.target / name).read_bytes() == b"new"


def test_directory_replaced_by_a_symlink_then_written_through(box: Box) -> None:
    with pytest.raises(InvalidArgument):
        box.apply(dir_("d"), reg("d/f"), sym("d", str(box.outside)), reg("d/secret"))

    assert os.readlink(box.target / "d") == str(box.outside)


def test_directory_over_a_symlink_replaces_it(box: Box) -> None:
    box.apply(sym("d", str(box.outside)), dir_("d"), reg("d/secret"))

    assert (box.target / "d").is_dir()
    assert not (box.target / "d").is_symlink()
    assert (box.target / "d/secret").read_bytes() == b"pwned"


# --- hardlinks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("linkname", "message"),
    [
        ("OUTSIDE/secret", "hardlink target not found"),
        ("../outside/secret", "escapes the target"),
        ("/../outside/secret", "escapes the target"),
    ],
)
def test_hardlink_to_a_file_outside_is_refused(box: Box, linkname: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        box.apply(hardlink("h", linkname.replace("OUTSIDE", str(box.outside))))


def test_hardlink_through_a_symlinked_directory_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="hardlink target not found"):
        box.apply(sym("d", str(box.outside)), hardlink("h", "d/secret"))


def test_hardlink_to_a_symlink_links_the_symlink_not_its_target(box: Box) -> None:
    box.apply(sym("s", str(box.outside / "secret")), hardlink("h", "s"), reg("h", b"new"))

    assert (box.target / "h").read_bytes() == b"new"  # replaced, not written through
    assert os.readlink(box.target / "s") == str(box.outside / "secret")


def test_hardlink_to_a_symlink_stays_a_symlink(box: Box) -> None:
    box.apply(sym("s", str(box.outside / "secret")), hardlink("h", "s"))

    assert stat.S_ISLNK((box.target / "h").lstat().st_mode)
    assert (box.target / "h").lstat().st_ino == (box.target / "s").lstat().st_ino


def test_hardlink_to_a_directory_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="hardlink to a directory"):
        box.apply(dir_("d"), hardlink("h", "d"))


def test_later_file_over_a_hardlink_does_not_change_the_first_name(box: Box) -> None:
    box.apply(reg("f", b"original"), hardlink("h", "f"), reg("h", b"replaced"))

    assert (box.target / "f").read_bytes() == b"original"
    assert (box.target / "h").read_bytes() == b"replaced"


# --- devices, set-id --------------------------------------------------------------------


def test_device_node_in_a_public_target_is_never_made(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(prefix="moor-public-", dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "t").mkdir()

        apply_layer(
            io.BytesIO(tar_of(chardev("mem", 1, 1), reg("su", b"x", 0o4755))),
            str(top / "t"),
            same_owner=False,
        )

        assert os.listdir(top / "t") == ["su"]
        assert stat.S_IMODE((top / "t/su").stat().st_mode) == 0o755
    finally:
        import shutil

        shutil.rmtree(top)


@pytest.mark.skipif(os.geteuid() == 0, reason="as root the node is made (integration tests)")
def test_device_node_without_root_is_skipped(box: Box) -> None:
    box.apply(chardev("mem", 1, 1), hardlink("mem2", "mem"), reg("f"))

    assert sorted(os.listdir(box.target)) == ["f"]


# --- whiteouts ------------------------------------------------------------------------


def test_whiteout_that_climbs_out_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="escapes the target"):
        box.apply(reg("../.wh.outside", b""))


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
@pytest.mark.parametrize("marker", [".wh.secret", ".wh..wh..opq"])
def test_whiteout_through_a_symlink_to_outside_deletes_nothing_there(
    box: Box, whiteouts: str, marker: str
) -> None:
    # Refusing is as good as doing it inside: the check is that outside is untouched.
    with contextlib.suppress(InvalidArgument):
        box.apply(sym("l", str(box.outside)), reg(f"l/{marker}", b""), whiteouts=whiteouts)


@pytest.mark.parametrize("link", ["..", "../../.."])
def test_whiteout_through_a_relative_symlink_stays_inside(box: Box, link: str) -> None:
    (box.target / "keep").write_text("k")

    box.apply(sym("up", link), reg("up/.wh.outside", b""), reg("up/.wh.keep", b""))

    assert not (box.target / "keep").exists()


# --- the properties -----------------------------------------------------------------------

_COMPONENTS = st.sampled_from(["a", "b", "l", "m", "..", ".", "", "/", ".wh.a", ".wh..wh..opq"])
# No absolute names and no links to "/": under a broken extractor those would reach
# the real root. Absolute paths are spelled from the box (BOX, OUTSIDE) instead; the
# explicit tests above cover leading slashes and links to "/".
_NAMES = st.lists(_COMPONENTS, min_size=1, max_size=6).map(lambda p: "/".join(p).lstrip("/"))
_LINKS = st.sampled_from(
    ["..", "../..", "../../..", "BOX", "BOX/..", "OUTSIDE", "OUTSIDE/secret"] + ["a", "l/l"]
)
_ENTRIES = st.lists(
    st.one_of(
        st.tuples(st.just("file"), _NAMES, st.just("")),
        st.tuples(st.just("dir"), _NAMES, st.just("")),
        st.tuples(st.just("symlink"), _NAMES, _LINKS),
        st.tuples(st.just("hardlink"), _NAMES, _NAMES),
    ),
    min_size=1,
    max_size=10,
)


@given(
    name=st.lists(st.sampled_from(["a", ".", "/", "\x00", "..", "é", ".wh."]), max_size=20).map(
        "".join
    )
)
def test_split_entry_name_never_yields_a_climbing_component(name: str) -> None:
    try:
        parts = split_entry_name(name)
    except InvalidArgument:
        return
    assert all(p not in ("", ".", "..") and "/" not in p for p in parts)
    assert "\x00" not in name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=_ENTRIES, whiteouts=st.sampled_from(["delete", "overlay"]))
def test_random_archives_never_write_outside_the_target(
    entries: list[tuple[str, str, str]], whiteouts: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Deep enough that no ".." chain of the strategy (10 links of 3, a name of 6)
        # leaves ``tmp``, even through an extractor that followed them.
        deep = Path(tmp).joinpath(*["d"] * 40)
        b = _make_box(deep / "box")
        members: list[Member] = []
        for kind, name, link in entries:
            link = link.replace("OUTSIDE", str(b.outside)).replace("BOX", str(b.root))
            if kind == "file":
                members.append(reg(name))
            elif kind == "dir":
                members.append(dir_(name))
            elif kind == "symlink":
                members.append(sym(name, link))
            else:
                members.append(hardlink(name, link))
        with contextlib.suppress(MoorageError):
            b.apply(*members, whiteouts=whiteouts)
        b.assert_untouched()
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["d"]
        assert [p.name for p in deep.iterdir()] == ["box"]
