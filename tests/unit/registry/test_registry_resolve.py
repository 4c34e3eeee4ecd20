"""References resolve as people expect: Docker Hub's name and endpoint, official images,
hosts with ports, digests; registry addresses in every form docker writes them; which
hosts are insecure."""

from __future__ import annotations

import pytest

from moorage.errors import InvalidArgument
from moorage.registry.client.credentials import server_key
from moorage.registry.client.resolve import HostPolicy, normalize_server, resolve, split_host

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "host", "endpoint", "repository", "obj"),
    [
        ("busybox", "docker.io", "registry-1.docker.io", "library/busybox", "latest"),
        ("busybox:1.36", "docker.io", "registry-1.docker.io", "library/busybox", "1.36"),
        ("user/app", "docker.io", "registry-1.docker.io", "user/app", "latest"),
        ("index.docker.io/user/app:2", "docker.io", "registry-1.docker.io", "user/app", "2"),
        (
            "docker.io/library/busybox@" + D,
            "docker.io",
            "registry-1.docker.io",
            "library/busybox",
            D,
        ),
        ("localhost:5000/team/app:1", "localhost:5000", "localhost:5000", "team/app", "1"),
        ("localhost/app", "localhost", "localhost", "app", "latest"),
        ("127.0.0.1:5000/a/b/c@" + D, "127.0.0.1:5000", "127.0.0.1:5000", "a/b/c", D),
        ("[::1]:5000/app:x", "[::1]:5000", "[::1]:5000", "app", "x"),
        ("ghcr.io/org/tool:v1", "ghcr.io", "ghcr.io", "org/tool", "v1"),
    ],
)
def test_resolve(text: str, host: str, endpoint: str, repository: str, obj: str) -> None:
    target = resolve(text)
    assert (target.host, target.endpoint, target.repository, target.object) == (
        host,
        endpoint,
        repository,
        obj,
    )


def test_a_digest_wins_over_a_tag() -> None:
    assert resolve(f"busybox:1@{D}").object == D


@pytest.mark.parametrize("text", ["Busybox", "a//b", "host:port/app", "x@sha256:12"])
def test_malformed_references_are_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        resolve(text)


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://LocalHost:5000/v2/", "localhost:5000"),
        ("myreg.example:443", "myreg.example:443"),
        ("  ghcr.io  ", "ghcr.io"),
    ],
)
def test_normalize_server(address: str, host: str) -> None:
    assert normalize_server(address) == host


def test_docker_hub_credentials_are_filed_under_docker_s_key() -> None:
    assert server_key("docker.io") == "https://index.docker.io/v1/"
    assert server_key("") == "https://index.docker.io/v1/"
    assert server_key("http://localhost:5000/") == "localhost:5000"


@pytest.mark.parametrize("address", ["a b", "user@host", "https:///x"])
def test_normalize_server_refuses_what_is_not_a_host(address: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid registry address"):
        normalize_server(address)


def test_split_host() -> None:
    assert split_host("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert split_host("[::1]:5000") == ("::1", 5000)
    assert split_host("[::1]") == ("::1", None)
    assert split_host("example.com") == ("example.com", None)


@pytest.mark.parametrize(
    ("host", "insecure"),
    [
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("registry-1.docker.io", False),
        ("10.0.0.5:5000", False),
        ("myreg:5000", True),  # listed
        ("myreg:6000", False),  # listed with another port
        ("plain", True),  # listed without a port: any port
        ("plain:8080", True),
        ("192.168.7.9:5000", True),  # in a listed CIDR
        ("192.168.8.1:5000", False),
    ],
)
def test_insecure_hosts(host: str, insecure: bool) -> None:
    policy = HostPolicy(["myreg:5000", "plain", "192.168.7.0/24", " "])
    assert policy.is_insecure(host) is insecure
