"""Content digests (``sha256:<64 hex>``): the one name every blob, layer and image has.

This module owns the digest string, its validation and hashing. A :class:`Digest` is a
``str``, so it compares equal to its text, goes into JSON and SQLite as is, and can be
used as a dict key next to plain strings; constructing one validates it, so a value of
type ``Digest`` is always well formed::

    >>> d = parse_digest("sha256:" + "ab" * 32)
    >>> d.algorithm, len(d.hex)
    ('sha256', 64)

Only sha256 and sha512, the algorithms the OCI image spec registers, are accepted, and
only in lower case: a digest is an identity, and two spellings of one identity would let
the same blob exist twice in the store.
"""

from __future__ import annotations

import json
from typing import Final

from moorage.errors import InvalidArgument

__all__ = ["ALGORITHMS", "Digest", "Hasher", "is_valid_digest", "parse_digest", "sha256_of"]

# algorithm -> length of its lower-case hex encoding
ALGORITHMS: Final = {"sha256": 64, "sha512": 128}
_HEX_DIGITS = frozenset("0123456789abcdef")


def is_valid_digest(text: str) -> bool:
    """Whether ``text`` is a supported, lower-case digest of the right length."""
    algorithm, colon, encoded = text.partition(":")
    return (
        bool(colon)
        and ALGORITHMS.get(algorithm) == len(encoded)
        and _HEX_DIGITS.issuperset(encoded)
    )


class Digest(str):
    """A validated digest string, ``<algorithm>:<hex>``."""

    __slots__ = ()

    def __new__(cls, text: str) -> Digest:
        if not isinstance(text, str) or not is_valid_digest(text):
            raise InvalidArgument(f"invalid digest: {_quote(text)}")
        return super().__new__(cls, text)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        return self.partition(":")[2]


def parse_digest(text: str) -> Digest:
    """Validate ``text`` as a digest; :class:`InvalidArgument` ``invalid digest: "..."``."""
    if isinstance(text, Digest):
        return text
    return Digest(text)


def sha256_of(data: bytes) -> Digest:
    """The sha256 digest of ``data``."""
    import hashlib  # here: parsing references (every CLI call) needs no hashing

    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


class Hasher:
    """Digest of a stream fed in chunks; also counts its bytes, as a descriptor needs both.

    ::

        hasher = Hasher()
        for chunk in chunks:
            hasher.update(chunk)
        hasher.digest(), hasher.size
    """

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"unsupported digest algorithm: {_quote(algorithm)}")
        self.algorithm = algorithm
        import hashlib

        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data) if not isinstance(data, memoryview) else data.nbytes

    def digest(self) -> Digest:
        """The digest of everything fed so far (more may be fed afterwards)."""
        return Digest(f"{self.algorithm}:{self._hash.hexdigest()}")


def _quote(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)
