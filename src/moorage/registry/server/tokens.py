"""Docker token authentication: a bearer JWT from a token server, checked per repository.

A client without a token is sent to the token server (``realm``) with the scopes it
needs; it comes back with a JWT signed by that server, which this module verifies
against the public keys or certificates in ``--token-key`` (RS256/384/512, PS256/384/512,
ES256/384/512; never a symmetric algorithm, whose "secret" would be the public key).
The token must be meant for this registry (``aud`` is the service name), be current
(``exp``, ``nbf``), come from ``--token-issuer`` when one is set, and grant what the
request needs in its ``access`` claim::

    "access": [{"type": "repository", "name": "app", "actions": ["pull", "push"]}]

A verified token is remembered until it expires, so a pull of fifty layers verifies one
signature. A token lacking a scope is answered 401 with ``error="insufficient_scope"``
and the scope it needs, so the client can ask for a better one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from moorage.errors import InvalidArgument
from moorage.registry.server.auth import Scope, challenge, parse_authorization, unauthorized

__all__ = ["ALGORITHMS", "TokenAuthorizer", "grants_of", "load_public_keys"]

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_LEEWAY_SECONDS = 60  # clock skew between the token server and this one
_REMEMBER_MAX = 4096
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
Grants = dict[tuple[str, str], frozenset[str]]


def load_public_keys(path: str | Path) -> list[PublicKey]:
    """Every public key and certificate's key in a PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read token key file {path}: {exc}") from exc
    keys: list[PublicKey] = []
    for match in _PEM.finditer(data):
        block, kind = match.group(0), match.group(1)
        try:
            if kind == b"CERTIFICATE":
                key: Any = x509.load_pem_x509_certificate(block).public_key()
            elif kind == b"PUBLIC KEY":
                key = serialization.load_pem_public_key(block)
            else:
                continue  # a private key in the same file is none of our business
        except ValueError as exc:
            raise InvalidArgument(f"token key file {path}: bad {kind.decode()}: {exc}") from exc
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InvalidArgument(f"token key file {path}: only RSA and EC keys are supported")
        keys.append(key)
    if not keys:
        raise InvalidArgument(f"token key file {path}: no public key or certificate in it")
    return keys


def grants_of(claims: Mapping[str, Any]) -> Grants:
    """``(type, name) -> actions`` from a token's ``access`` claim (malformed entries: none)."""
    grants: dict[tuple[str, str], set[str]] = {}
    access = claims.get("access")
    if not isinstance(access, list):
        return {}
    for entry in access:
        if not isinstance(entry, dict):
            continue
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            continue
        grants.setdefault((kind, name), set()).update(a for a in actions if isinstance(a, str))
    return {k: frozenset(v) for k, v in grants.items()}


def _allows(grants: Grants, scope: Scope) -> bool:
    granted = grants.get((scope.type, scope.name), frozenset())
    return "*" in granted or all(a in granted for a in scope.actions)


class TokenAuthorizer:
    def __init__(
        self,
        realm: str,
        service: str,
        key_file: str | Path,
        issuer: str | None = None,
    ) -> None:
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.keys = load_public_keys(key_file)
        self._remembered: dict[str, tuple[Grants, float]] = {}  # token -> grants, expiry

    def _challenge(self, scopes: Sequence[Scope], message: str, error: str | None) -> Exception:
        params = {"realm": self.realm, "service": self.service}
        if scopes:
            params["scope"] = " ".join(str(s) for s in scopes)
        if error is not None:
            params["error"] = error
        return unauthorized(message, challenge("Bearer", params), scopes)

    async def authorize(self, authorization: str | None, scopes: Sequence[Scope]) -> None:
        parsed = parse_authorization(authorization)
        if parsed is None or parsed[0] != "bearer":
            raise self._challenge(scopes, "authentication required", None)
        grants = self._verify(parsed[1], scopes)
        missing = [s for s in scopes if not _allows(grants, s)]
        if missing:
            raise self._challenge(
                scopes,
                "insufficient scope: the token does not grant " + " ".join(map(str, missing)),
                "insufficient_scope",
            )

    def _verify(self, token: str, scopes: Sequence[Scope]) -> Grants:
        now = time.time()
        remembered = self._remembered.get(token)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        claims: dict[str, Any] | None = None
        problem = "no key verifies its signature"
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            algorithm, problem = None, str(exc).lower()
        if algorithm is not None and algorithm not in ALGORITHMS:
            problem = f"algorithm {str(algorithm)[:20]!r} is not accepted"
        elif algorithm is not None:
            # Only keys of the algorithm's kind: PyJWT takes any other for a PEM string.
            kind = ec.EllipticCurvePublicKey if algorithm.startswith("ES") else rsa.RSAPublicKey
            for key in (k for k in self.keys if isinstance(k, kind)):
                try:
                    claims = jwt.decode(
                        token,
                        key,
                        algorithms=[algorithm],
                        audience=self.service,
                        issuer=self.issuer,
                        leeway=_LEEWAY_SECONDS,
                        options={"require": ["exp"], "verify_iss": self.issuer is not None},
                    )
                    break
                except jwt.InvalidSignatureError:
                    continue
                except jwt.PyJWTError as exc:
                    problem = str(exc).lower()
                    break
        if claims is None:
            raise self._challenge(scopes, f"invalid token: {problem}", "invalid_token")
        grants = grants_of(claims)
        if len(self._remembered) >= _REMEMBER_MAX:
            self._remembered = {t: v for t, v in self._remembered.items() if v[1] > now}
            if len(self._remembered) >= _REMEMBER_MAX:
                self._remembered.clear()
        self._remembered[token] = (grants, float(claims["exp"]))
        return grants
