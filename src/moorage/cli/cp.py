"""``moor cp``'s local half: docker's path rules and a tar extraction that stays put.

The daemon's archive endpoint sends a tar whose top entry is the source's base
name (``GET /containers/ID/archive?path=/etc/hosts`` -> ``hosts``) and takes one
to unpack into a directory. What ends up where follows docker's ``CopyTo`` and
``PrepareArchiveCopy``:

- destination is an existing directory: the entry lands inside it;
- destination exists as a file: a file replaces it (a directory may not);
- destination does not exist: the entry is renamed to it (its parent must exist;
  a trailing ``/`` on it demands a directory source);
- a source ending in ``/.`` copies the directory's content, not the directory.

Unpacking what a container sends is unpacking untrusted data. Nothing may be
written outside the destination: member names that are absolute or climb with
``..`` are refused, as are links whose target is outside, and (tarfile's ``data``
filter) any member whose real path, once earlier members' symlinks exist on
disk, would leave the destination. Like docker, an absolute symlink is created
as it is: a link is harmless until something writes through it, and the check
above makes sure the copy itself never does. Device nodes and fifos are skipped;
owners are not restored and set-id bits are dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import posixpath
import stat
import tarfile
import threading
from collections.abc import Callable
from typing import IO, Any, NamedTuple, Protocol, cast

from moorage.errors import InvalidArgument, MoorageError, NotFound

# Go's os.FileMode bits, as the daemon's path stat encodes a mode.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
# os.ModeType: dir, symlink, named pipe, socket, device, char device, irregular.
GO_MODE_TYPE = GO_MODE_DIR | GO_MODE_SYMLINK | 1 << 25 | 1 << 24 | 1 << 26 | 1 << 21 | 1 << 19

Rename = Callable[[str], str]


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class UnsafeArchive(MoorageError):
    """A member of an archive would land outside the destination."""


class CopyInfo(NamedTuple):
    path: str
    exists: bool = False
    is_dir: bool = False
    rebase_name: str = ""


# --------------------------------------------------------------------------- arguments


def split_cp_arg(arg: str) -> tuple[str, str]:
    """``web:/etc/hosts`` -> ("web", "/etc/hosts"); a local path -> ("", path).

    A path that is absolute, or starts with ``.`` before its colon, is local, so
    ``./a:b`` names a file.
    """
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def resolve_local_path(path: str) -> str:
    """Absolute, keeping a trailing ``/`` or ``/.`` (they carry meaning to cp)."""
    return preserve_trailing_dot_or_separator(os.path.abspath(path), path)


def preserve_trailing_dot_or_separator(cleaned: str, original: str) -> str:
    if not _specifies_current_dir(cleaned) and _specifies_current_dir(original):
        if not cleaned.endswith("/"):
            cleaned += "/"
        cleaned += "."
    if not cleaned.endswith("/") and original.endswith("/"):
        cleaned += "/"
    return cleaned


def _specifies_current_dir(path: str) -> bool:
    return posixpath.basename(path) == "."


def asserts_directory(path: str) -> bool:
    return path.endswith("/") or _specifies_current_dir(path)


def split_path_dir_entry(path: str) -> tuple[str, str]:
    """(parent, base) of ``path``; ``/a/b/.`` gives ("/a/b", ".")."""
    cleaned = posixpath.normpath(path)
    if _specifies_current_dir(path):
        cleaned += "/."
    return posixpath.dirname(cleaned), posixpath.basename(cleaned)


# --------------------------------------------------------------------------- path rules


def local_source_info(path: str, follow_link: bool) -> CopyInfo:
    """What a local source is; with ``follow_link`` a symlink stands for its target."""
    if follow_link:
        resolved = os.path.realpath(path)
        resolved, rebase = _rebase_name(path, resolved)
    else:
        parent, base = os.path.split(path)
        resolved = os.path.join(os.path.realpath(parent or "."), base)
        rebase = ""
        if path.endswith("/") and os.path.basename(path.rstrip("/")) != base:
            rebase = os.path.basename(path.rstrip("/"))
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        raise NotFound(f"could not find the file {path} on the local host") from None
    return CopyInfo(resolved, True, stat.S_ISDIR(st.st_mode), rebase)


def _rebase_name(path: str, resolved: str) -> tuple[str, str]:
    if _specifies_current_dir(path) and not _specifies_current_dir(resolved):
        resolved += "/."
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    rebase = ""
    if posixpath.basename(path.rstrip("/")) != posixpath.basename(resolved.rstrip("/")):
        rebase = posixpath.basename(path.rstrip("/"))
    return resolved, rebase


def local_destination_info(path: str) -> CopyInfo:
    """docker's CopyInfoDestinationPath: symlinks followed; a missing path needs a
    parent directory."""
    original = path
    for _ in range(11):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break
        if not stat.S_ISLNK(st.st_mode):
            return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        if not os.path.isabs(target):
            target = os.path.join(split_path_dir_entry(path)[0], target)
        path = target
    else:
        raise InvalidArgument(f"too many symlinks in {original}")
    parent = split_path_dir_entry(path)[0]
    if not os.path.exists(parent):
        raise NotFound(f"no such directory: {parent}")
    if not os.path.isdir(parent):
        raise InvalidArgument(f"not a directory: {parent}")
    return CopyInfo(path)


def prepare_archive_copy(src: CopyInfo, dst: CopyInfo) -> tuple[str, Rename]:
    """Where to unpack the source's archive, and how to rename its entries."""
    dst_dir, dst_base = split_path_dir_entry(dst.path)
    src_base = src.rebase_name or split_path_dir_entry(src.path)[1]
    if dst.exists and dst.is_dir:
        # Entries keep their names, inside the directory ("/." sources give their content).
        return dst.path, rebaser(src_base, src_base) if src_base == "." else _keep
    if dst.exists and src.is_dir:
        raise InvalidArgument(f"cannot copy a directory to a file: {dst.path}")
    if not dst.exists and not src.is_dir and asserts_directory(dst.path):
        raise NotFound(f"no such directory: {dst.path}")
    return dst_dir, rebaser(src_base, dst_base)


def _keep(name: str) -> str:
    return name


def rebaser(old_base: str, new_base: str) -> Rename:
    """Renames the entry ``old_base`` (and what is under it) to ``new_base``.

    An ``old_base`` of ``.`` is a directory's content: every entry moves under
    ``new_base`` (or stays at the top when that is ``.`` too).
    """
    old = old_base.strip("/")
    new = new_base.strip("/")
    if old == ".":
        prefix = "" if new == "." else new

        def content(name: str) -> str:
            rel = _clean_member(name)
            if rel == ".":
                return prefix or "."
            return f"{prefix}/{rel}" if prefix else rel

        return content

    def rename(name: str) -> str:
        rel = name.removeprefix("./")
        if rel == old or rel.startswith(old + "/"):
            return new + rel[len(old) :]
        return name

    return rename


def _clean_member(name: str) -> str:
    return posixpath.normpath(name.removeprefix("./")) if name not in ("", ".", "./") else "."


def path_stat(header: str | None) -> dict[str, Any]:
    """The daemon's ``X-Docker-Container-Path-Stat``: base64 JSON name/size/mode/mtime."""
    if not header:
        raise MoorageError("the daemon sent no X-Docker-Container-Path-Stat header")
    try:
        data = json.loads(base64.b64decode(header))
    except (binascii.Error, ValueError):
        raise MoorageError("malformed X-Docker-Container-Path-Stat header") from None
    if not isinstance(data, dict):
        raise MoorageError("malformed X-Docker-Container-Path-Stat header")
    return data


def stat_is_dir(info: dict[str, Any]) -> bool:
    return bool(int(info.get("mode") or 0) & GO_MODE_DIR)


def stat_is_symlink(info: dict[str, Any]) -> bool:
    return bool(int(info.get("mode") or 0) & GO_MODE_SYMLINK)


def stat_is_regular(info: dict[str, Any]) -> bool:
    return not int(info.get("mode") or 0) & GO_MODE_TYPE


# --------------------------------------------------------------------------- extraction


def extract(stream: Readable, dest_dir: str, rename: Rename = _keep) -> list[str]:
    """Unpack the tar ``stream`` into ``dest_dir``, which must exist; entries renamed
    by ``rename``. Returns the names of the special files that were skipped.

    Raises :class:`UnsafeArchive`, naming the member, on anything that would
    write outside ``dest_dir``.
    """
    dest = os.path.realpath(dest_dir)
    skipped: list[str] = []

    def check(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        safe = safe_member(member, path, rename)
        if safe is None:
            skipped.append(member.name)
        return safe

    try:
        # In stream mode ("r|") tarfile only ever calls read().
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|*") as tar:
            tar.extractall(dest, filter=check)
    except tarfile.ReadError as exc:
        raise MoorageError(f"the archive is not a tar file: {exc}") from None
    return skipped


def safe_member(
    member: tarfile.TarInfo, dest: str, rename: Rename = _keep
) -> tarfile.TarInfo | None:
    """``member`` renamed and vetted for extraction into ``dest`` (None: skip it)."""
    original = member.name
    name = rename(original)
    _check_name(original, name)
    changes: dict[str, Any] = {"name": name}
    if member.islnk():
        link = rename(member.linkname)
        _check_name(member.linkname, link)
        changes["linkname"] = link
    member = member.replace(**changes, deep=False)
    if member.ischr() or member.isblk() or member.isfifo():
        return None
    absolute_link = member.issym() and member.linkname.startswith("/")
    try:
        if absolute_link:
            # tarfile refuses absolute link targets; vet the rest with a harmless one.
            vetted = tarfile.data_filter(member.replace(linkname=".", deep=False), dest)
            return vetted.replace(linkname=member.linkname, deep=False)
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"refusing to extract {original!r}: {exc}") from None


def _check_name(original: str, name: str) -> None:
    if name.startswith("/") or original.startswith("/"):
        raise UnsafeArchive(f"refusing to extract {original!r}: absolute path")
    if ".." in name.split("/") or ".." in original.split("/"):
        raise UnsafeArchive(f"refusing to extract {original!r}: path climbs out with '..'")


# --------------------------------------------------------------------------- archiving


class TarProducer:
    """A tar of local files written into a pipe by a thread; read ``.reader``.

    The upload streams: nothing is spooled, whatever the size of the tree.
    """

    def __init__(self, source: str, rename: Rename) -> None:
        read_fd, write_fd = os.pipe()
        self.reader = os.fdopen(read_fd, "rb")
        self._writer = os.fdopen(write_fd, "wb")
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write, args=(source, rename), name="moor-cp-tar", daemon=True
        )
        self._thread.start()

    def _write(self, source: str, rename: Rename) -> None:
        parent, base = split_path_dir_entry(source)
        try:
            with tarfile.open(fileobj=self._writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if base == ".":
                    tar.add(parent, arcname=rename("."), recursive=False)
                    for child in sorted(os.listdir(parent)):
                        tar.add(os.path.join(parent, child), arcname=rename(child))
                else:
                    tar.add(os.path.join(parent, base), arcname=rename(base))
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            try:
                self._writer.close()
            except OSError as exc:  # the reader went away: the request failed first
                self.error = self.error or exc

    def finish(self) -> None:
        """Wait for the writer; raise what stopped it, if anything did."""
        self.reader.close()
        self._thread.join()
        if self.error is not None and not isinstance(self.error, BrokenPipeError):
            raise MoorageError(f"archiving the source failed: {self.error}") from self.error


def content_size(path: str) -> int:
    """Bytes of regular files under ``path``: what docker reports as copied."""
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size if os.path.isfile(path) else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                total += os.lstat(full).st_size
    return total
