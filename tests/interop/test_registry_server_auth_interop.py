"""Authentication and authorization, the same checks against ``moor registry serve`` and
the distribution registry: htpasswd basic auth, and Docker token auth with tokens this
test mints (RS256, signed by a throwaway key) or a token endpoint it runs."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.registry.server.auth import Scope, parse_scope
from registry_servers import (
    Auth,
    Registry,
    TokenServer,
    TokenSigner,
    basic,
    distribution_available,
    sha256,
    skopeo,
    start_distribution,
    start_moorage,
    tar_of,
    write_htpasswd,
    write_oci_layout,
)

SERVERS = ["moorage", "distribution"]
Start = Callable[..., Registry]


@pytest.fixture(params=SERVERS)
def start(request: pytest.FixtureRequest) -> Start:
    if request.param == "distribution":
        if not distribution_available():
            pytest.skip("docker-registry (Debian package) is not installed")
        return start_distribution
    return start_moorage


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Registry]]:
    """Servers a test starts, stopped at teardown whatever happened."""
    servers: list[Registry] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def push_blob(registry: Registry, name: str, data: bytes, headers: dict[str, str]) -> int:
    started = registry.call("POST", f"/v2/{name}/blobs/uploads/", b"", headers)
    if started.status != 202:
        return started.status
    location = started.header("Location") or ""
    if location.startswith("http"):
        location = "/" + location.split("://", 1)[1].split("/", 1)[1]
    separator = "&" if "?" in location else "?"
    return registry.call("PUT", f"{location}{separator}digest={sha256(data)}", data, headers).status


# --------------------------------------------------------------------------- basic


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    return write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret", "bob": "hunter2"})


def test_basic_without_credentials_is_challenged(
    start: Start, running: list[Registry], htpasswd: Path, tmp_path: Path
) -> None:
    registry = start(tmp_path / "server", auth=Auth(htpasswd=htpasswd))
    running.append(registry)
    reply = registry.call("GET", "/v2/")
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == 'Basic realm="moorage registry"'
    assert reply.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert reply.error_codes() == ["UNAUTHORIZED"]


@pytest.mark.parametrize("credentials", [("alice", "wrong"), ("mallory", "s3cret"), ("alice", "")])
def test_basic_with_bad_credentials_is_challenged(
    start: Start,
    running: list[Registry],
    htpasswd: Path,
    tmp_path: Path,
    credentials: tuple[str, str],
) -> None:
    registry = start(tmp_path / "server", auth=Auth(htpasswd=htpasswd))
    running.append(registry)
    reply = registry.call("GET", "/v2/", headers=basic(*credentials))
    assert reply.status == 401
    assert (
        reply.header(
            "WWW-Authenticate",
        )
        == 'Basic realm="moorage registry"'
    )


def test_basic_with_good_credentials_may_push_and_pull(
    start: Start, running: list[Registry], htpasswd: Path, tmp_path: Path
) -> None:
    registry = start(tmp_path / "server", auth=Auth(htpasswd=htpasswd))
    running.append(registry)
    alice, bob = basic("alice", "s3cret"), basic("bob", "hunter2")
    assert registry.call("GET", "/v2/", headers=alice).status == 200
    assert push_blob(registry, "team/app", b"layer", alice) == 201
    reply = registry.call("GET", f"/v2/team/app/blobs/{sha256(b'layer')}", headers=bob)
    assert reply.status == 200
    assert reply.body == b"layer"
    anonymous = registry.call("GET", f"/v2/team/app/blobs/{sha256(b'layer')}")
    assert anonymous.status == 401


# --------------------------------------------------------------------------- tokens


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> TokenSigner:
    return TokenSigner(tmp_path_factory.mktemp("token-signer"))


def _token_server(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> Registry:
    registry = start(tmp_path / "server", auth=signer.auth("https://auth.invalid/token"))
    running.append(registry)
    return registry


def _challenge_params(header: str | None) -> dict[str, str]:
    assert header is not None
    assert header.startswith("Bearer ")
    params: dict[str, str] = {}
    for part in header[len("Bearer ") :].split('",'):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip().strip('"')
    return params


# Distribution lists a scope's actions in no fixed order.
_PULL_PUSH_APP = Scope("repository", "app", ("pull", "push"))


def _scope(params: dict[str, str]) -> Scope:
    scope = parse_scope(params["scope"])
    return scope._replace(actions=tuple(sorted(scope.actions)))


def test_token_without_a_token_names_the_scope_to_ask_for(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    reply = registry.call("GET", "/v2/app/manifests/latest")
    assert reply.status == 401
    params = _challenge_params(reply.header("WWW-Authenticate"))
    assert params["realm"] == "https://auth.invalid/token"
    assert params["service"] == signer.service
    assert params["scope"] == "repository:app:pull"
    assert reply.error_codes() == ["UNAUTHORIZED"]


def test_token_push_asks_for_pull_and_push(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    reply = registry.call("POST", "/v2/app/blobs/uploads/", b"")
    assert reply.status == 401
    assert _scope(_challenge_params(reply.header("WWW-Authenticate"))) == _PULL_PUSH_APP


def test_token_granting_push_lets_a_push_through(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    headers = signer.bearer([("repository", "app", ["pull", "push"])])
    assert registry.call("GET", "/v2/", headers=headers).status == 200
    assert push_blob(registry, "app", b"by token", headers) == 201
    reply = registry.call("GET", f"/v2/app/blobs/{sha256(b'by token')}", headers=headers)
    assert reply.body == b"by token"


def test_token_with_pull_only_cannot_push(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    headers = signer.bearer([("repository", "app", ["pull"])])
    reply = registry.call("POST", "/v2/app/blobs/uploads/", b"", headers)
    assert reply.status == 401
    params = _challenge_params(reply.header("WWW-Authenticate"))
    assert params["error"] == "insufficient_scope"
    assert _scope(params) == _PULL_PUSH_APP


def test_token_for_one_repository_opens_no_other(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    writer = signer.bearer([("repository", "secret", ["pull", "push"])])
    assert push_blob(registry, "secret", b"classified", writer) == 201
    reader = signer.bearer([("repository", "public", ["pull"])])
    reply = registry.call("GET", f"/v2/secret/blobs/{sha256(b'classified')}", headers=reader)
    assert reply.status == 401


@pytest.mark.parametrize(
    ("what", "token_kw"),
    [("expired", {"expires_in": -600}), ("for another service", {"audience": "elsewhere"})],
)
def test_token_that_is_not_valid_here_is_refused(
    start: Start,
    running: list[Registry],
    signer: TokenSigner,
    tmp_path: Path,
    what: str,
    token_kw: dict[str, object],
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    headers = signer.bearer([("repository", "app", ["pull"])], **token_kw)
    assert registry.call("GET", "/v2/app/tags/list", headers=headers).status == 401, what


def test_token_signed_by_a_stranger_is_refused(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    stranger = TokenSigner(tmp_path / "stranger")
    headers = stranger.bearer([("repository", "app", ["pull"])])
    assert registry.call("GET", "/v2/app/tags/list", headers=headers).status == 401


def test_token_catalog_needs_the_registry_scope(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    registry = _token_server(start, running, signer, tmp_path)
    refused = registry.call("GET", "/v2/_catalog", headers=signer.bearer([]))
    assert refused.status == 401
    granted = signer.bearer([("registry", "catalog", ["*"])])
    assert registry.call("GET", "/v2/_catalog", headers=granted).status == 200


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_token_flow_end_to_end_with_skopeo(
    start: Start, running: list[Registry], signer: TokenSigner, tmp_path: Path
) -> None:
    """skopeo follows the challenge to the token endpoint, with credentials, and back."""
    tokens = TokenServer(signer, users={"alice": "s3cret"})
    try:
        registry = start(tmp_path / "server", auth=signer.auth(tokens.url))
        running.append(registry)
        layout = write_oci_layout(tmp_path / "layout", [tar_of({"hello": b"token"})], tag="1")
        target = f"docker://{registry.host}/team/app:1"
        flags = ["--dest-tls-verify=false", "--dest-creds", "alice:s3cret"]
        pushed = skopeo("copy", *flags, layout.ref, target)
        assert pushed.returncode == 0, pushed.stderr
        inspected = skopeo(
            "inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret", target
        )
        assert sha256(inspected.stdout.encode()) == layout.manifest_digest
        denied = skopeo("copy", *flags, layout.ref, f"docker://{registry.host}/denied/app:1")
        assert denied.returncode != 0
        assert any("repository:team/app:" in s for q in tokens.requests for s in q.get("scope", []))
    finally:
        tokens.close()
