"""COPY and ADD of local files: choosing the sources, hashing them for the cache, and
putting them into a root filesystem.

Sources come from a *source root*: the build context (as the daemon extracted it) or
the root filesystem of another stage or image (``--from``). A source path is resolved
inside that root (``..`` and symlinks in it cannot leave it); what is copied from it is
copied as it is, symlinks as symlinks. Docker's rules:

- a directory source copies its contents into the destination;
- a file source lands at the destination itself, unless the destination ends in ``/``
  or there are several sources: then it lands inside it, under its own name;
- wildcards (``*``, ``?``, ``[...]``) in a source select every match; none is an error;
- ``--chown`` sets every copied entry's owner, ``--chmod`` every copied entry's mode,
  ``--exclude`` patterns (``.dockerignore`` syntax) leave entries out.

The cache key of a copy is a digest of what would be copied: paths, types, modes,
owners, link targets and file contents, never modification times.

The copy itself goes from file to file (no archive in between) with the rules of an
extraction: every path resolved inside the target root, what is in the way replaced.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

from moorage.build.dockerignore import PatternMatcher
from moorage.errors import InvalidArgument, NotFound
from moorage.store.archive_apply import copy_tree_entries, extract_files
from moorage.sys import libc

__all__ = [
    "CopyPlan",
    "archive_reader",
    "copy_into",
    "directory_in",
    "extract_archive",
    "plan_copy",
    "resolve_in",
]

_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_DIR_PATH = os.O_PATH | os.O_DIRECTORY
_MAX_LINKS = 40  # the kernel's own limit for one path
_GLOB = set("*?[")


class _Excluder(Protocol):
    def matches(self, path: str) -> bool: ...

    def may_contain_included(self, path: str) -> bool: ...


@dataclass(frozen=True)
class Entry:
    source: str  # host path of the entry (inside the source root)
    target: str  # path relative to the destination directory


@dataclass(frozen=True)
class CopyPlan:
    dest_dir: str  # absolute path in the target root: where the entries go
    entries: tuple[Entry, ...]
    owner: tuple[int, int] | None
    mode: int | None

    def digest(self) -> str:
        """What would be copied, for the cache key (no modification times)."""
        h = hashlib.sha256(f"{self.dest_dir}\0{self.owner}\0{self.mode}\0".encode())
        for entry in self.entries:
            st = os.lstat(entry.source)
            h.update(f"{entry.target}\0{st.st_mode:o}\0".encode())
            if self.owner is None:  # the copies keep the sources' owners
                h.update(f"{st.st_uid}:{st.st_gid}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(entry.source).encode() + b"\0")
            elif stat.S_ISREG(st.st_mode):
                h.update(_content_digest(entry.source, st) + b"\0")
        return h.hexdigest()


# (device, inode) -> (size, mtime ns, ctime ns, sha256 of the content). A rebuild from a
# context read in place hashes only the files that changed since: any write changes
# ctime, which nothing can set back. Bounded, oldest out first.
_DIGESTS: collections.OrderedDict[tuple[int, int], tuple[int, int, int, bytes]] = (
    collections.OrderedDict()
)
_DIGESTS_MAX = 200_000
_DIGESTS_LOCK = threading.Lock()
_RACY_NS = 100_000_000


def _content_digest(path: str, st: os.stat_result) -> bytes:
    key = (st.st_dev, st.st_ino)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _DIGESTS_LOCK:
        known = _DIGESTS.get(key)
    if known is not None and known[:3] == stamp:
        return known[3]
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        h = hashlib.sha256()
        with open(fd, "rb", closefd=False) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    digest = h.digest()
    # Kept only when nothing changed the file while it was read, and not when it changed
    # just now: file times come from a clock that ticks every few milliseconds, so a
    # second write in the same tick would not show (git's "racy" entries, the same way).
    unchanged = (opened.st_ino, opened.st_ctime_ns, after.st_ctime_ns) == (
        st.st_ino,
        stamp[2],
        stamp[2],
    )
    if unchanged and time.time_ns() - stamp[2] > _RACY_NS:
        with _DIGESTS_LOCK:
            _DIGESTS[key] = (*stamp, digest)
            _DIGESTS.move_to_end(key)
            while len(_DIGESTS) > _DIGESTS_MAX:
                _DIGESTS.popitem(last=False)
    return digest


def resolve_in(root: str, path: str) -> str:
    """``path`` inside ``root`` (symlinks and ``..`` kept inside it): its host path."""
    return _resolve(os.path.realpath(root), path)


def _resolve(root: str, path: str) -> str:
    """``path`` inside ``root``, symlinks and ``..`` kept inside it; the host path."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            found = libc.openat2(fd, path.lstrip("/") or ".", os.O_PATH, _IN_ROOT)
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file or directory") from None
        try:
            real = os.readlink(f"/proc/self/fd/{found}")
        finally:
            os.close(found)
    finally:
        os.close(fd)
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        raise InvalidArgument(f"{path}: outside the build context")
    return real


def _matches(root: str, pattern: str) -> list[str]:
    """The paths (relative to ``root``) a source with wildcards selects, sorted."""
    parts = [p for p in pattern.strip("/").split("/") if p not in ("", ".")]
    found = [""]
    for part in parts:
        nxt = []
        for base in found:
            if not _GLOB & set(part):
                nxt.append(os.path.join(base, part))
                continue
            try:
                names = os.listdir(os.path.join(root, base) or root)
            except OSError:
                continue
            nxt += [os.path.join(base, n) for n in sorted(names) if fnmatch.fnmatchcase(n, part)]
        found = nxt
    return found


def _walk(top: str, prefix: str, excludes: _Excluder | None, rel_top: str) -> Iterator[Entry]:
    yield Entry(top, prefix)
    if not stat.S_ISDIR(os.lstat(top).st_mode):
        return
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top)
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames + links):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if excludes is not None and excludes.matches(os.path.join(rel_top, rel)):
                continue
            yield Entry(os.path.join(dirpath, name), os.path.normpath(os.path.join(prefix, rel)))
        kept = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            rel = os.path.normpath(os.path.join(rel_dir, d))
            if os.path.islink(full):
                continue
            path = os.path.join(rel_top, rel)
            if (
                excludes is not None
                and excludes.matches(path)
                and not excludes.may_contain_included(path)
            ):
                continue
            kept.append(d)
            yield Entry(full, os.path.normpath(os.path.join(prefix, rel)))
        dirnames[:] = kept


def plan_copy(
    source_root: str,
    sources: Sequence[str],
    dest: str,
    *,
    workdir: str,
    owner: tuple[int, int] | None = None,
    mode: int | None = None,
    excludes: Sequence[str] = (),
    ignore: PatternMatcher | None = None,
) -> CopyPlan:
    """What a COPY of ``sources`` (in ``source_root``) to ``dest`` (in the image, relative
    to ``workdir`` unless absolute) puts where. ``ignore`` is the context's
    .dockerignore (files it excludes do not exist for the build)."""
    source_root = os.path.realpath(source_root)
    target = dest if dest.startswith("/") else os.path.join(workdir or "/", dest)
    into_dir = dest.endswith("/") or len(sources) > 1 or dest in (".", "./")
    selected: list[str] = []
    for source in sources:
        if _GLOB & set(source):
            found = _matches(source_root, source)
            found = [f for f in found if ignore is None or not ignore.matches(f)]
            if not found:
                raise NotFound(f"{source}: no source files were specified")
            selected += found
        else:
            rel = os.path.normpath(source.lstrip("/")) if source.strip("/") else "."
            if rel.startswith(".."):
                raise InvalidArgument(f"{source}: outside the build context")
            if ignore is not None and rel != "." and ignore.matches(rel):
                raise NotFound(f"{source}: not found (excluded by .dockerignore)")
            selected.append(rel)
    into_dir = into_dir or len(selected) > 1
    patterns = PatternMatcher(list(excludes)) if excludes else None
    skip: _Excluder | None = ignore if patterns is None else _Either(ignore, patterns)
    entries: list[Entry] = []
    dest_dir = os.path.normpath(target)
    for rel in selected:
        host = _resolve(source_root, rel)
        st = os.lstat(host)
        if stat.S_ISDIR(st.st_mode):
            for entry in _walk(host, ".", skip, rel):
                if entry.target != ".":
                    entries.append(entry)
        elif into_dir:
            entries.append(Entry(host, os.path.basename(rel) or os.path.basename(host)))
        else:
            dest_dir = os.path.dirname(os.path.normpath(target)) or "/"
            entries.append(Entry(host, os.path.basename(os.path.normpath(target))))
    return CopyPlan(dest_dir, tuple(entries), owner, mode)


class _Either:
    """Excluded by either matcher (.dockerignore or --exclude)."""

    def __init__(self, a: PatternMatcher | None, b: PatternMatcher) -> None:
        self.a, self.b = a, b

    def matches(self, path: str) -> bool:
        return (self.a is not None and self.a.matches(path)) or self.b.matches(path)

    def may_contain_included(self, path: str) -> bool:
        return (self.a is None or self.a.may_contain_included(path)) and (
            self.b.may_contain_included(path)
        )


def _open_dir_at(root_fd: int, path: str) -> int:
    """The directory ``path`` inside the root, made (0755, root's) where missing.

    Every prefix is resolved from the root, so that a symlink (absolute or relative)
    anywhere on the way stays inside it; a symlink to a place that does not exist yet
    has that place made, as Docker's copy does."""
    parts = [p for p in path.split("/") if p]
    links = 0
    done = 0
    while done < len(parts):
        try:
            os.close(libc.openat2(root_fd, "/".join(parts[: done + 1]), _DIR_PATH, _IN_ROOT))
            done += 1
            continue
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            raise InvalidArgument(
                f"cannot copy to {path}: {parts[done]} is not a directory"
            ) from None
        parent = libc.openat2(root_fd, "/".join(parts[:done]) or ".", _DIR_PATH, _IN_ROOT)
        try:
            try:
                os.mkdir(parts[done], 0o755, dir_fd=parent)
                done += 1
                continue
            except FileExistsError:
                target = os.readlink(parts[done], dir_fd=parent)  # dangling: go where it points
        finally:
            os.close(parent)
        links += 1
        if links > _MAX_LINKS:
            raise InvalidArgument(f"cannot copy to {path}: too many levels of symbolic links")
        base = [] if target.startswith("/") else parts[:done]
        parts = base + [p for p in target.split("/") if p] + parts[done + 1 :]
        done = 0
    return libc.openat2(root_fd, "/".join(parts) or ".", os.O_RDONLY | os.O_DIRECTORY, _IN_ROOT)


@contextlib.contextmanager
def directory_in(rootfs: str, path: str) -> Iterator[int]:
    """A descriptor of the directory ``path`` inside ``rootfs`` (resolved inside it,
    made 0755 where missing), closed when the block ends."""
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _open_dir_at(root_fd, path)
    finally:
        os.close(root_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def copy_into(plan: CopyPlan, rootfs: str, *, keep_xattrs: bool = False) -> None:
    """Put what ``plan`` selects into the root filesystem ``rootfs`` (extended
    attributes too with ``keep_xattrs``: a copy from another stage keeps file
    capabilities, as BuildKit's does)."""
    with directory_in(rootfs, plan.dest_dir) as dest_fd:
        copy_tree_entries(
            ((entry.source, entry.target) for entry in plan.entries),
            dest_fd,
            owner=plan.owner,
            mode=plan.mode,
            keep_xattrs=keep_xattrs,
        )


def archive_reader(path: str) -> Callable[[], BinaryIO] | None:
    """For ADD: a way to open ``path`` as a plain tar stream when it is a tar archive
    (plain, gzip, bzip2, xz or zstd), recognised by its content as Docker does; None
    when it is not one (it is then copied as a file)."""
    import bz2
    import gzip
    import lzma

    with open(path, "rb") as f:
        head = f.read(6)

    def zstd(name: str) -> BinaryIO:
        import zstandard

        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(open(name, "rb")))  # noqa: SIM115

    # Each opener's stream is the caller's to close.
    openers: dict[bytes, Callable[[str], BinaryIO]] = {
        b"\x1f\x8b": lambda n: cast(BinaryIO, gzip.open(n, "rb")),  # noqa: SIM115
        b"BZh": lambda n: cast(BinaryIO, bz2.open(n, "rb")),  # noqa: SIM115
        b"\xfd7zXZ": lambda n: cast(BinaryIO, lzma.open(n, "rb")),  # noqa: SIM115
        b"\x28\xb5\x2f\xfd": zstd,
    }
    opener: Callable[[str], BinaryIO] = lambda n: open(n, "rb")  # noqa: E731, SIM115
    for magic, candidate in openers.items():
        if head.startswith(magic):
            opener = candidate
    try:
        with opener(path) as stream:
            block = stream.read(512)
    except (OSError, EOFError, ValueError, lzma.LZMAError):
        return None
    if len(block) < 512 or block[257:262] != b"ustar":
        return None
    return lambda: opener(path)


def extract_archive(
    open_archive: Callable[[], BinaryIO], rootfs: str, dest_dir: str, owner: tuple[int, int] | None
) -> None:
    """ADD of a local archive: its entries extracted into ``dest_dir`` of ``rootfs``,
    with the rules of every extraction here (nothing outside the root)."""
    with directory_in(rootfs, dest_dir) as dest_fd, open_archive() as stream:
        extract_files(stream, dest_fd, owner=owner, private=True)
