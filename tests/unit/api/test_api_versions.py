"""Version negotiation as dockerd does it, served by the real app around a fake engine:
``/_ping`` by HEAD and GET, versioned and unversioned paths, the daemon's headers on
every answer, 400 for versions out of range on every route, 404 ``page not found``,
501 for what Moorage does not serve, and each version's differences a client sees."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app_daemon import AppDaemon
from moorage.api.docker.server import (
    API_VERSION,
    MIN_API_VERSION,
    build_app,
    unsupported_version,
    version_key,
)
from raw_http import Answer, call

DAEMON_HEADERS = {
    "Api-Version": "1.50",
    "Ostype": "linux",
    "Builder-Version": "1",
    "Docker-Experimental": "false",
}

SUMMARY = {
    "Id": "sha256:" + "a" * 64,
    "ParentId": "",
    "RepoTags": [],
    "RepoDigests": [],
    "Created": 1,
    "Size": 100,
    "SharedSize": -1,
    "VirtualSize": 100,
    "Labels": {},
    "Containers": -1,
}


class FakeImages:
    def list_images(self, **options: Any) -> list[dict[str, Any]]:
        return [dict(SUMMARY)]


class FakeContainers:
    def __init__(self, log: Path) -> None:
        self.log = log

    def get(self, ref: str) -> Any:
        return SimpleNamespace(id=ref, config={"Tty": False}, running=False)

    def log_path(self, c: Any) -> str:
        return str(self.log)


class FakeEngine:
    def __init__(self, log: Path) -> None:
        self.images = FakeImages()
        self.containers = FakeContainers(log)

    def info(self) -> dict[str, Any]:
        return {
            "ID": "moorage",
            "RegistryConfig": {
                "InsecureRegistryCIDRs": [],
                "AllowNondistributableArtifactsCIDRs": None,
                "AllowNondistributableArtifactsHostnames": None,
            },
        }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("versions")
    log = base / "c-json.log"
    log.write_text("")
    app_daemon = AppDaemon(FakeEngine(log), base / "moor.sock")
    try:
        yield app_daemon.path
    finally:
        app_daemon.close()


def _daemon_headers(answer: Answer) -> dict[str, str | None]:
    return {name: answer.headers[name] for name in DAEMON_HEADERS}


def _routes() -> list[tuple[str, str]]:
    """(method, versioned path) of every route, its variables filled in."""
    out = []
    for route in build_app(SimpleNamespace()).router.routes():  # type: ignore[arg-type]
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/v{version}"):
            method = "GET" if route.method == "*" else route.method
            out.append((method, re.sub(r"\{(?!version)[^}]+\}", "x", path)))
    return out


# --- /_ping and the headers --------------------------------------------------------------


def test_ping_by_get_answers_ok_with_dockerd_headers(daemon: str) -> None:
    answer = call(daemon, "GET", "/_ping")

    assert (answer.status, answer.body) == (200, b"OK")
    assert _daemon_headers(answer) == DAEMON_HEADERS
    assert answer.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    assert answer.headers["Pragma"] == "no-cache"
    assert answer.headers["Swarm"] == "inactive"


def test_ping_by_head_has_the_same_headers_and_no_body(daemon: str) -> None:
    answer = call(daemon, "HEAD", "/_ping")

    assert (answer.status, answer.body) == (200, b"")
    assert _daemon_headers(answer) == DAEMON_HEADERS
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("prefix", ["", "/v1.41", "/v1.45", "/v1.50", "/v1.41.0"])
def test_versioned_and_unversioned_paths_are_served(daemon: str, prefix: str) -> None:
    answer = call(daemon, "GET", prefix + "/_ping")

    assert (answer.status, answer.body) == (200, b"OK")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/path", 404),
        ("GET", "/v1.50/no/such/path", 404),
        ("DELETE", "/_ping", 404),
        ("GET", "/v1.12/_ping", 400),
        ("GET", "/nodes", 501),
        ("GET", "/containers/x/logs", 400),  # neither stdout nor stderr
    ],
)
def test_errors_carry_the_daemon_headers_too(
    daemon: str, method: str, path: str, status: int
) -> None:
    answer = call(daemon, method, path)

    assert answer.status == status
    assert _daemon_headers(answer) == DAEMON_HEADERS
    assert answer.message()


def test_a_path_no_route_serves_is_dockerd_s_page_not_found(daemon: str) -> None:
    answer = call(daemon, "GET", "/v1.41/no/such/path")

    assert answer.status == 404
    assert answer.json() == {"message": "page not found"}


def test_a_method_a_route_does_not_take_is_page_not_found_too(daemon: str) -> None:
    answer = call(daemon, "PUT", "/containers/json")

    assert answer.status == 404
    assert answer.json() == {"message": "page not found"}


# --- versions out of range ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), _routes())
def test_every_route_refuses_a_version_too_old(daemon: str, method: str, path: str) -> None:
    answer = call(daemon, method, path.replace("{version}", "1.40"))

    assert answer.status == 400
    assert method == "HEAD" or answer.message() == (
        "client version 1.40 is too old. Minimum supported API version is 1.41, "
        "please upgrade your client to a newer version"
    )


@pytest.mark.parametrize(("method", "path"), _routes())
def test_every_route_refuses_a_version_too_new(daemon: str, method: str, path: str) -> None:
    answer = call(daemon, method, path.replace("{version}", "1.51"))

    assert answer.status == 400
    assert method == "HEAD" or answer.message() == (
        "client version 1.51 is too new. Maximum supported API version is 1.50"
    )


def test_the_served_range_is_1_41_to_what_docker_cli_28_speaks() -> None:
    assert (MIN_API_VERSION, API_VERSION) == ("1.41", "1.50")


@pytest.mark.parametrize(
    ("version", "refused"),
    [("1.41", False), ("1.50", False), ("1.41.0", False), ("1.40.9", True), ("1.50.1", True)],
)
def test_versions_compare_as_dockerd_compares_them(version: str, refused: bool) -> None:
    assert (unsupported_version(version) is not None) == refused


def test_a_version_part_that_is_no_number_counts_as_zero() -> None:
    assert version_key("1.x") == version_key("1") < version_key("1.41")


# --- what Moorage does not serve ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "feature"),
    [
        ("GET", "/swarm", "swarm mode"),
        ("POST", "/swarm/init", "swarm mode"),
        ("GET", "/nodes", "swarm mode (nodes)"),
        ("DELETE", "/nodes/abc", "swarm mode (nodes)"),
        ("GET", "/services", "swarm mode (services)"),
        ("POST", "/v1.44/services/create", "swarm mode (services)"),
        ("GET", "/tasks/x/logs", "swarm mode (tasks)"),
        ("POST", "/secrets/create", "swarm mode (secrets)"),
        ("GET", "/configs", "swarm mode (configs)"),
        ("GET", "/plugins", "plugins"),
        ("POST", "/plugins/pull", "plugins"),
        ("GET", "/distribution/busybox:latest/json", "distribution inspect"),
    ],
)
def test_unsupported_endpoints_are_a_501_naming_moorage(
    daemon: str, method: str, path: str, feature: str
) -> None:
    answer = call(daemon, method, path)

    assert answer.status == 501
    unversioned = re.sub(r"^/v[0-9.]+", "", path)
    assert answer.message() == f"Moorage does not support {feature}: {method} {unversioned}"


@pytest.mark.parametrize("path", ["/session", "/grpc"])
def test_buildkit_sessions_are_a_501(daemon: str, path: str) -> None:
    answer = call(daemon, "POST", path)

    assert answer.status == 501
    assert "BuildKit" in answer.message()


# --- /version and /debug/vars ------------------------------------------------------------


def test_version_has_the_fields_dockerd_fills(daemon: str) -> None:
    data = call(daemon, "GET", "/version").json()

    assert (data["ApiVersion"], data["MinAPIVersion"]) == ("1.50", "1.41")
    assert (data["Os"], data["GitCommit"]) == ("linux", "")
    assert data["GoVersion"].startswith("python3.")
    assert all(data[key] for key in ("Arch", "KernelVersion"))
    assert datetime.datetime.fromisoformat(data["BuildTime"]).tzinfo is not None
    [engine] = data["Components"]
    assert engine["Name"] == "Engine"
    assert engine["Details"]["MinAPIVersion"] == "1.41"
    assert engine["Details"]["BuildTime"] == data["BuildTime"]


def test_debug_vars_counts_tasks_and_threads_by_kind(daemon: str) -> None:
    data = call(daemon, "GET", "/v1.48/debug/vars").json()

    assert data["tasks"] >= 1
    assert data["threads"]["MainThread"] == 1
    assert isinstance(data["cmdline"], list)


# --- each version's differences, through the routes --------------------------------------


@pytest.mark.parametrize(
    ("prefix", "content_type"),
    [
        ("/v1.41", "application/vnd.docker.raw-stream"),
        ("/v1.42", "application/vnd.docker.multiplexed-stream"),
        ("", "application/vnd.docker.multiplexed-stream"),
    ],
)
def test_logs_name_a_multiplexed_stream_from_1_42(
    daemon: str, prefix: str, content_type: str
) -> None:
    answer = call(daemon, "GET", prefix + "/containers/c/logs?stdout=1")

    assert answer.status == 200
    assert answer.headers["Content-Type"] == content_type


@pytest.mark.parametrize(
    ("prefix", "tags", "virtual_size"),
    [("/v1.41", ["<none>:<none>"], 100), ("/v1.43", [], 100), ("/v1.44", [], None)],
)
def test_image_list_has_each_version_s_shape(
    daemon: str, prefix: str, tags: list[str], virtual_size: int | None
) -> None:
    [image] = call(daemon, "GET", prefix + "/images/json").json()

    assert image["RepoTags"] == tags
    assert image.get("VirtualSize") == virtual_size


@pytest.mark.parametrize(
    ("prefix", "bridge_nf", "nondistributable"),
    [("/v1.48", True, True), ("/v1.49", True, False), ("/v1.50", False, False)],
)
def test_info_has_each_version_s_fields(
    daemon: str, prefix: str, bridge_nf: bool, nondistributable: bool
) -> None:
    data = call(daemon, "GET", prefix + "/info").json()

    assert ("BridgeNfIptables" in data) == bridge_nf
    assert ("AllowNondistributableArtifactsCIDRs" in data["RegistryConfig"]) == nondistributable


def test_a_flag_that_is_no_boolean_is_refused(daemon: str) -> None:
    answer = call(daemon, "GET", "/images/json?all=maybe")

    assert answer.status == 400
    assert answer.message() == "invalid value for all: 'maybe': want a boolean (1 or 0)"


def test_the_app_answers_unparseable_versions_as_no_route(daemon: str) -> None:
    answer = call(daemon, "GET", "/v1..41/_ping")

    assert answer.status == 404


def test_the_route_list_above_has_the_versioned_paths() -> None:
    assert ("GET", "/v{version}/_ping") in _routes()


def test_image_search_answers_empty_and_checks_its_parameters(daemon: str) -> None:
    found = call(daemon, "GET", "/v1.41/images/search?term=busybox&limit=5")
    assert (found.status, found.body) == (200, b"[]")
    assert call(daemon, "GET", "/images/search").status == 400
    bad = call(daemon, "GET", "/images/search?term=x&limit=many")
    assert bad.status == 400
    assert b"limit" in bad.body
