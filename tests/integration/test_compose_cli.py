"""``moor compose`` against a private daemon: a two-service project built from its
directory, with a named volume, a network alias and a published port (up, ps, logs,
exec, down); depends_on conditions; scale; convergence; data that survives ``down``
and goes with ``down -v``; bad files that start nothing; Ctrl-C on a foreground up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose_commands import run_compose
from daemon import Daemon, running_daemon

pytestmark = pytest.mark.root

WEB_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /www && echo hello-from-web > /www/index.html
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""

# db serves its volume over HTTP on 8080 (so that web can reach it by its alias) and
# stops at SIGTERM.
PROJECT = """\
services:
  web:
    build: ./web
    ports:
      - "127.0.0.1:{port}:8000"
    environment:
      GREETING: ${{GREETING:-hello}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/"]
      interval: 1s
      retries: 30
    networks: [back]
    depends_on: [db]
  db:
    image: busybox
    command: ["sh", "-c", "echo db-up; exec httpd -f -p 8080 -h /data"]
    stop_signal: SIGKILL
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
    with running_daemon(tmp_path_factory.mktemp("compose-cli") / "moor", busybox=True) as d:
        yield d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    """A project directory and the `moor compose` commands run in it."""

    def __init__(self, daemon: Daemon, directory: Path) -> None:
        self.daemon = daemon
        self.directory = directory
        self.name = f"t{uuid.uuid4().hex[:8]}"
        self.env: dict[str, str] = {}

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "moorage.cli.main", "-H", self.daemon.host,
            "compose", "-p", self.name, *args,
        ]  # fmt: skip

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        env.pop("COMPOSE_PROJECT_NAME", None)
        shown = f"moor compose {' '.join(args)}"
        return run_compose(self.argv(*args), cwd=self.directory, env=env, shown=shown, check=check)

    def api(self, path: str, **params: object) -> object:
        from moorage.api.client import Client

        return Client(str(self.daemon.socket)).get_json(path, **params)

    def containers(self) -> list[dict[str, object]]:
        found = self.api(
            "/containers/json",
            all=1,
            filters={"label": [f"com.docker.compose.project={self.name}"]},
        )
        assert isinstance(found, list)
        return found

    def ids(self) -> dict[str, str]:
        """Container name -> id."""
        return {str(c["Names"][0]).lstrip("/"): str(c["Id"]) for c in self.containers()}  # type: ignore[index]

    def networks(self) -> list[str]:
        found = self.api("/networks")
        assert isinstance(found, list)
        return [n["Name"] for n in found if str(n["Name"]).startswith(self.name)]

    def volumes(self) -> list[str]:
        found = self.api("/volumes")
        assert isinstance(found, dict)
        return [v["Name"] for v in found.get("Volumes") or [] if v["Name"].startswith(self.name)]


@pytest.fixture
def project(daemon: Daemon, tmp_path: Path) -> Iterator[Project]:
    directory = tmp_path / "shop"
    directory.mkdir()
    p = Project(daemon, directory)
    try:
        yield p
    finally:
        if (directory / "compose.yaml").exists():
            p.run("down", "-v", "--rmi", "local", "--remove-orphans", "-t", "1", check=False)


def _two_services(project: Project) -> int:
    port = _free_port()
    (project.directory / "web").mkdir()
    (project.directory / "web" / "Dockerfile").write_text(WEB_DOCKERFILE)
    (project.directory / "compose.yaml").write_text(PROJECT.format(port=port))
    return port


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_up_ps_logs_exec_and_down(project: Project) -> None:
    port = _two_services(project)
    up = project.run("up", "-d", "--wait")
    assert f"Container {project.name}-web-1  Started" in up.stderr
    assert b"hello-from-web" in _http_get(port)

    ps = project.run("ps").stdout
    assert f"{project.name}-web-1" in ps
    assert f"{project.name}-db-1" in ps
    assert f"127.0.0.1:{port}->8000/tcp" in ps
    assert project.run("ps", "--services").stdout.split() == ["db", "web"]

    logs = project.run("logs", "db").stdout
    assert "db-1  | db-up" in logs

    # web reaches db by its alias on the declared network; db's file is in the volume
    project.run("exec", "-T", "db", "sh", "-c", "echo stored > /data/note")
    fetched = project.run("exec", "-T", "web", "wget", "-q", "-O", "-", "http://database:8080/note")
    assert fetched.stdout == "stored\n"
    by_name = project.run("exec", "-T", "web", "wget", "-q", "-O", "-", "http://db:8080/note")
    assert by_name.stdout == "stored\n"
    failing = project.run("exec", "-T", "web", "sh", "-c", "exit 3", check=False)
    assert failing.returncode == 3
    assert project.run("port", "web", "8000").stdout.strip() == f"127.0.0.1:{port}"

    project.run("down", "-v")
    assert project.containers() == []
    assert project.networks() == []
    assert project.volumes() == []


def test_an_unchanged_up_keeps_and_a_changed_environment_recreates_only_that_service(
    project: Project,
) -> None:
    _two_services(project)
    project.run("up", "-d")
    first = project.ids()
    again = project.run("up", "-d")
    assert project.ids() == first
    assert "Recreate" not in again.stderr

    project.env["GREETING"] = "changed"
    changed = project.run("up", "-d")
    second = project.ids()
    web, db = f"{project.name}-web-1", f"{project.name}-db-1"
    assert second[db] == first[db]
    assert second[web] != first[web]
    assert f"Container {web}  Recreated" in changed.stderr
    env = project.run("exec", "-T", "web", "sh", "-c", "echo $GREETING").stdout
    assert env == "changed\n"


def test_data_survives_down_and_up_and_goes_with_down_v(project: Project) -> None:
    _two_services(project)
    project.run("up", "-d", "db")
    project.run("exec", "-T", "db", "sh", "-c", "echo kept > /data/file")
    project.run("down")
    assert project.volumes() == [f"{project.name}_data"]
    project.run("up", "-d", "db")
    assert project.run("exec", "-T", "db", "cat", "/data/file").stdout == "kept\n"
    project.run("down", "-v")
    assert project.volumes() == []
    project.run("up", "-d", "db")
    gone = project.run("exec", "-T", "db", "cat", "/data/file", check=False)
    assert gone.returncode != 0


CONDITIONS = """\
services:
  init:
    image: busybox
    command: ["sh", "-c", "echo initialised > /shared/state; exit ${INIT_EXIT:-0}"]
    volumes: [shared:/shared]
  db:
    image: busybox
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 30
  app:
    image: busybox
    command: ["sh", "-c", "cat /shared/state; exec sleep 3600"]
    stop_signal: SIGKILL
    volumes: [shared:/shared]
    depends_on:
      init: {condition: service_completed_successfully}
      db: {condition: service_healthy}
volumes:
  shared:
"""


def _inspect(project: Project, name: str) -> dict[str, object]:
    found = project.api(f"/containers/{name}/json")
    assert isinstance(found, dict)
    return found


def test_depends_on_waits_for_healthy_and_completed_dependencies(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(CONDITIONS)
    project.run("up", "-d", "app")
    app = _inspect(project, f"{project.name}-app-1")
    db = _inspect(project, f"{project.name}-db-1")
    init = _inspect(project, f"{project.name}-init-1")
    assert init["State"]["ExitCode"] == 0  # type: ignore[index]
    health = db["State"]["Health"]  # type: ignore[index]
    assert health["Status"] == "healthy"
    # app started only once init had finished and db had passed a check
    assert app["State"]["StartedAt"] >= init["State"]["FinishedAt"]  # type: ignore[index]
    assert app["State"]["StartedAt"] >= health["Log"][0]["End"]
    assert project.run("logs", "app").stdout == "app-1  | initialised\n"


def test_a_failed_dependency_stops_up(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(CONDITIONS)
    project.env["INIT_EXIT"] = "3"
    failed = project.run("up", "-d", "app", check=False)
    assert failed.returncode != 0
    assert 'service "init" didn\'t complete successfully: exit 3' in failed.stderr
    assert f"{project.name}-app-1" not in project.ids()


SCALED = """\
services:
  worker:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"""


def test_scale(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(SCALED)
    project.run("up", "-d", "--scale", "worker=3")
    assert sorted(project.ids()) == [f"{project.name}-worker-{n}" for n in (1, 2, 3)]
    project.run("up", "-d", "--scale", "worker=1")
    assert sorted(project.ids()) == [f"{project.name}-worker-1"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("services:\n  a:\n    image: busybox\n    command: [true\n", "compose.yaml:"),
        ("services:\n  a:\n    image: busybox\n    colour: red\n", "services.a.colour"),
        ("services:\n  a:\n    image: busybox\n    read_only: maybe\n", "services.a.read_only"),
        (
            "services:\n  a:\n    image: busybox\n    depends_on: [b]\n"
            "  b:\n    image: busybox\n    depends_on: [a]\n",
            "dependency cycle",
        ),
        (
            "services:\n  a:\n    image: busybox\n"
            "    environment:\n      PW: ${NO_SUCH_PW:?needed}\n",
            "services.a.environment.PW: required variable NO_SUCH_PW",
        ),
    ],
)
def test_a_bad_file_fails_clearly_and_starts_nothing(
    project: Project, text: str, words: str
) -> None:
    (project.directory / "compose.yaml").write_text(text)
    failed = project.run("up", "-d", check=False)
    assert failed.returncode != 0
    assert words in failed.stderr
    assert "compose.yaml" in failed.stderr
    assert project.containers() == []
    assert project.networks() == []


def test_ctrl_c_on_a_foreground_up_stops_the_project(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(
        "services:\n  talker:\n    image: busybox\n"
        "    command: [sh, -c, \"trap 'exit 0' TERM; echo talking; "
        'while true; do sleep 1 & wait $$!; done"]\n'
    )
    with subprocess.Popen(
        project.argv("up"),
        cwd=project.directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "talker-1  | talking" in line:
                    break
            else:
                raise AssertionError("up ended before the service spoke")
            proc.send_signal(signal.SIGINT)
            rest = proc.stdout.read()
            assert proc.wait(timeout=60) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
    state = _inspect(project, f"{project.name}-talker-1")["State"]
    assert state["Status"] == "exited", rest  # type: ignore[index]
    assert state["ExitCode"] == 0  # type: ignore[index]


def test_config_prints_the_resolved_model(project: Project) -> None:
    _two_services(project)
    config = project.run("config", "--format", "json").stdout
    model = json.loads(config)
    assert model["name"] == project.name
    assert model["services"]["web"]["environment"] == {"GREETING": "hello"}
    assert model["volumes"]["data"]["name"] == f"{project.name}_data"
    assert model["networks"]["back"]["name"] == f"{project.name}_back"


def test_run_stop_start_restart_rm_top_images_and_build(project: Project) -> None:
    _two_services(project)
    built = project.run("build", "web")
    assert "Service web  Built" in built.stderr

    ran = project.run("run", "--rm", "-T", "db", "sh", "-c", "echo one-off; exit 4", check=False)
    assert ran.returncode == 4
    assert ran.stdout == "one-off\n"
    assert not any("-run-" in name for name in project.ids())  # --rm removed it

    project.run("up", "-d")
    top = project.run("top", "db").stdout
    assert f"{project.name}-db-1" in top
    assert "httpd" in top
    images = project.run("images").stdout
    assert f"{project.name}-web" in images
    assert "busybox" in images

    project.run("stop", "db")
    assert _inspect(project, f"{project.name}-db-1")["State"]["Running"] is False  # type: ignore[index]
    project.run("start", "db")
    assert _inspect(project, f"{project.name}-db-1")["State"]["Running"] is True  # type: ignore[index]
    before = _inspect(project, f"{project.name}-db-1")["State"]["StartedAt"]  # type: ignore[index]
    project.run("restart", "db")
    after = _inspect(project, f"{project.name}-db-1")["State"]["StartedAt"]  # type: ignore[index]
    assert after != before

    project.run("stop")
    project.run("rm", "-f", "web")
    assert sorted(project.ids()) == [f"{project.name}-db-1"]


def test_logs_follow_interleaves_services_as_they_come(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(
        "services:\n"
        "  a:\n    image: busybox\n    command: [sh, -c, 'echo from-a']\n"
        "  b:\n    image: busybox\n    command: [sh, -c, 'echo from-b']\n"
    )
    project.run("up", "-d")
    from moorage.api.client import Client

    for c in project.containers():  # they exit by themselves: -f ends once they have
        Client(str(project.daemon.socket)).request(
            "POST", f"/containers/{c['Id']}/wait", params={"condition": "not-running"}
        ).read()
    followed = project.run("logs", "-f").stdout.splitlines()
    assert sorted(followed) == ["a-1  | from-a", "b-1  | from-b"]


OPTIONS = """\
services:
  opts:
    image: busybox
    command: ["sleep", "3600"]
    user: "65534"
    working_dir: /tmp
    hostname: optshost
    read_only: true
    init: true
    restart: unless-stopped
    stop_grace_period: 7s
    labels: {team: compose}
    tmpfs: [/run]
    volumes:
      - type: tmpfs
        target: /scratch
    expose: ["4000"]
    deploy:
      resources:
        limits: {memory: 64m, cpus: "0.5", pids: 64}
"""


def test_service_options_reach_the_engine(project: Project) -> None:
    (project.directory / "compose.yaml").write_text(OPTIONS)
    project.run("up", "-d")
    info = _inspect(project, f"{project.name}-opts-1")
    config, host = info["Config"], info["HostConfig"]
    assert config["User"] == "65534"  # type: ignore[index]
    assert config["WorkingDir"] == "/tmp"  # type: ignore[index]
    assert config["Hostname"] == "optshost"  # type: ignore[index]
    assert config["Labels"]["team"] == "compose"  # type: ignore[index]
    assert config["StopTimeout"] == 7  # type: ignore[index]
    assert "4000/tcp" in config["ExposedPorts"]  # type: ignore[index]
    assert host["ReadonlyRootfs"] is True  # type: ignore[index]
    assert host["Init"] is True  # type: ignore[index]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"  # type: ignore[index]
    assert host["Memory"] == 64 * 1024 * 1024  # type: ignore[index]
    assert host["NanoCpus"] == 500_000_000  # type: ignore[index]
    assert host["PidsLimit"] == 64  # type: ignore[index]
    mounts = project.run("exec", "-T", "opts", "cat", "/proc/mounts").stdout
    assert " /scratch tmpfs " in mounts
    assert " /run tmpfs " in mounts
    assert project.run("exec", "-T", "opts", "hostname").stdout == "optshost\n"
    denied = project.run("exec", "-T", "opts", "touch", "/etc/x", check=False)
    assert denied.returncode != 0  # the root filesystem is read-only
