"""The pure parts of engine.container_fs: Docker's encodings, path rules, `docker diff`
classification on a hand-made overlay upper/lower pair, commit configs."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from moorage.engine import container_fs as cfs
from moorage.errors import InvalidArgument
from moorage.store.snapshots.mount import Mount

# --- Go's FileMode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("st_mode", "expected"),
    [
        (stat.S_IFREG | 0o644, 0o644),
        (stat.S_IFDIR | 0o755, (1 << 31) | 0o755),  # 2147484141, as dockerd sends a dir
        (stat.S_IFLNK | 0o777, (1 << 27) | 0o777),
        (stat.S_IFCHR | 0o666, (1 << 26) | (1 << 21) | 0o666),
        (stat.S_IFBLK | 0o660, (1 << 26) | 0o660),
        (stat.S_IFIFO | 0o600, (1 << 25) | 0o600),
        (stat.S_IFSOCK | 0o755, (1 << 24) | 0o755),
        (stat.S_IFREG | 0o4755, (1 << 23) | 0o755),
        (stat.S_IFREG | 0o2755, (1 << 22) | 0o755),
        (stat.S_IFDIR | 0o1777, (1 << 31) | (1 << 20) | 0o777),
    ],
)
def test_go_file_mode(st_mode: int, expected: int) -> None:
    assert cfs.go_file_mode(st_mode) == expected


def test_go_file_mode_of_a_real_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    assert cfs.go_file_mode(os.lstat(tmp_path).st_mode) == 2147484141


def test_go_time_trims_trailing_zeros_like_rfc3339nano() -> None:
    assert cfs.go_time(0) == "1970-01-01T00:00:00Z"
    assert cfs.go_time(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"
    assert cfs.go_time(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_path_stat_header_is_base64_json() -> None:
    value = {"name": "x", "size": 3, "mode": 420, "mtime": "2023-11-14T22:13:20Z", "linkTarget": ""}
    assert json.loads(base64.b64decode(cfs.encode_path_stat(value))) == value


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/passwd", "/etc/passwd"),
        ("etc/passwd", "/etc/passwd"),
        ("//etc//passwd", "/etc/passwd"),
        ("/etc/", "/etc/"),
        ("/etc/.", "/etc/."),
        (".", "/."),
        ("/", "/"),
        ("../../etc/shadow", "/etc/shadow"),
        ("/a/../../b/", "/b/"),
    ],
)
def test_paths_are_cleaned_as_docker_does(path: str, expected: str) -> None:
    assert cfs._abs(path) == expected


def test_a_nul_byte_in_a_path_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        cfs._abs("/etc\0/passwd")


def test_read_only_mounts_put_the_upper_dir_below_nothing() -> None:
    overlay = Mount(
        "overlay",
        "overlay",
        ("lowerdir=/s/2/fs:/s/1/fs", "upperdir=/s/3/fs", "workdir=/s/3/work", "index=off"),
    )
    assert cfs.read_only_mounts([overlay]) == [
        Mount("overlay", "overlay", ("lowerdir=/s/3/fs:/s/2/fs:/s/1/fs", "index=off"))
    ]
    single = Mount("overlay", "overlay", ("lowerdir=/s/1/fs", "upperdir=/s/3/fs", "workdir=/w"))
    assert cfs.read_only_mounts([single]) == [
        Mount("overlay", "overlay", ("lowerdir=/s/3/fs:/s/1/fs",))
    ]
    bind = Mount("bind", "/s/1/fs", ("rbind", "rw"))
    assert cfs.read_only_mounts([bind]) == [Mount("bind", "/s/1/fs", ("rbind", "ro"))]


# --- docker diff on a synthetic upper/lower pair ---------------------------------------------


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path]:
    lower = tmp_path / "lower"
    upper = tmp_path / "upper"
    for d in ("etc", "usr/bin", "var/log", "opt/app/sub", "home/user"):
        (lower / d).mkdir(parents=True)
    (lower / "etc/passwd").write_text("root\n")
    (lower / "etc/group").write_text("root\n")
    (lower / "usr/bin/tool").write_text("#!/bin/sh\n")
    (lower / "var/log/old.log").write_text("x")
    (lower / "opt/app/a").write_text("a")
    (lower / "opt/app/b").write_text("b")
    (lower / "opt/app/sub/c").write_text("c")
    upper.mkdir()
    return upper, lower


def _copy_up_dir(upper: Path, lower: Path, rel: str) -> None:
    """What overlayfs's copy-up does to ``rel`` and its parents: same mode and times.
    Call it again after writing into them, as the kernel keeps the lower times."""
    (upper / rel).mkdir(parents=True, exist_ok=True)
    parts = rel.split("/")
    for i in range(len(parts), 0, -1):
        sub = "/".join(parts[:i])
        st = os.stat(lower / sub)
        os.chmod(upper / sub, stat.S_IMODE(st.st_mode))
        os.utime(upper / sub, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.root
def test_changes_classify_added_modified_deleted(layers: tuple[Path, Path]) -> None:
    upper, lower = layers
    _copy_up_dir(upper, lower, "etc")
    (upper / "etc/passwd").write_text("root\nuser\n")  # modified file
    _copy_up_dir(upper, lower, "etc")
    (upper / "tmp").mkdir()  # a new directory with a new file
    (upper / "tmp/x").write_text("new")
    _copy_up_dir(upper, lower, "usr/bin")
    _whiteout(upper / "usr/bin/tool")  # deleted
    _copy_up_dir(upper, lower, "usr/bin")
    got = cfs.changes(str(upper), str(lower))
    assert got == [
        {"Path": "/etc/passwd", "Kind": 0},
        {"Path": "/tmp", "Kind": 1},
        {"Path": "/tmp/x", "Kind": 1},
        {"Path": "/usr/bin", "Kind": 0},  # the parent of a deletion, as Docker reports it
        {"Path": "/usr/bin/tool", "Kind": 2},
    ]


@pytest.mark.root
def test_a_directory_whose_metadata_changed_is_modified(layers: tuple[Path, Path]) -> None:
    upper, lower = layers
    _copy_up_dir(upper, lower, "var/log")
    os.chmod(upper / "var/log", 0o700)
    (upper / "var/log/new.log").write_text("y")
    got = cfs.changes(str(upper), str(lower))
    assert got == [
        {"Path": "/var/log", "Kind": 0},
        {"Path": "/var/log/new.log", "Kind": 1},
    ]


@pytest.mark.root
def test_an_opaque_directory_hides_the_lower_entries(layers: tuple[Path, Path]) -> None:
    """rm -rf /opt/app; mkdir /opt/app; touch /opt/app/a: overlay makes /opt/app opaque."""
    upper, lower = layers
    _copy_up_dir(upper, lower, "opt")
    (upper / "opt/app").mkdir()
    os.setxattr(upper / "opt/app", "trusted.overlay.opaque", b"y")
    (upper / "opt/app/a").write_text("again")
    _copy_up_dir(upper, lower, "opt")
    got = cfs.changes(str(upper), str(lower))
    assert got == [
        {"Path": "/opt/app", "Kind": 0},
        {"Path": "/opt/app/a", "Kind": 0},
        {"Path": "/opt/app/b", "Kind": 2},
        {"Path": "/opt/app/sub", "Kind": 2},
    ]


@pytest.mark.root
def test_deleting_a_whole_directory_is_one_deletion(layers: tuple[Path, Path]) -> None:
    upper, lower = layers
    _whiteout(upper / "home")
    assert cfs.changes(str(upper), str(lower)) == [{"Path": "/home", "Kind": 2}]


@pytest.mark.root
def test_runtime_placeholders_are_left_out(layers: tuple[Path, Path]) -> None:
    """The runtime's bind-mount targets (Docker's init layer) are no change of the user's,
    nor is the copy-up of /etc that making them caused."""
    upper, lower = layers
    _copy_up_dir(upper, lower, "etc")
    for name in ("hosts", "hostname", "resolv.conf"):
        (upper / "etc" / name).write_text("")
    os.utime(upper / "etc")  # creating them moved the directory's mtime
    (upper / "proc").mkdir()
    assert cfs.changes(str(upper), str(lower)) == []
    (upper / "etc/motd").write_text("hi")
    assert cfs.changes(str(upper), str(lower)) == [
        {"Path": "/etc", "Kind": 0},
        {"Path": "/etc/motd", "Kind": 1},
    ]


def test_changes_without_lower_layers_are_all_additions(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/c").write_text("c")
    (tmp_path / "link").symlink_to("/etc/passwd")
    assert cfs.changes(str(tmp_path), None) == [
        {"Path": "/a", "Kind": 1},
        {"Path": "/a/b", "Kind": 1},
        {"Path": "/a/b/c", "Kind": 1},
        {"Path": "/link", "Kind": 1},
    ]


def test_changes_never_follow_a_symlink_in_the_lower_layers(tmp_path: Path) -> None:
    """Docker stats lower paths with os.Stat (following symlinks out of the layer); a
    lower symlink to the host's /etc must not make /etc-like upper paths "modified"."""
    lower = tmp_path / "lower"
    upper = tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    (lower / "hostetc").symlink_to("/etc")
    (upper / "hostetc").mkdir()
    (upper / "hostetc/passwd").write_text("mine")
    assert cfs.changes(str(upper), str(lower)) == [
        {"Path": "/hostetc", "Kind": 0},  # a symlink became a directory
        {"Path": "/hostetc/passwd", "Kind": 1},
    ]


# --- commit configs --------------------------------------------------------------------------

CONTAINER = {
    "Hostname": "abc",
    "User": "user",
    "Env": ["PATH=/bin", "A=1"],
    "Cmd": ["sh", "-c", "sleep 1"],
    "Entrypoint": None,
    "WorkingDir": "/home",
    "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"a": "1"},
    "StopSignal": "SIGINT",
}


def test_commit_config_is_the_container_config() -> None:
    c = cfs.commit_config(CONTAINER)
    assert c.user == "user"
    assert c.env == ("PATH=/bin", "A=1")
    assert c.cmd == ("sh", "-c", "sleep 1")
    assert c.entrypoint is None
    assert c.working_dir == "/home"
    assert c.exposed_ports == ("80/tcp",)
    assert c.volumes == ("/data",)
    assert dict(c.labels) == {"a": "1"}
    assert c.stop_signal == "SIGINT"


def test_commit_changes_apply_on_top() -> None:
    c = cfs.commit_config(
        CONTAINER, None, ["ENV A=2", "LABEL b=2", 'CMD ["echo", "hi"]', "EXPOSE 443", "USER root"]
    )
    assert c.env == ("PATH=/bin", "A=2")
    assert dict(c.labels) == {"a": "1", "b": "2"}
    assert c.cmd == ("echo", "hi")
    assert c.exposed_ports == ("80/tcp", "443/tcp")
    assert c.user == "root"


def test_an_entrypoint_change_resets_cmd() -> None:
    c = cfs.commit_config(CONTAINER, None, ['ENTRYPOINT ["/bin/true"]'])
    assert c.entrypoint == ("/bin/true",)
    assert c.cmd is None


def test_a_config_body_is_merged_with_the_container_config() -> None:
    c = cfs.commit_config(CONTAINER, {"Env": ["B=3", "A=9"], "Labels": {"b": "2"}})
    assert c.env == ("B=3", "A=9", "PATH=/bin")  # dockerd's merge: the body's first
    assert dict(c.labels) == {"a": "1", "b": "2"}
    assert c.cmd == ("sh", "-c", "sleep 1")  # unset in the body: the container's
    assert c.user == "user"


def test_a_bad_config_body_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="Env"):
        cfs.commit_config(CONTAINER, {"Env": 3})


def test_a_committed_image_lists_its_parents_layers_with_oci_media_types() -> None:
    from moorage.engine.images import _oci_layer
    from moorage.oci import mediatypes as mt
    from moorage.oci.descriptor import Descriptor
    from moorage.oci.digest import parse_digest

    digest = parse_digest("sha256:" + "a" * 64)
    docker = Descriptor(mt.DOCKER_LAYER, digest, 10)
    assert _oci_layer(docker) == Descriptor(mt.OCI_LAYER_GZIP, digest, 10)
    assert _oci_layer(docker._replace(media_type=mt.DOCKER_LAYER_TAR)).media_type == mt.OCI_LAYER
    oci = Descriptor(mt.OCI_LAYER_ZSTD, digest, 10)
    assert _oci_layer(oci) is oci
    foreign = Descriptor(mt.DOCKER_FOREIGN_LAYER, digest, 10)
    assert _oci_layer(foreign) is foreign
