"""docker-py (the `docker` package on PyPI) drives `moor daemon` unchanged: the calls a
user of docker-py writes (containers, exec, logs, builds, images against a registry,
volumes, networks, events, archives, stats), each checked against what dockerd answers.

Every test names what it makes after itself plus a random suffix and removes it in its
teardown, whatever happened, so that no test sees another's leftovers.
"""

from __future__ import annotations

import io
import socket
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import pytest
import requests
from docker.models.containers import Container
from docker.utils.socket import next_frame_header, read_exactly

import registry_servers
from daemon import Daemon, running_daemon

pytestmark = [
    pytest.mark.root,
    # docker-py leaves the sockets of some responses it hands out (exec_run(stream=True),
    # attach_socket, build logs) to the garbage collector, which warns; dockerd gets the
    # same warnings from the same calls.
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

WAIT = 60.0
T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("docker-py") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, timeout=120)
    try:
        yield c
    finally:
        c.close()


class Made:
    """What one test creates, by name, removed (force) at its end in reverse kinds:
    containers first, then networks, volumes and images."""

    def __init__(self, client: docker.DockerClient, test: str) -> None:
        self.client = client
        self.prefix = "pyt-" + test.removeprefix("test_").replace("_", "-")[:30]
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []

    def unique(self, kind: str) -> str:
        return f"{self.prefix}-{kind}-{uuid.uuid4().hex[:8]}"

    def container(self) -> str:
        name = self.unique("c")
        self.containers.append(name)
        return name

    def network(self) -> str:
        name = self.unique("net")
        self.networks.append(name)
        return name

    def volume(self) -> str:
        name = self.unique("vol")
        self.volumes.append(name)
        return name

    def image(self, ref: str) -> str:
        self.images.append(ref)
        return ref

    def cleanup(self) -> None:
        """Remove everything, going on past failures; then raise the first of them."""
        api = self.client.api
        removals: list[Callable[[], object]] = [
            *(lambda n=n: api.remove_container(n, force=True, v=True) for n in self.containers),
            *(lambda n=n: api.remove_network(n) for n in self.networks),
            *(lambda n=n: api.remove_volume(n, force=True) for n in self.volumes),
            *(lambda r=r: api.remove_image(r, force=True) for r in self.images),
        ]
        failures: list[Exception] = []
        for remove in removals:
            try:
                remove()
            except docker.errors.NotFound:
                pass  # never made, or gone already
            except docker.errors.APIError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture
def made(client: docker.DockerClient, request: pytest.FixtureRequest) -> Iterator[Made]:
    m = Made(client, request.node.name)
    try:
        yield m
    finally:
        m.cleanup()


def sleeper(client: docker.DockerClient, made: Made, **kwargs: Any) -> Container:
    """A running busybox container that does nothing until removed."""
    container = client.containers.run(
        "busybox", "sleep 300", detach=True, name=made.container(), **kwargs
    )
    assert isinstance(container, Container)
    return container


# --------------------------------------------------------------------- system


def test_version(client: docker.DockerClient) -> None:
    version = client.version()

    assert version["Os"] == "linux"
    assert version["ApiVersion"] == client.api.api_version
    for key in ("Version", "Arch", "GoVersion", "KernelVersion", "MinAPIVersion"):
        assert version[key], key
    assert any(c["Name"] == "Engine" for c in version["Components"])


def test_ping(client: docker.DockerClient) -> None:
    assert client.ping() is True


def test_info(client: docker.DockerClient) -> None:
    info = client.info()

    assert info["OSType"] == "linux"
    assert info["Images"] >= 1
    for key in ("ID", "ServerVersion", "Driver", "KernelVersion", "NCPU", "MemTotal"):
        assert info[key], key
    assert (
        info["Containers"]
        == info["ContainersRunning"] + info["ContainersPaused"] + info["ContainersStopped"]
    )


def test_df(client: docker.DockerClient) -> None:
    df = client.df()

    assert {"LayersSize", "Images", "Containers", "Volumes"} <= set(df)
    assert any("busybox:latest" in (i["RepoTags"] or []) for i in df["Images"])


# ----------------------------------------------------------------- containers


def test_run_detached_then_inspect_logs_stop_remove(
    client: docker.DockerClient, made: Made
) -> None:
    name = made.container()
    container = client.containers.run(
        "busybox",
        ["sh", "-c", "echo hello; exec sleep 300"],
        detach=True,
        name=name,
        labels={"moorage.test": name},
        environment={"GREETING": "hi"},
    )
    assert isinstance(container, Container)

    wait_for(lambda: b"hello\n" in container.logs(), "the container's first line")
    container.reload()
    assert container.status == "running"
    assert container.name == name
    assert container.attrs["Name"] == f"/{name}"
    assert container.attrs["Config"]["Image"] == "busybox"
    assert container.attrs["Config"]["Labels"] == {"moorage.test": name}
    assert "GREETING=hi" in container.attrs["Config"]["Env"]
    assert container.attrs["State"]["Running"] is True
    assert container.attrs["State"]["Pid"] > 0
    assert client.containers.get(name).id == container.id
    assert container.image.id == client.images.get("busybox").id
    assert container.logs() == b"hello\n"

    container.stop(timeout=1)
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["Running"] is False
    container.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def test_run_attached_returns_the_output(client: docker.DockerClient, made: Made) -> None:
    name = made.container()

    out = client.containers.run(
        "busybox", ["sh", "-c", "echo one; echo two"], name=name, remove=True
    )

    assert out == b"one\ntwo\n"
    assert client.containers.list(all=True, filters={"name": name}) == []


def test_run_attached_stream(client: docker.DockerClient, made: Made) -> None:
    out = client.containers.run(
        "busybox", ["sh", "-c", "echo a; echo b"], name=made.container(), stream=True
    )

    assert b"".join(out) == b"a\nb\n"


def test_run_nonzero_exit_raises_container_error(client: docker.DockerClient, made: Made) -> None:
    name = made.container()

    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run(
            "busybox", ["sh", "-c", "echo out; echo oops >&2; exit 3"], name=name, remove=True
        )

    assert failed.value.exit_status == 3
    assert failed.value.stderr == b"oops\n"
    assert client.containers.list(all=True, filters={"name": name}) == []


def test_run_stderr_only(client: docker.DockerClient, made: Made) -> None:
    out = client.containers.run(
        "busybox",
        ["sh", "-c", "echo out; echo err >&2"],
        name=made.container(),
        stdout=False,
        stderr=True,
        remove=True,
    )

    assert out == b"err\n"


def test_run_detached_with_remove_removes_after_exit(
    client: docker.DockerClient, made: Made
) -> None:
    name = made.container()
    container = client.containers.run(
        "busybox", ["sh", "-c", "exit 0"], detach=True, remove=True, name=name
    )
    assert isinstance(container, Container)

    def gone() -> bool:
        return not client.containers.list(all=True, filters={"name": name})

    wait_for(gone, "the auto-removed container to go")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def test_run_with_process_options(client: docker.DockerClient, made: Made) -> None:
    out = client.containers.run(
        "busybox",
        ["-c", 'echo "$(id -u):$(id -g) $(pwd) $(hostname) $MODE $(cat /etc/hosts | grep -c db)"'],
        entrypoint=["sh"],
        user="1000:1000",
        working_dir="/tmp",
        hostname="pyhost",
        environment=["MODE=set"],
        extra_hosts={"db": "10.1.2.3"},
        name=made.container(),
        remove=True,
    )

    assert out == b"1000:1000 /tmp pyhost set 1\n"


def test_run_with_host_config_options(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", "sleep 300", detach=True, name=made.container(),
        mem_limit="64m", read_only=True, tmpfs={"/scratch": "size=1m"}, cap_drop=["CHOWN"],
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}, init=True,
        shm_size="32m", ulimits=[docker.types.Ulimit(name="nofile", soft=100, hard=200)],
    )  # fmt: skip
    assert isinstance(container, Container)
    host_config = container.attrs["HostConfig"]

    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["Tmpfs"] == {"/scratch": "size=1m"}
    assert host_config["CapDrop"] == ["CHOWN"]
    assert host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host_config["Init"] is True
    assert host_config["ShmSize"] == 32 * 1024 * 1024
    assert host_config["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    script = "ulimit -n; touch /ro 2>/dev/null || echo ro; touch /scratch/f && echo tmpfs"
    result = container.exec_run(["sh", "-c", script])
    assert result.output == b"100\nro\ntmpfs\n"


def test_inspect_shows_every_host_config_field(client: docker.DockerClient, made: Made) -> None:
    # docker-py sends only what its caller set; dockerd's inspect still shows each field.
    container = client.containers.create("busybox", "true", name=made.container())
    host_config = container.attrs["HostConfig"]

    assert host_config["Memory"] == 0
    assert host_config["Privileged"] is False
    assert host_config["ReadonlyRootfs"] is False
    assert host_config["CapAdd"] is None
    assert host_config["AutoRemove"] is False
    assert host_config["ShmSize"] == 64 * 1024 * 1024
    assert host_config["RestartPolicy"]["MaximumRetryCount"] == 0
    assert "/proc/kcore" in host_config["MaskedPaths"]
    assert host_config["LogConfig"]["Type"] == "json-file"


def test_bind_mounts_and_mount_objects(
    client: docker.DockerClient, made: Made, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    volume = made.volume()
    mounts = [
        docker.types.Mount("/bind", str(tmp_path), type="bind", read_only=True),
        docker.types.Mount("/vol", volume, type="volume"),
        docker.types.Mount("/tmpfs", None, type="tmpfs"),
    ]

    out = client.containers.run(
        "busybox", ["sh", "-c", "cat /bind/in.txt; echo v > /vol/f; cat /vol/f; "
                    "touch /bind/x 2>/dev/null || echo ro; grep -c ' /tmpfs tmpfs' /proc/mounts"],
        mounts=mounts, volumes=[f"{tmp_path}:/rw"], name=made.container(), remove=True,
    )  # fmt: skip

    assert out == b"from host\nv\nro\n1\n"
    assert client.volumes.get(volume).name == volume


def test_create_then_start_and_kill(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.create("busybox", "sleep 300", name=made.container())
    assert container.status == "created"

    container.start()
    container.reload()
    assert container.status == "running"
    container.kill()

    assert container.wait()["StatusCode"] == 137
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["ExitCode"] == 137


def test_rename_restart_pause_unpause(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)
    new_name = made.container()

    container.rename(new_name)
    container.reload()
    assert container.name == new_name
    pid = container.attrs["State"]["Pid"]
    container.restart(timeout=1)
    container.reload()
    assert container.status == "running"
    assert container.attrs["State"]["Pid"] != pid
    assert container.attrs["RestartCount"] == 0
    container.pause()
    container.reload()
    assert container.status == "paused"
    assert container.attrs["State"]["Paused"] is True
    container.unpause()
    container.reload()
    assert container.status == "running"


def test_update_limits_and_restart_policy(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.update(
        mem_limit="64m", cpu_period=50000, cpu_quota=25000, restart_policy={"Name": "always"}
    )
    container.reload()

    assert not result["Warnings"]
    host = container.attrs["HostConfig"]
    assert (host["Memory"], host["CpuPeriod"], host["CpuQuota"]) == (64 << 20, 50000, 25000)
    assert host["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    with pytest.raises(docker.errors.APIError, match="Minimum memory limit allowed is 6MB") as bad:
        container.update(mem_limit="1m")
    assert bad.value.status_code == 400


def test_wait_returns_the_status_code(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "exit 7"], detach=True, name=made.container()
    )
    assert isinstance(container, Container)

    result = container.wait()

    assert result["StatusCode"] == 7
    assert result.get("Error") is None


def test_wait_conditions_and_timeout(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout)):
        container.wait(timeout=0.5)  # still running: the wait gives up
    container.kill()
    assert container.wait(condition="not-running")["StatusCode"] == 137


def test_healthcheck(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", "sleep 300", detach=True, name=made.container(),
        healthcheck={"test": ["CMD", "true"], "interval": 100_000_000},
    )  # fmt: skip
    assert isinstance(container, Container)

    def healthy() -> bool:
        container.reload()
        return container.health == "healthy"

    wait_for(healthy, "the container to be healthy")
    assert container.attrs["State"]["Health"]["Log"][0]["ExitCode"] == 0


def test_list_by_label_and_prune(client: docker.DockerClient, made: Made) -> None:
    label = made.unique("label")
    running = sleeper(client, made, labels={"moorage.test": label})
    stopped = client.containers.run(
        "busybox", "true", detach=True, name=made.container(), labels={"moorage.test": label}
    )
    assert isinstance(stopped, Container)
    stopped.wait()
    sleeper(client, made, labels={"moorage.test": "other"})

    listed = client.containers.list(filters={"label": f"moorage.test={label}"})
    listed_all = client.containers.list(all=True, filters={"label": f"moorage.test={label}"})
    pruned = client.containers.prune(filters={"label": f"moorage.test={label}"})

    assert [c.id for c in listed] == [running.id]
    assert {c.id for c in listed_all} == {running.id, stopped.id}
    assert pruned["ContainersDeleted"] == [stopped.id]
    assert isinstance(pruned["SpaceReclaimed"], int)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(stopped.id)
    assert client.containers.get(running.id).status == "running"


def test_list_filters_status_ancestor_and_limits(client: docker.DockerClient, made: Made) -> None:
    label = made.unique("label")
    running = sleeper(client, made, labels={"moorage.test": label})
    exited = client.containers.run(
        "busybox", "true", detach=True, name=made.container(), labels={"moorage.test": label}
    )
    assert isinstance(exited, Container)
    exited.wait()
    by_label = {"label": f"moorage.test={label}"}

    status = client.containers.list(all=True, filters={**by_label, "status": "exited"})
    ancestor = client.containers.list(all=True, filters={**by_label, "ancestor": "busybox"})
    sparse = client.containers.list(all=True, sparse=True, filters=by_label)
    newest = client.containers.list(all=True, limit=1)

    assert [c.id for c in status] == [exited.id]
    assert {c.id for c in ancestor} == {running.id, exited.id}
    assert {c.id for c in sparse} == {running.id, exited.id}
    assert [c.id for c in newest] == [exited.id]


def test_top(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    top = container.top()

    assert "PID" in top["Titles"]
    command = top["Titles"].index("CMD") if "CMD" in top["Titles"] else -1
    assert any(row[command] == "sleep 300" for row in top["Processes"]), top


def test_stats_once_and_streamed(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    once = container.stats(stream=False)
    streamed = next(container.stats(stream=True, decode=True))

    for stats in (once, streamed):
        assert stats["id"] == container.id
        assert stats["name"] == f"/{container.name}"
        assert stats["memory_stats"]["usage"] > 0
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] >= 0
        assert stats["pids_stats"]["current"] >= 1
        assert "read" in stats
        assert "precpu_stats" in stats


def test_stats_one_shot(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    stats = container.stats(stream=False, one_shot=True)

    assert stats["id"] == container.id
    assert stats["memory_stats"]["usage"] > 0


def test_diff_export_commit(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo x > /made-here"], detach=True, name=made.container()
    )
    assert isinstance(container, Container)
    container.wait()
    repository = made.unique("commit")
    ref = made.image(f"{repository}:1")

    changes = container.diff()
    exported = b"".join(container.export())
    image = container.commit(repository, "1", changes=["LABEL committed=yes"])

    assert {"Path": "/made-here", "Kind": 1} in changes
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        assert "made-here" in tar.getnames()
    assert ref in image.tags
    assert image.labels == {"committed": "yes"}
    out = client.containers.run(ref, "cat /made-here", name=made.container(), remove=True)
    assert out == b"x\n"


# ------------------------------------------------------------ logs and attach


def test_logs_stream_follow_yields_lines_as_they_come(
    client: docker.DockerClient, made: Made
) -> None:
    # The second line waits for a file that only the test creates, after it has read
    # the first: the first line must have come while the container still runs.
    script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second"
    container = client.containers.run(
        "busybox", ["sh", "-c", script], detach=True, name=made.container()
    )
    assert isinstance(container, Container)

    stream = container.logs(stream=True, follow=True)
    seen = b""
    while b"first\n" not in seen:
        seen += next(stream)
    container.reload()
    assert container.status == "running"
    assert container.exec_run(["touch", "/tmp/go"]).exit_code == 0
    rest = b"".join(stream)  # ends when the container does

    assert seen + rest == b"first\nsecond\n"
    assert container.wait()["StatusCode"] == 0


def test_logs_timestamps_and_tail(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo a; echo b; echo c"], detach=True, name=made.container()
    )
    assert isinstance(container, Container)
    container.wait()

    assert container.logs(tail=2) == b"b\nc\n"
    stamped = container.logs(timestamps=True).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["a", "b", "c"]
    assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)


def test_logs_since_until(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo a"], detach=True, name=made.container()
    )
    assert isinstance(container, Container)
    container.wait()
    stamp = container.logs(timestamps=True).decode().split(" ", 1)[0]
    # RFC 3339 with nanoseconds; seconds are enough to place the line.
    written = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    second = written.timestamp()

    assert container.logs(since=second - 1) == b"a\n"
    assert container.logs(since=second + 2) == b""
    assert container.logs(until=second - 1) == b""
    assert container.logs(since=second - 1, until=second + 2) == b"a\n"


def test_attach_socket_stdin_and_stdout(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.create("busybox", "cat", name=made.container(), stdin_open=True)
    container.start()

    sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    try:
        raw: socket.socket = sock._sock
        raw.sendall(b"ping\n")
        stream, size = next_frame_header(sock)
        payload = read_exactly(sock, size)
    finally:
        sock.close()

    assert (stream, payload) == (1, b"ping\n")


def test_attach_stream_with_logs(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                    "echo after"], detach=True, name=made.container(),
    )  # fmt: skip
    assert isinstance(container, Container)
    wait_for(lambda: b"before" in container.logs(), "the first line")

    stream = container.attach(stdout=True, stderr=True, stream=True, logs=True)
    seen = b""
    while b"before\n" not in seen:
        seen += next(stream)
    container.exec_run(["touch", "/tmp/go"])
    seen += b"".join(stream)

    assert seen == b"before\nafter\n"


def test_attach_without_stream_gives_the_logs_only(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo out; echo err >&2"], detach=True, name=made.container()
    )
    assert isinstance(container, Container)
    container.wait()

    assert container.attach() == b""  # neither stream nor logs: nothing, as dockerd
    assert sorted(container.attach(logs=True).splitlines()) == [b"err", b"out"]
    assert container.attach(logs=True, stdout=False) == b"err\n"


# ------------------------------------------------------------------- archives


def test_put_and_get_archive(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        info.mode = 0o640
        tar.addfile(info, io.BytesIO(b"hello\n"))

    assert container.put_archive("/tmp", upload.getvalue()) is True
    assert container.exec_run(["cat", "/tmp/hello.txt"]).output == b"hello\n"
    chunks, stat = container.get_archive("/tmp/hello.txt")
    data = b"".join(chunks)

    assert stat["name"] == "hello.txt"
    assert stat["size"] == 6
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("hello.txt")
        assert member.mode & 0o777 == 0o640
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == b"hello\n"
    with pytest.raises(docker.errors.NotFound):
        container.get_archive("/tmp/no-such-file")


def test_put_archive_gzipped_and_get_a_directory(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w:gz") as tar:
        info = tarfile.TarInfo("dir/f.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"gz\n"))

    assert container.put_archive("/tmp", upload.getvalue()) is True
    chunks, stat = container.get_archive("/tmp/dir")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        names = sorted(tar.getnames())

    assert stat["name"] == "dir"
    assert stat["mode"] & 0x80000000  # os.ModeDir, as Go encodes it
    assert names == ["dir", "dir/f.txt"]


def test_put_archive_into_a_missing_directory(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    with pytest.raises(docker.errors.NotFound):
        container.put_archive("/no/such/dir", b"")


# ----------------------------------------------------------------------- exec


def test_exec_run_exit_code_and_output(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 4"])

    assert result.exit_code == 4
    assert sorted(result.output.splitlines()) == [b"err", b"out"]  # two pipes: any order


def test_exec_run_environment_workdir_user(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.exec_run(
        ["sh", "-c", 'echo "$X $(pwd) $(id -u)"'],
        environment={"X": "set"},
        workdir="/tmp",
        user="65534",
    )

    assert (result.exit_code, result.output) == (0, b"set /tmp 65534\n")


def test_exec_run_demux(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)

    assert result.exit_code == 0
    assert result.output == (b"out\n", b"err\n")


def test_exec_run_stream(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.exec_run(["sh", "-c", "echo a; echo b"], stream=True)

    assert result.exit_code is None
    assert b"".join(result.output) == b"a\nb\n"


def test_exec_run_tty(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.exec_run(["sh", "-c", "test -t 1 && echo tty"], tty=True)

    assert (result.exit_code, result.output) == (0, b"tty\r\n")


def test_exec_socket_stdin(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    result = container.exec_run("cat", stdin=True, socket=True)
    sock = result.output
    try:
        raw: socket.socket = sock._sock
        raw.sendall(b"echoed\n")
        stream, size = next_frame_header(sock)
        payload = read_exactly(sock, size)
    finally:
        sock.close()

    assert (stream, payload) == (1, b"echoed\n")


def test_exec_detached_and_inspect(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)
    api = client.api

    exec_id = api.exec_create(container.id, ["sh", "-c", "exit 3"])["Id"]
    assert not api.exec_start(exec_id, detach=True)

    def finished() -> dict[str, Any] | None:
        info: dict[str, Any] = api.exec_inspect(exec_id)
        return info if not info["Running"] and info["ExitCode"] is not None else None

    info = wait_for(finished, "the exec to finish")
    assert info["ExitCode"] == 3
    assert info["ContainerID"] == container.id
    assert info["ProcessConfig"]["entrypoint"] == "sh"


def test_exec_privileged_and_tty_run(client: docker.DockerClient, made: Made) -> None:
    container = sleeper(client, made)

    plain = container.exec_run(["sh", "-c", "grep CapEff /proc/self/status"])
    privileged = container.exec_run(["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)

    assert plain.output != privileged.output
    out = client.containers.run(
        "busybox", ["sh", "-c", "test -t 0 && echo tty"], tty=True, name=made.container(),
        remove=True,
    )  # fmt: skip
    assert out == b"tty\r\n"


# --------------------------------------------------------------------- builds


def test_build_with_build_args(client: docker.DockerClient, made: Made, tmp_path: Path) -> None:
    tag = made.image(f"{made.unique('img')}:1")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        "ARG GREETING=hi\n"
        "COPY message /message\n"
        'RUN echo "$GREETING $(cat /message)" > /greeting\n'
        "LABEL moorage.test=build\n"
        'CMD ["cat", "/greeting"]\n'
    )
    (tmp_path / "message").write_text("world")

    image, logs = client.images.build(
        path=str(tmp_path), tag=tag, buildargs={"GREETING": "hello"}, rm=True
    )
    log = list(logs)

    assert tag in image.tags
    assert image.labels == {"moorage.test": "build"}
    assert any("stream" in entry for entry in log)
    assert not any("error" in entry for entry in log)
    out = client.containers.run(tag, name=made.container(), remove=True)
    assert out == b"hello world\n"


def test_build_from_fileobj_with_dockerfile_name_target_and_labels(
    client: docker.DockerClient, made: Made
) -> None:
    tag = made.image(f"{made.unique('img')}:1")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = (
            b"FROM busybox AS first\nRUN echo first > /stage\n"
            b"FROM busybox AS second\nRUN echo second > /stage\n"
        )
        info = tarfile.TarInfo("build/Other.dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)

    image, _ = client.images.build(
        fileobj=context, custom_context=True, dockerfile="build/Other.dockerfile",
        target="first", tag=tag, labels={"moorage.test": "labels"},
    )  # fmt: skip

    assert image.labels == {"moorage.test": "labels"}
    assert client.containers.run(tag, "cat /stage", name=made.container(), remove=True) == (
        b"first\n"
    )


def test_build_uses_cache_the_second_time(
    client: docker.DockerClient, made: Made, tmp_path: Path
) -> None:
    tag = made.image(f"{made.unique('img')}:1")
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN echo {tag} > /f\n")

    first, _ = client.images.build(path=str(tmp_path), tag=tag)
    second, logs = client.images.build(path=str(tmp_path), tag=tag)

    assert second.id == first.id
    assert any("Using cache" in entry.get("stream", "") for entry in logs)


def test_build_failing_run_raises_build_error(
    client: docker.DockerClient, made: Made, tmp_path: Path
) -> None:
    tag = made.image(f"{made.unique('img')}:1")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo failing && exit 5\n")

    with pytest.raises(docker.errors.BuildError) as failed:
        client.images.build(path=str(tmp_path), tag=tag)

    assert "returned a non-zero code: 5" in failed.value.msg
    assert any("failing" in entry.get("stream", "") for entry in failed.value.build_log)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)


def test_build_with_an_unknown_instruction_fails(
    client: docker.DockerClient, made: Made, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUNN true\n")

    # A Dockerfile that does not parse is the request's fault (400), as dockerd answers,
    # not a BuildError of a step.
    with pytest.raises(docker.errors.APIError) as failed:
        client.images.build(path=str(tmp_path), tag=made.image(made.unique("img")))

    assert failed.value.status_code == 400
    assert "unknown instruction" in str(failed.value.explanation)


def test_build_copy_of_a_missing_file_raises_build_error(
    client: docker.DockerClient, made: Made, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY missing /x\n")

    with pytest.raises(docker.errors.BuildError) as failed:
        client.images.build(path=str(tmp_path), tag=made.image(made.unique("img")))

    assert "COPY failed" in failed.value.msg
    assert "missing" in failed.value.msg


# --------------------------------------------------------------------- images


def test_images_tag_list_get_remove(client: docker.DockerClient, made: Made) -> None:
    repository = made.unique("repo")
    ref = made.image(f"{repository}:v1")
    busybox = client.images.get("busybox")

    assert busybox.tag(repository, "v1") is True
    got = client.images.get(ref)
    listed = client.images.list(name=repository)
    filtered = client.images.list(filters={"reference": f"{repository}:*"})

    assert got.id == busybox.id
    assert ref in got.tags
    assert "busybox:latest" in got.tags
    assert [i.id for i in listed] == [busybox.id]
    assert [i.id for i in filtered] == [busybox.id]
    assert busybox.id in {i.id for i in client.images.list()}
    assert got.attrs["Config"]["Cmd"] == ["sh"]

    client.images.remove(ref)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(ref)
    assert client.images.list(name=repository) == []
    assert client.images.get("busybox").id == busybox.id


def test_image_history_save_load(client: docker.DockerClient, made: Made) -> None:
    repository = made.unique("saved")
    ref = made.image(f"{repository}:1")
    busybox = client.images.get("busybox")
    busybox.tag(repository, "1")
    image = client.images.get(ref)

    history = image.history()
    archive = b"".join(image.save(named=ref))
    client.images.remove(ref)
    loaded = client.images.load(archive)

    assert history
    assert all("CreatedBy" in h for h in history)
    assert [i.id for i in loaded] == [busybox.id]
    assert ref in client.images.get(ref).tags


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[registry_servers.Registry]:
    r = registry_servers.start_moorage(tmp_path / "registry")
    try:
        yield r
    finally:
        r.stop()


def test_push_then_pull_from_a_registry(
    client: docker.DockerClient, made: Made, registry: registry_servers.Registry
) -> None:
    repository = f"{registry.host}/py/busybox"
    ref = made.image(f"{repository}:1")
    busybox = client.images.get("busybox")
    assert busybox.tag(repository, "1")
    since = time.time()

    pushed = list(client.images.push(repository, tag="1", stream=True, decode=True))
    assert not [p for p in pushed if "error" in p or "errorDetail" in p], pushed
    digest = next(p["aux"]["Digest"] for p in pushed if "aux" in p)
    assert registry.call("GET", "/v2/py/busybox/tags/list").json()["tags"] == ["1"]

    client.images.remove(ref)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(ref)
    pulled = client.images.pull(repository, tag="1")

    assert pulled.id == busybox.id
    assert ref in pulled.tags
    assert f"{repository}@{digest}" in pulled.attrs["RepoDigests"]
    events = client.events(
        decode=True, since=since, until=time.time(), filters={"type": "image", "image": ref}
    )
    assert [(e["Action"], e["Actor"]) for e in events if e["Action"] in ("push", "pull")] == [
        ("push", {"ID": ref, "Attributes": {"name": repository}}),
        ("pull", {"ID": ref, "Attributes": {"name": repository}}),
    ]
    assert client.containers.run(ref, "echo pulled", name=made.container(), remove=True) == (
        b"pulled\n"
    )


def test_run_missing_image_pulls_it(
    client: docker.DockerClient, made: Made, registry: registry_servers.Registry
) -> None:
    repository = f"{registry.host}/py/autopull"
    ref = made.image(f"{repository}:1")
    client.images.get("busybox").tag(repository, "1")
    client.images.push(repository, tag="1")
    client.images.remove(ref)

    out = client.containers.run(ref, "echo auto", name=made.container(), remove=True)

    assert out == b"auto\n"
    assert ref in client.images.get(ref).tags


def test_pull_of_a_missing_image_raises_not_found(
    client: docker.DockerClient, registry: registry_servers.Registry
) -> None:
    with pytest.raises(docker.errors.NotFound):
        client.images.pull(f"{registry.host}/py/missing", tag="1")


def _push_tags(
    client: docker.DockerClient, made: Made, repository: str, tags: tuple[str, ...]
) -> None:
    """Push busybox under each of ``tags`` and leave none of them here."""
    busybox = client.images.get("busybox")
    for tag in tags:
        made.image(f"{repository}:{tag}")
        busybox.tag(repository, tag)
        client.images.push(repository, tag=tag)
        client.images.remove(f"{repository}:{tag}")


def test_images_pull_without_a_tag_pulls_latest(
    client: docker.DockerClient, made: Made, registry: registry_servers.Registry
) -> None:
    repository = f"{registry.host}/py/default-tag"
    _push_tags(client, made, repository, ("latest", "2"))

    latest = client.images.pull(repository)

    assert f"{repository}:latest" in latest.tags
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repository}:2")


@pytest.mark.xfail(
    strict=True, reason="a pull of every tag (docker pull -a) is not supported: it pulls latest"
)
def test_images_pull_all_tags(
    client: docker.DockerClient, made: Made, registry: registry_servers.Registry
) -> None:
    repository = f"{registry.host}/py/all-tags"
    _push_tags(client, made, repository, ("latest", "2"))

    pulled = client.images.pull(repository, all_tags=True)

    assert {t for image in pulled for t in image.tags} == {
        f"{repository}:latest",
        f"{repository}:2",
    }


# -------------------------------------------------------------------- volumes


def test_volumes_create_get_list_remove(client: docker.DockerClient, made: Made) -> None:
    name = made.volume()
    label = made.unique("label")

    volume = client.volumes.create(name, labels={"moorage.test": label})
    got = client.volumes.get(name)
    listed = client.volumes.list(filters={"label": f"moorage.test={label}"})

    assert volume.name == got.name == name
    assert got.attrs["Driver"] == "local"
    assert got.attrs["Labels"] == {"moorage.test": label}
    assert got.attrs["Mountpoint"]
    assert [v.name for v in listed] == [name]
    volume.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(name)


def test_anonymous_volume(client: docker.DockerClient, made: Made) -> None:
    volume = client.volumes.create()
    made.volumes.append(volume.name)

    assert len(volume.name) == 64
    assert client.volumes.get(volume.name).attrs["Driver"] == "local"


def test_a_named_volume_is_shared_between_containers(
    client: docker.DockerClient, made: Made
) -> None:
    name = made.volume()
    client.volumes.create(name)
    mount = {name: {"bind": "/data", "mode": "rw"}}

    client.containers.run(
        "busybox", ["sh", "-c", "echo kept > /data/f"], volumes=mount, name=made.container(),
        remove=True,
    )  # fmt: skip
    out = client.containers.run(
        "busybox", "cat /data/f", volumes={name: {"bind": "/data", "mode": "ro"}},
        name=made.container(), remove=True,
    )  # fmt: skip

    assert out == b"kept\n"


def test_a_volume_in_use_is_not_removed(client: docker.DockerClient, made: Made) -> None:
    name = made.volume()
    volume = client.volumes.create(name)
    sleeper(client, made, volumes={name: {"bind": "/data", "mode": "rw"}})

    with pytest.raises(docker.errors.APIError) as refused:
        volume.remove()

    assert refused.value.status_code == 409


def test_prune_volumes_and_networks_by_label(client: docker.DockerClient, made: Made) -> None:
    label = made.unique("label")
    volume = client.volumes.create(made.volume(), labels={"moorage.test": label})
    network = client.networks.create(made.network(), labels={"moorage.test": label})
    kept = client.volumes.create(made.volume(), labels={"moorage.test": "other"})

    # From API 1.42 a prune takes named volumes only when told "all".
    volumes = client.volumes.prune(filters={"label": f"moorage.test={label}", "all": True})
    networks = client.networks.prune(filters={"label": f"moorage.test={label}"})

    assert volumes["VolumesDeleted"] == [volume.name]
    assert networks["NetworksDeleted"] == [network.name]
    assert client.volumes.get(kept.name).name == kept.name


# ------------------------------------------------------------------- networks


def test_default_networks_are_listed(client: docker.DockerClient) -> None:
    names = {n.name for n in client.networks.list()}
    bridge = client.networks.get("bridge")

    assert {"bridge", "host", "none"} <= names
    assert bridge.attrs["Driver"] == "bridge"
    assert [n.name for n in client.networks.list(filters={"driver": "null"})] == ["none"]


def test_networks_create_inspect_list_remove(client: docker.DockerClient, made: Made) -> None:
    name = made.network()

    network = client.networks.create(name, driver="bridge", labels={"moorage.test": name})
    got = client.networks.get(network.id)
    listed = client.networks.list(names=[name])

    assert got.name == name
    assert got.attrs["Driver"] == "bridge"
    assert got.attrs["Labels"] == {"moorage.test": name}
    assert got.attrs["IPAM"]["Config"][0]["Subnet"]
    assert [n.id for n in listed] == [network.id]
    network.remove()
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(network.id)


def test_network_connect_and_disconnect(client: docker.DockerClient, made: Made) -> None:
    network = client.networks.create(made.network())
    container = sleeper(client, made)

    network.connect(container)
    container.reload()
    network.reload()
    connected = container.attrs["NetworkSettings"]["Networks"]
    members = [c.id for c in network.containers]
    network.disconnect(container)
    container.reload()
    network.reload()

    assert network.name in connected
    assert connected[network.name]["IPAddress"]
    assert members == [container.id]
    assert network.name not in container.attrs["NetworkSettings"]["Networks"]
    assert network.containers == []


def test_containers_on_a_user_network_reach_each_other_by_name(
    client: docker.DockerClient, made: Made
) -> None:
    network = client.networks.create(made.network())
    server_name = made.container()
    server = client.containers.run(
        "busybox", ["sh", "-c", "echo pong | nc -l -p 7000"], detach=True, name=server_name,
        network=network.name,
    )  # fmt: skip
    assert isinstance(server, Container)

    # The server may not listen yet: the client retries, within the container.
    script = f"for i in $(seq 200); do nc {server_name} 7000 && exit 0; sleep 0.1; done; exit 1"
    out = client.containers.run(
        "busybox", ["sh", "-c", script], name=made.container(), network=network.name,
        remove=True,
    )  # fmt: skip

    assert out == b"pong\n"
    assert server.wait()["StatusCode"] == 0


def test_network_alias_and_ipam(client: docker.DockerClient, made: Made) -> None:
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.231.45.0/24")])
    network = client.networks.create(made.network(), ipam=ipam)
    server = client.containers.create(
        "busybox", ["sh", "-c", "echo alias | nc -l -p 7000"], name=made.container()
    )
    network.connect(server, aliases=["the-server"], ipv4_address="10.231.45.77")
    server.start()
    server.reload()

    script = "for i in $(seq 200); do nc the-server 7000 && exit 0; sleep 0.1; done; exit 1"
    out = client.containers.run(
        "busybox", ["sh", "-c", script], name=made.container(), network=network.name,
        remove=True,
    )  # fmt: skip

    settings = server.attrs["NetworkSettings"]["Networks"][network.name]
    assert settings["IPAddress"] == "10.231.45.77"
    assert "the-server" in settings["Aliases"]
    assert out == b"alias\n"


def test_published_port_on_loopback(client: docker.DockerClient, made: Made) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo published | nc -l -p 7000"], detach=True,
        name=made.container(), ports={"7000/tcp": ("127.0.0.1", None)},
    )  # fmt: skip
    assert isinstance(container, Container)
    container.reload()
    binding = container.ports["7000/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    port = int(binding["HostPort"])

    def answer() -> bytes | None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                return conn.recv(100) or None
        except OSError:
            return None

    assert wait_for(answer, "the published port") == b"published\n"


# --------------------------------------------------------------------- events


def test_events_show_a_containers_lifecycle(client: docker.DockerClient, made: Made) -> None:
    name = made.container()
    since = time.time()
    container = client.containers.run("busybox", "true", detach=True, name=name)
    assert isinstance(container, Container)
    container.wait()
    until = time.time()

    events = list(
        client.events(
            decode=True, since=since, until=until, filters={"type": "container", "container": name}
        )
    )

    actions = [e["Action"] for e in events]
    assert actions[:3] == ["create", "start", "die"], events
    die = events[2]
    assert die["Type"] == "container"
    assert die["Actor"]["ID"] == container.id
    assert die["Actor"]["Attributes"]["name"] == name
    assert die["Actor"]["Attributes"]["exitCode"] == "0"
    assert die["id"] == container.id
    assert isinstance(die["timeNano"], int)


def test_events_stream_live(client: docker.DockerClient, made: Made) -> None:
    name = made.container()
    events = client.events(decode=True, filters={"container": name})
    try:
        client.containers.run("busybox", "true", name=name, remove=True)
        actions = []
        for event in events:
            actions.append(event["Action"])
            if event["Action"] == "destroy":
                break
    finally:
        events.close()

    assert actions[:3] == ["create", "start", "die"] or actions[:4] == [
        "create", "attach", "start", "die"
    ], actions  # fmt: skip
    assert actions[-1] == "destroy"


def test_image_events(client: docker.DockerClient, made: Made) -> None:
    repository = made.unique("events")
    ref = made.image(f"{repository}:1")
    image_id = client.images.get("busybox").id
    since = time.time()
    client.images.get("busybox").tag(repository, "1")
    client.images.remove(ref)
    until = time.time()

    events = list(client.events(decode=True, since=since, until=until, filters={"type": "image"}))

    # As dockerd reports them: a tag names the new reference, an untag the image id.
    assert [(e["Action"], e["Actor"]) for e in events] == [
        ("tag", {"ID": image_id, "Attributes": {"name": ref}}),
        ("untag", {"ID": image_id, "Attributes": {"name": image_id}}),
    ], events
    assert [(e["status"], e["id"]) for e in events] == [("tag", image_id), ("untag", image_id)]
