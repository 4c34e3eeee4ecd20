"""The build context as the client packs it: .dockerignore, the Dockerfile's place,
symlinks, order and metadata; stdin as an archive or a Dockerfile; the secrets header."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from moorage.api.build_context import (
    compression_of,
    context_from_reader,
    decode_secrets,
    encode_secrets,
    pack_context,
)
from moorage.errors import InvalidArgument, NotFound


def _write(path: Path, text: str = "x", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def _content(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def _pack(context: Path, dockerfile: str | None = None) -> tuple[bytes, str]:
    packed = pack_context(context, dockerfile)
    with packed.file:
        return packed.file.read(), packed.dockerfile


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    _write(context / "Dockerfile", "FROM scratch\nCOPY . /\n")
    return context


def test_dockerignore_excludes_files_and_keeps_exceptions(ctx: Path) -> None:
    _write(ctx / ".dockerignore", "*.log\ndocs\n!docs/README.md\n")
    _write(ctx / "app.py")
    _write(ctx / "debug.log")
    _write(ctx / "docs" / "guide.md")
    _write(ctx / "docs" / "README.md")

    data, dockerfile = _pack(ctx)

    assert dockerfile == "Dockerfile"
    assert set(_names(data)) == {".dockerignore", "Dockerfile", "app.py", "docs/README.md"}


def test_an_excluded_directory_is_not_walked(ctx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(ctx / ".dockerignore", "node_modules\n")
    _write(ctx / "node_modules" / "big" / "file.js")
    listed: list[str] = []
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        listed.append(os.path.relpath(path, ctx))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    data, _ = _pack(ctx)

    assert "node_modules" not in listed
    assert not any(n.startswith("node_modules") for n in _names(data))


def test_the_dockerfile_and_dockerignore_are_sent_even_when_ignored(ctx: Path) -> None:
    _write(ctx / ".dockerignore", "*\n")
    _write(ctx / "secret.txt")

    data, _ = _pack(ctx)

    assert _names(data) == [".dockerignore", "Dockerfile"]


def test_a_dockerfile_in_an_ignored_directory_is_sent_alone(
    ctx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(ctx / ".dockerignore", "build\n")
    _write(ctx / "build" / "app.Dockerfile", "FROM scratch\n")
    _write(ctx / "build" / "other")
    monkeypatch.chdir(ctx.parent)  # -f is relative to the current directory

    data, dockerfile = _pack(ctx, "ctx/build/app.Dockerfile")

    assert dockerfile == "build/app.Dockerfile"
    assert "build/app.Dockerfile" in _names(data)
    assert "build/other" not in _names(data)


def test_the_dockerfiles_own_ignore_file_wins(ctx: Path) -> None:
    _write(ctx / ".dockerignore", "a.txt\n")
    _write(ctx / "app.Dockerfile", "FROM scratch\n")
    _write(ctx / "app.Dockerfile.dockerignore", "b.txt\n")
    _write(ctx / "a.txt")
    _write(ctx / "b.txt")

    data, _ = _pack(ctx, str(ctx / "app.Dockerfile"))

    assert "a.txt" in _names(data)
    assert "b.txt" not in _names(data)


def test_a_dockerfile_outside_the_context_gets_a_generated_name(ctx: Path, tmp_path: Path) -> None:
    outside = _write(tmp_path / "elsewhere" / "Dockerfile", "FROM busybox\n")
    _write(ctx / ".dockerignore", "*.tmp")

    data, dockerfile = _pack(ctx, str(outside))
    again, same = _pack(ctx, str(outside))

    assert dockerfile.startswith(".dockerfile.")
    assert len(dockerfile) == len(".dockerfile.") + 20
    assert same == dockerfile  # named by its content: reproducible
    assert again == data
    assert _content(data, dockerfile) == b"FROM busybox\n"
    assert _content(data, ".dockerignore") == f"*.tmp\n{dockerfile}\n".encode()


def test_a_dockerignore_is_made_for_the_generated_name(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    _write(context / "a.txt")

    packed = pack_context(context, dockerfile_content=b"FROM scratch\n")
    with packed.file:
        data = packed.file.read()

    assert _content(data, packed.dockerfile) == b"FROM scratch\n"
    assert _content(data, ".dockerignore") == f".dockerignore\n{packed.dockerfile}\n".encode()


def test_symlinks_are_stored_not_followed(ctx: Path, tmp_path: Path) -> None:
    _write(tmp_path / "outside" / "private.key", "secret")
    (ctx / "link").symlink_to(tmp_path / "outside")
    (ctx / "rel").symlink_to("Dockerfile")

    members = _members(_pack(ctx)[0])

    assert members["link"].issym()
    assert members["link"].linkname == str(tmp_path / "outside")
    assert members["rel"].issym()
    assert members["rel"].linkname == "Dockerfile"
    assert not any("private.key" in name for name in members)


def test_entries_are_depth_first_and_sorted(ctx: Path) -> None:
    _write(ctx / "a.txt")
    _write(ctx / "a" / "b")
    _write(ctx / "B")
    _write(ctx / "a" / "c" / "d")

    data, _ = _pack(ctx)

    assert _names(data) == ["B", "Dockerfile", "a", "a/b", "a/c", "a/c/d", "a.txt"]
    assert _pack(ctx)[0] == data


def test_modes_and_mtimes_are_kept_owners_are_root(ctx: Path) -> None:
    script = _write(ctx / "run.sh", "#!/bin/sh\n", mode=0o4755)
    os.utime(script, (1_600_000_000.7, 1_600_000_000.7))
    (ctx / "dir").mkdir(mode=0o700)

    members = _members(_pack(ctx)[0])

    assert members["run.sh"].mode == 0o4755
    assert members["run.sh"].mtime == 1_600_000_000
    assert members["dir"].isdir()
    assert members["dir"].mode == 0o700
    for member in members.values():
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")


def test_hard_links_are_stored_once(ctx: Path) -> None:
    first = _write(ctx / "a", "same")
    os.link(first, ctx / "b")

    data, _ = _pack(ctx)
    members = _members(data)

    assert members["b"].islnk()
    assert members["b"].linkname == "a"
    assert _content(data, "a") == b"same"


def test_special_files_are_left_out(ctx: Path) -> None:
    os.mkfifo(ctx / "pipe")

    assert _names(_pack(ctx)[0]) == ["Dockerfile"]


def test_the_tar_ends_without_record_padding(ctx: Path) -> None:
    data, _ = _pack(ctx)
    # one header, one data block, two end blocks: what the docker CLI's Go tar writes
    assert len(data) == 4 * 512


def test_a_lower_case_dockerfile_is_found(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    _write(context / "dockerfile", "FROM scratch\n")

    assert _pack(context)[1] == "dockerfile"


def test_a_missing_dockerfile_is_named(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    with pytest.raises(NotFound, match="cannot locate specified Dockerfile: Dockerfile"):
        pack_context(tmp_path / "ctx")
    with pytest.raises(NotFound, match="cannot locate specified Dockerfile: nope"):
        pack_context(tmp_path / "ctx", "nope")


def test_a_missing_context_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="path .*absent.* not found"):
        pack_context(tmp_path / "absent")


# --- stdin ----------------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_stdin_tar_is_passed_through() -> None:
    archive = _tar({"build/Dockerfile": b"FROM scratch\n", "a": b"1"})

    packed = context_from_reader(io.BytesIO(archive), "build/Dockerfile")

    assert packed.dockerfile == "build/Dockerfile"
    with packed.file:
        assert packed.file.read() == archive


def test_stdin_compressed_archive_is_passed_through() -> None:
    archive = gzip.compress(_tar({"Dockerfile": b"FROM scratch\n"}))

    packed = context_from_reader(io.BytesIO(archive))

    assert packed.dockerfile == "Dockerfile"
    with packed.file:
        assert packed.file.read() == archive


def test_stdin_dockerfile_becomes_a_one_file_context() -> None:
    packed = context_from_reader(io.BytesIO(b"FROM busybox\nRUN true\n"), "ignored")
    with packed.file:
        data = packed.file.read()

    assert packed.dockerfile == "Dockerfile"
    assert _names(data) == ["Dockerfile"]
    assert _content(data, "Dockerfile") == b"FROM busybox\nRUN true\n"


def test_stdin_that_is_no_archive_with_dockerfile_from_stdin_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="build context is not an archive"):
        context_from_reader(io.BytesIO(b"FROM busybox\n"), "-")


# --- compression and secrets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("compress", "name"),
    [
        (gzip.compress, "gzip"),
        (bz2.compress, "bzip2"),
        (lzma.compress, "xz"),
        (zstandard.ZstdCompressor().compress, "zstd"),
        (lambda data: data, None),
    ],
)
def test_compression_is_detected_by_magic(compress: object, name: str | None) -> None:
    data = compress(_tar({"Dockerfile": b"FROM scratch\n"}))  # type: ignore[operator]
    assert compression_of(data[:10]) == name


def test_a_tar_whose_first_file_starts_with_bzh_is_plain() -> None:
    assert compression_of(_tar({"BZh9.txt": b""})[:10]) is None


def test_secrets_round_trip() -> None:
    secrets = {"token": b"s3cr3t\n", "bin": bytes(range(256))}
    assert decode_secrets(encode_secrets(secrets)) == secrets


@pytest.mark.parametrize("value", ["not base64!", "WyJhIl0=", "eyJhIjogMX0="])
def test_a_malformed_secrets_header_is_refused(value: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid X-Moorage-Build-Secrets header"):
        decode_secrets(value)
