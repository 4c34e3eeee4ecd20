"""Named volumes: names, records, Docker's create/list/remove/prune rules, and copy-up."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from moorage.engine.volumes import ANONYMOUS_LABEL, VolumeService, validate_name
from moorage.errors import Conflict, InvalidArgument, NotFound, NotSupported


def nobody(name: str) -> Sequence[str]:
    return []


@pytest.fixture
def vols(tmp_path: Path) -> Iterator[VolumeService]:
    service = VolumeService(tmp_path)
    yield service
    service.close()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "file").write_text("from the image")
    (root / "data" / "sub" / "deep").write_text("deep")
    return root


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["ab", "db", "my_vol.1-x", "0abc", "A.b"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["a", "_x", ".x", "-x", "a/b", "a b", "../x", "metadata.db"])
def test_invalid_names_are_rejected(vols: VolumeService, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid volume name"):
        vols.create(name)


# --------------------------------------------------------------------------- create


def test_create_returns_docker_shape_and_makes_data_dir(vols: VolumeService) -> None:
    vol = vols.create("web-data", labels={"app": "web"})
    assert vol["Name"] == "web-data"
    assert vol["Driver"] == "local"
    assert vol["Scope"] == "local"
    assert vol["Labels"] == {"app": "web"}
    assert vol["Options"] is None
    assert vol["CreatedAt"].endswith("Z")
    assert vol["Mountpoint"] == os.path.join(vols.root, "web-data", "_data")
    assert os.path.isdir(vol["Mountpoint"])
    assert stat.S_IMODE(os.stat(vols.root).st_mode) == 0o700


def test_create_existing_name_returns_it_unchanged(vols: VolumeService) -> None:
    first = vols.create("same", labels={"a": "1"})
    again = vols.create("same", labels={"b": "2"})
    assert again == first


def test_anonymous_volume_gets_random_name_and_label(vols: VolumeService) -> None:
    vol = vols.create()
    assert len(vol["Name"]) == 64
    int(vol["Name"], 16)
    assert vol["Labels"] == {ANONYMOUS_LABEL: ""}
    assert vols.get(vol["Name"]).anonymous


def test_other_drivers_are_not_supported(vols: VolumeService) -> None:
    with pytest.raises(NotSupported):
        vols.create("x1", driver="nfs-plugin")


def test_tmpfs_and_bind_options_are_stored(vols: VolumeService, tmp_path: Path) -> None:
    tmpfs = vols.create("t1", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    vols.create("b1", driver_opts={"type": "none", "device": str(tmp_path), "o": "bind"})
    assert tmpfs["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    mount = vols.volume_mount("b1")
    assert mount is not None
    assert (mount.type, mount.source, mount.options) == ("bind", str(tmp_path), ("bind",))
    assert vols.volume_mount("t1") is not None
    assert vols.volume_mount("b1") != vols.volume_mount("t1")


def test_other_volume_types_are_not_supported(vols: VolumeService) -> None:
    with pytest.raises(NotSupported):
        vols.create("n1", driver_opts={"type": "nfs", "device": ":/export", "o": "addr=1.2.3.4"})


def test_unknown_option_is_invalid(vols: VolumeService) -> None:
    with pytest.raises(InvalidArgument, match='invalid option: "colour"'):
        vols.create("n2", driver_opts={"colour": "red"})


# --------------------------------------------------------------------------- inspect, list


def test_inspect_missing_volume(vols: VolumeService) -> None:
    with pytest.raises(NotFound, match="no such volume: nope"):
        vols.inspect("nope")


def test_metadata_survives_reopening(tmp_path: Path) -> None:
    with VolumeService(tmp_path) as first:
        created = first.create("kept", labels={"k": "v"})
    with VolumeService(tmp_path) as second:
        assert second.inspect("kept") == created


def test_list_filters_by_name_label_and_dangling(vols: VolumeService) -> None:
    vols.create("alpha", labels={"tier": "db", "env": "prod"})
    vols.create("beta", labels={"tier": "web"})
    vols.create("gamma")

    def names(filters: dict[str, list[str]]) -> list[str]:
        used = {"beta": ["c1"]}
        out = vols.list(filters, in_use=lambda n: used.get(n, []))
        assert out["Warnings"] == []
        return [v["Name"] for v in out["Volumes"]]

    assert names({}) == ["alpha", "beta", "gamma"]
    assert names({"name": ["al"]}) == ["alpha"]
    assert names({"label": ["tier"]}) == ["alpha", "beta"]
    assert names({"label": ["tier=db", "env=prod"]}) == ["alpha"]
    assert names({"label": ["tier=db", "env=dev"]}) == []
    assert names({"dangling": ["true"]}) == ["alpha", "gamma"]
    assert names({"dangling": ["false"]}) == ["beta"]


def test_list_rejects_unknown_filter(vols: VolumeService) -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        vols.list({"colour": ["red"]})


# --------------------------------------------------------------------------- remove, prune


def test_remove_deletes_record_and_data(vols: VolumeService) -> None:
    data = Path(vols.create("gone")["Mountpoint"])
    (data / "f").write_text("x")
    vols.remove("gone", in_use=nobody)
    assert not data.exists()
    with pytest.raises(NotFound):
        vols.inspect("gone")


def test_remove_in_use_conflicts_even_with_force(vols: VolumeService) -> None:
    vols.create("busy")
    with pytest.raises(Conflict, match=r"volume is in use - \[c1 c2\]"):
        vols.remove("busy", in_use=lambda n: ["c1", "c2"], force=True)
    assert vols.inspect("busy")["Name"] == "busy"


def test_remove_missing_is_not_found_unless_forced(vols: VolumeService) -> None:
    with pytest.raises(NotFound):
        vols.remove("never", in_use=nobody)
    vols.remove("never", in_use=nobody, force=True)


def test_prune_removes_only_unused_anonymous_volumes(vols: VolumeService) -> None:
    named = vols.create("named")["Name"]
    used = vols.create()["Name"]
    unused = vols.create()["Name"]
    (Path(vols.mount_source(unused)) / "f").write_bytes(b"x" * 100)

    result = vols.prune(in_use=lambda n: ["c1"] if n == used else [])

    assert result == {"VolumesDeleted": [unused], "SpaceReclaimed": 100}
    assert {v["Name"] for v in vols.list()["Volumes"]} == {named, used}


def test_prune_all_removes_unused_named_volumes(vols: VolumeService) -> None:
    vols.create("named")
    vols.create("keep", labels={"keep": "1"})
    result = vols.prune(in_use=nobody, all=True, filters={"label!": ["keep"]})
    assert result["VolumesDeleted"] == ["named"]


def test_usage_counts_bytes_and_hardlinks_once(vols: VolumeService) -> None:
    data = Path(vols.create("sized")["Mountpoint"])
    (data / "a").write_bytes(b"x" * 10)
    os.link(data / "a", data / "b")
    (data / "d").mkdir()
    (data / "d" / "c").write_bytes(b"y" * 5)
    assert vols.usage("sized", in_use=lambda n: ["c1"]) == (15, 1)
    assert vols.usage("sized") == (15, -1)


# --------------------------------------------------------------------------- copy-up


def test_copy_up_fills_a_new_volume(vols: VolumeService, image: Path) -> None:
    vols.create("filled")
    assert vols.populate_from_image("filled", str(image), "/data")
    data = Path(vols.mount_source("filled"))
    assert (data / "file").read_text() == "from the image"
    assert (data / "sub" / "deep").read_text() == "deep"


def test_copy_up_happens_only_once(vols: VolumeService, image: Path) -> None:
    vols.create("once")
    vols.populate_from_image("once", str(image), "/data")
    data = Path(vols.mount_source("once"))
    (data / "file").unlink()
    (data / "sub" / "deep").unlink()
    (data / "sub").rmdir()
    assert not vols.populate_from_image("once", str(image), "/data")
    assert list(data.iterdir()) == []


def test_copy_up_skips_a_volume_with_content(vols: VolumeService, image: Path) -> None:
    data = Path(vols.create("mine")["Mountpoint"])
    (data / "own").write_text("mine")
    assert not vols.populate_from_image("mine", str(image), "/data")
    assert [p.name for p in data.iterdir()] == ["own"]


def test_copy_up_of_missing_path_copies_nothing(vols: VolumeService, image: Path) -> None:
    vols.create("empty")
    assert not vols.populate_from_image("empty", str(image), "/nothing/here")
    assert not vols.get("empty").populated


def test_copy_up_keeps_symlinks_and_hardlinks(vols: VolumeService, image: Path) -> None:
    (image / "data" / "link").symlink_to("/etc/passwd")
    os.link(image / "data" / "file", image / "data" / "hard")
    vols.create("links")
    vols.populate_from_image("links", str(image), "/data")
    data = Path(vols.mount_source("links"))
    assert os.readlink(data / "link") == "/etc/passwd"
    assert (data / "file").stat().st_ino == (data / "hard").stat().st_ino


def test_copy_up_cannot_follow_a_symlink_out_of_the_image(
    vols: VolumeService, image: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "host-secrets"
    outside.mkdir()
    (outside / "secret").write_text("host only")
    (image / "escape").symlink_to(outside)  # absolute: resolves inside the image root
    (image / "up").symlink_to("../../../../../../" + str(outside))
    vols.create("safe")
    assert not vols.populate_from_image("safe", str(image), "/escape")
    assert not vols.populate_from_image("safe", str(image), "/up")
    assert not vols.populate_from_image("safe", str(image), "/../host-secrets")
    assert list(Path(vols.mount_source("safe")).iterdir()) == []


@pytest.mark.root
def test_copy_up_keeps_ownership_and_modes(vols: VolumeService, image: Path) -> None:
    os.chown(image / "data", 1234, 5678)
    os.chmod(image / "data", 0o750)
    os.chown(image / "data" / "file", 4321, 8765)
    os.chmod(image / "data" / "file", 0o640)
    vols.create("owned")
    vols.populate_from_image("owned", str(image), "/data")
    data = Path(vols.mount_source("owned"))
    top, file = data.stat(), (data / "file").stat()
    assert (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (1234, 5678, 0o750)
    assert (file.st_uid, file.st_gid, stat.S_IMODE(file.st_mode)) == (4321, 8765, 0o640)
