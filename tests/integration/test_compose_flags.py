"""``moor compose`` flags end to end against a private daemon: ``build``, ``push`` and
``pull`` through a ``moor registry serve`` on loopback; ``up --force-recreate`` and
``up --no-deps``; profiles; ``env_file:`` and ``--env-file`` interpolation; two ``-f``
files merged."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compose_commands import run_compose
from daemon import Daemon, running_daemon
from registry_servers import Registry, start_moorage

pytestmark = pytest.mark.root

# Variables the files below interpolate: the caller's environment must not set them.
_OURS = ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES", "TAG_VALUE", "MODE")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("compose-flags") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = start_moorage(tmp_path_factory.mktemp("compose-registry"))
    try:
        yield r
    finally:
        r.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    """A project directory and the `moor compose` commands run in it; ``flags`` (``-f``,
    ``--env-file``, ``--profile``) go before every command, the cleanup's too."""

    def __init__(self, daemon: Daemon, directory: Path) -> None:
        self.daemon = daemon
        self.directory = directory
        self.name = f"t{uuid.uuid4().hex[:8]}"
        self.flags: list[str] = []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in _OURS}
        argv = [
            sys.executable, "-m", "moorage.cli.main", "-H", self.daemon.host,
            "compose", "-p", self.name, *self.flags, *args,
        ]  # fmt: skip
        shown = f"moor compose {' '.join([*self.flags, *args])}"
        return run_compose(argv, cwd=self.directory, env=env, shown=shown, check=check)

    def client(self) -> Any:
        from moorage.api.client import Client

        return Client(str(self.daemon.socket), timeout=60)

    def containers(self) -> list[dict[str, Any]]:
        found = self.client().get_json(
            "/containers/json",
            all=1,
            filters={"label": [f"com.docker.compose.project={self.name}"]},
        )
        assert isinstance(found, list)
        return found

    def ids(self) -> dict[str, str]:
        """Service name -> container id."""
        return {
            str(c["Labels"]["com.docker.compose.service"]): str(c["Id"]) for c in self.containers()
        }

    def env(self, service: str) -> dict[str, str]:
        """The environment a process started in the service's container sees."""
        out = self.run("exec", "-T", service, "env").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cleanup(self) -> None:
        self.run("down", "-v", "--rmi", "local", "--remove-orphans", "-t", "1", check=False)
        client = self.client()
        for c in self.containers():  # whatever down could not take away
            with contextlib.suppress(Exception):
                client.request("DELETE", f"/containers/{c['Id']}", params={"force": 1}).read()


@pytest.fixture
def project(daemon: Daemon, tmp_path: Path) -> Iterator[Project]:
    directory = tmp_path / "proj"
    directory.mkdir()
    p = Project(daemon, directory)
    try:
        yield p
    finally:
        p.cleanup()


def _image(daemon: Daemon, ref: str) -> dict[str, Any] | None:
    from moorage.api.client import Client
    from moorage.errors import NotFound

    try:
        found = Client(str(daemon.socket)).get_json(f"/images/{ref}/json")
    except NotFound:
        return None
    assert isinstance(found, dict)
    return found


# --------------------------------------------------------------------------- push, pull

PUSHED = """\
services:
  web:
    image: {ref}
    build: ./web
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"""


def test_build_push_then_pull_through_a_loopback_registry(
    daemon: Daemon, registry: Registry, project: Project
) -> None:
    marker = uuid.uuid4().hex
    repository = f"proj/{project.name}"
    ref = f"{registry.host}/{repository}:1"
    (project.directory / "web").mkdir()
    (project.directory / "web" / "Dockerfile").write_text(
        f"FROM busybox\nRUN echo {marker} > /marker\n"
    )
    (project.directory / "compose.yaml").write_text(PUSHED.format(ref=ref))
    try:
        assert "Service web  Built" in project.run("build").stderr
        built = _image(daemon, ref)
        assert built is not None

        pushed = project.run("push")
        assert f"Image {ref}  Pushed" in pushed.stderr
        tags = registry.call("GET", f"/v2/{repository}/tags/list")
        assert tags.status == 200, tags.body
        assert tags.json()["tags"] == ["1"]
        manifest = registry.call(
            "HEAD",
            f"/v2/{repository}/manifests/1",
            headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json,"
                "application/vnd.docker.distribution.manifest.v2+json"
            },
        )
        assert manifest.status == 200

        # Gone from the daemon, the image is only in the registry: pull brings it back.
        daemon.moor("rmi", ref)
        assert _image(daemon, ref) is None
        pulled = project.run("pull")
        assert f"Image {ref}  Pulled" in pulled.stderr
        again = _image(daemon, ref)
        assert again is not None
        assert again["Id"] == built["Id"]

        # up does not build it again (it is there), and it is the image that was pushed.
        up = project.run("up", "-d")
        assert "Building" not in up.stderr
        assert project.run("exec", "-T", "web", "cat", "/marker").stdout == f"{marker}\n"
    finally:
        project.cleanup()
        daemon.moor("rmi", "-f", ref, check=False)


def test_pull_of_a_missing_image_fails_unless_failures_are_ignored(
    registry: Registry, project: Project
) -> None:
    ref = f"{registry.host}/proj/{project.name}-absent:1"
    (project.directory / "compose.yaml").write_text(
        f"services:\n  gone:\n    image: {ref}\n  here:\n    image: busybox\n"
    )
    failed = project.run("pull", "gone", check=False)
    assert failed.returncode != 0
    assert ref in failed.stderr
    ignored = project.run("pull", "--ignore-pull-failures", "gone")
    assert "WARN:" in ignored.stderr


# --------------------------------------------------------------------------- up flags

TWO = """\
services:
  web:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on: [db]
  db:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"""


def test_force_recreate_recreates_unchanged_containers_and_plain_up_does_not(
    project: Project,
) -> None:
    (project.directory / "compose.yaml").write_text(TWO)
    project.run("up", "-d")
    first = project.ids()
    assert sorted(first) == ["db", "web"]

    plain = project.run("up", "-d")
    assert project.ids() == first
    assert "Recreate" not in plain.stderr

    forced = project.run("up", "-d", "--force-recreate")
    second = project.ids()
    assert sorted(second) == ["db", "web"]
    assert second["web"] != first["web"]
    assert second["db"] != first["db"]
    assert f"Container {project.name}-web-1  Recreated" in forced.stderr
    assert f"Container {project.name}-db-1  Recreated" in forced.stderr
    assert all(c["State"] == "running" for c in project.containers())

    # --force-recreate of one service leaves the other alone
    project.run("up", "-d", "--force-recreate", "--no-deps", "web")
    third = project.ids()
    assert third["db"] == second["db"]
    assert third["web"] != second["web"]

    both = project.run("up", "-d", "--force-recreate", "--no-recreate", check=False)
    assert both.returncode != 0
    assert "incompatible" in both.stderr


def test_no_deps_starts_the_service_without_its_dependencies(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(TWO)
    project.run("up", "-d", "--no-deps", "web")
    assert sorted(project.ids()) == ["web"]
    assert project.containers()[0]["State"] == "running"

    # without it, the dependency comes too (and web is kept)
    web = project.ids()["web"]
    project.run("up", "-d", "web")
    ids = project.ids()
    assert sorted(ids) == ["db", "web"]
    assert ids["web"] == web


# --------------------------------------------------------------------------- profiles

PROFILES = """\
services:
  app:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
  debug:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    profiles: [debug]
"""


def test_a_service_in_a_profile_starts_only_with_that_profile(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(PROFILES)
    project.run("up", "-d")
    assert sorted(project.ids()) == ["app"]
    assert project.run("config", "--services").stdout.split() == ["app"]

    project.flags = ["--profile", "debug"]
    assert sorted(project.run("config", "--services").stdout.split()) == ["app", "debug"]
    project.run("up", "-d")
    assert sorted(project.ids()) == ["app", "debug"]
    assert all(c["State"] == "running" for c in project.containers())


def test_naming_a_service_in_a_profile_enables_it(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(PROFILES)
    project.run("up", "-d", "debug")
    assert sorted(project.ids()) == ["debug"]


# --------------------------------------------------------------------------- env files

ENVIRONMENT = """\
services:
  svc:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    env_file: [svc.env]
    environment:
      SHARED: from-environment
      INTERP: ${TAG_VALUE:-unset}
"""


def test_env_file_and_env_file_flag_reach_the_container(project: Project) -> None:
    d = project.directory
    (d / "compose.yaml").write_text(ENVIRONMENT)
    (d / "svc.env").write_text(
        "# a comment\nFROM_FILE=file-value\nSHARED=from-file\nQUOTED='a b'\n"
    )
    (d / ".env").write_text("TAG_VALUE=from-dotenv\n")
    (d / "alt.env").write_text("TAG_VALUE=from-alt\n")

    project.run("up", "-d")
    env = project.env("svc")
    assert env["FROM_FILE"] == "file-value"
    assert env["QUOTED"] == "a b"
    assert env["SHARED"] == "from-environment"  # environment: wins over env_file:
    assert env["INTERP"] == "from-dotenv"  # the project's .env

    first = project.ids()["svc"]
    project.flags = ["--env-file", "alt.env"]  # instead of .env
    changed = project.run("up", "-d")
    assert f"Container {project.name}-svc-1  Recreated" in changed.stderr
    assert project.ids()["svc"] != first
    env = project.env("svc")
    assert env["INTERP"] == "from-alt"
    assert env["FROM_FILE"] == "file-value"


def test_a_missing_env_file_fails_before_anything_starts(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(ENVIRONMENT)
    failed = project.run("up", "-d", check=False)
    assert failed.returncode != 0
    assert "services.svc.env_file" in failed.stderr
    assert "svc.env" in failed.stderr
    assert project.containers() == []


# --------------------------------------------------------------------------- -f -f

# httpd on 8000 in the background, and (when the port is published) on 8001 in front;
# both serve $MODE.
BASE = """\
services:
  web:
    image: busybox
    command:
      - sh
      - -c
      - >-
        mkdir -p /www && echo $$MODE-$$KEEP > /www/index.html &&
        httpd -p 8000 -h /www && exec httpd -f -p 8001 -h /www
    stop_signal: SIGKILL
    environment:
      MODE: base
      KEEP: kept
    ports:
      - "127.0.0.1:{port}:8000"
"""

OVERRIDE = """\
services:
  web:
    environment:
      MODE: override
    ports:
      - "127.0.0.1:{port}:8001"
"""


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _wait_http(project: Project, port: int) -> bytes:
    """The page on ``port`` once the httpd on 8001 (started last) answers inside."""
    probe = "until wget -q -O /dev/null http://127.0.0.1:8001/; do sleep 0.1; done"
    project.run("exec", "-T", "web", "timeout", "30", "sh", "-c", probe)
    return _http_get(port)


def test_two_files_are_merged(project: Project) -> None:
    base_port, extra_port = _free_port(), _free_port()
    (project.directory / "compose.yaml").write_text(BASE.format(port=base_port))
    (project.directory / "override.yaml").write_text(OVERRIDE.format(port=extra_port))
    project.flags = ["-f", "compose.yaml", "-f", "override.yaml"]

    project.run("up", "-d")
    env = project.env("web")
    assert env["MODE"] == "override"
    assert env["KEEP"] == "kept"
    assert project.run("port", "web", "8000").stdout.strip() == f"127.0.0.1:{base_port}"
    assert project.run("port", "web", "8001").stdout.strip() == f"127.0.0.1:{extra_port}"
    assert b"override-kept" in _wait_http(project, extra_port)
    assert b"override-kept" in _http_get(base_port)

    # the base file alone: the old value, one port
    project.flags = ["-f", "compose.yaml"]
    project.run("up", "-d")
    assert project.env("web")["MODE"] == "base"
    missing = project.run("port", "web", "8001", check=False)
    assert missing.returncode != 0
