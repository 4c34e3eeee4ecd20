"""Basic authentication against an htpasswd file of bcrypt entries (``htpasswd -B``).

As with distribution, any user in the file may pull and push everything; only bcrypt
entries are accepted (the other htpasswd formats are unsalted or weak). Checking a
bcrypt hash costs tens of milliseconds by design, and clients send the credentials
with every request, so a successful check is remembered for a while: keyed by a keyed
hash of user and password (never the password itself), it costs a dict lookup next time.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

import bcrypt

from moorage.errors import InvalidArgument
from moorage.registry.server.auth import (
    Scope,
    challenge,
    parse_authorization,
    parse_basic,
    unauthorized,
)

__all__ = ["HtpasswdAuthorizer", "load_htpasswd"]

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_REMEMBER_SECONDS = 300.0
_REMEMBER_MAX = 4096


def load_htpasswd(path: str | Path) -> dict[str, bytes]:
    """``user -> bcrypt hash`` from an htpasswd file; InvalidArgument for other formats."""
    users: dict[str, bytes] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read htpasswd file {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user:
            raise InvalidArgument(f"{path}:{number}: not a user:hash line")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            raise InvalidArgument(
                f"{path}:{number}: user {user!r} has no bcrypt hash (make one with htpasswd -B)"
            )
        users[user] = hashed.encode("ascii", "replace")
    return users


class HtpasswdAuthorizer:
    def __init__(self, path: str | Path, realm: str = "moorage registry") -> None:
        self.users = load_htpasswd(path)
        self.realm = realm
        self._key = secrets.token_bytes(32)
        self._remembered: dict[bytes, float] = {}  # keyed hash -> when it expires

    def _challenge(self, scopes: Sequence[Scope], message: str) -> Exception:
        return unauthorized(message, challenge("Basic", {"realm": self.realm}), scopes)

    def _fingerprint(self, user: str, password: str) -> bytes:
        return hashlib.blake2b(
            user.encode() + b"\0" + password.encode(), key=self._key, digest_size=32
        ).digest()

    async def authorize(self, authorization: str | None, scopes: Sequence[Scope]) -> None:
        parsed = parse_authorization(authorization)
        if parsed is None or parsed[0] != "basic":
            raise self._challenge(scopes, "authentication required")
        credentials = parse_basic(parsed[1])
        if credentials is None:
            raise self._challenge(scopes, "authentication required: malformed basic credentials")
        user, password = credentials
        fingerprint = self._fingerprint(user, password)
        now = time.monotonic()
        if self._remembered.get(fingerprint, 0.0) > now:
            return
        hashed = self.users.get(user)
        if hashed is None or not await asyncio.to_thread(_check, password, hashed):
            raise self._challenge(scopes, f"authentication failed for user {user[:64]!r}")
        if len(self._remembered) >= _REMEMBER_MAX:
            self._remembered = {k: t for k, t in self._remembered.items() if t > now}
            if len(self._remembered) >= _REMEMBER_MAX:
                self._remembered.clear()
        self._remembered[fingerprint] = now + _REMEMBER_SECONDS


def _check(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # a malformed hash in the file, or a password bcrypt refuses
        return False
