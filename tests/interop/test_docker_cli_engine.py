"""The docker CLI drives `moor daemon` unchanged: `DOCKER_HOST` points at a private daemon
and the commands a user types (run, ps, logs, exec, build, volume, network, inspect, cp,
events...) behave as they do against dockerd. Push and pull are in
test_registry_docker_cli.py."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from daemon import Daemon, running_daemon

DOCKER = shutil.which("docker")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(DOCKER is None, reason="no docker CLI is installed"),
]

T = TypeVar("T")

# A container that runs until something creates /tmp/go in it, then exits with $1.
UNTIL_GO = 'while [ ! -f /tmp/go ]; do sleep 0.05; done; exit "$1"'


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``condition`` until it returns something true; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str) -> tuple[int, bytes] | None:
    """A raw HTTP/1.0 GET to 127.0.0.1:port; None while nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    return int(head.split()[1]), body


class Pty:
    """A command whose stdin, stdout and stderr are a new pseudo-terminal, as in a shell."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        try:
            self.proc = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
            )
        finally:
            os.close(slave)
        self.output = b""

    def _read(self, timeout: float) -> bool:
        """What the terminal shows in ``timeout``; False at its end (the command gone)."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            return False
        self.output += data
        return bool(data)

    def expect(self, pattern: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.output:
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(f"{pattern!r} not shown; the terminal shows {self.output!r}")

    def send(self, text: bytes) -> None:
        os.write(self.master, text)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        while self._read(0):  # what is left to read
            pass
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


class DockerCLI:
    """The docker CLI, pointed at one Moorage daemon."""

    def __init__(self, daemon: Daemon, config: Path) -> None:
        assert DOCKER is not None
        self.daemon = daemon
        self.env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(config)}
        self.env.pop("DOCKER_CONTEXT", None)

    def __call__(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [DOCKER, *args],  # type: ignore[list-item]
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [DOCKER, *args],  # type: ignore[list-item]
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def pty(self, *args: str) -> Pty:
        return Pty([DOCKER, *args], self.env)  # type: ignore[list-item]

    def inspect(self, *args: str) -> Any:
        return json.loads(self("inspect", *args).stdout)[0]


class Made:
    """Unique names for what a test makes, and their removal when it ends."""

    def __init__(self, docker: DockerCLI) -> None:
        self.docker = docker
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.networks: list[str] = []
        self.images: list[str] = []

    @staticmethod
    def _unique(kind: str) -> str:
        return f"cli-{kind}-{uuid.uuid4().hex[:10]}"

    def container(self) -> str:
        self.containers.append(name := self._unique("c"))
        return name

    def volume(self) -> str:
        self.volumes.append(name := self._unique("v"))
        return name

    def network(self) -> str:
        self.networks.append(name := self._unique("n"))
        return name

    def image(self, tag: str = "latest") -> str:
        self.images.append(name := f"{self._unique('i')}:{tag}")
        return name

    def remove(self) -> None:
        d = self.docker
        if self.containers:
            d("rm", "-f", "-v", *self.containers, check=False)
        for network in self.networks:
            d("network", "rm", network, check=False)
        if self.volumes:
            d("volume", "rm", "-f", *self.volumes, check=False)
        if self.images:
            d("rmi", "-f", *self.images, check=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("docker-cli") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(scope="module")
def docker(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    return DockerCLI(daemon, tmp_path_factory.mktemp("docker-config"))


@pytest.fixture
def made(docker: DockerCLI) -> Iterator[Made]:
    m = Made(docker)
    try:
        yield m
    finally:
        m.remove()


def run_detached(docker: DockerCLI, name: str, *args: str) -> str:
    """``docker run -d --name name args...``, the container's id."""
    return docker("run", "-d", "--name", name, *args).stdout.strip()


def sleeper(docker: DockerCLI, made: Made, *options: str) -> str:
    """A running container that sleeps (its name)."""
    name = made.container()
    run_detached(docker, name, *options, "busybox", "sleep", "600")
    return name


def release(docker: DockerCLI, name: str) -> None:
    """Let an UNTIL_GO container go on to its exit."""
    docker("exec", name, "touch", "/tmp/go")


def read_until(stream: Any, pattern: bytes, timeout: float = 30.0) -> bytes:
    """What a pipe gives until ``pattern`` is in it (or its end)."""
    out = b""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    while pattern not in out:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{pattern!r} not seen in {out!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out


@contextlib.contextmanager
def stopped_at_end(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


# --- the daemon ---------------------------------------------------------------------------


def test_version_shows_the_server(docker: DockerCLI) -> None:
    result = docker("version")

    server = result.stdout.split("Server:", 1)[1]
    assert re.search(r"API version:\s+\d+\.\d+ \(minimum version \d+\.\d+\)", server), server
    assert re.search(r"OS/Arch:\s+linux/\w+", server), server
    versions = json.loads(docker("version", "--format", "{{json .}}").stdout)
    assert versions["Server"]["ApiVersion"] == versions["Client"]["ApiVersion"]


def test_info_describes_the_daemon(docker: DockerCLI, made: Made) -> None:
    docker("create", "--name", made.container(), "busybox", "true")

    result = docker("info")

    assert result.returncode == 0
    assert "Server Version:" in result.stdout
    assert "Swarm: inactive" in result.stdout
    assert f"Docker Root Dir: {docker.daemon.root}" in result.stdout
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Containers"] >= 1
    assert info["Images"] >= 1
    assert info["OSType"] == "linux"


# --- running containers -------------------------------------------------------------------


def test_run_rm_passes_the_exit_code_and_output_through(docker: DockerCLI, made: Made) -> None:
    name = made.container()

    result = docker(
        "run", "--rm", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
        check=False,
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert "err" in result.stderr
    assert docker("ps", "-a", "-q", "--filter", f"name={name}").stdout == ""


def test_run_detached_publishes_a_port(docker: DockerCLI, made: Made) -> None:
    port = free_port()
    script = (
        "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www"
    )

    run_detached(docker, made.container(), "-p", f"{port}:8080", "busybox", "sh", "-c", script)

    status, body = wait_for(lambda: http_get(port, "/index.html"), f"httpd on port {port}")
    assert status == 200
    assert body == b"hello-from-httpd\n"


def test_run_interactive_terminal(docker: DockerCLI, made: Made) -> None:
    session = docker.pty("run", "-it", "--rm", "--name", made.container(), "busybox", "sh")
    try:
        session.expect(b"# ")
        session.send(b"echo $((6*7))\r")
        session.expect(b"42\r\n")
        session.send(b"exit 5\r")

        assert session.wait() == 5
    finally:
        session.close()


def test_ps_lists_running_and_with_all_stopped_containers(docker: DockerCLI, made: Made) -> None:
    running = sleeper(docker, made)
    stopped = made.container()
    docker("run", "--name", stopped, "busybox", "true")

    table = docker("ps").stdout.splitlines()
    names = docker("ps", "--format", "{{.Names}}").stdout.split()
    all_names = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    status = docker("ps", "-a", "--filter", f"name={stopped}", "--format", "{{.Status}}").stdout

    assert table[0].split()[:2] == ["CONTAINER", "ID"]
    assert any(line.endswith(running) and " Up " in line for line in table[1:])
    assert running in names
    assert stopped not in names
    assert {running, stopped} <= set(all_names)
    assert status.startswith("Exited (0)")


def test_logs_follow_streams_until_the_container_exits(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    script = "echo first; while [ ! -f /tmp/go ]; do sleep 0.05; done; echo second"
    run_detached(docker, name, "busybox", "sh", "-c", script)

    with stopped_at_end(docker.popen("logs", "-f", name)) as follow:
        assert follow.stdout is not None
        seen = read_until(follow.stdout, b"first\n")
        assert follow.poll() is None  # still following the running container
        release(docker, name)
        rest, _ = follow.communicate(timeout=60)

    assert follow.returncode == 0
    assert (seen + rest).decode() == "first\nsecond\n"


def test_exec_runs_a_command_in_a_running_container(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)
    script = 'echo "$GREETING $PWD"; exit 4'

    result = docker(
        "exec", "-e", "GREETING=hi", "-w", "/tmp", name, "sh", "-c", script, check=False
    )

    assert result.returncode == 4
    assert result.stdout == "hi /tmp\n"


def test_exec_interactive_terminal(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)
    session = docker.pty("exec", "-it", name, "sh")
    try:
        session.expect(b"# ")
        session.send(b"echo $((6*7))\r")
        session.expect(b"42\r\n")
        session.send(b"exit 5\r")

        assert session.wait() == 5
    finally:
        session.close()
    assert docker.inspect(name)["State"]["Status"] == "running"


def test_stop_sends_sigterm(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    trap = 'trap "exit 0" TERM; while true; do sleep 0.05; done'
    run_detached(docker, name, "busybox", "sh", "-c", trap)

    result = docker("stop", name)

    assert result.stdout.strip() == name
    state = docker.inspect(name)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)


def test_stop_kills_what_ignores_sigterm_after_the_timeout(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)  # pid 1 of its namespace: SIGTERM does not end it

    docker("stop", "-t", "1", name)

    state = docker.inspect(name)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


def test_rm_removes_a_stopped_container(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    docker("run", "--name", name, "busybox", "true")

    result = docker("rm", name)

    assert result.stdout.strip() == name
    assert docker("ps", "-a", "-q", "--filter", f"name={name}").stdout == ""
    gone = docker("inspect", name, check=False)
    assert gone.returncode != 0
    assert f"No such object: {name}" in gone.stderr


def test_rm_refuses_a_running_container_unless_forced(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)

    refused = docker("rm", name, check=False)
    forced = docker("rm", "-f", name)

    assert refused.returncode != 0
    assert "cannot remove a running container" in refused.stderr
    assert forced.stdout.strip() == name
    assert docker("ps", "-a", "-q", "--filter", f"name={name}").stdout == ""


# --- images -------------------------------------------------------------------------------


def test_images_lists_busybox(docker: DockerCLI) -> None:
    image_id = docker.inspect("--type", "image", "busybox")["Id"]

    rows = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    table = docker("images").stdout.splitlines()

    assert f"busybox:latest {image_id.removeprefix('sha256:')[:12]}" in rows
    assert table[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"]


def test_build_with_the_classic_builder(docker: DockerCLI, made: Made, tmp_path: Path) -> None:
    tag = made.image("v1")
    (tmp_path / "hello.txt").write_text("hello from the context\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        f"RUN echo {uuid.uuid4().hex} > /built.txt\n"
        "COPY hello.txt /hello.txt\n"
        "ENV GREETING=hi\n"
        'CMD ["cat", "/hello.txt"]\n'
    )
    busybox_id = docker.inspect("--type", "image", "busybox")["Id"]

    result = docker("build", "-t", tag, str(tmp_path), env={"DOCKER_BUILDKIT": "0"})

    out = result.stdout
    steps = re.findall(r"^Step (\d+/\d+) : (\w+)", out, re.M)
    assert [text for _, text in steps] == ["FROM", "RUN", "COPY", "ENV", "CMD"]
    assert [n for n, _ in steps] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    ids = re.findall(r"^ ---> ([0-9a-f]{12})$", out, re.M)
    built = re.findall(r"^Successfully built ([0-9a-f]{12})$", out, re.M)
    assert len(ids) == 5
    assert ids[0] == busybox_id.removeprefix("sha256:")[:12]
    assert built == [ids[-1]]
    assert f"Successfully tagged {tag}\n" in out
    image = docker.inspect("--type", "image", tag)
    assert image["Id"].removeprefix("sha256:").startswith(built[0])
    assert "GREETING=hi" in image["Config"]["Env"]
    assert docker("run", "--rm", tag).stdout == "hello from the context\n"


def test_tag_names_an_image(docker: DockerCLI, made: Made) -> None:
    name = made.image("v2")

    docker("tag", "busybox", name)

    tagged = docker.inspect("--type", "image", name)
    assert tagged["Id"] == docker.inspect("--type", "image", "busybox")["Id"]
    assert name in tagged["RepoTags"]
    repository, tag = name.split(":")
    listed = docker("images", "--format", "{{.Tag}}", repository).stdout.split()
    assert listed == [tag]


def test_rmi_untags_and_removes(docker: DockerCLI, made: Made) -> None:
    name = made.image()
    docker("tag", "busybox", name)

    result = docker("rmi", name)
    missing = docker("rmi", name, check=False)

    assert result.stdout.strip() == f"Untagged: {name}"
    assert docker("images", "-q", name.split(":")[0]).stdout == ""
    assert docker("images", "-q", "busybox").stdout.strip()  # the image is still there
    assert missing.returncode != 0
    assert "No such image" in missing.stderr


def test_commit_makes_an_image_of_a_container(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)
    docker("exec", name, "sh", "-c", "echo committed > /made.txt")
    tag = made.image("snap")

    result = docker("commit", "-m", "a file", "-c", 'CMD ["cat", "/made.txt"]', name, tag)

    image = docker.inspect("--type", "image", tag)
    assert result.stdout.strip() == image["Id"]
    assert image["Comment"] == "a file"
    assert image["Config"]["Cmd"] == ["cat", "/made.txt"]
    assert docker("run", "--rm", tag).stdout == "committed\n"


# --- volumes and networks -----------------------------------------------------------------


def test_volume_create_ls_inspect_rm(docker: DockerCLI, made: Made) -> None:
    name = made.volume()

    assert docker("volume", "create", "--label", "purpose=cli-test", name).stdout.strip() == name
    listed = docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.splitlines()
    filtered = docker("volume", "ls", "-q", "--filter", f"name={name}").stdout.split()
    volume = json.loads(docker("volume", "inspect", name).stdout)[0]
    docker("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    kept = docker("run", "--rm", "-v", f"{name}:/data", "busybox", "cat", "/data/f").stdout
    removed = docker("volume", "rm", name).stdout.strip()
    gone = docker("volume", "inspect", name, check=False)

    assert f"local {name}" in listed
    assert filtered == [name]
    assert (volume["Name"], volume["Driver"]) == (name, "local")
    assert volume["Labels"] == {"purpose": "cli-test"}
    assert volume["Mountpoint"].endswith(f"/{name}/_data")
    assert kept == "kept\n"
    assert removed == name
    assert gone.returncode != 0
    assert "no such volume" in gone.stderr.lower()


def test_network_create_ls_inspect_rm(docker: DockerCLI, made: Made) -> None:
    name = made.network()

    network_id = docker("network", "create", name).stdout.strip()
    listed = docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.splitlines()
    network = json.loads(docker("network", "inspect", name).stdout)[0]
    removed = docker("network", "rm", name).stdout.strip()
    after = docker("network", "ls", "--format", "{{.Name}}").stdout.split()

    assert f"{name} bridge" in listed
    assert network["Id"] == network_id
    assert (network["Name"], network["Driver"]) == (name, "bridge")
    assert network["IPAM"]["Config"][0]["Subnet"]
    assert removed == name
    assert name not in after


def test_network_connect_and_disconnect(docker: DockerCLI, made: Made) -> None:
    network = made.network()
    docker("network", "create", network)
    name = sleeper(docker, made)

    docker("network", "connect", network, name)
    endpoint = docker.inspect(name)["NetworkSettings"]["Networks"].get(network)
    members = json.loads(docker("network", "inspect", network).stdout)[0]["Containers"]
    addresses = docker("exec", name, "ip", "-4", "-o", "addr").stdout
    docker("network", "disconnect", network, name)
    after = docker.inspect(name)["NetworkSettings"]["Networks"]

    assert endpoint is not None
    assert endpoint["IPAddress"]
    assert f" {endpoint['IPAddress']}/" in addresses
    assert [m["Name"] for m in members.values()] == [name]
    assert network not in after
    assert "bridge" in after


# --- inspecting and changing containers ----------------------------------------------------


def test_inspect_a_running_container(docker: DockerCLI, made: Made) -> None:
    volume = made.volume()
    port = free_port()
    name = sleeper(docker, made, "-e", "COLOUR=blue", "-v", f"{volume}:/data", "-p", f"{port}:80")

    c = docker.inspect(name)

    assert c["Name"] == f"/{name}"
    assert c["State"]["Status"] == "running"
    assert c["State"]["Running"] is True
    assert c["State"]["Pid"] > 0
    assert c["Config"]["Image"] == "busybox"
    assert c["Config"]["Cmd"] == ["sleep", "600"]
    assert "COLOUR=blue" in c["Config"]["Env"]
    [mount] = c["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"]) == ("volume", volume, "/data")
    assert mount["RW"] is True
    ports = c["NetworkSettings"]["Ports"]["80/tcp"]
    assert str(port) in [p["HostPort"] for p in ports]
    bridge = c["NetworkSettings"]["Networks"]["bridge"]
    assert bridge["IPAddress"]
    formatted = docker("inspect", "-f", "{{.State.Status}} {{.Config.Image}}", name).stdout
    assert formatted == "running busybox\n"


def test_inspect_an_exited_container(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    docker("run", "--name", name, "busybox", "sh", "-c", "exit 3", check=False)

    state = docker.inspect(name)["State"]

    assert state["Status"] == "exited"
    assert state["Running"] is False
    assert state["ExitCode"] == 3
    assert not state["FinishedAt"].startswith("0001-")


def test_cp_from_the_host_into_a_container(docker: DockerCLI, made: Made, tmp_path: Path) -> None:
    name = sleeper(docker, made)
    source = tmp_path / "greeting.txt"
    source.write_text("copied in\n")

    docker("cp", str(source), f"{name}:/tmp/greeting.txt")

    assert docker("exec", name, "cat", "/tmp/greeting.txt").stdout == "copied in\n"


def test_cp_from_a_container_to_the_host(docker: DockerCLI, made: Made, tmp_path: Path) -> None:
    name = sleeper(docker, made)
    docker("exec", name, "sh", "-c", "mkdir -p /out/sub && echo copied out > /out/sub/f")

    docker("cp", f"{name}:/out", str(tmp_path / "out"))

    assert (tmp_path / "out" / "sub" / "f").read_text() == "copied out\n"


def test_stats_no_stream(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)

    table = docker("stats", "--no-stream", name).stdout.splitlines()
    row = docker("stats", "--no-stream", "--format", "{{.Name}}|{{.PIDs}}|{{.MemUsage}}", name)

    assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert len(table) == 2
    shown, pids, memory = row.stdout.strip().split("|")
    assert (shown, pids) == (name, "1")
    assert not memory.startswith("0B ")


def test_events_since_until_with_filters(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    since = f"{time.time() - 1:.3f}"
    docker("run", "--name", name, "busybox", "sh", "-c", "exit 2", check=False)

    def actions() -> list[str] | None:
        out = docker(
            "events", "--since", since, "--until", f"{time.time():.3f}",
            "--filter", f"container={name}", "--format", "{{.Type}} {{.Action}}",
        ).stdout.splitlines()  # fmt: skip
        return out if "container die" in out else None

    seen = wait_for(actions, "the container's die event")
    died = docker(
        "events", "--since", since, "--until", f"{time.time():.3f}",
        "--filter", f"container={name}", "--filter", "event=die",
        "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ).stdout  # fmt: skip

    container_events = [line.split()[1] for line in seen if line.startswith("container ")]
    assert [a for a in container_events if a in ("create", "start", "die")] == [
        "create",
        "start",
        "die",
    ]
    assert died == f"{name} 2\n"


def test_events_stream_as_they_happen(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    since = f"{time.time() - 1:.3f}"
    listen = ["--filter", f"container={name}", "--format", "{{.Action}}"]

    with stopped_at_end(docker.popen("events", "--since", since, *listen)) as events:
        assert events.stdout is not None
        docker("create", "--name", name, "busybox", "true")
        seen = read_until(events.stdout, b"create\n")
        # The stream has shown an event: what happens from now on reaches it live.
        docker("start", name)
        seen += read_until(events.stdout, b"die\n")
        assert events.poll() is None  # no --until: it goes on

    actions = seen.decode().split()
    assert actions.index("create") < actions.index("start") < actions.index("die")


def test_top_lists_the_processes(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)

    lines = docker("top", name).stdout.splitlines()

    assert "PID" in lines[0].split()
    assert "CMD" in lines[0].split()
    assert any(line.endswith("sleep 600") for line in lines[1:])


def test_port_shows_the_published_ports(docker: DockerCLI, made: Made) -> None:
    port = free_port()
    name = sleeper(docker, made, "-p", f"{port}:8080")

    all_ports = docker("port", name).stdout.splitlines()
    one = docker("port", name, "8080/tcp").stdout.splitlines()

    assert f"8080/tcp -> 0.0.0.0:{port}" in all_ports
    assert f"0.0.0.0:{port}" in one


def test_rename(docker: DockerCLI, made: Made) -> None:
    old = sleeper(docker, made)
    new = made.container()

    docker("rename", old, new)

    assert docker.inspect(new)["Name"] == f"/{new}"
    assert docker("ps", "--filter", f"name={new}", "--format", "{{.Names}}").stdout == f"{new}\n"
    assert docker("inspect", old, check=False).returncode != 0


def test_pause_and_unpause(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made)

    docker("pause", name)
    paused = docker.inspect(name)["State"]
    status = docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
    refused = docker("exec", name, "true", check=False)
    docker("unpause", name)
    resumed = docker.inspect(name)["State"]

    assert (paused["Status"], paused["Paused"]) == ("paused", True)
    assert "(Paused)" in status
    assert refused.returncode != 0
    assert "paused" in refused.stderr
    assert (resumed["Status"], resumed["Paused"]) == ("running", False)
    assert docker("exec", name, "echo", "awake").stdout == "awake\n"


def test_wait_returns_the_exit_code(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    run_detached(docker, name, "busybox", "sh", "-c", UNTIL_GO, "sh", "7")

    with stopped_at_end(docker.popen("wait", name)) as waiting:
        assert waiting.poll() is None  # the container still runs
        release(docker, name)
        out, _ = waiting.communicate(timeout=60)

    assert waiting.returncode == 0
    assert out == b"7\n"


def test_diff_lists_the_changes(docker: DockerCLI, made: Made) -> None:
    name = made.container()
    script = "mkdir /newdir && echo x > /newdir/f && echo extra >> /etc/passwd && rm /bin/ls"
    docker("run", "--name", name, "busybox", "sh", "-c", script)

    changes = docker("diff", name).stdout.splitlines()

    assert {"A /newdir", "A /newdir/f", "C /etc/passwd", "D /bin/ls"} <= set(changes)


def test_update_changes_the_limits_of_a_running_container(docker: DockerCLI, made: Made) -> None:
    name = sleeper(docker, made, "--memory", "32m")
    cid = docker.inspect(name)["Id"]
    memory_dir = Path("/sys/fs/cgroup/memory") / docker.daemon.cgroup_parent.lstrip("/") / cid
    cpu_dir = Path("/sys/fs/cgroup/cpu") / docker.daemon.cgroup_parent.lstrip("/") / cid
    if not memory_dir.is_dir():  # cgroup v2 alone: one directory, v2 files
        pytest.skip("checks the cgroup v1 files; this machine has cgroup v2 alone")

    updated = docker("update", "--memory", "64m", "--cpus", "0.5", name)
    refused = docker("update", "--restart", "sometimes", name, check=False)

    assert updated.stdout == f"{name}\n"
    host = docker.inspect(name)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (64 << 20, 64 << 20, 5 * 10**8)
    assert (memory_dir / "memory.limit_in_bytes").read_text() == f"{64 << 20}\n"
    assert (cpu_dir / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert refused.returncode == 1
    assert refused.stderr == (
        "Error response from daemon: invalid restart policy: unknown policy 'sometimes'; "
        "use one of 'no', 'always', 'on-failure', or 'unless-stopped'\n"
    )
