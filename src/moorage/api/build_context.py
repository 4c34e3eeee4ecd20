"""The client side of a build: the context as the docker CLI packs it, and the wire
format of Moorage's build-secrets extension. Used by ``moor build`` (and compose).

:func:`pack_context` makes the tar of a context directory that ``POST /build`` takes,
as the docker CLI's classic builder does:

- ``.dockerignore`` (or ``<Dockerfile>.dockerignore`` next to the Dockerfile, which
  BuildKit reads) is applied, pruning a whole directory when no exception can bring
  anything below it back; the Dockerfile and ``.dockerignore`` themselves are always
  sent, even when ignored (the daemon reads them, then drops them from the context
  when the ignore file says so);
- ``-f`` is relative to the current directory, not to the context; with no ``-f``,
  ``Dockerfile`` in the context (or ``dockerfile``); symlinks on the way to it are
  resolved; a Dockerfile outside the context (or read from stdin) goes into the tar
  as ``.dockerfile.<20 hex digits>``, and the root ``.dockerignore`` gets that name
  appended (created if need be) so that the daemon leaves it out of ``COPY .``;
- symlinks are stored as symlinks, never followed; files hard-linked to each other are
  stored once, the others as links to the first; sockets, fifos and devices are left
  out; modes and (whole-second) mtimes are kept, owners are 0:0 with no names;
- entries are in a fixed order, depth first and sorted by name (bytes) within each
  directory, so the same tree always gives the same tar. The generated Dockerfile
  name is a hash of its content rather than docker's random one for the same reason.

The tar goes to an unlinked temporary file, written as the tree is walked and read
back by the upload: never whole in memory.

:func:`context_from_reader` is ``moor build -``: the docker CLI's rule is that stdin
is a build context when it starts like an archive (compressed by gzip, bzip2, xz or
zstd, or a valid tar header in its first 512 bytes) and a lone Dockerfile otherwise,
which is then sent as a one-file context. An archive is passed on as it comes (the
daemon decompresses); only the 512 bytes needed to decide are read ahead.

A context in place (Moorage's, for ``moor build`` as root on the daemon's machine): the
client sends no tar but the header :data:`CONTEXT_DIR_HEADER` with the context
directory's real path, and the daemon reads the context where it is, as BuildKit reads
a client's files only as the build needs them: no archive of the whole tree is made,
sent and unpacked for every build. The daemon says it can in its ``/_ping`` headers
(:data:`FEATURES_HEADER` lists :data:`CONTEXT_DIR_FEATURE`), and declines a request
(HTTP 501, message starting with :data:`CONTEXT_DIR_DECLINED`) unless the client is
root in the daemon's own mount namespace, on its unix socket; the client then sends
the tar. :func:`context_in_place` says when a context qualifies: a directory whose
Dockerfile is inside it.

Secrets (``moor build --secret``): the classic API has no way to send them, so Moorage
adds one header, :data:`SECRETS_HEADER`, whose value is the standard base64 of a JSON
object mapping each secret's id to the base64 of its content (:func:`encode_secrets`,
:func:`decode_secrets`). The docker CLI never sends it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

from moorage.errors import InvalidArgument, NotFound

__all__ = [
    "CONTEXT_DIR_DECLINED",
    "CONTEXT_DIR_FEATURE",
    "CONTEXT_DIR_HEADER",
    "DEFAULT_DOCKERFILE",
    "FEATURES_HEADER",
    "SECRETS_HEADER",
    "PackedContext",
    "compression_of",
    "context_from_reader",
    "context_in_place",
    "decode_secrets",
    "encode_secrets",
    "pack_context",
    "prefixed",
    "read_head",
]

DEFAULT_DOCKERFILE = "Dockerfile"
SECRETS_HEADER = "X-Moorage-Build-Secrets"
CONTEXT_DIR_HEADER = "X-Moorage-Context-Dir"
FEATURES_HEADER = "Moorage-Features"
CONTEXT_DIR_FEATURE = "build-context-dir"
CONTEXT_DIR_DECLINED = "build context in place declined"
_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1024 * 1024
_HEADER_PEEK = 512  # one tar header: what the docker CLI peeks at on stdin
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# bzip2: "BZh", the block size digit, then a block's magic (pi) or the end-of-stream
# one (sqrt(pi)) for an empty stream. Docker checks "BZh" alone, which a tar whose
# first file is named "BZh..." would also start with.
_BZIP2_BLOCK_MAGICS = (b"1AY&SY", b"\x17rE8P\x90")


class PackedContext(NamedTuple):
    """A build context ready to upload: the tar (or compressed tar) and the path of
    the Dockerfile inside it, the API's ``dockerfile`` parameter."""

    file: BinaryIO
    dockerfile: str


def compression_of(head: bytes) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zstd"`` or None (plain) for a stream
    starting with ``head`` (10 bytes are enough), by magic number as docker detects
    a build context's compression."""
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] in _BZIP2_BLOCK_MAGICS:
        return "bzip2"
    return None


# --- a context directory ------------------------------------------------------------


def pack_context(
    context_dir: str | os.PathLike[str],
    dockerfile: str | None = None,
    *,
    dockerfile_content: bytes | None = None,
    tmpdir: str | None = None,
) -> PackedContext:
    """The tar of ``context_dir`` for ``POST /build`` (see the module doc).

    ``dockerfile`` is ``-f`` as the user gave it (relative to the current directory);
    ``dockerfile_content`` is a Dockerfile read from elsewhere (``-f -``: stdin), which
    replaces it. The caller closes the returned file. Errors: :class:`NotFound` for a
    missing context or Dockerfile, :class:`InvalidArgument` for one that cannot be read.
    """
    root = os.path.realpath(context_dir)
    if not os.path.exists(root):
        raise NotFound(f"unable to prepare context: path {os.fspath(context_dir)!r} not found")
    if not os.path.isdir(root):
        raise InvalidArgument(
            f"unable to prepare context: context must be a directory: {os.fspath(context_dir)}"
        )
    inside: str | None = None
    given: str | None = None  # the Dockerfile's path as named, for its own ignore file
    if dockerfile_content is None:
        given, inside, dockerfile_content = _locate_dockerfile(root, dockerfile)
    from moorage.build.dockerignore import load_matcher

    matcher = load_matcher(Path(root), Path(given) if given else None)
    extra: tuple[str, bytes] | None = None
    if dockerfile_content is not None:
        digest = hashlib.sha256(dockerfile_content).hexdigest()
        extra = (f".dockerfile.{digest[:20]}", dockerfile_content)
    always = {".dockerignore"} | ({inside} if inside else set())
    out = cast(BinaryIO, tempfile.TemporaryFile(dir=tmpdir))  # noqa: SIM115 - returned
    try:
        writer = _TarWriter(out)
        _walk(root, matcher, always, writer, extra[0] if extra else None)
        if extra is not None:
            name, content = extra
            writer.add_bytes(name, content, mode=0o600)
            if not writer.wrote_dockerignore:
                writer.add_bytes(".dockerignore", f".dockerignore\n{name}\n".encode(), mode=0o600)
        writer.finish()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return PackedContext(out, extra[0] if extra else cast(str, inside))


def context_in_place(
    context_dir: str | os.PathLike[str], dockerfile: str | None = None
) -> tuple[str, str] | None:
    """(the context's real path, the Dockerfile's path in it) when the daemon can read
    this context in place (see the module doc); None when it has to be packed: a
    Dockerfile outside the context, or a context that is no directory (packing it
    says what is wrong)."""
    root = os.path.realpath(context_dir)
    if not os.path.isdir(root):
        return None
    _, inside, _ = _locate_dockerfile(root, dockerfile)
    return (root, inside) if inside is not None else None


def _locate_dockerfile(root: str, dockerfile: str | None) -> tuple[str, str | None, bytes | None]:
    """(the path as named, its path in the context or None, its content when outside)."""
    if dockerfile:
        named = os.path.abspath(dockerfile)
    else:
        named = os.path.join(root, DEFAULT_DOCKERFILE)
        lower = os.path.join(root, DEFAULT_DOCKERFILE.lower())
        if not os.path.lexists(named) and os.path.lexists(lower):
            named = lower
    real = os.path.realpath(named)
    shown = dockerfile or DEFAULT_DOCKERFILE
    if not os.path.isfile(real):
        raise NotFound(f"cannot locate specified Dockerfile: {shown}")
    rel = os.path.relpath(real, root)
    if rel != ".." and not rel.startswith(".." + os.sep):
        return named, rel.replace(os.sep, "/"), None
    try:
        with open(real, "rb") as f:
            return named, None, f.read()
    except OSError as exc:
        raise InvalidArgument(f"unable to open Dockerfile {shown}: {exc.strerror}") from exc


def _walk(root: str, matcher: Any, always: set[str], writer: _TarWriter, extra: str | None) -> None:
    """Depth first, siblings sorted by name; entries excluded by ``matcher`` left out
    (but for ``always``), directories pruned when nothing below them can be included."""
    pending: list[str] = _children(root, "")
    while pending:
        rel = pending.pop()
        full = os.path.join(root, rel)
        try:
            st = os.lstat(full)
        except OSError as exc:
            raise _unreadable(rel, exc) from exc
        excluded = bool(matcher.patterns) and matcher.matches(rel) and rel not in always
        if stat.S_ISDIR(st.st_mode):
            descend = (
                not excluded
                or matcher.may_contain_included(rel)
                or any(a.startswith(rel + "/") for a in always)
            )
            if not excluded:
                writer.add(rel, full, st)
            if descend:
                try:
                    pending += _children(full, rel)
                except OSError as exc:
                    if not excluded:  # a guess that something inside is included
                        raise _unreadable(rel, exc) from exc
        elif not excluded:
            if rel == ".dockerignore" and extra is not None:
                content = _read(full, rel)
                writer.add_bytes(rel, content + f"\n{extra}\n".encode(), mode=0o600)
                writer.wrote_dockerignore = True
            else:
                writer.add(rel, full, st)


def _children(directory: str, rel: str) -> list[str]:
    """``directory``'s entries as context paths, in reverse order: popped, they come sorted."""
    names = sorted(os.listdir(directory), key=os.fsencode, reverse=True)
    return [f"{rel}/{name}" if rel else name for name in names]


def _read(full: str, rel: str) -> bytes:
    try:
        with open(full, "rb") as f:
            return f.read()
    except OSError as exc:
        raise _unreadable(rel, exc) from exc


def _unreadable(rel: str, exc: OSError) -> InvalidArgument:
    return InvalidArgument(f"error checking context: cannot read {rel}: {exc.strerror}")


class _TarWriter:
    """A tar written member by member: PAX where a field needs it, no record padding
    (Go's archive/tar, which the docker CLI uses, ends with two zero blocks)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.wrote_dockerignore = False
        self._links: dict[tuple[int, int], str] = {}

    def _info(self, name: str, mode: int, mtime: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = mode
        info.mtime = mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def _header(self, info: tarfile.TarInfo) -> None:
        self.out.write(
            info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
        )

    def add(self, rel: str, full: str, st: os.stat_result) -> None:
        info = self._info(rel, stat.S_IMODE(st.st_mode), int(st.st_mtime))
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            try:
                info.linkname = os.readlink(full)
            except OSError as exc:
                raise _unreadable(rel, exc) from exc
        elif stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                first = self._links.setdefault((st.st_dev, st.st_ino), rel)
                if first != rel:
                    info.type = tarfile.LNKTYPE
                    info.linkname = first
                    self._header(info)
                    return
            self._add_file(info, full, rel, st.st_size)
            return
        else:
            return  # sockets, fifos and devices have no place in a context
        self._header(info)

    def _add_file(self, info: tarfile.TarInfo, full: str, rel: str, size: int) -> None:
        info.size = size
        try:
            with open(full, "rb") as f:
                self._header(info)
                left = size
                while left:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        raise InvalidArgument(f"error checking context: {rel} changed while read")
                    self.out.write(chunk)
                    left -= len(chunk)
        except OSError as exc:
            raise _unreadable(rel, exc) from exc
        self.out.write(b"\0" * (-size % _BLOCK))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = self._info(name, mode, 0)
        info.size = len(data)
        self._header(info)
        self.out.write(data + b"\0" * (-len(data) % _BLOCK))

    def finish(self) -> None:
        self.out.write(b"\0" * (2 * _BLOCK))
        self.out.flush()


# --- stdin --------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """The bytes already read from ``rest`` (``head``), then the rest of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def read_head(stream: BinaryIO, size: int) -> bytes:
    """The first ``size`` bytes of ``stream`` (fewer only at its end): a pipe or a
    socket may give less than asked before that."""
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


def prefixed(head: bytes, rest: BinaryIO) -> BinaryIO:
    """A reader of ``head`` (bytes already read from ``rest`` to look at them) followed
    by the rest of ``rest``."""
    return cast(BinaryIO, io.BufferedReader(_Prefixed(head, rest), _CHUNK))


def _is_archive(head: bytes) -> bool:
    if compression_of(head) is not None:
        return True
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def context_from_reader(stream: BinaryIO, dockerfile: str | None = None) -> PackedContext:
    """``moor build -``: ``stream`` as a context archive, or as a lone Dockerfile.

    For an archive, ``dockerfile`` is the Dockerfile's path inside it (default
    ``Dockerfile``); a lone Dockerfile is always sent as ``Dockerfile``.
    """
    head = read_head(stream, _HEADER_PEEK)
    if _is_archive(head):
        return PackedContext(prefixed(head, stream), dockerfile or DEFAULT_DOCKERFILE)
    if dockerfile == "-":
        raise InvalidArgument("build context is not an archive")
    content = head + stream.read()
    out = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115 - returned
    writer = _TarWriter(out)
    writer.add_bytes(DEFAULT_DOCKERFILE, content)
    writer.finish()
    out.seek(0)
    return PackedContext(out, DEFAULT_DOCKERFILE)


# --- secrets ------------------------------------------------------------------------


def encode_secrets(secrets: Mapping[str, bytes]) -> str:
    """The :data:`SECRETS_HEADER` value for ``secrets`` (id -> content)."""
    payload = {key: base64.b64encode(value).decode() for key, value in sorted(secrets.items())}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_secrets(value: str) -> dict[str, bytes]:
    """The secrets a :data:`SECRETS_HEADER` value carries; :class:`InvalidArgument`
    when it is not what :func:`encode_secrets` makes."""
    bad = InvalidArgument(
        f"invalid {SECRETS_HEADER} header: want base64 of a JSON object of base64 strings"
    )
    try:
        data = json.loads(base64.b64decode(value.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(data, dict):
        raise bad
    secrets: dict[str, bytes] = {}
    for key, content in data.items():
        if not key or not isinstance(content, str):
            raise bad
        try:
            secrets[key] = base64.b64decode(content, validate=True)
        except binascii.Error:
            raise bad from None
    return secrets


def stored_logins_header() -> dict[str, str]:
    """Every stored login, as the ``X-Registry-Config`` header of a build (the docker
    CLI sends them all, for the bases the build may pull); ``{}`` when there are none."""
    # Most builds have none: look for the files before importing what reads them (the
    # same places as registry.client.credentials: $MOOR_CONFIG, ~/.moor, docker's).
    home = os.path.expanduser("~")
    places = [
        os.environ.get("MOOR_CONFIG") or os.path.join(home, ".moor"),
        os.environ.get("DOCKER_CONFIG") or os.path.join(home, ".docker"),
    ]
    if not any(os.path.exists(os.path.join(place, "config.json")) for place in places):
        return {}
    from moorage.api.registry_auth import REGISTRY_CONFIG_HEADER, encode_registry_config
    from moorage.errors import MoorageError

    try:
        value = encode_registry_config()
    except MoorageError:
        return {}  # an unreadable credentials file: bases are pulled anonymously
    return {REGISTRY_CONFIG_HEADER: value} if value else {}
