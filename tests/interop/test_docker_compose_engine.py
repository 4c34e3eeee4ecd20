"""docker-compose 1.29 (Debian's, on docker-py) drives `moor daemon` unchanged: a project
with two services, one built from the project directory, a named volume, a network with
an alias and a published port: `up -d`, `ps`, `logs`, `exec`, `down` and `down -v`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose_commands import run_compose
from daemon import Daemon, running_daemon

COMPOSE = shutil.which("docker-compose")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed"),
]

DOCKERFILE = """\
FROM busybox
RUN mkdir -p /www && echo hello-from-web > /www/index.html
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""

# The db service stops at SIGTERM (a shell's trap runs once `wait` is interrupted).
COMPOSE_FILE = """\
version: "3.8"
services:
  web:
    build: ./web
    ports:
      - "{port}:8000"
    networks: [back]
    depends_on: [db]
  db:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; echo db-up; while true; do sleep 1 & wait $$!; done"]
    volumes:
      - data:/data
    networks:
      back:
        aliases: [database]
volumes:
  data:
networks:
  back:
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("compose") / "moor", busybox=True) as d:
        yield d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    def __init__(self, daemon: Daemon, directory: Path, name: str) -> None:
        self.daemon, self.directory, self.name = daemon, directory, name

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert COMPOSE is not None
        env = {**os.environ, "DOCKER_HOST": self.daemon.host, "COMPOSE_PROJECT_NAME": self.name}
        env.pop("DOCKER_CONFIG", None)
        shown = f"docker-compose {' '.join(args)}"
        argv = [COMPOSE, "--no-ansi", *args]
        return run_compose(argv, cwd=self.directory, env=env, shown=shown, check=check)

    def moor(self, *args: str) -> str:
        return self.daemon.moor(*args).stdout.decode()


@pytest.fixture
def project(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[Project, int]]:
    port = _free_port()
    directory = tmp_path / "shop"
    (directory / "web").mkdir(parents=True)
    (directory / "web" / "Dockerfile").write_text(DOCKERFILE)
    (directory / "docker-compose.yml").write_text(COMPOSE_FILE.format(port=port))
    p = Project(daemon, directory, f"shop{uuid.uuid4().hex[:6]}")
    try:
        yield p, port
    finally:
        p.compose("down", "-v", "--rmi", "local", "--remove-orphans", check=False)


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _await_http(port: int, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _http_get(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_up_ps_logs_exec_and_down(project: tuple[Project, int]) -> None:
    p, port = project
    up = p.compose("up", "-d")
    assert "done" in up.stderr
    ps = p.compose("ps").stdout
    assert f"{p.name}_web_1" in ps
    assert f"{p.name}_db_1" in ps
    assert f"0.0.0.0:{port}->8000/tcp" in ps
    assert b"hello-from-web" in _await_http(port)
    # The built image carries the project's name, as compose names it.
    assert f"{p.name}_web" in p.moor("images", "--format", "{{.Repository}}")
    # The web service reaches the database by its service name and by its alias.
    for name in ("db", "database"):
        reached = p.compose("exec", "-T", "web", "ping", "-c", "1", "-W", "5", name)
        assert "1 packets received" in reached.stdout
    deadline = time.monotonic() + 30
    while "db-up" not in p.compose("logs", "db").stdout:
        assert time.monotonic() < deadline, "the db service's output never showed in logs"
        time.sleep(0.1)
    p.compose("down")
    assert p.compose("ps", "-q").stdout.strip() == ""
    assert p.name not in p.moor("ps", "-a", "--format", "{{.Names}}")
    assert f"{p.name}_back" not in p.moor("network", "ls", "--format", "{{.Name}}")


def test_a_named_volume_outlives_down_and_goes_with_down_v(project: tuple[Project, int]) -> None:
    p, _ = project
    p.compose("up", "-d", "db")
    p.compose("exec", "-T", "db", "sh", "-c", "echo kept > /data/row")
    p.compose("down")
    volume = f"{p.name}_data"
    assert volume in p.moor("volume", "ls", "--format", "{{.Name}}")
    p.compose("up", "-d", "db")
    assert p.compose("exec", "-T", "db", "cat", "/data/row").stdout.strip() == "kept"
    p.compose("down", "-v")
    assert volume not in p.moor("volume", "ls", "--format", "{{.Name}}")


def test_up_again_leaves_an_unchanged_project_running(project: tuple[Project, int]) -> None:
    p, _ = project
    p.compose("up", "-d")
    first = p.moor("ps", "-q", "--no-trunc").split()
    again = p.compose("up", "-d")
    assert "is up-to-date" in again.stderr
    assert sorted(p.moor("ps", "-q", "--no-trunc").split()) == sorted(first)
