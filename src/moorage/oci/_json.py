"""Reading image JSON with a path for every error, and writing it byte for byte the same.

Private to :mod:`moorage.oci`: the image modules (descriptor, platform, image) share it.
Reading: :class:`Obj` wraps a decoded JSON object together with where it sits in the
document, so that a bad value fails as ``manifest.json: layers[2].size: must be ...``.
Writing: :func:`dumps` is the one canonical encoder, because an image's identity is the
digest of these bytes.
"""

from __future__ import annotations

import json
from typing import Any

from moorage.errors import InvalidArgument
from moorage.oci._jsonpath import At, quote, type_name
from moorage.oci.digest import Digest, is_valid_digest


def as_str(value: object, at: At) -> str:
    if not isinstance(value, str):
        raise at.fail(f"must be a string, not {type_name(value)}")
    return value


def as_int(value: object, at: At, minimum: int = 0) -> int:
    # bool is an int in Python; JSON true is never a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.fail(f"must be an integer, not {type_name(value)}")
    if value < minimum:
        raise at.fail(f"must be at least {minimum}, not {value}")
    return value


def as_digest(value: object, at: At) -> Digest:
    text = as_str(value, at)
    if not is_valid_digest(text):
        raise at.fail(f"invalid digest {quote(text)}")
    return Digest(text)


class Obj:
    """A decoded JSON object being read. A key whose value is null counts as absent,
    as it does for Go's decoder, which wrote most of the documents we read."""

    __slots__ = ("at", "data")

    def __init__(self, value: object, at: At) -> None:
        if not isinstance(value, dict):
            raise at.fail(f"must be an object, not {type_name(value)}")
        self.at = at
        self.data: dict[str, Any] = value

    def member(self, key: str) -> At:
        return self.at.member(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def required(self, key: str) -> Any:
        value = self.data.get(key)
        if value is None:
            raise self.member(key).fail("missing")
        return value

    def string(self, key: str) -> str:
        value = as_str(self.required(key), self.member(key))
        if not value:
            raise self.member(key).fail("must not be empty")
        return value

    def opt_string(self, key: str) -> str | None:
        """An optional string; the empty string counts as absent, as Go's omitempty has it."""
        value = self.data.get(key)
        if value is None:
            return None
        return as_str(value, self.member(key)) or None

    def integer(self, key: str, minimum: int = 0) -> int:
        return as_int(self.required(key), self.member(key), minimum)

    def opt_integer(self, key: str, default: int = 0, minimum: int = 0) -> int:
        value = self.data.get(key)
        return default if value is None else as_int(value, self.member(key), minimum)

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.member(key).fail(f"must be a boolean, not {type_name(value)}")
        return value

    def digest(self, key: str) -> Digest:
        return as_digest(self.required(key), self.member(key))

    def items(self, key: str) -> list[tuple[Any, At]]:
        """The elements of an optional array, each with its place."""
        value = self.data.get(key)
        if value is None:
            return []
        at = self.member(key)
        if not isinstance(value, list):
            raise at.fail(f"must be an array, not {type_name(value)}")
        return [(item, at.item(i)) for i, item in enumerate(value)]

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(as_str(item, at) for item, at in self.items(key))

    def child(self, key: str) -> Obj | None:
        value = self.data.get(key)
        return None if value is None else Obj(value, self.member(key))

    def children(self, key: str) -> list[Obj]:
        return [Obj(item, at) for item, at in self.items(key)]

    def string_map(self, key: str) -> dict[str, str]:
        child = self.child(key)
        if child is None:
            return {}
        return {k: as_str(v, child.member(k)) for k, v in child.data.items()}

    def key_set(self, key: str) -> tuple[str, ...]:
        """The keys of an object used as a set (``{"80/tcp": {}}``), sorted.

        Docker decodes these into Go maps, so their order carries no meaning; sorting
        gives one record per set.
        """
        child = self.child(key)
        if child is None:
            return ()
        for k, v in child.data.items():
            # The values are empty objects by definition; Docker tolerates null.
            if v is not None and not isinstance(v, dict):
                raise child.member(k).fail(f"must be an object, not {type_name(v)}")
        return tuple(sorted(child.data))


def decode(raw: bytes, source: str) -> object:
    """``json.loads`` with errors that name ``source`` and the line and column."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{source}: invalid json: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        reason = exc.msg[:1].lower() + exc.msg[1:]
        raise InvalidArgument(f"{source}:{exc.lineno}:{exc.colno}: invalid json: {reason}") from exc


def decode_object(raw: bytes, source: str) -> Obj:
    return Obj(decode(raw, source), At(source))


# Go's encoding/json escapes these inside strings; doing the same makes our bytes equal to
# what Docker and BuildKit write for the same document ("&&" in a RUN line is common).
_GO_ESCAPES = str.maketrans(
    {"&": "\\u0026", "<": "\\u003c", ">": "\\u003e", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def dumps(document: Any) -> bytes:
    """Compact JSON in the dicts' own key order, UTF-8, no trailing newline.

    The callers build the dicts in the order the specs list the fields, so equal records
    give equal bytes and so equal digests.
    """
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # A lone surrogate (legal in a JSON escape, not in UTF-8) comes out as its own
    # \\udxxx escape, which is what the JSON reader accepted in the first place.
    return text.translate(_GO_ESCAPES).encode("utf-8", "backslashreplace")


def put(out: dict[str, Any], key: str, value: object) -> None:
    """Set ``key`` unless ``value`` is empty (None, "", False, 0-length), as omitempty does."""
    if value is None or value is False or value == "":
        return
    if isinstance(value, tuple | list | dict) and not value:
        return
    out[key] = list(value) if isinstance(value, tuple) else value


def sorted_map(mapping: Any) -> dict[str, Any]:
    """A map with its keys sorted, as Go writes every map."""
    return {k: mapping[k] for k in sorted(mapping)}
