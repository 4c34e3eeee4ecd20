"""What a client may call things: repository names, tags, digests and upload ids.

The grammar is the distribution spec's::

    name       := component ("/" component)*              at most 255 characters
    component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [a-zA-Z0-9_] [a-zA-Z0-9._-]{0,127}
    digest     := algorithm ":" hex                       sha256 or sha512, lower-case

Everything a client sends is checked here before it is used for anything, and none
of it ever becomes a file name: names, tags and upload ids are keys in SQLite, and
only a validated sha256 digest reaches the content store (which builds its path
from the 64 hex digits alone). So no name can lead out of the storage root.

A name is checked as it appears in the request path, before percent-decoding: the
grammar has no ``%``, so ``a%2Fb`` is refused rather than read as ``a/b``.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from moorage.oci.digest import Digest, is_valid_digest
from moorage.registry.server.errors import DigestInvalid, NameInvalid, TagInvalid

__all__ = [
    "MAX_NAME_LENGTH",
    "check_digest",
    "check_name",
    "check_tag",
    "check_upload_id",
    "is_digest",
    "new_upload_id",
    "stored_digest",
]

MAX_NAME_LENGTH: Final = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# Names seen valid, so that the hot path (manifest GETs) pays a dict lookup, not a regex.
# Bounded: clients choose names.
_valid_names: dict[str, None] = {}
_VALID_NAMES_MAX = 4096


def _quote(text: str, limit: int = 300) -> str:
    shown = text if len(text) <= limit else text[:limit] + "..."
    return '"' + shown.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def check_name(name: str) -> str:
    """``name`` if it is a valid repository name; NameInvalid otherwise."""
    if name in _valid_names:
        return name
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(
            f"invalid repository name: {_quote(name)} is longer than {MAX_NAME_LENGTH} characters",
            detail={"name": name[:MAX_NAME_LENGTH]},
        )
    if not _NAME.fullmatch(name):
        raise NameInvalid(f"invalid repository name: {_quote(name)}", detail={"name": name})
    if len(_valid_names) >= _VALID_NAMES_MAX:
        _valid_names.clear()
    _valid_names[name] = None
    return name


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise TagInvalid(f"invalid tag: {_quote(tag)}", detail={"tag": tag})
    return tag


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is meant as a digest (tags have no colon)."""
    return ":" in reference


def check_digest(text: str) -> Digest:
    """A well-formed digest of an algorithm the spec registers; DigestInvalid otherwise."""
    if not is_valid_digest(text):
        raise DigestInvalid(f"invalid digest: {_quote(text)}", detail={"digest": text})
    return Digest(text)


def stored_digest(text: str) -> Digest:
    """A digest content can be stored under: the store names blobs by sha256 alone."""
    digest = check_digest(text)
    if digest.algorithm != "sha256":
        raise DigestInvalid(
            f"unsupported digest algorithm: {digest.algorithm} (this registry stores sha256)",
            detail={"digest": text},
        )
    return digest


def new_upload_id() -> str:
    return str(uuid.uuid4())


def check_upload_id(text: str) -> str | None:
    """``text`` if it has the shape of an id this server hands out, else None."""
    return text if _UPLOAD_ID.fullmatch(text) else None
