"""Every docker CLI on the machine against `moor daemon`, each at the API version it
negotiates (Debian's 20.10 speaks 1.41, docker 28 speaks 1.50): the streams of run,
logs and exec come apart right at either version, and what Moorage does not serve
(swarm mode) is a clear error, not a crash, while `docker info` and `docker system df`
work."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from daemon import Daemon, running_daemon


def _docker_clients() -> list[str]:
    found: dict[str, str] = {}
    for candidate in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker") or ""):
        if candidate and os.access(candidate, os.X_OK):
            found.setdefault(os.path.realpath(candidate), candidate)
    return sorted(found.values())


CLIENTS = _docker_clients()

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not CLIENTS, reason="no docker CLI is installed"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("cli-versions") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(params=CLIENTS)
def docker(request: pytest.FixtureRequest, daemon: Daemon) -> Docker:
    return Docker(request.param, daemon)


class Docker:
    def __init__(self, path: str, daemon: Daemon) -> None:
        self.path = path
        self.env = {**os.environ, "DOCKER_HOST": daemon.host}
        self.env.pop("DOCKER_API_VERSION", None)

    def __call__(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [self.path, *args], input=input, env=self.env, capture_output=True, timeout=120
        )
        if check:
            assert result.returncode == 0, (args, result.stderr.decode())
        return result


def test_the_cli_negotiates_a_version_the_daemon_serves(docker: Docker) -> None:
    out = docker("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}")
    client, server = out.stdout.decode().split()

    assert server == "1.50"
    assert 41 <= int(client.removeprefix("1.")) <= 50


def test_run_keeps_stdout_and_stderr_apart(docker: Docker) -> None:
    result = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")

    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")


def test_logs_and_exec_keep_their_streams_apart(docker: Docker) -> None:
    script = "echo logged; echo oops >&2; exec sleep 300"
    cid = docker("run", "-d", "busybox", "sh", "-c", script).stdout.decode().strip()
    try:
        docker("exec", cid, "true")  # the script has run by then
        logs = docker("logs", cid)
        ran = docker("exec", cid, "sh", "-c", "echo x; echo y >&2")
        fed = docker("exec", "-i", cid, "cat", input=b"piped\n")
    finally:
        docker("rm", "-f", cid)

    assert (logs.stdout, logs.stderr) == (b"logged\n", b"oops\n")
    assert (ran.stdout, ran.stderr) == (b"x\n", b"y\n")
    assert fed.stdout == b"piped\n"


@pytest.mark.parametrize(
    "args", [("node", "ls"), ("service", "ls"), ("secret", "ls"), ("plugin", "ls")]
)
def test_what_moorage_does_not_serve_is_a_clear_error(
    docker: Docker, args: tuple[str, ...]
) -> None:
    result = docker(*args, check=False)

    assert result.returncode == 1
    assert "Moorage does not support" in result.stderr.decode()


@pytest.mark.parametrize("args", [("info",), ("system", "df")])
def test_info_and_disk_usage_work(docker: Docker, args: tuple[str, ...]) -> None:
    result = docker(*args)

    assert result.stdout
