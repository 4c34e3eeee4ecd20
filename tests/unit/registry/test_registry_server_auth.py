"""Authorization headers, challenges, scopes, htpasswd files and bearer tokens."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from moorage.errors import InvalidArgument, PermissionDenied
from moorage.registry.server.app import scopes_for
from moorage.registry.server.auth import (
    Scope,
    challenge,
    parse_authorization,
    parse_basic,
    parse_scope,
)
from moorage.registry.server.errors import NameInvalid, Unauthorized
from moorage.registry.server.htpasswd import HtpasswdAuthorizer, load_htpasswd
from moorage.registry.server.paths import parse_path
from moorage.registry.server.tokens import TokenAuthorizer, grants_of, load_public_keys

SERVICE = "registry.test"
ISSUER = "issuer.test"
REALM = "https://auth.test/token"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (None, None),
        ("", None),
        ("Basic", None),
        ("Basic abc", ("basic", "abc")),
        ("BEARER  tok.en ", ("bearer", "tok.en")),
    ],
)
def test_parse_authorization(header: str | None, parsed: tuple[str, str] | None) -> None:
    assert parse_authorization(header) == parsed


def test_parse_basic_keeps_colons_in_the_password() -> None:
    credentials = base64.b64encode(b"alice:pa:ss").decode()
    assert parse_basic(credentials) == ("alice", "pa:ss")


@pytest.mark.parametrize(
    "credentials",
    [
        "not base64!",
        base64.b64encode(b"nocolon").decode(),
        base64.b64encode(b":nouser").decode(),
        base64.b64encode(b"\xff:x").decode(),
    ],
)
def test_parse_basic_refuses_malformed_credentials(credentials: str) -> None:
    assert parse_basic(credentials) is None


def test_challenge_quotes_its_values() -> None:
    value = challenge("Bearer", {"realm": 'https://a/"t"', "scope": "repository:a:pull"})
    assert value == 'Bearer realm="https://a/\\"t\\"",scope="repository:a:pull"'


def test_scopes_print_and_parse_back() -> None:
    scope = Scope("repository", "host:5000/app", ("pull", "push"))
    assert str(scope) == "repository:host:5000/app:pull,push"
    assert parse_scope(str(scope)) == scope
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))
    with pytest.raises(ValueError, match="invalid scope"):
        parse_scope("nonsense")


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/v2/", {}, []),
        ("GET", "/v2/_catalog", {}, ["registry:catalog:*"]),
        ("GET", "/v2/a/manifests/x", {}, ["repository:a:pull"]),
        ("HEAD", "/v2/a/blobs/sha256:00", {}, ["repository:a:pull"]),
        ("PUT", "/v2/a/manifests/x", {}, ["repository:a:pull,push"]),
        ("DELETE", "/v2/a/manifests/x", {}, ["repository:a:delete"]),
        ("DELETE", "/v2/a/blobs/sha256:00", {}, ["repository:a:delete"]),
        ("GET", "/v2/a/blobs/uploads/u", {}, ["repository:a:pull,push"]),
        ("DELETE", "/v2/a/blobs/uploads/u", {}, ["repository:a:pull,push"]),
        (
            "POST",
            "/v2/a/blobs/uploads/",
            {"mount": "d", "from": "b"},
            ["repository:a:pull,push", "repository:b:pull"],
        ),
        ("GET", "/v2/a/tags/list", {}, ["repository:a:pull"]),
    ],
)
def test_scopes_each_request_needs(
    method: str, path: str, query: dict[str, str], expected: list[str]
) -> None:
    assert [str(s) for s in scopes_for(parse_path(path), method, query)] == expected


def test_a_mount_from_an_invalid_name_is_refused() -> None:
    with pytest.raises(NameInvalid):
        scopes_for(parse_path("/v2/a/blobs/uploads/"), "POST", {"mount": "d", "from": "../x"})


# --------------------------------------------------------------------------- htpasswd


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    path.write_text(f"# users\nalice:{hashed}\n\n")
    return path


def authorize(authorizer: Any, header: str | None, scopes: list[Scope]) -> None:
    asyncio.run(authorizer.authorize(header, scopes))


PULL_A = [Scope("repository", "a", ("pull",))]


def test_htpasswd_lets_a_user_with_the_right_password_in(htpasswd: Path) -> None:
    authorizer = HtpasswdAuthorizer(htpasswd)
    authorize(authorizer, basic("alice", "s3cret"), PULL_A)
    authorize(authorizer, basic("alice", "s3cret"), PULL_A)  # remembered: no second bcrypt


@pytest.mark.parametrize(
    "header", [None, "Bearer x", basic("alice", "wrong"), basic("bob", "s3cret"), "Basic !!"]
)
def test_htpasswd_challenges_everyone_else(htpasswd: Path, header: str | None) -> None:
    authorizer = HtpasswdAuthorizer(htpasswd, realm="my realm")
    with pytest.raises(Unauthorized) as raised:
        authorize(authorizer, header, PULL_A)
    assert isinstance(raised.value, PermissionDenied)
    assert raised.value.headers["WWW-Authenticate"] == 'Basic realm="my realm"'


def test_htpasswd_files_must_hold_bcrypt(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("carol:$apr1$abc$def\n")
    with pytest.raises(InvalidArgument, match="no bcrypt hash"):
        load_htpasswd(path)
    path.write_text("garbage line\n")
    with pytest.raises(InvalidArgument, match="not a user:hash line"):
        load_htpasswd(path)
    with pytest.raises(InvalidArgument, match="cannot read htpasswd file"):
        load_htpasswd(tmp_path / "absent")


# --------------------------------------------------------------------------- tokens


class Signer:
    def __init__(self, key: Any, algorithm: str) -> None:
        self.key = key
        self.algorithm = algorithm

    def token(self, access: list[dict[str, Any]], **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 5,
            "access": access,
            **overrides,
        }
        return jwt.encode(claims, self.key, algorithm=self.algorithm)


def _certificate(key: Any) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Signer, Signer]:
    """A key file with an RSA certificate and an EC public key; signers for both."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path_factory.mktemp("tokens") / "keys.pem"
    path.write_bytes(_certificate(rsa_key) + ec_public)
    return path, Signer(rsa_key, "RS256"), Signer(ec_key, "ES256")


def token_authorizer(path: Path) -> TokenAuthorizer:
    return TokenAuthorizer(REALM, SERVICE, path, ISSUER)


def bearer(token: str) -> str:
    return f"Bearer {token}"


PUSH_A = [Scope("repository", "a", ("pull", "push"))]


def test_key_files_give_every_key(keys: tuple[Path, Signer, Signer], tmp_path: Path) -> None:
    assert len(load_public_keys(keys[0])) == 2
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(InvalidArgument, match="no public key or certificate"):
        load_public_keys(tmp_path / "empty.pem")


@pytest.mark.parametrize("which", ["rsa", "ec"])
def test_a_token_granting_the_scope_lets_the_request_in(
    keys: tuple[Path, Signer, Signer], which: str
) -> None:
    signer = keys[1] if which == "rsa" else keys[2]
    token = signer.token([{"type": "repository", "name": "a", "actions": ["pull", "push"]}])
    authorize(token_authorizer(keys[0]), bearer(token), PUSH_A)


def test_a_wildcard_action_grants_everything(keys: tuple[Path, Signer, Signer]) -> None:
    token = keys[1].token([{"type": "repository", "name": "a", "actions": ["*"]}])
    authorize(token_authorizer(keys[0]), bearer(token), PUSH_A)


def test_no_token_gets_a_bearer_challenge_with_the_scope(
    keys: tuple[Path, Signer, Signer],
) -> None:
    with pytest.raises(Unauthorized) as raised:
        authorize(token_authorizer(keys[0]), None, PUSH_A)
    assert raised.value.headers["WWW-Authenticate"] == (
        f'Bearer realm="{REALM}",service="{SERVICE}",scope="repository:a:pull,push"'
    )


def test_a_token_without_the_scope_is_insufficient(keys: tuple[Path, Signer, Signer]) -> None:
    token = keys[1].token([{"type": "repository", "name": "a", "actions": ["pull"]}])
    with pytest.raises(Unauthorized) as raised:
        authorize(token_authorizer(keys[0]), bearer(token), PUSH_A)
    header = raised.value.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in header
    assert 'scope="repository:a:pull,push"' in header


def test_a_token_for_another_repository_grants_nothing_here(
    keys: tuple[Path, Signer, Signer],
) -> None:
    token = keys[1].token([{"type": "repository", "name": "b", "actions": ["pull", "push"]}])
    with pytest.raises(Unauthorized, match="insufficient scope"):
        authorize(token_authorizer(keys[0]), bearer(token), PULL_A)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-service"},
        {"iss": "another-issuer"},
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
    ],
)
def test_tokens_not_meant_for_now_or_here_are_invalid(
    keys: tuple[Path, Signer, Signer], overrides: dict[str, Any]
) -> None:
    token = keys[1].token([{"type": "repository", "name": "a", "actions": ["pull"]}], **overrides)
    with pytest.raises(Unauthorized) as raised:
        authorize(token_authorizer(keys[0]), bearer(token), PULL_A)
    assert 'error="invalid_token"' in raised.value.headers["WWW-Authenticate"]


def test_a_token_signed_by_another_key_is_invalid(keys: tuple[Path, Signer, Signer]) -> None:
    stranger = Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    token = stranger.token([{"type": "repository", "name": "a", "actions": ["pull"]}])
    with pytest.raises(Unauthorized, match="invalid token"):
        authorize(token_authorizer(keys[0]), bearer(token), PULL_A)


def test_symmetric_and_unsigned_tokens_are_refused(keys: tuple[Path, Signer, Signer]) -> None:
    """HS256 (the classic confusion: the public key taken for a shared secret) and none."""
    claims = {
        "iss": ISSUER,
        "aud": SERVICE,
        "exp": int(time.time()) + 60,
        "access": [{"type": "repository", "name": "a", "actions": ["pull"]}],
    }
    forged = jwt.encode(claims, b"k" * 32, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (forged, unsigned):
        with pytest.raises(Unauthorized, match="invalid token"):
            authorize(token_authorizer(keys[0]), bearer(token), PULL_A)


def test_grants_ignore_malformed_access_entries() -> None:
    claims = {
        "access": [
            {"type": "repository", "name": "a", "actions": ["pull", 3]},
            "junk",
            {"type": "repository", "name": 5, "actions": []},
            {"type": "repository", "name": "a", "actions": ["push"]},
        ]
    }
    assert grants_of(claims) == {("repository", "a"): frozenset({"pull", "push"})}
    assert grants_of({"access": "everything"}) == {}
